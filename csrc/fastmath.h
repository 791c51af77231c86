// Branch-free e^x (x <= 0) and log(s) (s >= 1) written so GCC vectorises a loop
// that calls them (`omp simd`): no libm calls, no floor(), selects instead of
// branches. Shared by the soft-DTW kernels in csrc/.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace vtalign {
namespace fastmath {

template <typename T>
struct Fp;
template <>
struct Fp<double> {
  using I = int64_t;
  // Alignment mass below this is set to 0: it changes no result at this precision
  // (65536 such cells sum to < 1e-176), and its products with O(1) features in the
  // gradient GEMM would be subnormal, each a microcode assist (measured: 3x slower GEMM).
  static constexpr double kTiny = 0x1p-600;
  static constexpr int kMant = 52;
  static constexpr I kBias = 1023;
  static constexpr double kExpLo = -708.0;  // e^x stays a normal number above this
};
template <>
struct Fp<float> {
  using I = int32_t;
  static constexpr float kTiny = 0x1p-80f;  // see Fp<double>::kTiny; 65536 cells sum to < 1e-19
  static constexpr int kMant = 23;
  static constexpr I kBias = 127;
  static constexpr float kExpLo = -87.0f;
};

template <typename T>
inline T bits_to(typename Fp<T>::I b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <typename T>
inline typename Fp<T>::I to_bits(T v) {
  typename Fp<T>::I b;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

// Taylor coefficients 1/k!, Horner from the top; on |r| <= ln2/2 the truncation
// error is below half an ulp (degree 13 for double, 7 for float).
template <typename T>
inline T exp_poly(T r);
template <>
inline double exp_poly(double r) {
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  return p * r + 1.0;
}
template <>
inline float exp_poly(float r) {
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

// e^x for x <= 0 (x > 0 and NaN are read as 0, x below the normal range as the
// bound, whose exp is ~1e-308 / ~1e-38: "zero" next to the 1 it is added to).
template <typename T>
inline T exp_nonpos(T x) {
  using I = typename Fp<T>::I;
  x = x > Fp<T>::kExpLo ? x : Fp<T>::kExpLo;
  x = x < T(0) ? x : T(0);
  // round to nearest by adding 1.5·2^mant (no floor(): GCC vectorises this form)
  const T magic = T(1.5) * bits_to<T>(static_cast<I>((Fp<T>::kBias + Fp<T>::kMant)) << Fp<T>::kMant);
  const T n = (x * T(1.4426950408889634) + magic) - magic;
  T r = x - n * T(0.693145751953125);  // ln2 split hi/lo (Cody–Waite)
  r = r - n * T(1.42860682030941723212e-6);
  const I k = static_cast<I>(n);
  const T scale = bits_to<T>(static_cast<I>((k + Fp<T>::kBias) << Fp<T>::kMant));
  return exp_poly(r) * scale;
}

// atanh series for log(m), m in [sqrt(1/2), sqrt(2)]: t = (m−1)/(m+1), |t| < 0.172.
template <typename T>
inline T log_series(T z);
template <>
inline double log_series(double z) {
  double p = 1.0 / 21.0;
  p = p * z + 1.0 / 19.0;
  p = p * z + 1.0 / 17.0;
  p = p * z + 1.0 / 15.0;
  p = p * z + 1.0 / 13.0;
  p = p * z + 1.0 / 11.0;
  p = p * z + 1.0 / 9.0;
  p = p * z + 1.0 / 7.0;
  p = p * z + 1.0 / 5.0;
  p = p * z + 1.0 / 3.0;
  return p * z + 1.0;
}
template <>
inline float log_series(float z) {
  float p = 1.0f / 9.0f;
  p = p * z + 1.0f / 7.0f;
  p = p * z + 1.0f / 5.0f;
  p = p * z + 1.0f / 3.0f;
  return p * z + 1.0f;
}

// log(s) for a positive normal s (here s in [1, 3]).
template <typename T>
inline T log_pos(T s) {
  using I = typename Fp<T>::I;
  const I b = to_bits(s);
  const I mant_mask = (I(1) << Fp<T>::kMant) - 1;
  T e = static_cast<T>((b >> Fp<T>::kMant) - Fp<T>::kBias);
  T m = bits_to<T>((b & mant_mask) | (Fp<T>::kBias << Fp<T>::kMant));
  const bool big = m > T(1.4142135623730951);
  m = big ? m * T(0.5) : m;
  e = big ? e + T(1) : e;
  const T t = (m - T(1)) / (m + T(1));
  return T(2) * t * log_series(t * t) + e * T(0.6931471805599453);
}

template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// Subnormal results (soft-min weights and alignment mass far below 1e-38 /
// 1e-308, next to terms of order 1) cost a microcode assist each on x86, which
// made whole soft-DTW sweeps several times slower. Inside a kernel they are
// flushed to zero (FTZ and DAZ); the caller's mode is restored on exit.
struct FlushSubnormals {
#if defined(__SSE__)
  unsigned saved;
  FlushSubnormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;
};
}  // namespace fastmath
}  // namespace vtalign
