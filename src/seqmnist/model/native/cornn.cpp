// coRNN's loop over time (model/cornn.py's _run and _Oscillator.backward) in one call each way.
//
// Per step in Python: one matmul and five elementwise torch operations forward,
// five and a matmul backward, on (B, H) tensors small enough that dispatch and
// thread wake-ups are much of their cost. Here a step is its matmul
// (at::addmm, the BLAS torch calls) and one fused elementwise pass.
//
// Layout as cornn.py's _run documents it:
//   drive (T, B, H) = V u_t + b;  weight (H, 2H) = [W, W_z]
//   states (T+1, B, 2H): [y_t, z_t], t = 0..T, from rest
//   slopes (T, B, H): dt * tanh'(pre-activation of step t)

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <type_traits>

#include "vectorised.h"

namespace {

using seqmnist::tanh_;

int64_t grain(int64_t width) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(width, 1)); }

// After force = W y + W_z z + drive: z_t = z + dt (tanh(force) - gamma y - epsilon z),
// y_t = y + dt z_t, and (derive) the step's slope dt (1 - tanh^2).
template <bool derive, typename T>
SEQMNIST_INLINE void step_rows(const T* __restrict force, const T* __restrict old_state,
                               T* __restrict new_state, T* __restrict slope, T dt, T gamma,
                               T epsilon, int64_t rows, int64_t H) {
  const T keep = T(1) - dt * epsilon, pull = dt * gamma;
  for (int64_t r = 0; r < rows; ++r) {
    const T* f = force + r * H;
    const T* y_old = old_state + r * 2 * H;
    const T* z_old = y_old + H;
    T* y_new = new_state + r * 2 * H;
    T* z_new = y_new + H;
    T* s = slope + r * H;  // unused unless derive
    for (int64_t j = 0; j < H; ++j) {
      const T push = tanh_(f[j]);
      const T z = z_old[j] * keep - pull * y_old[j] + dt * push;
      z_new[j] = z;
      y_new[j] = y_old[j] + dt * z;
      if constexpr (derive) s[j] = dt * (T(1) - push * push);
    }
  }
}

// Backward through step t's elementwise part: from G = dL/d[y_t, z_t] of the later
// steps and this step's output gradient, dL/d pre-activation (into grad_drive) and
// the gradient to [y_{t-1}, z_{t-1}] through the linear terms (into base).
template <typename T>
SEQMNIST_INLINE void back_rows(const T* __restrict later, const T* __restrict out,
                               const T* __restrict slope, T* __restrict grad_drive,
                               T* __restrict base, T dt, T gamma, T epsilon, int64_t rows,
                               int64_t H) {
  const T keep = T(1) - dt * epsilon, pull = dt * gamma;
  for (int64_t r = 0; r < rows; ++r) {
    const T* later_y = later + r * 2 * H;
    const T* later_z = later_y + H;
    const T* o = out + r * H;
    const T* s = slope + r * H;
    T* gd = grad_drive + r * H;
    T* base_y = base + r * 2 * H;
    T* base_z = base_y + H;
    for (int64_t j = 0; j < H; ++j) {
      const T grad_y = later_y[j] + o[j];  // dL/dy_t
      const T grad_z = later_z[j] + dt * grad_y;  // y_t = y_{t-1} + dt z_t: dL/dz_t
      gd[j] = grad_z * s[j];
      base_y[j] = grad_y - pull * grad_z;
      base_z[j] = grad_z * keep;
    }
  }
}

SEQMNIST_CLONES void step_f32(const float* f, const float* o, float* n, float* s, float dt,
                              float gamma, float epsilon, int64_t rows, int64_t H) {
  if (s) step_rows<true>(f, o, n, s, dt, gamma, epsilon, rows, H);
  else step_rows<false>(f, o, n, s, dt, gamma, epsilon, rows, H);
}
SEQMNIST_CLONES void back_f32(const float* l, const float* o, const float* s, float* gd,
                              float* b, float dt, float gamma, float epsilon, int64_t rows,
                              int64_t H) {
  back_rows(l, o, s, gd, b, dt, gamma, epsilon, rows, H);
}

template <typename T>
void step(const T* f, const T* o, T* n, T* s, T dt, T gamma, T epsilon, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) step_f32(f, o, n, s, dt, gamma, epsilon, rows, H);
  else if (s) step_rows<true>(f, o, n, s, dt, gamma, epsilon, rows, H);
  else step_rows<false>(f, o, n, s, dt, gamma, epsilon, rows, H);
}
template <typename T>
void back(const T* l, const T* o, const T* s, T* gd, T* b, T dt, T gamma, T epsilon,
          int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) back_f32(l, o, s, gd, b, dt, gamma, epsilon, rows, H);
  else back_rows(l, o, s, gd, b, dt, gamma, epsilon, rows, H);
}

std::tuple<at::Tensor, at::Tensor> cornn_forward(const at::Tensor& drive_in,
                                                 const at::Tensor& weight, double dt,
                                                 double gamma, double epsilon, bool for_backward) {
  TORCH_CHECK(drive_in.dim() == 3 && weight.dim() == 2 && weight.size(0) == drive_in.size(2) &&
                  weight.size(1) == 2 * weight.size(0),
              "cornn_forward: drive (T, B, H) and weight (H, 2H)");
  TORCH_CHECK(drive_in.scalar_type() == weight.scalar_type() &&
                  (weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble),
              "cornn_forward: float32 or float64, one dtype for both");
  const at::Tensor drive = drive_in.contiguous();
  const int64_t T = drive.size(0), B = drive.size(1), H = drive.size(2);
  // Inference keeps two states, the old and the new, and writes the positions out.
  at::Tensor states = at::empty({for_backward ? T + 1 : 2, B, 2 * H}, drive.options());
  states[0].zero_();
  at::Tensor slopes =
      for_backward ? at::empty({T, B, H}, drive.options()) : at::empty({0}, drive.options());
  at::Tensor outputs = for_backward ? at::empty({0}, drive.options())
                                    : at::empty({T, B, H}, drive.options());
  at::Tensor force = at::empty({B, H}, drive.options());
  const at::Tensor weight_t = weight.t();
  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "cornn_forward", [&] {
    const scalar_t d = dt, g = gamma, e = epsilon;
    const scalar_t* f = force.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const at::Tensor old_t = states[for_backward ? t : t % 2];
      const at::Tensor new_t = states[for_backward ? t + 1 : (t + 1) % 2];
      at::addmm_out(force, drive[t], old_t, weight_t);
      const scalar_t* o = old_t.data_ptr<scalar_t>();
      scalar_t* n = new_t.data_ptr<scalar_t>();
      scalar_t* s = for_backward ? slopes[t].data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, B, grain(3 * H), [&](int64_t begin, int64_t end) {
        step<scalar_t>(f + begin * H, o + begin * 2 * H, n + begin * 2 * H,
                       s ? s + begin * H : nullptr, d, g, e, end - begin, H);
      });
      if (!for_backward) outputs[t].copy_(new_t.narrow(1, 0, H));
    }
  });
  if (for_backward) return {states, slopes};
  return {outputs, slopes};
}

// dL/d drive (T, B, H); cornn.py turns it into the weight's gradient with one matmul.
at::Tensor cornn_backward(const at::Tensor& grad_positions_in, const at::Tensor& slopes_in,
                          const at::Tensor& weight, double dt, double gamma, double epsilon) {
  const at::Tensor slopes = slopes_in.contiguous();
  TORCH_CHECK(slopes.dim() == 3 && grad_positions_in.sizes() == slopes.sizes(),
              "cornn_backward: grad_positions and slopes (T, B, H)");
  const at::Tensor grad_positions = grad_positions_in.to(slopes.scalar_type()).contiguous();
  const int64_t T = slopes.size(0), B = slopes.size(1), H = slopes.size(2);
  at::Tensor grad_drive = at::empty({T, B, H}, slopes.options());
  at::Tensor later = at::zeros({B, 2 * H}, slopes.options());  // dL/d[y_t, z_t], later steps
  at::Tensor base = at::empty({B, 2 * H}, slopes.options());
  AT_DISPATCH_FLOATING_TYPES(slopes.scalar_type(), "cornn_backward", [&] {
    const scalar_t d = dt, g = gamma, e = epsilon;
    const scalar_t* l = later.data_ptr<scalar_t>();
    scalar_t* b = base.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const at::Tensor grad_drive_t = grad_drive[t];
      const scalar_t* o = grad_positions[t].data_ptr<scalar_t>();
      const scalar_t* s = slopes[t].data_ptr<scalar_t>();
      scalar_t* gd = grad_drive_t.data_ptr<scalar_t>();
      at::parallel_for(0, B, grain(5 * H), [&](int64_t begin, int64_t end) {
        back<scalar_t>(l + begin * 2 * H, o + begin * H, s + begin * H, gd + begin * H,
                       b + begin * 2 * H, d, g, e, end - begin, H);
      });
      at::addmm_out(later, base, grad_drive_t, weight);  // dL/d[y_{t-1}, z_{t-1}]
    }
  });
  return grad_drive;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def(
      "cornn_forward(Tensor drive, Tensor weight, float dt, float gamma, float epsilon, "
      "bool for_backward) -> (Tensor, Tensor)");
  m.def(
      "cornn_backward(Tensor grad_positions, Tensor slopes, Tensor weight, float dt, float gamma, "
      "float epsilon) -> Tensor");
  m.impl("cornn_forward", c10::DispatchKey::CPU, &cornn_forward);
  m.impl("cornn_backward", c10::DispatchKey::CPU, &cornn_backward);
}
