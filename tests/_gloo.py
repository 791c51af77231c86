"""Run a test function on torch.distributed ranks in spawned processes (shared by the
distributed tests): gloo CPU ranks, or NCCL ranks (tests/gpu/test_nccl.py)."""
import datetime
import os
import sys
import tempfile
import time
import traceback

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


class Refused(Exception):
    """Raised by a rank's function when the backend refuses the setup itself (e.g. NCCL
    with two ranks on one GPU): the test skips with this message instead of failing."""


def _entry(rank, fn, world, store, args, backend="gloo"):
    # A file store needs no free TCP port, so two test runs on one machine cannot collide.
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        fn(rank, world, *args)
        dist.barrier()  # no rank closes its connections while a peer is still using them
    except Refused as e:
        with open(f"{store}.refused.{rank}", "w") as f:
            f.write(str(e))
        # the process group is unusable: leave without the barrier and the teardown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except BaseException:
        # the first rank to fail is the one to read; a peer's error is often just "connection closed"
        traceback.print_exc()
        print(f"(the traceback above is from rank {rank})", file=sys.stderr, flush=True)
        raise
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation: gloo's background threads can abort it with
    # "terminate called without an active exception" (seen ~1 run in 50; cf. pytorch/pytorch#179291).
    os._exit(0)


def run_ranks(fn, world: int, *args, timeout_s: float = 240.0, backend: str = "gloo") -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` ranks of a ``backend`` process group;
    fail the test on any rank's error, skip it when a rank raised `Refused`."""
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        ctx = mp.spawn(_entry, args=(fn, world, store, args, backend), nprocs=world, join=False)
        deadline = time.monotonic() + timeout_s
        refusals = []
        try:
            while not ctx.join(timeout=5):
                # a peer of a refusing rank may wait forever in the refused collective
                refusals = sorted(f for f in os.listdir(tmp) if ".refused." in f)
                if refusals:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"distributed workers did not finish in {timeout_s:.0f} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        refusals = refusals or sorted(f for f in os.listdir(tmp) if ".refused." in f)
        if refusals:
            with open(os.path.join(tmp, refusals[0])) as f:
                pytest.skip(f"{backend} refused {world} ranks: {f.read().strip()[:500]}")
