"""implicit-data-movement: fill and drain the CBs that no data-movement thread touches.

D2M's compute-only form: an input CB that no data-movement thread reserves receives the
core's own shard of its tensor, block by block in row-major order; an output CB that no
data-movement thread pops is written back to the core's shard the same way, and the
compute thread's own `pop` of it only marks the block done (it is removed here).
A shard splits the last two dimensions evenly over grid rows and columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.passes.common import loc_of, program_of


def cb_ops(threads: list[C.ThreadOp], cls: type) -> dict[int, list[Operation]]:
    """The threads' ops of one CB call (reserve, wait, pop), per CB."""
    out: dict[int, list[Operation]] = {}
    for t in threads:
        for o in t.walk():
            if isinstance(o, cls):
                out.setdefault(o.cb.data, []).append(o)
    return out


def replicated(info: dict) -> tuple[bool, bool]:
    """Whether every grid row (column) gets the whole of an input's rows (columns): a row vector
    [.., 1, N] input is split over grid columns only and read by every grid row, a column vector
    [.., M, 1] the other way round (the bias / gamma every core needs for its shard)."""
    rows, cols = info["shape"][-2:]
    return (rows == 1 and not info["output"]), (cols == 1 and not info["output"])


def shard_blocks(prog: C.ProgramOp, info: dict) -> tuple[int, int]:
    """Blocks per core along rows and columns of the core's shard of an argument."""
    gr, gc = prog.grid_shape
    rep_r, rep_c = replicated(info)
    gr, gc = (1 if rep_r else gr), (1 if rep_c else gc)
    rows, cols = info["shape"][-2], info["shape"][-1]
    br, bc = C.block_dims(info)
    nr, nc = rows // br, cols // bc
    if nr % gr or nc % gc:
        raise CompileError(
            f"'{info['name']}' has {nr}x{nc} blocks of {br}x{bc}, which do not split "
            f"evenly over the {gr}x{gc} grid for implicit data movement",
            note="choose block_factors and a grid that divide the tensor, or move the data with a @datamovement() thread",
        )
    return nr // gr, nc // gc


class _Emitter:
    def __init__(self) -> None:
        self.block = Block()

    def add(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    def const(self, v: int) -> SSAValue:
        return self.add(arith.ConstantOp(IntegerAttr(v, IndexType()))).results[0]


def _loop_nest(em: _Emitter, bounds: list[int], body, ivs: tuple = ()) -> None:
    """Nested scf.for loops over `bounds`; `body(emitter, ivs)` fills the innermost one."""
    if not bounds:
        body(em, list(ivs))
        return
    inner = Block(arg_types=[IndexType()])
    lb, ub, step = em.const(0), em.const(bounds[0]), em.const(1)
    outer, em.block = em.block, inner
    _loop_nest(em, bounds[1:], body, (*ivs, inner.args[0]))
    inner.add_op(scf.YieldOp())
    em.block = outer
    em.add(scf.ForOp(lb, ub, step, [], Region(inner)))


def implicit_thread(prog: C.ProgramOp, arg: int, info: dict, write: bool, where: str | None = None) -> C.ThreadOp:
    """A data-movement thread moving every block of this core's shard of `arg`, row-major.

    Its ops carry `where`, the compute thread's first use of the CB, so reports point there."""
    nr, nc = shard_blocks(prog, info)
    lead = list(info["shape"][:-2])
    em = _Emitter()
    row, col = em.add(C.CoreIndexOp(0)).results[0], em.add(C.CoreIndexOp(1)).results[0]
    t = C.BlockType(C.block_dims(info), info["dtype"])
    rep_r, rep_c = replicated(info)

    def body(e: _Emitter, ivs: list[SSAValue]) -> None:
        *lead_ivs, i, j = ivs
        r = i if rep_r else e.add(arith.AddiOp(e.add(arith.MuliOp(row, e.const(nr))).results[0], i)).results[0]
        c = j if rep_c else e.add(arith.AddiOp(e.add(arith.MuliOp(col, e.const(nc))).results[0], j)).results[0]
        if write:
            blk = e.add(C.CBWaitOp(arg, t)).results[0]
            h = e.add(C.DMAWriteOp(arg, blk, [*lead_ivs, r, c])).results[0]
            e.add(C.DMAWaitOp(h))
            e.add(C.CBPopOp(arg))
        else:
            blk = e.add(C.CBReserveOp(arg, t)).results[0]
            h = e.add(C.DMAReadOp(arg, [*lead_ivs, r, c], blk)).results[0]
            e.add(C.DMAWaitOp(h))
            e.add(C.CBPushOp(arg))

    _loop_nest(em, [*lead, nr, nc], body)
    kind = "writer" if write else "reader"
    thread = C.ThreadOp("datamovement", f"implicit_{kind}_{info['name']}", Region(em.block), implicit=kind)
    if where:
        for o in thread.walk():
            if o is not thread:
                o.attributes["loc"] = StringAttr(where)
    return thread


@dataclass(frozen=True)
class ImplicitDataMovement(ModulePass):
    name = "implicit-data-movement"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        prog = program_of(op)
        infos = prog.arg_infos()
        dm = [t for t in prog.threads if t.kind.data == "datamovement"]
        comp = [t for t in prog.threads if t.kind.data == "compute"]
        dm_fills, dm_pops = cb_ops(dm, C.CBReserveOp), cb_ops(dm, C.CBWaitOp)
        writes = {o.arg.data for t in dm for o in t.walk() if isinstance(o, C.DMAWriteOp)}
        comp_fills, comp_waits = cb_ops(comp, C.CBReserveOp), cb_ops(comp, C.CBWaitOp)
        for i, info in enumerate(infos):
            if info["output"] and i not in writes and i not in comp_fills:
                raise CompileError(
                    f"output '{info['name']}' is never written: no thread reserves its CB or writes its stream",
                    note=f"store results into the output CB (blk = {info['name']}_cb.reserve(); blk.store(x)), "
                    "or write them with dma(block, stream[...]) from a data-movement thread",
                )
        new_threads = []
        for i, info in enumerate(infos):
            if i not in comp_waits and i not in comp_fills:  # not used by compute
                continue
            if not info["output"] and i not in dm_fills:
                fills = comp_fills.get(i, [])
                if fills:
                    raise CompileError(
                        f"the compute thread fills CB '{info['name']}', but '{info['name']}' is an input of the kernel, "
                        f"whose CB the implicit reader fills with the core's shard of '{info['name']}'",
                        loc_of(fills[0]),
                        note=f"if '{info['name']}' is an output, pass num_outs= to @pykernel_gen (the last num_outs "
                        "arguments are the outputs); an input's CB is filled by a reader: keep a computed block in a "
                        "variable instead",
                    )
                waits = comp_waits.get(i, [])
                if waits:
                    new_threads.append(implicit_thread(prog, i, info, write=False, where=loc_of(waits[0])))
            if info["output"]:
                comp_pops = comp_waits.get(i, [])
                if i in dm_pops:
                    if comp_pops:
                        raise CompileError(
                            f"output CB '{info['name']}' is popped by both the compute "
                            f"thread (line {_line(comp_pops[0])}) and a data-movement thread (line {_line(dm_pops[i][0])})",
                            loc_of(comp_pops[0]),
                            note="remove the compute thread's pop: the writer thread pops and writes the block",
                        )
                    continue
                self.drop_compute_pops(prog, comp, i, info)
                reserves = comp_fills.get(i, [])
                if reserves:
                    new_threads.append(implicit_thread(prog, i, info, write=True, where=loc_of(reserves[0])))
        for t in new_threads:
            prog.body.block.add_op(t)

    @staticmethod
    def drop_compute_pops(prog: C.ProgramOp, comp: list[C.ThreadOp], i: int, info: dict) -> None:
        """The compute thread's `out_cb.pop()` only marks a block done when the output drains implicitly."""
        for t in comp:
            waits = cb_ops([t], C.CBWaitOp).get(i, [])
            pops = cb_ops([t], C.CBPopOp).get(i, [])
            for w in waits:
                if w.results[0].uses:
                    raise CompileError(
                        f"the compute thread reads back its own output '{info['name']}'",
                        loc_of(w),
                        note="keep the value in a variable instead of popping the output CB",
                    )
                w.detach()
                w.erase()
            for p in pops:
                p.detach()
                p.erase()


def _line(op: Operation) -> str:
    loc = loc_of(op) or "?"
    return loc.rsplit(":", 2)[-2] if ":" in loc else loc
