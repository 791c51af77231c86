"""Run a test function on gloo CPU ranks in spawned processes (shared by the distributed tests)."""
import datetime
import os
import sys
import tempfile
import time
import traceback

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank, fn, world, store, args):
    # A file store needs no free TCP port, so two test runs on one machine cannot collide.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        fn(rank, world, *args)
        dist.barrier()  # no rank closes its connections while a peer is still using them
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


def run_ranks(fn, world: int, *args, timeout_s: float = 240.0) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` gloo ranks; fail the test on any rank's error."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.spawn(_entry, args=(fn, world, os.path.join(tmp, "store"), args), nprocs=world, join=False)
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=5):
                if time.monotonic() > deadline:
                    pytest.fail(f"distributed workers did not finish in {timeout_s:.0f} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
