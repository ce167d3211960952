"""fuse-accumulate: `acc + a @ b` and `acc + rowsum(x)` accumulate onto `acc` in DST.

A matmul or a sum reduction adds its partial results up in DST; starting that sum from `acc`
(reloaded into DST) instead of zero makes the addition free and needs no buffer for the product
(FlashAttention's `correction * O + P @ V`, the matmul's `acc + A @ B`, `rowsum(P, c * l)`).
The add becomes the producer with an `acc` operand, placed where the add was. Only when the
product has no other use, `acc` has the product's shape (not a broadcast), both are in one block,
and no CB slot is released between producer and add (the producer moves down to the add and must
still read live slots). Expects block IR after infer-shapes; keeps it block IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass

from tilegrid.ir import block as B
from tilegrid.passes.common import copy_loc, releases_between


def _accumulates(p: Operation) -> bool:
    if isinstance(p, B.MatmulOp):
        return p.acc is None
    return isinstance(p, B.ReduceOp) and p.kind.data == "sum" and p.acc is None


@dataclass(frozen=True)
class FuseAccumulate(ModulePass):
    name = "fuse-accumulate"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for add in list(op.walk()):
            if not (isinstance(add, B.ElementwiseOp) and add.OP.name == "add"):
                continue
            for prod, acc in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
                p = prod.owner
                if not (_accumulates(p) and isinstance(acc.type, B.BlockType)) or prod is acc:
                    continue
                if len(list(prod.uses)) != 1 or acc.type.dims != prod.type.dims or isinstance(acc.owner, B.BroadcastOp):
                    continue
                if p.parent_block() is not add.parent_block() or releases_between(p, add):
                    continue
                if isinstance(p, B.MatmulOp):
                    new = B.MatmulOp(p.lhs, p.rhs, acc)
                else:
                    new = B.ReduceOp(p.kind.data, p.dim.data, p.x, acc)
                if new.results[0].type != add.results[0].type:
                    continue
                add.parent_block().insert_op_before(copy_loc(p, new), add)
                add.results[0].replace_all_uses_with(new.results[0])
                add.detach()
                add.erase()
                p.detach()
                p.erase()
                break
