"""Simulator state and the operations generated thread code calls.

Each core has its own L1 (bytes), where its CBs (real capacity, FIFO slots poisoned with NaN when
reserved) and intermediate buffers live at the offsets allocate-l1 chose, in their data formats;
DRAM tensors are shared, each in its own format. Blocking operations are generators that yield a description of
what they wait for; the scheduler resumes them. Every op and transfer is reported to an
optional observer (the seam for the performance model).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tilegrid.errors import TilegridError
from tilegrid.ir.core import block_dims
from tilegrid.numerics import NP_DTYPES


class Observer(Protocol):
    """Receives every op, transfer and synchronisation the simulator performs, in the order they
    happen. A timing model keeps a clock per (core, thread) and advances it on `on_op` /
    `on_transfer`; `on_sync` events order the clocks of different threads:

      ("push", cb, slot) / ("pop", cb, slot): a producer published / a consumer released a slot
      ("wait", cb, slot) / ("reserve", cb, slot): a consumer took / a producer reserved a slot
          (the slot was pushed / released earlier: the thread cannot be ahead of that event)
      ("sem_update", sem, (r, c)) for each target core, ("sem_wait", sem, None) when satisfied
    `op` of `on_op` is the tile IR op that ran (`tile.matmul`, `tile.compute`, ...: a typed event,
    see tilegrid/perf/costs.py); `tiles` counts its tile operations (a matmul: M*K*N products).
    `on_transfer` kinds: "dram_read", "dram_write", "mcast"; with the argument `arg` and block
    index `idx` of a DRAM transfer or the `receivers` of a multicast. It may return a handle: the
    transfer is then in flight until the thread's `dma_wait`, reported to `on_dma_wait`."""

    def on_op(self, core: tuple[int, int], thread: str, op: Any, tiles: int, loc: str) -> None: ...

    def on_transfer(self, core: tuple[int, int], thread: str, kind: str, nbytes: int, loc: str, *,
                    arg: int | None = None, idx: tuple[int, ...] | None = None,
                    receivers: list[tuple[int, int]] | None = None) -> Any: ...

    def on_sync(self, core: tuple[int, int], thread: str, event: str, obj: int, where: Any) -> None: ...


@dataclass
class Wait:
    """What a blocked thread waits in (deadlock reports): `kind` "cb_reserve" / "cb_wait" on CB
    `obj`, or "sem_wait" on semaphore `obj` until it equals `value`; `loc` the user's line."""

    kind: str
    obj: int
    loc: str
    value: int | None = None


class CB:
    """A circular buffer of `depth` slots of one block each, laid out from `offset` in a core's L1
    (`l1`, bytes; None: each slot its own array, as timing-only runs use)."""

    def __init__(self, name: str, shape: tuple[int, int], dtype: str, depth: int, l1: np.ndarray | None = None,
                 offset: int = 0) -> None:
        self.name, self.shape, self.dtype, self.depth = name, shape, dtype, depth
        if l1 is None:
            self.slots = [np.full(shape, np.nan, np.float32) for _ in range(depth)]
        else:
            nbytes = shape[0] * shape[1] * BYTES[dtype]
            self.slots = [l1_view(l1, offset + k * nbytes, shape, dtype) for k in range(depth)]
        self.reserved = self.pushed = self.waited = self.popped = 0
        self.last_push = -1  # location index of the latest push

    def state(self) -> str:
        return (f"{self.pushed - self.waited} pushed, {self.reserved - self.pushed} reserved, "
                f"{self.waited - self.popped} held by the consumer, depth {self.depth}")


BYTES = {"bf16": 2, "f32": 4}


def l1_view(l1: np.ndarray, offset: int, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """The block of `shape` and format `dtype` stored at byte `offset` of a core's L1 (row-major)."""
    return np.ndarray(shape, NP_DTYPES[dtype], buffer=l1, offset=offset)


@dataclass
class InFlight:
    """A DMA issued and not yet waited: what the thread's `dma_wait` completes. `observed`: the
    observer's handle of the transfer (the timing model's completion time)."""

    loc: int
    thread: str
    observed: Any = None
    done: bool = False


@dataclass
class Core:
    r: int
    c: int
    cbs: list[CB]
    sems: list[int] = field(default_factory=list)
    thread: str = ""
    l1: np.ndarray | None = None  # the core's L1, bytes
    landing: dict[int, InFlight] = field(default_factory=dict)  # id(slot) -> the DMA filling it
    reading: dict[int, InFlight] = field(default_factory=dict)  # id(slot) -> a DMA writing it to DRAM

    def buffer(self, offset: int, shape: tuple[int, int], dtype: str) -> np.ndarray:
        """An intermediate buffer where allocate-l1 placed it (it may hold a value being updated in
        place: buffers are not poisoned here; the L1 starts poisoned)."""
        return l1_view(self.l1, offset, shape, dtype)


@dataclass
class Runtime:
    tensors: list[np.ndarray]
    infos: list[dict]
    dst_capacity: int
    observer: Any = None
    locs: list[str] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)  # tile IR ops, reported by index from generated code
    epoch: int = 0
    kernel: str = ""
    grid: dict[tuple[int, int], Core] = field(default_factory=dict)
    preempt: bool = False
    writers: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    copy_data: bool = True  # False in the performance model's timing-only mode
    roles: dict[str, Any] = field(default_factory=dict)  # thread name -> its ThreadSource (CBs, semaphores)

    def error(self, msg: str, loc: int, note: str | None = None) -> TilegridError:
        return TilegridError(msg, self.locs[loc] if loc >= 0 else None, kernel=self.kernel, note=note)

    # ---- CBs ------------------------------------------------------------------------------

    def cb_reserve(self, core: Core, i: int, loc: int) -> Iterator[Wait]:
        cb = core.cbs[i]
        while cb.reserved - cb.popped >= cb.depth:
            yield Wait("cb_reserve", i, self.locs[loc])
        slot = cb.slots[cb.reserved % cb.depth]
        slot.fill(np.nan)
        if self.observer:
            self.observer.on_sync((core.r, core.c), core.thread, "reserve", i, cb.reserved % cb.depth)
        cb.reserved += 1
        self.epoch += 1
        return slot

    def cb_push(self, core: Core, i: int, loc: int) -> None:
        cb = core.cbs[i]
        if cb.pushed >= cb.reserved:
            raise self.error(f"push on CB '{cb.name}' without a reserved block", loc)
        slot = cb.slots[cb.pushed % cb.depth]
        self.check_landed(core, slot, cb, "pushes", loc)
        if np.isnan(slot.flat[0]) and np.isnan(slot).all():
            raise self.error(
                f"core ({core.r}, {core.c}) thread '{core.thread}' pushes a block of CB '{cb.name}' that nothing "
                "filled (no DMA, multicast or store reached it)",
                loc,
                note="a receiver must wait for the sender's signal (a semaphore) before pushing a multicast block",
            )
        if self.observer:
            self.observer.on_sync((core.r, core.c), core.thread, "push", i, cb.pushed % cb.depth)
        cb.pushed += 1
        cb.last_push = loc
        self.epoch += 1

    def cb_wait(self, core: Core, i: int, loc: int) -> Iterator[Wait]:
        cb = core.cbs[i]
        while cb.waited >= cb.pushed:
            yield Wait("cb_wait", i, self.locs[loc])
        slot = cb.slots[cb.waited % cb.depth]
        if self.observer:
            self.observer.on_sync((core.r, core.c), core.thread, "wait", i, cb.waited % cb.depth)
        cb.waited += 1
        self.epoch += 1
        return slot

    def cb_pop(self, core: Core, i: int, loc: int) -> None:
        cb = core.cbs[i]
        if cb.popped >= cb.waited:
            raise self.error(f"more pops than waits on CB '{cb.name}'", loc)
        h = core.reading.pop(id(cb.slots[cb.popped % cb.depth]), None)
        if h is not None and not h.done:
            raise self.error(
                f"race: core ({core.r}, {core.c}) thread '{core.thread}' releases a block of CB '{cb.name}' while "
                "the DMA writing it to DRAM (this line) has not been waited; its slot may be refilled first",
                h.loc, note="wait for the write before the block's release: dma(blk, stream[...]).wait()")
        if self.observer:
            self.observer.on_sync((core.r, core.c), core.thread, "pop", i, cb.popped % cb.depth)
        cb.popped += 1
        self.epoch += 1

    # ---- DMA ------------------------------------------------------------------------------

    def check_landed(self, core: Core, slot: np.ndarray, cb: CB, doing: str, loc: int) -> None:
        """A block must not be pushed, multicast or written while a DMA into it is in flight: on
        hardware that reads data that has not landed (the simulator copies at issue, so it can prove
        the race but not show it)."""
        h = core.landing.get(id(slot))
        if h is None:
            return
        if not h.done:
            raise self.error(
                f"race: core ({core.r}, {core.c}) thread '{core.thread}' {doing} a block of CB '{cb.name}' (at "
                f"{self.locs[loc]}) before the DMA filling it (this line, thread '{h.thread}') was waited",
                h.loc, note="wait for the transfer first: dma(...).wait(), or h = dma(...) then h.wait() before the "
                "block is pushed, multicast or written")
        del core.landing[id(slot)]

    def cb_of_slot(self, core: Core, slot: np.ndarray) -> CB | None:
        for cb in core.cbs:
            if any(s is slot for s in cb.slots):
                return cb
        return None

    def _window(self, core: Core, arg: int, idx: tuple[int, ...], loc: int) -> tuple:
        info = self.infos[arg]
        shape = info["shape"]
        br, bc = block_dims(info)
        limits = list(shape[:-2]) + [shape[-2] // br, shape[-1] // bc]
        for k, (i, n) in enumerate(zip(idx, limits)):
            if not 0 <= i < n:
                unit = " blocks" if k >= len(limits) - 2 else ""
                raise self.error(
                    f"core ({core.r}, {core.c}) thread '{core.thread}': stream index {i} is out of range for "
                    f"dimension {k} of '{info['name']}' (size {n}{unit}); full index {tuple(idx)}",
                    loc,
                    note="leading indices count elements, the last two count blocks of the CB's block shape",
                )
        *lead, i, j = idx
        return (*lead, slice(i * br, (i + 1) * br), slice(j * bc, (j + 1) * bc))

    def dma_read(self, core: Core, arg: int, idx: tuple[int, ...], slot: np.ndarray, loc: int) -> InFlight:
        win = self._window(core, arg, idx, loc)
        if self.copy_data:
            slot[...] = self.tensors[arg][win]
        h = core.landing[id(slot)] = InFlight(loc, core.thread, self.transferred(core, "dram_read", arg, slot, loc,
                                                                                  idx=idx))
        return h

    def dma_write(self, core: Core, arg: int, src: np.ndarray, idx: tuple[int, ...], loc: int) -> Any:
        info = self.infos[arg]
        key = (arg, *idx)
        first = self.writers.setdefault(key, (core.r, core.c))
        if first != (core.r, core.c):
            raise self.error(
                f"cores {first} and ({core.r}, {core.c}) both write block {tuple(idx)} of '{info['name']}'",
                loc,
                note="each output block should have one writer; index the output stream with core_index()",
            )
        self.check_source(core, src, "writes to DRAM", loc)
        win = self._window(core, arg, idx, loc)
        if self.copy_data:
            self.tensors[arg][win] = src
        h = core.reading[id(src)] = InFlight(loc, core.thread, self.transferred(core, "dram_write", arg, src, loc,
                                                                                 idx=idx))
        return h

    def check_source(self, core: Core, src: np.ndarray, doing: str, loc: int) -> None:
        if id(src) in core.landing:
            cb = self.cb_of_slot(core, src)
            if cb is not None:
                self.check_landed(core, src, cb, doing, loc)

    def transferred(self, core: Core, kind: str, arg: int, block: np.ndarray, loc: int,
                    idx: tuple[int, ...] | None = None, receivers: list[Core] | None = None) -> Any:
        """Every DMA ends here, after its checks and copy: the observer hears it and may return a
        handle (the transfer is in flight until `dma_wait`); None: complete."""
        if self.observer is None:
            return None
        return self.observer.on_transfer((core.r, core.c), core.thread, kind, _nbytes(block, self.infos[arg]),
                                         self.locs[loc], arg=arg, idx=idx,
                                         receivers=None if receivers is None else [(r.r, r.c) for r in receivers])

    def dma_wait(self, core: Core, handle: InFlight) -> None:
        handle.done = True
        if handle.observed is not None:
            self.observer.on_dma_wait((core.r, core.c), core.thread, handle.observed)

    def targets(self, core: Core, target: tuple[int, ...], loc: int) -> list[Core]:
        """The cores of a target: () this core, (y, x) one core, (y, x, h, w) a rectangle."""
        if not target:
            return [core]
        y, x = target[0], target[1]
        h, w = (target[2], target[3]) if len(target) == 4 else (1, 1)
        cores = [self.grid.get((r, c)) for r in range(y, y + h) for c in range(x, x + w)]
        if h < 1 or w < 1 or any(c is None for c in cores):
            gr = 1 + max(r for r, _ in self.grid)
            gc = 1 + max(c for _, c in self.grid)
            raise self.error(f"target cores ({y}, {x}) + ({h}, {w}) fall outside the {gr}x{gc} grid", loc)
        return cores  # type: ignore[return-value]

    def dma_mcast(self, core: Core, i: int, src: np.ndarray, target: tuple[int, ...], loc: int) -> InFlight:
        self.check_source(core, src, "multicasts", loc)
        receivers = self.targets(core, target, loc)
        for rc in receivers:
            cb = rc.cbs[i]
            if cb.reserved <= cb.pushed:
                raise self.error(
                    f"race: core ({core.r}, {core.c}) multicasts into CB '{cb.name}' of core ({rc.r}, {rc.c}), "
                    "which has no reserved slot waiting for it",
                    loc,
                    note="the receiver must reserve its slot and signal the sender (e.g. sem.inc(core=sender)) "
                    "before the sender multicasts; the sender waits for that signal",
                )
            dst = cb.slots[cb.pushed % cb.depth]
            if self.copy_data and dst is not src:
                dst[...] = src
        h = InFlight(loc, core.thread, self.transferred(core, "mcast", i, src, loc, receivers=receivers))
        for rc in receivers:  # each receiver's slot is in flight until the sender waits
            rc.landing[id(rc.cbs[i].slots[rc.cbs[i].pushed % rc.cbs[i].depth])] = h
        self.epoch += 1
        return h

    def sem_set(self, core: Core, k: int, value: int, target: tuple[int, ...], loc: int) -> None:
        for c in self.targets(core, target, loc):
            c.sems[k] = value
            if self.observer:
                self.observer.on_sync((core.r, core.c), core.thread, "sem_update", k, (c.r, c.c))
        self.epoch += 1

    def sem_inc(self, core: Core, k: int, value: int, target: tuple[int, ...], loc: int) -> None:
        for c in self.targets(core, target, loc):
            c.sems[k] += value
            if self.observer:
                self.observer.on_sync((core.r, core.c), core.thread, "sem_update", k, (c.r, c.c))
        self.epoch += 1

    def sem_wait(self, core: Core, k: int, value: int, reset: int | None, loc: int) -> Iterator[Wait]:
        while core.sems[k] != value:
            yield Wait("sem_wait", k, self.locs[loc], value)
        if self.observer:
            self.observer.on_sync((core.r, core.c), core.thread, "sem_wait", k, None)
        if reset is not None:
            core.sems[k] = reset
            self.epoch += 1

    def check_finished(self, cores: list[Core]) -> None:
        """After every thread ended: no CB may hold blocks that were pushed but never popped."""
        for core in cores:
            for cb, info in zip(core.cbs, self.infos):
                if cb.pushed > cb.waited:
                    note = ("every pushed block needs a consumer; an implicitly drained output takes exactly the "
                            "blocks of the core's own shard")
                    if not info.get("output", True):
                        note = (f"'{cb.name}' is an input of the kernel (the last num_outs arguments are its "
                                "outputs): if it is an output, pass num_outs= to @pykernel_gen")
                    raise TilegridError(
                        f"core ({core.r}, {core.c}): {cb.pushed - cb.waited} block(s) pushed to CB '{cb.name}' were "
                        f"never popped ({cb.pushed} pushed, {cb.waited} popped); the last push is here",
                        self.locs[cb.last_push] if cb.last_push >= 0 else None,
                        kernel=self.kernel,
                        note=note,
                    )

    # ---- compute --------------------------------------------------------------------------

    def zero_division(self, core: Core, loc: int) -> None:
        raise self.error(f"core ({core.r}, {core.c}) thread '{core.thread}': integer division by zero at run time",
                         loc, note="the divisor of // and % is a run-time value that is 0 on this core")

    def dst_acquire(self, tiles: int, loc: int) -> None:
        if tiles > self.dst_capacity:
            raise self.error(f"Insufficient DST capacity: {tiles} tiles needed, {self.dst_capacity} available", loc)

    def op(self, core: Core, event: int, tiles: int, loc: int) -> None:
        self.observer.on_op((core.r, core.c), core.thread, self.events[event], tiles, self.locs[loc])

    def print(self, core: Core, label: str, value: np.ndarray) -> None:
        print(f"[core ({core.r}, {core.c}) {core.thread}] {label}:\n{np.asarray(value, np.float32)}")


def _nbytes(a: np.ndarray, info: dict) -> int:
    """Bytes a transfer of block `a` moves: whole tiles (a row or column vector's block is padded to
    tiles in L1 and DRAM, as hardware moves them)."""
    rows, cols = a.shape[-2:]
    return (-(-rows // 32) * 32) * (-(-cols // 32) * 32) * (2 if info["dtype"] == "bf16" else 4)
