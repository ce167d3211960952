"""Running kernels under the timing model: `with perf.session(...) as s: kernel(...)`.

Inside a session every kernel launch is compiled as usual (cached), then its tile IR is generated
again in the performance mode (op descriptors, DMA handles; in timing-only mode without the NumPy
arithmetic) and run on the simulator with a runtime that reports DMA details (block index, targets)
to a `PerfModel`. Each launch appends a `Summary` to `s.results`.

Timing-only mode (`timing_only=True`) skips the arithmetic and every data copy: outputs stay
unwritten (NaN); the kernels' control flow never depends on data, so the prediction is the same.
Inputs may then be zero-stride placeholders (`placeholder(shape)`), so a 16384^3 matmul needs no
memory for its operands.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ml_dtypes import bfloat16
from threadpoolctl import threadpool_limits

from tilegrid.codegen.python import generate, load
from tilegrid.passes.common import program_of
from tilegrid.perf.model import Options, PerfModel
from tilegrid.perf.params import TILE_BYTES, DeviceParams, params_for
from tilegrid.perf.report import Summary
from tilegrid.runner import write_outputs
from tilegrid.sim import scheduler
from tilegrid.sim.numerics import round_to
from tilegrid.sim.runtime import CB, Core, Runtime


class _InertSlot(np.ndarray):
    """A CB slot for timing-only runs: never poisoned (reserve's NaN fill is a no-op)."""

    def fill(self, value: Any) -> None:  # noqa: D401 - numpy signature
        return None


def placeholder(shape: tuple[int, ...], dtype: Any = bfloat16) -> np.ndarray:
    """A read-only array of the given shape that takes no memory (for timing-only runs)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


class PerfRuntime(Runtime):
    """The simulator runtime with every DMA timed by the model (`transferred`), and in timing-only
    mode without data copies (`copy_data`)."""

    model: PerfModel

    def transferred(self, core: Core, kind: str, arg: int, block: np.ndarray, loc: int,
                    idx: tuple[int, ...] | None = None, receivers: list[Core] | None = None) -> int:
        super().transferred(core, kind, arg, block, loc, idx, receivers)  # other observers hear it too
        n = self._bytes(arg, block)
        if receivers is not None:
            return self.model.handle_mcast((core.r, core.c), core.thread, n, [(r.r, r.c) for r in receivers])
        return self.model.handle_dram((core.r, core.c), core.thread, kind, n, arg, idx)

    def dma_wait(self, core: Core, handle: int | None) -> None:
        self.model.dma_wait((core.r, core.c), core.thread, handle)

    def _bytes(self, arg: int, block: np.ndarray) -> int:
        return (block.size // 1024) * TILE_BYTES[self.model.formats[arg]]


@dataclass
class Session:
    """Options of the timing model for the kernel launches inside `session(...)`, and their results."""

    options: Options
    timing_only: bool = False
    params: DeviceParams | None = None  # None: from each kernel's Device
    forward: Any = None  # another observer to feed too (e.g. a progress bar)
    results: list[Summary] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)
    _gen_cache: dict = field(default_factory=dict)

    @property
    def last(self) -> Summary:
        return self.results[-1]

    def threads_for(self, compiled: Any) -> list[tuple[str, str, Any]]:
        key = (id(compiled.module), self.timing_only, self.options.fidelity, self.options.exp)
        hit = self._gen_cache.get(key)
        if hit is None:
            fid = None if self.options.fidelity == "HiFi4" else self.options.fidelity  # HiFi4 on bf16: exact
            sources, locs = generate(compiled.module, perf=True, timing=self.timing_only, fidelity=fid,
                                     exp=self.options.exp)
            hit = self._gen_cache[key] = ([(s.name, s.kind, f) for s, f in zip(sources, load(sources))], locs,
                                          compiled.module)
        return hit[0], hit[1]

    def simulate(self, config: Any, compiled: Any, tensors: Any, args: list[dict], observer: Any = None) -> Any:
        """Replaces `tilegrid.runner.simulate` inside the session (same signature and results)."""
        params = self.params or params_for(config.device.name)
        threads, locs = self.threads_for(compiled)
        kinds, dm = {}, 0
        for name, kind, _ in threads:
            if kind == "compute":
                kinds[name] = "compute"
            else:
                kinds[name] = f"dm{dm}"
                dm += 1
        fmt = self.options.data_format
        # the kernel's bf16 tensors (inputs and outputs, as tt-metal's dtype= applies to both) are
        # stored in DRAM and their CBs in the run's data format; L1 intermediates stay as declared
        formats = [fmt if (fmt and a["dtype"] == "bf16") else a["dtype"] for a in args]
        model = PerfModel(params, self.options, kernel=config.name, grid=tuple(config.grid), infos=args,
                          thread_kinds=kinds, formats=formats)
        arrays = []
        for a, info, f in zip(tensors, args, formats):
            if self.timing_only:
                arrays.append(None)
                continue
            arr = np.asarray(a.detach().cpu().float().numpy() if hasattr(a, "detach") else a)
            if info["output"]:
                arrays.append(np.full(arr.shape, np.nan, np.float32))
            else:
                arrays.append(round_to(np.asarray(arr, dtype=np.float32), f))
        prog = program_of(compiled.module)
        rt = PerfRuntime(arrays, args, prog.dst_capacity.data, _Tee(model, observer), locs, kernel=config.name)
        rt.model, rt.copy_data = model, not self.timing_only
        gr, gc = config.grid
        sems = prog.semaphore_inits
        cores = []
        for r in range(gr):
            for c in range(gc):
                cbs = []
                for i in args:
                    cb = CB(i["name"], (32 * i["block"][0], 32 * i["block"][1]), i["dtype"], i["depth"])
                    if self.timing_only:
                        cb.slots = [np.zeros(cb.shape, np.float32).view(_InertSlot) for _ in range(cb.depth)]
                    cbs.append(cb)
                cores.append(Core(r, c, cbs, list(sems)))
        t0 = time.perf_counter()
        with threadpool_limits(1, "blas"), np.errstate(all="ignore"):
            scheduler.run(rt, cores, [(name, f) for name, _, f in threads], config.schedule, config.seed)
        rt.check_finished(cores)
        self.wall_seconds.append(time.perf_counter() - t0)
        self.results.append(model.finish())
        if not self.timing_only:  # what the packer wrote to the output CBs, in their format
            arrays = [round_to(arr, f) if info["output"] else arr for arr, info, f in zip(arrays, args, formats)]
        return write_outputs(tensors, arrays, args)


class _Tee:
    """The model as the runtime's observer, also feeding another observer (if any)."""

    def __init__(self, model: PerfModel, other: Any) -> None:
        self.model, self.other = model, other
        if other is None:
            self.on_op, self.on_sync = model.on_op, model.on_sync

    def on_op(self, *a: Any) -> None:
        self.model.on_op(*a)
        self.other.on_op(*a)

    def on_sync(self, *a: Any) -> None:
        self.model.on_sync(*a)
        self.other.on_sync(*a)

    def on_transfer(self, *a: Any) -> None:
        if self.other is not None:  # the model hears transfers through PerfRuntime.transferred
            self.other.on_transfer(*a)


@contextlib.contextmanager
def session(fidelity: str = "HiFi4", *, data_format: str | None = None, exp: str = "accurate",
            timing_only: bool = False, params: DeviceParams | None = None, trace: bool = True,
            trace_cores: int | None = None, forward: Any = None) -> Iterator[Session]:
    """Run every kernel launched inside the block under the timing model.

    fidelity: LoFi / HiFi2 / HiFi3 / HiFi4 (time, and matmul numerics unless HiFi4 with bf16 data).
    data_format: None or "bfp8_b": bf16 inputs and outputs are stored (and rounded) as bfp8_b in DRAM
        and in their CBs.
    exp: "accurate" or "approx" SFPU exponential. timing_only: skip arithmetic and data copies.
    params: a DeviceParams to use instead of the one matching each kernel's Device.
    """
    from tilegrid import runner

    global _active
    s = Session(Options(fidelity=fidelity, exp=exp, data_format=data_format, trace=trace, trace_cores=trace_cores),
                timing_only=timing_only, params=params, forward=forward)
    saved, saved_active = runner.simulate, _active
    runner.simulate, _active = s.simulate, s
    try:
        yield s
    finally:
        runner.simulate, _active = saved, saved_active


_active: Session | None = None


def active_options() -> Options | None:
    """The options of the innermost running session (what a kernel launched now is modelled with)."""
    return _active.options if _active is not None else None
