"""bench_calibration at its small size: the suite is registered, its workers run and
agree with upstream, and its report is assembled (workers in-process, one round)."""
import pytest

from vtalign.benchmarks import bench_calibration as bench
from vtalign.benchmarks.run import SUITES

pytest.importorskip("calibrated_similarity", reason="calibrated-similarity is not installed (the bench extras)")


def _in_process(module, methods, **kw):
    return {label: {"runs": [dict(bench.worker(spec), threads={})], "error": None}
            for label, spec in methods.items()}


def test_small_run_report(monkeypatch):
    assert "calibration" in SUITES
    monkeypatch.setattr(bench, "compare", _in_process)
    text = bench.run("small")
    assert "| calibrate_layers mutual_knn |" in text and "| calibrate_layers cka |" in text
    assert "| leaderboard |" in text and "target <= 1.2x" in text
    # same generator and permutation count: upstream's p and the mutual-kNN τ are ours exactly
    assert "mutual_knn: at K = 2, p equal, |Δτ| = 0.0e+00" in text and "cka: at K = 2, p equal" in text
