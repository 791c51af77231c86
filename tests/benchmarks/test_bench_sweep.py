"""The sweep suite's workers at the small size, in process: the reusing sweep and the
per-cell loop agree on the timed cells, and the streamed extraction's peak stays below
the accumulate-then-save peer's."""
from vtalign.benchmarks import bench_sweep


def test_small_sweep_workers_agree(tmp_path):
    cfg = bench_sweep.SIZES["small"]
    video, text = bench_sweep.write_inputs(cfg, str(tmp_path))
    spec = dict(case="sweep", size="small", video=video, text=text, reps=1)
    ours = bench_sweep.worker(dict(spec, impl="vtalign"))
    loop = bench_sweep.worker(dict(spec, impl="loop"))
    assert ours["scores"] == loop["scores"]
    f, c = len(cfg["frames"]), len(cfg["captions"])
    assert ours["searches"] == f * cfg["lv"] + c * cfg["lt"]
    assert ours["seconds"] > 0 and loop["seconds"] > 0


def test_small_extract_workers_run(tmp_path):
    for impl in ("vtalign", "naive"):
        out = bench_sweep.worker(dict(case="extract", size="small", impl=impl, dir=str(tmp_path)))
        assert out["seconds"] > 0 and out["peak_mib"] is not None
    assert list(tmp_path.iterdir()) == []  # every worker cleans up its files


def test_small_many_model_sweep_workers_agree(tmp_path):
    cfg = bench_sweep.SIZES["small"]
    m = cfg["models"]
    video, text = bench_sweep.write_model_inputs(cfg, str(tmp_path))
    spec = dict(case="models", size="small", video=video, text=text, reps=1)
    ours = bench_sweep.worker(dict(spec, impl="vtalign"))
    pairs = bench_sweep.worker(dict(spec, impl=bench_sweep.PAIRS))
    floor = bench_sweep.worker(dict(spec, impl=bench_sweep.SEARCHES))
    # the first model pair's grid, from the many-model sweep and from its own one-pair sweep
    assert ours["scores"] == pairs["scores"] and ours["calibrated"] == pairs["calibrated"]
    assert ours["searches"] == len(m["frames"]) * m["mv"] * m["lv"] + len(m["captions"]) * m["mt"] * m["lt"]
    assert min(ours["seconds"], pairs["seconds"], floor["seconds"]) > 0
