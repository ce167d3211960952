"""Observers of a simulation: the seam the performance model plugs into."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def op_kind(op: Any) -> str:
    """What a reported tile op is: "matmul", "compute", "reduce" or "transpose" (`tile.matmul` ...)."""
    return op.name.partition(".")[2]


def tee(*observers: Any) -> Any:
    """The observers as one (`Tee`), or the only one itself (no forwarding on the hot path)."""
    present = [o for o in observers if o is not None]
    return present[0] if len(present) == 1 else Tee(*present)


class Tee:
    """Several observers as one: each hears every event; a transfer's handle is the first one returned
    (one timing model per run), and only observers that returned handles hear about the waits."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def on_op(self, *a: Any) -> None:
        for o in self.observers:
            o.on_op(*a)

    def on_sync(self, *a: Any) -> None:
        for o in self.observers:
            o.on_sync(*a)

    def on_transfer(self, *a: Any, **kw: Any) -> Any:
        handle = None
        for o in self.observers:
            h = o.on_transfer(*a, **kw)
            if h is not None and handle is None:
                handle = (o, h)
        return handle

    def on_dma_wait(self, core: tuple[int, int], thread: str, handle: Any) -> None:
        owner, h = handle
        owner.on_dma_wait(core, thread, h)


@dataclass
class Counts:
    """Totals over a run: tile operations by op, bytes moved by kind of transfer."""

    tile_ops: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)

    def on_op(self, core: tuple[int, int], thread: str, op: Any, tiles: int, loc: str) -> None:
        self.tile_ops[op_kind(op)] += tiles

    def on_transfer(self, core: tuple[int, int], thread: str, kind: str, nbytes: int, loc: str, **detail: Any) -> None:
        self.bytes[kind] += nbytes

    def on_sync(self, core: tuple[int, int], thread: str, event: str, obj: int, where) -> None:
        pass

    @property
    def total_tile_ops(self) -> int:
        return sum(self.tile_ops.values())

    @property
    def dram_bytes(self) -> int:
        return self.bytes["dram_read"] + self.bytes["dram_write"]
