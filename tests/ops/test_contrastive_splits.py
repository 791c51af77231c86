"""The contrastive Triton kernels' column splits (kernels/contrastive.py): the 2-D grid's
log-sum-exp merge and split dX reduction against a float64 reference, run-to-run
determinism, and the fp32 dL/ds of the fp16/bf16 backward.

The launchers are called directly on unit rows, so the reference is the loss of the
raw cosines (no normalisation in its graph). Most tests lower the minimum column tiles
per split so that small, ragged problems (cheap in the interpreter) split several
ways; one test keeps the launcher's own rule.
"""
import pytest
import torch

from tests._device import ON_CUDA
from tests._device import TRITON_DEVICE as DEV
from vtalign.kernels import contrastive as K

# fp32 "ieee" dots: exact float32 products in the interpreter; on a GPU exp/log are approximate
TOL = dict(rtol=1e-4, atol=1e-5) if ON_CUDA else dict(rtol=1e-5, atol=1e-6)
NEG_INF = float("-inf")


@pytest.fixture
def many_splits(monkeypatch):
    """One column tile per split: 100 columns split 4 ways, the last split 4 columns wide."""
    monkeypatch.setitem(K.MIN_SPLIT_TILES, "fwd", 1)
    monkeypatch.setitem(K.MIN_SPLIT_TILES, "bwd", 1)


def _unit(*shape, gen):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _mask(n, m, gen):
    """Random positives with at least one per row and per column."""
    pos = torch.rand(n, m, generator=gen) < 0.2
    pos[torch.arange(n), torch.arange(n) % m] = True
    pos[torch.arange(m) % n, torch.arange(m)] = True
    return pos


def _infonce_ref(s, positives, g_row, g_col, rows, cols):
    """(row_stats, col_stats, weighted loss) of logits s in float64."""
    p = positives if positives is not None else torch.eye(*s.shape, dtype=torch.bool)
    ps = torch.where(p, s, torch.tensor(NEG_INF, dtype=s.dtype))
    rs = torch.stack([torch.logsumexp(s, 1), torch.logsumexp(ps, 1)])
    cs = torch.stack([torch.logsumexp(s, 0), torch.logsumexp(ps, 0)])
    loss = rows * (g_row * (rs[0] - rs[1])).sum() + cols * (g_col * (cs[0] - cs[1])).sum()
    return rs, cs, loss


def _splits(n, m, kernel, pass_):
    return K._split_grid(n, m, K.config(kernel, torch.float32), pass_)[1]


def _run_infonce(a, b, scale, positives, rows, cols, g_row, g_col, dtype=torch.float32):
    a_, b_ = a.to(DEV, dtype), b.to(DEV, dtype)
    sc = torch.tensor(scale, device=DEV)
    pos = positives.to(DEV) if positives is not None else None
    rl, cl, rs, cs = K.infonce_forward(a_, b_, sc, pos, 0, rows, cols, precision="ieee")
    da, db, ds = K.infonce_backward(a_, b_, sc, pos, 0, rows, cols, rs, cs, g_row.to(DEV), g_col.to(DEV),
                                    precision="ieee")
    return [t.cpu() for t in (rl, cl, rs, cs, da, db, ds)]


def _check_infonce(n, m, d, positives, rows, cols, gen, scale=7.0):
    a, b = _unit(n, d, gen=gen), _unit(m, d, gen=gen)
    g_row, g_col = torch.rand(n, generator=gen), torch.rand(m, generator=gen)
    rl, cl, rs, cs, da, db, ds = _run_infonce(a, b, scale, positives, rows, cols, g_row, g_col)
    a64, b64 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    s64 = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    want_rs, want_cs, loss = _infonce_ref(s64 * a64 @ b64.T, positives, g_row.double(), g_col.double(), rows, cols)
    if rows:
        torch.testing.assert_close(rs.double(), want_rs.detach(), **TOL)
        torch.testing.assert_close(rl.double(), (want_rs[0] - want_rs[1]).detach(), **TOL)
    if cols:
        torch.testing.assert_close(cs.double(), want_cs.detach(), **TOL)
        torch.testing.assert_close(cl.double(), (want_cs[0] - want_cs[1]).detach(), **TOL)
    ga, gb, gs = torch.autograd.grad(loss, (a64, b64, s64))
    gtol = dict(rtol=TOL["rtol"], atol=TOL["atol"] * scale)
    torch.testing.assert_close(da.double(), ga, **gtol)
    torch.testing.assert_close(db.double(), gb, **gtol)
    torch.testing.assert_close(ds.double(), gs, **gtol)


def test_column_splits_rule():
    bwd_bytes = 1024 * 512 * 4
    # B = 1024: 16 row blocks of 64 x 16 splits of 2 tiles; backward 32 x 8 splits of 4 tiles
    assert K.column_splits(1024, 1024, 64, 32, "fwd") == 16
    assert K.column_splits(1024, 1024, 32, 32, "bwd", bwd_bytes) == 8
    for n in (1, 100, 1000, 5000, 20000, 40000, 10**6):
        for pass_, bm in (("fwd", 64), ("bwd", 32)):
            s = K.column_splits(n, n, bm, 32, pass_, n * 512 * 4 if pass_ == "bwd" else 0)
            assert s & (s - 1) == 0  # a power of two
            tiles, blocks = -(-n // 32), -(-n // bm)
            assert s == 1 or tiles >= s * K.MIN_SPLIT_TILES[pass_]
            if blocks >= K.PROGRAMS_PER_SM * K.SM_COUNT:
                assert s == 1  # row blocks alone fill the GPU
            elif s > 1:
                assert blocks * s // 2 < K.PROGRAMS_PER_SM * K.SM_COUNT  # no more than needed
    # the partial-dX buffer stays within SPLIT_BUFFER_BYTES
    big = 8192 * 4096 * 4
    s = K.column_splits(8192, 8192, 32, 32, "bwd", big)
    assert s * big <= K.SPLIT_BUFFER_BYTES and 2 * s * big > K.SPLIT_BUFFER_BYTES


@pytest.mark.parametrize("m", [1, 31, 32, 33, 100, 300, 1000])
def test_split_grid_leaves_no_split_empty(m, many_splits):
    cfg = K.config("fwd", torch.float32)
    grid, splits, per = K._split_grid(40, m, cfg, "fwd")
    assert grid == (1, splits) and per % cfg["BLOCK_N"] == 0
    assert per * (splits - 1) < m <= per * splits


@pytest.mark.parametrize("rows,cols", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("n,m,masked", [(100, 100, False), (70, 130, True)])
def test_infonce_splits_match_reference(n, m, masked, rows, cols, gen, many_splits):
    assert _splits(n, m, "fwd", "fwd") > 1 and _splits(n, m, "bwd", "bwd") > 1
    assert _splits(m, n, "fwd", "fwd") > 1 and _splits(m, n, "bwd", "bwd") > 1
    _check_infonce(n, m, 24, _mask(n, m, gen) if masked else None, rows, cols, gen)


def test_infonce_launcher_rule_splits(gen):
    """The launcher's own rule splits 45 x 300 (4 forward, 2 backward splits)."""
    assert _splits(45, 300, "fwd", "fwd") == 4 and _splits(45, 300, "bwd", "bwd") == 2
    _check_infonce(45, 300, 20, _mask(45, 300, gen), True, True, gen)


def _slot_ref(ta, vb, valid, pool, tau):
    """Pooled cosine of raw (already unit) frames, as reference.slot_logits without its
    normalisation, so the gradient is the kernels' (with respect to the given rows)."""
    cos = torch.einsum("itd,jtd->ijt", ta, vb)
    v = valid[None].expand_as(cos)
    if pool == "max":
        return torch.where(v, cos, torch.full_like(cos, NEG_INF)).max(2).values
    z = torch.where(v, cos / tau, torch.full_like(cos, NEG_INF))
    return tau * (torch.logsumexp(z, 2) - torch.log(valid.sum(1).double())[None])


def _run_slot(ta, vb, valid, scale, pos, pool, tau, g_row, g_col):
    ta_, vb_, v_ = ta.to(DEV, torch.float32), vb.to(DEV, torch.float32), valid.to(DEV)
    sc = torch.tensor(scale, device=DEV)
    p = pos.to(DEV)
    rl, cl, rs, cs = K.slot_forward(ta_, vb_, v_, sc, p, 0, True, True, pool, tau, precision="ieee")
    da, db, ds = K.slot_backward(ta_, vb_, v_, sc, p, 0, True, True, pool, tau, rs, cs, g_row.to(DEV),
                                 g_col.to(DEV), precision="ieee")
    return [t.cpu() for t in (rl, cl, rs, cs, da, db, ds)]


@pytest.mark.parametrize("pool", ["max", "lse"])
def test_slot_splits_match_reference(pool, gen, many_splits):
    n, m, t, d, scale, tau = 40, 90, 3, 8, 6.0, 0.25
    assert _splits(n, m, "slot_fwd", "fwd") > 1 and _splits(n, m, "slot_bwd", "bwd") > 1
    ta, vb = _unit(n, t, d, gen=gen), _unit(m, t, d, gen=gen)
    valid = torch.rand(m, t, generator=gen) < 0.6
    valid[torch.arange(m), torch.randint(0, t, (m,), generator=gen)] = True
    pos = _mask(n, m, gen)
    g_row, g_col = torch.rand(n, generator=gen), torch.rand(m, generator=gen)
    _, _, rs, cs, da, db, ds = _run_slot(ta, vb, valid, scale, pos, pool, tau, g_row, g_col)
    ta64, vb64 = ta.clone().requires_grad_(True), vb.clone().requires_grad_(True)
    s64 = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    want_rs, want_cs, loss = _infonce_ref(s64 * _slot_ref(ta64, vb64, valid, pool, tau), pos, g_row.double(),
                                          g_col.double(), True, True)
    torch.testing.assert_close(rs.double(), want_rs.detach(), **TOL)
    torch.testing.assert_close(cs.double(), want_cs.detach(), **TOL)
    gtol = dict(rtol=TOL["rtol"], atol=TOL["atol"] * scale / tau)
    for got, want in zip((da, db, ds), torch.autograd.grad(loss, (ta64, vb64, s64))):
        torch.testing.assert_close(got.double(), want, **gtol)


def test_splits_are_deterministic(gen, many_splits):
    """Same inputs, bitwise the same outputs: the merge and the split reduction run in a
    fixed order (no atomics)."""
    a, b = _unit(100, 24, gen=gen), _unit(100, 24, gen=gen)
    pos = _mask(100, 100, gen)
    g_row, g_col = torch.rand(100, generator=gen), torch.rand(100, generator=gen)
    first = _run_infonce(a, b, 9.0, pos, True, True, g_row, g_col)
    second = _run_infonce(a, b, 9.0, pos, True, True, g_row, g_col)
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    ta, vb = _unit(40, 2, 8, gen=gen), _unit(90, 2, 8, gen=gen)
    valid = torch.ones(90, 2, dtype=torch.bool)
    spos = _mask(40, 90, gen)
    gr, gc = torch.rand(40, generator=gen), torch.rand(90, generator=gen)
    first = _run_slot(ta, vb, valid, 6.0, spos, "lse", 0.2, gr, gc)
    second = _run_slot(ta, vb, valid, 6.0, spos, "lse", 0.2, gr, gc)
    assert all(torch.equal(x, y) for x, y in zip(first, second))


def test_fp16_backward_keeps_dlds_in_fp32(gen):
    """At large B each dL/ds_ij is of order 1/B² -- below fp16's smallest subnormal -- while
    their sum over the columns, the gradient, is not. Emulated at B = 256 with a small
    loss weight: every |dL/ds·scale| < 2^-25, so rounding it to fp16 (the old backward)
    gave a zero gradient; in fp32 it matches the float64 reference up to fp16's output
    rounding. Columns: one cluster near +e0 (the positives of every row), one near -e0."""
    n, m, d, scale, weight = 8, 256, 16, 1.0, 2.5e-6
    e0 = torch.zeros(d, dtype=torch.float64)
    e0[0] = 1.0
    sign = torch.where(torch.arange(m) < m // 2, 1.0, -1.0).double()
    b = torch.nn.functional.normalize(sign[:, None] * e0 + 0.3 * torch.randn(m, d, generator=gen, dtype=torch.float64),
                                      dim=1).half()
    a = _unit(n, d, gen=gen).half()
    pos = (torch.arange(m) < m // 2)[None].expand(n, m).contiguous()
    g_row, g_col = torch.full((n,), weight), torch.zeros(m)
    *_, da, _, _ = _run_infonce(a, b, scale, pos, True, False, g_row, g_col, dtype=torch.float16)
    a64, b64 = a.double().requires_grad_(True), b.double()
    s = scale * a64 @ b64.T
    _, _, loss = _infonce_ref(s, pos, g_row.double(), g_col.double(), True, False)
    want, = torch.autograd.grad(loss, a64)
    # every dL/ds_ij·scale rounds to 0 in fp16 ...
    p = torch.softmax(s.detach(), 1)
    q = torch.softmax(torch.where(pos, s.detach(), torch.tensor(NEG_INF, dtype=torch.float64)), 1)
    assert float((weight * scale * (p - q)).abs().max()) < 2.0**-25
    # ... while the gradient is ~40 subnormal steps (2^-24) of fp16
    assert float(want.abs().max()) > 30 * 2.0**-24
    assert da.dtype == torch.float16
    torch.testing.assert_close(da.double(), want, rtol=0.0, atol=0.05 * float(want.abs().max()))
