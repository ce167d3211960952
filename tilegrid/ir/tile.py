"""The `tile` dialect: tile-level compute on the DST register file, with explicit buffers.

After lowering, every block value lives in a CB slot or a `tilegrid.alloc` buffer, and
math is one of:
  - `tile.compute`: a fused elementwise body over DST tiles, run subblock by subblock
    (each subblock: unpack inputs to DST, SFPU/FPU ops in DST, pack outputs); its math ops
    are generated from the op table (tilegrid/ops.py): `tile.exp`, `tile.add`, ...;
  - `tile.matmul`, `tile.reduce`, `tile.transpose`: FPU ops that accumulate in DST.
`subblock = [h, w]` (tiles) and each body op's `dst` slot are set by allocate-dst; the
DST tiles a subblock occupies never exceed the DST capacity of the program's mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from xdsl.dialects.builtin import ArrayAttr, Float32Type, FloatAttr, IntAttr, StringAttr, f32
from xdsl.ir import Dialect, Operation, ParametrizedAttribute, Region, SSAValue, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import NoTerminator
from xdsl.utils.exceptions import VerifyException

from tilegrid.ir.block import define_elementwise, param_attrs, param_value
from tilegrid.ir.core import BlockType
from tilegrid.ops import OPS as TABLE
from tilegrid.ops import OpDef


@irdl_attr_definition
class DstType(ParametrizedAttribute, TypeAttribute):
    """A subblock of tiles held in DST registers (fp32 in fp32-accumulation mode)."""

    name = "tile.dst"


def subblock_attr(h: int, w: int) -> ArrayAttr:
    return ArrayAttr([IntAttr(h), IntAttr(w)])


class _Subblocked(IRDLOperation):
    subblock = opt_prop_def(ArrayAttr[IntAttr])

    def verify_subblock(self, out: SSAValue) -> None:
        """A subblock must tile the output block exactly."""
        sb = self.subblock_shape
        if sb is None:
            return
        tr, tc = out.type.tiles
        if sb[0] < 1 or sb[1] < 1 or tr % sb[0] or tc % sb[1]:
            raise VerifyException(f"{self.name}: subblock {sb[0]}x{sb[1]} does not tile a {tr}x{tc}-tile block")

    @property
    def subblock_shape(self) -> tuple[int, int] | None:
        if self.subblock is None:
            return None
        h, w = (d.data for d in self.subblock.data)
        return h, w


@irdl_op_definition
class ComputeOp(_Subblocked):
    """Elementwise body over the iteration shape of `outs`, one DST subblock at a time.

    `ins` are read with `tile.load` (row/column inputs broadcast), `scalars` are f32 values the
    body reads as its block arguments, `outs` are written by `tile.pack` (rounded to their format).
    """

    name = "tile.compute"
    ins = var_operand_def(BlockType)
    scalars = var_operand_def(Float32Type)
    outs = var_operand_def(BlockType)
    body = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(NoTerminator())

    def __init__(self, ins: Sequence[SSAValue], scalars: Sequence[SSAValue], outs: Sequence[SSAValue], body: Region) -> None:
        super().__init__(operands=[ins, scalars, outs], regions=[body])

    def verify_(self) -> None:
        shapes = {o.type.dims for o in self.outs}
        if len(shapes) != 1:
            raise VerifyException(f"tile.compute outputs must share one shape, got {sorted(shapes)}")
        args = self.body.block.args
        if len(args) != len(self.scalars) or any(not isinstance(a.type, Float32Type) for a in args):
            raise VerifyException(f"tile.compute: the body takes one f32 argument per scalar ({len(self.scalars)}), "
                                  f"got {len(args)}")
        self.verify_subblock(self.outs[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.outs[0].type.dims


class _DstOp(IRDLOperation):
    dst = opt_prop_def(IntAttr)


@irdl_op_definition
class LoadOp(_DstOp):
    """Unpack input `input` of the enclosing compute into DST (`bcast`: none, row, col, scalar)."""

    name = "tile.load"
    input = prop_def(IntAttr)
    bcast = prop_def(StringAttr)
    result = result_def(DstType)

    def __init__(self, input: int, bcast: str = "none") -> None:
        super().__init__(properties={"input": IntAttr(input), "bcast": StringAttr(bcast)}, result_types=[DstType()])


@irdl_op_definition
class FillOp(_DstOp):
    """Fill DST tiles with a constant."""

    name = "tile.fill"
    value = prop_def(FloatAttr)
    result = result_def(DstType)

    def __init__(self, value: float) -> None:
        super().__init__(properties={"value": FloatAttr(value, f32)}, result_types=[DstType()])


@irdl_op_definition
class IotaOp(_DstOp):
    """Fill DST tiles with each element's row (`dim = 0`) or column index in the block."""

    name = "tile.iota"
    dim = prop_def(IntAttr)
    result = result_def(DstType)

    def __init__(self, dim: int) -> None:
        super().__init__(properties={"dim": IntAttr(dim)}, result_types=[DstType()])


class _TileElementwise(_DstOp):
    """An op-table entry on DST tiles (`tile.exp`, `tile.add`, ...); a binary op's operand may be
    one of the compute's f32 scalars (a block argument of its body)."""

    OP: ClassVar[OpDef]

    def params(self) -> dict[str, Any]:
        return {p.name: param_value(self, p) for p in self.OP.params}

    def verify_(self) -> None:
        for p in self.OP.params:
            param_value(self, p)


class _Unary(_TileElementwise):
    x = operand_def(DstType)
    result = result_def(DstType)

    def __init__(self, x: SSAValue, **params: Any) -> None:
        super().__init__(operands=[x], properties=param_attrs(self.OP, params), result_types=[DstType()])


class _ScaledUnary(_TileElementwise):
    """`op(x * scale)` in one SFPU op, `scale` one of the compute's scalars (the exp's scale argument)."""

    x = operand_def(DstType)
    scale = opt_operand_def(Float32Type)
    result = result_def(DstType)

    def __init__(self, x: SSAValue, scale: SSAValue | None = None) -> None:
        super().__init__(operands=[x, [scale] if scale is not None else []], result_types=[DstType()])


class _Binary(_TileElementwise):
    lhs = operand_def(DstType | Float32Type)
    rhs = operand_def(DstType | Float32Type)
    result = result_def(DstType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue) -> None:
        super().__init__(operands=[lhs, rhs], result_types=[DstType()])


class _Ternary(_TileElementwise):
    cond = operand_def(DstType)
    a = operand_def(DstType)
    b = operand_def(DstType)
    result = result_def(DstType)

    def __init__(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> None:
        super().__init__(operands=[cond, a, b], result_types=[DstType()])


OPS: dict[str, type[_TileElementwise]] = {
    d.name: define_elementwise(d, "tile", {1: _Unary, 2: _Binary, 3: _Ternary, "scaled": _ScaledUnary,
                                           "module": __name__})
    for d in TABLE.values()
}
ELEMENTWISE = _TileElementwise


@irdl_op_definition
class PackOp(IRDLOperation):
    """Pack DST tiles into output `output` of the enclosing compute, rounding to its format."""

    name = "tile.pack"
    output = prop_def(IntAttr)
    x = operand_def(DstType)

    def __init__(self, x: SSAValue, output: int) -> None:
        super().__init__(operands=[x], properties={"output": IntAttr(output)})


@irdl_op_definition
class MatmulOp(_Subblocked):
    """`out = a @ b` (+ `acc` when given): per output subblock, accumulate over K tiles in DST.

    With `transpose_b`, `b` is stored [N, K] and each of its tiles is transposed as it is
    unpacked (the matmul's own transpose), so `a @ k.transpose()` needs no transposed copy."""

    name = "tile.matmul"
    a = operand_def(BlockType)
    b = operand_def(BlockType)
    acc = opt_operand_def(BlockType)
    out = operand_def(BlockType)
    transpose_b = opt_prop_def(IntAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, a: SSAValue, b: SSAValue, out: SSAValue, acc: SSAValue | None = None,
                 transpose_b: bool = False) -> None:
        props = {"transpose_b": IntAttr(1)} if transpose_b else {}
        super().__init__(operands=[a, b, [acc] if acc is not None else [], out], properties=props)

    def verify_(self) -> None:
        self.verify_subblock(self.out)

    @property
    def b_transposed(self) -> bool:
        return self.transpose_b is not None and bool(self.transpose_b.data)


@irdl_op_definition
class ReduceOp(_Subblocked):
    """Row (`dim = 1`) or column (`dim = 0`) max / sum of `x` into `out`, accumulating in DST,
    starting from `acc` when given (reloaded into DST first)."""

    name = "tile.reduce"
    kind = prop_def(StringAttr)
    dim = prop_def(IntAttr)
    x = operand_def(BlockType)
    acc = opt_operand_def(BlockType)
    out = operand_def(BlockType)

    def __init__(self, kind: str, dim: int, x: SSAValue, out: SSAValue, acc: SSAValue | None = None) -> None:
        super().__init__(operands=[x, [acc] if acc is not None else [], out],
                         properties={"kind": StringAttr(kind), "dim": IntAttr(dim)})

    def verify_(self) -> None:
        self.verify_subblock(self.out)


@irdl_op_definition
class TransposeOp(_Subblocked):
    """`out = x^T`: tile (i, j) of x, transposed, becomes tile (j, i) of out."""

    name = "tile.transpose"
    x = operand_def(BlockType)
    out = operand_def(BlockType)

    def __init__(self, x: SSAValue, out: SSAValue) -> None:
        super().__init__(operands=[x, out])

    def verify_(self) -> None:
        self.verify_subblock(self.out)


def op_tiles(op: Operation) -> int:
    """The tile operations a tile op performs, as the simulator reports them to observers (and the
    timing model costs them): a matmul's M*K*N tile products, a compute op's output tiles, a reduce's
    or transpose's input tiles."""
    if isinstance(op, MatmulOp):
        (m, k), n = op.a.type.tiles, op.out.type.tiles[1]
        return m * k * n
    r, c = (op.outs[0] if isinstance(op, ComputeOp) else op.x).type.tiles
    return r * c


TILE = Dialect(
    "tile",
    [ComputeOp, LoadOp, FillOp, IotaOp, *OPS.values(), PackOp, MatmulOp, ReduceOp, TransposeOp],
    [DstType],
)
