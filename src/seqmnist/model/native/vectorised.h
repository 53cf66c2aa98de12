// Elementwise math that GCC vectorises, shared by the kernels that fuse a chain of
// torch operations into one pass (gates.cpp, lem.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// float32 loops are compiled for AVX-512 and AVX2 as well as the baseline, and
// the loader picks the one the CPU runs (GCC's function multiversioning): the
// library is built once per machine type, not per CPU, so no -march.
// (glibc only: the loader's choice is an ifunc, which musl does not have.)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define SEQMNIST_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SEQMNIST_CLONES
#endif
// The row loops are inlined into each clone, so each is compiled for the clone's instructions.
#if defined(__GNUC__)
#define SEQMNIST_INLINE inline __attribute__((always_inline))
#else
#define SEQMNIST_INLINE inline
#endif

namespace seqmnist {

// e^x in float32 as Cephes computes it (2^n e^r, |r| <= ln 2 / 2, a degree-5
// polynomial; within 2 ulp of expf), written without branches or calls so
// the loops vectorise (expf is a call the compiler cannot vectorise). x is
// clamped to [-87, 88]: the result stays a normal float (a subnormal costs
// microcode, and e^-87 ~ 1.6e-38 is zero to every sum it enters), and NaN
// stays NaN.
SEQMNIST_INLINE float exp_(float x) {
  float c = x < -87.0f ? -87.0f : x;
  c = c > 88.0f ? 88.0f : c;
  const float rounder = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (c * 1.44269504088896341f + rounder) - rounder;
  n = n == n ? n : 0.0f;  // NaN: any scale will do, the polynomial carries the NaN
  float r = c - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

SEQMNIST_INLINE double exp_(double x) { return std::exp(x); }

template <typename T>
SEQMNIST_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// tanh in float32 as Cephes computes it: an odd polynomial below |x| = 0.625, where
// 1 - 2 / (e^2|x| + 1) would cancel, that formula above; both are computed and one
// chosen, so the loop has no branch. Within a few ulp of tanhf; NaN stays NaN.
SEQMNIST_INLINE float tanh_(float x) {
  const float z = std::fabs(x);
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const float small = p * s * x + x;
  float large = 1.0f - 2.0f / (exp_(2.0f * z) + 1.0f);
  large = x < 0.0f ? -large : large;
  return z < 0.625f ? small : large;
}

SEQMNIST_INLINE double tanh_(double x) { return std::tanh(x); }

}  // namespace seqmnist
