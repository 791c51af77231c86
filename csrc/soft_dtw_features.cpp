// The two passes over [P, N, D] features around the fused soft-DTW
// (python/vtalign/ops/soft_dtw/cpp_fused.py): the squared row norms of the
// squared-Euclidean cost, and the closed-form gradient's combine step.
// In torch each took two element-wise passes with an allocation between them
// ((x*x).sum(-1); mul_ then addcmul_), about a tenth of a B = 32, N = M = 256
// float32 step; here each is one pass that reads the features once.
#include <cstdint>
#include <stdexcept>

#include "registry.h"

using vtalign::carray;
namespace py = pybind11;

namespace {

// Below this many elements the pass is cheaper than waking a second thread
// (idle OpenMP workers sleep under OMP_WAIT_POLICY=passive).
constexpr int64_t kParallelFrom = int64_t(1) << 15;

int64_t last_dim(const py::array& a) { return a.ndim() ? a.shape(a.ndim() - 1) : 1; }

// out[r] = Σ_d x[r, d]² for x viewed as [R, D] (R = every leading dimension).
template <typename T>
void row_sqnorms(carray<T> x, py::array out) {
  const int64_t D = last_dim(x), R = D ? x.size() / D : 0;
  if (out.size() != R) throw std::invalid_argument("row_sqnorms: out must hold one value per row of x");
  const T* xp = x.data();
  T* o = vtalign::out_ptr<T>(out, "out");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (R * D >= kParallelFrom)
  for (int64_t r = 0; r < R; ++r) {
    const T* row = xp + r * D;
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < D; ++d) s += row[d] * row[d];
    o[r] = s;
  }
}

// G[p, i, :] = a[p]·G[p, i, :] + b[p]·rows[p, i]·x[p, i, :] in place, for G and x
// [P, N, D]; the second term is skipped when rows is empty.
template <typename T>
void grad_combine(py::array G, carray<T> a, carray<T> b, carray<T> rows, carray<T> x) {
  T* g = vtalign::out_ptr<T>(G, "G");
  const int64_t P = a.size(), D = last_dim(G), R = D ? G.size() / D : 0, N = P ? R / P : 0;
  const bool with_rows = rows.size() != 0;
  if (G.ndim() != 3 || G.shape(0) != P || b.size() != P)
    throw std::invalid_argument("grad_combine: G must be [P, N, D] with one a and one b per pair");
  if (with_rows && (rows.size() != R || x.size() != G.size()))
    throw std::invalid_argument("grad_combine: rows must be [P, N] and x [P, N, D] like G");
  const T *ap = a.data(), *bp = b.data(), *rp = rows.data(), *xp = x.data();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (R * D >= kParallelFrom)
  for (int64_t r = 0; r < R; ++r) {
    const int64_t p = r / N;
    T* gr = g + r * D;
    const T ar = ap[p];
    if (!with_rows) {
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) gr[d] *= ar;
      continue;
    }
    const T br = bp[p] * rp[r];
    const T* xr = xp + r * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) gr[d] = ar * gr[d] + br * xr[d];
  }
}

void register_soft_dtw_features(py::module_& m) {
  m.def("row_sqnorms", &row_sqnorms<float>, py::arg("x"), py::arg("out"),
        "row_sqnorms(x[..., D], out[...]): out = sum of squares over the last dimension");
  m.def("row_sqnorms", &row_sqnorms<double>);
  m.def("grad_combine", &grad_combine<float>, py::arg("G"), py::arg("a"), py::arg("b"), py::arg("rows"),
        py::arg("x"),
        "grad_combine(G[P,N,D], a[P], b[P], rows[P,N] or [0], x[P,N,D]): in place, "
        "G = a*G + b*rows*x per pair (G = a*G when rows is empty)");
  m.def("grad_combine", &grad_combine<double>);
}

vtalign::Register reg_soft_dtw_features(register_soft_dtw_features);

}  // namespace
