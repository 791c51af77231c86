"""Contrastive losses (docs/design.md §3.3, §3.5), one concern per file.

Both losses reduce to one core, `infonce`, over a similarity S[N, M] that is never
stored whole: the forward keeps, per row, log Σ_j e^{s_ij} and the log-sum over the
row's positives (and the same per column, online across row chunks), and the backward
recomputes S chunk by chunk to form dL/dS and the gradients. Memory is O((N+M)·D) plus
one chunk (`max_workspace_bytes`).

CPU (`chunked_torch.py`; "cpp" and "torch" both run it): chunked torch, one BLAS product per chunk
forward and three backward (recompute, dA, dB). The products dominate the time, so a
C++ twin would only re-implement BLAS; the elementwise work per chunk is done in place.
GPU: kernels/contrastive.py (flash-style tiles, online log-sum-exp, recomputing backward).

The frame-slot loss with pool="mean" is linear in the frames, so it is the plain
InfoNCE on flattened `[N, T·D]` rows (video rows weighted by valid/|V_j|) and uses
the same core; "max" and "lse" pools use a slot core that loops over T per chunk.
"""
from vtalign.ops.contrastive.api import contrastive_loss, infonce_parts, slot_contrastive_loss, slot_parts
from vtalign.ops.contrastive.checks import (
    DEFAULT_WORKSPACE,
    MIN_POOL_TEMPERATURE,
    POOLS,
    REDUCTIONS,
    check_logit_scale,
    check_positive_rows,
    check_slot_inputs,
)

__all__ = ["DEFAULT_WORKSPACE", "MIN_POOL_TEMPERATURE", "POOLS", "REDUCTIONS", "check_logit_scale",
           "check_positive_rows", "check_slot_inputs", "contrastive_loss", "infonce_parts", "slot_contrastive_loss",
           "slot_parts"]
