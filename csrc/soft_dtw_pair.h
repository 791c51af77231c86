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

// State of one pair: the soft-min weights each cell gave its up (I−1, J) and left
// (I, J−1) predecessors, w_up at g.at(I, J) and w_left at size + g.at(I, J) (the
// diagonal one is 1 − w_up − w_left); border cells and cells outside the band weigh
// 0. Why weights and not R, as in the lane path (soft_dtw_lanes.h): the backward then
// needs no exp, and its float32 accuracy no longer depends on ulp(R)/γ (rebuilding
// a weight e^{(R[s] − C[s] − R[p])/γ} from a float32 R that has grown to ~1e3 is off
// by several percent at γ = 1e-3).
template <typename T>
inline int64_t pair_state_slots(int64_t N, int64_t M) {
  return 2 * (N + 2) * (M + 2);
}

// Interior and border cells of diagonal D outside [a, b] (a > b: all of them): R = +inf
// in the diagonal's ring slot, weight 0. Written by one thread, disjoint from [a, b].
template <typename T>
void forward_outside(const Geom& g, int64_t D, int64_t a, int64_t b, T* rd, T* wu, T* wl) {
  const int64_t lo = g.lo(D), hi = g.hi(D), bd = g.base[D];
  const int64_t e1 = a > b ? hi : std::min(a - 1, hi), s2 = a > b ? hi + 1 : std::max(b + 1, lo);
  for (int64_t I = lo; I <= e1; ++I) {
    rd[I] = kInf<T>;
    wu[bd + I] = wl[bd + I] = T(0);
  }
  for (int64_t I = s2; I <= hi; ++I) {
    rd[I] = kInf<T>;
    wu[bd + I] = wl[bd + I] = T(0);
  }
}

// Cells [s, e] of one anti-diagonal, I indexing rows: R of the two previous diagonals
// (r2: D − 2, r1: D − 1) and the diagonal's costs (c) -> R (rd) and the weights towards the up (wu) and left (wl)
// predecessors. A function of its own, kept out of line, so that GCC sees the restrict
// qualifiers (it honours them on parameters, not on local pointers, and loses them
// when it inlines) and vectorises the loop.
template <typename T>
__attribute__((noipa)) void forward_diag(const T* __restrict__ r2, const T* __restrict__ r1, T* __restrict__ rd,
                         T* __restrict__ wu, T* __restrict__ wl, const T* __restrict__ c, int64_t s, int64_t e,
                         T gamma, T inv) {
#pragma omp simd
  for (int64_t I = s; I <= e; ++I) {
    const T x = r2[I - 1];  // (I-1, J-1)
    const T y = r1[I - 1];  // (I-1, J)
    const T z = r1[I];      // (I, J-1)
    // softmin = mn − γ·log(ex + ey + ez), each e = e^{(mn − v)/γ} <= 1 (the min's is 1),
    // and a predecessor's weight is its e over the sum. (Three exps rather than two and
    // a sort: with the sort's selects GCC does not vectorise this loop.)
    const T mxy = x < y ? x : y;
    const T mn = mxy < z ? mxy : z;
    const T ex = exp_nonpos((mn - x) * inv), ey = exp_nonpos((mn - y) * inv), ez = exp_nonpos((mn - z) * inv);
    const T s3 = ex + ey + ez;
    const T v = c[I] + (mn - gamma * log_pos(s3));
    const T rinv = T(1) / s3;
    const T wy = ey * rinv, wz = ez * rinv;
    const bool ok = mn < kInf<T>;
    rd[I] = ok ? v : kInf<T>;
    wu[I] = ok ? wy : T(0);
    wl[I] = ok ? wz : T(0);
  }
}

// ---------------------------------------------------------------- forward
// W: this pair's state (slot elements); rring: 4·(n+2) scratch shared by the team
// (R of the last three diagonals, slot D % 3, indexed by I; then the costs of D).
template <typename T>
void forward_pair(const Geom& g, const T* C, int64_t rs, T gamma, T* W, int64_t slot, T* rring, T* value,
                  int tid, int nt) {
  const int64_t n = g.n, m = g.m, L = n + 2, S = g.size();
  const T inv = T(1) / gamma;
  T* wu = W;
  T* wl = W + S;
  if (tid == 0) {  // diagonals 0 and 1 and those past n + m are all border
    for (int64_t D : {int64_t(0), int64_t(1), n + m + 1, n + m + 2})
      forward_outside(g, D, 1, 0, rring + (D % 3) * L, wu, wl);
    rring[0] = T(0);  // R[0, 0]
  }
  team_barrier(nt);
  for (int64_t D = 2; D <= n + m; ++D) {
    int64_t a, b;
    g.range(D, a, b);
    T* rd = rring + (D % 3) * L;
    if (tid == 0) forward_outside(g, D, a, b, rd, wu, wl);
    int64_t s, e;
    team_share(a, b, tid, nt, s, e);
    // C[I-1, J-1] with J = D - I sits at I*(rs-1) + (D-1-rs): a strided gather, done
    // apart into contiguous scratch (with it inside, GCC vectorises only for stride 1)
    T* cd = rring + 3 * L;
    const T* cg = C + (D - 1 - rs);
    for (int64_t I = s; I <= e; ++I) cd[I] = cg[I * (rs - 1)];
    forward_diag<T>(rring + ((D + 1) % 3) * L, rring + ((D + 2) % 3) * L, rd, wu + g.base[D], wl + g.base[D], cd,
                    s, e, gamma, inv);
    team_barrier(nt);
  }
  if (tid == 0) {
    *value = rring[((n + m) % 3) * L + n];
    // a shorter pair leaves the end of its slot unused: define it (outputs are deterministic)
    std::fill(W + 2 * S, W + slot, T(0));
  }
  team_barrier(nt);
}

// --------------------------------------------------------------- backward
// E[I,J] = E[I+1,J]·w_up(I+1,J) + E[I,J+1]·w_left(I,J+1) + E[I+1,J+1]·w_diag(I+1,J+1),
// E[n,m] = 1, with the weights the forward stored. Only three diagonals of E are
// alive at a time (a ring of 3 slots indexed by I; slot D % 3), and each finished
// diagonal (times `scale`) goes straight to the [N, M] output. Returns <E, C>.
// ring: 3·(n+2) scratch shared by the team.
template <typename T>
double backward_pair(const Geom& g, const T* C, int64_t rs, const T* W, T scale, T* ring, T* Eout, int64_t N,
                     int64_t M, int tid, int nt, double* partial) {
  const int64_t n = g.n, m = g.m, L = n + 2, S = g.size();
  const T* wu = W;
  const T* wl = W + S;
  if (tid == 0) std::fill(ring, ring + 3 * L, T(0));
  // padding of the output: rows past n, columns past m
  for (int64_t I = 1 + tid; I <= n; I += nt) std::fill(Eout + (I - 1) * M + m, Eout + I * M, T(0));
  for (int64_t I = n + 1 + tid; I <= N; I += nt) std::fill(Eout + (I - 1) * M, Eout + I * M, T(0));
  team_barrier(nt);
  double ec = 0.0;  // <E, C> over this thread's cells
  for (int64_t D = n + m; D >= 2; --D) {
    int64_t a, b;
    g.range(D, a, b);
    T* ed = ring + (D % 3) * L;
    const T* e1 = ring + ((D + 1) % 3) * L;
    const T* e2 = ring + ((D + 2) % 3) * L;
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
    const int64_t b1 = g.base[D + 1], b2 = g.base[D + 2];
    const T* __restrict__ c = C;
    T* __restrict__ eo = Eout;
    T acc = T(0);
    const bool last = D == n + m;  // the end cell (n, m): E = 1
#pragma omp simd reduction(+ : acc)
    for (int64_t I = s; I <= e; ++I) {
      // successors: (I+1, J) and (I, J+1) on D+1, (I+1, J+1) on D+2
      const T w_diag = T(1) - wu[b2 + I + 1] - wl[b2 + I + 1];
      const T v = e1[I + 1] * wu[b1 + I + 1] + e1[I] * wl[b1 + I] + e2[I + 1] * (w_diag > T(0) ? w_diag : T(0));
      const T ev = last ? T(1) : (v >= Fp<T>::kTiny ? v : T(0));
      const T cc = c[c0 + I * cst];
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
// Both layouts hold two weights per cell; the pair one with borders is the larger.
template <typename T>
inline int64_t state_slots(int64_t P, int64_t N, int64_t M) {
  return std::max(pair_state_slots<T>(N, M), lanes::state_slots(N, M));
}

}  // namespace sdtw_pair
}  // namespace vtalign
