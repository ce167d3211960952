"""Targets: where a compiled kernel runs. All are fed by one compiler (tilegrid/passes/pipeline.py).

A target declares the IR level it starts from ("block" or "tile"), lowers the pipeline's IR to
its own program (cached per compiled kernel) and runs that program on the kernel's tensors:

    sim       the functional simulator (default)         tile IR -> Python generators
    perf      the simulator under the timing model        tile IR -> Python generators + observer
    gpu       NVIDIA GPUs through Triton                  block IR -> Triton source
    tt-metal  tt-metal C++ kernels + a ttnn host program  tile IR -> C++

`launch` is what `Program(...)(...)` calls; the run context (tilegrid/context.py) may override a
kernel's target (a perf session) or ask for compile-only (the program goes to the context's log).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from tilegrid import context
from tilegrid.context import RunContext
from tilegrid.errors import CompileError
from tilegrid.lang.spec import KernelConfig, ThreadDef
from tilegrid.targets.compile import Compiled, check_program, compile_program, describe_args
from tilegrid.targets.gpu import GpuTarget
from tilegrid.targets.perf import PerfTarget
from tilegrid.targets.sim import SimTarget
from tilegrid.targets.ttmetal.target import TtMetalTarget


class Target(Protocol):
    name: str
    level: str  # "block" or "tile": the pipeline stage this target lowers

    def lower(self, compiled: Compiled, ctx: RunContext, config: KernelConfig) -> Any: ...

    def run(self, program: Any, tensors: Sequence[Any], config: KernelConfig, ctx: RunContext) -> Any: ...


TARGETS: dict[str, Target] = {t.name: t for t in (SimTarget(), PerfTarget(), GpuTarget(), TtMetalTarget())}


def target(name: str, config: KernelConfig | None = None) -> Target:
    t = TARGETS.get(name)
    if t is None:
        raise CompileError(f"backend must be one of {', '.join(repr(n) for n in TARGETS)}, got {name!r}",
                           config.loc if config else None)
    return t


def launch(config: KernelConfig, threads: Sequence[ThreadDef], tensors: Sequence[Any],
           kernel_tensors: Sequence[Any]) -> Any:
    """Compile (cached) and run one Program on the target the context or the kernel names."""
    ctx = context.current()
    t = target(ctx.target or config.backend, config)
    check_program(config, threads)
    args = describe_args(config, tensors, kernel_tensors)
    compiled = compile_program(config, threads, tensors, args, t.level, ctx.dump)
    program = compiled if ctx.mode == "ir" else t.lower(compiled.verify(), ctx, config)
    if ctx.mode in ("compile", "ir"):
        if ctx.log is not None:
            ctx.log.append(program)
        n = config.num_outs
        return tensors[-n] if n == 1 else tuple(tensors[-n:])
    return t.run(program, tensors, config, ctx)


def compile_ir(kernel: Any, *tensors: Any, backend: str = "sim", **options: Any) -> Compiled:
    """Compile `kernel` for the shapes and formats of `tensors` up to the IR `backend` lowers (its
    last Program), without lowering it: `.module`, `.l1`, for a planner that only weighs layouts."""
    return _compiled(kernel, tensors, backend, "ir", options)


def compile_kernel(kernel: Any, *tensors: Any, backend: str = "sim", **options: Any) -> Any:
    """Compile `kernel` for the shapes and formats of `tensors` without running it; returns the
    target's program of its (last) Program: for "sim" a SimProgram (`.compiled.module` is the tile
    IR, `.compiled.l1` the L1 plan), for "gpu" a GpuProgram, for "tt-metal" a TtMetalProgram
    (`.sources`: the C++ kernels, `.host()`: the host program). options: per-call kernel options
    (e.g. `sfpu="raw"`, `math_fidelity="HiFi2"`)."""
    return _compiled(kernel, tensors, backend, "compile", options)


def _compiled(kernel: Any, tensors: Sequence[Any], backend: str, mode: str, options: dict) -> Any:
    log: list = []
    with context.use(target=backend, mode=mode, log=log):
        kernel(*tensors, **options)
    if not log:
        raise CompileError(f"kernel '{getattr(kernel, '__name__', kernel)}' built no Program")
    return log[-1]
