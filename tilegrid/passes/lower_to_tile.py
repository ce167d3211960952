"""lower-to-tile: block ops -> tile ops on explicit buffers (the "temp alloc" of the roadmap).

Every value a tile op writes gets a `tilegrid.alloc` buffer (or is the CB slot it is
stored into), so any number of matmuls and intermediates live in one kernel:
  block.fused     -> alloc per output + tile.compute (load / SFPU ops / pack)
  block.matmul    -> alloc + tile.matmul (with its `acc`, reloaded into DST)
  block.reduce    -> alloc + tile.reduce (with its `acc`)
  block.transpose -> alloc + tile.transpose
  block.store     -> nothing when the value's producer can write straight into the slot,
                     else a tile.compute copying it (rounding to the slot's format)
  block.transpose feeding only a matmul's right operand, with no CB release between them
                  -> tile.matmul {transpose_b}
Afterwards no `block.*` op remains.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import Float32Type, ModuleOp, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.passes.common import copy_loc, op_error, releases_between


def bcast_kind(src: tuple[int, int], dst: tuple[int, int]) -> str:
    if src == dst:
        return "none"
    if src == (1, 1):
        return "scalar"
    return "col" if src[1] == 1 else "row"


def fused_body(fused: B.FusedOp) -> tuple[Block, list[SSAValue], list[SSAValue]]:
    """The tile body of a fused group (loads at first use, packs right after each output), its
    block inputs and its f32 scalars (the body's block arguments, in order)."""
    src = fused.body.block
    args = list(src.args)
    ins = [v for v in fused.inputs if not isinstance(v.type, Float32Type)]
    scalars = [v for v in fused.inputs if isinstance(v.type, Float32Type)]
    body = Block(arg_types=[f32] * len(scalars))
    outer = dict(zip(args, fused.inputs))
    tiles: dict[SSAValue, SSAValue] = {}
    outputs = list(src.last_op.operands)  # block.yield
    shape = fused.outputs[0].type.dims

    def add(op: Operation) -> Operation:
        body.add_op(op)
        return op

    def get(v: SSAValue) -> SSAValue:
        if v not in tiles:
            if isinstance(v.type, Float32Type):
                tiles[v] = body.args[scalars.index(outer[v])]
            else:
                tiles[v] = add(T.LoadOp(ins.index(outer[v]), bcast_kind(v.type.dims, shape))).results[0]
        return tiles[v]

    for o in src.ops:
        if isinstance(o, B.YieldOp):
            break
        if isinstance(o, B.BroadcastOp):
            t = add(T.LoadOp(ins.index(outer[o.x]), bcast_kind(o.x.type.dims, shape))).results[0]
        elif isinstance(o, B.CopyOp):
            t = get(o.x)
        elif isinstance(o, B.FillOp):
            t = add(T.FillOp(o.value.value.data)).results[0]
        elif isinstance(o, B.IotaOp):
            t = add(T.IotaOp(o.dim.data)).results[0]
        elif isinstance(o, B.ElementwiseOp):
            cls = T.OPS[o.OP.name]
            if o.OP.scalable:
                t = add(cls(get(o.x), get(o.scale) if o.scale is not None else None)).results[0]
            elif o.OP.arity == 1:
                t = add(cls(get(o.x), **o.params())).results[0]
            else:
                t = add(cls(*(get(v) for v in o.operands))).results[0]
        else:
            raise op_error(o, f"internal: {o.name} cannot be fused")
        tiles[o.results[0]] = t
        for k, out in enumerate(outputs):
            if out is o.results[0]:
                add(T.PackOp(t, k))
    for k, out in enumerate(outputs):
        if out in args:  # an input passed straight through
            add(T.PackOp(get(out), k))
    return body, ins, scalars


def copy_compute(src: SSAValue, dst: SSAValue) -> T.ComputeOp:
    load = T.LoadOp(0, bcast_kind(src.type.dims, dst.type.dims))
    body = Block([load, T.PackOp(load.results[0], 0)])
    return T.ComputeOp([src], [], [dst], Region(body))


def forwardable(store: B.StoreOp) -> Operation | None:
    """The producer of a stored value that can write straight into the slot instead of a buffer.

    It must be a tile-level producer in the same block whose result has no other use, with no CB
    pop between it and the store (the producer moves down to the store and must still see
    its inputs).
    """
    v = store.value
    prod = v.owner
    if not isinstance(prod, B.FusedOp | B.MatmulOp | B.ReduceOp | B.TransposeOp) or len(list(v.uses)) != 1:
        return None
    if len(prod.results) != 1 or prod.parent_block() is not store.parent_block():
        return None
    if v.type.dims != store.dst.type.dims:
        return None
    o = prod.next_op
    while o is not None and o is not store:
        if any(isinstance(x, C.CBPopOp) for x in o.walk()):
            return None
        o = o.next_op
    return prod if o is store else None


def transposed_rhs(mm: B.MatmulOp) -> SSAValue | None:
    """`a @ b.transpose()` with no other use of the transpose and no CB release between the two: the
    matmul unpacks b transposed (and so reads b where the matmul stands)."""
    t = mm.rhs.owner
    if (isinstance(t, B.TransposeOp) and len(list(mm.rhs.uses)) == 1 and mm.lhs is not mm.rhs
            and t.parent_block() is mm.parent_block() and not releases_between(t, mm)):
        return t.x
    return None


@dataclass(frozen=True)
class LowerToTile(ModulePass):
    name = "lower-to-tile"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        into: dict[SSAValue, SSAValue] = {}  # producer result -> CB slot it is stored into
        for st in [o for o in op.walk() if isinstance(o, B.StoreOp)]:
            prod = forwardable(st)
            if prod is None:
                Rewriter.insert_op(copy_loc(st, copy_compute(st.value, st.dst)), InsertPoint.before(st))
            else:
                prod.detach()
                Rewriter.insert_op(prod, InsertPoint.before(st))
                into[prod.results[0]] = st.dst
            st.detach()
            st.erase()
        absorbed = {o for o in op.walk() if isinstance(o, B.MatmulOp) and transposed_rhs(o) is not None}
        for o in list(op.walk()):
            if isinstance(o, B.TransposeOp) and all(
                u.operation in absorbed and u.operation.rhs is o.result for u in o.result.uses
            ) and o.result.uses:
                continue  # absorbed by the matmul that reads it (lowered below, then erased)
            if isinstance(o, B.FusedOp | B.MatmulOp | B.ReduceOp | B.TransposeOp):
                self.replace(o, into)

    @staticmethod
    def tile_op(o: Operation, out: SSAValue) -> Operation:
        if isinstance(o, B.MatmulOp):
            src = transposed_rhs(o)
            return T.MatmulOp(o.lhs, src if src is not None else o.rhs, out, o.acc, transpose_b=src is not None)
        if isinstance(o, B.ReduceOp):
            return T.ReduceOp(o.kind.data, o.dim.data, o.x, out, o.acc)
        assert isinstance(o, B.TransposeOp)
        return T.TransposeOp(o.x, out)

    @classmethod
    def replace(cls, o: Operation, into: dict[SSAValue, SSAValue]) -> None:
        """Replace `o` by tile ops writing into new buffers (or the CB slot its value is stored to)."""
        outs = []
        for r in o.results:
            if r in into:
                outs.append(into[r])
                continue
            alloc = copy_loc(o, C.AllocOp(r.type))
            Rewriter.insert_op(alloc, InsertPoint.before(o))
            outs.append(alloc.results[0])
        if isinstance(o, B.FusedOp):
            body, ins, scalars = fused_body(o)
            new = T.ComputeOp(ins, scalars, outs, Region(body))
        else:
            new = cls.tile_op(o, outs[0])
        Rewriter.insert_op(copy_loc(o, new), InsertPoint.before(o))
        for r, buf in zip(o.results, outs):
            if r not in into:
                r.replace_all_uses_with(buf)
        transpose = o.rhs.owner if isinstance(o, B.MatmulOp) and transposed_rhs(o) is not None else None
        o.detach()
        o.erase()
        if transpose is not None:
            transpose.detach()
            transpose.erase()
