"""`pykernel_gen`, thread decorators, `Stream` and `Program`: how a kernel is declared.

The kernel function runs as plain Python each call: it builds streams and thread
definitions and hands them to `Program`, which compiles the threads (cached per shape
signature) and runs the result on the simulator.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import SourceLoc, TilegridError

_current: list[KernelCall] = []
_overrides: dict[str, Any] = {}  # set by the CLI: e.g. {"mode": "compile"}


@dataclass
class KernelConfig:
    """What `pykernel_gen` was given (see its docstring)."""

    name: str
    grid: tuple[int, int]
    block_factors: list[tuple[int, ...]] | None
    num_outs: int
    device: Device
    fp32_acc: bool
    dst_double_buffer: bool
    schedule: str
    seed: int | None
    loc: SourceLoc | None
    mode: str = "run"  # "run" or "compile" (stop before simulation)
    backend: str = "sim"  # "sim" (the functional simulator) or "gpu" (compiled to Triton)
    fn: Callable | None = None


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
) -> Callable:
    """Declare a kernel over a grid of cores.

    grid: (rows, cols) of cores; every thread runs on every core.
    block_factors: per tensor argument, the block one CB slot holds, in tiles: (rows, cols)
        or (rows, cols, depth) with depth the number of CB slots (2 = double buffering).
        A shorter list repeats its last entry (with a warning); None means (1, 1) for all.
    num_outs: the last `num_outs` arguments are outputs.
    fp32_acc / dst_double_buffer: the DST mode (capacity 16 tiles, halved by each).
    schedule: "deterministic" or "random" (with `seed`) thread interleaving on the simulator.
    backend: "sim" runs on the functional simulator; "gpu" compiles the block IR to Triton
        (needs torch and triton; also selectable per call: `kernel(*tensors, backend="gpu")`).

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
        )

        def kernel(*tensors: Any, **options: Any) -> Any:
            cfg = config
            if options or _overrides:
                cfg = KernelConfig(**{**config.__dict__, **_overrides, **options})
            call = KernelCall(cfg, tensors)
            _current.append(call)
            try:
                ret = fn(*tensors)
            except TilegridError as e:
                raise e.with_kernel(cfg.name).with_traceback(None) from None
            finally:
                _current.pop()
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


@dataclass
class ThreadDef:
    """A thread function as declared: its kind and the Python function (compiled, never run)."""

    kind: str
    fn: Callable

    @property
    def name(self) -> str:
        return self.fn.__name__


def _thread_decorator(kind: str) -> Callable:
    def factory(*args: Any, **kwargs: Any) -> Callable[[Callable], ThreadDef]:
        if args and callable(args[0]):
            return ThreadDef(kind, args[0])  # type: ignore[return-value]
        return lambda fn: ThreadDef(kind, fn)

    return factory


compute = _thread_decorator("compute")
compute.__doc__ = """`@compute()`: the compute thread, one CB parameter per kernel argument, in order."""
datamovement = _thread_decorator("datamovement")
datamovement.__doc__ = """`@datamovement()`: a data-movement thread (DMA between DRAM, L1 and other cores)."""


class Stream:
    """A DRAM tensor viewed in blocks: `Stream(t)[..., i, j]` is block (i, j) of the last two
    dimensions (in CB block units) at element indices `...` of the leading dimensions."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    def __getitem__(self, idx: Any) -> Any:
        raise TilegridError("a Stream can only be indexed inside a thread, as the source or target of dma()")


def _as_array(t: Any) -> np.ndarray:
    """A NumPy view (or host copy) of a NumPy array or torch tensor; torch bf16 becomes ml_dtypes bf16."""
    if isinstance(t, np.ndarray):
        return t
    if type(t).__module__.startswith("torch"):
        if str(t.dtype) == "torch.bfloat16":
            from ml_dtypes import bfloat16

            return t.detach().float().cpu().numpy().astype(bfloat16)
        return t.detach().cpu().numpy()
    return np.asarray(t)


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
        if not _current:
            raise TilegridError("Program(...)(...) must be called inside a function decorated with @pykernel_gen")
        call = _current[-1]
        from tilegrid.runner import run_program

        call.programs.append(self)
        return run_program(call.config, self.threads, tensors, call.tensors)


def user_stacklevel() -> int:
    """The `stacklevel` that makes a warning point at the first frame outside tilegrid."""
    import os
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def warn_short_block_factors(name: str, given: int, needed: int) -> None:
    warnings.warn(
        f"kernel '{name}': block_factors has {given} entries for {needed} tensor arguments; "
        "the last entry is repeated",
        stacklevel=user_stacklevel(),
    )
