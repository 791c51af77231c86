// Fused soft-DTW forward+backward (soft_dtw_fused), used by
// python/vtalign/ops/soft_dtw/cpp_fused.py when soft_dtw is differentiated through the features.

#include "registry.h"
#include "scratch.h"
#include "soft_dtw_pair.h"  // the pair kernels, lane kernels and batch helpers

namespace {

using namespace vtalign::sdtw_pair;

// Forward and backward in one call, for callers that differentiate through the
// features (python/vtalign/ops/soft_dtw/cpp_fused.py: FeatureSoftDTW). The soft-min state
// never leaves the thread that made it (a per-thread slab, reused group after
// group, so it stays in cache): no [P, S] state buffer is written to memory and
// read back, which on a bandwidth-starved CPU costs more than the DP itself.
// Outputs: values; and when need_grad: E = dvalue/dC [P, N, M], EC = <E, C>
// (float64), rowsum [P, N] and colsum [P, M] of E (the GEMM gradient needs them).
// The lane slab is per-thread scratch kept across calls (vtalign::thread_scratch),
// bounded by the caller (FUSED_SLAB_LIMIT in ops/soft_dtw/cpp_fused.py).
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
  const PairInputs<T> in = pair_inputs(C, gamma, xlen, ylen, bt);
  const T *c = in.c, *gm = in.gm;
  const int64_t *xl = in.xl, *yl = in.yl;
  T* val = vtalign::out_ptr<T>(values, "values");
  T* e = need_grad ? vtalign::out_ptr<T>(E, "E") : nullptr;
  double* ec = need_grad ? vtalign::out_ptr<double>(EC, "EC") : nullptr;
  T* rsum = need_grad ? vtalign::out_ptr<T>(rowsum, "rowsum") : nullptr;
  T* csum = need_grad ? vtalign::out_ptr<T>(colsum, "colsum") : nullptr;
  // E may be C itself (the caller's GEMM buffer, overwritten in place: one [P, N, M]
  // allocation less). Each lane group reads its rows of C for the last time before it
  // writes the same rows of E; the per-pair path works on a skewed copy of its cost
  // and reads each cell of C once more, just before writing E there.
  const bool alias = e && e < c + P * NM && c < e + P * NM;
  if (alias && (e != c || bt.rs != bt.M || bt.pair(c, P - 1) != c + (P - 1) * NM))
    throw std::invalid_argument("soft_dtw_fused: E may only alias C when both are the same contiguous [P, N, M]");
  py::gil_scoped_release nogil;
  auto pair_ptr = [&](int64_t p) { return bt.pair(c, p); };
  constexpr int L = lanes::kLanes<T>;
  const int64_t G = lane_groups<T>(P), items = G + (P - G * L);
#pragma omp parallel
  {
    FlushSubnormals ftz;
    lanes::Group<T> grp;
    std::vector<T> work, ring;
    vtalign::Scratch<T> state, skewed;  // pair path: made on a thread's first pair
    Geom g;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
#if VTALIGN_SIMD512  // lane groups exist only then (lane_groups)
      if (it < G) {
        const int64_t p0 = it * L;
        init_group(grp, bt, c, p0, xl, yl, gm, bandwidth);
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
        T* slab = vtalign::thread_scratch<T>(L * lanes::state_slots(bt.N, bt.M));
        lanes::forward_group<T, true>(grp, slab, val + p0, work.data());
        T* eo[L];
        T* ro[L];
        T* co[L];
        for (int l = 0; l < L; ++l) {
          eo[l] = e + (p0 + l) * NM;
          ro[l] = rsum + (p0 + l) * bt.N;
          co[l] = csum + (p0 + l) * bt.M;
        }
        T one[L];
        std::fill(one, one + L, T(1));
        lanes::backward_group<T>(grp, slab, one, eo, need_ec ? ec + p0 : nullptr, work.data(), ro, co);
        if (!need_ec) std::fill(ec + p0, ec + p0 + L, 0.0);
        continue;
      }
#endif
      const int64_t p = G * L + (it - G), S = pair_state_slots<T>(bt.N, bt.M);
      g.init(xl[p], yl[p], bandwidth);
      // this pair's cost, transformed as the lane groups read it
      const T* xr = xnp ? xnp + p * bt.N : nullptr;
      const T* yr = ynp ? ynp + p * bt.M : nullptr;
      const T a = T(alpha), off = T(offset), lo = clamp ? T(0) : -kInf<T>;
      const T* cp = pair_ptr(p);
      const int64_t rs = bt.rs;
      auto cost = [=](int64_t I, int64_t J) {
        const T v = a * cp[(I - 1) * rs + (J - 1)] + off + (xr ? xr[I - 1] : T(0)) + (yr ? yr[J - 1] : T(0));
        return v > lo ? v : lo;
      };
      if (!state) {
        state = vtalign::scratch<T>(S);
        skewed = vtalign::scratch<T>((bt.N + 2) * (bt.M + 2));
        ring.resize(forward_ring_size(bt.N));
      }
      skew_costs<T>(g, skewed.get(), cost, 0, 1);
      forward_pair<T>(g, skewed.get(), gm[p], state.get(), S, ring.data(), val + p, 0, 1);
      if (!need_grad) continue;
      T* ep = e + p * NM;
      backward_pair<T>(g, state.get(), ring.data(), skewed.get(), 0, 1);  // E over the costs
      ec[p] = unskew_alignment<T>(g, skewed.get(), T(1), ep, bt.N, bt.M, cost, 0, 1);
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

void register_soft_dtw_fused(py::module_& m) {
  const char* fudoc =
      "soft_dtw_fused(D[P1,P2,N,M], gamma[P], xlen[P], ylen[P], bandwidth, need_grad, need_ec, alpha, "
      "offset, clamp, xnorm[P,N] or [0], ynorm[P,M] or [0], values[P], E[P,N,M], EC[P] float64, rowsum[P,N], "
      "colsum[P,M]): soft-DTW on the cost C = alpha*D + xnorm_i + ynorm_j + offset (clamped at 0 "
      "when clamp), forward and (when need_grad) the unscaled backward in one call; the gradient "
      "buffers may be empty without need_grad; EC is 0 for lane groups without need_ec; E may be "
      "D itself (contiguous), which is then overwritten";
  m.def("soft_dtw_fused", &soft_dtw_fused<float>, py::arg("C"), py::arg("gamma"), py::arg("xlen"),
        py::arg("ylen"), py::arg("bandwidth"), py::arg("need_grad"), py::arg("need_ec"), py::arg("alpha"),
        py::arg("offset"), py::arg("clamp"), py::arg("xnorm"), py::arg("ynorm"), py::arg("values"), py::arg("E"),
        py::arg("EC"), py::arg("rowsum"), py::arg("colsum"), fudoc);
  m.def("soft_dtw_fused", &soft_dtw_fused<double>);
  m.def(
      "soft_dtw_fused_slab_bytes",
      [](int64_t N, int64_t M, bool is_double) {
        return is_double ? fused_slab_bytes<double>(N, M) : fused_slab_bytes<float>(N, M);
      },
      py::arg("N"), py::arg("M"), py::arg("is_double"),
      "per-thread scratch soft_dtw_fused needs for a lane group of [N, M] pairs");
}

vtalign::Register reg_soft_dtw_fused(register_soft_dtw_fused);

}  // namespace
