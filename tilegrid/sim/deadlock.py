"""The deadlock report: which blocked thread waits for what, and which of them is the cause.

A thread waits in one operation (a CB reserve or pop, a semaphore wait) for another thread to do
something: push or pop that CB on its core, or set that semaphore. A thread whose helpers have
all finished (or that has none) waits for what nothing will ever do: a cause. One whose helpers
are themselves blocked waits behind them: a symptom. The report lists causes first, each group
of cores in the same state once, with the operation, its line and the source text; the caret
points at the first cause; the note on implicit data movement is added only when an implicit
thread is a cause or the helper a cause waited for.
"""

from __future__ import annotations

import linecache
from collections import defaultdict
from typing import Any

from tilegrid.errors import DeadlockError, SourceLoc

IMPLICIT = "implicit_"


def _operation(rt: Any, core: Any, w: Any) -> str:
    if w.kind == "sem_wait":
        return f"waits for semaphore {w.obj} to equal {w.value} (it is {core.sems[w.obj]})"
    cb = core.cbs[w.obj]
    if w.kind == "cb_wait":
        return f"pops CB '{cb.name}', which is empty ({cb.state()})"
    return f"reserves a slot of CB '{cb.name}', which is full ({cb.state()})"


def _helpers(rt: Any, w: Any) -> tuple[set[str], str]:
    """Threads that could unblock a wait, and what they would do."""
    roles = rt.roles
    if w.kind == "sem_wait":
        return {n for n, r in roles.items() if w.obj in r.signals}, f"set semaphore {w.obj}"
    if w.kind == "cb_wait":
        return {n for n, r in roles.items() if w.obj in r.produces}, "push"
    return {n for n, r in roles.items() if w.obj in r.consumes}, "pop"


def _cores(cores: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"({r}, {c})" for r, c in cores[:4])
    more = f" and {len(cores) - 4} more" if len(cores) > 4 else ""
    return f"core{'s' if len(cores) > 1 else ''} {shown}{more}"


def _source(loc: str) -> str:
    where = SourceLoc.parse(loc)
    text = linecache.getline(where.file, where.line).strip() if where else ""
    return f"      | {text}" if text else ""


def deadlock(rt: Any, tasks: list[Any]) -> DeadlockError:
    """The report of a state where no thread on any core can move (`tasks`: the blocked ones)."""
    running = {(t.core.r, t.core.c, t.name) for t in tasks}
    blocked_names = {t.name for t in tasks}
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for t in tasks:
        groups[(t.name, t.waiting.kind, t.waiting.obj, t.waiting.loc)].append(t)
    causes, behind = [], []
    implicit = False
    for (name, _, _, loc), ts in groups.items():
        t0, w = ts[0], ts[0].waiting
        helpers, action = _helpers(rt, w)
        helpers.discard(name)
        if w.kind == "sem_wait":  # any core's thread may signal
            live = sorted(h for h in helpers if h in blocked_names)
        else:  # the same core's threads
            live = sorted(h for h in helpers if (t0.core.r, t0.core.c, h) in running)
        cores = [(t.core.r, t.core.c) for t in ts]
        head = f"thread '{name}' on {_cores(cores)}: {_operation(rt, t0.core, w)}, at {loc}"
        if live:
            why = f"      (waits for {' / '.join(repr(h) for h in live)} to {action}; blocked too)"
            behind.append((head, why, loc))
        else:
            done = sorted(helpers)
            why = (f"      ({' / '.join(repr(h) for h in done)} {'has' if len(done) == 1 else 'have'} finished "
                   f"without a matching {action})" if done else f"      (no thread of the kernel will ever {action})")
            causes.append((head, why, loc))
            implicit |= name.startswith(IMPLICIT) or any(h.startswith(IMPLICIT) for h in done)
    cycle = not causes  # every blocked thread waits for another blocked thread
    lines = []
    for title, entries in (("waiting for what no running thread will do (the cause):", causes),
                           ("waiting for each other:" if cycle else "blocked behind them:", behind)):
        if entries:
            lines.append(title)
            for head, why, loc in entries:
                lines += [f"  {head}", why] + ([_source(loc)] if _source(loc) else [])
    first = (causes or behind)[0][2]
    note = ("every pop needs a matching push and every reserve a free slot: the threads above must move the same "
            "number of blocks through each CB" + ("; those waiting for each other form a cycle: one of them must "
                                                  "go first" if cycle else ""))
    if any(t.waiting.kind == "sem_wait" for t in tasks) and any("semaphore" in head for head, _, _ in causes):
        note = ("a semaphore wait needs another thread (on this or another core) to set / increment it to the "
                "value waited for: check the signalling thread's condition and its target core")
    if implicit:
        note = ("the implicit reader / writer (implicit_*) moves every block of the core's own shard of its tensor (the "
                "last two dimensions split over the grid, in block_factors blocks): the compute thread must pop / "
                "reserve exactly that many blocks, or move the data with a @datamovement() thread")
    return DeadlockError("deadlock: no thread on any core can make progress\n" + "\n".join(lines), first or None,
                         kernel=rt.kernel, note=note)
