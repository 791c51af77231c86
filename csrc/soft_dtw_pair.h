// Per-pair soft-DTW kernels (anti-diagonal layout) and the batch helpers shared
// by the drivers in soft_dtw.cpp (custom-op forward/backward) and
// soft_dtw_fused.cpp (fused forward+backward). docs/design.md §3.4; rule and
// conventions in python/vtalign/reference/soft_dtw.py.
//
// Layout. Each pair's DP matrix is bordered to (n+2) x (m+2) (row/column 0 is
// the +inf border of the recurrence, row n+1/column m+1 the border the backward
// recurrence reads) and stored anti-diagonal by anti-diagonal: diagonal
// D = I + J is one contiguous run indexed by I. Every cell of a diagonal depends
// only on the two previous diagonals, so the inner loop over I has no carried
// dependency and contiguous loads/stores: it is written branch-free, with our
// own polynomial exp/log (no libm calls), so the compiler vectorises it
// (`omp simd`). The costs come in the same skewed layout (skew_costs, tile by tile)
// and E leaves in it (unskew_alignment), so every kernel access is contiguous;
// the backward keeps only three diagonals of E alive. Memory: the state plus one
// skewed [n+2, m+2] buffer and O(N) per thread.
//
// Soft-min: in the exp domain, P = e^{−R/γ} as mantissa and exponent, a sum of the
// three predecessors times K = e^{−C/γ} (forward_diag_exp); where the exponents would
// stop being exact integers, in the log domain, softmin = min − γ·log(Σ e^{(min−v)/γ}),
// a log of a number in [1, 3] (forward_diag). All +inf gives +inf (never NaN).
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
// 0. Why weights and not R: docs/soft_dtw.md, "The state between forward and backward".
template <typename T>
inline int64_t pair_state_slots(int64_t N, int64_t M) {
  return 2 * (N + 2) * (M + 2);
}

// Interior and border cells of diagonal D outside [a, b] (a > b: all of them): R = +inf
// in the diagonal's ring slot, weight 0. Written by one thread, disjoint from [a, b].
// The exp-domain forward (forward_pair_exp) passes its mantissa ring as rd with fill 0
// and its exponent ring as kd (filled with kZeroExp): P = 0.
template <typename T>
void forward_outside(const Geom& g, int64_t D, int64_t a, int64_t b, T* rd, T* wu, T* wl, T fill = kInf<T>,
                     T* kd = nullptr) {
  const int64_t lo = g.lo(D), hi = g.hi(D), bd = g.base[D];
  const int64_t e1 = a > b ? hi : std::min(a - 1, hi), s2 = a > b ? hi + 1 : std::max(b + 1, lo);
  auto clear = [&](int64_t I) {
    rd[I] = fill;
    if (kd) kd[I] = lanes::kZeroExp<T>;
    wu[bd + I] = wl[bd + I] = T(0);
  };
  for (int64_t I = lo; I <= e1; ++I) clear(I);
  for (int64_t I = s2; I <= hi; ++I) clear(I);
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

// The same cells in the exp domain (the lane path's forward_group_exp, soft_dtw_lanes.h,
// has the derivation): P = e^{−R/γ} as a mantissa (m, in [1, 2), 0 for P = 0) and an
// integer exponent held in T (k), P[I,J] = K[I,J]·(P[I−1,J−1] + P[I−1,J] + P[I,J−1]) with
// K = e^{−C/γ} = 2^{c·neg}, neg = −log2(e)/γ. Why: the log-domain cell pays three exps
// and a log and its weights carry R's rounding over γ (float32 gradients 6.5e-4 off at
// γ = 0.01); here one exp per cell and the rounding is relative to P. Returns the largest
// |log2 K| seen, which the caller checks against exp_domain_limit.
template <typename T>
__attribute__((noipa)) T forward_diag_exp(const T* __restrict__ m2, const T* __restrict__ k2,
                                          const T* __restrict__ m1, const T* __restrict__ k1, T* __restrict__ md,
                                          T* __restrict__ kd, T* __restrict__ wu, T* __restrict__ wl,
                                          const T* __restrict__ c, int64_t s, int64_t e, T neg) {
  using Int = typename Fp<T>::I;
  constexpr int kM = Fp<T>::kMant;
  constexpr Int kB = Fp<T>::kBias;
  const T magic = T(1.5) * bits_to<T>(static_cast<Int>((kB + kM)) << kM);  // round to nearest, as exp_nonpos
  // 2^d for an integer-valued d <= 0, built from its bits; d below the normal range (and
  // kZeroExp's differences) gives the smallest normal, which next to the largest term
  // (>= 1) is 0 at this precision, and times a P = 0 mantissa is 0.
  const T lowest = T(1 - kB);
  T big = T(0);
#pragma omp simd reduction(max : big)
  for (int64_t I = s; I <= e; ++I) {
    const T t = c[I] * neg;  // log2 K
    const T at = t < T(0) ? -t : t;
    big = at > big ? at : big;
    const T tn = (t + magic) - magic;
    const T km = horner<ScalarOps<T>>(Exp2Poly<T>::c, t - tn);  // K = km·2^tn
    // predecessors (I−1, J−1), (I−1, J), (I, J−1), aligned to the largest exponent
    const T ka = k2[I - 1], kb = k1[I - 1], kc = k1[I];
    const T kab = ka > kb ? ka : kb;
    const T kx = kab > kc ? kab : kc;
    const T da = ka - kx, db = kb - kx, dc = kc - kx;
    const T ta = m2[I - 1] * bits_to<T>((static_cast<Int>(da > lowest ? da : lowest) + kB) << kM);
    const T tb = m1[I - 1] * bits_to<T>((static_cast<Int>(db > lowest ? db : lowest) + kB) << kM);
    const T tc = m1[I] * bits_to<T>((static_cast<Int>(dc > lowest ? dc : lowest) + kB) << kM);
    const T sum = ta + tb + tc;  // in [1, 6) when reachable (the largest term's mantissa), else 0
    const T p = sum * km;
    // p = pm·2^pe, pm in [1, 2): p is in [2^−0.5, 6·2^0.5), so pe in {−1, …, 3}. (Read from
    // p's exponent bits with a shift, GCC's link-time pass no longer vectorised this loop.)
    const T pe = p < T(1) ? T(-1) : p < T(2) ? T(0) : p < T(4) ? T(1) : p < T(8) ? T(2) : T(3);
    const T pm = bits_to<T>((to_bits<T>(p) & ((Int(1) << kM) - 1)) | (kB << kM));
    const T rinv = T(1) / (sum > T(0) ? sum : T(1));
    const bool ok = sum > T(0);
    md[I] = ok ? pm : T(0);
    kd[I] = ok ? kx + tn + pe : lanes::kZeroExp<T>;
    wu[I] = ok ? tb * rinv : T(0);
    wl[I] = ok ? tc * rinv : T(0);
  }
  return big;
}

// ------------------------------------------------------------ skewed tiles
// The kernels read costs and write E in the skewed layout (cell (I, J) at g.at(I, J),
// a diagonal contiguous). Walking a row-major [N, M] matrix along its diagonals
// instead touches a new 4 KiB page per cell once a row passes 4 KiB: at
// N = M = 2048 those TLB misses cost more than the soft-min itself (with huge pages
// the same sweep was 35% faster). The conversions below go tile by tile: a 32 x 32
// tile touches 63 diagonals and 32 rows, which the TLB holds. Row tiles are split
// among the team; the caller synchronises.
constexpr int64_t kTile = 32;

template <typename F>
void for_tiles(const Geom& g, int tid, int nt, F&& row) {
  for (int64_t I0 = 1 + tid * kTile; I0 <= g.n; I0 += nt * kTile)
    for (int64_t J0 = 1; J0 <= g.m; J0 += kTile) {
      const int64_t I1 = std::min(I0 + kTile, g.n + 1), J1 = std::min(J0 + kTile, g.m + 1);
      for (int64_t I = I0; I < I1; ++I) row(I, J0, J1);
    }
}

// cs[g.at(I, J)] = cost(I, J) for every interior cell (1-based; borders are never read).
template <typename T, typename Cost>
void skew_costs(const Geom& g, T* cs, Cost&& cost, int tid, int nt) {
  const int64_t* base = g.base.data();
  for_tiles(g, tid, nt, [&](int64_t I, int64_t J0, int64_t J1) {
    for (int64_t J = J0; J < J1; ++J) cs[base[I + J] + I] = cost(I, J);
  });
}

// Row-major cost of a pair: C[I-1, J-1] at row stride rs.
template <typename T>
struct PlainCost {
  const T* c;
  int64_t rs;
  T operator()(int64_t I, int64_t J) const { return c[(I - 1) * rs + (J - 1)]; }
};

// Eout[I-1, J-1] = scale·Es[g.at(I, J)] over [N, M] (zero past the pair's n x m), and
// returns this thread's share of <E, C> = Σ Es·cost(I, J). Eout may be the very
// matrix `cost` reads (the fused path's GEMM buffer): each cell's cost is read before
// its E is written.
template <typename T, typename Cost>
double unskew_alignment(const Geom& g, const T* Es, T scale, T* Eout, int64_t N, int64_t M, Cost&& cost, int tid,
                        int nt) {
  const int64_t n = g.n, m = g.m;
  const int64_t* base = g.base.data();
  for (int64_t I = 1 + tid; I <= n; I += nt) std::fill(Eout + (I - 1) * M + m, Eout + I * M, T(0));
  for (int64_t I = n + 1 + tid; I <= N; I += nt) std::fill(Eout + (I - 1) * M, Eout + I * M, T(0));
  double ec = 0.0;
  for_tiles(g, tid, nt, [&](int64_t I, int64_t J0, int64_t J1) {
    T* out = Eout + (I - 1) * M;
    T acc = T(0);
    for (int64_t J = J0; J < J1; ++J) {
      const T c = cost(I, J), e = Es[base[I + J] + I];
      acc += e * c;
      out[J - 1] = e * scale;
    }
    ec += static_cast<double>(acc);
  });
  return ec;
}

// ---------------------------------------------------------------- forward
// Scratch forward_pair needs, shared by the team, for pairs of up to N rows.
inline int64_t forward_ring_size(int64_t N) { return 6 * (N + 2) + 1; }

// The exp-domain sweep (forward_diag_exp); false, with W and the ring left undefined,
// when a cost breaks exp_domain_limit (then the log-domain sweep runs instead). ring:
// mantissas and exponents of the last three diagonals (slot D % 3, indexed by I) and
// one flag. Every thread returns the same answer.
template <typename T>
bool forward_pair_exp(const Geom& g, const T* cs, T gamma, T* W, int64_t slot, T* ring, T* value, int tid,
                      int nt) {
  const int64_t n = g.n, m = g.m, L = n + 2, S = g.size();
  const T neg = static_cast<T>(-kLog2e / static_cast<double>(gamma));
  const T limit = lanes::exp_domain_limit<T>(n, m);
  T* mr = ring;
  T* kr = ring + 3 * L;
  T* flag = ring + 6 * L;
  T* wu = W;
  T* wl = W + S;
  if (tid == 0) {  // diagonals 0 and 1 and those past n + m are all border: P = 0 but P[0, 0] = 1
    for (int64_t D : {int64_t(0), int64_t(1), n + m + 1, n + m + 2})
      forward_outside(g, D, 1, 0, mr + (D % 3) * L, wu, wl, T(0), kr + (D % 3) * L);
    mr[0] = T(1);
    kr[0] = T(0);
    *flag = T(0);
  }
  team_barrier(nt);
  for (int64_t D = 2; D <= n + m; ++D) {
    int64_t a, b;
    g.range(D, a, b);
    const int64_t sd = (D % 3) * L, s1 = ((D + 2) % 3) * L, s2 = ((D + 1) % 3) * L;
    if (tid == 0) forward_outside(g, D, a, b, mr + sd, wu, wl, T(0), kr + sd);
    int64_t s, e;
    team_share(a, b, tid, nt, s, e);
    const T big = forward_diag_exp<T>(mr + s2, kr + s2, mr + s1, kr + s1, mr + sd, kr + sd, wu + g.base[D],
                                      wl + g.base[D], cs + g.base[D], s, e, neg);
    if (big > limit) {
#pragma omp atomic write
      *flag = T(1);
    }
    team_barrier(nt);
  }
  T bad;
#pragma omp atomic read
  bad = *flag;
  team_barrier(nt);  // nobody clears the flag (the next pair's tid 0) before all have read it
  if (bad != T(0)) return false;
  if (tid == 0) {  // R = −γ·ln P = −γ·ln2·(exponent + log2 mantissa)
    const int64_t end = ((n + m) % 3) * L + n;
    const double pm = mr[end], pk = kr[end];
    *value = pm > 0 ? static_cast<T>(-static_cast<double>(gamma) * kLn2 * (pk + std::log2(pm))) : kInf<T>;
    std::fill(W + 2 * S, W + slot, T(0));  // see forward_pair
  }
  team_barrier(nt);
  return true;
}

// cs: this pair's costs, skewed (skew_costs); W: its state (slot elements); rring:
// forward_ring_size(n) scratch shared by the team (in the log-domain sweep, R of the
// last three diagonals, slot D % 3, indexed by I).
template <typename T>
void forward_pair(const Geom& g, const T* cs, T gamma, T* W, int64_t slot, T* rring, T* value, int tid, int nt) {
  if (forward_pair_exp<T>(g, cs, gamma, W, slot, rring, value, tid, nt)) return;
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
    forward_diag<T>(rring + ((D + 1) % 3) * L, rring + ((D + 2) % 3) * L, rd, wu + g.base[D], wl + g.base[D],
                    cs + g.base[D], s, e, gamma, inv);
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
// E[n,m] = 1, with the weights the forward stored. Three diagonals of E are kept in a
// ring (3 slots indexed by I; slot D % 3; 3·(n+2) scratch shared by the team), and
// every interior cell's E, unscaled, goes to Es in the skewed layout (0 outside the
// band); unskew_alignment then makes the [N, M] output and <E, C>.
template <typename T>
void backward_pair(const Geom& g, const T* W, T* ring, T* Es, int tid, int nt) {
  const int64_t n = g.n, m = g.m, L = n + 2, S = g.size();
  const T* wu = W;
  const T* wl = W + S;
  if (tid == 0) std::fill(ring, ring + 3 * L, T(0));
  team_barrier(nt);
  for (int64_t D = n + m; D >= 2; --D) {
    int64_t a, b;
    g.range(D, a, b);
    T* ed = ring + (D % 3) * L;
    const T* e1 = ring + ((D + 1) % 3) * L;
    const T* e2 = ring + ((D + 2) % 3) * L;
    T* __restrict__ es = Es + g.base[D];
    if (tid == 0) {  // no mass outside the band interval (and in the slot's stale entries)
      std::fill(ed, ed + std::max<int64_t>(0, std::min(a, L)), T(0));
      if (b + 1 < L) std::fill(ed + std::max<int64_t>(b + 1, 0), ed + L, T(0));
      if (g.band >= 0) {
        const int64_t lo = std::max<int64_t>(1, D - m), hi = std::min<int64_t>(n, D - 1);
        for (int64_t I = lo; I <= hi; ++I)
          if (I < a || I > b) es[I] = T(0);
      }
    }
    int64_t s, e;
    team_share(a, b, tid, nt, s, e);
    const int64_t b1 = g.base[D + 1], b2 = g.base[D + 2];
    const bool last = D == n + m;  // the end cell (n, m): E = 1
#pragma omp simd
    for (int64_t I = s; I <= e; ++I) {
      // successors: (I+1, J) and (I, J+1) on D+1, (I+1, J+1) on D+2
      const T w_diag = T(1) - wu[b2 + I + 1] - wl[b2 + I + 1];
      const T v = e1[I + 1] * wu[b1 + I + 1] + e1[I] * wl[b1 + I] + e2[I + 1] * (w_diag > T(0) ? w_diag : T(0));
      const T ev = last ? T(1) : (v >= Fp<T>::kTiny ? v : T(0));
      ed[I] = ev;
      es[I] = ev;
    }
    team_barrier(nt);
  }
}

// Sum of the team's partial <E, C>, the same on every thread.
inline double team_sum(double mine, double* partial, int tid, int nt) {
  partial[tid] = mine;
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
// (python/vtalign/ops/soft_dtw/cpp_fused.py mirrors this rule, so torch.compile can trace it.)
constexpr int64_t kTeamMinCells = 128 * 128;
inline bool team_mode(int64_t P, int64_t N, int64_t M) {
  return P < omp_get_max_threads() && N * M >= kTeamMinCells;
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
