"""Run a compiled kernel's threads on every core of the grid: the one simulation loop.

The functional simulator and the performance model both run through here; the model watches
as an observer (tilegrid/sim/runtime.py `Observer`), it does not have a loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tilegrid.ir.core import block_dims
from tilegrid.sim import scheduler
from tilegrid.sim.runtime import CB, Core, Runtime


class _InertSlot(np.ndarray):
    """A CB slot for timing-only runs: never poisoned (reserve's NaN fill is a no-op)."""

    def fill(self, value: Any) -> None:  # noqa: D401 - numpy signature
        return None


def simulate(threads: list[tuple[str, Callable]], args: list[dict], tensors: list[np.ndarray | None], *,
             kernel: str, grid: tuple[int, int], dst_capacity: int, semaphores: list[int], locs: list[str],
             events: list[Any], l1_bytes: int, l1_used: int, cb_offsets: list[int], observer: Any = None,
             schedule: str = "deterministic", seed: int | None = None, copy_data: bool = True,
             roles: dict[str, Any] | None = None) -> None:
    """Run `threads` (generated generator functions) on every core until all finish; DMAs read and
    write `tensors` (DRAM, in kernel-argument order, each in its format; outputs are written in
    place). Each core has an L1 of `l1_bytes` holding its CBs at `cb_offsets` and its buffers (the
    first `l1_used` bytes, poisoned with NaN before the run).
    `copy_data` False: a timing-only run (no arithmetic was generated; no L1, CB slots hold nothing).
    `roles`: each thread's CBs and semaphores (codegen's ThreadSource), for deadlock reports."""
    rt = Runtime(tensors, args, dst_capacity, observer, locs, events=events, kernel=kernel, roles=roles or {})
    rt.copy_data = copy_data
    gr, gc = grid
    cores = []
    for r in range(gr):
        for c in range(gc):
            l1 = None
            if copy_data:  # all ones is NaN in bf16 and f32: what nothing wrote reads as NaN
                l1 = np.empty(l1_bytes, np.uint8)
                l1[:l1_used] = 0xFF
            cbs = []
            for i, off in zip(args, cb_offsets):
                cb = CB(i["name"], block_dims(i), i["dtype"], i["depth"], l1, off)
                if not copy_data:
                    cb.slots = [np.zeros(cb.shape, np.float32).view(_InertSlot) for _ in range(cb.depth)]
                cbs.append(cb)
            cores.append(Core(r, c, cbs, list(semaphores), l1=l1))
    # Many small block matmuls: BLAS threads cost more than they save; hardware raises no FP warnings.
    with threadpool_limits(1, "blas"), np.errstate(all="ignore"):
        scheduler.run(rt, cores, threads, schedule, seed)
    rt.check_finished(cores)
