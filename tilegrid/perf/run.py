"""Running kernels under the timing model: `with perf.session(...) as s: kernel(...)`.

Inside a session every kernel launch runs on the "perf" target (tilegrid/targets/perf.py): the
functional simulator with the model as its observer, in the session's numerics (fidelity, exp
mode, data format). Each launch appends a `Summary` to `s.results`.

Timing-only mode (`timing_only=True`) skips the arithmetic and every data copy: outputs stay
unwritten (NaN); the kernels' control flow never depends on data, so the prediction is the same.
Inputs may then be zero-stride placeholders (`placeholder(shape)`), so a 16384^3 matmul needs no
memory for its operands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import context
from tilegrid.perf.model import Options
from tilegrid.perf.params import DeviceParams
from tilegrid.perf.report import Summary


def placeholder(shape: tuple[int, ...], dtype: Any = bfloat16) -> np.ndarray:
    """A read-only array of the given shape that takes no memory (for timing-only runs)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


@dataclass
class Session:
    """Options of the timing model for the kernel launches inside `session(...)`, and their results."""

    options: Options
    timing_only: bool = False
    params: DeviceParams | None = None  # None: from each kernel's Device
    forward: Any = None  # another observer to feed too (e.g. a progress bar)
    results: list[Summary] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)

    @property
    def last(self) -> Summary:
        return self.results[-1]


@contextlib.contextmanager
def session(fidelity: str = "HiFi4", *, data_format: str | None = None, exp: str = "accurate",
            timing_only: bool = False, params: DeviceParams | None = None, trace: bool = True,
            trace_cores: int | None = None, forward: Any = None, stop_after: float | None = None,
            floors: dict[tuple[int, int], float] | None = None) -> Iterator[Session]:
    """Run every kernel launched inside the block under the timing model.

    fidelity: LoFi / HiFi2 / HiFi3 / HiFi4 (time, and matmul numerics unless HiFi4 with bf16 data).
    data_format: None or "bfp8_b": bf16 inputs and outputs are stored (and rounded) as bfp8_b in DRAM
        and in their CBs.
    exp: "accurate" or "approx" SFPU exponential. timing_only: skip arithmetic and data copies.
    params: a DeviceParams to use instead of the one matching each kernel's Device.
    stop_after: cycles; a run whose predicted time passes them stops with `perf.Overrun` (a search
        that cannot use a slower candidate's exact time); `floors` (per core, the least cycles its
        compute thread's work costs) make it stop as soon as that is certain.
    Sessions nest: the innermost one models the kernels launched inside it.
    """
    s = Session(Options(fidelity=fidelity, exp=exp, data_format=data_format, trace=trace, trace_cores=trace_cores,
                        stop_after=stop_after, floors=floors),
                timing_only=timing_only, params=params, forward=forward)
    with context.use(target="perf", perf=s):
        yield s


def active_options() -> Options | None:
    """The options of the innermost running session (what a kernel launched now is modelled with)."""
    s = context.current().perf
    return s.options if s is not None else None
