// Order-aware and graph-aware metrics over kNN lists, every layer pair in one call
// (docs/design.md §3.2). The lists of each layer are computed once upstream; here each
// (la, lb) pair only walks the [N, k] index lists, so nothing is N x N.
//
// list_scores: per-sample integer scores for every pair --
//   kind 0 cycle: 1 if i is among the A-neighbours of one of i's B-neighbours,
//   kind 1 lcs:   longest common subsequence of the ordered lists,
//   kind 2 edit:  Levenshtein distance (unit costs) of the ordered lists.
// cknna_terms: the four sums that make up platonic-rep's unbiased HSIC of
//   (M∘K, M∘L), M the row-wise intersection of the two k-neighbour masks,
//   with K and L entries taken from the per-list similarity values.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "registry.h"

using vtalign::carray;
namespace py = pybind11;

namespace {

inline int64_t find(const int64_t* row, int64_t k, int64_t v) {
  for (int64_t m = 0; m < k; ++m)
    if (row[m] == v) return m;
  return -1;
}

// Two-row dynamic programmes: k is small (tens), so a row of k + 1 ints per
// thread fits in L1 and the table is never materialised.
int32_t lcs(const int64_t* x, const int64_t* y, int64_t k, std::vector<int32_t>& prev,
            std::vector<int32_t>& cur) {
  std::fill(prev.begin(), prev.end(), 0);
  for (int64_t i = 1; i <= k; ++i) {
    cur[0] = 0;
    for (int64_t j = 1; j <= k; ++j)
      cur[j] = x[i - 1] == y[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[k];
}

int32_t levenshtein(const int64_t* x, const int64_t* y, int64_t k, std::vector<int32_t>& prev,
                    std::vector<int32_t>& cur) {
  for (int64_t j = 0; j <= k; ++j) prev[j] = static_cast<int32_t>(j);
  for (int64_t i = 1; i <= k; ++i) {
    cur[0] = static_cast<int32_t>(i);
    for (int64_t j = 1; j <= k; ++j) {
      const int32_t sub = prev[j - 1] + (x[i - 1] != y[j - 1]);
      cur[j] = std::min(sub, std::min(prev[j], cur[j - 1]) + 1);
    }
    std::swap(prev, cur);
  }
  return prev[k];
}

void check_lists(const carray<int64_t>& a, const carray<int64_t>& b, const char* who) {
  if (a.ndim() != 3 || b.ndim() != 3)
    throw std::invalid_argument(std::string(who) + ": neighbour lists must be [L, N, k]");
  if (b.shape(1) != a.shape(1) || b.shape(2) != a.shape(2))
    throw std::invalid_argument(std::string(who) + ": idx_a and idx_b differ beyond the layer axis");
}

// out: [La, Lb, N] int32 per sample, or [La, Lb] int64 totals when reduce is set.
void list_scores(carray<int64_t> a, carray<int64_t> b, int64_t kind, py::array out, bool reduce) {
  check_lists(a, b, "list_scores");
  if (kind < 0 || kind > 2) throw std::invalid_argument("list_scores: kind must be 0, 1 or 2");
  const int64_t La = a.shape(0), N = a.shape(1), k = a.shape(2), Lb = b.shape(0);
  if (out.shape(0) != La || out.shape(1) != Lb || out.ndim() != (reduce ? 2 : 3) ||
      (!reduce && out.shape(2) != N))
    throw std::invalid_argument("list_scores: out must be [La, Lb] (reduce) or [La, Lb, N]");
  int32_t* per = reduce ? nullptr : vtalign::out_ptr<int32_t>(out, "out");
  int64_t* tot = reduce ? vtalign::out_ptr<int64_t>(out, "out") : nullptr;
  const int64_t* A = a.data();
  const int64_t* B = b.data();
  py::gil_scoped_release nogil;
  for (int64_t r = 0; r < La * N * k; ++r)
    if (A[r] < 0 || A[r] >= N) throw std::invalid_argument("list_scores: idx_a out of range");
  for (int64_t r = 0; r < Lb * N * k; ++r)
    if (B[r] < 0 || B[r] >= N) throw std::invalid_argument("list_scores: idx_b out of range");
#pragma omp parallel
  {
    std::vector<int32_t> prev(k + 1), cur(k + 1);
#pragma omp for collapse(2) schedule(static)
    for (int64_t la = 0; la < La; ++la)
      for (int64_t lb = 0; lb < Lb; ++lb) {
        const int64_t* LA = A + la * N * k;
        const int64_t* LB = B + lb * N * k;
        int64_t sum = 0;
        for (int64_t i = 0; i < N; ++i) {
          const int64_t* pa = LA + i * k;
          const int64_t* pb = LB + i * k;
          int32_t s;
          if (kind == 0) {
            s = 0;
            for (int64_t m = 0; m < k && !s; ++m) s = find(LA + pb[m] * k, k, i) >= 0;
          } else if (kind == 1) {
            s = lcs(pa, pb, k, prev, cur);
          } else {
            s = levenshtein(pa, pb, k, prev, cur);
          }
          if (reduce) sum += s;
          else per[(la * Lb + lb) * N + i] = s;
        }
        if (reduce) tot[la * Lb + lb] = sum;
      }
  }
}

// For each requested pair p = (la, lb): out[p] = {T1, sum P, sum Q, cross} with
//   P = M∘K, Q = M∘L, M_ij = [j ∈ N_A(i)][j ∈ N_B(i)],
//   T1 = Σ_ij P_ij Q_ji, cross = Σ_j (Σ_i P_ij)(Σ_l Q_jl) = 1ᵀ P Q 1.
// K_ij for j ∈ N_A(i) is va[la, i, pos]; L_ij for j ∈ N_B(i) is vb[lb, i, pos].
void cknna_terms(carray<int64_t> a, carray<double> va, carray<int64_t> b, carray<double> vb,
                 carray<int64_t> pairs, py::array out) {
  check_lists(a, b, "cknna_terms");
  const int64_t La = a.shape(0), N = a.shape(1), k = a.shape(2), Lb = b.shape(0);
  if (va.ndim() != 3 || vb.ndim() != 3 || va.shape(0) != La || va.shape(1) != N || va.shape(2) != k ||
      vb.shape(0) != Lb || vb.shape(1) != N || vb.shape(2) != k)
    throw std::invalid_argument("cknna_terms: values must match their index lists");
  if (pairs.ndim() != 2 || pairs.shape(1) != 2)
    throw std::invalid_argument("cknna_terms: pairs must be [P, 2]");
  const int64_t P = pairs.shape(0);
  if (out.ndim() != 2 || out.shape(0) != P || out.shape(1) != 4)
    throw std::invalid_argument("cknna_terms: out must be [P, 4] float64");
  double* O = vtalign::out_ptr<double>(out, "out");
  const int64_t* A = a.data();
  const int64_t* B = b.data();
  const double* VA = va.data();
  const double* VB = vb.data();
  const int64_t* PR = pairs.data();
  for (int64_t p = 0; p < P; ++p)
    if (PR[2 * p] < 0 || PR[2 * p] >= La || PR[2 * p + 1] < 0 || PR[2 * p + 1] >= Lb)
      throw std::invalid_argument("cknna_terms: pair index out of range");
  py::gil_scoped_release nogil;
  for (int64_t r = 0; r < La * N * k; ++r)
    if (A[r] < 0 || A[r] >= N) throw std::invalid_argument("cknna_terms: idx_a out of range");
  for (int64_t r = 0; r < Lb * N * k; ++r)
    if (B[r] < 0 || B[r] >= N) throw std::invalid_argument("cknna_terms: idx_b out of range");
#pragma omp parallel
  {
    std::vector<double> col(N), row(N);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t* LA = A + PR[2 * p] * N * k;
      const int64_t* LB = B + PR[2 * p + 1] * N * k;
      const double* KA = VA + PR[2 * p] * N * k;
      const double* KB = VB + PR[2 * p + 1] * N * k;
      std::fill(col.begin(), col.end(), 0.0);
      std::fill(row.begin(), row.end(), 0.0);
      double t1 = 0, sp = 0, sq = 0;
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t m = 0; m < k; ++m) {
          const int64_t j = LA[i * k + m];
          const int64_t q = find(LB + i * k, k, j);
          if (q < 0) continue;
          const double kij = KA[i * k + m], lij = KB[i * k + q];
          sp += kij;
          sq += lij;
          col[j] += kij;
          row[i] += lij;
          // M_ji needs i in both lists of j; then Q_ji = L_ji = L_ij (L is symmetric).
          if (find(LA + j * k, k, i) >= 0 && find(LB + j * k, k, i) >= 0) t1 += kij * lij;
        }
      }
      double cross = 0;
      for (int64_t j = 0; j < N; ++j) cross += col[j] * row[j];
      O[4 * p + 0] = t1;
      O[4 * p + 1] = sp;
      O[4 * p + 2] = sq;
      O[4 * p + 3] = cross;
    }
  }
}

vtalign::Register reg([](py::module_& m) {
  m.def("list_scores", &list_scores, py::arg("idx_a"), py::arg("idx_b"), py::arg("kind"),
        py::arg("out"), py::arg("reduce"));
  m.def("cknna_terms", &cknna_terms, py::arg("idx_a"), py::arg("val_a"), py::arg("idx_b"),
        py::arg("val_b"), py::arg("pairs"), py::arg("out"));
});

}  // namespace
