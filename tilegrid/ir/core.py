"""The `tilegrid` dialect: program structure, circular buffers, DMA and core identity.

Modelled on tt-mlir's D2M: a `tilegrid.program` holds one `tilegrid.thread` region per
thread; every thread runs on every core of the grid (SPMD). CB ops follow the producer /
consumer protocol of a Tensix circular buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    DictionaryAttr,
    Float32Type,
    IndexType,
    IntAttr,
    IntegerAttr,
    StringAttr,
    bf16,
    f32,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, Region, SSAValue, TypeAttribute
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
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator
from xdsl.utils.exceptions import VerifyException

DTYPES = {"bf16": bf16, "f32": f32}


def dtype_name(t: Attribute) -> str:
    if isinstance(t, BFloat16Type):
        return "bf16"
    if isinstance(t, Float32Type):
        return "f32"
    raise VerifyException(f"unsupported element type {t}: expected bf16 or f32")


@irdl_attr_definition
class BlockType(ParametrizedAttribute, TypeAttribute):
    """A block of elements in L1 (a CB slot or a buffer): `!tilegrid.block<64x32xbf16>`.

    Shape is in elements, each dimension a multiple of 32 or 1 (a row or column vector,
    which occupies one tile per 32 elements of its other dimension).
    """

    name = "tilegrid.block"
    shape: ArrayAttr[IntAttr]
    element_type: Attribute

    def __init__(self, shape: Sequence[int], dtype: str | Attribute) -> None:
        et = DTYPES[dtype] if isinstance(dtype, str) else dtype
        super().__init__(ArrayAttr([IntAttr(int(d)) for d in shape]), et)

    @property
    def dims(self) -> tuple[int, int]:
        r, c = (d.data for d in self.shape.data)
        return r, c

    @property
    def dtype(self) -> str:
        return dtype_name(self.element_type)

    @property
    def tiles(self) -> tuple[int, int]:
        """Tiles along rows and columns (a vector dimension of 1 still takes one tile)."""
        r, c = self.dims
        return max(1, r // 32), max(1, c // 32)

    def print_parameters(self, printer: Printer) -> None:
        r, c = self.dims
        printer.print_string(f"<{r}x{c}x")
        printer.print_attribute(self.element_type)
        printer.print_string(">")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            dims, et = parser.parse_ranked_shape()
        return [ArrayAttr([IntAttr(d) for d in dims]), et]

    def verify(self) -> None:
        if len(self.shape.data) != 2:
            raise VerifyException(f"a block has 2 dimensions, got {len(self.shape.data)}")
        for d in self.dims:
            if d != 1 and (d <= 0 or d % 32):
                raise VerifyException(f"block dimension {d} is neither 1 nor a multiple of 32")
        dtype_name(self.element_type)


@irdl_attr_definition
class DMAType(ParametrizedAttribute, TypeAttribute):
    """The handle of an issued DMA transfer, consumed by `tilegrid.dma_wait`."""

    name = "tilegrid.dma"


def _int(v: int) -> IntegerAttr:
    return IntegerAttr(v, 64)


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """A kernel: the grid, its tensor arguments and one region per thread.

    `args` describes each tensor argument: name, shape, dtype, block (tiles per CB slot),
    depth (CB slots) and whether it is an output. CB `i` belongs to argument `i`.
    """

    name = "tilegrid.program"
    kernel = prop_def(StringAttr)
    grid = prop_def(ArrayAttr[IntAttr])
    args = prop_def(ArrayAttr[DictionaryAttr])
    dst_capacity = prop_def(IntAttr)
    l1_budget = prop_def(IntAttr)
    semaphores = opt_prop_def(ArrayAttr[IntAttr])
    cb_offsets = opt_prop_def(ArrayAttr[IntAttr])  # each CB's place in L1 (allocate-l1)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())

    def __init__(
        self,
        kernel: str,
        grid: Sequence[int],
        args: Sequence[dict],
        threads: Sequence[ThreadOp],
        dst_capacity: int = 4,
        l1_budget: int = 1432 * 1024,
        semaphores: Sequence[int] = (),
    ) -> None:
        super().__init__(
            properties={
                "kernel": StringAttr(kernel),
                "grid": ArrayAttr([IntAttr(g) for g in grid]),
                "args": ArrayAttr([arg_attr(**a) for a in args]),
                "dst_capacity": IntAttr(dst_capacity),
                "l1_budget": IntAttr(l1_budget),
                **({"semaphores": ArrayAttr([IntAttr(v) for v in semaphores])} if semaphores else {}),
            },
            regions=[Region([_block(list(threads))])],
        )

    @property
    def grid_shape(self) -> tuple[int, int]:
        r, c = (g.data for g in self.grid.data)
        return r, c

    @property
    def cb_layout(self) -> list[int] | None:
        """Each CB's L1 offset (its slots follow one another from there), once allocate-l1 ran."""
        return [v.data for v in self.cb_offsets.data] if self.cb_offsets is not None else None

    @property
    def semaphore_inits(self) -> list[int]:
        return [v.data for v in self.semaphores.data] if self.semaphores is not None else []

    def arg_infos(self) -> list[dict]:
        return [arg_info(a) for a in self.args.data]

    @property
    def threads(self) -> list[ThreadOp]:
        return [op for op in self.body.block.ops if isinstance(op, ThreadOp)]


def arg_attr(name: str, shape: Sequence[int], dtype: str, block: Sequence[int], depth: int, output: bool) -> DictionaryAttr:
    return DictionaryAttr(
        {
            "name": StringAttr(name),
            "shape": ArrayAttr([IntAttr(s) for s in shape]),
            "dtype": StringAttr(dtype),
            "block": ArrayAttr([IntAttr(b) for b in block]),
            "depth": IntAttr(depth),
            "output": IntAttr(int(output)),
        }
    )


def arg_info(a: DictionaryAttr) -> dict:
    d = a.data
    return {
        "name": d["name"].data,
        "shape": tuple(s.data for s in d["shape"].data),
        "dtype": d["dtype"].data,
        "block": tuple(b.data for b in d["block"].data),
        "depth": d["depth"].data,
        "output": bool(d["output"].data),
    }


def block_dims(info: dict) -> tuple[int, int]:
    """Elements of one CB slot of an argument: its block factors in tiles, except that a row vector
    argument [.., 1, N] has blocks of one row and a column vector [.., M, 1] of one column (each
    padded to whole tiles in L1, like the [1,N] / [M,1] blocks kernels compute)."""
    rows, cols = info["shape"][-2:]
    return (1 if rows == 1 else 32 * info["block"][0]), (1 if cols == 1 else 32 * info["block"][1])


def _block(ops):
    from xdsl.ir import Block

    return Block(ops)


@irdl_op_definition
class ThreadOp(IRDLOperation):
    """One thread of the program (`compute` or `datamovement`), run on every core.

    `implicit` threads were added by the compiler to fill or drain a CB that no
    user data-movement thread touches (the core's own shard, block by block).
    """

    name = "tilegrid.thread"
    kind = prop_def(StringAttr)
    thread_name = prop_def(StringAttr, prop_name="name")
    implicit = opt_prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())

    def __init__(self, kind: str, name: str, body: Region, implicit: str | None = None) -> None:
        props: dict[str, Attribute] = {"kind": StringAttr(kind), "name": StringAttr(name)}
        if implicit:
            props["implicit"] = StringAttr(implicit)
        super().__init__(properties=props, regions=[body])

    def verify_(self) -> None:
        if self.kind.data not in ("compute", "datamovement"):
            raise VerifyException(f"thread kind must be compute or datamovement, got {self.kind.data}")


@irdl_op_definition
class CoreIndexOp(IRDLOperation):
    """This core's row (`dim = 0`) or column (`dim = 1`) in the grid."""

    name = "tilegrid.core_index"
    dim = prop_def(IntAttr)
    result = result_def(IndexType)

    def __init__(self, dim: int) -> None:
        super().__init__(properties={"dim": IntAttr(dim)}, result_types=[IndexType()])


class _CBOp(IRDLOperation):
    cb = prop_def(IntAttr)


@irdl_op_definition
class CBReserveOp(_CBOp):
    """Producer: wait until the CB has a free slot and return it (not yet visible to the consumer)."""

    name = "tilegrid.cb_reserve"
    result = result_def(BlockType)

    def __init__(self, cb: int, t: BlockType) -> None:
        super().__init__(properties={"cb": IntAttr(cb)}, result_types=[t])


@irdl_op_definition
class CBPushOp(_CBOp):
    """Producer: publish the oldest reserved slot to the consumer."""

    name = "tilegrid.cb_push"

    def __init__(self, cb: int) -> None:
        super().__init__(properties={"cb": IntAttr(cb)})


@irdl_op_definition
class CBWaitOp(_CBOp):
    """Consumer: wait until the front slot has been pushed and return it."""

    name = "tilegrid.cb_wait"
    result = result_def(BlockType)

    def __init__(self, cb: int, t: BlockType) -> None:
        super().__init__(properties={"cb": IntAttr(cb)}, result_types=[t])


@irdl_op_definition
class CBPopOp(_CBOp):
    """Consumer: release the front slot back to the producer; its block is dead afterwards."""

    name = "tilegrid.cb_pop"

    def __init__(self, cb: int) -> None:
        super().__init__(properties={"cb": IntAttr(cb)})


@irdl_op_definition
class DMAReadOp(IRDLOperation):
    """Copy the block of tensor argument `arg` at `indices` into `dst` (a reserved slot).

    Indices are elements for leading dimensions and blocks for the last two.
    """

    name = "tilegrid.dma_read"
    arg = prop_def(IntAttr)
    indices = var_operand_def(IndexType)
    dst = operand_def(BlockType)
    result = result_def(DMAType)

    def __init__(self, arg: int, indices: Sequence[SSAValue], dst: SSAValue) -> None:
        super().__init__(operands=[indices, dst], properties={"arg": IntAttr(arg)}, result_types=[DMAType()])


@irdl_op_definition
class DMAWriteOp(IRDLOperation):
    """Copy `src` (a popped block) to tensor argument `arg` at `indices` in DRAM."""

    name = "tilegrid.dma_write"
    arg = prop_def(IntAttr)
    src = operand_def(BlockType)
    indices = var_operand_def(IndexType)
    result = result_def(DMAType)

    def __init__(self, arg: int, src: SSAValue, indices: Sequence[SSAValue]) -> None:
        super().__init__(operands=[src, indices], properties={"arg": IntAttr(arg)}, result_types=[DMAType()])


@irdl_op_definition
class DMAWaitOp(IRDLOperation):
    """Block until the transfer has completed."""

    name = "tilegrid.dma_wait"
    handle = operand_def(DMAType)

    def __init__(self, handle: SSAValue) -> None:
        super().__init__(operands=[handle])


def _check_target(op: IRDLOperation, n: int) -> None:
    if n not in (0, 2, 4):
        raise VerifyException(f"{op.name}: target is (), (y, x) or (y, x, h, w); got {n} indices")


@irdl_op_definition
class DMAMcastOp(IRDLOperation):
    """Copy `src` (a block of CB `cb` on this core) into the reserved slot of CB `cb` on every
    core of the rectangle `target = (y, x, h, w)` (or the single core `(y, x)`).

    The receivers must have reserved their slot before the transfer (a handshake, usually a
    semaphore); the simulator reports a multicast into a core with no reserved slot.
    """

    name = "tilegrid.dma_mcast"
    cb = prop_def(IntAttr)
    src = operand_def(BlockType)
    target = var_operand_def(IndexType)
    result = result_def(DMAType)

    def __init__(self, cb: int, src: SSAValue, target: Sequence[SSAValue]) -> None:
        super().__init__(operands=[src, target], properties={"cb": IntAttr(cb)}, result_types=[DMAType()])

    def verify_(self) -> None:
        if len(self.target) not in (2, 4):
            raise VerifyException(f"{self.name}: target is (y, x) or (y, x, h, w); got {len(self.target)} indices")


class _SemUpdate(IRDLOperation):
    sem = prop_def(IntAttr)
    value = operand_def(IndexType)
    target = var_operand_def(IndexType)

    def __init__(self, sem: int, value: SSAValue, target: Sequence[SSAValue] = ()) -> None:
        super().__init__(operands=[value, target], properties={"sem": IntAttr(sem)})

    def verify_(self) -> None:
        _check_target(self, len(self.target))


@irdl_op_definition
class SemSetOp(_SemUpdate):
    """Set semaphore `sem` to `value` on this core, or on core / rectangle `target`."""

    name = "tilegrid.sem_set"


@irdl_op_definition
class SemIncOp(_SemUpdate):
    """Atomically add `value` to semaphore `sem` on this core, or on core / rectangle `target`."""

    name = "tilegrid.sem_inc"


@irdl_op_definition
class SemWaitOp(IRDLOperation):
    """Block until this core's semaphore `sem` equals `value`; then set it to `reset` if given."""

    name = "tilegrid.sem_wait"
    sem = prop_def(IntAttr)
    value = operand_def(IndexType)
    reset = opt_operand_def(IndexType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, sem: int, value: SSAValue, reset: SSAValue | None = None) -> None:
        super().__init__(operands=[value, [reset] if reset is not None else []], properties={"sem": IntAttr(sem)})


@irdl_op_definition
class PrintOp(IRDLOperation):
    """Print a block on the simulator (ignored elsewhere)."""

    name = "tilegrid.print"
    label = prop_def(StringAttr)
    value = operand_def(BlockType)

    def __init__(self, value: SSAValue, label: str) -> None:
        super().__init__(operands=[value], properties={"label": StringAttr(label)})


@irdl_op_definition
class AllocOp(IRDLOperation):
    """An L1 buffer for an intermediate block (tile IR). allocate-l1 sets `offset`, and for a value a
    loop carries from one iteration to the next (old and new live at once) `pingpong`, the offset of
    the second place: successive executions of the buffers of one carried value alternate."""

    name = "tilegrid.alloc"
    offset = opt_prop_def(IntAttr)
    pingpong = opt_prop_def(IntAttr)
    result = result_def(BlockType)

    def __init__(self, t: BlockType) -> None:
        super().__init__(result_types=[t])


TILEGRID = Dialect(
    "tilegrid",
    [
        ProgramOp,
        ThreadOp,
        CoreIndexOp,
        CBReserveOp,
        CBPushOp,
        CBWaitOp,
        CBPopOp,
        DMAReadOp,
        DMAWriteOp,
        DMAWaitOp,
        DMAMcastOp,
        SemSetOp,
        SemIncOp,
        SemWaitOp,
        PrintOp,
        AllocOp,
    ],
    [BlockType, DMAType],
)
