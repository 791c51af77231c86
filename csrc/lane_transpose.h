// Moving L per-pair rows into one lane-interleaved row and back, for the lane
// path of soft-DTW (soft_dtw_lanes.h): dst[j*L + l] = src[l][j] and the
// inverse. Done element by element this costs two scalar memory ops per cell,
// as much as the soft-DTW backward itself; with AVX-512 it is an L×L register
// transpose per tile (log2(L) butterfly stages of two-source permutes).
#pragma once
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace vtalign {
namespace transpose {

#if defined(__AVX512F__)
// Butterfly transpose of 16 rows of 16 floats (8 of 8 doubles): at block size b,
// rows i and i+b (i & b == 0) exchange their off-diagonal b-blocks.
template <int B>
inline void butterfly_ps(__m512* r) {
  alignas(64) int lo[16], hi[16];
  for (int j = 0; j < 16; ++j) {
    lo[j] = (j & B) ? 16 + j - B : j;
    hi[j] = (j & B) ? 16 + j : j + B;
  }
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
  for (int i = 0; i < 16; ++i) {
    if (i & B) continue;
    const __m512 a = r[i], b = r[i + B];
    r[i] = _mm512_permutex2var_ps(a, ilo, b);
    r[i + B] = _mm512_permutex2var_ps(a, ihi, b);
  }
}
inline void transpose16(__m512* r) {
  butterfly_ps<8>(r);
  butterfly_ps<4>(r);
  butterfly_ps<2>(r);
  butterfly_ps<1>(r);
}
template <int B>
inline void butterfly_pd(__m512d* r) {
  alignas(64) int64_t lo[8], hi[8];
  for (int j = 0; j < 8; ++j) {
    lo[j] = (j & B) ? 8 + j - B : j;
    hi[j] = (j & B) ? 8 + j : j + B;
  }
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
  for (int i = 0; i < 8; ++i) {
    if (i & B) continue;
    const __m512d a = r[i], b = r[i + B];
    r[i] = _mm512_permutex2var_pd(a, ilo, b);
    r[i + B] = _mm512_permutex2var_pd(a, ihi, b);
  }
}
inline void transpose8(__m512d* r) {
  butterfly_pd<4>(r);
  butterfly_pd<2>(r);
  butterfly_pd<1>(r);
}

// Full tiles of L columns through registers; returns the first column not done.
inline int64_t rows_to_lanes_tiles(const float* const* src, int64_t cols, float* dst) {
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    __m512 r[16];
    for (int l = 0; l < 16; ++l) r[l] = _mm512_loadu_ps(src[l] + j);
    transpose16(r);
    for (int q = 0; q < 16; ++q) _mm512_storeu_ps(dst + (j + q) * 16, r[q]);
  }
  return j;
}
inline int64_t rows_to_lanes_tiles(const double* const* src, int64_t cols, double* dst) {
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    __m512d r[8];
    for (int l = 0; l < 8; ++l) r[l] = _mm512_loadu_pd(src[l] + j);
    transpose8(r);
    for (int q = 0; q < 8; ++q) _mm512_storeu_pd(dst + (j + q) * 8, r[q]);
  }
  return j;
}
inline int64_t lanes_to_rows_tiles(const float* src, int64_t cols, float* const* dst, const float* scale) {
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    __m512 r[16];
    for (int q = 0; q < 16; ++q) r[q] = _mm512_loadu_ps(src + (j + q) * 16);
    transpose16(r);
    for (int l = 0; l < 16; ++l) _mm512_storeu_ps(dst[l] + j, _mm512_mul_ps(r[l], _mm512_set1_ps(scale[l])));
  }
  return j;
}
inline int64_t lanes_to_rows_tiles(const double* src, int64_t cols, double* const* dst, const double* scale) {
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    __m512d r[8];
    for (int q = 0; q < 8; ++q) r[q] = _mm512_loadu_pd(src + (j + q) * 8);
    transpose8(r);
    for (int l = 0; l < 8; ++l) _mm512_storeu_pd(dst[l] + j, _mm512_mul_pd(r[l], _mm512_set1_pd(scale[l])));
  }
  return j;
}
#else
template <typename T>
inline int64_t rows_to_lanes_tiles(const T* const*, int64_t, T*) {
  return 0;
}
template <typename T>
inline int64_t lanes_to_rows_tiles(const T*, int64_t, T* const*, const T*) {
  return 0;
}
#endif

// dst[j*L + l] = src[l][j] for j in [0, cols).
template <typename T, int L>
inline void rows_to_lanes(const T* const* src, int64_t cols, T* dst) {
  static_assert(L * sizeof(T) == 64, "one lane group is one 64-byte line");
  for (int64_t j = rows_to_lanes_tiles(src, cols, dst); j < cols; ++j)
    for (int l = 0; l < L; ++l) dst[j * L + l] = src[l][j];
}

// dst[l][j] = src[j*L + l] * scale[l] for j in [0, cols).
template <typename T, int L>
inline void lanes_to_rows(const T* src, int64_t cols, T* const* dst, const T* scale) {
  static_assert(L * sizeof(T) == 64, "one lane group is one 64-byte line");
  for (int64_t j = lanes_to_rows_tiles(src, cols, dst, scale); j < cols; ++j)
    for (int l = 0; l < L; ++l) dst[l][j] = src[j * L + l] * scale[l];
}

}  // namespace transpose
}  // namespace vtalign
