"""Compile Triton kernels for NVIDIA GPUs as their launchers launch them, with no GPU
present (docs: README "Testing without a GPU").

What is compiled is derived from the launchers, not written down a second time:
every kernel module lists, in `static_cases()`, calls of its public launchers on
representative inputs -- small CPU tensors (aligned or not, integers equal to 1) and
`meta` tensors above 2^31 elements -- covering every choice the launcher makes (dtype,
precision, tile bucket, flags). `discover()` runs each case with `JITFunction.run`
replaced by a recorder, so nothing launches, and hands each recorded launch to
Triton's own binder for a GPU target: argument types (i32 or i64), divisibility-by-16
attributes and constant-1 specialisations come out exactly as a launch on a GPU
would produce them. Identical specialisations are compiled once.

`triton.compile` with an explicit `GPUTarget` then builds PTX and a cubin on any
machine; the `cuobjdump` shipped in the triton wheel reports registers, shared memory
and LOCAL bytes, Triton's own ptxas log states spills, and the SASS tells whether
dots became tensor-core instructions.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pkgutil
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

ARCHS = (80, 90)
_TC_OPS = re.compile(r"\b(HMMA|HGMMA|IMMA|IGMMA|DMMA|QGMMA|UTCHMMA|UTCQMMA)\b")
# CUDA's grid limits: x up to 2^31 - 1 blocks, y and z up to 65,535
GRID_LIMITS = (2**31 - 1, 65535, 65535)

Case = tuple[str, Callable[[], object]]


@dataclass
class Launch:
    """One recorded `kernel[grid](*args, **kwargs)` call."""

    fn: object
    args: tuple
    kwargs: dict
    grid: tuple
    case: str


@dataclass
class Config:
    """One distinct specialisation of a kernel, and the cases that launch it."""

    name: str
    launch: Launch
    cases: list[str] = field(default_factory=list)
    expect_tensor_cores: bool = False
    signature: dict = field(default_factory=dict)
    constexprs: dict = field(default_factory=dict)


def meta(*shape: int, dtype=torch.float32) -> torch.Tensor:
    """A tensor with a shape and no storage: launchers run on it unchanged, so a case
    can be as large as users' data (above 2^31 elements) without allocating it."""
    return torch.empty(*shape, dtype=dtype, device="meta")


def unaligned_rows(*shape: int, dtype=torch.float32) -> torch.Tensor:
    """A `shape` tensor whose rows are a view one element into a larger buffer with a row
    stride of shape[-1] + 1: its data pointer is not 16-byte aligned and its row stride
    does not divide by 16 -- what a launch on a slice of a user's tensor gets."""
    *lead, d = shape
    rows = 1
    for n in lead:
        rows *= n
    flat = torch.zeros(rows * (d + 1) + 1, dtype=dtype)
    return flat[1:].view(*lead, d + 1)[..., :d]


@contextlib.contextmanager
def recording(into: list, case: str):
    """Within the block, `kernel[grid](...)` records a `Launch` instead of launching."""
    from triton.runtime.jit import JITFunction

    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        into.append(Launch(self, args, dict(kwargs), tuple(grid), case))

    JITFunction.run = record
    try:
        yield
    finally:
        JITFunction.run = original


def _target(arch: int):
    from triton.backends.compiler import GPUTarget

    return GPUTarget("cuda", arch, 32)


def specialize(launch: Launch, arch: int):
    """(ASTSource, options) of `launch` for sm_`arch`, through Triton's own binder: the
    same argument types, attributes and constexprs a launch on that GPU compiles."""
    from triton import knobs
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = launch.fn
    backend = make_backend(_target(arch))
    kwargs = dict(launch.kwargs)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, opts = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, opts)
    return ASTSource(fn, signature, constexprs, attrs), options


def _uses_dot(fn, seen=None) -> bool:
    """Whether `fn` or a @triton.jit function it calls contains a tl.dot."""
    from triton.runtime.jit import JITFunction

    seen = seen if seen is not None else set()
    seen.add(id(fn))
    if "tl.dot(" in fn.src:
        return True
    for name, obj in fn.fn.__globals__.items():
        if isinstance(obj, JITFunction) and id(obj) not in seen and re.search(rf"\b{name}\(", fn.src):
            if _uses_dot(obj, seen):
                return True
    return False


def _describe(launch: Launch) -> tuple[str, str, dict, dict, bool]:
    """(key, name, signature, constexprs, expect_tensor_cores) of a launch on sm_90; the
    key identifies the compiled specialisation, the name says what it is."""
    src, options = specialize(launch, 90)
    fn = launch.fn
    names = fn.arg_names
    sig = dict(src.signature)
    const = {names[p[0]]: v for p, v in src.constants.items()}
    ptrs = [t for t in sig.values() if t.startswith("*")]
    # a float32 dot at "ieee" precision runs on the FMA units by design
    tc = _uses_dot(fn) and not (ptrs and ptrs[0] == "*fp32" and const.get("PRECISION") == "ieee")
    ones = [n for n in const if n.upper() != n]  # runtime integers the JIT specialised (== 1)
    wide = [n for n, t in sig.items() if t == "i64"]
    divisible = {names[p[0]] for p, a in src.attrs.items() if "divisibility" in str(a)}
    undiv = [n for n, t in sig.items() if (t.startswith("*") or t in ("i32", "i64")) and n not in divisible]
    tiles = ",".join(f"{n}={v}" for n, v in const.items() if n.upper() == n)
    parts = [ptrs[0].lstrip("*") if ptrs else "", tiles, f"w{options.num_warps}s{options.num_stages}"]
    for tag, group in (("=1:", ones), ("i64:", wide), ("!16:", undiv)):
        if group:
            parts.append(tag + "/".join(group))
    name = f"{fn.__name__.strip('_')}[{' '.join(p for p in parts if p)}]"
    key = f"{src.hash()}-{options.num_warps}-{options.num_stages}"
    return key, name, sig, const, tc


def cases(only: str | None = None) -> list[tuple[str, str, Callable]]:
    """(module, label, thunk) of every case every kernel module (or module `only`) declares."""
    import vtalign.kernels as pkg

    out = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or only not in (None, info.name):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for label, thunk in getattr(mod, "static_cases", lambda: [])():
            out.append((info.name, f"{info.name}:{label}", thunk))
    return out


def record_all(only: str | None = None) -> list[Launch]:
    """Every launch every case (of module `only`) makes, in order; nothing runs on a device."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("unset TRITON_INTERPRET: the static check records real @triton.jit launches")
    launches: list[Launch] = []
    with torch.no_grad():
        for _, label, thunk in cases(only):
            with recording(launches, label):
                thunk()
    return launches


@functools.cache
def discover(only: str | None = None) -> tuple[Config, ...]:
    """The distinct specialisations the launchers (of kernel module `only`) produce."""
    configs: dict[str, Config] = {}
    for launch in record_all(only):
        key, name, sig, const, tc = _describe(launch)
        cfg = configs.get(key)
        if cfg is None:
            cfg = configs[key] = Config(name, launch, [], tc, sig, const)
        if launch.case not in cfg.cases:
            cfg.cases.append(launch.case)
    return tuple(configs.values())


def _bin_dir() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def _compile_logged(src, arch: int, options: dict):
    """triton.compile with its own ptxas log captured: (compiled, log). The log states
    spill stores and loads for exactly the ptxas binary and options Triton used (they
    vary by version: an sm_90 PTX from triton 3.9 needs its newer ptxas, and 3.7+ pass
    --regAllocOptLevel=2), which re-running the wheel's `bin/ptxas` would not."""
    import io

    import triton
    from triton import knobs

    out = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(out):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a cache hit would run no ptxas, so log nothing
        compiled = triton.compile(src, target=_target(arch), options=options)
    return compiled, out.getvalue()


def compile_config(cfg: Config, arch: int) -> dict:
    """Compile `cfg` for sm_`arch`; return registers, shared and spill bytes, tensor-core use."""
    src, options = specialize(cfg.launch, arch)
    compiled, log = _compile_logged(src, arch, options.__dict__)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        tool = os.path.join(_bin_dir(), "cuobjdump")
        usage = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([tool, "-sass", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    # ptxas -v states spill stores/loads explicitly; cuobjdump's LOCAL does not count
    # spills that live in the stack frame
    sp = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if m is None or sp is None:
        raise RuntimeError(f"could not read resource usage of {cfg.name}:\n{usage}\n{log}")
    tc = sorted(set(_TC_OPS.findall(sass)))
    return dict(kernel=cfg.name, arch=f"sm_{arch}", registers=int(m.group(1)), stack=int(m.group(2)),
                shared_static=int(m.group(3)), shared_dynamic=int(compiled.metadata.shared),
                spill_bytes=int(sp.group(1)) + int(sp.group(2)) + int(m.group(4)),
                tensor_core_ops=",".join(tc) or "-", num_warps=options.num_warps,
                num_stages=options.num_stages, expect_tensor_cores=cfg.expect_tensor_cores,
                cases=len(cfg.cases))


def listing(only: str | None = None) -> list[dict]:
    """What `discover()` found, without compiling: per configuration its kernel, argument
    types, constexprs and the cases that launch it."""
    return [dict(kernel=c.name, fn=c.launch.fn.__name__, signature=c.signature,
                 constexprs={k: str(v) for k, v in c.constexprs.items()}, cases=c.cases,
                 expect_tensor_cores=c.expect_tensor_cores) for c in discover(only)]


def grids(only: str | None = None) -> list[dict]:
    """Every recorded launch's grid with its case: the launchers' grids at every size."""
    return [dict(fn=l.fn.__name__, case=l.case, grid=list(l.grid)) for l in record_all(only)]


def markdown_table(rows: list[dict]) -> str:
    cols = ["kernel", "arch", "registers", "stack", "shared_static", "shared_dynamic", "spill_bytes",
            "tensor_core_ops", "cases"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _compile_one(job):
    only, index, arch = job
    return compile_config(discover(only)[index], arch)


def compile_all(archs: Iterable[int] = ARCHS, workers: int | None = None, only: str | None = None,
                sample: int = 1) -> list[dict]:
    """Compile the configurations of every kernel module (or of module `only`) for every
    arch, a process per core; `sample` > 1 compiles every sample-th configuration only
    (the GPU check's dry run rehearses on a sample)."""
    from concurrent.futures import ProcessPoolExecutor

    picked = list(range(len(discover(only))))[::max(1, sample)]
    jobs = [(only, i, a) for i in picked for a in archs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_compile_one(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_compile_one, jobs, chunksize=4))


def main(argv: list[str] | None = None) -> int:
    """python -m vtalign.kernels._static [--json] [--only MODULE] [--sample N] | --list | --grids"""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m vtalign.kernels._static", description=main.__doc__)
    p.add_argument("--json", action="store_true", help="rows as JSON instead of a markdown table")
    p.add_argument("--list", action="store_true", help="the discovered configurations, not compiled")
    p.add_argument("--grids", action="store_true", help="every recorded launch's grid")
    p.add_argument("--only", metavar="MODULE", help="one kernel module, e.g. knn")
    p.add_argument("--sample", type=int, default=1, metavar="N", help="compile every N-th configuration")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        p.error("unset TRITON_INTERPRET: the static compile needs real @triton.jit kernels")
    if args.list:
        print(json.dumps(listing(args.only)))
    elif args.grids:
        print(json.dumps(grids(args.only)))
    else:
        rows = compile_all(only=args.only, sample=args.sample)
        print(json.dumps(rows) if args.json else markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
