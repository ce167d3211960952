"""The `block` dialect: value-semantics math on whole blocks, as the user wrote it.

Shapes are in elements; a block op's result type is inferred from its operands by
`infer_type`, which the frontend and the `infer-shapes` pass share.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import Float32Type, FloatAttr, IntAttr, StringAttr, f32
from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from tilegrid.ir.core import BlockType

UNARY_KINDS = ("exp", "exp_approx", "recip", "neg", "sqrt", "rsqrt", "abs", "log", "relu", "sigmoid", "tanh", "copy")
BINARY_KINDS = ("add", "sub", "mul", "div", "max", "min", "ge", "gt", "le", "lt", "eq", "ne", "mod")
REDUCE_KINDS = ("max", "sum")


def broadcast_shape(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """NumPy broadcasting restricted to blocks: a dimension of 1 stretches."""
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return out[0], out[1]


class _BlockOp(IRDLOperation):
    """A block op with one result; `infer_type` recomputes it from operands."""

    traits = traits_def(Pure())

    def infer_type(self) -> BlockType:  # pragma: no cover - overridden
        raise NotImplementedError

    def verify_(self) -> None:
        want = self.infer_type()
        got = self.results[0].type
        if got != want:
            raise VerifyException(f"{self.name}: result type {got} does not match inferred {want}")


@irdl_op_definition
class UnaryOp(_BlockOp):
    """Elementwise `kind(x)` (exp, recip, ...): `%y = block.unary %x {kind = "exp"}`."""

    name = "block.unary"
    kind = prop_def(StringAttr)
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, kind: str, x: SSAValue, result_type: BlockType | None = None) -> None:
        """`result_type`: another element type (a `copy` converts)."""
        super().__init__(operands=[x], properties={"kind": StringAttr(kind)}, result_types=[result_type or x.type])

    def infer_type(self) -> BlockType:
        if self.kind.data not in UNARY_KINDS:
            raise VerifyException(f"unknown unary kind {self.kind.data}")
        if self.kind.data == "copy":
            return BlockType(self.x.type.dims, self.result.type.dtype)
        return self.x.type


@irdl_op_definition
class BinaryOp(_BlockOp):
    """Elementwise `lhs kind rhs`; operands of equal shape (broadcasts are explicit)."""

    name = "block.binary"
    kind = prop_def(StringAttr)
    lhs = operand_def(BlockType)
    rhs = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, kind: str, lhs: SSAValue, rhs: SSAValue, result_type: BlockType | None = None) -> None:
        super().__init__(
            operands=[lhs, rhs],
            properties={"kind": StringAttr(kind)},
            result_types=[result_type or binary_result(lhs.type, rhs.type)],
        )

    def infer_type(self) -> BlockType:
        if self.kind.data not in BINARY_KINDS:
            raise VerifyException(f"unknown binary kind {self.kind.data}")
        t = binary_result(self.lhs.type, self.rhs.type)
        if t is None:
            raise VerifyException(f"block.binary: shapes {self.lhs.type} and {self.rhs.type} do not broadcast")
        return t


def binary_result(a: BlockType, b: BlockType) -> BlockType | None:
    shape = broadcast_shape(a.dims, b.dims)
    if shape is None:
        return None
    dtype = "f32" if "f32" in (a.dtype, b.dtype) else "bf16"
    return BlockType(shape, dtype)


@irdl_op_definition
class ScalarOp(_BlockOp):
    """`x kind s` with a scalar `s` (f32); `reverse` computes `s kind x`."""

    name = "block.scalar"
    kind = prop_def(StringAttr)
    reverse = prop_def(IntAttr)
    x = operand_def(BlockType)
    scalar = operand_def(Float32Type)
    result = result_def(BlockType)

    def __init__(self, kind: str, x: SSAValue, scalar: SSAValue, reverse: bool = False) -> None:
        super().__init__(
            operands=[x, scalar],
            properties={"kind": StringAttr(kind), "reverse": IntAttr(int(reverse))},
            result_types=[x.type],
        )

    def infer_type(self) -> BlockType:
        if self.kind.data not in BINARY_KINDS:
            raise VerifyException(f"unknown scalar kind {self.kind.data}")
        return self.x.type


@irdl_op_definition
class BroadcastOp(_BlockOp):
    """Stretch a row (`[1,N]`) or column (`[M,1]`) block to `shape` (inserted by infer-shapes)."""

    name = "block.broadcast"
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, x: SSAValue, t: BlockType) -> None:
        super().__init__(operands=[x], result_types=[t])

    def infer_type(self) -> BlockType:
        t = self.results[0].type
        if broadcast_shape(self.x.type.dims, t.dims) != t.dims:
            raise VerifyException(f"cannot broadcast {self.x.type} to {t}")
        return t


@irdl_op_definition
class FillOp(_BlockOp):
    """A block whose every element is `value` (may be -inf / inf / nan)."""

    name = "block.fill"
    value = prop_def(FloatAttr)
    result = result_def(BlockType)

    def __init__(self, value: float, t: BlockType) -> None:
        super().__init__(properties={"value": FloatAttr(value, f32)}, result_types=[t])

    def infer_type(self) -> BlockType:
        return self.results[0].type


@irdl_op_definition
class IotaOp(_BlockOp):
    """Each element's row (`dim = 0`) or column (`dim = 1`) index within the block, as a float."""

    name = "block.iota"
    dim = prop_def(IntAttr)
    result = result_def(BlockType)

    def __init__(self, dim: int, t: BlockType) -> None:
        super().__init__(properties={"dim": IntAttr(dim)}, result_types=[t])

    def infer_type(self) -> BlockType:
        return self.results[0].type


@irdl_op_definition
class WhereOp(_BlockOp):
    """`cond != 0 ? a : b`, elementwise; operands of equal shape."""

    name = "block.where"
    cond = operand_def(BlockType)
    a = operand_def(BlockType)
    b = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, cond: SSAValue, a: SSAValue, b: SSAValue, t: BlockType) -> None:
        super().__init__(operands=[cond, a, b], result_types=[t])

    def infer_type(self) -> BlockType:
        t = self.results[0].type
        for v in (self.cond, self.a, self.b):
            if broadcast_shape(v.type.dims, t.dims) != t.dims:
                raise VerifyException(f"block.where: operand {v.type} does not broadcast to {t}")
        return t


@irdl_op_definition
class ReduceOp(_BlockOp):
    """Reduce along `dim` (1: across a row, giving `[M,1]`; 0: down a column, giving `[1,N]`)."""

    name = "block.reduce"
    kind = prop_def(StringAttr)
    dim = prop_def(IntAttr)
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, kind: str, dim: int, x: SSAValue) -> None:
        super().__init__(
            operands=[x],
            properties={"kind": StringAttr(kind), "dim": IntAttr(dim)},
            result_types=[reduce_result(kind, x.type, dim)],
        )

    def infer_type(self) -> BlockType:
        if self.kind.data not in REDUCE_KINDS:
            raise VerifyException(f"unknown reduce kind {self.kind.data}")
        return reduce_result(self.kind.data, self.x.type, self.dim.data)


def reduce_result(kind: str, t: BlockType, dim: int) -> BlockType:
    """A max keeps its input's format; a sum accumulates in DST at fp32 and is returned in f32
    (rounding a sum of bf16 values to bf16 would throw away what the accumulation kept)."""
    r, c = t.dims
    return BlockType((r, 1) if dim == 1 else (1, c), "f32" if kind == "sum" else t.dtype)


@irdl_op_definition
class MatmulOp(_BlockOp):
    """`[M,K] @ [K,N] -> [M,N]`, accumulated in DST at fp32."""

    name = "block.matmul"
    lhs = operand_def(BlockType)
    rhs = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue) -> None:
        super().__init__(operands=[lhs, rhs], result_types=[matmul_result(lhs.type, rhs.type)])

    def infer_type(self) -> BlockType:
        t = matmul_result(self.lhs.type, self.rhs.type)
        if t is None:
            raise VerifyException(f"block.matmul: inner dimensions of {self.lhs.type} and {self.rhs.type} differ")
        return t


def matmul_result(a: BlockType, b: BlockType) -> BlockType | None:
    (m, k), (k2, n) = a.dims, b.dims
    if k != k2:
        return None
    dtype = "f32" if "f32" in (a.dtype, b.dtype) else "bf16"
    return BlockType((m, n), dtype)


@irdl_op_definition
class TransposeOp(_BlockOp):
    """`[M,N] -> [N,M]`: tile positions swap and each tile transposes."""

    name = "block.transpose"
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, x: SSAValue) -> None:
        r, c = x.type.dims
        super().__init__(operands=[x], result_types=[BlockType((c, r), x.type.dtype)])

    def infer_type(self) -> BlockType:
        r, c = self.x.type.dims
        return BlockType((c, r), self.x.type.dtype)


@irdl_op_definition
class StoreOp(IRDLOperation):
    """Write `value` into the reserved slot `dst`, rounding to the slot's data format
    (a `[M,1]` column or `[1,N]` row value is broadcast over the slot)."""

    name = "block.store"
    dst = operand_def(BlockType)
    value = operand_def(BlockType)

    def __init__(self, dst: SSAValue, value: SSAValue) -> None:
        super().__init__(operands=[dst, value])

    def verify_(self) -> None:
        if broadcast_shape(self.value.type.dims, self.dst.type.dims) != self.dst.type.dims:
            raise VerifyException(f"block.store: storing {self.value.type} into a slot of {self.dst.type}")


@irdl_op_definition
class FusedOp(IRDLOperation):
    """A group of elementwise block ops over one iteration shape (made by fuse-elementwise).

    The region's block arguments are the group's inputs (blocks, then f32 scalars);
    `block.yield` names the values used outside the group.
    """

    name = "block.fused"
    inputs = var_operand_def()
    outputs = var_result_def(BlockType)
    body = region_def("single_block")

    def __init__(self, inputs: Sequence[SSAValue], output_types: Sequence[Attribute], body: Region) -> None:
        super().__init__(operands=[inputs], result_types=[output_types], regions=[body])


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminates a `block.fused` region."""

    name = "block.yield"
    values = var_operand_def(BlockType)
    traits = traits_def(IsTerminator())

    def __init__(self, values: Sequence[SSAValue]) -> None:
        super().__init__(operands=[values])


ELEMENTWISE = (UnaryOp, BinaryOp, ScalarOp, BroadcastOp, FillOp, IotaOp, WhereOp)

BLOCK = Dialect(
    "block",
    [UnaryOp, BinaryOp, ScalarOp, BroadcastOp, FillOp, IotaOp, WhereOp, ReduceOp, MatmulOp, TransposeOp, StoreOp, FusedOp, YieldOp],
    [],
)
