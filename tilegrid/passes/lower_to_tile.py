"""lower-to-tile: block ops -> tile ops on explicit buffers (the "temp alloc" of the roadmap).

Every value a tile op writes gets a `tilegrid.alloc` buffer (or is the CB slot it is
stored into), so any number of matmuls and intermediates live in one kernel:
  block.fused     -> alloc per output + tile.compute (load / SFPU ops / pack)
  block.matmul    -> alloc + tile.matmul (a lone `acc + a @ b` becomes one tile.matmul
                     that accumulates onto `acc` in DST)
  block.reduce    -> alloc + tile.reduce
  block.transpose -> alloc + tile.transpose
  block.store     -> nothing when the value's producer can write straight into the slot,
                     else a tile.compute copying it (rounding to the slot's format)
  block.transpose feeding only a matmul's right operand -> tile.matmul {transpose_b}
Afterwards no `block.*` op remains.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.passes.common import copy_loc, op_error


def bcast_kind(src: tuple[int, int], dst: tuple[int, int]) -> str:
    if src == dst:
        return "none"
    if src == (1, 1):
        return "scalar"
    return "col" if src[1] == 1 else "row"


def fused_body(fused: B.FusedOp, n_blocks: int) -> Block:
    """The tile body of a fused group: loads at first use, packs right after each output."""
    body = Block()
    src = fused.body.block
    args = list(src.args)
    tiles: dict[SSAValue, SSAValue] = {}
    outputs = list(src.last_op.operands)  # block.yield
    shape = fused.outputs[0].type.dims

    def add(op: Operation) -> Operation:
        body.add_op(op)
        return op

    def load(v: SSAValue) -> SSAValue:
        if v not in tiles:
            tiles[v] = add(T.LoadOp(args.index(v), bcast_kind(v.type.dims, shape))).results[0]
        return tiles[v]

    def get(v: SSAValue) -> SSAValue:
        return tiles[v] if v in tiles else load(v)

    def pack_if_output(v: SSAValue) -> None:
        for k, o in enumerate(outputs):
            if o is v:
                add(T.PackOp(tiles[v], k))

    # exp(x * s) with x used nowhere else: one SFPU exp with a scale (the softmax scale)
    folded: dict[Operation, B.ScalarOp] = {}
    for o in src.ops:
        if isinstance(o, B.UnaryOp) and o.kind.data in ("exp", "exp_approx") and isinstance(o.x.owner, B.ScalarOp):
            sc = o.x.owner
            if sc.kind.data == "mul" and len(list(o.x.uses)) == 1 and o.x not in outputs:
                folded[o] = sc
    skipped = set(folded.values())

    for o in src.ops:
        if isinstance(o, B.YieldOp):
            break
        if o in skipped:
            continue
        if o in folded:
            sc = folded[o]
            t = add(T.UnaryOp(o.kind.data, get(sc.x), scale=args.index(sc.scalar) - n_blocks)).results[0]
        elif isinstance(o, B.BroadcastOp):
            t = add(T.LoadOp(args.index(o.x), bcast_kind(o.x.type.dims, shape))).results[0]
        elif isinstance(o, B.UnaryOp) and o.kind.data == "copy":
            t = get(o.x)
        elif isinstance(o, B.UnaryOp):
            t = add(T.UnaryOp(o.kind.data, get(o.x))).results[0]
        elif isinstance(o, B.BinaryOp):
            t = add(T.BinaryOp(o.kind.data, get(o.lhs), get(o.rhs))).results[0]
        elif isinstance(o, B.ScalarOp):
            t = add(T.ScalarOp(o.kind.data, get(o.x), args.index(o.scalar) - n_blocks, bool(o.reverse.data))).results[0]
        elif isinstance(o, B.FillOp):
            t = add(T.FillOp(o.value.value.data)).results[0]
        elif isinstance(o, B.IotaOp):
            t = add(T.IotaOp(o.dim.data)).results[0]
        elif isinstance(o, B.WhereOp):
            t = add(T.WhereOp(get(o.cond), get(o.a), get(o.b))).results[0]
        else:
            raise op_error(o, f"internal: {o.name} cannot be fused")
        tiles[o.results[0]] = t
        pack_if_output(o.results[0])
    for k, o in enumerate(outputs):
        if o in args:  # an input passed straight through
            add(T.PackOp(load(o), k))
    return body


def copy_compute(src: SSAValue, dst: SSAValue) -> T.ComputeOp:
    load = T.LoadOp(0, bcast_kind(src.type.dims, dst.type.dims))
    body = Block([load, T.PackOp(load.results[0], 0)])
    return T.ComputeOp([src], [], [dst], Region(body))


def accumulating_matmul(fused: B.FusedOp) -> tuple[B.MatmulOp, SSAValue] | None:
    """`acc + a @ b` as a lone fused add whose product has no other use: accumulate in DST instead."""
    ops = list(fused.body.block.ops)
    if len(ops) != 2 or not isinstance(ops[0], B.BinaryOp) or ops[0].kind.data != "add":
        return None
    add, args = ops[0], list(fused.body.block.args)
    if add.lhs not in args or add.rhs not in args or add.results[0].type != fused.outputs[0].type:
        return None
    for mine, other in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        prod = fused.inputs[args.index(mine)]
        if isinstance(prod.owner, B.MatmulOp) and len(list(prod.uses)) == 1 and other.type.dims == prod.type.dims:
            return prod.owner, fused.inputs[args.index(other)]
    return None


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
    """`a @ b.transpose()` with no other use of the transpose: the matmul unpacks b transposed."""
    t = mm.rhs.owner
    if isinstance(t, B.TransposeOp) and len(list(mm.rhs.uses)) == 1:
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
        for o in list(op.walk()):  # first `acc + a @ b`, so its matmul is not lowered on its own
            if isinstance(o, B.FusedOp) and (mm := accumulating_matmul(o)) is not None:
                self.replace(o, into, matmul=mm)
        for o in list(op.walk()):
            if isinstance(o, B.TransposeOp) and any(
                isinstance(u.operation, B.MatmulOp) and transposed_rhs(u.operation) is o.x for u in o.result.uses
            ):
                continue  # absorbed by the matmul that reads it (lowered below)
            if isinstance(o, B.FusedOp | B.MatmulOp | B.ReduceOp | B.TransposeOp):
                self.replace(o, into)

    @staticmethod
    def tile_ops(o: Operation, outs: list[SSAValue], matmul: tuple | None) -> list[Operation]:
        if matmul is not None:
            mm, acc = matmul
            src = transposed_rhs(mm)
            return [T.MatmulOp(mm.lhs, src if src is not None else mm.rhs, outs[0], acc, transpose_b=src is not None)]
        if isinstance(o, B.FusedOp):
            ins = [v for v in o.inputs if not isinstance(v.type, Float32Type)]
            scalars = [v for v in o.inputs if isinstance(v.type, Float32Type)]
            return [T.ComputeOp(ins, scalars, outs, Region(fused_body(o, len(ins))))]
        if isinstance(o, B.MatmulOp):
            src = transposed_rhs(o)
            return [T.MatmulOp(o.lhs, src if src is not None else o.rhs, outs[0], transpose_b=src is not None)]
        if isinstance(o, B.ReduceOp):
            return [T.ReduceOp(o.kind.data, o.dim.data, o.x, outs[0])]
        assert isinstance(o, B.TransposeOp)
        return [T.TransposeOp(o.x, outs[0])]

    @classmethod
    def replace(cls, o: Operation, into: dict[SSAValue, SSAValue], matmul: tuple | None = None) -> None:
        """Replace `o` by tile ops writing into new buffers (or the CB slot its value is stored to)."""
        outs = []
        for r in o.results:
            if r in into:
                outs.append(into[r])
                continue
            alloc = copy_loc(o, C.AllocOp(r.type))
            Rewriter.insert_op(alloc, InsertPoint.before(o))
            outs.append(alloc.results[0])
        for new in cls.tile_ops(o, outs, matmul):
            Rewriter.insert_op(copy_loc(matmul[0] if matmul else o, new), InsertPoint.before(o))
        for r, buf in zip(o.results, outs):
            if r not in into:
                r.replace_all_uses_with(buf)
        dead = [o]
        if matmul is not None:
            dead.append(matmul[0])
        for d in dead:
            if isinstance(d, B.MatmulOp) and transposed_rhs(d) is not None:
                dead.append(d.rhs.owner)
        for d in dead:
            d.detach()
            d.erase()
