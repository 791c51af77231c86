"""A worker for protocol tests: reports the time its spec asks for and logs the order it ran in."""
import os

from vtalign.benchmarks._measure import worker_main


def worker(spec: dict) -> dict:
    with open(spec["log"], "a") as f:
        f.write(spec["name"] + "\n")
    if spec.get("fail"):
        raise SystemExit("broken peer")
    seconds = spec["seconds"][spec.get("round", 0)] if isinstance(spec["seconds"], list) else spec["seconds"]
    return dict(seconds=seconds, peak_mib=spec.get("peak", 1.0), reps=1,
                wait_policy=os.environ.get("OMP_WAIT_POLICY"), interpret=os.environ.get("TRITON_INTERPRET"))


if __name__ == "__main__":
    worker_main(worker)
