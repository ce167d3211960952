"""The `block` dialect: value-semantics math on whole blocks, as the user wrote it.

Shapes are in elements; a block op's result type is inferred from its operands by
`infer_type`, which the frontend and the `infer-shapes` pass share. The elementwise math ops are
generated from the op table (tilegrid/ops.py), one class per entry (`block.exp`, `block.add`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from xdsl.dialects.builtin import Float32Type, FloatAttr, IntAttr, StringAttr, f32
from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
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
from tilegrid.ops import OPS as TABLE
from tilegrid.ops import OpDef, Param, broadcast_shape, promote

REDUCE_KINDS = ("max", "sum")


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


def elementwise_type(blocks: Sequence[BlockType], name: str) -> BlockType:
    """The result of an elementwise op over `blocks`: their broadcast shape, the wider format."""
    shape = blocks[0].dims
    for b in blocks[1:]:
        s = broadcast_shape(shape, b.dims)
        if s is None:
            raise VerifyException(f"{name}: shapes {' and '.join(str(x) for x in blocks)} do not broadcast")
        shape = s
    return BlockType(shape, promote(*(b.dtype for b in blocks)))


class ElementwiseOp(_BlockOp):
    """An op of the op table (tilegrid/ops.py), one class per entry: `block.exp`, `block.add`, ...

    Operands are blocks (a binary op's may be f32 scalars: `x * 2.0`); the result has the block
    operands' broadcast shape and the wider format. Compile-time parameters are properties."""

    OP: ClassVar[OpDef]

    @property
    def blocks(self) -> list[SSAValue]:
        return [v for v in self.operands[: self.OP.arity] if isinstance(v.type, BlockType)]

    def params(self) -> dict[str, Any]:
        return {p.name: param_value(self, p) for p in self.OP.params}

    def infer_type(self) -> BlockType:
        blocks = [v.type for v in self.blocks]
        if not blocks:
            raise VerifyException(f"{self.name}: at least one operand must be a block")
        if self.OP.name == "where":
            t = elementwise_type(blocks, self.name)
            return BlockType(t.dims, promote(*(v.type.dtype for v in self.operands[1:])))
        return elementwise_type(blocks, self.name)

    def verify_(self) -> None:
        for p in self.OP.params:
            param_value(self, p)
        super().verify_()


def param_value(op: IRDLOperation, p: Param) -> Any:
    a = op.properties.get(p.name)
    if p.kind is int and isinstance(a, IntAttr):
        return a.data
    if p.kind is float and isinstance(a, FloatAttr):
        return a.value.data
    raise VerifyException(f"{op.name}: parameter '{p.name}' must be a{'n int' if p.kind is int else ' float'}, got {a}")


def param_attrs(d: OpDef, values: dict[str, Any]) -> dict[str, Attribute]:
    """The properties holding an op's compile-time parameters."""
    out: dict[str, Attribute] = {}
    for p in d.params:
        if p.name not in values:
            raise ValueError(f"op {d.name} needs parameter '{p.name}'")
        out[p.name] = IntAttr(int(values[p.name])) if p.kind is int else FloatAttr(float(values[p.name]), f32)
    return out


class _Unary(ElementwiseOp):
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, x: SSAValue, **params: Any) -> None:
        super().__init__(operands=[x], properties=param_attrs(self.OP, params), result_types=[x.type])


class _ScaledUnary(ElementwiseOp):
    """`op(x * scale)` in one SFPU op (the exp's scale argument); `scale` is an optional f32."""

    x = operand_def(BlockType)
    scale = opt_operand_def(Float32Type)
    result = result_def(BlockType)

    def __init__(self, x: SSAValue, scale: SSAValue | None = None) -> None:
        super().__init__(operands=[x, [scale] if scale is not None else []], result_types=[x.type])


class _Binary(ElementwiseOp):
    lhs = operand_def(BlockType | Float32Type)
    rhs = operand_def(BlockType | Float32Type)
    result = result_def(BlockType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: BlockType | None = None) -> None:
        blocks = [v.type for v in (lhs, rhs) if isinstance(v.type, BlockType)]
        super().__init__(operands=[lhs, rhs], result_types=[result_type or elementwise_type(blocks, self.name)])


class _Ternary(ElementwiseOp):
    cond = operand_def(BlockType)
    a = operand_def(BlockType)
    b = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, cond: SSAValue, a: SSAValue, b: SSAValue, result_type: BlockType | None = None) -> None:
        super().__init__(operands=[cond, a, b], result_types=[result_type])


def define_elementwise(d: OpDef, dialect: str, bases: dict[Any, type]) -> type[IRDLOperation]:
    """The IR op class of an op-table entry (`block.exp`, `tile.exp`, ...)."""
    ns: dict[str, Any] = {
        "name": f"{dialect}.{d.name}",
        "OP": d,
        "__annotations__": {"OP": "ClassVar[OpDef]"},
        "__doc__": f"{d.doc}. (Generated from the op table entry '{d.name}', tilegrid/ops.py.)",
        "__module__": bases["module"],
    }
    for p in d.params:
        ns[p.name] = prop_def(IntAttr if p.kind is int else FloatAttr)
    base = bases["scaled"] if d.scalable else bases[d.arity]
    camel = "".join(w.capitalize() for w in d.name.split("_"))
    return irdl_op_definition(type(f"{camel}Op", (base,), ns))


OPS: dict[str, type[ElementwiseOp]] = {
    d.name: define_elementwise(d, "block", {1: _Unary, 2: _Binary, 3: _Ternary, "scaled": _ScaledUnary,
                                            "module": __name__})
    for d in TABLE.values()
}


def op(name: str) -> type[ElementwiseOp]:
    """The block op class of an op-table entry."""
    return OPS[name]


@irdl_op_definition
class CopyOp(_BlockOp):
    """A value copy of a block, converted to the result's format (`x.astype("bf16")`; a CB block
    carried past its release). A conversion is packed, i.e. rounded, before anything reads it."""

    name = "block.copy"
    x = operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, x: SSAValue, result_type: BlockType | None = None) -> None:
        super().__init__(operands=[x], result_types=[result_type or x.type])

    def infer_type(self) -> BlockType:
        return BlockType(self.x.type.dims, self.result.type.dtype)


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
class ReduceOp(_BlockOp):
    """Reduce along `dim` (1: across a row, giving `[M,1]`; 0: down a column, giving `[1,N]`), kind
    `max` or `sum`, folded with `acc` when given (`max(acc, .)`, `acc + .`: accumulated in DST)."""

    name = "block.reduce"
    kind = prop_def(StringAttr)
    dim = prop_def(IntAttr)
    x = operand_def(BlockType)
    acc = opt_operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, kind: str, dim: int, x: SSAValue, acc: SSAValue | None = None) -> None:
        t = reduce_result(kind, x.type, dim)
        if acc is not None:
            t = BlockType(t.dims, promote(t.dtype, acc.type.dtype))
        super().__init__(
            operands=[x, [acc] if acc is not None else []],
            properties={"kind": StringAttr(kind), "dim": IntAttr(dim)},
            result_types=[t],
        )

    def infer_type(self) -> BlockType:
        if self.kind.data not in REDUCE_KINDS:
            raise VerifyException(f"block.reduce: kind must be one of {REDUCE_KINDS}, got {self.kind.data!r}")
        t = reduce_result(self.kind.data, self.x.type, self.dim.data)
        if self.acc is None:
            return t
        if self.acc.type.dims != t.dims:
            raise VerifyException(f"block.reduce: accumulator {self.acc.type} does not match the reduction {t}")
        return BlockType(t.dims, promote(t.dtype, self.acc.type.dtype))


def reduce_result(kind: str, t: BlockType, dim: int) -> BlockType:
    """A max keeps its input's format; a sum accumulates in DST at fp32 and is returned in f32
    (rounding a sum of bf16 values to bf16 would throw away what the accumulation kept)."""
    r, c = t.dims
    return BlockType((r, 1) if dim == 1 else (1, c), "f32" if kind == "sum" else t.dtype)


@irdl_op_definition
class MatmulOp(_BlockOp):
    """`[M,K] @ [K,N] -> [M,N]`, accumulated in DST at fp32, plus `acc` when given (`acc + a @ b`
    as one op: the partial sums start from `acc` in DST)."""

    name = "block.matmul"
    lhs = operand_def(BlockType)
    rhs = operand_def(BlockType)
    acc = opt_operand_def(BlockType)
    result = result_def(BlockType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue, acc: SSAValue | None = None) -> None:
        t = matmul_result(lhs.type, rhs.type)
        if acc is not None and t is not None:
            t = BlockType(t.dims, promote(t.dtype, acc.type.dtype))
        super().__init__(operands=[lhs, rhs, [acc] if acc is not None else []], result_types=[t])

    def infer_type(self) -> BlockType:
        t = matmul_result(self.lhs.type, self.rhs.type)
        if t is None:
            raise VerifyException(f"block.matmul: inner dimensions of {self.lhs.type} and {self.rhs.type} differ")
        if self.acc is None:
            return t
        if self.acc.type.dims != t.dims:
            raise VerifyException(f"block.matmul: accumulator {self.acc.type} does not match the product {t}")
        return BlockType(t.dims, promote(t.dtype, self.acc.type.dtype))


def matmul_result(a: BlockType, b: BlockType) -> BlockType | None:
    (m, k), (k2, n) = a.dims, b.dims
    if k != k2:
        return None
    return BlockType((m, n), promote(a.dtype, b.dtype))


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


ELEMENTWISE = (ElementwiseOp, CopyOp, BroadcastOp, FillOp, IotaOp)  # what fuse-elementwise may group

BLOCK = Dialect(
    "block",
    [*OPS.values(), CopyOp, BroadcastOp, FillOp, IotaOp, ReduceOp, MatmulOp, TransposeOp, StoreOp, FusedOp, YieldOp],
    [],
)
