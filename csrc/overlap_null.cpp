// Mutual-kNN overlap counts under many permutations of B, against an index of
// A's neighbour lists (python/vtalign/probe/overlap_null.py builds the index:
// A's (layer, row i, neighbour j) entries sorted by the key i·N + j, with a
// dense row pointer over the N² keys).
//
// For permutation p with inverse inv, row s of B is row inv[s] of B[π] and its
// neighbour j is inv[j] there, so the query key of B-layer b's entry (s, j) is
// inv[s]·N + inv[j]; every A layer in that key's run holds the pair, and the
// count of (p, b, A layer) goes up by one. Each (p, b) has its own row of T
// counters (L1-resident for a few hundred indexed layers), so threads never
// share a counter and the counts are exact integers in any thread order.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "registry.h"

using vtalign::carray;
namespace py = pybind11;

namespace {

template <typename I>
void indexed_overlap_counts(carray<I> rowptr, carray<I> ids, carray<int64_t> idx_b, carray<int64_t> inv,
                            py::array out) {
  if (idx_b.ndim() != 3 || inv.ndim() != 2 || out.ndim() != 3)
    throw std::invalid_argument("indexed_overlap_counts: idx_b [Lb, N, k], inv [P, N], out [P, Lb, T]");
  const int64_t Lb = idx_b.shape(0), N = idx_b.shape(1), k = idx_b.shape(2);
  const int64_t P = inv.shape(0), T = out.shape(2);
  if (inv.shape(1) != N || out.shape(0) != P || out.shape(1) != Lb)
    throw std::invalid_argument("indexed_overlap_counts: inv, idx_b and out disagree on P, N or Lb");
  if (rowptr.ndim() != 1 || rowptr.shape(0) != N * N + 1)
    throw std::invalid_argument("indexed_overlap_counts: rowptr must be [N * N + 1]");
  const I* rp = rowptr.data();
  const I* id = ids.data();
  const int64_t n_ids = ids.shape(0);
  const int64_t* B = idx_b.data();
  const int64_t* V = inv.data();
  int64_t* O = vtalign::out_ptr<int64_t>(out, "out");
  // Every index is checked once here, so the hot loop below reads without branches
  // beyond its own loop bounds: rowptr non-decreasing from 0 to n_ids, ids in [0, T),
  // B's lists and every inverse permutation in [0, N).
  if (rp[0] != 0 || rp[N * N] != n_ids) throw std::invalid_argument("indexed_overlap_counts: rowptr does not span ids");
  bool bad = false;
  {
    py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (int64_t x = 0; x < N * N; ++x) bad = bad || rp[x + 1] < rp[x];
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (int64_t h = 0; h < n_ids; ++h) bad = bad || id[h] < 0 || id[h] >= T;
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (int64_t x = 0; x < Lb * N * k; ++x) bad = bad || B[x] < 0 || B[x] >= N;
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (int64_t x = 0; x < P * N; ++x) bad = bad || V[x] < 0 || V[x] >= N;
  }
  if (bad)
    throw std::invalid_argument(
        "indexed_overlap_counts: idx_b or inv holds an index outside [0, N), or the index refers past ids or T");
  // Work unit: one permutation and a block of B layers. For a row s every layer of the
  // block queries the same row inv[s] of the index, whose rowptr segment (N entries) and
  // ids (about T·k entries) then stay in L1 across the block, as do the block's int32
  // counters (LB_BLOCK·T; a count is at most N·k < 2^31, checked by the caller's shapes).
  constexpr int64_t LB_BLOCK = 8;
  const int64_t blocks = (Lb + LB_BLOCK - 1) / LB_BLOCK;
  if (N * k >= (int64_t{1} << 31)) throw std::invalid_argument("indexed_overlap_counts: N * k must be < 2^31");
  {
    py::gil_scoped_release nogil;
#pragma omp parallel
    {
      std::vector<int32_t> cnt(LB_BLOCK * T);
#pragma omp for schedule(dynamic, 1)
      for (int64_t g = 0; g < P * blocks; ++g) {
        const int64_t p = g / blocks, b0 = (g % blocks) * LB_BLOCK, b1 = std::min(Lb, b0 + LB_BLOCK);
        const int64_t* v = V + p * N;
        std::fill(cnt.begin(), cnt.end(), 0);
        for (int64_t s = 0; s < N; ++s) {
          const I* seg = rp + v[s] * N;
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t* l = B + (b * N + s) * k;
            int32_t* row = cnt.data() + (b - b0) * T;
            for (int64_t q = 0; q < k; ++q) {
              const int64_t vj = v[l[q]];
              for (I h = seg[vj], e = seg[vj + 1]; h < e; ++h) ++row[id[h]];
            }
          }
        }
        int64_t* rows = O + (p * Lb + b0) * T;
        for (int64_t x = 0; x < (b1 - b0) * T; ++x) rows[x] = cnt[x];
      }
    }
  }
}

void register_overlap_null(py::module_& m) {
  const char* doc =
      "indexed_overlap_counts(rowptr, ids, idx_b [Lb, N, k] int64, inv [P, N] int64, out [P, Lb, T] int64): "
      "mutual-kNN overlap counts of every indexed A layer with every layer of B under each permutation "
      "(rowptr [N*N + 1] and ids: int32 or int64, the same for both)";
  m.def("indexed_overlap_counts", &indexed_overlap_counts<int32_t>, doc);
  m.def("indexed_overlap_counts", &indexed_overlap_counts<int64_t>, doc);
}

vtalign::Register reg_overlap_null(register_overlap_null);

}  // namespace
