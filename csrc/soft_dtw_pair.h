// Per-pair soft-DTW kernels (anti-diagonal layout) and the batch helpers shared
// by the drivers in soft_dtw.cpp (custom-op forward/backward) and
// soft_dtw_fused.cpp (fused forward+backward). DESIGN.md §3.4; rule and
// conventions in python/vtalign/reference/soft_dtw.py.
//
// Layout. Each pair's DP matrix is bordered to (n+2) x (m+2) (row/column 0 is
// the +inf border of the recurrence, row n+1/column m+1 the border the backward
// recurrence reads) and stored anti-diagonal by anti-diagonal: diagonal
// D = I + J is one contiguous run indexed by I. Every cell of a diagonal depends
// only on the two previous diagonals, so the inner loop over I has no carried
// dependency and contiguous loads/stores: it is written branch-free, with our
// own polynomial exp/log (no libm calls), so the compiler vectorises it
// (`omp simd`). The cost is read along the diagonal in place (a strided gather;
// each cache line serves 8-16 consecutive diagonals), and the backward keeps
// only three diagonals of E and of C alive, writing each finished diagonal of E
// straight into the [N, M] output: memory is R plus O(N) per thread.
//
// Soft-min: the three arguments are sorted branch-free (min, median, max), so
// softmin = min − γ·log(1 + e^{(min−med)/γ} + e^{(min−max)/γ}): two exps and one
// log of a number in [1, 3]. All +inf gives +inf (never NaN).
//
// Threads: OpenMP across pairs; when there are fewer pairs than threads, the
// threads split each diagonal instead (one barrier per diagonal).
//
// Band (integer rule, same on every backend): interior cell (I, J), 1-based, is
// inside iff min(n,m) == 1 or |(I−1)(m−1) − (J−1)(n−1)| <= w·(min(n,m)−1). On a
// diagonal that is |α·I − β| <= W with α = n+m−2, so the band is one interval
// of I per diagonal; cells just outside it are set to +inf (R) / 0 (E), which is
// all the neighbouring diagonals ever read.
#pragma once
#include <omp.h>
#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastmath.h"
#include "soft_dtw_lanes.h"

namespace vtalign {
namespace sdtw_pair {

namespace py = pybind11;
using namespace vtalign::fastmath;
namespace lanes = vtalign::sdtw_lanes;

// ------------------------------------------------------------- geometry
inline int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// One pair's bordered (n+2) x (m+2) matrix in anti-diagonal order.
struct Geom {
  int64_t n = 0, m = 0;
  int64_t band = -1;            // w, or -1 for none
  int64_t alpha = 0, W = 0;     // band on a diagonal: |alpha*I - beta(D)| <= W
  std::vector<int64_t> base;    // cell (I, D-I) lives at base[D] + I

  void init(int64_t n_, int64_t m_, int64_t w) {
    n = n_;
    m = m_;
    band = (w >= 0 && std::min(n, m) > 1) ? w : -1;
    alpha = n + m - 2;
    W = band >= 0 ? std::min(band, std::max(n, m)) * (std::min(n, m) - 1) : 0;
    base.resize(n + m + 3);
    int64_t off = 0;
    for (int64_t D = 0; D <= n + m + 2; ++D) {
      const int64_t lo = std::max<int64_t>(0, D - (m + 1));
      const int64_t hi = std::min<int64_t>(n + 1, D);
      base[D] = off - lo;
      off += hi - lo + 1;
    }
  }
  int64_t size() const { return (n + 2) * (m + 2); }
  int64_t at(int64_t I, int64_t J) const { return base[I + J] + I; }
  // Interior cells of diagonal D inside the band: [a, b] (a > b when empty).
  void range(int64_t D, int64_t& a, int64_t& b) const {
    a = std::max<int64_t>(1, D - m);
    b = std::min<int64_t>(n, D - 1);
    if (band >= 0) {
      const int64_t beta = (m - 1) + (D - 1) * (n - 1);
      a = std::max(a, ceil_div(beta - W, alpha));
      b = std::min(b, floor_div(beta + W, alpha));
    }
  }
  int64_t lo(int64_t D) const { return std::max<int64_t>(0, D - (m + 1)); }
  int64_t hi(int64_t D) const { return std::min<int64_t>(n + 1, D); }
};

// Split [a, b] among the team; a short range goes to thread 0 alone.
inline void team_share(int64_t a, int64_t b, int tid, int nt, int64_t& s, int64_t& e) {
  const int64_t len = b - a + 1;
  if (nt <= 1 || len < 128 * nt) {
    s = tid == 0 ? a : b + 1;
    e = tid == 0 ? b : b;
    return;
  }
  const int64_t chunk = (len + nt - 1) / nt;
  s = a + tid * chunk;
  e = std::min(b, s + chunk - 1);
}

inline void team_barrier(int nt) {
  if (nt > 1) {
#pragma omp barrier
  }
}

// Interior cells of diagonal D outside the band interval [a, b] get `v`, so no
// later read meets an unwritten cell (+inf for R, 0 for E).
template <typename T>
void fill_outside(const Geom& g, int64_t D, int64_t a, int64_t b, T* buf, T v) {
  const int64_t lo = std::max<int64_t>(1, D - g.m), hi = std::min<int64_t>(g.n, D - 1);
  T* d = buf + g.base[D];
  if (a > b) {
    for (int64_t I = lo; I <= hi; ++I) d[I] = v;
    return;
  }
  for (int64_t I = lo; I < a; ++I) d[I] = v;
  for (int64_t I = b + 1; I <= hi; ++I) d[I] = v;
}

// ---------------------------------------------------------------- forward
template <typename T>
void forward_pair(const Geom& g, const T* C, int64_t rs, T gamma, T* R, int64_t slot, T* value, int tid,
                  int nt) {
  const int64_t n = g.n, m = g.m;
  const T inv = T(1) / gamma;
  if (tid == 0) {
    R[g.at(0, 0)] = T(0);
    for (int64_t J = 1; J <= m + 1; ++J) R[g.at(0, J)] = kInf<T>;
    for (int64_t I = 1; I <= n + 1; ++I) R[g.at(I, 0)] = kInf<T>;
  }
  team_barrier(nt);
  for (int64_t D = 2; D <= n + m; ++D) {
    int64_t a, b;
    g.range(D, a, b);
    if (g.band >= 0 && tid == 0) fill_outside(g, D, a, b, R, kInf<T>);  // out of band: +inf
    int64_t s, e;
    team_share(a, b, tid, nt, s, e);
    const int64_t bd = g.base[D], b1 = g.base[D - 1], b2 = g.base[D - 2];
    // C[I-1, J-1] with J = D - I sits at I*(rs-1) + (D-1-rs): a strided gather
    const int64_t c0 = D - 1 - rs, cst = rs - 1;
    const T* __restrict__ c = C;
    T* __restrict__ r = R;
#pragma omp simd
    for (int64_t I = s; I <= e; ++I) {
      const T x = r[b2 + I - 1];  // (I-1, J-1)
      const T y = r[b1 + I - 1];  // (I-1, J)
      const T z = r[b1 + I];      // (I, J-1)
      const T lo_xy = x < y ? x : y, hi_xy = x < y ? y : x;
      const T mn = lo_xy < z ? lo_xy : z;
      const T mx = hi_xy < z ? z : hi_xy;
      const T md = lo_xy < z ? (hi_xy < z ? hi_xy : z) : lo_xy;
      const T s3 = T(1) + exp_nonpos((mn - md) * inv) + exp_nonpos((mn - mx) * inv);
      const T v = c[c0 + I * cst] + (mn - gamma * log_pos(s3));
      r[bd + I] = mn < kInf<T> ? v : kInf<T>;
    }
    team_barrier(nt);
  }
  if (tid == 0) {
    *value = R[g.at(n, m)];
    // The backward's border: successors outside the grid weigh e^{-inf} = 0.
    for (int64_t J = 0; J <= m + 1; ++J) R[g.at(n + 1, J)] = -kInf<T>;
    for (int64_t I = 0; I <= n; ++I) R[g.at(I, m + 1)] = -kInf<T>;
    // a shorter pair leaves the end of its slot unused: define it (outputs are deterministic)
    std::fill(R + g.size(), R + slot, T(0));
  }
  team_barrier(nt);
}

// --------------------------------------------------------------- backward
// E[I,J] = Σ_s E[s]·e^{(R[s] − C[s] − R[I,J])/γ} over the three successors, E[n,m] = 1.
// Only three diagonals of E and of C are alive at a time (rings of 3 slots indexed
// by I; slot D % 3): C is gathered once per cell, and each finished diagonal of E
// (times `scale`) goes straight to the [N, M] output. Returns <E, C>.
template <typename T>
double backward_pair(const Geom& g, const T* C, int64_t rs, const T* R, T gamma, T scale, T* ring,
                     T* Eout, int64_t N, int64_t M, int tid, int nt, double* partial) {
  const int64_t n = g.n, m = g.m, L = n + 2;
  const T inv = T(1) / gamma;
  T* cring = ring;
  T* ering = ring + 3 * L;
  if (tid == 0) std::fill(ring, ring + 6 * L, T(0));
  // padding of the output: rows past n, columns past m
  for (int64_t I = 1 + tid; I <= n; I += nt) std::fill(Eout + (I - 1) * M + m, Eout + I * M, T(0));
  for (int64_t I = n + 1 + tid; I <= N; I += nt) std::fill(Eout + (I - 1) * M, Eout + I * M, T(0));
  team_barrier(nt);
  double ec = 0.0;  // <E, C> over this thread's cells
  for (int64_t D = n + m; D >= 2; --D) {
    int64_t a, b;
    g.range(D, a, b);
    T* ed = ering + (D % 3) * L;
    T* cd = cring + (D % 3) * L;
    const T* e1 = ering + ((D + 1) % 3) * L;
    const T* c1 = cring + ((D + 1) % 3) * L;
    const T* e2 = ering + ((D + 2) % 3) * L;
    const T* c2 = cring + ((D + 2) % 3) * L;
    const int64_t c0 = D - 1 - rs, cst = rs - 1;  // C[I-1, J-1] = C[c0 + I*cst]
    const int64_t o0 = D - 1 - M, ost = M - 1;    // Eout[I-1, J-1] = Eout[o0 + I*ost]
    if (tid == 0) {  // no mass outside the band interval (and in the slot's stale entries)
      std::fill(ed, ed + std::max<int64_t>(0, std::min(a, L)), T(0));
      if (b + 1 < L) std::fill(ed + std::max<int64_t>(b + 1, 0), ed + L, T(0));
      if (g.band >= 0) {
        const int64_t lo = std::max<int64_t>(1, D - m), hi = std::min<int64_t>(n, D - 1);
        for (int64_t I = lo; I <= hi; ++I)
          if (I < a || I > b) Eout[o0 + I * ost] = T(0);
      }
    }
    int64_t s, e;
    team_share(a, b, tid, nt, s, e);
    const int64_t bd = g.base[D], b1 = g.base[D + 1], b2 = g.base[D + 2];
    const T* __restrict__ c = C;
    const T* __restrict__ r = R;
    T* __restrict__ eo = Eout;
    T acc = T(0);
    const bool last = D == n + m;  // the end cell (n, m): E = 1
#pragma omp simd reduction(+ : acc)
    for (int64_t I = s; I <= e; ++I) {
      const T cc = c[c0 + I * cst];
      const T rc = r[bd + I];
      // successors: (I+1, J) and (I, J+1) on D+1, (I+1, J+1) on D+2
      const T w1 = exp_nonpos((r[b1 + I + 1] - c1[I + 1] - rc) * inv);
      const T w2 = exp_nonpos((r[b1 + I] - c1[I] - rc) * inv);
      const T w3 = exp_nonpos((r[b2 + I + 1] - c2[I + 1] - rc) * inv);
      const T v = e1[I + 1] * w1 + e1[I] * w2 + e2[I + 1] * w3;
      const T ev = last ? T(1) : (rc < kInf<T> && v >= Fp<T>::kTiny ? v : T(0));
      cd[I] = cc;
      ed[I] = ev;
      eo[o0 + I * ost] = ev * scale;
      acc += ev * cc;
    }
    ec += static_cast<double>(acc);
    team_barrier(nt);
  }
  partial[tid] = ec;
  team_barrier(nt);
  double total = 0.0;
  for (int t = 0; t < nt; ++t) total += partial[t];
  team_barrier(nt);
  return total;
}

// ------------------------------------------------------------ batch driver
struct Batch {
  int64_t P1, P2, N, M, s1, s2, rs;  // C strides in elements: pair dims and rows
  template <typename T>
  const T* pair(const T* c, int64_t p) const {
    return c + (p / P2) * s1 + (p % P2) * s2;
  }
};

// The lane group of pairs [p0, p0 + L): per-lane cost pointers, lengths and γ.
template <typename T>
void init_group(lanes::Group<T>& grp, const Batch& bt, const T* c, int64_t p0, const int64_t* xl,
                const int64_t* yl, const T* gm, int64_t band) {
  const T* cp[lanes::kLanes<T>];
  for (int l = 0; l < lanes::kLanes<T>; ++l) cp[l] = bt.pair(c, p0 + l);
  grp.init(cp, xl + p0, yl + p0, gm + p0, bt.N, bt.M, bt.rs, band);
}

template <typename T>
Batch batch_of(const py::array_t<T>& C) {
  if (C.ndim() != 4) throw std::invalid_argument("C must be 4-D [P1, P2, N, M]");
  const int64_t it = sizeof(T);
  if (C.strides(3) != it) throw std::invalid_argument("C must have unit stride along its last axis");
  for (int d = 0; d < 3; ++d)
    if (C.strides(d) % it != 0 || C.strides(d) < 0)
      throw std::invalid_argument("C strides must be non-negative multiples of the item size");
  return {C.shape(0), C.shape(1), C.shape(2), C.shape(3), C.strides(0) / it, C.strides(1) / it,
          C.strides(2) / it};
}

inline void check_pairs(int64_t P, const int64_t* xl, const int64_t* yl, int64_t N, int64_t M) {
  for (int64_t p = 0; p < P; ++p)
    if (xl[p] < 1 || xl[p] > N || yl[p] < 1 || yl[p] > M)
      throw std::invalid_argument("soft_dtw: pair " + std::to_string(p) + " has lengths (" +
                                  std::to_string(xl[p]) + ", " + std::to_string(yl[p]) +
                                  ") outside [1, N] x [1, M]");
}

// The per-pair inputs every driver reads, lengths checked against [1, N] x [1, M].
template <typename T>
struct PairInputs {
  const T* c;
  const T* gm;
  const int64_t* xl;
  const int64_t* yl;
};
template <typename T>
PairInputs<T> pair_inputs(const py::array_t<T>& C, const py::array_t<T, py::array::c_style>& gamma,
                          const py::array_t<int64_t, py::array::c_style>& xlen,
                          const py::array_t<int64_t, py::array::c_style>& ylen, const Batch& bt) {
  const PairInputs<T> in{C.data(), gamma.data(), xlen.data(), ylen.data()};
  check_pairs(bt.P1 * bt.P2, in.xl, in.yl, bt.N, bt.M);
  return in;
}


// Few pairs and long sequences: all threads work on one pair at a time.
inline bool team_mode(int64_t P, int64_t N, int64_t M) {
  return P < omp_get_max_threads() && N * M >= 128 * 128;
}

// Full groups of L pairs take the lane path (soft_dtw_lanes.h), whose state is
// weights, not R; the remaining P % L pairs go pair by pair. The split depends
// on P and the dtype only (not on the thread count, which may differ between
// the forward and the backward), and so does the state size per pair. Builds
// without AVX-512 have no lane kernels (lanes::kEnabled): every pair goes pair by pair.
template <typename T>
inline int64_t lane_groups(int64_t P) {
  return lanes::kEnabled ? P / lanes::kLanes<T> : 0;
}
template <typename T>
inline int64_t state_slots(int64_t P, int64_t N, int64_t M) {
  const int64_t per_pair = (N + 2) * (M + 2);
  return lane_groups<T>(P) > 0 ? std::max(per_pair, lanes::state_slots(N, M)) : per_pair;
}

}  // namespace sdtw_pair
}  // namespace vtalign
