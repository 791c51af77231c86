// CPU twin of kernels/soft_dtw.py: soft-DTW forward and backward for a batch of
// pairs given their cost matrices (the custom-op path), float32 and float64,
// per-pair lengths and a Sakoe–Chiba band. Full groups of L pairs go through the
// lane kernels (soft_dtw_lanes.h), the rest pair by pair (soft_dtw_pair.h).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastmath.h"
#include "registry.h"
#include "scratch.h"
#include "soft_dtw_lanes.h"
#include "soft_dtw_pair.h"

namespace py = pybind11;

namespace {

using namespace vtalign::fastmath;
using namespace vtalign::sdtw_pair;
namespace lanes = vtalign::sdtw_lanes;

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
  const PairInputs<T> in = pair_inputs(C, gamma, xlen, ylen, bt);
  const T *c = in.c, *gm = in.gm;
  const int64_t *xl = in.xl, *yl = in.yl;
  T* val = vtalign::out_ptr<T>(values, "values");
  T* r = vtalign::out_ptr<T>(R, "R");
  vtalign::advise_huge(r, sizeof(T) * P * S);  // a fresh buffer, not yet touched (scratch.h)
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return bt.pair(c, p); };
  const int64_t skewed = (bt.N + 2) * (bt.M + 2);
  if (lane_groups<T>(P) == 0 && team_mode(P, bt.N, bt.M)) {
    Geom g;
    std::vector<T> rring(forward_ring_size(bt.N));
    vtalign::Scratch<T> cs = vtalign::scratch<T>(skewed);
#pragma omp parallel
    {
      FlushSubnormals ftz;
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int64_t p = 0; p < P; ++p) {
#pragma omp single
        g.init(xl[p], yl[p], bandwidth);
        skew_costs<T>(g, cs.get(), PlainCost<T>{pair_ptr(p), bt.rs}, tid, nt);
        team_barrier(nt);
        forward_pair<T>(g, cs.get(), gm[p], r + p * S, S, rring.data(), val + p, tid, nt);
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
    std::vector<T> work, rring(forward_ring_size(bt.N));
    vtalign::Scratch<T> cs;  // this thread's skewed costs, made on its first pair
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
#if VTALIGN_SIMD512  // lane groups exist only then (lane_groups)
      if (it < G) {
        const int64_t p0 = it * L;
        init_group(grp, bt, c, p0, xl, yl, gm, bandwidth);
        work.resize(lanes::forward_work<T>(grp));
        T* slab = r + p0 * S;
        lanes::forward_group<T>(grp, slab, val + p0, work.data());
        std::fill(slab + L * lanes::state_slots(bt.N, bt.M), slab + L * S, T(0));
        continue;
      }
#endif
      const int64_t p = G * L + (it - G);
      g.init(xl[p], yl[p], bandwidth);
      if (!cs) cs = vtalign::scratch<T>(skewed);
      skew_costs<T>(g, cs.get(), PlainCost<T>{pair_ptr(p), bt.rs}, 0, 1);
      forward_pair<T>(g, cs.get(), gm[p], r + p * S, S, rring.data(), val + p, 0, 1);
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
  const PairInputs<T> in = pair_inputs(C, gamma, xlen, ylen, bt);
  const T *c = in.c, *r = R.data(), *gr = grad.data();
  [[maybe_unused]] const T* gm = in.gm;  // the weights in R already hold γ; lane groups still take it
  const int64_t *xl = in.xl, *yl = in.yl;
  T* e = vtalign::out_ptr<T>(E, "E");
  double* ec = vtalign::out_ptr<double>(EC, "EC");
  vtalign::advise_huge(e, sizeof(T) * P * NM);  // a fresh buffer, not yet touched (scratch.h)
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return bt.pair(c, p); };
  const int64_t skewed = (bt.N + 2) * (bt.M + 2);
  if (lane_groups<T>(P) == 0 && team_mode(P, bt.N, bt.M)) {
    std::vector<T> ring(3 * (bt.N + 2));
    std::vector<double> partial(omp_get_max_threads());
    vtalign::Scratch<T> es = vtalign::scratch<T>(skewed);
    Geom g;
#pragma omp parallel
    {
      FlushSubnormals ftz;
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int64_t p = 0; p < P; ++p) {
#pragma omp single
        g.init(xl[p], yl[p], bandwidth);
        backward_pair<T>(g, r + p * S, ring.data(), es.get(), tid, nt);
        const double mine = unskew_alignment<T>(g, es.get(), gr[p], e + p * NM, bt.N, bt.M,
                                                PlainCost<T>{pair_ptr(p), bt.rs}, tid, nt);
        const double v = team_sum(mine, partial.data(), tid, nt);
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
    std::vector<T> ring(3 * (bt.N + 2));
    Geom g;
    lanes::Group<T> grp;
    std::vector<T> work;
    vtalign::Scratch<T> es;  // this thread's skewed E, made on its first pair
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
#if VTALIGN_SIMD512  // lane groups exist only then (lane_groups)
      if (it < G) {
        const int64_t p0 = it * L;
        init_group(grp, bt, c, p0, xl, yl, gm, bandwidth);
        T* eo[L];
        for (int l = 0; l < L; ++l) eo[l] = e + (p0 + l) * NM;
        work.resize(lanes::backward_work<T>(grp));
        lanes::backward_group<T>(grp, r + p0 * S, gr + p0, eo, ec + p0, work.data());
        continue;
      }
#endif
      const int64_t p = G * L + (it - G);
      g.init(xl[p], yl[p], bandwidth);
      if (!es) es = vtalign::scratch<T>(skewed);
      backward_pair<T>(g, r + p * S, ring.data(), es.get(), 0, 1);
      ec[p] = unskew_alignment<T>(g, es.get(), gr[p], e + p * NM, bt.N, bt.M, PlainCost<T>{pair_ptr(p), bt.rs}, 0, 1);
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
  // Constants rather than functions: torch.compile reads module attributes, but cannot
  // trace a pybind call.
  m.attr("soft_dtw_lane_widths") = py::make_tuple(lane_groups<float>(16) * 16, lane_groups<double>(8) * 8);
  m.attr("soft_dtw_team_min_cells") = kTeamMinCells;
  m.def("soft_dtw_team_mode", &team_mode, py::arg("P"), py::arg("N"), py::arg("M"),
        "whether P pairs of [N, M] are too few for one pair per thread, so that the threads "
        "share each pair's diagonals (the custom-op path does that; the fused path does not)");
  m.def("soft_dtw_min_bandwidth", &min_bandwidth, py::arg("n"), py::arg("m"),
        "smallest Sakoe-Chiba band keeping the end cell reachable for lengths (n, m)");
}

vtalign::Register reg_soft_dtw(register_soft_dtw);

}  // namespace
