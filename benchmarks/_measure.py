"""Shared benchmark helpers: wall-clock timing and peak memory in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def best_of(fn, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall-clock seconds of `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def reset_peak() -> None:
    """Reset VmHWM so the next peak reading covers only what follows (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def in_subprocess(module: str, *args: str, timeout: float = 1800) -> dict:
    """Run `python -m module --worker args...` in a fresh interpreter; it prints one JSON line."""
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, "-m", module, "--worker", *args], capture_output=True,
                         text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{module} worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# Rows every suite records while it runs; `benchmarks.report` (what `vtalign
# bench` runs) turns them into results.json, ratio charts and the README table.
RESULTS: list[dict] = []


def record(suite: str, case: str, impl: str, seconds: float | None = None, *, peak_mib: float | None = None,
           **extra) -> dict:
    """Store one measurement. Within a (suite, case), the row with impl "vtalign"
    is the one every other implementation's speed is compared with."""
    row = dict(suite=suite, case=case, impl=impl, seconds=seconds, peak_mib=peak_mib, **extra)
    RESULTS.append(row)
    return row
