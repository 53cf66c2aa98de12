// minGRU's and minLSTM's gates (model/mingru.py), forward and backward, each one pass.
//
// From a row of logits [k, h~] (minGRU) or [f, i, h~] (minLSTM), each H wide,
// the coefficients of h_t = a_t h_{t-1} + b_t:
//     minGRU:  a = sigmoid(-k),  b = sigmoid(k) g(h~)
//     minLSTM: a = f' = sigmoid(f) / (sigmoid(f) + sigmoid(i)),  b = i' g(h~), i' = 1 - f'
// with g(x) = sigmoid(min(x, 0)) + max(x, 0). As torch operations these are a
// dozen passes forward and about twenty backward over (B, T, H) arrays, each
// of them streaming memory (a 28-step minLSTM training step spent 14 ms of
// its 40 in them); here each element is read and written once.
//
// minLSTM's f' without logarithms: with m = min(f, i, 0),
//     num = e^m + e^(m - f) = e^m (1 + e^-f),  den = e^m + e^(m - i),
//     f' = den / (num + den),  i' = num / (num + den).
// No exponent is positive, and one of num, den is at least 1, so nothing
// overflows or divides by zero for any logits (infinite ones are held to
// +-1e30); mingru.py's softplus form gives the same values.
//
// The logits arrive without their Linear's bias, which is added here: addmm
// would spend a pass copying it into the logits first.
//
// Layout: logits (N, G*H) contiguous, bias (G*H); a, b and their gradients (N, H).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "parallel.h"
#include "vectorised.h"

namespace {

using seqmnist::exp_;
using seqmnist::grain;
using seqmnist::sigmoid;

// min(x, 0) and max(x, 0) as torch's clamp computes them: NaN stays NaN (each
// comparison is false for it, so the select returns x), and each is one vector
// min or max.
template <typename T>
SEQMNIST_INLINE T below_zero(T x) {
  return x > T(0) ? T(0) : x;
}

template <typename T>
SEQMNIST_INLINE T above_zero(T x) {
  return x < T(0) ? T(0) : x;
}

// g(x), and g'(x) (1 for x >= 0, sigmoid'(x) below), as mingru.py's _g_fast and
// _g_and_slope compute them, NaN included.
template <typename T>
SEQMNIST_INLINE T g_of(T x) {
  return sigmoid(below_zero(x)) + above_zero(x);
}

template <typename T>
SEQMNIST_INLINE void g_and_slope(T x, T& g, T& slope) {
  const T low = sigmoid(below_zero(x));
  g = low + above_zero(x);
  slope = low * (T(1) - low) + (x >= T(0) ? T(0.75) : T(0));
}

// Infinite logits held to +-1e30, where every exponent below is already clamped:
// f = -inf would give m - f = -inf + inf = NaN, where torch's softplus form gives
// f' = 0. NaN passes.
template <typename T>
SEQMNIST_INLINE T finite(T x) {
  const T big = T(1e30);
  x = x < -big ? -big : x;
  return x > big ? big : x;
}

// minLSTM's f' and i', as in the header.
template <typename T>
SEQMNIST_INLINE void lstm_shares(T f, T i, T& forget, T& input) {
  f = finite(f);
  i = finite(i);
  T m = f < i ? f : i;
  m = m < T(0) ? m : T(0);
  const T scale = exp_(m);
  const T num = scale + exp_(m - f), den = scale + exp_(m - i);
  const T inverse = T(1) / (num + den);
  forget = den * inverse;
  input = num * inverse;
}

template <typename T>
SEQMNIST_INLINE void gru_forward_rows(const T* __restrict logits, const T* __restrict bias,
                                      T* __restrict a, T* __restrict b, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* k = logits + r * 2 * H;
    const T* h = k + H;
    for (int64_t j = 0; j < H; ++j) {
      const T kj = k[j] + bias[j];
      a[r * H + j] = sigmoid(-kj);
      b[r * H + j] = sigmoid(kj) * g_of(h[j] + bias[H + j]);
    }
  }
}

template <typename T>
SEQMNIST_INLINE void gru_backward_rows(const T* __restrict logits, const T* __restrict bias,
                                       const T* __restrict grad_a, const T* __restrict grad_b,
                                       T* __restrict grad, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* k = logits + r * 2 * H;
    const T* h = k + H;
    T* grad_k = grad + r * 2 * H;
    T* grad_h = grad_k + H;
    const T* ga = grad_a + r * H;
    const T* gb = grad_b + r * H;
    for (int64_t j = 0; j < H; ++j) {
      // da/dk = -z(1 - z), db/dk = z(1 - z) g(h~), db/dh~ = z g'(h~)
      const T z = sigmoid(k[j] + bias[j]);
      T g, slope;
      g_and_slope(h[j] + bias[H + j], g, slope);
      grad_k[j] = (gb[j] * g - ga[j]) * (z * (T(1) - z));
      grad_h[j] = gb[j] * z * slope;
    }
  }
}

template <typename T>
SEQMNIST_INLINE void lstm_forward_rows(const T* __restrict logits, const T* __restrict bias,
                                       T* __restrict a, T* __restrict b, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* f = logits + r * 3 * H;
    const T* i = f + H;
    const T* h = i + H;
    for (int64_t j = 0; j < H; ++j) {
      T forget, input;
      lstm_shares(f[j] + bias[j], i[j] + bias[H + j], forget, input);
      a[r * H + j] = forget;
      b[r * H + j] = input * g_of(h[j] + bias[2 * H + j]);
    }
  }
}

template <typename T>
SEQMNIST_INLINE void lstm_backward_rows(const T* __restrict logits, const T* __restrict bias,
                                        const T* __restrict grad_a, const T* __restrict grad_b,
                                        T* __restrict grad, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* f = logits + r * 3 * H;
    const T* i = f + H;
    const T* h = i + H;
    T* grad_f = grad + r * 3 * H;
    T* grad_i = grad_f + H;
    T* grad_h = grad_i + H;
    const T* ga = grad_a + r * H;
    const T* gb = grad_b + r * H;
    for (int64_t j = 0; j < H; ++j) {
      // With diff = log i - log f (f' = sigmoid(-diff)): da/ddiff = -f'i',
      // db/ddiff = f'i' g(h~), db/dh~ = i' g'(h~); ddiff/df = -sigmoid(-f),
      // ddiff/di = sigmoid(-i).
      const T fj = f[j] + bias[j], ij = i[j] + bias[H + j];
      T forget, input;
      lstm_shares(fj, ij, forget, input);
      T g, slope;
      g_and_slope(h[j] + bias[2 * H + j], g, slope);
      const T grad_diff = (gb[j] * g - ga[j]) * (forget * input);
      grad_f[j] = -grad_diff * sigmoid(-fj);
      grad_i[j] = grad_diff * sigmoid(-ij);
      grad_h[j] = gb[j] * input * slope;
    }
  }
}

// The float32 instances, multiversioned; float64 (the tests' precision) runs the plain ones.
SEQMNIST_CLONES void gru_forward_f32(const float* l, const float* bias, float* a, float* b,
                                     int64_t rows, int64_t H) {
  gru_forward_rows(l, bias, a, b, rows, H);
}
SEQMNIST_CLONES void gru_backward_f32(const float* l, const float* bias, const float* ga,
                                      const float* gb, float* g, int64_t rows, int64_t H) {
  gru_backward_rows(l, bias, ga, gb, g, rows, H);
}
SEQMNIST_CLONES void lstm_forward_f32(const float* l, const float* bias, float* a, float* b,
                                      int64_t rows, int64_t H) {
  lstm_forward_rows(l, bias, a, b, rows, H);
}
SEQMNIST_CLONES void lstm_backward_f32(const float* l, const float* bias, const float* ga,
                                       const float* gb, float* g, int64_t rows, int64_t H) {
  lstm_backward_rows(l, bias, ga, gb, g, rows, H);
}

template <typename T>
void forward_rows(int64_t gates, const T* l, const T* bias, T* a, T* b, int64_t rows,
                  int64_t H) {
  if constexpr (std::is_same_v<T, float>) {
    (gates == 2 ? gru_forward_f32 : lstm_forward_f32)(l, bias, a, b, rows, H);
  } else {
    (gates == 2 ? gru_forward_rows<T> : lstm_forward_rows<T>)(l, bias, a, b, rows, H);
  }
}

template <typename T>
void backward_rows(int64_t gates, const T* l, const T* bias, const T* ga, const T* gb, T* g,
                   int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) {
    (gates == 2 ? gru_backward_f32 : lstm_backward_f32)(l, bias, ga, gb, g, rows, H);
  } else {
    (gates == 2 ? gru_backward_rows<T> : lstm_backward_rows<T>)(l, bias, ga, gb, g, rows, H);
  }
}

int64_t checked_width(const at::Tensor& logits, const at::Tensor& bias, int64_t gates) {
  TORCH_CHECK(gates == 2 || gates == 3, "mingates: gates must be 2 (minGRU) or 3 (minLSTM)");
  TORCH_CHECK(logits.dim() >= 1 && logits.size(-1) % gates == 0,
              "mingates: the logits' last dimension must be a multiple of ", gates);
  TORCH_CHECK(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble,
              "mingates: logits must be float32 or float64");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == logits.size(-1),
              "mingates: bias must be one value per logit column");
  return logits.size(-1) / gates;
}

std::tuple<at::Tensor, at::Tensor> mingates_forward(const at::Tensor& logits_in,
                                                    const at::Tensor& bias_in, int64_t gates) {
  const int64_t H = checked_width(logits_in, bias_in, gates);
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor bias = bias_in.to(logits.scalar_type()).contiguous();
  std::vector<int64_t> shape(logits.sizes().begin(), logits.sizes().end());
  shape.back() = H;
  at::Tensor a = at::empty(shape, logits.options());
  at::Tensor b = at::empty(shape, logits.options());
  const int64_t rows = H > 0 ? a.numel() / H : 0;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "mingates_forward", [&] {
    const scalar_t* l = logits.data_ptr<scalar_t>();
    const scalar_t* pbias = bias.data_ptr<scalar_t>();
    scalar_t* pa = a.data_ptr<scalar_t>();
    scalar_t* pb = b.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(gates * H), [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(gates, l + begin * gates * H, pbias, pa + begin * H,
                             pb + begin * H, end - begin, H);
    });
  });
  return {a, b};
}

at::Tensor mingates_backward(const at::Tensor& logits_in, const at::Tensor& bias_in,
                             int64_t gates, const at::Tensor& grad_a_in,
                             const at::Tensor& grad_b_in) {
  const int64_t H = checked_width(logits_in, bias_in, gates);
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor bias = bias_in.to(logits.scalar_type()).contiguous();
  const at::Tensor grad_a = grad_a_in.to(logits.scalar_type()).contiguous();
  const at::Tensor grad_b = grad_b_in.to(logits.scalar_type()).contiguous();
  TORCH_CHECK(grad_a.numel() * gates == logits.numel() && grad_b.numel() == grad_a.numel(),
              "mingates_backward: the gradients must have the coefficients' shape");
  at::Tensor grad = at::empty_like(logits);
  const int64_t rows = H > 0 ? grad_a.numel() / H : 0;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "mingates_backward", [&] {
    const scalar_t* l = logits.data_ptr<scalar_t>();
    const scalar_t* pbias = bias.data_ptr<scalar_t>();
    const scalar_t* ga = grad_a.data_ptr<scalar_t>();
    const scalar_t* gb = grad_b.data_ptr<scalar_t>();
    scalar_t* pg = grad.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(gates * H), [&](int64_t begin, int64_t end) {
      backward_rows<scalar_t>(gates, l + begin * gates * H, pbias, ga + begin * H,
                              gb + begin * H, pg + begin * gates * H, end - begin, H);
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqmnist, m) {
  m.def("mingates_forward(Tensor logits, Tensor bias, int gates) -> (Tensor, Tensor)");
  m.def(
      "mingates_backward(Tensor logits, Tensor bias, int gates, Tensor grad_a, Tensor grad_b) "
      "-> Tensor");
  m.impl("mingates_forward", c10::DispatchKey::CPU, &mingates_forward);
  m.impl("mingates_backward", c10::DispatchKey::CPU, &mingates_backward);
}
