"""The benchmark protocol (benchmarks/README.md): fresh processes alternated over rounds,
per-round ratios, the load check, and a README section only from one quiet run."""
import json
import os

import pytest

from vtalign.benchmarks import _measure, readme, report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = "tests.benchmarks.fake_worker"


@pytest.fixture
def log(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT)
    return str(tmp_path / "order.log")


def _order(log):
    with open(log) as f:
        return f.read().split()


def test_methods_alternate_in_fresh_processes_over_three_rounds(log):
    methods = {m: dict(name=m, seconds=2.0, log=log) for m in ("vtalign", "a", "b")}
    res = _measure.compare(WORKER, methods)
    assert _order(log) == ["vtalign", "a", "b", "b", "a", "vtalign", "vtalign", "a", "b"]
    assert all(len(r["runs"]) == 3 and r["error"] is None for r in res.values())
    # every worker gets the run's wait policy and never the test suite's interpreter mode
    run = res["a"]["runs"][0]
    assert run["wait_policy"] == os.environ.get("OMP_WAIT_POLICY", _measure.DEFAULT_WAIT_POLICY)
    assert run["interpret"] is None


def test_sub_second_cases_get_five_rounds_and_once_runs_once(log):
    methods = {"vtalign": dict(name="vtalign", seconds=0.01, log=log),
               "slow": dict(name="slow", seconds=3.0, log=log)}
    res = _measure.compare(WORKER, methods, once=("slow",))
    assert len(res["vtalign"]["runs"]) == 5
    assert len(res["slow"]["runs"]) == 1


def test_a_failing_peer_is_reported_not_fatal(log):
    methods = {"vtalign": dict(name="vtalign", seconds=2.0, log=log),
               "broken": dict(name="broken", seconds=1.0, fail=True, log=log)}
    res = _measure.compare(WORKER, methods)
    assert "broken peer" in res["broken"]["error"]
    assert len(res["vtalign"]["runs"]) == 3
    assert _order(log).count("broken") == 1  # not retried after it failed


def test_ratios_pair_rounds_and_report_median_and_range():
    rows = [dict(suite="s", case="c", impl="vtalign", role="method", seconds=1.0, times=[1.0, 2.0, 1.0]),
            dict(suite="s", case="c", impl="peer", role="method", seconds=4.0, times=[4.0, 4.0, 5.0]),
            dict(suite="s", case="c", impl="floor", role="floor", seconds=2.0, times=[2.0, 2.0, 2.0])]
    (sp,) = report.speedups(rows)
    assert (sp["impl"], sp["speedup"], sp["speedup_min"], sp["speedup_max"]) == ("peer", 4.0, 2.0, 5.0)
    (lim,) = report.speedups(rows, role="floor")
    assert (lim["speedup"], lim["speedup_min"], lim["speedup_max"]) == (0.5, 0.5, 1.0)


def test_summary_is_the_median_over_rounds_and_the_largest_peak():
    s = _measure.summary([dict(seconds=3.0, peak_mib=5.0), dict(seconds=1.0, peak_mib=9.0),
                          dict(seconds=2.0, peak_mib=7.0)])
    assert (s["seconds"], s["seconds_min"], s["seconds_max"], s["peak_mib"], s["rounds"]) == (2.0, 1.0, 3.0, 9.0, 3)


def test_foreign_load_subtracts_our_own_cpu_time():
    hz = os.sysconf("SC_CLK_TCK")
    a = dict(busy=0, steal=0, total=0, ours=0.0, wall=0.0)
    b = dict(busy=3 * hz, steal=hz // 2, total=10 * hz, ours=2.0, wall=2.0)  # 3 busy s, 2 of them ours
    f = _measure.foreign_load(a, b)
    assert f["foreign_cores"] == pytest.approx(0.5)
    assert f["steal_cores"] == pytest.approx(0.25)


def test_time_calls_medians_and_measures_peak():
    calls = []
    out = _measure.time_calls(lambda: calls.append(bytearray(64 << 20)), warmup=lambda: None, reps=3)
    assert out["reps"] == 3 and len(calls) == 4 and out["seconds"] > 0
    assert out["peak_mib"] >= 32  # the measuring call's 64 MiB (pages touched by bytearray's zeroing)
    one = _measure.time_calls(lambda: None, warmup=lambda: None, reps=0)
    assert one["reps"] == 0 and one["seconds"] == one["first_s"]


def _results(busy=False):
    rows = [dict(suite="knn", case="c", impl="vtalign", role="method", seconds=1.0, times=[1.0, 1.0, 1.0],
                 peak_mib=10.0),
            dict(suite="knn", case="c", impl="faiss", role="method", seconds=2.0, times=[2.0, 3.0, 2.5],
                 peak_mib=20.0)]
    return dict(command="vtalign bench --size full --out r", machine="m", size="full", omp_wait_policy="passive",
                threads={"torch": 2}, busy=busy, load={"knn": dict(busy=busy)}, rows=rows,
                speedups=report.speedups(rows), limits=[], static=[])


def test_readme_section_states_protocol_and_range(tmp_path):
    text = readme.section(_results())
    assert "`vtalign bench --size full --out r`" in text
    assert "| knn | c | faiss | 1 | 2 | **2.50x** (2.00–3.00) |" in text
    assert "OMP_WAIT_POLICY=passive" in text


def test_readme_refuses_a_busy_run(tmp_path):
    res, md = tmp_path / "results.json", tmp_path / "README.md"
    start, end = readme.markers("")
    md.write_text(f"x\n{start}\nold\n{end}\ny\n")
    res.write_text(json.dumps(_results(busy=True)))
    assert readme.main([str(res), str(md)]) == 2
    assert "old" in md.read_text()
    assert readme.main([str(res), str(md), "--allow-busy"]) == 0
    assert "2.50x" in md.read_text() and md.read_text().startswith("x\n") and md.read_text().endswith("y\n")


def test_readme_writes_a_named_block_and_leaves_the_main_one(tmp_path):
    res, md = tmp_path / "results.json", tmp_path / "README.md"
    (s0, e0), (s1, e1) = readme.markers(""), readme.markers("probe")
    md.write_text(f"{s0}\nmain\n{e0}\n{s1}\nold\n{e1}\n")
    res.write_text(json.dumps(_results()))
    assert readme.main([str(res), str(md), "--block", "probe"]) == 0
    text = md.read_text()
    assert "main" in text and "old" not in text and text.index(s1) < text.index("2.50x") < text.index(e1)
    assert readme.main([str(res), str(md), "--block", "missing"]) == 2
