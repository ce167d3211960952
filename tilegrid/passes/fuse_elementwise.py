"""fuse-elementwise: group elementwise block ops over one iteration shape into `block.fused`.

A group runs as one `tile.compute` later: its intermediates stay in DST instead of
round-tripping through L1. A group only grows while its DST need (see `dst_need`) fits
the program's DST capacity for a single tile, so no group can exceed DST. Groups are
placed at their last member (values nobody uses are dropped first); any use of a member outside the group, and any op with side
effects or regions, closes the open groups, which keeps every use dominated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.passes.common import copy_loc, program_of

ARITH_OPS = tuple(op for op in arith.Arith.operations)

# Ops that neither touch CBs / DMA nor have regions: open groups may be placed after them.
SIDE_EFFECT_FREE = (B.MatmulOp, B.ReduceOp, B.TransposeOp, C.CoreIndexOp, *ARITH_OPS)


def dst_need(ops: list[Operation]) -> int:
    """DST tiles a fused body needs per output tile: inputs are loaded at first use,
    outputs packed right after they are computed, a result may reuse a dying operand's slot."""
    members = set(ops)
    steps: list[tuple[list[SSAValue], SSAValue | None]] = []
    loaded: set[SSAValue] = set()
    for op in ops:
        operands = [v for v in op.operands if not isinstance(v.type, Float32Type)]
        if isinstance(op, B.BroadcastOp):
            steps.append(([], op.results[0]))  # a broadcasting load
            continue
        for v in operands:
            if v.owner not in members and v not in loaded:
                loaded.add(v)
                steps.append(([], v))
        steps.append((operands, op.results[0]))
    last: dict[SSAValue, int] = {}
    for k, (uses, _) in enumerate(steps):
        for v in uses:
            last[v] = k
    live: set[SSAValue] = set()
    need = 0
    for k, (uses, d) in enumerate(steps):
        dying = {v for v in uses if last.get(v) == k}
        need = max(need, len(live) + (0 if dying else 1))
        live -= dying
        if d is not None and d in last:
            live.add(d)
        need = max(need, len(live), 1)
    return need


@dataclass
class Group:
    shape: tuple[int, int]
    ops: list[Operation] = field(default_factory=list)
    closed: bool = False


def is_elementwise(op: Operation) -> bool:
    return isinstance(op, B.ELEMENTWISE)


@dataclass(frozen=True)
class FuseElementwise(ModulePass):
    name = "fuse-elementwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        capacity = program_of(op).dst_capacity.data
        for o in reversed(list(op.walk())):  # values computed and never used cost nothing
            if isinstance(o, (*B.ELEMENTWISE, B.MatmulOp, B.ReduceOp, B.TransposeOp)) and not o.results[0].uses:
                o.detach()
                o.erase()
        blocks = [b for o in op.walk() for r in o.regions for b in r.blocks]
        for block in blocks:
            for g in self.groups(block, capacity):
                self.fuse(g)

    def groups(self, block: Block, capacity: int) -> list[Group]:
        done: list[Group] = []
        open_groups: dict[tuple[int, int], Group] = {}
        owner: dict[Operation, Group] = {}

        def close(g: Group) -> None:
            if not g.closed:
                g.closed = True
                open_groups.pop(g.shape, None)

        for o in block.ops:
            if is_elementwise(o):
                shape = o.results[0].type.dims
                for v in o.operands:
                    g2 = owner.get(v.owner)  # type: ignore[arg-type]
                    if g2 is not None and g2.shape != shape:
                        close(g2)
                g = open_groups.get(shape)
                if g is None or dst_need(g.ops + [o]) > capacity:
                    if g is not None:
                        close(g)
                    g = Group(shape)
                    open_groups[shape] = g
                    done.append(g)
                g.ops.append(o)
                owner[o] = g
                if isinstance(o, B.CopyOp) and o.results[0].type != o.x.type:
                    close(g)  # a conversion is packed (rounded) to its format before anything reads it
                continue
            for v in o.operands:
                g2 = owner.get(v.owner)  # type: ignore[arg-type]
                if g2 is not None:
                    close(g2)
            if o.regions or not isinstance(o, SIDE_EFFECT_FREE):
                for g in list(open_groups.values()):
                    close(g)
        return done

    def fuse(self, g: Group) -> None:
        members = set(g.ops)
        inputs: list[SSAValue] = []
        for o in g.ops:
            for v in o.operands:
                if v.owner not in members and v not in inputs:
                    inputs.append(v)
        inputs.sort(key=lambda v: isinstance(v.type, Float32Type))  # blocks first, then scalars
        outputs = [r for o in g.ops for r in o.results if any(u.operation not in members for u in r.uses)]
        body = Block(arg_types=[v.type for v in inputs])
        mapping: dict[SSAValue, SSAValue] = dict(zip(inputs, body.args))
        for o in g.ops:
            c = o.clone(value_mapper=mapping)
            body.add_op(c)
            for r, cr in zip(o.results, c.results):
                mapping[r] = cr
        body.add_op(B.YieldOp([mapping[r] for r in outputs]))
        fused = copy_loc(g.ops[-1], B.FusedOp(inputs, [r.type for r in outputs], Region(body)))
        Rewriter.insert_op(fused, InsertPoint.before(g.ops[-1]))
        for r, fr in zip(outputs, fused.results):
            r.replace_all_uses_with(fr)
        for o in reversed(g.ops):
            o.detach()
            o.erase()
