"""update-in-place: an op whose result may overwrite a buffer it reads for the last time writes there.

Hardware kernels update accumulators in place; a compiler that gives every new value a new buffer
needs three times the L1 for a loop-carried accumulator (its initial value, and the old and the new
value of each iteration). Here a tile op writes its output into an input buffer when

- the op reads the input tile by tile before writing the same tile of its output: a `tile.compute`
  input of the output's type (no broadcast) that its body loads before it packs that output, or
  the `acc` of a `tile.matmul` / `tile.reduce` (read into DST before the subblock is packed) that
  the op reads in no other way;
- the input dies at the op: it is a buffer made in the op's block (an alloc, or an `scf.if`
  result over allocs only the `if` reads, or the loop-carried value of the loop whose body the
  op is in) and nothing after the op reads it;
- the output is a fresh buffer of the same type whose first user is the op.

Then the output buffer is replaced by the input buffer. When a loop body so updates its carried
value in place and yields it, the value no longer needs carrying: the loop updates the buffer
holding the initial value (FlashAttention's O, l and m; the matmul's accumulator), which takes one
buffer instead of three. Expects tile IR (after lower-to-tile); keeps it tile IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, BlockArgument, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from tilegrid.ir import core as C
from tilegrid.ir import tile as T


def _ancestor_in(op: Operation, block: Block) -> Operation | None:
    while op is not None and op.parent_block() is not block:
        op = op.parent_op()
    return op


def _index(op: Operation) -> int:
    return op.parent_block().get_operation_index(op)


def candidates(op: Operation) -> list[tuple[SSAValue, SSAValue]]:
    """(input, output) pairs the op could update in place."""
    if isinstance(op, T.ComputeOp):
        body = list(op.body.block.ops)
        loaded = {op.ins[o.input.data]: k for k, o in enumerate(body) if isinstance(o, T.LoadOp)}
        packed = {op.outs[o.output.data]: k for k, o in enumerate(body) if isinstance(o, T.PackOp)}
        # the input's tile must be loaded (into DST) before the output's tile is packed over it
        return [(i, o) for o in op.outs for i in op.ins
                if i.type == o.type and i not in op.outs and loaded.get(i, len(body)) < packed.get(o, -1)]
    if isinstance(op, T.MatmulOp | T.ReduceOp) and op.acc is not None and op.acc.type == op.out.type:
        others = [op.a, op.b] if isinstance(op, T.MatmulOp) else [op.x]
        if op.acc not in others:
            return [(op.acc, op.out)]
    return []


def _owned_if_result(v: SSAValue, block: Block) -> bool:
    """`v` is a result of an `scf.if` in `block` whose branches yield buffers (allocs) that nothing
    but the `if` reads: the `if`'s result is the only handle on them (FlashAttention's masked S)."""
    ifop = v.owner
    if not (isinstance(ifop, scf.IfOp) and ifop.parent_block() is block and ifop.false_region.blocks):
        return False
    k, at = v.index, _index(ifop)
    for region in (ifop.true_region, ifop.false_region):
        y = region.block.last_op.operands[k]
        if not isinstance(y.owner, C.AllocOp):
            return False
        for u in y.uses:  # written and read before the `if`, or inside it; never after it
            anc = _ancestor_in(u.operation, block)
            if anc is None or (anc is not ifop and _index(anc) > at):
                return False
    return True


def dies_at(v: SSAValue, op: Operation) -> bool:
    """`v` is a buffer of `op`'s block (an alloc, the result of an `if` over allocs, or the block's
    loop-carried value) read by nothing after `op`."""
    block = op.parent_block()
    if isinstance(v, BlockArgument):
        if v.block is not block or not isinstance(block.parent_op(), scf.ForOp) or v.index == 0:
            return False
    elif not (isinstance(v.owner, C.AllocOp) and v.owner.parent_block() is block) and not _owned_if_result(v, block):
        return False
    at = _index(op)
    for use in v.uses:
        anc = _ancestor_in(use.operation, block)
        if anc is None or (anc is not op and _index(anc) > at):
            return False
    return True


def fresh_output(v: SSAValue, op: Operation) -> bool:
    """`v` is a buffer made in `op`'s block whose first user is `op` (nothing holds a value in it yet)."""
    owner = v.owner
    if not (isinstance(owner, C.AllocOp) and owner.parent_block() is op.parent_block()):
        return False
    at = _index(op)
    for use in v.uses:
        anc = _ancestor_in(use.operation, op.parent_block())
        if anc is None or (anc is not op and _index(anc) < at):
            return False
    return True


def drop_invariant_carry(loop: scf.ForOp, k: int) -> bool:
    """Loop-carried value k is yielded unchanged (it was updated in place): the body works on the
    initial value's buffer directly, if that buffer is the loop's alone."""
    init = loop.iter_args[k]
    if not isinstance(init.owner, C.AllocOp) or init.owner.parent_block() is not loop.parent_block():
        return False
    at = _index(loop)
    if any(_ancestor_in(u.operation, loop.parent_block()) is None
           or (u.operation is not loop and _index(_ancestor_in(u.operation, loop.parent_block())) >= at)
           for u in init.uses):
        return False
    body = loop.body.block
    arg = body.args[k + 1]
    y = body.last_op
    arg.replace_all_uses_with(init)
    loop.results[k].replace_all_uses_with(init)
    keep = [i for i in range(len(loop.iter_args)) if i != k]
    new_yield = scf.YieldOp(*[y.operands[i] for i in keep])
    body.insert_op_before(new_yield, y)
    y.detach()
    y.erase()
    body.erase_arg(arg)
    new = scf.ForOp(loop.lb, loop.ub, loop.step, [loop.iter_args[i] for i in keep], Region())
    for name, attr in loop.attributes.items():
        new.attributes[name] = attr
    loop.body.move_blocks(new.body)
    loop.parent_block().insert_op_before(new, loop)
    for old, res in zip([loop.results[i] for i in keep], new.results):
        old.replace_all_uses_with(res)
    loop.detach()
    loop.erase()
    return True


@dataclass(frozen=True)
class UpdateInPlace(ModulePass):
    name = "update-in-place"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        changed = True
        while changed:  # a rewrite may expose another (T = c * O in place, then O' = P @ V + T)
            changed = False
            for o in list(op.walk()):
                for i, out in candidates(o):
                    if dies_at(i, o) and fresh_output(out, o):
                        alloc = out.owner
                        out.replace_all_uses_with(i)
                        alloc.detach()
                        alloc.erase()
                        changed = True
                        break
            for loop in [o for o in op.walk() if isinstance(o, scf.ForOp)]:
                y = loop.body.block.last_op
                for k, v in enumerate(y.operands):
                    if v is loop.body.block.args[k + 1] and drop_invariant_carry(loop, k):
                        changed = True
                        break
