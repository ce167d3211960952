"""infer-shapes: check every block op's type against its operands and make broadcasts explicit.

Expects block IR from the frontend (types already inferred there, with the same rules).
Guarantees: every elementwise op with more than one operand (`block.add`, `block.where`, ...) has
block operands of its result shape, a `[M,1]` column or `[1,N]` row operand being widened by a
`block.broadcast`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from tilegrid.ir import block as B
from tilegrid.ops import broadcast_shape
from tilegrid.passes.common import copy_loc, op_error


@dataclass(frozen=True)
class InferShapes(ModulePass):
    name = "infer-shapes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for o in list(op.walk()):
            if isinstance(o, B.ElementwiseOp) and o.OP.arity > 1:
                want = o.results[0].type.dims
                blocks = [v for v in o.operands if isinstance(v.type, B.BlockType)]
                if any(broadcast_shape(v.type.dims, want) != want for v in blocks):
                    shapes = " and ".join(str(v.type) for v in blocks)
                    raise op_error(o, f"{o.name}: shapes {shapes} do not broadcast")
                for i, v in enumerate(o.operands):
                    if isinstance(v.type, B.BlockType) and v.type.dims != want:
                        b = copy_loc(o, B.BroadcastOp(v, B.BlockType(want, v.type.dtype)))
                        o.parent_block().insert_op_before(b, o)
                        o.operands[i] = b.results[0]
            if isinstance(o, B._BlockOp):
                try:
                    o.verify_()
                except VerifyException as e:
                    raise op_error(o, str(e)) from e
