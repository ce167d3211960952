"""allocate-dst: give every DST value a register slot and split each tile op into subblocks.

DST holds `capacity` tiles (16 physical 16-bit tiles, halved when double-buffered, halved
again in fp32 accumulation mode). A `tile.compute` whose body needs `n` slots per tile runs
over subblocks of h x w tiles with n*h*w <= capacity; `tile.matmul` accumulates an h x w
output subblock in DST (h*w <= capacity); `tile.reduce` keeps one accumulator tile per
output tile of its subblock; `tile.transpose` moves h x w tiles through DST at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntAttr, ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from tilegrid.ir import tile as T
from tilegrid.passes.common import op_error, program_of


def assign_slots(compute: T.ComputeOp) -> int:
    """Linear-scan slot assignment over the body; returns the slots needed per tile."""
    ops = list(compute.body.block.ops)
    last: dict[SSAValue, int] = {}
    for k, o in enumerate(ops):
        for v in o.operands:
            last[v] = k
    free: list[int] = []
    slot: dict[SSAValue, int] = {}
    n = 0
    for k, o in enumerate(ops):
        for v in o.operands:
            if last.get(v) == k and v in slot:
                free.append(slot[v])
        if o.results:
            r = o.results[0]
            if free:
                free.sort()
                s = free.pop(0)
            else:
                s, n = n, n + 1
            slot[r] = s
            o.properties["dst"] = IntAttr(s)
            if r not in last:
                free.append(s)
    return max(n, 1)


def best_subblock(tiles: tuple[int, int], per_tile: int, capacity: int) -> tuple[int, int] | None:
    """The largest h x w (dividing the block's tiles) with per_tile*h*w <= capacity; wide first."""
    best = None
    for h in range(1, tiles[0] + 1):
        if tiles[0] % h:
            continue
        for w in range(1, tiles[1] + 1):
            if tiles[1] % w or per_tile * h * w > capacity:
                continue
            if best is None or (h * w, w) > (best[0] * best[1], best[1]):
                best = (h, w)
    return best


@dataclass(frozen=True)
class AllocateDst(ModulePass):
    name = "allocate-dst"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        capacity = program_of(op).dst_capacity.data
        for o in op.walk():
            if isinstance(o, T.ComputeOp):
                self.place(o, o.outs[0].type.tiles, assign_slots(o), capacity)
            elif isinstance(o, T.MatmulOp | T.TransposeOp):
                self.place(o, o.out.type.tiles, 1, capacity)
            elif isinstance(o, T.ReduceOp):
                tiles = o.out.type.tiles
                self.place(o, tiles, 1, capacity)

    @staticmethod
    def place(o: Operation, tiles: tuple[int, int], per_tile: int, capacity: int) -> None:
        sb = best_subblock(tiles, per_tile, capacity)
        if sb is None:
            raise op_error(
                o,
                f"Insufficient DST capacity: {o.name} needs {per_tile} DST tiles per output tile, "
                f"the DST holds {capacity}",
                note="split the expression into smaller statements",
            )
        o.properties["subblock"] = T.subblock_attr(*sb)
