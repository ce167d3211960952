"""Observers of a simulation: the seam the performance model plugs into."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counts:
    """Totals over a run: tile operations by op, bytes moved by kind of transfer."""

    tile_ops: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)

    def on_op(self, core: tuple[int, int], thread: str, op: str, tiles: int, loc: str) -> None:
        self.tile_ops[op] += tiles

    def on_transfer(self, core: tuple[int, int], thread: str, kind: str, nbytes: int, loc: str) -> None:
        self.bytes[kind.split(":")[0]] += nbytes

    def on_sync(self, core: tuple[int, int], thread: str, event: str, obj: int, where) -> None:
        pass

    @property
    def total_tile_ops(self) -> int:
        return sum(self.tile_ops.values())

    @property
    def dram_bytes(self) -> int:
        return self.bytes["dram_read"] + self.bytes["dram_write"]
