// CPU twin of kernels/knn.py and kernels/overlap.py.
//
// kNN: torch does the GEMM tile by tile (BLAS is as fast as it gets); this file
// does the part BLAS cannot: folding each similarity tile into a running top-k
// per row without ever holding N x N. The order is total -- higher value first,
// then lower index -- so results do not depend on tile order or thread count.
//
// Overlap: per-sample |N_A(i) ∩ N_B(i)| for every (la, lb) layer pair at once.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "registry.h"

using vtalign::carray;
namespace py = pybind11;

namespace {

template <typename T>
inline bool better(T v, int64_t i, T w, int64_t j) {
  return v > w || (v == w && i < j);
}

// Insert (v, i) into a list sorted best-first; caller checked it beats the last.
template <typename T>
inline void insert_sorted(T* vals, int64_t* idx, int64_t k, T v, int64_t i) {
  int64_t p = k - 1;
  while (p > 0 && better(v, i, vals[p - 1], idx[p - 1])) {
    vals[p] = vals[p - 1];
    idx[p] = idx[p - 1];
    --p;
  }
  vals[p] = v;
  idx[p] = i;
}

// Rows of `tile` are queries q0 + r; columns are keys c0 + c. Fold each row into
// the running list of its query. `self_shift` >= 0 excludes key == query + shift.
template <typename T>
void topk_rows(carray<T> tile, int64_t q0, int64_t c0, py::array vals, py::array idx,
               int64_t self_shift) {
  const int64_t M = tile.shape(0), C = tile.shape(1), k = vals.shape(1);
  if (vals.ndim() != 2 || idx.ndim() != 2 || vals.shape(0) != M || idx.shape(0) != M || idx.shape(1) != k)
    throw std::invalid_argument("topk_rows: state shape does not match tile rows");
  const T* t = tile.data();
  T* V = vtalign::out_ptr<T>(vals, "vals");
  int64_t* I = vtalign::out_ptr<int64_t>(idx, "idx");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; ++r) {
    const T* row = t + r * C;
    T* vr = V + r * k;
    int64_t* ir = I + r * k;
    const int64_t skip = self_shift >= 0 ? q0 + r + self_shift - c0 : -1;
    T thr = vr[k - 1];
    for (int64_t c = 0; c < C; ++c) {
      const T v = row[c];
      if (v < thr || c == skip) continue;
      if (!better(v, c0 + c, thr, ir[k - 1])) continue;
      insert_sorted(vr, ir, k, v, c0 + c);
      thr = vr[k - 1];
    }
  }
}

// The transposed use of a tile for a symmetric search: columns c are queries
// c0 + c and rows r are keys q0 + r. Threads split the columns so every list has
// one writer, while each thread still streams rows contiguously.
template <typename T>
void topk_cols(carray<T> tile, int64_t q0, int64_t c0, py::array vals, py::array idx,
               int64_t self_shift) {
  const int64_t M = tile.shape(0), C = tile.shape(1), k = vals.shape(1);
  if (vals.ndim() != 2 || idx.ndim() != 2 || vals.shape(0) != C || idx.shape(0) != C || idx.shape(1) != k)
    throw std::invalid_argument("topk_cols: state shape does not match tile columns");
  const T* t = tile.data();
  T* V = vtalign::out_ptr<T>(vals, "vals");
  int64_t* I = vtalign::out_ptr<int64_t>(idx, "idx");
  py::gil_scoped_release nogil;
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t lo = C * tid / nt, hi = C * (tid + 1) / nt;
    std::vector<T> thr(std::max<int64_t>(hi - lo, 0));
    for (int64_t c = lo; c < hi; ++c) thr[c - lo] = V[c * k + k - 1];
    for (int64_t r = 0; r < M; ++r) {
      const T* row = t + r * C;
      const int64_t key = q0 + r;
      for (int64_t c = lo; c < hi; ++c) {
        const T v = row[c];
        if (v < thr[c - lo]) continue;
        if (self_shift >= 0 && key == c0 + c + self_shift) continue;
        T* vc = V + c * k;
        int64_t* ic = I + c * k;
        if (!better(v, key, vc[k - 1], ic[k - 1])) continue;
        insert_sorted(vc, ic, k, v, key);
        thr[c - lo] = vc[k - 1];
      }
    }
  }
}

// Per-sample |A[la, i, :] ∩ B[lb, i, :]| for every layer pair (lists hold
// distinct indices). `out` is [La, Lb, N] int32 per sample, or [La, Lb] int64
// totals when reduce is set, so the mean never needs an La x Lb x N buffer.
void overlap_counts(carray<int64_t> a, carray<int64_t> b, py::array out, bool reduce) {
  const int64_t La = a.shape(0), N = a.shape(1), k = a.shape(2);
  const int64_t Lb = b.shape(0);
  if (b.shape(1) != N || b.shape(2) != k)
    throw std::invalid_argument("overlap_counts: idx_a and idx_b shapes differ beyond the layer axis");
  if (out.shape(0) != La || out.shape(1) != Lb || out.ndim() != (reduce ? 2 : 3) ||
      (!reduce && out.shape(2) != N))
    throw std::invalid_argument("overlap_counts: out must be [La, Lb] (reduce) or [La, Lb, N]");
  int32_t* per = reduce ? nullptr : vtalign::out_ptr<int32_t>(out, "out");
  int64_t* tot = reduce ? vtalign::out_ptr<int64_t>(out, "out") : nullptr;
  const int64_t* A = a.data();
  const int64_t* B = b.data();
  py::gil_scoped_release nogil;
  // k^2 branch-free compares vectorise and beat a merge at small k; larger k
  // sorts every list once (La + Lb sorts) and merges per pair.
  const bool brute = k <= 16;
  std::vector<int64_t> sa, sb;
  if (!brute) {
    sa.assign(A, A + La * N * k);
    sb.assign(B, B + Lb * N * k);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < La * N; ++r) std::sort(sa.begin() + r * k, sa.begin() + (r + 1) * k);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < Lb * N; ++r) std::sort(sb.begin() + r * k, sb.begin() + (r + 1) * k);
  }
  const int64_t* PA = brute ? A : sa.data();
  const int64_t* PB = brute ? B : sb.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t la = 0; la < La; ++la)
    for (int64_t lb = 0; lb < Lb; ++lb) {
      int64_t sum = 0;
      for (int64_t i = 0; i < N; ++i) {
        const int64_t* pa = PA + (la * N + i) * k;
        const int64_t* pb = PB + (lb * N + i) * k;
        int32_t c = 0;
        if (brute) {
          for (int64_t x = 0; x < k; ++x)
            for (int64_t y = 0; y < k; ++y) c += pa[x] == pb[y];
        } else {
          int64_t x = 0, y = 0;
          while (x < k && y < k) {
            if (pa[x] < pb[y]) ++x;
            else if (pb[y] < pa[x]) ++y;
            else { ++c; ++x; ++y; }
          }
        }
        if (reduce) sum += c;
        else per[(la * Lb + lb) * N + i] = c;
      }
      if (reduce) tot[la * Lb + lb] = sum;
    }
}

vtalign::Register reg([](py::module_& m) {
  m.def("topk_rows", &topk_rows<float>, py::arg("tile"), py::arg("q0"), py::arg("c0"),
        py::arg("vals"), py::arg("idx"), py::arg("self_shift"));
  m.def("topk_rows", &topk_rows<double>);
  m.def("topk_cols", &topk_cols<float>, py::arg("tile"), py::arg("q0"), py::arg("c0"),
        py::arg("vals"), py::arg("idx"), py::arg("self_shift"));
  m.def("topk_cols", &topk_cols<double>);
  m.def("overlap_counts", &overlap_counts, py::arg("idx_a"), py::arg("idx_b"), py::arg("out"),
        py::arg("reduce"));
});

}  // namespace
