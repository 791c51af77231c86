// 512-bit vectors for the soft-DTW lane kernels (csrc/soft_dtw_lanes.h), written
// with AVX-512 intrinsics. Why not leave it to the compiler: without -ffast-math
// GCC turns the soft-min's two divisions into vdivps/vdivpd (one every ~10 / ~16
// cycles on one port, more than the rest of the cell), and lowers the selects to
// mask-register round trips through general registers. Here a division is a
// 14-bit reciprocal estimate plus Newton steps, exp scales by 2^n with vscalef,
// and log reduces its argument with vgetmant/vgetexp; every select is one blend.
// The polynomials are those of fastmath.h (same tables, same Horner order).
#pragma once
#if defined(__AVX512F__)
#define VTALIGN_SIMD512 1
#include <immintrin.h>

#include <cmath>

#include "fastmath.h"

namespace vtalign {
namespace simd {

template <typename T>
struct V;

template <>
struct V<float> {
  using T = float;
  using R = __m512;
  using M = __mmask16;
  static constexpr int kNewton = 1;  // 2^-14 -> 2^-28 relative: below float's half ulp
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, R v) { _mm512_storeu_ps(p, v); }
  static R set1(T v) { return _mm512_set1_ps(v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }  // b when a is NaN
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }  // c − a·b
  static M lt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M le(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static M ge(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M eq(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static R sel(M m, R t, R f) { return _mm512_mask_blend_ps(m, f, t); }
  static R maskz(M m, R a) { return _mm512_maskz_mov_ps(m, a); }
  static R mask_add(R src, M m, R a, R b) { return _mm512_mask_add_ps(src, m, a, b); }
  static R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R scalef(R a, R n) { return _mm512_scalef_ps(a, n); }
  static R getexp(R a) { return _mm512_getexp_ps(a); }
  static R getmant(R a) { return _mm512_getmant_ps(a, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src); }
  static R rcp14(R a) { return _mm512_rcp14_ps(a); }
  static R reduce(R a) { return _mm512_reduce_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R mant12(R a) { return _mm512_getmant_ps(a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src); }
  static R abs(R a) { return _mm512_abs_ps(a); }
  static T hmax(R a) { return _mm512_reduce_max_ps(a); }
  // entry (top 4 mantissa bits of m in [1, 2)) of a 16-entry table
  static R lookup16(R m, const T* t) {
    const __m512i i = _mm512_srli_epi32(_mm512_castps_si512(m), 23 - 4);
    return _mm512_permutexvar_ps(i, _mm512_load_ps(t));
  }
};

template <>
struct V<double> {
  using T = double;
  using R = __m512d;
  using M = __mmask8;
  static constexpr int kNewton = 2;  // 2^-14 -> 2^-28 -> 2^-56
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, R v) { _mm512_storeu_pd(p, v); }
  static R set1(T v) { return _mm512_set1_pd(v); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R min(R a, R b) { return _mm512_min_pd(a, b); }
  static R max(R a, R b) { return _mm512_max_pd(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm512_fnmadd_pd(a, b, c); }
  static M lt(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static M le(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
  static M ge(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
  static M eq(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
  static R sel(M m, R t, R f) { return _mm512_mask_blend_pd(m, f, t); }
  static R maskz(M m, R a) { return _mm512_maskz_mov_pd(m, a); }
  static R mask_add(R src, M m, R a, R b) { return _mm512_mask_add_pd(src, m, a, b); }
  static R round(R a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R scalef(R a, R n) { return _mm512_scalef_pd(a, n); }
  static R getexp(R a) { return _mm512_getexp_pd(a); }
  static R getmant(R a) { return _mm512_getmant_pd(a, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src); }
  static R rcp14(R a) { return _mm512_rcp14_pd(a); }
  static R reduce(R a) { return _mm512_reduce_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R mant12(R a) { return _mm512_getmant_pd(a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src); }
  static R abs(R a) { return _mm512_abs_pd(a); }
  static T hmax(R a) { return _mm512_reduce_max_pd(a); }
  static R lookup16(R m, const T* t) {
    const __m512i i = _mm512_srli_epi64(_mm512_castpd_si512(m), 52 - 4);
    return _mm512_permutex2var_pd(_mm512_load_pd(t), i, _mm512_load_pd(t + 8));
  }
};

// 2^x for x <= 0 (the caller folds log2(e) into its scale); NaN and x below the
// normal range read as the bound, "zero" next to the 1 it is added to. The
// reduction f = x − round(x) is one vreduce, and 2^round(x) one vscalef.
template <typename T>
inline typename V<T>::R exp2_nonpos(typename V<T>::R x) {
  using O = V<T>;
  x = O::max(x, O::set1(fastmath::Fp<T>::kExp2Lo));
  const auto f = O::reduce(x);
  return O::scalef(fastmath::horner<O>(fastmath::Exp2Poly<T>::c, f), O::sub(x, f));
}

// 1/d for positive normal d, to within an ulp.
template <typename T>
inline typename V<T>::R recip(typename V<T>::R d) {
  using O = V<T>;
  const auto one = O::set1(T(1));
  auto r = O::rcp14(d);
  for (int i = 0; i < O::kNewton; ++i) r = O::fmadd(r, O::fnmadd(d, r, one), r);
  return r;
}

// Table for log_pos: for the 16 sixteenths of [1, 2), c ≈ 1/(interval midpoint) and
// −log(c) of that rounded c, so m·c − 1 is within ±1/31 of 0 and log(m) = log1p(m·c − 1) − log(c)
// holds exactly whatever the rounding of c.
template <typename T>
struct LogTable {
  alignas(64) T c[16];
  alignas(64) T neg_log_c[16];
  LogTable() {
    for (int i = 0; i < 16; ++i) {
      c[i] = static_cast<T>(1.0 / (1.0 + (i + 0.5) / 16.0));
      neg_log_c[i] = static_cast<T>(-std::log(static_cast<double>(c[i])));
    }
  }
  static const LogTable& get() {
    static const LogTable t;
    return t;
  }
};

// log1p(r) for |r| <= 1/31, Taylor coefficients (−1)^(k+1)/k from the top, ending
// in r²'s: log1p(r) = r + r²·P(r). Truncation below 1e-9 (float) / 3e-18 (double).
template <typename T>
struct Log1pSmall;
template <>
struct Log1pSmall<float> {
  static constexpr float c[] = {1.0f / 5.0f, -1.0f / 4.0f, 1.0f / 3.0f, -1.0f / 2.0f};
};
template <>
struct Log1pSmall<double> {
  static constexpr double c[] = {-1.0 / 10.0, 1.0 / 9.0, -1.0 / 8.0, 1.0 / 7.0, -1.0 / 6.0,
                                 1.0 / 5.0,   -1.0 / 4.0, 1.0 / 3.0, -1.0 / 2.0};
};

// log(s) for a positive normal s: s = m·2^e, m in [1, 2), then a table step and a
// short series (no division).
template <typename T>
inline typename V<T>::R log_pos(typename V<T>::R s, const LogTable<T>& tb) {
  using O = V<T>;
  const auto m = O::mant12(s);
  const auto e = O::getexp(s);
  const auto r = O::fmadd(m, O::lookup16(m, tb.c), O::set1(T(-1)));
  const auto q = O::fmadd(O::mul(r, r), fastmath::horner<O>(Log1pSmall<T>::c, r), r);
  return O::fmadd(e, O::set1(T(fastmath::kLn2)), O::add(q, O::lookup16(m, tb.neg_log_c)));
}

}  // namespace simd
}  // namespace vtalign
#endif
