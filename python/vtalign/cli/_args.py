"""Option types and device parsing shared by every `vtalign` subcommand.

Every numeric option has a range-checked type (`int_in`, `float_in`), so
argparse itself refuses `--n -5` ("argument --n: must be >= 1, got -5");
`VtalignParser.error` prints that as one line, not the usage block.
"""
from __future__ import annotations

import argparse

SEED_MAX = 2 ** 63 - 1  # vtalign.probe._checks.SEED_MAX (kept import-free: --help stays fast)


class VtalignParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2):
    `PROG: error: MESSAGE (PROG --help lists the options)`."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_in(lo: int | None = None, hi: int | None = None):
    """An argparse `type` for an integer in [lo, hi]: argparse reports a bad value as
    "argument --n: must be >= 1, got -5" (or "must be an integer, got '1.5'")."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if lo is not None and hi is not None and not lo <= v <= hi:
            top = f"2**{hi.bit_length()} - 1" if hi > 2 ** 32 and (hi + 1) & hi == 0 else str(hi)
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {top}], got {v}")
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {v}")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse `type` for a finite number in [lo, hi] (an end excluded with
    `lo_open` / `hi_open`); NaN and Inf are refused."""
    import math

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}, got {v:g}")
        return v

    parse.__name__ = "float"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
seed_int = int_in(0, SEED_MAX)
non_negative_float = float_in(0.0)


def _parse_device(device: str):
    """--device as a torch.device; one line naming the option for anything torch cannot parse."""
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"--device: {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}") from None


def _probe_device(device: str, backend: str):
    """--device as a torch.device, checked before any file is read."""
    import torch

    dev = _parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available to torch here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"--device: {device!r} is neither cpu nor cuda")
    if backend == "triton":  # a missing triton is the first thing to fix
        from vtalign._optional import require

        require("triton", None, "backend='triton'")
    if backend == "triton" and dev.type != "cuda":
        raise ValueError("--backend triton runs the kNN searches on a GPU: add --device cuda")
    if backend == "cpp" and dev.type != "cpu":
        raise ValueError("--backend cpp runs on the CPU: drop --device or use --backend triton")
    return None if dev.type == "cpu" else dev
