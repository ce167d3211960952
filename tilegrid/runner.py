"""From `Program(...)(tensors)` to results: check inputs, compile (cached), simulate."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tilegrid import ir
from tilegrid.codegen.python import ThreadSource, generate, load
from tilegrid.errors import CompileError, TilegridError
from tilegrid.frontend.builder import build_module
from tilegrid.lang.kernel import KernelConfig, ThreadDef, _as_array, warn_short_block_factors
from tilegrid.passes.allocate_l1 import L1Plan, plan_l1
from tilegrid.passes.common import program_of
from tilegrid.passes.pipeline import run_pipeline
from tilegrid.sim import scheduler
from tilegrid.sim.numerics import NP_DTYPES, dtype_of, round_to
from tilegrid.sim.runtime import CB, Core, Runtime


@dataclass
class Compiled:
    """A kernel compiled for one shape signature: its tile IR and generated threads."""

    module: Any
    sources: list[ThreadSource]
    locs: list[str]
    fns: list[Callable]
    l1: L1Plan
    stages: list[tuple[str, str]] = field(default_factory=list)
    compile_seconds: float = 0.0

    @property
    def program(self):
        return program_of(self.module)


_cache: dict[Any, Compiled] = {}
observer: Any = None  # set (e.g. to sim.observer.Counts()) to watch every simulated op and transfer
compile_log: list[Compiled] = []  # what `tilegrid compile` reports
last_run: dict[str, Any] = {}


def describe_args(config: KernelConfig, tensors: Sequence[Any], kernel_tensors: Sequence[Any],
                  names: Sequence[str]) -> list[dict]:
    """Check the tensors and describe each argument (name, shape, dtype, block, depth, output)."""
    n = len(tensors)
    bfs = config.block_factors
    if bfs is None:
        bfs = [(1, 1)] * n
    elif len(bfs) < n:
        warn_short_block_factors(config.name, len(bfs), n)
        bfs = list(bfs) + [bfs[-1]] * (n - len(bfs))
    elif len(bfs) > n:
        raise CompileError(
            f"block_factors has {len(bfs)} entries but the Program has {n} tensor arguments",
            config.loc,
            note="give one (rows, cols[, depth]) entry per tensor argument, in order",
        )
    if config.num_outs < 1 or config.num_outs > n:
        raise CompileError(f"num_outs={config.num_outs} but there are {n} tensors", config.loc)
    by_id = {id(t): i for i, t in enumerate(kernel_tensors)}
    args = []
    for i, (t, bf) in enumerate(zip(tensors, bfs)):
        name = names[by_id[id(t)]] if id(t) in by_id and by_id[id(t)] < len(names) else f"arg{i}"
        a = _as_array(t)
        if not isinstance(a, np.ndarray):
            raise CompileError(f"argument '{name}' is a {type(t).__name__}, not an array", config.loc)
        dt = dtype_of(a)
        if dt is None:
            raise CompileError(
                f"argument '{name}' has dtype {a.dtype}; tilegrid supports bfloat16 and float32",
                config.loc,
                note="convert it with .astype(ml_dtypes.bfloat16) or .astype(np.float32)",
            )
        if a.ndim < 2:
            raise CompileError(f"argument '{name}' has {a.ndim} dimensions; at least 2 needed", config.loc)
        if len(bf) not in (2, 3) or any(not isinstance(b, int) or b < 1 for b in bf):
            raise CompileError(
                f"block_factors entry {tuple(bf)} for '{name}' must be (rows, cols) or "
                "(rows, cols, depth) of positive integers (tiles)",
                config.loc,
            )
        rows, cols = a.shape[-2:]
        if rows % 32 or cols % 32:
            raise CompileError(
                f"argument '{name}' has shape {tuple(a.shape)}; its last two dimensions must "
                "be multiples of 32 (whole 32x32 tiles)",
                config.loc,
                note="pad the tensor to a multiple of 32",
            )
        br, bc = 32 * bf[0], 32 * bf[1]
        if rows % br or cols % bc:
            raise CompileError(
                f"block_factors {tuple(bf[:2])} ({br}x{bc} elements) do not divide "
                f"'{name}' of shape {tuple(a.shape)}",
                config.loc,
                note="each block factor must divide the tensor's tile count in that dimension",
            )
        args.append({
            "name": name,
            "shape": tuple(int(s) for s in a.shape),
            "dtype": dt,
            "block": (int(bf[0]), int(bf[1])),
            "depth": int(bf[2]) if len(bf) == 3 else 1,
            "output": i >= n - config.num_outs,
        })
    return args


def _closure_key(fn: Callable) -> tuple:
    """What a thread's compiled code depends on besides its source: closure constants, and
    (recursively) those of the helper functions it inlines."""
    vals: list = []
    for cell in fn.__closure__ or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if inspect.isfunction(v):
            vals.append(_closure_key(v))
        else:
            vals.append(v if isinstance(v, int | float | str | bool | tuple) else type(v).__name__)
    return (fn.__code__, tuple(vals))


def compile_threads(config: KernelConfig, threads: Sequence[ThreadDef], args: list[dict],
                    streams: dict[int, int], dump: Callable[[str, str], None] | None = None,
                    tensors: Sequence[Any] = ()) -> Compiled:
    """Frontend + pipeline + codegen, cached per kernel, threads, closure constants and shapes."""
    capacity = config.device.dst_capacity(config.fp32_acc, config.dst_double_buffer)
    key = (config.name, config.grid, capacity, config.device.l1_bytes, tuple(_closure_key(t.fn) for t in threads),
           tuple(t.kind for t in threads), tuple(tuple(sorted(a.items())) for a in args),
           tuple(sorted(streams.values())), tuple(len({id(t) for t in tensors}) for _ in (0,)))
    if dump is None and key in _cache:
        return _cache[key]
    t0 = time.perf_counter()
    try:
        module = build_module(config.name, config.grid, args, list(threads), streams, list(tensors))
        prog = program_of(module)
        prog.dst_capacity = type(prog.dst_capacity)(capacity)
        prog.l1_budget = type(prog.l1_budget)(config.device.l1_bytes)
        stages: list[tuple[str, str]] = []

        def record(stage: str, text: str) -> None:
            stages.append((stage, text))
            if dump:
                dump(stage, text)

        run_pipeline(module, record if dump or os.environ.get("TILEGRID_DUMP_IR") else None)
        sources, locs = generate(module)
    except TilegridError as e:
        if e.loc is None and config.loc is not None:
            e = type(e)(e.message, config.loc, kernel=e.kernel, note=e.note)
        raise e.with_kernel(config.name) from None
    compiled = Compiled(module, sources, locs, load(sources), plan_l1(module), stages, time.perf_counter() - t0)
    if os.environ.get("TILEGRID_DUMP_IR"):
        for stage, text in stages:
            print(f"// ----- IR after {stage} -----\n{text}")
    _cache[key] = compiled
    return compiled


def check_grid(config: KernelConfig) -> None:
    gr, gc = config.grid
    dr, dc = config.device.grid
    if not (isinstance(gr, int) and isinstance(gc, int)) or gr < 1 or gc < 1:
        raise CompileError(f"grid must be two positive integers, got {config.grid}", config.loc)
    if gr > dr or gc > dc:
        raise CompileError(
            f"grid {gr}x{gc} is larger than the {config.device.name} compute grid {dr}x{dc}",
            config.loc,
            note="grids are (rows, cols); choose a smaller grid or another device",
        )


def kernel_param_names(config: KernelConfig) -> list[str]:
    fn = config.fn
    return list(inspect.signature(fn).parameters) if fn is not None else []


def run_program(config: KernelConfig, threads: Sequence[ThreadDef], tensors: Sequence[Any],
                kernel_tensors: Sequence[Any]) -> Any:
    check_grid(config)
    if not threads:
        raise CompileError("Program() needs at least one thread", config.loc)
    if not any(t.kind == "compute" for t in threads):
        raise CompileError(
            "Program() has no @compute() thread", config.loc,
            note="a kernel needs one compute thread; data-movement threads only move blocks",
        )
    args = describe_args(config, tensors, kernel_tensors, kernel_param_names(config))
    streams = {id(t): i for i, t in enumerate(tensors)}
    if config.backend == "gpu":
        from tilegrid.gpu import run_program_gpu

        return run_program_gpu(config, threads, tensors, args, streams)
    if config.backend != "sim":
        raise CompileError(f"backend must be 'sim' or 'gpu', got {config.backend!r}", config.loc)
    compiled = compile_threads(config, threads, args, streams, tensors=tensors)
    if config.mode == "compile":
        compile_log.append(compiled)
        return tensors[-config.num_outs] if config.num_outs == 1 else tuple(tensors[-config.num_outs:])
    return simulate(config, compiled, tensors, args, observer)


def simulate(config: KernelConfig, compiled: Compiled, tensors: Sequence[Any], args: list[dict],
             observer: Any = None) -> Any:
    """Run the compiled threads on every core; write outputs back into the caller's arrays."""
    arrays = []
    for a, info in zip(tensors, args):
        arr = _as_array(a)
        if info["output"]:
            arrays.append(np.full(arr.shape, np.nan, np.float32))
        else:
            arrays.append(round_to(np.asarray(arr, dtype=np.float32), info["dtype"]))
    rt = Runtime(arrays, args, program_of(compiled.module).dst_capacity.data, observer, compiled.locs, kernel=config.name)
    gr, gc = config.grid
    sems = program_of(compiled.module).semaphore_inits
    cores = [
        Core(r, c, [CB(i["name"], (32 * i["block"][0], 32 * i["block"][1]), i["dtype"], i["depth"]) for i in args],
             list(sems))
        for r in range(gr) for c in range(gc)
    ]
    t0 = time.perf_counter()
    # Many small block matmuls: BLAS threads cost more than they save; hardware raises no FP warnings.
    with threadpool_limits(1, "blas"), np.errstate(all="ignore"):
        scheduler.run(rt, cores, [(s.name, f) for s, f in zip(compiled.sources, compiled.fns)], config.schedule,
                      config.seed)
    rt.check_finished(cores)
    last_run.update(seconds=time.perf_counter() - t0, compiled=compiled)
    return write_outputs(tensors, arrays, args)


def write_outputs(tensors: Sequence[Any], arrays: Sequence[np.ndarray | None], args: list[dict]) -> Any:
    """Copy simulated outputs into the caller's arrays / tensors (in their format) and return them.
    An output with no array (timing-only runs) or a read-only array is returned as it is / anew."""
    outs = []
    for t, arr, info in zip(tensors, arrays, args):
        if not info["output"]:
            continue
        if arr is None:
            outs.append(t)
            continue
        result = arr.astype(NP_DTYPES[info["dtype"]])
        if isinstance(t, np.ndarray) and t.flags.writeable:
            t[...] = result
            outs.append(t)
        elif type(t).__module__.startswith("torch"):
            import torch

            t.copy_(torch.from_numpy(arr).to(t.dtype))
            outs.append(t)
        else:
            outs.append(result)
    return outs[0] if len(outs) == 1 else tuple(outs)


def from_text(text: str) -> Compiled:
    """Compile generated threads from dumped tile IR text alone (no Python source needed)."""
    module = ir.parse(text)
    sources, locs = generate(module)
    return Compiled(module, sources, locs, load(sources), plan_l1(module))
