// Soft-DTW forward/backward for a group of L pairs at once, one pair per SIMD
// lane (L = 64 bytes / sizeof(T): 16 float or 8 double). Used by soft_dtw.cpp
// for every full group of L pairs; conventions (band rule, lengths, <E, C>)
// are those of soft_dtw.cpp and python/vtalign/reference/soft_dtw.py.
//
// Why lanes across pairs: vectorising along an anti-diagonal (the per-pair
// path) pays for strided cost gathers, short diagonals near the corners and
// per-diagonal bookkeeping. Across pairs every cell is one full-width vector
// op on contiguous data, whatever the lengths or the band.
//
// State: the soft-min weights each cell gave its up (I−1, J) and left (I, J−1)
// predecessors, not R (derivation: docs/soft_dtw.md, "The state between forward
// and backward"). The backward is then a few FMAs per cell and no exp: on a
// 512-bit FMA port an exp costs about as much as the whole weighted sum.
//
// Layout. The group's state slab is W[N][M+1][2][L] (lane innermost; column
// M+1 stays 0 so the backward can read one column past any lane). R lives in a
// ring of K+1 rows of (mmax+2)·L; costs are transposed row by row into a ring
// of the same shape, so no [B, N, M] copy of C is made.
//
// Ragged lengths and the band are per-lane column intervals [lo, hi] per row:
// cells outside get R = +inf, W = 0 and E = 0, so lanes of different shapes
// share one sweep over the group's largest extent.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fastmath.h"
#include "lane_transpose.h"
#include "simd512.h"

namespace vtalign {
namespace sdtw_lanes {

using fastmath::kInf;

template <typename T>
constexpr int kLanes = 64 / static_cast<int>(sizeof(T));
constexpr int kRows = 4;
// The kernels below are written for 512-bit vectors; builds without AVX-512 send
// every pair down the per-pair diagonal path instead (soft_dtw_pair.h: lane_groups),
// which vectorises at any width (on AVX2 it was 10x faster than these lanes).
#if VTALIGN_SIMD512
constexpr bool kEnabled = true;
#else
constexpr bool kEnabled = false;
#endif  // rows swept together on a skewed front (independent chains)

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The exp-domain forwards (here and soft_dtw_pair.h) keep P = 0 as mantissa 0 and this
// exponent: a finite stand-in for −inf, so that kZeroExp − kZeroExp is 0, not NaN.
template <typename T>
constexpr T kZeroExp = sizeof(T) == 4 ? T(-1e30) : T(-1e300);

// Exponents are integers held in T, exact while |log2 K| summed along any path stays
// below 2^(mantissa bits): a bound on |log2 K| = |C|·log2(e)/γ per cell for an n x m grid.
template <typename T>
inline T exp_domain_limit(int64_t n, int64_t m) {
  return T(1ll << (std::numeric_limits<T>::digits - 1)) / static_cast<T>(n + m + 2) - T(2);
}

// State elements per pair when the lane path is used (the per-pair path needs (N+2)(M+2)).
inline int64_t state_slots(int64_t N, int64_t M) { return 2 * N * (M + 1); }

template <typename T>
struct Group {
  static constexpr int L = kLanes<T>;
  int64_t N = 0, M = 0, rs = 0;  // padded sizes and C's row stride
  int64_t n[L], m[L], W[L];      // lengths; band half-width scaled (-1: no band)
  int64_t nmax = 0, mmax = 0;
  const T* c[L];
  T gamma[L], inv2[L];  // γ, log2(e)/γ
  // The stored matrix may be a GEMM product d, with the cost c = alpha·d + xn_I + yn_J
  // + offset (clamped at 0 when clamp): folding the norms in here saves the caller
  // passes over [B, N, M]. Identity by default.
  T alpha = T(1), offset = T(0);
  bool clamp = false;
  const T* xn[L] = {};            // [n] per lane, or all null
  std::vector<T> yn_lanes;         // yn interleaved [(mmax+2)][L], empty when no yn

  void init(const T* const* cptr, const int64_t* xl, const int64_t* yl, const T* gm, int64_t N_,
            int64_t M_, int64_t rs_, int64_t band) {
    N = N_;
    M = M_;
    rs = rs_;
    nmax = mmax = 0;
    for (int l = 0; l < L; ++l) {
      n[l] = xl[l];
      m[l] = yl[l];
      c[l] = cptr[l];
      gamma[l] = gm[l];
      inv2[l] = static_cast<T>(fastmath::kLog2e / static_cast<double>(gm[l]));
      const int64_t lo = std::min(n[l], m[l]), hi = std::max(n[l], m[l]);
      W[l] = (band >= 0 && lo > 1) ? std::min(band, hi) * (lo - 1) : -1;
      nmax = std::max(nmax, n[l]);
      mmax = std::max(mmax, m[l]);
    }
    alpha = T(1);
    offset = T(0);
    clamp = false;
    std::fill(xn, xn + L, nullptr);
    yn_lanes.clear();
  }

  // Cost = alpha·stored + xn[l][I-1] + yn[l][J-1] + offset (clamped at 0 if clamp);
  // xn_rows / yn_rows: per-lane pointers, or nullptr for none.
  void set_transform(T alpha_, T offset_, bool clamp_, const T* const* xn_rows, const T* const* yn_rows) {
    alpha = alpha_;
    offset = offset_;
    clamp = clamp_;
    for (int l = 0; l < L; ++l) xn[l] = xn_rows ? xn_rows[l] : nullptr;
    yn_lanes.clear();
    if (yn_rows) {
      yn_lanes.assign((mmax + 2) * L, T(0));
      transpose::rows_to_lanes<T, L>(yn_rows, mmax, yn_lanes.data() + L);
    }
  }
  bool identity() const { return alpha == T(1) && offset == T(0) && !clamp && !xn[0] && yn_lanes.empty(); }
  int64_t wrow() const { return (M + 1) * 2 * L; }  // one row of the W slab
  int64_t ring_row() const { return (mmax + 2) * L; }

  // Columns [lo, hi] of row I (1-based) inside lane l's grid and band; lo > hi when none.
  // Stored as T so the lane mask is a compare in the same vector width as the data.
  void row_interval(int64_t I, T* lo, T* hi) const {
    for (int l = 0; l < L; ++l) {
      int64_t a = 1, b = m[l];
      if (I > n[l]) {
        b = 0;
      } else if (W[l] >= 0) {
        // |(I-1)(m-1) - (J-1)(n-1)| <= W  <=>  J-1 in [ceil((A-W)/(n-1)), floor((A+W)/(n-1))]
        const int64_t A = (I - 1) * (m[l] - 1), d = n[l] - 1;
        a = std::max<int64_t>(a, 1 + ceil_div(A - W[l], d));
        b = std::min<int64_t>(b, 1 + floor_div(A + W[l], d));
      }
      lo[l] = static_cast<T>(a);
      hi[l] = static_cast<T>(b);
    }
  }

  // Row I of C (1-based; C[I-1, J-1] at column J) interleaved into dst[(mmax+2)*L].
  void load_costs(int64_t I, T* dst) const {
    std::fill(dst, dst + L, T(0));
    std::fill(dst + (mmax + 1) * L, dst + (mmax + 2) * L, T(0));
    const T* src[L];
    for (int l = 0; l < L; ++l) src[l] = c[l] + (I - 1) * rs;
    transpose::rows_to_lanes<T, L>(src, mmax, dst + L);
    if (identity()) return;
    T base[L];
    for (int l = 0; l < L; ++l) base[l] = offset + (xn[l] ? xn[l][I - 1] : T(0));
    const T* yv = yn_lanes.empty() ? nullptr : yn_lanes.data();
    const T a = alpha, lo = clamp ? T(0) : -kInf<T>;
    for (int64_t J = 1; J <= mmax; ++J) {
      T* d = dst + J * L;
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        const T v = a * d[l] + base[l] + (yv ? yv[J * L + l] : T(0));
        d[l] = v > lo ? v : lo;
      }
    }
  }
};

// Scratch (elements) forward_group / backward_group need for a group.
template <typename T>
int64_t forward_work(const Group<T>& g) {
  return 4 * (kRows + 1) * g.ring_row();
}
template <typename T>
int64_t backward_work(const Group<T>& g) {
  return (kRows + 2) * g.ring_row() + g.wrow();
}

#if VTALIGN_SIMD512
// ---------------------------------------------------------------- forward
// Log-domain cell (I, J) for every lane: up[−L..), up, left = R at (I−1,J−1), (I−1,J),
// (I,J−1). Writes R and the weights towards the up and left predecessors. Explicit
// 512-bit vectors (csrc/simd512.h): no division, one blend per select.
template <typename T, bool kWeights>
inline void fwd_cells_v(const Group<T>& g, const simd::LogTable<T>& tb, const T* __restrict__ up,
                        const T* __restrict__ left, const T* __restrict__ cc, const T* __restrict__ lo,
                        const T* __restrict__ hi, T TJ, T* __restrict__ out, T* __restrict__ w) {
  using O = simd::V<T>;
  constexpr int L = kLanes<T>;
  const auto x = O::load(up - L), y = O::load(up), z = O::load(left);
  // sorted branch-free: softmin = mn − γ·log(1 + a + b), a, b = e^{(mn − md)/γ}, e^{(mn − mx)/γ}
  const auto lo_xy = O::min(x, y), hi_xy = O::max(x, y);
  const auto mn = O::min(lo_xy, z), mx = O::max(hi_xy, z), md = O::max(lo_xy, O::min(hi_xy, z));
  const auto inv2 = O::load(g.inv2), one = O::set1(T(1)), inf = O::set1(kInf<T>);
  const auto a = simd::exp2_nonpos<T>(O::mul(O::sub(mn, md), inv2));
  const auto b = simd::exp2_nonpos<T>(O::mul(O::sub(mn, mx), inv2));
  const auto s3 = O::add(O::add(one, a), b);
  const auto r = O::add(O::load(cc), O::fnmadd(O::load(g.gamma), simd::log_pos<T>(s3, tb), mn));
  const auto tj = O::set1(TJ);
  const auto ok = O::ge(tj, O::load(lo)) & O::le(tj, O::load(hi)) & O::lt(mn, inf);
  O::store(out, O::sel(ok, r, inf));
  if (kWeights) {
    const auto rinv = simd::recip<T>(s3);
    // each predecessor's weight is its own e^{(mn − value)/γ}: equal values, equal weights
    const auto wy = O::sel(O::eq(y, mn), one, O::sel(O::eq(y, md), a, b));
    const auto wz = O::sel(O::eq(z, mn), one, O::sel(O::eq(z, md), a, b));
    O::store(w, O::maskz(ok, O::mul(wy, rinv)));
    O::store(w + L, O::maskz(ok, O::mul(wz, rinv)));
  }
}

// The forward's skewed front over a block of `rows` rows: at step t, row k of the
// block handles column t − k, whose up neighbour row k − 1 finished one step earlier,
// so the rows are independent chains in flight together.
template <typename F>
inline void forward_front(int rows, int64_t mmax, F&& cell) {
  for (int64_t t = 1; t <= mmax + rows - 1; ++t)
    for (int k = 0; k < rows; ++k) {
      const int64_t J = t - k;
      if (J >= 1 && J <= mmax) cell(k, J);
    }
}

// ------------------------------------------------ forward in the exp domain
// Why: in the log domain every cell pays two exps, a log and a reciprocal, all on
// the row's dependency chain. In the exp domain, P = e^{−R/γ}, the recurrence is
//   P[I,J] = K[I,J]·(P[I−1,J−1] + P[I−1,J] + P[I,J−1]),  K = e^{−C/γ},
// three adds and a multiply; K is one exp per cell computed row by row off the
// chain. P spans far more than a float's exponent range (adjacent cells differ by
// e^{−C/γ}), so each P is kept as a mantissa in [1, 2) and a separate exponent
// (an integer held in T): a sum aligns its terms to the largest exponent with
// vscalef. The soft-min weights are the aligned terms over their sum, the same
// weights the log-domain cell stores, so the backward is unchanged. Rounding: one
// ulp per add and per K, as the log domain's one ulp of R per cell, but relative to
// P, i.e. absolute in R (γ·ulp instead of ulp(R)).
//
// Exponents stay exact integers while |log2 K|·(n + m) < 2^(mantissa bits); a row
// whose costs break that bound (tiny γ next to large costs) makes the group fall
// back to the log-domain sweep. P = 0 (outside the grid or unreachable) has
// mantissa 0 and exponent kZeroExp, a finite stand-in for −inf (so that
// kZeroExp − kZeroExp is 0, not NaN).
template <typename T, bool kWeights>
inline void fwd_cells_exp(const T* __restrict__ mup, const T* __restrict__ kup, const T* __restrict__ mleft,
                          const T* __restrict__ kleft, const T* __restrict__ km, const T* __restrict__ kn,
                          const T* __restrict__ lo, const T* __restrict__ hi, T TJ, T* __restrict__ mout,
                          T* __restrict__ kout, T* __restrict__ w) {
  using O = simd::V<T>;
  constexpr int L = kLanes<T>;
  const auto md = O::load(mup - L), kd = O::load(kup - L), mu = O::load(mup), ku = O::load(kup);
  const auto ml = O::load(mleft), kl = O::load(kleft);
  const auto kmax = O::max(O::max(kd, ku), kl);
  const auto td = O::scalef(md, O::sub(kd, kmax)), tu = O::scalef(mu, O::sub(ku, kmax));
  const auto tl = O::scalef(ml, O::sub(kl, kmax));
  const auto s = O::add(O::add(td, tu), tl);  // in [1, 6) when reachable: the largest term's mantissa
  const auto p = O::mul(s, O::load(km));
  const auto tj = O::set1(TJ);
  const auto ok = O::ge(tj, O::load(lo)) & O::le(tj, O::load(hi)) & O::lt(O::set1(T(0)), s);
  O::store(mout, O::maskz(ok, O::mant12(p)));
  O::store(kout, O::sel(ok, O::add(O::add(kmax, O::load(kn)), O::getexp(p)), O::set1(kZeroExp<T>)));
  if (kWeights) {
    const auto rinv = simd::recip<T>(s);
    O::store(w, O::maskz(ok, O::mul(tu, rinv)));
    O::store(w + L, O::maskz(ok, O::mul(tl, rinv)));
  }
}

// K for row I as mantissa (into the cost ring row, in place) and exponent (kn);
// false when a cost breaks the exactness bound `limit` on |log2 K|.
template <typename T>
inline bool row_factors(const Group<T>& g, int64_t I, T* cr, T* kn, T limit) {
  using O = simd::V<T>;
  constexpr int L = kLanes<T>;
  g.load_costs(I, cr);
  const auto neg = O::mul(O::load(g.inv2), O::set1(T(-1)));
  auto big = O::set1(T(0));
  const int64_t mmax = g.mmax;  // a local: vector stores may alias g, so g.mmax would be reloaded
  for (int64_t J = 1; J <= mmax; ++J) {
    const auto t = O::mul(O::load(cr + J * L), neg);  // log2 K = −C·log2(e)/γ
    big = O::max(big, O::abs(t));
    const auto f = O::reduce(t);
    O::store(kn + J * L, O::sub(t, f));
    O::store(cr + J * L, fastmath::horner<O>(fastmath::Exp2Poly<T>::c, f));
  }
  return O::hmax(big) <= limit;
}

template <typename T, bool kWeights>
bool forward_group_exp(const Group<T>& g, T* Wslab, T* values, T* work) {
  constexpr int L = kLanes<T>, K = kRows, RING = K + 1;
  const int64_t cw = g.ring_row(), ww = g.wrow();
  T* const rings[4] = {work, work + RING * cw, work + 2 * RING * cw, work + 3 * RING * cw};
  auto at = [&](int r, int64_t I) { return rings[r] + (I % RING) * cw; };  // 0: m, 1: k of P; 2, 3: of K
  const T kz = kZeroExp<T>;
  const T limit = exp_domain_limit<T>(g.nmax, g.mmax);
  std::fill(at(0, 0), at(0, 0) + cw, T(0));
  std::fill(at(1, 0), at(1, 0) + cw, kz);
  std::fill(at(0, 0), at(0, 0) + L, T(1));  // P[0, 0] = 1
  std::fill(at(1, 0), at(1, 0) + L, T(0));
  T lo[K][L], hi[K][L];
  for (int64_t I0 = 1; I0 <= g.nmax; I0 += K) {
    const int rows = static_cast<int>(std::min<int64_t>(K, g.nmax - I0 + 1));
    for (int k = 0; k < rows; ++k) {
      const int64_t I = I0 + k;
      if (!row_factors(g, I, at(2, I), at(3, I), limit)) return false;
      g.row_interval(I, lo[k], hi[k]);
      std::fill(at(0, I), at(0, I) + L, T(0));
      std::fill(at(1, I), at(1, I) + L, kz);
      if (kWeights) {
        T* wr = Wslab + (I - 1) * ww;
        std::fill(wr + g.mmax * 2 * L, wr + ww, T(0));
      }
    }
    T *pm[K + 1], *pk[K + 1], *fm[K], *fk[K], *wr[K];
    for (int k = 0; k <= rows; ++k) {
      pm[k] = at(0, I0 - 1 + k);
      pk[k] = at(1, I0 - 1 + k);
    }
    for (int k = 0; k < rows; ++k) {
      fm[k] = at(2, I0 + k);
      fk[k] = at(3, I0 + k);
      wr[k] = kWeights ? Wslab + (I0 + k - 1) * ww - 2 * L : nullptr;
    }
    forward_front(rows, g.mmax, [&](int k, int64_t J) {
      fwd_cells_exp<T, kWeights>(pm[k] + J * L, pk[k] + J * L, pm[k + 1] + (J - 1) * L, pk[k + 1] + (J - 1) * L,
                                 fm[k] + J * L, fk[k] + J * L, lo[k], hi[k], static_cast<T>(J), pm[k + 1] + J * L,
                                 pk[k + 1] + J * L, kWeights ? wr[k] + J * 2 * L : nullptr);
    });
    for (int k = 0; k < rows; ++k)  // R = −γ·ln P = −γ·ln2·(exponent + log2 mantissa)
      for (int l = 0; l < L; ++l)
        if (g.n[l] == I0 + k) {
          const double m = pm[k + 1][g.m[l] * L + l], e = pk[k + 1][g.m[l] * L + l];
          values[l] = m > 0 ? static_cast<T>(-static_cast<double>(g.gamma[l]) * fastmath::kLn2 * (e + std::log2(m)))
                            : kInf<T>;
        }
  }
  if (kWeights) std::fill(Wslab + g.nmax * ww, Wslab + g.N * ww, T(0));
  return true;
}

// Wslab: the group's [N][M+1][2][L] state (unused without kWeights: values only);
// values[l] = R[n_l, m_l]. `work` holds forward_work(g) elements.
template <typename T, bool kWeights = true>
void forward_group(const Group<T>& g, T* Wslab, T* values, T* work) {
  if (forward_group_exp<T, kWeights>(g, Wslab, values, work)) return;
  constexpr int L = kLanes<T>, K = kRows, RING = K + 1;
  const int64_t cw = g.ring_row(), ww = g.wrow();
  T* rring = work;
  T* cring = work + RING * cw;
  auto rrow = [&](int64_t I) { return rring + (I % RING) * cw; };
  auto crow = [&](int64_t I) { return cring + (I % RING) * cw; };
  // Border: R[0,0] = 0, the rest of row 0 +inf; column 0 of every row +inf.
  std::fill(rrow(0), rrow(0) + cw, kInf<T>);
  std::fill(rrow(0), rrow(0) + L, T(0));
  T lo[K][L], hi[K][L];
  const simd::LogTable<T>& tb = simd::LogTable<T>::get();
  for (int64_t I0 = 1; I0 <= g.nmax; I0 += K) {
    const int rows = static_cast<int>(std::min<int64_t>(K, g.nmax - I0 + 1));
    for (int k = 0; k < rows; ++k) {
      const int64_t I = I0 + k;
      g.load_costs(I, crow(I));
      g.row_interval(I, lo[k], hi[k]);
      std::fill(rrow(I), rrow(I) + L, kInf<T>);
      if (kWeights) {  // columns past the sweep: zero weight
        T* wr = Wslab + (I - 1) * ww;
        std::fill(wr + g.mmax * 2 * L, wr + ww, T(0));
      }
    }
    T* rr[K + 1];  // R rows I0-1 .. I0+rows-1
    T* cr[K];
    T* wr[K];
    for (int k = 0; k <= rows; ++k) rr[k] = rrow(I0 - 1 + k);
    for (int k = 0; k < rows; ++k) {
      cr[k] = crow(I0 + k);
      wr[k] = kWeights ? Wslab + (I0 + k - 1) * ww - 2 * L : nullptr;
    }
    forward_front(rows, g.mmax, [&](int k, int64_t J) {
      fwd_cells_v<T, kWeights>(g, tb, rr[k] + J * L, rr[k + 1] + (J - 1) * L, cr[k] + J * L, lo[k], hi[k],
                               static_cast<T>(J), rr[k + 1] + J * L, kWeights ? wr[k] + J * 2 * L : nullptr);
    });
    for (int k = 0; k < rows; ++k) {
      const int64_t I = I0 + k;
      for (int l = 0; l < L; ++l)
        if (g.n[l] == I) values[l] = rrow(I)[g.m[l] * L + l];
    }
  }
  // rows past the sweep are never read; define them (outputs are deterministic)
  if (kWeights) std::fill(Wslab + g.nmax * ww, Wslab + g.N * ww, T(0));
}

// --------------------------------------------------------------- backward
// E[I,J] = E[I+1,J]·w_up(I+1,J) + E[I,J+1]·w_left(I,J+1) + E[I+1,J+1]·w_diag(I+1,J+1),
// E[n,m] = 1. E rows live in a ring of K+1 rows; each finished row (times scale[l])
// goes to lane l's [N, M] output, and ec[l] = <E, C> over lane l's grid (ec may be null).
// `work` holds backward_work(g) elements.
// wd: W at (I+1, J) (its up, left at [0, L) and [L, 2L); (I+1, J+1) follows at 2L);
// wr: W at (I, J+1); ed: E at (I+1, J) and (I+1, J+1); er: E at (I, J+1)
template <typename T>
inline void bwd_cells_v(const T* __restrict__ wd, const T* __restrict__ wr, const T* __restrict__ ed,
                        const T* __restrict__ er, const T* __restrict__ lo, const T* __restrict__ hi,
                        const T* __restrict__ endJ, T TJ, T* __restrict__ out) {
  using O = simd::V<T>;
  constexpr int L = kLanes<T>;
  const auto one = O::set1(T(1));
  const auto w_diag = O::max(O::sub(O::sub(one, O::load(wd + 2 * L)), O::load(wd + 3 * L)), O::set1(T(0)));
  const auto v =
      O::fmadd(O::load(ed + L), w_diag, O::fmadd(O::load(er), O::load(wr + L), O::mul(O::load(ed), O::load(wd))));
  const auto tj = O::set1(TJ);
  const auto inside = O::ge(tj, O::load(lo)) & O::le(tj, O::load(hi)) & O::ge(v, O::set1(fastmath::Fp<T>::kTiny));
  O::store(out, O::sel(O::eq(tj, O::load(endJ)), one, O::maskz(inside, v)));
}

// rowsum/colsum (optional, nullptr to skip): lane l's Σ_J and Σ_I of its output rows.
template <typename T>
void backward_group(const Group<T>& g, const T* Wslab, const T* scale, T* const* Eout, double* ec,
                    T* work, T* const* rowsum = nullptr, T* const* colsum = nullptr) {
  constexpr int L = kLanes<T>, K = kRows, RING = K + 1;
  const int64_t cw = g.ring_row(), ww = g.wrow();
  T* ering = work;
  T* wzero = work + RING * cw;  // the W row below the last one: no mass comes from there
  std::fill(wzero, wzero + ww, T(0));
  T* cscratch = wzero + ww;  // one interleaved row of C, for <E, C>
  T mlen[L];
  for (int l = 0; l < L; ++l) mlen[l] = static_cast<T>(g.m[l]);
  auto erow = [&](int64_t I) { return ering + (I % RING) * cw; };
  auto wrow = [&](int64_t I) { return I <= g.nmax ? Wslab + (I - 1) * ww : wzero; };
  std::fill(erow(g.nmax + 1), erow(g.nmax + 1) + cw, T(0));
  // output rows past the group's extent
  for (int l = 0; l < L; ++l) std::fill(Eout[l] + g.nmax * g.M, Eout[l] + g.N * g.M, T(0));
  if (rowsum)
    for (int l = 0; l < L; ++l) {
      std::fill(rowsum[l] + g.nmax, rowsum[l] + g.N, T(0));
      std::fill(colsum[l], colsum[l] + g.M, T(0));
    }
  double acc[L] = {};
  T lo[K][L], hi[K][L], endJ[K][L];  // endJ: lane l's end column if its end is on that row, else 0
  for (int64_t Ib = g.nmax; Ib >= 1; Ib -= K) {
    const int rows = static_cast<int>(std::min<int64_t>(K, Ib));
    for (int k = 0; k < rows; ++k) {
      const int64_t I = Ib - k;
      g.row_interval(I, lo[k], hi[k]);
      std::fill(erow(I) + (g.mmax + 1) * L, erow(I) + cw, T(0));
      for (int l = 0; l < L; ++l) endJ[k][l] = g.n[l] == I ? static_cast<T>(g.m[l]) : T(0);
    }
    const T* wb[K + 1];  // W rows Ib+1 .. Ib-rows+1, shifted so wb[k] + J·2L is column J
    T* eb[K + 1];        // E rows, same order
    for (int k = 0; k <= rows; ++k) {
      wb[k] = wrow(Ib + 1 - k) - 2 * L;
      eb[k] = erow(Ib + 1 - k);
    }
    // row Ib-k handles column t+k: the row below is one step ahead of it
    const int64_t mmax = g.mmax;  // a local: vector stores may alias g
    for (int64_t t = mmax; t >= 2 - rows; --t) {
      for (int k = 0; k < rows; ++k) {
        const int64_t J = t + k;
        if (J < 1 || J > mmax) continue;
        bwd_cells_v<T>(wb[k] + J * 2 * L, wb[k + 1] + (J + 1) * 2 * L, eb[k] + J * L, eb[k + 1] + (J + 1) * L,
                       lo[k], hi[k], endJ[k], static_cast<T>(J), eb[k + 1] + J * L);
      }
    }
    // finished rows: <E, C> over each lane's own grid, then to each lane's output
    // (in that order: the output may alias C, whose row I is then read for the last time)
    for (int k = 0; k < rows; ++k) {
      const int64_t I = Ib - k;
      const T* e = erow(I) + L;
      if (ec) {  // <E, C> is only wanted for a γ gradient; it costs a second pass over C
        g.load_costs(I, cscratch);
        const T* c = cscratch + L;
        T a[L] = {};
        for (int64_t J = 0; J < g.mmax; ++J) {
          const T TJ = static_cast<T>(J + 1);
#pragma omp simd
          for (int l = 0; l < L; ++l) a[l] += TJ <= mlen[l] && I <= g.n[l] ? e[J * L + l] * c[J * L + l] : T(0);
        }
        for (int l = 0; l < L; ++l) acc[l] += static_cast<double>(a[l]);
      }
      T* dst[L];
      for (int l = 0; l < L; ++l) dst[l] = Eout[l] + (I - 1) * g.M;
      transpose::lanes_to_rows<T, L>(e, g.mmax, dst, scale);  // zero past each lane's grid already
      for (int l = 0; l < L; ++l) std::fill(dst[l] + g.mmax, dst[l] + g.M, T(0));
      if (rowsum)  // the row is in L1 now; the GEMM-based gradient needs these sums
        for (int l = 0; l < L; ++l) {
          const T* d = dst[l];
          T* cs = colsum[l];
          T r = T(0);
#pragma omp simd reduction(+ : r)
          for (int64_t J = 0; J < g.mmax; ++J) {
            r += d[J];
            cs[J] += d[J];
          }
          rowsum[l][I - 1] = r;
        }
    }
  }
  if (ec)
    for (int l = 0; l < L; ++l) ec[l] = acc[l];
}

#endif  // VTALIGN_SIMD512

}  // namespace sdtw_lanes
}  // namespace vtalign
