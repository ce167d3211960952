"""Run a compiled kernel's threads on every core of the grid: the one simulation loop.

The functional simulator and the performance model both run through here; the model watches
as an observer (tilegrid/sim/runtime.py `Observer`), it does not have a loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tilegrid.sim import scheduler
from tilegrid.sim.runtime import CB, Core, Runtime


class _InertSlot(np.ndarray):
    """A CB slot for timing-only runs: never poisoned (reserve's NaN fill is a no-op)."""

    def fill(self, value: Any) -> None:  # noqa: D401 - numpy signature
        return None


def simulate(threads: list[tuple[str, Callable]], args: list[dict], tensors: list[np.ndarray | None], *,
             kernel: str, grid: tuple[int, int], dst_capacity: int, semaphores: list[int], locs: list[str],
             events: list[Any], observer: Any = None, schedule: str = "deterministic", seed: int | None = None,
             copy_data: bool = True) -> None:
    """Run `threads` (generated generator functions) on every core until all finish; DMAs read and
    write `tensors` (DRAM, in kernel-argument order; outputs are written in place). `copy_data`
    False: a timing-only run (no arithmetic was generated; CB slots hold nothing)."""
    rt = Runtime(tensors, args, dst_capacity, observer, locs, events=events, kernel=kernel)
    rt.copy_data = copy_data
    gr, gc = grid
    cores = []
    for r in range(gr):
        for c in range(gc):
            cbs = []
            for i in args:
                cb = CB(i["name"], (32 * i["block"][0], 32 * i["block"][1]), i["dtype"], i["depth"])
                if not copy_data:
                    cb.slots = [np.zeros(cb.shape, np.float32).view(_InertSlot) for _ in range(cb.depth)]
                cbs.append(cb)
            cores.append(Core(r, c, cbs, list(semaphores)))
    # Many small block matmuls: BLAS threads cost more than they save; hardware raises no FP warnings.
    with threadpool_limits(1, "blas"), np.errstate(all="ignore"):
        scheduler.run(rt, cores, threads, schedule, seed)
    rt.check_finished(cores)
