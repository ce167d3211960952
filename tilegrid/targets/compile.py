"""From a kernel's declaration and tensors to its IR at a target's level: checks, frontend, pipeline.

Compiled once per shape signature (kernel, threads with their closure constants, grid, device,
arguments, level) and cached; the tensors' data never matters, only their shapes and formats.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tilegrid import ir
from tilegrid.errors import CompileError, TilegridError
from tilegrid.frontend.builder import build_module
from tilegrid.lang.spec import KernelConfig, ThreadDef, warn_short_block_factors
from tilegrid.numerics import FIDELITY_PHASES, NP_DTYPES, dtype_of
from tilegrid.passes.allocate_l1 import L1Plan, plan_l1
from tilegrid.passes.common import program_of
from tilegrid.passes.pipeline import run_pipeline, verify, verify_each_pass


@dataclass
class Compiled:
    """A kernel's IR after the pipeline, at one level ("block" or "tile"), for one shape signature."""

    name: str
    module: Any
    level: str
    args: list[dict]
    stages: list[tuple[str, str]] = field(default_factory=list)
    compile_seconds: float = 0.0
    programs: dict[Any, Any] = field(default_factory=dict)  # what each target lowered it to, by options
    verified: bool = False

    def verify(self) -> Compiled:
        """Verify the IR once, before a target lowers it: a planner that only weighs a layout's IR
        (`compile_ir`) never pays for it."""
        if not self.verified:
            verify(self.module, f"the pipeline (level '{self.level}')")
            self.verified = True
        return self

    @property
    def program(self) -> Any:
        return program_of(self.module)

    @cached_property
    def l1(self) -> L1Plan | None:
        """Per-core L1 use (tile level only; the IR is final once compiled)."""
        return plan_l1(self.module) if self.level == "tile" else None


_cache: dict[Any, Compiled] = {}


def clear_cache() -> None:
    """Forget every compiled kernel (the next launch compiles anew: what a compile-time benchmark times)."""
    _cache.clear()


def as_array(t: Any) -> np.ndarray:
    """A NumPy view (or host copy) of a NumPy array or torch tensor; torch bf16 becomes ml_dtypes bf16."""
    if isinstance(t, np.ndarray):
        return t
    if type(t).__module__.startswith("torch"):
        if str(t.dtype) == "torch.bfloat16":
            from ml_dtypes import bfloat16

            return t.detach().float().cpu().numpy().astype(bfloat16)
        return t.detach().cpu().numpy()
    return np.asarray(t)


def describe_args(config: KernelConfig, tensors: Sequence[Any], kernel_tensors: Sequence[Any]) -> list[dict]:
    """Check the tensors and describe each argument (name, shape, dtype, block, depth, output)."""
    names = list(inspect.signature(config.fn).parameters) if config.fn is not None else []
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
        a = as_array(t)
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
        if (rows % 32 and rows != 1) or (cols % 32 and cols != 1) or rows == cols == 1:
            raise CompileError(
                f"argument '{name}' has shape {tuple(a.shape)}; its last two dimensions must "
                "be multiples of 32 (whole 32x32 tiles), or one of them 1 (a row [1, N] or column [M, 1] vector)",
                config.loc,
                note="pad the tensor to a multiple of 32",
            )
        if (rows == 1 and bf[0] != 1) or (cols == 1 and bf[1] != 1):
            raise CompileError(
                f"block_factors {tuple(bf[:2])} for '{name}' of shape {tuple(a.shape)}: a vector's blocks are one "
                "row (or column) tall, so its block factor there must be 1",
                config.loc,
                note=f"use {(1, bf[1]) if rows == 1 else (bf[0], 1)}: a [1, N] argument's block is [1, 32 x cols tiles]",
            )
        br, bc = (1 if rows == 1 else 32 * bf[0]), (1 if cols == 1 else 32 * bf[1])
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


def check_program(config: KernelConfig, threads: Sequence[ThreadDef]) -> None:
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
    if config.math_fidelity not in FIDELITY_PHASES:
        raise CompileError(f"math_fidelity must be one of {', '.join(FIDELITY_PHASES)}, got {config.math_fidelity!r}",
                           config.loc)
    if not threads:
        raise CompileError("Program() needs at least one thread", config.loc)
    if not any(t.kind == "compute" for t in threads):
        raise CompileError(
            "Program() has no @compute() thread", config.loc,
            note="a kernel needs one compute thread; data-movement threads only move blocks",
        )


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


def compile_program(config: KernelConfig, threads: Sequence[ThreadDef], tensors: Sequence[Any], args: list[dict],
                    level: str, dump: Callable[[str, str], None] | None = None) -> Compiled:
    """Frontend + pipeline up to `level`, cached (a dump recompiles, so every stage is shown)."""
    capacity = config.device.dst_capacity(config.fp32_acc, config.dst_double_buffer)
    streams = {id(t): i for i, t in enumerate(tensors)}
    key = (config.name, config.grid, capacity, config.device.l1_bytes, level,
           tuple(_closure_key(t.fn) for t in threads), tuple(t.kind for t in threads),
           tuple(tuple(sorted(a.items())) for a in args), tuple(sorted(streams.values())),
           len({id(t) for t in tensors}))
    if dump is None and key in _cache:
        return _cache[key]
    t0 = time.perf_counter()
    stages: list[tuple[str, str]] = []

    def record(stage: str, text: str) -> None:
        stages.append((stage, text))
        if dump:
            dump(stage, text)

    try:
        module = build_module(config.name, config.grid, args, list(threads), streams, list(tensors))
        prog = program_of(module)
        prog.dst_capacity = type(prog.dst_capacity)(capacity)
        prog.l1_budget = type(prog.l1_budget)(config.device.l1_bytes)
        run_pipeline(module, level, record if dump or os.environ.get("TILEGRID_DUMP_IR") else None, verify_level=False)
    except TilegridError as e:
        if e.loc is None and config.loc is not None:
            e = type(e)(e.message, config.loc, kernel=e.kernel, note=e.note)
        raise e.with_kernel(config.name) from None
    compiled = Compiled(config.name, module, level, args, stages, time.perf_counter() - t0,
                        verified=verify_each_pass())
    if os.environ.get("TILEGRID_DUMP_IR"):
        for stage, text in stages:
            print(f"// ----- IR after {stage} -----\n{text}")
    if dump is None:
        _cache[key] = compiled
    return compiled


def parse_compiled(text: str) -> Compiled:
    """A Compiled from dumped tile IR text alone (no Python source needed)."""
    module = ir.parse(text)
    prog = program_of(module)
    return Compiled(prog.kernel.data, module, "tile", prog.arg_infos())


def write_outputs(tensors: Sequence[Any], results: Sequence[Any], args: list[dict]) -> Any:
    """Copy each output's result (a NumPy array, or a tensor the target computed) into the caller's
    array / tensor, in its format, and return the outputs (one, or a tuple). A result of None (a
    timing-only run) leaves the caller's output as it is; a read-only array gets a new one."""
    outs = []
    for t, res, info in zip(tensors, results, args):
        if not info["output"]:
            continue
        if res is None:
            outs.append(t)
        elif type(t).__module__.startswith("torch"):
            import torch

            t.copy_(res if isinstance(res, torch.Tensor) else torch.from_numpy(np.asarray(res, np.float32)))
            outs.append(t)
        else:
            host = res if isinstance(res, np.ndarray) else res.float().cpu().numpy()
            if isinstance(t, np.ndarray) and t.flags.writeable:
                t[...] = host.astype(t.dtype) if host.dtype != t.dtype else host
                outs.append(t)
            else:
                outs.append(np.asarray(host).astype(NP_DTYPES[info["dtype"]]))
    return outs[0] if len(outs) == 1 else tuple(outs)
