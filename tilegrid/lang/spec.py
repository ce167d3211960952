"""What a kernel declares: its configuration, its threads and the streams they move (no execution).

The frontend reads these declarations; `pykernel_gen` and `Program` (tilegrid/lang/kernel.py)
launch them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tilegrid.device import Device
from tilegrid.errors import SourceLoc, TilegridError


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
    backend: str = "sim"  # the target: "sim", "perf", "gpu" or "tt-metal" (tilegrid/targets)
    math_fidelity: str = "HiFi4"  # the matrix unit's fidelity phases (LoFi, HiFi2, HiFi3, HiFi4)
    observer: Any = None  # watches every simulated op and transfer (sim and perf targets)
    sfpu: Any = None  # tt-metal: SFPU ops as kernel-API calls ("api"), raw routines ("raw"), "auto", or {op: mode}
    fn: Callable | None = None


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


def user_stacklevel() -> int:
    """The `stacklevel` that makes a warning point at the first frame outside tilegrid."""
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
