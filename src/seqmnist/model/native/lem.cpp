// LEM's loop over time (model/lem.py's _run and _Memory.backward) in one call each way.
//
// The recurrence is nonlinear, so it runs step by step; in Python each step is
// about fifteen torch operations forward and seven backward, each paying
// dispatch and a thread-pool wake-up on (B, H) tensors small enough that the
// overhead is most of their cost. Here a step is its two matrix products
// (at::addmm, the BLAS torch calls) and two fused elementwise passes.
//
// Layout as lem.py's _run documents it:
//   drive (T, B, 4H): [V1 u + b1, V2 u + b2, V_z u + b_z, V_y u + b_y]
//   hidden_weight (3H, H): [W1; W2; W_z], acting on y;  W_y (H, H), acting on z
//   states (T+1, B, 2, H): [z_t, y_t], t = 0..T, from zeros
//   derivatives (T, B, 6, H): [K1, K2, Kz, Ky, keep_z, keep_y]
//   backward's grads (T, B, 6, H): [d1, d2, d_z, d_y, carry_z, carry_y]

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <type_traits>

#include "vectorised.h"

namespace {

using seqmnist::sigmoid;
using seqmnist::tanh_;

// Rows (of the batch) per task: about 8k elements, so a step's pass over a small
// batch stays on one thread.
int64_t grain(int64_t width) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(width, 1)); }

// After on_y = [W1; W2; W_z] y_{t-1} + drive: z's update, and y's time step.
//   gates (B, 4, H), in: pre-activations of dt_n, dt_bar_n, z's target; out: the
//   time steps themselves (slots 0, 1), which the second pass reads.
template <bool derive, typename T>
SEQMNIST_INLINE void z_update_rows(T* __restrict gates, const T* __restrict old_state,
                                   T* __restrict new_state, T* __restrict deriv, T dt,
                                   int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    T* g = gates + r * 4 * H;
    const T* old_z = old_state + r * 2 * H;
    T* new_z = new_state + r * 2 * H;
    T* d = deriv + r * 6 * H;  // unused unless derive
    for (int64_t j = 0; j < H; ++j) {
      const T step_z = dt * sigmoid(g[j]);
      const T step_y = dt * sigmoid(g[H + j]);
      const T target = tanh_(g[2 * H + j]);
      const T z = old_z[j] + step_z * (target - old_z[j]);
      g[j] = step_z;
      g[H + j] = step_y;
      new_z[j] = z;
      if constexpr (derive) {
        d[j] = (z - old_z[j]) * (T(1) - step_z / dt);  // K1
        d[2 * H + j] = step_z * (T(1) - target * target);  // Kz
        d[4 * H + j] = T(1) - step_z;  // keep_z
      }
    }
  }
}

// After on_z = W_y z_t + drive: y's update.
template <bool derive, typename T>
SEQMNIST_INLINE void y_update_rows(const T* __restrict gates, const T* __restrict old_state,
                                   T* __restrict new_state, T* __restrict deriv, T dt,
                                   int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = gates + r * 4 * H;
    const T* old_y = old_state + r * 2 * H + H;
    T* new_y = new_state + r * 2 * H + H;
    T* d = deriv + r * 6 * H;  // unused unless derive
    for (int64_t j = 0; j < H; ++j) {
      const T step_y = g[H + j];
      const T target = tanh_(g[3 * H + j]);
      const T y = old_y[j] + step_y * (target - old_y[j]);
      new_y[j] = y;
      if constexpr (derive) {
        d[H + j] = (y - old_y[j]) * (T(1) - step_y / dt);  // K2
        d[3 * H + j] = step_y * (T(1) - target * target);  // Ky
        d[5 * H + j] = T(1) - step_y;  // keep_y
      }
    }
  }
}

// Backward, y's side of step t: with G = dL/dy_t (later steps') + this step's output
// gradient, [d2, d_y, carry_y] = [K2, Ky, keep_y] G.
template <typename T>
SEQMNIST_INLINE void y_side_rows(const T* __restrict grad_later, const T* __restrict grad_out,
                                 const T* __restrict deriv, T* __restrict grads, int64_t rows,
                                 int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* later = grad_later + r * H;
    const T* out = grad_out + r * H;
    const T* d = deriv + r * 6 * H;
    T* g = grads + r * 6 * H;
    for (int64_t j = 0; j < H; ++j) {
      const T total = later[j] + out[j];
      g[H + j] = d[H + j] * total;
      g[3 * H + j] = d[3 * H + j] * total;
      g[5 * H + j] = d[5 * H + j] * total;
    }
  }
}

// z's side: with G = dL/dz_t, [d1, d_z, carry_z] = [K1, Kz, keep_z] G.
template <typename T>
SEQMNIST_INLINE void z_side_rows(const T* __restrict grad_z, const T* __restrict deriv,
                                 T* __restrict grads, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gz = grad_z + r * H;
    const T* d = deriv + r * 6 * H;
    T* g = grads + r * 6 * H;
    for (int64_t j = 0; j < H; ++j) {
      g[j] = d[j] * gz[j];
      g[2 * H + j] = d[2 * H + j] * gz[j];
      g[4 * H + j] = d[4 * H + j] * gz[j];
    }
  }
}

// float32 instances multiversioned (vectorised.h); float64 runs the plain ones.
// (Each with and without the derivatives: a test inside the loop keeps it from vectorising.)
SEQMNIST_CLONES void z_update_f32(float* g, const float* o, float* n, float* d, float dt,
                                  int64_t rows, int64_t H) {
  if (d) z_update_rows<true>(g, o, n, d, dt, rows, H);
  else z_update_rows<false>(g, o, n, d, dt, rows, H);
}
SEQMNIST_CLONES void y_update_f32(const float* g, const float* o, float* n, float* d, float dt,
                                  int64_t rows, int64_t H) {
  if (d) y_update_rows<true>(g, o, n, d, dt, rows, H);
  else y_update_rows<false>(g, o, n, d, dt, rows, H);
}
SEQMNIST_CLONES void y_side_f32(const float* l, const float* o, const float* d, float* g,
                                int64_t rows, int64_t H) {
  y_side_rows(l, o, d, g, rows, H);
}
SEQMNIST_CLONES void z_side_f32(const float* gz, const float* d, float* g, int64_t rows,
                                int64_t H) {
  z_side_rows(gz, d, g, rows, H);
}

template <typename T>
void z_update(T* g, const T* o, T* n, T* d, T dt, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) z_update_f32(g, o, n, d, dt, rows, H);
  else if (d) z_update_rows<true>(g, o, n, d, dt, rows, H);
  else z_update_rows<false>(g, o, n, d, dt, rows, H);
}
template <typename T>
void y_update(const T* g, const T* o, T* n, T* d, T dt, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) y_update_f32(g, o, n, d, dt, rows, H);
  else if (d) y_update_rows<true>(g, o, n, d, dt, rows, H);
  else y_update_rows<false>(g, o, n, d, dt, rows, H);
}
template <typename T>
void y_side(const T* l, const T* o, const T* d, T* g, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) y_side_f32(l, o, d, g, rows, H);
  else y_side_rows(l, o, d, g, rows, H);
}
template <typename T>
void z_side(const T* gz, const T* d, T* g, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) z_side_f32(gz, d, g, rows, H);
  else z_side_rows(gz, d, g, rows, H);
}

void check(const at::Tensor& drive, const at::Tensor& hidden_weight, const at::Tensor& W_y) {
  TORCH_CHECK(drive.dim() == 3 && W_y.dim() == 2 && hidden_weight.dim() == 2,
              "lem: drive (T, B, 4H), hidden_weight (3H, H) and W_y (H, H)");
  const int64_t H = W_y.size(0);
  TORCH_CHECK(W_y.size(1) == H && drive.size(2) == 4 * H && hidden_weight.size(0) == 3 * H &&
                  hidden_weight.size(1) == H,
              "lem: drive (T, B, 4H), hidden_weight (3H, H) and W_y (H, H)");
  TORCH_CHECK(drive.scalar_type() == W_y.scalar_type() &&
                  drive.scalar_type() == hidden_weight.scalar_type() &&
                  (drive.scalar_type() == at::kFloat || drive.scalar_type() == at::kDouble),
              "lem: float32 or float64, one dtype for all");
}

std::tuple<at::Tensor, at::Tensor> lem_forward(const at::Tensor& drive_in,
                                               const at::Tensor& hidden_weight,
                                               const at::Tensor& W_y, double dt,
                                               bool for_backward) {
  check(drive_in, hidden_weight, W_y);
  const at::Tensor drive = drive_in.contiguous();
  const int64_t T = drive.size(0), B = drive.size(1), H = W_y.size(0);
  // Inference keeps two states, the old and the new, and writes y_t out: half the
  // memory of every state (1.6 GB at batch 2,000 by pixels), and half the traffic.
  at::Tensor states = at::empty({for_backward ? T + 1 : 2, B, 2, H}, drive.options());
  states[0].zero_();
  at::Tensor derivatives =
      for_backward ? at::empty({T, B, 6, H}, drive.options()) : at::empty({0}, drive.options());
  at::Tensor outputs = for_backward ? at::empty({0}, drive.options())
                                    : at::empty({T, B, H}, drive.options());
  at::Tensor gates = at::empty({B, 4, H}, drive.options());
  at::Tensor on_y = gates.narrow(1, 0, 3).view({B, 3 * H});  // rows 4H apart
  at::Tensor on_z = gates.select(1, 3);
  const at::Tensor hidden_weight_t = hidden_weight.t(), W_y_t = W_y.t();
  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "lem_forward", [&] {
    const scalar_t step = static_cast<scalar_t>(dt);
    scalar_t* g = gates.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const at::Tensor drive_t = drive[t];
      const at::Tensor old_t = states[for_backward ? t : t % 2];
      const at::Tensor new_t = states[for_backward ? t + 1 : (t + 1) % 2];
      at::addmm_out(on_y, drive_t.narrow(1, 0, 3 * H), old_t.select(1, 1), hidden_weight_t);
      const scalar_t* o = old_t.data_ptr<scalar_t>();
      scalar_t* n = new_t.data_ptr<scalar_t>();
      scalar_t* d = for_backward ? derivatives[t].data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, B, grain(4 * H), [&](int64_t begin, int64_t end) {
        z_update<scalar_t>(g + begin * 4 * H, o + begin * 2 * H, n + begin * 2 * H,
                           d ? d + begin * 6 * H : nullptr, step, end - begin, H);
      });
      at::addmm_out(on_z, drive_t.narrow(1, 3 * H, H), new_t.select(1, 0), W_y_t);
      at::parallel_for(0, B, grain(4 * H), [&](int64_t begin, int64_t end) {
        y_update<scalar_t>(g + begin * 4 * H, o + begin * 2 * H, n + begin * 2 * H,
                           d ? d + begin * 6 * H : nullptr, step, end - begin, H);
      });
      if (!for_backward) outputs[t].copy_(new_t.select(1, 1));
    }
  });
  if (for_backward) return {states, derivatives};
  return {outputs, derivatives};
}

at::Tensor lem_backward(const at::Tensor& grad_ys_in, const at::Tensor& derivatives_in,
                        const at::Tensor& hidden_weight, const at::Tensor& W_y) {
  const at::Tensor derivatives = derivatives_in.contiguous();
  const int64_t T = derivatives.size(0), B = derivatives.size(1), H = W_y.size(0);
  TORCH_CHECK(derivatives.dim() == 4 && derivatives.size(2) == 6 && derivatives.size(3) == H,
              "lem_backward: derivatives (T, B, 6, H)");
  TORCH_CHECK(grad_ys_in.dim() == 3 && grad_ys_in.size(0) == T && grad_ys_in.size(1) == B &&
                  grad_ys_in.size(2) == H,
              "lem_backward: grad_ys (T, B, H)");
  const at::Tensor grad_ys = grad_ys_in.to(derivatives.scalar_type()).contiguous();
  at::Tensor grads = at::empty({T, B, 6, H}, derivatives.options());
  at::Tensor grad_y = at::zeros({B, H}, derivatives.options());  // dL/dy_t from later steps
  at::Tensor grad_z = at::empty({B, H}, derivatives.options());
  at::Tensor carry_z = at::zeros({B, H}, derivatives.options());  // dL/dz_t from later steps
  AT_DISPATCH_FLOATING_TYPES(derivatives.scalar_type(), "lem_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const at::Tensor grads_t = grads[t];
      const scalar_t* d = derivatives[t].data_ptr<scalar_t>();
      scalar_t* g = grads_t.data_ptr<scalar_t>();
      const scalar_t* later = grad_y.data_ptr<scalar_t>();
      const scalar_t* out = grad_ys[t].data_ptr<scalar_t>();
      at::parallel_for(0, B, grain(6 * H), [&](int64_t begin, int64_t end) {
        y_side<scalar_t>(later + begin * H, out + begin * H, d + begin * 6 * H,
                         g + begin * 6 * H, end - begin, H);
      });
      at::addmm_out(grad_z, carry_z, grads_t.select(1, 3), W_y);  // dL/dz_t, all of it
      const scalar_t* gz = grad_z.data_ptr<scalar_t>();
      at::parallel_for(0, B, grain(6 * H), [&](int64_t begin, int64_t end) {
        z_side<scalar_t>(gz + begin * H, d + begin * 6 * H, g + begin * 6 * H, end - begin, H);
      });
      carry_z = grads_t.select(1, 4);
      // dL/dy_{t-1}: carry_y + [d1, d2, d_z] [W1; W2; W_z]
      at::addmm_out(grad_y, grads_t.select(1, 5), grads_t.narrow(1, 0, 3).view({B, 3 * H}),
                    hidden_weight);
    }
  });
  return grads;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def(
      "lem_forward(Tensor drive, Tensor hidden_weight, Tensor W_y, float dt, bool for_backward) "
      "-> (Tensor, Tensor)");
  m.def("lem_backward(Tensor grad_ys, Tensor derivatives, Tensor hidden_weight, Tensor W_y) "
        "-> Tensor");
  m.impl("lem_forward", c10::DispatchKey::CPU, &lem_forward);
  m.impl("lem_backward", c10::DispatchKey::CPU, &lem_backward);
}
