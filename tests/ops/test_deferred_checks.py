"""Value checks read back with one host sync, and still precise when one fails."""
import pytest
import torch

import vtalign
from vtalign.ops._common import DeferredChecks


def test_one_read_when_everything_is_fine(monkeypatch):
    reads = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or real(self))
    checks = DeferredChecks()
    ran = []
    for i in range(5):
        checks.finite(f"x{i}", torch.randn(10, 3))
    checks.add(torch.tensor(False), lambda: ran.append(1))
    checks.run()
    assert reads == [1] and ran == []


def test_a_raised_flag_runs_its_precise_check():
    checks = DeferredChecks()
    x = torch.randn(4, 3)
    x[2, 1] = float("nan")
    checks.finite("ok", torch.randn(3))
    checks.finite("feats", x)
    with pytest.raises(ValueError, match=r"feats contains NaN values \(first at row 2\)"):
        checks.run()


def test_half_sums_do_not_overflow_into_a_false_alarm():
    checks = DeferredChecks()
    checks.finite("h", torch.full((100,), 60000.0, dtype=torch.float16))  # sum 6e6 > float16 max
    flag = checks._flags[0]
    assert not bool(flag)


@pytest.mark.parametrize("case,message", [
    ("scale", "logit_scale must be finite and > 0"),
    ("positives", "positives: row 1 has no positive"),
    ("nan_b", "b contains NaN"),
])
def test_loss_errors_still_name_the_argument(case, message, gen):
    a, b = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    scale, pos = torch.tensor(5.0), None
    if case == "scale":
        scale = torch.tensor(-1.0)
    elif case == "positives":
        pos = torch.eye(3, dtype=torch.bool)
        pos[1, 1] = False
    else:
        b[0, 0] = float("nan")
    with pytest.raises(ValueError, match=message):
        vtalign.contrastive_loss(a, b, scale, positives=pos)


def test_slot_loss_names_a_video_without_frames(gen):
    ta, vb = torch.randn(3, 2, 4, generator=gen), torch.randn(3, 2, 4, generator=gen)
    valid = torch.ones(3, 2, dtype=torch.bool)
    valid[2] = False
    with pytest.raises(ValueError, match="valid: video 2 has no valid frame"):
        vtalign.slot_contrastive_loss(ta, vb, valid, 5.0)
