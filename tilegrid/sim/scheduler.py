"""Runs every thread of every core as a coroutine until all finish, or reports a deadlock.

Deterministic by default: cores in row-major order, threads in program order, each run
until it blocks. `schedule="random"` shuffles the order of every sweep with a seeded RNG,
so a missing synchronisation shows up as a failure under some seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass

from tilegrid.sim.deadlock import deadlock
from tilegrid.sim.runtime import Core, Runtime, Wait


@dataclass
class Task:
    core: Core
    name: str
    gen: Generator
    waiting: Wait | None = None


def run(rt: Runtime, cores: list[Core], threads: list[tuple[str, Callable]], schedule: str = "deterministic",
        seed: int | None = None) -> None:
    tasks = []
    for core in cores:
        for name, fn in threads:
            tasks.append(Task(core, name, fn(rt, core)))
    if schedule not in ("deterministic", "random"):
        raise ValueError(f"schedule must be 'deterministic' or 'random', got {schedule!r}")
    rng = random.Random(seed) if schedule == "random" else None
    rt.preempt = rng is not None
    rt.grid = {(c.r, c.c): c for c in cores}
    while tasks:
        before = rt.epoch
        finished = False
        order = list(tasks)
        if rng is not None:
            rng.shuffle(order)
        for t in order:
            t.core.thread = t.name
            try:
                t.waiting = next(t.gen)
                if t.waiting is None:  # preempted, not blocked
                    finished = True
            except StopIteration:
                tasks.remove(t)
                finished = True
        if not finished and rt.epoch == before and tasks:
            raise deadlock(rt, tasks)
