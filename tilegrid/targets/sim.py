"""The functional simulator as a target: tile IR -> Python generators -> run on every core.

It starts from the "tile" level; the generated code is what runs (never the user's Python), so a
wrong pass shows as a wrong answer. Its numerics options (matrix-unit fidelity, exp mode, or no
arithmetic at all) are what the performance model's runs choose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilegrid.codegen.python import ThreadSource, generate, load
from tilegrid.context import RunContext
from tilegrid.errors import CompileError
from tilegrid.lang.spec import KernelConfig
from tilegrid.numerics import NP_DTYPES, round_to
from tilegrid.sim.simulate import simulate
from tilegrid.targets.compile import Compiled, as_array, write_outputs


@dataclass(frozen=True)
class SimOptions:
    """fidelity: the matrix unit's math fidelity (None: exact products, as HiFi4 on bf16 data).
    exp: "approx" makes every exp the SFPU's fast approximation. arithmetic: False runs control
    flow, transfers and op reports only (the performance model's timing-only mode)."""

    fidelity: str | None = None
    exp: str = "accurate"
    arithmetic: bool = True


@dataclass
class SimProgram:
    """A compiled kernel as the simulator runs it: one generator function per thread."""

    compiled: Compiled
    sources: list[ThreadSource]
    fns: list[Callable]
    locs: list[str]
    events: list[Any]
    options: SimOptions
    l1_used: int  # bytes of L1 the layout uses per core

    @property
    def threads(self) -> list[tuple[str, Callable]]:
        return [(s.name, f) for s, f in zip(self.sources, self.fns)]


def lower(compiled: Compiled, options: SimOptions = SimOptions()) -> SimProgram:
    """The compiled tile IR as Python generators (kept with the compiled kernel, per options)."""
    key = ("sim", options)
    hit = compiled.programs.get(key)
    if hit is None:
        sources, locs, events = generate(compiled.module, timing=not options.arithmetic, fidelity=options.fidelity,
                                         exp=options.exp)
        hit = compiled.programs[key] = SimProgram(compiled, sources, load(sources), locs, events, options,
                                                  compiled.l1.used)
    return hit


def run(program: SimProgram, tensors: Sequence[Any], config: KernelConfig, *, observer: Any = None,
        formats: Sequence[str] | None = None) -> list[np.ndarray | None]:
    """Simulate on every core; returns each argument's DRAM array after the run (None for every
    argument in a timing-only run). `formats`: each argument's data format in DRAM when it differs
    from its dtype (bfp8_b under the performance model); inputs are rounded to it."""
    args = program.compiled.args
    prog = program.compiled.program
    arrays: list[np.ndarray | None] = []
    arithmetic = program.options.arithmetic
    for t, info, fmt in zip(tensors, args, formats or [a["dtype"] for a in args]):
        dt = NP_DTYPES[info["dtype"]]
        if not arithmetic:
            arrays.append(None)
        elif info["output"]:
            arrays.append(np.full(info["shape"], np.nan, dt))
        elif fmt != info["dtype"]:  # stored in DRAM as `fmt` (bfp8_b): its values, held in the tensor's dtype
            arrays.append(round_to(np.asarray(as_array(t), np.float32), fmt).astype(dt))
        else:
            arrays.append(np.asarray(as_array(t), dt))
    offsets = prog.cb_layout
    if offsets is None:
        raise CompileError(f"kernel '{config.name}': its tile IR has no L1 layout (run the pipeline to allocate-l1)")
    simulate(program.threads, args, arrays, kernel=config.name, grid=config.grid,
             dst_capacity=prog.dst_capacity.data, semaphores=prog.semaphore_inits, locs=program.locs,
             events=program.events, l1_bytes=prog.l1_budget.data, l1_used=program.l1_used, cb_offsets=offsets,
             observer=observer, schedule=config.schedule, seed=config.seed, copy_data=arithmetic,
             roles={src.name: src for src in program.sources})
    if arithmetic and formats:  # what the packer wrote to the output CBs, in their format
        arrays = [round_to(np.asarray(a, np.float32), f).astype(a.dtype) if info["output"] else a
                  for a, info, f in zip(arrays, args, formats)]
    return arrays


class SimTarget:
    """Target "sim": the functional simulator (the default)."""

    name = "sim"
    level = "tile"

    def lower(self, compiled: Compiled, ctx: RunContext, config: KernelConfig) -> SimProgram:
        fidelity = None if config.math_fidelity == "HiFi4" else config.math_fidelity  # HiFi4 on bf16: exact
        return lower(compiled, SimOptions(fidelity))

    def run(self, program: SimProgram, tensors: Sequence[Any], config: KernelConfig, ctx: RunContext) -> Any:
        return write_outputs(tensors, run(program, tensors, config, observer=config.observer), program.compiled.args)


def run_compiled(compiled: Compiled, tensors: Sequence[Any], config: KernelConfig, observer: Any = None) -> Any:
    """Simulate an already compiled kernel (e.g. one parsed from IR text) on `tensors`."""
    program = lower(compiled.verify())
    return write_outputs(tensors, run(program, tensors, config, observer=observer), compiled.args)


