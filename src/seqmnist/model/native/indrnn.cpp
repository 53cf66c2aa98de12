// IndRNN's recurrence h_t = relu(a_t + u * h_{t-1}), h_{-1} = 0, in one call each way.
//
// model/indrnn.py's Python loops issue 2 small torch operations a step
// forward and 4 backward, each paying dispatch and a thread-pool wake-up; for
// 6 layers at 784 steps that is about 28,000 operations a training step.
// Here each loop over time runs inside one kernel, split over the batch.
//
// Layout, time-major as the layer computes it: a and h (T, B, H) contiguous, u (H).
// forward writes h over a (the layer's matmul output, which nothing else reads).
// backward: g_t = dL/dz_t for z_t = a_t + u h_{t-1}, from dL/dh (T, B, H):
//     G = grad_h_t + u g_{t+1};  G = 0 where |G| <= tiny (a subnormal: see
//     indrnn.py);  g_t = G where h_t > 0, else 0;  dL/du = sum_t,b g_t h_{t-1}.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

namespace {

// The gradient reaching z_t: zero where it is subnormal or relu was off.
// `&`, not `&&`: no branch, so the loop vectorises (a branch on relu's
// pattern, which is random, cost 2.7 ns an element in mispredictions).
// Written as negations so that NaN passes as the Python loops pass it
// (threshold_backward zeroes only where h <= 0, hardshrink only where |g| <= tiny).
template <typename T>
inline T mask(T value, T h, T tiny) {
  const bool keep = !(h <= T(0)) & !(std::abs(value) <= tiny);
  return keep ? value : T(0);
}

// relu as torch computes it: NaN stays NaN (z < 0 is false for it).
template <typename T>
inline T relu(T z) {
  return z < T(0) ? T(0) : z;
}

// Each loop its own function with restrict arguments, so the compiler knows
// the rows never overlap and vectorises them (restrict on local pointers is
// not enough for GCC), and the last step, which has no g_{t+1} to load, apart.
template <typename T>
void last_gradient(T* __restrict g, const T* __restrict grad, const T* __restrict h, T tiny,
                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = mask(grad[i], h[i], tiny);
}

template <typename T>
void gradient(T* __restrict g, const T* __restrict grad, const T* __restrict u,
              const T* __restrict g_next, const T* __restrict h, T tiny, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = mask(grad[i] + u[i] * g_next[i], h[i], tiny);
}

template <typename T>
void accumulate(T* __restrict acc, const T* __restrict g, const T* __restrict h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += g[i] * h[i];
}

void indrnn_forward(at::Tensor& a, const at::Tensor& u) {
  TORCH_CHECK(a.device().is_cpu() && u.device().is_cpu(), "the native IndRNN runs on the CPU");
  TORCH_CHECK(a.dim() == 3 && a.is_contiguous(), "a must be a contiguous (time, batch, hidden)");
  TORCH_CHECK(u.dim() == 1 && u.size(0) == a.size(2) && u.scalar_type() == a.scalar_type(),
              "u must be (hidden) in a's dtype");
  const int64_t steps = a.size(0), batch = a.size(1), width = a.size(2);
  const at::Tensor weight = u.contiguous();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqmnist_indrnn_forward", [&] {
    scalar_t* data = a.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        scalar_t* h = data + row * width;
        for (int64_t i = 0; i < width; ++i) h[i] = relu(h[i]);
        for (int64_t t = 1; t < steps; ++t) {
          scalar_t* __restrict now = data + (t * batch + row) * width;
          const scalar_t* __restrict before = now - batch * width;
          for (int64_t i = 0; i < width; ++i) now[i] = relu(now[i] + w[i] * before[i]);
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor> indrnn_backward(const at::Tensor& h, const at::Tensor& grad_h,
                                                   const at::Tensor& u) {
  TORCH_CHECK(h.device().is_cpu() && grad_h.device().is_cpu(), "the native IndRNN runs on the CPU");
  TORCH_CHECK(h.dim() == 3 && grad_h.sizes() == h.sizes(), "h and grad_h must be (time, batch, hidden)");
  TORCH_CHECK(grad_h.scalar_type() == h.scalar_type() && u.scalar_type() == h.scalar_type(),
              "h, grad_h and u must have one dtype");
  TORCH_CHECK(u.device().is_cpu() && u.dim() == 1 && u.size(0) == h.size(2),
              "u must be (hidden) on the CPU");
  const int64_t steps = h.size(0), batch = h.size(1), width = h.size(2);
  const at::Tensor h_c = h.contiguous(), grad_c = grad_h.contiguous(), weight = u.contiguous();
  at::Tensor g = at::empty_like(h_c);
  at::Tensor grad_u_rows = at::zeros({batch, width}, h.options());  // summed over the batch below
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "seqmnist_indrnn_backward", [&] {
    const scalar_t tiny = std::numeric_limits<scalar_t>::min();  // the smallest normal float
    const scalar_t* hs = h_c.data_ptr<scalar_t>();
    const scalar_t* grads = grad_c.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* gs = g.data_ptr<scalar_t>();
    scalar_t* grad_u = grad_u_rows.data_ptr<scalar_t>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        scalar_t* acc = grad_u + row * width;
        for (int64_t t = steps - 1; t >= 0; --t) {
          const int64_t at = (t * batch + row) * width;
          scalar_t* g_t = gs + at;
          const scalar_t* grad_t = grads + at;
          const scalar_t* h_t = hs + at;
          if (t == steps - 1) {
            last_gradient(g_t, grad_t, h_t, tiny, width);
          } else {
            gradient(g_t, grad_t, w, g_t + batch * width, h_t, tiny, width);
          }
          if (t > 0) accumulate(acc, g_t, h_t - batch * width, width);
        }
      }
    });
  });
  return {g, grad_u_rows.sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def("indrnn_forward(Tensor(a!) a, Tensor u) -> ()");
  m.def("indrnn_backward(Tensor h, Tensor grad_h, Tensor u) -> (Tensor, Tensor)");
  m.impl("indrnn_forward", c10::DispatchKey::CPU, &indrnn_forward);
  m.impl("indrnn_backward", c10::DispatchKey::CPU, &indrnn_backward);
}
