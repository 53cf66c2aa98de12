// h_t = a_t * h_{t-1} + b_t over time in one call: seqmnist's CPU scan kernel.
//
// The Python loop in model/scan.py runs the same recurrence as T small torch
// operations, each paying dispatch and a thread-pool wake-up (~12-40 us on
// 2 cores) for a few microseconds of arithmetic. Here the loop over time runs
// inside one kernel, split over the batch across torch's intra-op threads,
// with the state's elements in the innermost, contiguous loop.
//
// Layout: b and out (B, T, S) contiguous; a (B, T, S) when it varies per
// step, (S) when one coefficient serves every step and row (LRU); h0 (B, S)
// or undefined (zeros). Complex tensors arrive as their real views, S pairs
// (re, im) interleaved, and are multiplied by hand (std::complex's operator*
// checks for infinities and NaNs in a slow library call).
// reverse: h_{T-1} = b_{T-1}, h_t = a_{t+1} * h_{t+1} + b_t, backpropagation's form.
//
// linear_recurrence_backward is that reverse pass for autograd with dL/da
// computed in the same loop, while each step's G_t is still in cache:
//     G_t = g_t + conj(a_{t+1}) G_{t+1},  dL/db_t = G_t,  dL/da_t = G_t conj(h_{t-1})
// (PyTorch's convention for complex gradients), summed over batch and time
// when one a serves every step. As a separate pass over memory that sum
// took 66 ms of LRU's 551 ms training step at 784 steps.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

#include "vectorised.h"

namespace {

template <typename T, bool Complex>
SEQMNIST_INLINE void multiply_add(T* __restrict out, const T* __restrict a,
                                  const T* __restrict h, const T* __restrict b, int64_t n) {
  // restrict: out, the state it reads and the inputs never overlap, so the
  // compiler may vectorise across the state's elements
  if constexpr (Complex) {
    for (int64_t i = 0; i < n; i += 2) {
      const T ar = a[i], ai = a[i + 1], hr = h[i], hi = h[i + 1];
      const T re = ar * hr - ai * hi, im = ar * hi + ai * hr;
      out[i] = re + b[i];
      out[i + 1] = im + b[i + 1];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] * h[i] + b[i];
  }
}

template <typename T, bool Complex>
SEQMNIST_INLINE void scan_rows(const T* a, const T* b, const T* h0, T* out, int64_t batch_begin,
                               int64_t batch_end, int64_t steps, int64_t width, bool varying,
                               bool reverse) {
  // width: real numbers per step (2S for complex)
  for (int64_t row = batch_begin; row < batch_end; ++row) {
    const T* b_row = b + row * steps * width;
    T* out_row = out + row * steps * width;
    const T* a_row = varying ? a + row * steps * width : a;
    auto coefficient = [&](int64_t t) { return varying ? a_row + t * width : a_row; };
    if (reverse) {
      std::copy(b_row + (steps - 1) * width, b_row + steps * width, out_row + (steps - 1) * width);
      for (int64_t t = steps - 2; t >= 0; --t)
        multiply_add<T, Complex>(out_row + t * width, coefficient(t + 1),
                                 out_row + (t + 1) * width, b_row + t * width, width);
      continue;
    }
    if (h0 == nullptr) {
      std::copy(b_row, b_row + width, out_row);
    } else {
      multiply_add<T, Complex>(out_row, coefficient(0), h0 + row * width, b_row, width);
    }
    for (int64_t t = 1; t < steps; ++t)
      multiply_add<T, Complex>(out_row + t * width, coefficient(t), out_row + (t - 1) * width,
                               b_row + t * width, width);
  }
}

// acc (+)= G * conj(h) over n real numbers (n / 2 pairs when complex)
template <typename T, bool Complex, bool Accumulate>
SEQMNIST_INLINE void times_conj(T* __restrict acc, const T* __restrict g, const T* __restrict h,
                                int64_t n) {
  if constexpr (Complex) {
    for (int64_t i = 0; i < n; i += 2) {
      const T re = g[i] * h[i] + g[i + 1] * h[i + 1], im = g[i + 1] * h[i] - g[i] * h[i + 1];
      if constexpr (Accumulate) {
        acc[i] += re;
        acc[i + 1] += im;
      } else {
        acc[i] = re;
        acc[i + 1] = im;
      }
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (Accumulate) acc[i] += g[i] * h[i]; else acc[i] = g[i] * h[i];
    }
  }
}

// G_t = conj(a) * G_{t+1} + g_t
template <typename T, bool Complex>
SEQMNIST_INLINE void conj_multiply_add(T* __restrict out, const T* __restrict a,
                                       const T* __restrict next, const T* __restrict g,
                                       int64_t n) {
  if constexpr (Complex) {
    for (int64_t i = 0; i < n; i += 2) {
      const T ar = a[i], ai = a[i + 1], nr = next[i], ni = next[i + 1];
      const T re = ar * nr + ai * ni, im = ar * ni - ai * nr;
      out[i] = re + g[i];
      out[i + 1] = im + g[i + 1];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] * next[i] + g[i];
  }
}

// One row's backward: grad_b (the G's), and grad_a, whole (varying) or summed over time (fixed).
template <typename T, bool Complex>
SEQMNIST_INLINE void backward_rows(const T* a, const T* h, const T* h0, const T* grad_h,
                                   T* grad_b, T* grad_a, int64_t batch_begin, int64_t batch_end,
                                   int64_t steps, int64_t width, bool varying) {
  for (int64_t row = batch_begin; row < batch_end; ++row) {
    const int64_t offset = row * steps * width;
    const T* g = grad_h + offset;
    const T* h_row = h + offset;
    T* G = grad_b + offset;
    const T* a_row = varying ? a + offset : a;
    T* ga = grad_a == nullptr ? nullptr : (varying ? grad_a + offset : grad_a + row * width);
    auto coefficient = [&](int64_t t) { return varying ? a_row + t * width : a_row; };
    std::copy(g + (steps - 1) * width, g + steps * width, G + (steps - 1) * width);
    if (ga != nullptr && !varying) std::fill(ga, ga + width, T(0));
    for (int64_t t = steps - 1; t >= 0; --t) {
      if (t < steps - 1)
        conj_multiply_add<T, Complex>(G + t * width, coefficient(t + 1), G + (t + 1) * width,
                                      g + t * width, width);
      if (ga == nullptr) continue;
      const T* before = t > 0 ? h_row + (t - 1) * width : (h0 ? h0 + row * width : nullptr);
      if (varying) {
        if (before) {
          times_conj<T, Complex, false>(ga + t * width, G + t * width, before, width);
        } else {
          std::fill(ga, ga + width, T(0));
        }
      } else if (before) {
        times_conj<T, Complex, true>(ga, G + t * width, before, width);
      }
    }
  }
}

// float32 instances multiversioned (vectorised.h). Built for the baseline alone,
// the complex products on interleaved (re, im) pairs stayed scalar: on the
// AMD EPYC (AVX-512 BF16), batch 128, complex state 64, the backward went from
// 190-240 to 85-100 us at 28 steps and from 15-21 to 5-8 ms at 784.
SEQMNIST_CLONES void scan_rows_f32(bool complex, const float* a, const float* b, const float* h0,
                                   float* out, int64_t begin, int64_t end, int64_t steps,
                                   int64_t width, bool varying, bool reverse) {
  if (complex) scan_rows<float, true>(a, b, h0, out, begin, end, steps, width, varying, reverse);
  else scan_rows<float, false>(a, b, h0, out, begin, end, steps, width, varying, reverse);
}
SEQMNIST_CLONES void backward_rows_f32(bool complex, const float* a, const float* h,
                                       const float* h0, const float* grad_h, float* grad_b,
                                       float* grad_a, int64_t begin, int64_t end, int64_t steps,
                                       int64_t width, bool varying) {
  if (complex)
    backward_rows<float, true>(a, h, h0, grad_h, grad_b, grad_a, begin, end, steps, width,
                               varying);
  else
    backward_rows<float, false>(a, h, h0, grad_h, grad_b, grad_a, begin, end, steps, width,
                                varying);
}

template <typename T>
void scan(bool complex, const T* a, const T* b, const T* h0, T* out, int64_t begin, int64_t end,
          int64_t steps, int64_t width, bool varying, bool reverse) {
  if constexpr (std::is_same_v<T, float>)
    scan_rows_f32(complex, a, b, h0, out, begin, end, steps, width, varying, reverse);
  else if (complex)
    scan_rows<T, true>(a, b, h0, out, begin, end, steps, width, varying, reverse);
  else
    scan_rows<T, false>(a, b, h0, out, begin, end, steps, width, varying, reverse);
}
template <typename T>
void backward(bool complex, const T* a, const T* h, const T* h0, const T* grad_h, T* grad_b,
              T* grad_a, int64_t begin, int64_t end, int64_t steps, int64_t width,
              bool varying) {
  if constexpr (std::is_same_v<T, float>)
    backward_rows_f32(complex, a, h, h0, grad_h, grad_b, grad_a, begin, end, steps, width,
                      varying);
  else if (complex)
    backward_rows<T, true>(a, h, h0, grad_h, grad_b, grad_a, begin, end, steps, width, varying);
  else
    backward_rows<T, false>(a, h, h0, grad_h, grad_b, grad_a, begin, end, steps, width, varying);
}

// Real numbers per (row, step): the state's elements, twice over for complex.
int64_t state_width(const at::Tensor& x) {
  int64_t width = x.is_complex() ? 2 : 1;
  for (int64_t d = 2; d < x.dim(); ++d) width *= x.size(d);
  return width;
}

at::Tensor as_real(const at::Tensor& x) {
  // resolve_conj: a lazily conjugated tensor has no real view
  const at::Tensor plain = x.resolve_conj().contiguous();
  return x.is_complex() ? at::view_as_real(plain) : plain;
}

at::Tensor as_given(const at::Tensor& real, bool complex) {
  return complex ? at::view_as_complex(real) : real;
}

std::tuple<at::Tensor, at::Tensor> linear_recurrence_backward(
    const at::Tensor& a, const at::Tensor& h, const c10::optional<at::Tensor>& h0,
    const at::Tensor& grad_h, bool need_grad_a) {
  TORCH_CHECK(h.device().is_cpu() && a.device().is_cpu() && grad_h.device().is_cpu(),
              "the native scan runs on the CPU");
  TORCH_CHECK(a.scalar_type() == h.scalar_type() && grad_h.scalar_type() == h.scalar_type(),
              "a, h and grad_h must have one dtype");
  TORCH_CHECK(h.dim() >= 2 && h.size(1) > 0 && grad_h.sizes() == h.sizes(),
              "h and grad_h must be (batch, time, ...) alike, with time >= 1");
  const bool complex = h.is_complex();
  const at::Tensor a_real = as_real(a), h_real = as_real(h), g_real = as_real(grad_h);
  const int64_t batch = h.size(0), steps = h.size(1), width = state_width(h);
  const bool varying = a.dim() == h.dim();
  TORCH_CHECK(varying ? a.sizes() == h.sizes() : a_real.numel() == width,
              "a must have h's shape or its state shape");
  at::Tensor h0_real;
  if (h0.has_value() && h0->defined()) {
    TORCH_CHECK(h0->device().is_cpu() && h0->scalar_type() == h.scalar_type(),
                "h0 must be on the CPU in h's dtype");
    h0_real = as_real(*h0);
    TORCH_CHECK(h0_real.numel() == batch * width, "h0 must be (batch, *state)");
  }
  at::Tensor grad_b = at::empty_like(g_real);
  at::Tensor grad_a;  // varying: like h; fixed: one row per batch row, summed below
  if (need_grad_a) grad_a = varying ? at::empty_like(h_real) : at::empty({batch, width}, h_real.options());
  AT_DISPATCH_FLOATING_TYPES(h_real.scalar_type(), "seqmnist_linear_recurrence_backward", [&] {
    const scalar_t* h0_data = h0_real.defined() ? h0_real.data_ptr<scalar_t>() : nullptr;
    scalar_t* grad_a_data = grad_a.defined() ? grad_a.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      backward<scalar_t>(complex, a_real.data_ptr<scalar_t>(), h_real.data_ptr<scalar_t>(),
                         h0_data, g_real.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>(),
                         grad_a_data, begin, end, steps, width, varying);
    });
  });
  if (grad_a.defined() && !varying) {
    grad_a = grad_a.sum(0).reshape(a_real.sizes());  // over the batch: (width) as a's real view
  }
  grad_b = as_given(grad_b, complex);
  // not asked for: an empty tensor (an op's outputs cannot be None)
  grad_a = grad_a.defined() ? as_given(grad_a.contiguous(), complex) : at::empty({0}, h.options());
  return {grad_b, grad_a};
}

at::Tensor linear_recurrence(const at::Tensor& a, const at::Tensor& b,
                             const c10::optional<at::Tensor>& h0, bool reverse) {
  TORCH_CHECK(b.device().is_cpu() && a.device().is_cpu(), "the native scan runs on the CPU");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "a and b must have one dtype");
  TORCH_CHECK(b.dim() >= 2 && b.size(1) > 0, "b must be (batch, time, ...) with time >= 1");
  const bool complex = b.is_complex();
  const at::Tensor b_real = as_real(b), a_real = as_real(a);
  at::Tensor out = at::empty_like(b_real);  // contiguous
  const int64_t batch = b.size(0), steps = b.size(1), width = state_width(b);
  const bool varying = a.dim() == b.dim();
  TORCH_CHECK(varying ? a.sizes() == b.sizes() : a_real.numel() == width,
              "a must have b's shape or its state shape");
  at::Tensor h0_real;
  if (h0.has_value() && h0->defined()) {
    TORCH_CHECK(!reverse, "a reverse scan starts from zeros");
    TORCH_CHECK(h0->device().is_cpu() && h0->scalar_type() == b.scalar_type(),
                "h0 must be on the CPU in b's dtype");
    h0_real = as_real(*h0);
    TORCH_CHECK(h0_real.numel() == batch * width, "h0 must be (batch, *state)");
  }
  AT_DISPATCH_FLOATING_TYPES(b_real.scalar_type(), "seqmnist_linear_recurrence", [&] {
    const scalar_t* h0_data = h0_real.defined() ? h0_real.data_ptr<scalar_t>() : nullptr;
    // One grain of rows per thread's share: each row is steps * width work.
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      scan<scalar_t>(complex, a_real.data_ptr<scalar_t>(), b_real.data_ptr<scalar_t>(), h0_data,
                     out.data_ptr<scalar_t>(), begin, end, steps, width, varying, reverse);
    });
  });
  return complex ? at::view_as_complex(out) : out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def("linear_recurrence(Tensor a, Tensor b, Tensor? h0, bool reverse) -> Tensor");
  m.def(
      "linear_recurrence_backward(Tensor a, Tensor h, Tensor? h0, Tensor grad_h, "
      "bool need_grad_a) -> (Tensor, Tensor)");
  m.impl("linear_recurrence", c10::DispatchKey::CPU, &linear_recurrence);
  m.impl("linear_recurrence_backward", c10::DispatchKey::CPU, &linear_recurrence_backward);
}
