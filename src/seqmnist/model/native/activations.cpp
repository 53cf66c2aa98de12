// A Linear's bias with the activation after it, forward and backward, each one
// pass (model/fused.py): gelu(x + bias), and a GLU with a residual,
// residual + (x_a + bias_a) sigmoid(x_b + bias_b) for x = [x_a, x_b]; and
// LRU's gelu(x + d * u), its readout Re(C x) + D u with the GELU after it.
//
// A Linear followed by GELU (minGRU's and minLSTM's MLP) costs torch three
// passes over the Linear's output: addmm copies the broadcast bias into it
// before the product accumulates onto it, then GELU reads it and writes its
// own. Here the product is taken without the bias, and one pass adds the bias
// and applies GELU; backward is one pass too. (At 28 steps the bias and GELU
// were each about a tenth of a minGRU training step, measured by removing them.)
//
// GELU is the exact one, x Phi(x), Phi the normal CDF, as torch's default.
// Phi is computed from erfc by a polynomial fit (below; relative error about
// an ulp), for x < 0 as Phi(x) = erfc(|x| / sqrt 2) / 2 directly,
// where (1 + erf(x / sqrt 2)) / 2 would cancel, and for |x| < 1/sqrt 2 from
// erf's Taylor series. tests/model/test_fused.py holds each column of results
// to torch's own float32 error; in GELU's negative tail this is closer than
// torch (at x = -3, 5e-7 of the value against torch's 1.3e-4). The derivative
// is Phi(x) + x phi(x), phi the normal density.
//
// The GLU (LRU's block) is torch's addmm, glu and an add as three passes; its
// backward, glu_backward (which computes the sigmoid again) and the sums.
//
// Layout: GELU's x and the gradients (N, C) contiguous, bias (C); the GLU's x
// (N, 2C), bias (2C), residual and output (N, C).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "parallel.h"
#include "vectorised.h"

namespace {

using seqmnist::chunk_count;
using seqmnist::exp_;
using seqmnist::grain;
using seqmnist::over_chunks;
using seqmnist::sigmoid;

// Phi(x) and phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
template <typename T>
SEQMNIST_INLINE void normal_cdf_and_density(T x, T& cdf, T& density) {
  const T z = std::fabs(x) * T(0.70710678118654752);  // |x| / sqrt 2
  const T square = z * z;
  // erfc(z) = t e^(-z^2) P(t), t = 1 / (1 + z / 2), for z >= 1/2: P a degree-9
  // polynomial fitted for this file (least squares at 4,000 Chebyshev nodes) to
  // erfc(z) e^(z^2) / t in the variable s below, over
  // z in [1/2, sqrt 87], the form of Numerical Recipes' erfcc with one
  // exponential instead of two; within 3e-9 of erfc relatively in float64
  // arithmetic, about an ulp in float32.
  const T t = T(1) / (T(1) + T(0.5) * z);
  const T s = (t - T(0.4882816753384195)) * T(3.208024427455966);  // t mapped to [-1, 1]
  T p = T(-6.2746053005e-07);
  p = p * s - T(5.9370685001e-06);
  p = p * s + T(1.7696618114e-05);
  p = p * s + T(8.5139504619e-05);
  p = p * s - T(3.2513999956e-04);
  p = p * s - T(1.5650899202e-03);
  p = p * s + T(4.6551348762e-03);
  p = p * s + T(5.3800058132e-02);
  p = p * s + T(2.1013619689e-01);
  p = p * s + T(5.0281549765e-01);
  // e^(-x^2 / 2), exactly 0 where exp_'s clamp would hold it at e^-87, so the far
  // tail gives zeros rather than subnormals. NaN stays NaN.
  const T gaussian = square > T(87) ? T(0) : exp_(-square);
  const T tail = T(0.5) * t * gaussian * p;  // Phi(-|x|) = erfc(z) / 2
  // Near 0, where GELU is x / 2 + ..., 1 - tail would round away a few ulp of
  // the result: there erf's Taylor series to z^13 (remainder below 1e-9 of erf
  // for z < 1/2).
  const T signed_z = x * T(0.70710678118654752);
  T series = T(1.0 / 9360);
  series = series * square - T(1.0 / 1320);
  series = series * square + T(1.0 / 216);
  series = series * square - T(1.0 / 42);
  series = series * square + T(1.0 / 10);
  series = series * square - T(1.0 / 3);
  series = series * square + T(1);
  const T near_zero = T(0.5) + T(0.56418958354775628) * signed_z * series;  // (1 + erf z) / 2
  cdf = z < T(0.5) ? near_zero : (x < T(0) ? tail : T(1) - tail);
  density = T(0.39894228040143268) * gaussian;
}

// float64 (the tests' precision) uses the library's erfc: the fit's 3e-9 would be
// far below float64's precision.
SEQMNIST_INLINE void normal_cdf_and_density(double x, double& cdf, double& density) {
  cdf = 0.5 * std::erfc(-x * 0.70710678118654752);
  density = 0.39894228040143268 * std::exp(-0.5 * x * x);
}

template <typename T>
SEQMNIST_INLINE void forward_rows(const T* __restrict x, const T* __restrict bias,
                                  T* __restrict y, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < C; ++j) {
      const T v = x[r * C + j] + bias[j];
      T cdf, density;
      normal_cdf_and_density(v, cdf, density);
      y[r * C + j] = v * cdf;
    }
  }
}

template <typename T>
SEQMNIST_INLINE void backward_rows(const T* __restrict grad_y, const T* __restrict x,
                                   const T* __restrict bias, T* __restrict grad_x, int64_t rows,
                                   int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < C; ++j) {
      const T v = x[r * C + j] + bias[j];
      T cdf, density;
      normal_cdf_and_density(v, cdf, density);
      grad_x[r * C + j] = grad_y[r * C + j] * (cdf + v * density);
    }
  }
}

template <typename T>
SEQMNIST_INLINE void glu_forward_rows(const T* __restrict x, const T* __restrict bias,
                                      const T* __restrict residual, T* __restrict y,
                                      int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* value = x + r * 2 * C;
    const T* gate = value + C;
    for (int64_t j = 0; j < C; ++j) {
      y[r * C + j] = residual[r * C + j] + (value[j] + bias[j]) * sigmoid(gate[j] + bias[C + j]);
    }
  }
}

template <typename T>
SEQMNIST_INLINE void glu_backward_rows(const T* __restrict grad_y, const T* __restrict x,
                                       const T* __restrict bias, T* __restrict grad_x,
                                       int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* value = x + r * 2 * C;
    const T* gate = value + C;
    T* grad_value = grad_x + r * 2 * C;
    T* grad_gate = grad_value + C;
    for (int64_t j = 0; j < C; ++j) {
      const T s = sigmoid(gate[j] + bias[C + j]);
      const T g = grad_y[r * C + j];
      grad_value[j] = g * s;
      grad_gate[j] = g * (value[j] + bias[j]) * (s * (T(1) - s));
    }
  }
}

// gelu(x + d * u), d one value per column; backward accumulates dL/dd's column
// sums over its rows into ``grad_d`` (double for float32: thousands of rows).
template <typename T>
SEQMNIST_INLINE void skip_forward_rows(const T* __restrict x, const T* __restrict d,
                                       const T* __restrict u, T* __restrict y, int64_t rows,
                                       int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < C; ++j) {
      const T v = x[r * C + j] + d[j] * u[r * C + j];
      T cdf, density;
      normal_cdf_and_density(v, cdf, density);
      y[r * C + j] = v * cdf;
    }
  }
}

template <typename T>
SEQMNIST_INLINE void skip_backward_rows(const T* __restrict grad_y, const T* __restrict x,
                                        const T* __restrict d, const T* __restrict u,
                                        T* __restrict grad_x, T* __restrict grad_u,
                                        double* __restrict grad_d, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < C; ++j) {
      const T uj = u[r * C + j];
      const T v = x[r * C + j] + d[j] * uj;
      T cdf, density;
      normal_cdf_and_density(v, cdf, density);
      const T g = grad_y[r * C + j] * (cdf + v * density);
      grad_x[r * C + j] = g;
      grad_u[r * C + j] = g * d[j];
      grad_d[j] += static_cast<double>(g * uj);
    }
  }
}

SEQMNIST_CLONES void forward_f32(const float* x, const float* bias, float* y, int64_t rows,
                                 int64_t C) {
  forward_rows(x, bias, y, rows, C);
}
SEQMNIST_CLONES void backward_f32(const float* grad_y, const float* x, const float* bias,
                                  float* grad_x, int64_t rows, int64_t C) {
  backward_rows(grad_y, x, bias, grad_x, rows, C);
}

SEQMNIST_CLONES void glu_forward_f32(const float* x, const float* bias, const float* residual,
                                     float* y, int64_t rows, int64_t C) {
  glu_forward_rows(x, bias, residual, y, rows, C);
}
SEQMNIST_CLONES void glu_backward_f32(const float* grad_y, const float* x, const float* bias,
                                      float* grad_x, int64_t rows, int64_t C) {
  glu_backward_rows(grad_y, x, bias, grad_x, rows, C);
}

SEQMNIST_CLONES void skip_forward_f32(const float* x, const float* d, const float* u, float* y,
                                      int64_t rows, int64_t C) {
  skip_forward_rows(x, d, u, y, rows, C);
}
SEQMNIST_CLONES void skip_backward_f32(const float* grad_y, const float* x, const float* d,
                                       const float* u, float* grad_x, float* grad_u,
                                       double* grad_d, int64_t rows, int64_t C) {
  skip_backward_rows(grad_y, x, d, u, grad_x, grad_u, grad_d, rows, C);
}

// float32 through the multiversioned instances; the library's erfc for float64.
template <typename T>
void forward(const T* x, const T* bias, T* y, int64_t rows, int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    forward_f32(x, bias, y, rows, C);
  } else {
    forward_rows(x, bias, y, rows, C);
  }
}

template <typename T>
void backward(const T* grad_y, const T* x, const T* bias, T* grad_x, int64_t rows, int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    backward_f32(grad_y, x, bias, grad_x, rows, C);
  } else {
    backward_rows(grad_y, x, bias, grad_x, rows, C);
  }
}

template <typename T>
void glu_forward(const T* x, const T* bias, const T* residual, T* y, int64_t rows, int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    glu_forward_f32(x, bias, residual, y, rows, C);
  } else {
    glu_forward_rows(x, bias, residual, y, rows, C);
  }
}

template <typename T>
void glu_backward(const T* grad_y, const T* x, const T* bias, T* grad_x, int64_t rows,
                  int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    glu_backward_f32(grad_y, x, bias, grad_x, rows, C);
  } else {
    glu_backward_rows(grad_y, x, bias, grad_x, rows, C);
  }
}

template <typename T>
void skip_forward(const T* x, const T* d, const T* u, T* y, int64_t rows, int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    skip_forward_f32(x, d, u, y, rows, C);
  } else {
    skip_forward_rows(x, d, u, y, rows, C);
  }
}

template <typename T>
void skip_backward(const T* grad_y, const T* x, const T* d, const T* u, T* grad_x, T* grad_u,
                   double* grad_d, int64_t rows, int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    skip_backward_f32(grad_y, x, d, u, grad_x, grad_u, grad_d, rows, C);
  } else {
    skip_backward_rows(grad_y, x, d, u, grad_x, grad_u, grad_d, rows, C);
  }
}

int64_t checked_width(const at::Tensor& x, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() >= 1 && bias.dim() == 1 && bias.size(0) == x.size(-1),
              "bias_gelu, bias_glu: bias must be one value per column of x");
  TORCH_CHECK(x.scalar_type() == bias.scalar_type(),
              "bias_gelu, bias_glu: x and bias must have one dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "bias_gelu, bias_glu: x must be float32 or float64");
  return x.size(-1);
}

at::Tensor bias_gelu_forward(const at::Tensor& x_in, const at::Tensor& bias_in) {
  const int64_t C = checked_width(x_in, bias_in);
  const at::Tensor x = x_in.contiguous(), bias = bias_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t rows = C > 0 ? x.numel() / C : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_gelu_forward", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = bias.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(C), [&](int64_t begin, int64_t end) {
      forward<scalar_t>(px + begin * C, pb, py + begin * C, end - begin, C);
    });
  });
  return y;
}

at::Tensor bias_gelu_backward(const at::Tensor& grad_in, const at::Tensor& x_in,
                              const at::Tensor& bias_in) {
  const int64_t C = checked_width(x_in, bias_in);
  const at::Tensor x = x_in.contiguous(), bias = bias_in.contiguous();
  const at::Tensor grad = grad_in.to(x.scalar_type()).contiguous();
  TORCH_CHECK(grad.numel() == x.numel(), "bias_gelu_backward: the gradient must have x's shape");
  at::Tensor grad_x = at::empty_like(x);
  const int64_t rows = C > 0 ? x.numel() / C : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_gelu_backward", [&] {
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = bias.data_ptr<scalar_t>();
    scalar_t* out = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(C), [&](int64_t begin, int64_t end) {
      backward<scalar_t>(pg + begin * C, px + begin * C, pb, out + begin * C, end - begin, C);
    });
  });
  return grad_x;
}

int64_t checked_glu_width(const at::Tensor& x, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) % 2 == 0, "bias_glu: x must have an even width");
  checked_width(x, bias);
  return x.size(-1) / 2;
}

at::Tensor bias_glu_residual_forward(const at::Tensor& x_in, const at::Tensor& bias_in,
                                     const at::Tensor& residual_in) {
  const int64_t C = checked_glu_width(x_in, bias_in);
  const at::Tensor x = x_in.contiguous(), bias = bias_in.contiguous();
  const at::Tensor residual = residual_in.to(x.scalar_type()).contiguous();
  TORCH_CHECK(residual.numel() * 2 == x.numel() && residual.size(-1) == C,
              "bias_glu_residual: the residual must have x's shape at half its width");
  at::Tensor y = at::empty_like(residual);
  const int64_t rows = C > 0 ? y.numel() / C : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_glu_residual_forward", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = bias.data_ptr<scalar_t>();
    const scalar_t* pr = residual.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(3 * C), [&](int64_t begin, int64_t end) {
      glu_forward<scalar_t>(px + begin * 2 * C, pb, pr + begin * C, py + begin * C,
                            end - begin, C);
    });
  });
  return y;
}

at::Tensor bias_glu_backward(const at::Tensor& grad_in, const at::Tensor& x_in,
                             const at::Tensor& bias_in) {
  const int64_t C = checked_glu_width(x_in, bias_in);
  const at::Tensor x = x_in.contiguous(), bias = bias_in.contiguous();
  const at::Tensor grad = grad_in.to(x.scalar_type()).contiguous();
  TORCH_CHECK(grad.numel() * 2 == x.numel(),
              "bias_glu_backward: the gradient must have x's shape at half its width");
  at::Tensor grad_x = at::empty_like(x);
  const int64_t rows = C > 0 ? grad.numel() / C : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_glu_backward", [&] {
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = bias.data_ptr<scalar_t>();
    scalar_t* out = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(3 * C), [&](int64_t begin, int64_t end) {
      glu_backward<scalar_t>(pg + begin * C, px + begin * 2 * C, pb, out + begin * 2 * C,
                             end - begin, C);
    });
  });
  return grad_x;
}

void check_skip(const at::Tensor& x, const at::Tensor& d, const at::Tensor& u) {
  checked_width(x, d);
  TORCH_CHECK(u.sizes() == x.sizes(), "skip_gelu: u must have x's shape");
}

at::Tensor skip_gelu_forward(const at::Tensor& x_in, const at::Tensor& d_in,
                             const at::Tensor& u_in) {
  check_skip(x_in, d_in, u_in);
  const int64_t C = x_in.size(-1);
  const at::Tensor x = x_in.contiguous(), d = d_in.contiguous();
  const at::Tensor u = u_in.to(x.scalar_type()).contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t rows = C > 0 ? x.numel() / C : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "skip_gelu_forward", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pd = d.data_ptr<scalar_t>();
    const scalar_t* pu = u.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(2 * C), [&](int64_t begin, int64_t end) {
      skip_forward<scalar_t>(px + begin * C, pd, pu + begin * C, py + begin * C, end - begin, C);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> skip_gelu_backward(const at::Tensor& grad_in,
                                                                  const at::Tensor& x_in,
                                                                  const at::Tensor& d_in,
                                                                  const at::Tensor& u_in) {
  check_skip(x_in, d_in, u_in);
  const int64_t C = x_in.size(-1);
  const at::Tensor x = x_in.contiguous(), d = d_in.contiguous();
  const at::Tensor u = u_in.to(x.scalar_type()).contiguous();
  const at::Tensor grad = grad_in.to(x.scalar_type()).contiguous();
  TORCH_CHECK(grad.numel() == x.numel(), "skip_gelu_backward: the gradient must have x's shape");
  at::Tensor grad_x = at::empty_like(x), grad_u = at::empty_like(x);
  const int64_t rows = C > 0 ? x.numel() / C : 0;
  const int64_t chunks = chunk_count(rows);  // dL/dd's partial sums, one row per chunk
  at::Tensor partial = at::zeros({chunks, C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "skip_gelu_backward", [&] {
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pd = d.data_ptr<scalar_t>();
    const scalar_t* pu = u.data_ptr<scalar_t>();
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    scalar_t* gu = grad_u.data_ptr<scalar_t>();
    double* pp = partial.data_ptr<double>();
    over_chunks(rows, C, chunks, [&](int64_t k, int64_t begin, int64_t end) {
      skip_backward<scalar_t>(pg + begin * C, px + begin * C, pd, pu + begin * C, gx + begin * C,
                              gu + begin * C, pp + k * C, end - begin, C);
    });
  });
  return {grad_x, grad_u, partial.sum(0).to(x.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def("bias_gelu_forward(Tensor x, Tensor bias) -> Tensor");
  m.def("bias_gelu_backward(Tensor grad, Tensor x, Tensor bias) -> Tensor");
  m.impl("bias_gelu_forward", c10::DispatchKey::CPU, &bias_gelu_forward);
  m.impl("bias_gelu_backward", c10::DispatchKey::CPU, &bias_gelu_backward);
  m.def("bias_glu_residual_forward(Tensor x, Tensor bias, Tensor residual) -> Tensor");
  m.def("bias_glu_backward(Tensor grad, Tensor x, Tensor bias) -> Tensor");
  m.impl("bias_glu_residual_forward", c10::DispatchKey::CPU, &bias_glu_residual_forward);
  m.impl("bias_glu_backward", c10::DispatchKey::CPU, &bias_glu_backward);
  m.def("skip_gelu_forward(Tensor x, Tensor d, Tensor u) -> Tensor");
  m.def("skip_gelu_backward(Tensor grad, Tensor x, Tensor d, Tensor u) -> (Tensor, Tensor, Tensor)");
  m.impl("skip_gelu_forward", c10::DispatchKey::CPU, &skip_gelu_forward);
  m.impl("skip_gelu_backward", c10::DispatchKey::CPU, &skip_gelu_backward);
}
