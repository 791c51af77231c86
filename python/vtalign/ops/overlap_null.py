"""Mutual-kNN overlap counts of many permutations and many layers at once, by
looking B's permuted neighbours up in an index of A's.

For a permutation π the neighbours of row i of B[π] are π⁻¹(N_B(π(i))), so
the overlap count of A-layer t with B-layer b is the number of (i, j) with
j ∈ N_A,t(i) and j ∈ π⁻¹(N_B,b(π(i))). All of A's (t, i, j) entries -- every
layer of every A model together -- are sorted by the key i·N + j once; a
query (i, j) from B's permuted lists finds the A layers holding j in row i as
one contiguous run of that order, so each (B layer, permutation) costs N·k
look-ups plus the hits themselves, whatever the number of A layers. Counts are
exact integers; `mutual_knn = count / (N k)` as in `knn_overlap`.

This replaces, per permutation, a re-indexing of B's lists and one list pass
per (A model, B model) by one pass per B model shared by every A model -- what
makes a leaderboard's permutation null cost about as much as its raw scores.

Backends: "cpp" (csrc/overlap_null.cpp: one pass per (permutation, B layer) with a
row of T counters, threads over the pairs) for the dense index (N <= 4096) when the
C++ core is built; "torch" (vectorised look-ups, `bincount`) otherwise. Both give the
same integers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vtalign.ops._common import check_choice, cpp, has_cpp

_DENSE_KEYS = 1 << 24  # up to N = 4096 a dense row pointer (N² + 1 int64) beats a binary search
_CHUNK_ENTRIES = 1 << 22  # query entries (permutations x B layers x N x k) per chunk
_I32 = 2 ** 31 - 1


class OverlapIndex:
    """Neighbour lists of T layers (one or several models, stacked), indexed by (row, neighbour).

    Args:
        lists: tensors `[L_m, N, k]` (int, indices in [0, N), no repeats within a
            row -- what a kNN search returns); all with the same N and k.
    """

    def __init__(self, lists: Sequence[torch.Tensor]):
        if not lists:
            raise ValueError("lists must hold at least one [L, N, k] tensor")
        stacked = torch.cat([t.cpu().to(torch.int64) for t in lists])  # [T, N, k]
        self.t, self.n, self.k = stacked.shape
        self.sizes = [int(t.shape[0]) for t in lists]
        n = self.n
        keys = (torch.arange(n).view(1, n, 1) * n + stacked).flatten()
        order = torch.argsort(keys, stable=True)
        self.keys = keys[order]
        self.ids = torch.arange(self.t).repeat_interleave(n * self.k)[order]
        self.rowptr = self.run_len = None
        if n * n <= _DENSE_KEYS:
            counts = torch.bincount(keys, minlength=n * n)
            self.rowptr = torch.zeros(n * n + 1, dtype=torch.int64)
            self.rowptr[1:] = counts.cumsum(0)
            # how many indexed layers hold (i, j): one gather per query tells hit from miss
            self.run_len = counts.to(torch.int32)
            if self.t * n * self.k < _I32:  # int32 positions: half the memory traffic of every pass
                self.rowptr, self.ids = self.rowptr.to(torch.int32), self.ids.to(torch.int32)

    def _runs(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rowptr is not None:
            return self.rowptr.index_select(0, q), self.rowptr.index_select(0, q + 1)
        return torch.searchsorted(self.keys, q), torch.searchsorted(self.keys, q, right=True)

    def counts(self, idx_b: torch.Tensor, perms: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
        """`[P, Lb, T]` int64 overlap counts of each indexed layer with each layer of
        B[π], from B's lists `idx_b [Lb, N, k]` and permutations `perms [P, N]`.
        backend: "auto" (C++ where it applies), "cpp" or "torch"."""
        check_choice("backend", backend, ("auto", "cpp", "torch"))
        lb, n, k = idx_b.shape
        if n != self.n or k != self.k:
            raise ValueError(f"idx_b is [Lb, N={n}, k={k}] but the index holds N={self.n}, k={self.k}")
        perms = perms.cpu().to(torch.int64)
        if backend == "cpp" and self.rowptr is None:
            raise ValueError(f"backend='cpp' needs the dense index (N <= {int(_DENSE_KEYS ** 0.5)}), got N={n}")
        if backend == "cpp" or (backend == "auto" and self.rowptr is not None and has_cpp()):
            return self._cpp_counts(idx_b, perms)
        ib = idx_b.cpu().to(torch.int64).reshape(lb, n * k)
        P = perms.shape[0]
        out = torch.empty(P, lb, self.t, dtype=torch.int64)
        per_perm = lb * n * k
        step = max(1, _CHUNK_ENTRIES // per_perm)
        # int32 when every key, position and hit number of a chunk fits (at most T hits per query)
        small = self.run_len is not None and self.ids.dtype == torch.int32 and per_perm * self.t < _I32
        if small:
            step = max(1, min(step, _I32 // (per_perm * self.t)))
        it = torch.int32 if small else torch.int64
        ar = torch.arange(n, dtype=it)
        for s in range(0, P, step):
            pc = perms[s:s + step]
            c = pc.shape[0]
            inv = torch.empty(c, n, dtype=it).scatter_(1, pc, ar.expand(c, n))
            # B's row s is row inv[s] of B[π] and its neighbour j is inv[j] there: the query
            # keys come from B's own lists with no re-indexing of them
            q = (inv.view(c, 1, n, 1) * n + torch.gather(inv, 1, ib.view(1, -1).expand(c, -1)).view(c, lb, n, k))
            q = q.flatten()
            groups = c * lb
            if self.run_len is not None:
                cnt = self.run_len.index_select(0, q).to(it)
                if self.t <= 64:  # few indexed layers: most queries miss, keep the hits only
                    keep = torch.nonzero(cnt).squeeze(1)
                    cnt, lo = cnt.index_select(0, keep), self.rowptr.index_select(0, q.index_select(0, keep))
                    hits_per_group = torch.zeros(groups, dtype=torch.int64).index_add_(
                        0, torch.div(keep, per_perm // lb, rounding_mode="floor"), cnt.to(torch.int64))
                else:  # many: most queries hit some layer, filtering would cost more than it saves
                    lo = self.rowptr.index_select(0, q)
                    hits_per_group = cnt.view(groups, n * k).sum(1, dtype=torch.int64)
            else:
                lo, hi = self._runs(q)
                cnt = hi - lo
                hits_per_group = cnt.view(groups, n * k).sum(1)
            # per hit: its position in A's order (runs laid end to end) and its bin
            # (perm, B layer, A layer); queries and hits come in group order
            hits = int(hits_per_group.sum())
            qidx = torch.repeat_interleave(cnt, output_size=hits)
            start = lo.to(it) - (cnt.cumsum(0, dtype=it) - cnt)
            pos = torch.arange(hits, dtype=it).add_(start.index_select(0, qidx))
            if qidx.numel() and cnt.numel() == q.numel():  # unfiltered: a hit's group is its query's
                base = torch.div(qidx, n * k, rounding_mode="floor").mul_(self.t)
            else:
                base = torch.repeat_interleave(torch.arange(groups, dtype=it) * self.t, hits_per_group,
                                               output_size=hits)
            bins = self.ids.index_select(0, pos).to(it).add_(base)
            out[s:s + c] = torch.bincount(bins, minlength=groups * self.t).view(c, lb, self.t)
        return out

    def _cpp_counts(self, idx_b: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        P, n = perms.shape
        inv = torch.empty_like(perms).scatter_(1, perms, torch.arange(n).expand(P, n))
        out = torch.empty(P, idx_b.shape[0], self.t, dtype=torch.int64)
        cpp().indexed_overlap_counts(self.rowptr.numpy(), self.ids.numpy(),
                                     idx_b.cpu().to(torch.int64).contiguous().numpy(), inv.contiguous().numpy(),
                                     out.numpy())
        return out

    def split(self, counts: torch.Tensor) -> list[torch.Tensor]:
        """`[P, Lb, T]` counts -> one `[P, L_m, Lb]` float64 mutual-kNN tensor per indexed model."""
        scores = counts.to(torch.float64) / (self.n * self.k)
        return [s.transpose(1, 2).contiguous() for s in torch.split(scores, self.sizes, dim=2)]


def mutual_knn_null(idx_a: torch.Tensor, idx_b: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """`[P, La, Lb]` float64 mutual kNN of A against B[π] for each row π of `perms`:
    `knn_null(idx_a, idx_b, "mutual_knn", perms)` by the index, same numbers."""
    index = OverlapIndex([idx_a])
    return index.split(index.counts(idx_b, perms))[0]


__all__ = ["OverlapIndex", "mutual_knn_null"]
