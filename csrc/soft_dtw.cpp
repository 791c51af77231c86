// CPU twin of kernels/soft_dtw.py: soft-DTW forward (R) and backward (E) for a
// batch of pairs, float32 and float64, per-pair lengths and a Sakoe–Chiba band
// (DESIGN.md §3.4, rule and conventions in python/vtalign/reference/soft_dtw.py).
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
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastmath.h"
#include "registry.h"
#include "soft_dtw_lanes.h"

namespace py = pybind11;

namespace {

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
};

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

void check_pairs(int64_t P, const int64_t* xl, const int64_t* yl, int64_t N, int64_t M) {
  for (int64_t p = 0; p < P; ++p)
    if (xl[p] < 1 || xl[p] > N || yl[p] < 1 || yl[p] > M)
      throw std::invalid_argument("soft_dtw: pair " + std::to_string(p) + " has lengths (" +
                                  std::to_string(xl[p]) + ", " + std::to_string(yl[p]) +
                                  ") outside [1, N] x [1, M]");
}

// Few pairs and long sequences: all threads work on one pair at a time.
inline bool team_mode(int64_t P, int64_t N, int64_t M) {
  return P < omp_get_max_threads() && N * M >= 128 * 128;
}

// Full groups of L pairs take the lane path (soft_dtw_lanes.h), whose state is
// weights, not R; the remaining P % L pairs go pair by pair. The split depends
// on P and the dtype only (not on the thread count, which may differ between
// the forward and the backward), and so does the state size per pair.
template <typename T>
inline int64_t lane_groups(int64_t P) {
  return P / lanes::kLanes<T>;
}
template <typename T>
int64_t state_slots(int64_t P, int64_t N, int64_t M) {
  const int64_t per_pair = (N + 2) * (M + 2);
  return lane_groups<T>(P) > 0 ? std::max(per_pair, lanes::state_slots(N, M)) : per_pair;
}

template <typename T>
void soft_dtw_forward(py::array_t<T> C, py::array_t<T, py::array::c_style> gamma,
                      py::array_t<int64_t, py::array::c_style> xlen,
                      py::array_t<int64_t, py::array::c_style> ylen, int64_t bandwidth,
                      py::array values, py::array R) {
  const Batch bt = batch_of(C);
  const int64_t P = bt.P1 * bt.P2, S = state_slots<T>(P, bt.N, bt.M);
  if (gamma.size() != P || xlen.size() != P || ylen.size() != P || values.size() != P ||
      R.size() != P * S)
    throw std::invalid_argument("soft_dtw_forward: buffer sizes do not match the pairs");
  const T* c = C.data();
  const T* gm = gamma.data();
  const int64_t* xl = xlen.data();
  const int64_t* yl = ylen.data();
  check_pairs(P, xl, yl, bt.N, bt.M);
  T* val = vtalign::out_ptr<T>(values, "values");
  T* r = vtalign::out_ptr<T>(R, "R");
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return c + (p / bt.P2) * bt.s1 + (p % bt.P2) * bt.s2; };
  if (lane_groups<T>(P) == 0 && team_mode(P, bt.N, bt.M)) {
    Geom g;
#pragma omp parallel
    {
      FlushSubnormals ftz;
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int64_t p = 0; p < P; ++p) {
#pragma omp single
        g.init(xl[p], yl[p], bandwidth);
        forward_pair<T>(g, pair_ptr(p), bt.rs, gm[p], r + p * S, S, val + p, tid, nt);
      }
    }
    return;
  }
  constexpr int L = lanes::kLanes<T>;
  const int64_t G = lane_groups<T>(P), items = G + (P - G * L);
#pragma omp parallel
  {
    FlushSubnormals ftz;
    Geom g;
    lanes::Group<T> grp;
    std::vector<T> work;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      if (it < G) {
        const int64_t p0 = it * L;
        const T* cp[L];
        for (int l = 0; l < L; ++l) cp[l] = pair_ptr(p0 + l);
        grp.init(cp, xl + p0, yl + p0, gm + p0, bt.N, bt.M, bt.rs, bandwidth);
        work.resize(lanes::forward_work<T>(grp));
        T* slab = r + p0 * S;
        lanes::forward_group<T>(grp, slab, val + p0, work.data());
        std::fill(slab + L * lanes::state_slots(bt.N, bt.M), slab + L * S, T(0));
        continue;
      }
      const int64_t p = G * L + (it - G);
      g.init(xl[p], yl[p], bandwidth);
      forward_pair<T>(g, pair_ptr(p), bt.rs, gm[p], r + p * S, S, val + p, 0, 1);
    }
  }
}

template <typename T>
void soft_dtw_backward(py::array_t<T> C, py::array_t<T, py::array::c_style> R,
                       py::array_t<T, py::array::c_style> gamma,
                       py::array_t<int64_t, py::array::c_style> xlen,
                       py::array_t<int64_t, py::array::c_style> ylen, int64_t bandwidth,
                       py::array_t<T, py::array::c_style> grad, py::array E, py::array EC) {
  const Batch bt = batch_of(C);
  const int64_t P = bt.P1 * bt.P2, S = state_slots<T>(P, bt.N, bt.M), NM = bt.N * bt.M;
  if (gamma.size() != P || xlen.size() != P || ylen.size() != P || grad.size() != P ||
      R.size() != P * S || E.size() != P * NM || EC.size() != P)
    throw std::invalid_argument("soft_dtw_backward: buffer sizes do not match the pairs");
  const T* c = C.data();
  const T* r = R.data();
  const T* gm = gamma.data();
  const T* gr = grad.data();
  const int64_t* xl = xlen.data();
  const int64_t* yl = ylen.data();
  check_pairs(P, xl, yl, bt.N, bt.M);
  T* e = vtalign::out_ptr<T>(E, "E");
  double* ec = vtalign::out_ptr<double>(EC, "EC");
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return c + (p / bt.P2) * bt.s1 + (p % bt.P2) * bt.s2; };
  if (lane_groups<T>(P) == 0 && team_mode(P, bt.N, bt.M)) {
    std::vector<T> ring(6 * (bt.N + 2));
    std::vector<double> partial(omp_get_max_threads());
    Geom g;
#pragma omp parallel
    {
      FlushSubnormals ftz;
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int64_t p = 0; p < P; ++p) {
#pragma omp single
        g.init(xl[p], yl[p], bandwidth);
        const double v = backward_pair<T>(g, pair_ptr(p), bt.rs, r + p * S, gm[p], gr[p], ring.data(),
                                          e + p * NM, bt.N, bt.M, tid, nt, partial.data());
        if (tid == 0) ec[p] = v;
      }
    }
    return;
  }
  constexpr int L = lanes::kLanes<T>;
  const int64_t G = lane_groups<T>(P), items = G + (P - G * L);
#pragma omp parallel
  {
    FlushSubnormals ftz;
    std::vector<T> ring(6 * (bt.N + 2));
    Geom g;
    lanes::Group<T> grp;
    std::vector<T> work;
    double partial = 0.0;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      if (it < G) {
        const int64_t p0 = it * L;
        const T* cp[L];
        T* eo[L];
        for (int l = 0; l < L; ++l) {
          cp[l] = pair_ptr(p0 + l);
          eo[l] = e + (p0 + l) * NM;
        }
        grp.init(cp, xl + p0, yl + p0, gm + p0, bt.N, bt.M, bt.rs, bandwidth);
        work.resize(lanes::backward_work<T>(grp));
        lanes::backward_group<T>(grp, r + p0 * S, gr + p0, eo, ec + p0, work.data());
        continue;
      }
      const int64_t p = G * L + (it - G);
      g.init(xl[p], yl[p], bandwidth);
      ec[p] = backward_pair<T>(g, pair_ptr(p), bt.rs, r + p * S, gm[p], gr[p], ring.data(),
                               e + p * NM, bt.N, bt.M, 0, 1, &partial);
    }
  }
}

// Forward and backward in one call, for callers that differentiate through the
// features (python/vtalign/ops/soft_dtw.py: _FusedSoftDTW). The soft-min state
// never leaves the thread that made it (a per-thread slab, reused group after
// group, so it stays in cache): no [P, S] state buffer is written to memory and
// read back, which on a bandwidth-starved CPU costs more than the DP itself.
// Outputs: values; and when need_grad: E = dvalue/dC [P, N, M], EC = <E, C>
// (float64), rowsum [P, N] and colsum [P, M] of E (the GEMM gradient needs them).
// Per-thread scratch kept across calls (OpenMP threads persist): a fresh slab per
// call would be zero-filled and page-faulted in every time, which cost more than
// the sweep. Bounded by the caller (FUSED_SLAB_LIMIT in _soft_dtw_fused.py).
template <typename T>
T* thread_scratch(size_t n) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local size_t cap = 0;
  if (n > cap) {
    buf.reset(new T[n]);  // default-initialised: no zero fill
    cap = n;
  }
  return buf.get();
}

template <typename T>
int64_t fused_slab_bytes(int64_t N, int64_t M) {
  return lanes::kLanes<T> * lanes::state_slots(N, M) * static_cast<int64_t>(sizeof(T));
}

template <typename T>
void soft_dtw_fused(py::array_t<T> C, py::array_t<T, py::array::c_style> gamma,
                    py::array_t<int64_t, py::array::c_style> xlen,
                    py::array_t<int64_t, py::array::c_style> ylen, int64_t bandwidth, bool need_grad,
                    bool need_ec, double alpha, double offset, bool clamp, py::array_t<T, py::array::c_style> xnorm,
                    py::array_t<T, py::array::c_style> ynorm, py::array values, py::array E, py::array EC,
                    py::array rowsum, py::array colsum) {
  const Batch bt = batch_of(C);
  const int64_t P = bt.P1 * bt.P2, NM = bt.N * bt.M;
  const int64_t ng = need_grad ? 1 : 0;
  if (gamma.size() != P || xlen.size() != P || ylen.size() != P || values.size() != P ||
      E.size() != ng * P * NM || EC.size() != ng * P || rowsum.size() != ng * P * bt.N ||
      colsum.size() != ng * P * bt.M)
    throw std::invalid_argument("soft_dtw_fused: buffer sizes do not match the pairs");
  if ((xnorm.size() != 0 && xnorm.size() != P * bt.N) || (ynorm.size() != 0 && ynorm.size() != P * bt.M))
    throw std::invalid_argument("soft_dtw_fused: xnorm must be [P, N] and ynorm [P, M] (or empty)");
  const T* xnp = xnorm.size() ? xnorm.data() : nullptr;
  const T* ynp = ynorm.size() ? ynorm.data() : nullptr;
  const bool transform = alpha != 1.0 || offset != 0.0 || clamp || xnp || ynp;
  const T* c = C.data();
  const T* gm = gamma.data();
  const int64_t* xl = xlen.data();
  const int64_t* yl = ylen.data();
  check_pairs(P, xl, yl, bt.N, bt.M);
  T* val = vtalign::out_ptr<T>(values, "values");
  T* e = need_grad ? vtalign::out_ptr<T>(E, "E") : nullptr;
  double* ec = need_grad ? vtalign::out_ptr<double>(EC, "EC") : nullptr;
  T* rsum = need_grad ? vtalign::out_ptr<T>(rowsum, "rowsum") : nullptr;
  T* csum = need_grad ? vtalign::out_ptr<T>(colsum, "colsum") : nullptr;
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return c + (p / bt.P2) * bt.s1 + (p % bt.P2) * bt.s2; };
  constexpr int L = lanes::kLanes<T>;
  const int64_t G = lane_groups<T>(P), items = G + (P - G * L);
#pragma omp parallel
  {
    FlushSubnormals ftz;
    lanes::Group<T> grp;
    std::vector<T> work, Rpair, ring, cbuf;
    T one[L];
    for (int l = 0; l < L; ++l) one[l] = T(1);
    Geom g;
    double partial = 0.0;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      if (it < G) {
        const int64_t p0 = it * L;
        const T* cp[L];
        for (int l = 0; l < L; ++l) cp[l] = pair_ptr(p0 + l);
        grp.init(cp, xl + p0, yl + p0, gm + p0, bt.N, bt.M, bt.rs, bandwidth);
        if (transform) {
          const T* xr[L];
          const T* yr[L];
          for (int l = 0; l < L; ++l) {
            xr[l] = xnp ? xnp + (p0 + l) * bt.N : nullptr;
            yr[l] = ynp ? ynp + (p0 + l) * bt.M : nullptr;
          }
          grp.set_transform(T(alpha), T(offset), clamp, xnp ? xr : nullptr, ynp ? yr : nullptr);
        }
        work.resize(std::max(lanes::forward_work<T>(grp), lanes::backward_work<T>(grp)));
        if (!need_grad) {
          lanes::forward_group<T, false>(grp, nullptr, val + p0, work.data());
          continue;
        }
        T* slab = thread_scratch<T>(L * lanes::state_slots(bt.N, bt.M));
        lanes::forward_group<T, true>(grp, slab, val + p0, work.data());
        T* eo[L];
        T* ro[L];
        T* co[L];
        for (int l = 0; l < L; ++l) {
          eo[l] = e + (p0 + l) * NM;
          ro[l] = rsum + (p0 + l) * bt.N;
          co[l] = csum + (p0 + l) * bt.M;
        }
        lanes::backward_group<T>(grp, slab, one, eo, need_ec ? ec + p0 : nullptr, work.data(), ro, co);
        if (!need_ec) std::fill(ec + p0, ec + p0 + L, 0.0);
        continue;
      }
      const int64_t p = G * L + (it - G), S = (bt.N + 2) * (bt.M + 2);
      g.init(xl[p], yl[p], bandwidth);
      const T* cpair = pair_ptr(p);
      int64_t rs = bt.rs;
      if (transform) {  // this pair's cost, materialised (the pair kernels read C as given)
        cbuf.resize(NM);
        const T* xr = xnp ? xnp + p * bt.N : nullptr;
        const T* yr = ynp ? ynp + p * bt.M : nullptr;
        const T lo = clamp ? T(0) : -kInf<T>;
        for (int64_t i = 0; i < bt.N; ++i) {
          const T* src = cpair + i * bt.rs;
          T* dst = cbuf.data() + i * bt.M;
          const T base = T(offset) + (xr ? xr[i] : T(0));
#pragma omp simd
          for (int64_t j = 0; j < bt.M; ++j) {
            const T v = T(alpha) * src[j] + base + (yr ? yr[j] : T(0));
            dst[j] = v > lo ? v : lo;
          }
        }
        cpair = cbuf.data();
        rs = bt.M;
      }
      Rpair.resize(S);
      forward_pair<T>(g, cpair, rs, gm[p], Rpair.data(), S, val + p, 0, 1);
      if (!need_grad) continue;
      ring.resize(6 * (bt.N + 2));
      T* ep = e + p * NM;
      ec[p] = backward_pair<T>(g, cpair, rs, Rpair.data(), gm[p], T(1), ring.data(), ep, bt.N, bt.M, 0, 1,
                               &partial);
      T* rp = rsum + p * bt.N;
      T* cpo = csum + p * bt.M;
      std::fill(cpo, cpo + bt.M, T(0));
      for (int64_t i = 0; i < bt.N; ++i) {
        const T* row = ep + i * bt.M;
        T r = T(0);
#pragma omp simd reduction(+ : r)
        for (int64_t j = 0; j < bt.M; ++j) {
          r += row[j];
          cpo[j] += row[j];
        }
        rp[i] = r;
      }
    }
  }
}

// Smallest band that keeps (n, m) reachable from (1, 1); see reference/soft_dtw.py.
int64_t min_bandwidth(int64_t n, int64_t m) {
  const int64_t p = std::max(n, m) - 1, q = std::min(n, m) - 1;
  if (q <= 0) return 0;
  int64_t a = p, b = q;
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  const int64_t gap = ceil_div(q - a + p, q);
  return std::max<int64_t>(0, ceil_div(gap - 1, 2));
}

void register_soft_dtw(py::module_& m) {
  const char* fdoc =
      "soft_dtw_forward(C[P1,P2,N,M], gamma[P], xlen[P], ylen[P], bandwidth, values[P], "
      "R[P, soft_dtw_state_slots(P, N, M)]): values and the state the backward needs (the DP "
      "matrix in anti-diagonal layout, or soft-min weights for pairs in lane groups)";
  m.def("soft_dtw_forward", &soft_dtw_forward<float>, py::arg("C"), py::arg("gamma"), py::arg("xlen"),
        py::arg("ylen"), py::arg("bandwidth"), py::arg("values"), py::arg("R"), fdoc);
  m.def("soft_dtw_forward", &soft_dtw_forward<double>);
  const char* bdoc =
      "soft_dtw_backward(C, R, gamma, xlen, ylen, bandwidth, grad[P], E[P,N,M], EC[P] float64): "
      "E = grad * dvalue/dC, EC = <dvalue/dC, C>";
  m.def("soft_dtw_backward", &soft_dtw_backward<float>, py::arg("C"), py::arg("R"), py::arg("gamma"),
        py::arg("xlen"), py::arg("ylen"), py::arg("bandwidth"), py::arg("grad"), py::arg("E"),
        py::arg("EC"), bdoc);
  m.def("soft_dtw_backward", &soft_dtw_backward<double>);
  m.def(
      "soft_dtw_state_slots",
      [](int64_t P, int64_t N, int64_t M, bool is_double) {
        return is_double ? state_slots<double>(P, N, M) : state_slots<float>(P, N, M);
      },
      py::arg("P"), py::arg("N"), py::arg("M"), py::arg("is_double"),
      "elements per pair of the state buffer soft_dtw_forward fills for P pairs of [N, M]");
  const char* fudoc =
      "soft_dtw_fused(D[P1,P2,N,M], gamma[P], xlen[P], ylen[P], bandwidth, need_grad, need_ec, alpha, "
      "offset, "
      "clamp, xnorm[P,N] or [0], ynorm[P,M] or [0], values[P], E[P,N,M], EC[P] float64, rowsum[P,N], "
      "colsum[P,M]): soft-DTW on the cost C = alpha*D + xnorm_i + ynorm_j + offset (clamped at 0 "
      "when clamp), forward and (when need_grad) the unscaled backward in one call; the gradient "
      "buffers may be empty without need_grad; EC is 0 for lane groups without need_ec";
  m.def("soft_dtw_fused", &soft_dtw_fused<float>, py::arg("C"), py::arg("gamma"), py::arg("xlen"),
        py::arg("ylen"), py::arg("bandwidth"), py::arg("need_grad"), py::arg("need_ec"), py::arg("alpha"), py::arg("offset"),
        py::arg("clamp"), py::arg("xnorm"), py::arg("ynorm"), py::arg("values"), py::arg("E"), py::arg("EC"),
        py::arg("rowsum"), py::arg("colsum"), fudoc);
  m.def("soft_dtw_fused", &soft_dtw_fused<double>);
  m.def(
      "soft_dtw_fused_slab_bytes",
      [](int64_t N, int64_t M, bool is_double) {
        return is_double ? fused_slab_bytes<double>(N, M) : fused_slab_bytes<float>(N, M);
      },
      py::arg("N"), py::arg("M"), py::arg("is_double"),
      "per-thread scratch soft_dtw_fused needs for a lane group of [N, M] pairs");
  m.def("soft_dtw_min_bandwidth", &min_bandwidth, py::arg("n"), py::arg("m"),
        "smallest Sakoe-Chiba band keeping the end cell reachable for lengths (n, m)");
}

vtalign::Register reg_soft_dtw(register_soft_dtw);

}  // namespace
