// Branch-free e^x (x <= 0) and log(s) (s >= 1) written so GCC vectorises a loop
// that calls them (`omp simd`): no libm calls, no floor(), selects instead of
// branches. Shared by the soft-DTW kernels in csrc/.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
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
  static constexpr double kExp2Lo = -1022.0;  // and 2^x above this
};
template <>
struct Fp<float> {
  using I = int32_t;
  static constexpr float kTiny = 0x1p-80f;  // see Fp<double>::kTiny; 65536 cells sum to < 1e-19
  static constexpr int kMant = 23;
  static constexpr I kBias = 127;
  static constexpr float kExpLo = -87.0f;
  static constexpr float kExp2Lo = -126.0f;
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

// Scalar arithmetic for horner(); csrc/simd512.h has the 512-bit counterparts, so
// the scalar and vector kernels evaluate the same polynomials.
template <typename T>
struct ScalarOps {
  using R = T;
  static T set1(T v) { return v; }
  static T fmadd(T a, T b, T c) { return a * b + c; }
};

// c[0]·x^(K-1) + … + c[K-1], Horner from the top, unrolled at compile time (a loop
// here would have to be unrolled before GCC could vectorise the caller).
template <class Ops, typename T, size_t K, size_t... I>
inline typename Ops::R horner_impl(const T (&c)[K], typename Ops::R x, std::index_sequence<I...>) {
  typename Ops::R p = Ops::set1(c[0]);
  ((p = Ops::fmadd(p, x, Ops::set1(c[I + 1]))), ...);
  return p;
}
template <class Ops, typename T, size_t K>
inline typename Ops::R horner(const T (&c)[K], typename Ops::R x) {
  return horner_impl<Ops>(c, x, std::make_index_sequence<K - 1>{});
}

// Taylor coefficients 1/k!, highest first; on |r| <= ln2/2 the truncation error is
// below half an ulp (degree 13 for double, 7 for float).
template <typename T>
struct ExpTaylor;
template <>
struct ExpTaylor<double> {
  static constexpr double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                 1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
                                 1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
                                 1.0,                1.0};
};
template <>
struct ExpTaylor<float> {
  static constexpr float c[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                1.0f / 6.0f,    0.5f,          1.0f,          1.0f};
};
template <typename T>
inline T exp_poly(T r) {
  return horner<ScalarOps<T>>(ExpTaylor<T>::c, r);
}

// 2^f on |f| <= 1/2 to within an ulp, highest power first (float: 8.7e-8, double:
// 2.2e-16 relative). Least squares in relative error at 200 Chebyshev nodes, with the
// constant held at 1 so that 2^0 is exact; tools/fit_exp2.py reproduces them.
template <typename T>
struct Exp2Poly;
template <>
struct Exp2Poly<double> {
  static constexpr double c[] = {2.0730062824532603e-11, 4.534742349794377e-10, 7.059451929103074e-09,
                                 1.0177577885074175e-07, 1.3215471836564782e-06, 1.5252734872170671e-05,
                                 0.00015403530415639374, 0.0013333558145479918, 0.009618129107613546,
                                 0.05550410866482475,    0.24022650695910086,   0.6931471805599452,
                                 1.0};
};
template <>
struct Exp2Poly<float> {
  static constexpr float c[] = {0.00015370704932138324f, 0.0013399848248809576f, 0.009618373587727547f,
                                0.05550329014658928f,    0.24022647738456726f,   0.6931471824645996f,
                                1.0f};
};

// Cody–Waite split of ln 2 (hi has trailing zero bits, so n·hi is exact).
constexpr double kLn2Hi = 0.693145751953125, kLn2Lo = 1.42860682030941723212e-6;
constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;

// e^x for x <= 0 (x > 0 and NaN are read as 0, x below the normal range as the
// bound, whose exp is ~1e-308 / ~1e-38: "zero" next to the 1 it is added to).
template <typename T>
inline T exp_nonpos(T x) {
  using I = typename Fp<T>::I;
  x = x > Fp<T>::kExpLo ? x : Fp<T>::kExpLo;
  x = x < T(0) ? x : T(0);
  // round to nearest by adding 1.5·2^mant (no floor(): GCC vectorises this form)
  const T magic = T(1.5) * bits_to<T>(static_cast<I>((Fp<T>::kBias + Fp<T>::kMant)) << Fp<T>::kMant);
  const T n = (x * T(kLog2e) + magic) - magic;
  T r = x - n * T(kLn2Hi);
  r = r - n * T(kLn2Lo);
  const I k = static_cast<I>(n);
  const T scale = bits_to<T>(static_cast<I>((k + Fp<T>::kBias) << Fp<T>::kMant));
  return exp_poly(r) * scale;
}

// atanh series for log(m): log(m) = 2t·Σ t^{2k}/(2k+1), t = (m−1)/(m+1); the
// coefficients 1/(2k+1), highest first, in z = t². Enough terms for |t| <= 1/5
// (m in [3/4, 3/2], the vector reduction) to stay below half an ulp.
template <typename T>
struct LogAtanh;
template <>
struct LogAtanh<double> {
  static constexpr double c[] = {1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0,
                                 1.0 / 9.0,  1.0 / 7.0,  1.0 / 5.0,  1.0 / 3.0,  1.0};
};
template <>
struct LogAtanh<float> {
  static constexpr float c[] = {1.0f / 9.0f, 1.0f / 7.0f, 1.0f / 5.0f, 1.0f / 3.0f, 1.0f};
};
template <typename T>
inline T log_series(T z) {
  return horner<ScalarOps<T>>(LogAtanh<T>::c, z);
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
  return T(2) * t * log_series(t * t) + e * T(kLn2);
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
