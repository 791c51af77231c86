"""Provenance of the benchmark numbers: which command measured each suite's rows."""
from benchmarks.readme import section
from benchmarks.report import run_command, suite_commands


def _rows(*suites):
    return [dict(suite=s, case="c", impl="vtalign", seconds=1.0) for s in suites]


def test_legacy_history_keeps_the_last_run_of_each_suite():
    res = dict(command="vtalign bench --size full --out r && vtalign bench --size full --suites knn --merge a.json "
                       "--out r && vtalign bench --size full --suites softdtw --merge b.json --out /tmp/x && "
                       "cp /tmp/x/* r/",
               rows=_rows("knn", "softdtw", "metrics"))
    assert suite_commands(res) == {"knn": "vtalign bench --size full --suites knn",
                                   "softdtw": "vtalign bench --size full --suites softdtw",
                                   "metrics": "vtalign bench --size full"}


def test_recorded_commands_win_and_group_in_the_readme():
    res = dict(command="anything", commands={"knn": run_command("full", ["knn"]), "metrics": run_command("full", None),
                                              "contrastive": run_command("full", None)},
               machine="m", size="full", rows=[], speedups=[])
    assert suite_commands(res)["knn"] == "vtalign bench --size full --suites knn"
    text = section(res)
    assert "`vtalign bench --size full` (contrastive, metrics)" in text
    assert "`vtalign bench --size full --suites knn` (knn)" in text
