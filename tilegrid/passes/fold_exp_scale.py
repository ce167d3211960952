"""fold-exp-scale: `exp(x * s)` with a scalar `s` becomes one exp with a scale operand.

The SFPU's exponential takes a scale argument (it multiplies first), and a GPU folds the scale
into its exp2 (`exp2(x * s * log2(e))`): either way the product never needs its own pass over
the block. Applies to every op-table entry marked `scalable` (exp, exp_approx) whose operand is
a `block.mul` of a block and an f32 scalar that nothing else uses. Expects block IR; keeps it
block IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.passes import ModulePass

from tilegrid.ir import block as B
from tilegrid.passes.common import copy_loc


@dataclass(frozen=True)
class FoldExpScale(ModulePass):
    name = "fold-exp-scale"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for o in list(op.walk()):
            if not (isinstance(o, B.ElementwiseOp) and o.OP.scalable and o.scale is None):
                continue
            mul = o.x.owner
            if not (isinstance(mul, B.ElementwiseOp) and mul.OP.name == "mul") or len(list(o.x.uses)) != 1:
                continue
            block = [v for v in mul.operands if isinstance(v.type, B.BlockType)]
            scalar = [v for v in mul.operands if isinstance(v.type, Float32Type)]
            if len(block) != 1 or len(scalar) != 1 or block[0].type != o.x.type:
                continue
            new = copy_loc(o, type(o)(block[0], scale=scalar[0]))
            o.parent_block().insert_op_before(new, o)
            o.results[0].replace_all_uses_with(new.results[0])
            o.detach()
            o.erase()
            mul.detach()
            mul.erase()
