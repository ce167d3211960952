"""`pykernel_gen` and `Program`: how a kernel is launched.

The kernel function runs as plain Python each call: it builds streams and thread
definitions and hands them to `Program`, which launches them on a target (tilegrid/targets:
compiled, cached per shape signature, and run on the simulator by default).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import SourceLoc, TilegridError
from tilegrid.lang.spec import KernelConfig, ThreadDef
from tilegrid.targets import launch

_calls: ContextVar[tuple[KernelCall, ...]] = ContextVar("tilegrid_kernel_calls", default=())


@dataclass
class KernelCall:
    """One call of a kernel: its config and the tensors it was called with."""

    config: KernelConfig
    tensors: tuple[Any, ...]
    result: Any = None
    programs: list = field(default_factory=list)


def pykernel_gen(
    grid: tuple[int, int] = (1, 1),
    block_factors: Sequence[tuple[int, ...]] | None = None,
    *,
    num_outs: int = 1,
    device: Device = WORMHOLE,
    fp32_acc: bool = True,
    dst_double_buffer: bool = True,
    schedule: str = "deterministic",
    seed: int | None = None,
    backend: str = "sim",
    math_fidelity: str = "HiFi4",
    sfpu: str | dict[str, str] | None = None,
) -> Callable:
    """Declare a kernel over a grid of cores.

    grid: (rows, cols) of cores; every thread runs on every core.
    block_factors: per tensor argument, the block one CB slot holds, in tiles: (rows, cols)
        or (rows, cols, depth) with depth the number of CB slots (2 = double buffering).
        A shorter list repeats its last entry (with a warning); None means (1, 1) for all.
    num_outs: the last `num_outs` arguments are outputs.
    fp32_acc / dst_double_buffer: the DST mode (capacity 16 tiles, halved by each).
    math_fidelity: "LoFi", "HiFi2", "HiFi3" or "HiFi4" (exact bf16 products): how many passes the
        matrix unit's multiplier takes; the simulator computes the same products (numerics.py).
    sfpu: how the tt-metal target spells SFPU ops (exp, recip, max, where, ...): "api" (tt-metal's
        kernel-API calls; a card with Tenstorrent's sfpi compiler), "raw" (tilegrid's own SFPU
        instruction routines), "auto" / None (raw on the simulated device where a routine exists,
        else the API), or per op, e.g. {"exp": "raw", "default": "api"}. Other targets ignore it.
    schedule: "deterministic" or "random" (with `seed`) thread interleaving on the simulator.
    backend: the target: "sim" (the functional simulator), "perf" (the simulator under the timing
        model), "gpu" (compiled to Triton; needs torch and triton), "tt-metal" (tt-metal C++ kernels);
        also per call: `kernel(*tensors, backend="gpu")`, and `kernel(*tensors, observer=obs)`.

    Example::

        @pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
        def exp_kernel(x, out):
            @compute()
            async def comp(x_cb, out_cb):
                blk = x_cb.pop()
                o = out_cb.reserve()
                o.store(blk.exp())
            return Program(comp)(x, out)
    """

    def decorate(fn: Callable) -> Callable:
        try:
            loc = SourceLoc(inspect.getsourcefile(fn) or "<unknown>", fn.__code__.co_firstlineno)
        except TypeError:
            loc = None
        config = KernelConfig(
            name=fn.__name__,
            grid=tuple(grid),
            block_factors=[tuple(b) for b in block_factors] if block_factors is not None else None,
            num_outs=num_outs,
            device=device,
            fp32_acc=fp32_acc,
            dst_double_buffer=dst_double_buffer,
            schedule=schedule,
            seed=seed,
            loc=loc,
            fn=fn,
            backend=backend,
            math_fidelity=math_fidelity,
            sfpu=sfpu,
        )

        def kernel(*tensors: Any, **options: Any) -> Any:
            cfg = config
            if options:
                unknown = sorted(set(options) - set(KernelConfig.__dataclass_fields__) - {"name", "fn", "loc"})
                if unknown:
                    raise TilegridError(f"kernel '{config.name}' got unknown options {', '.join(unknown)}",
                                        note="per-call options are backend=, observer=, schedule=, seed=, grid=, "
                                        "device=, fp32_acc=, dst_double_buffer=, math_fidelity=, sfpu=")
                cfg = replace(config, **options)
            tensors = distinct_inputs(tensors, cfg.num_outs)
            call = KernelCall(cfg, tensors)
            token = _calls.set((*_calls.get(), call))
            try:
                ret = fn(*tensors)
            except TilegridError as e:
                raise e.with_kernel(cfg.name).with_traceback(None) from None
            finally:
                _calls.reset(token)
            if ret is None and not call.programs:
                raise TilegridError(
                    f"kernel '{cfg.name}' built no Program",
                    cfg.loc,
                    note="end the kernel function with `return Program(thread, ...)(*tensors)`",
                )
            return ret

        kernel.__name__ = fn.__name__
        kernel.__doc__ = fn.__doc__
        kernel.__wrapped__ = fn
        kernel.config = config
        return kernel

    return decorate


def distinct_inputs(tensors: tuple[Any, ...], num_outs: int) -> tuple[Any, ...]:
    """One array passed as several inputs (`matmul(a, a)`) becomes distinct views of the same
    memory, so each argument has its own Stream and its own blocks. An output passed as an input
    stays the same object: reading what the kernel writes is refused where a Stream uses it."""
    seen: set[int] = set()
    out = []
    for i, t in enumerate(tensors):
        if id(t) in seen and i < len(tensors) - num_outs and hasattr(t, "shape"):
            t = t[...]  # a view (NumPy and torch alike): a new object over the same data
        seen.add(id(t))
        out.append(t)
    return tuple(out)


class Program:
    """The threads of a kernel; calling it with the kernel's tensors compiles and runs it."""

    def __init__(self, *threads: ThreadDef) -> None:
        for t in threads:
            if not isinstance(t, ThreadDef):
                raise TilegridError(
                    f"Program() takes thread functions decorated with @compute() or @datamovement(), got {t!r}"
                )
        self.threads = threads

    def __call__(self, *tensors: Any) -> Any:
        calls = _calls.get()
        if not calls:
            raise TilegridError("Program(...)(...) must be called inside a function decorated with @pykernel_gen")
        call = calls[-1]
        call.programs.append(self)
        return launch(call.config, self.threads, tensors, call.tensors)
