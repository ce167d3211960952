"""Pair every CB's pushes with its pops by matching the control flow of the two threads.

On a Tensix core a data-movement thread fills a CB slot by DMA and pushes it; the compute
thread pops it. On a GPU there is one program per core and no queue: the block the compute
thread pops becomes the load the paired DMA describes. That needs a proof that the n-th
pop of every run of the compute thread meets the n-th push, and what that push holds.

The proof is structural. For one CB, each thread's skeleton is its tree of `scf.for` /
`scf.if` ops that contain events of the CB (pushes in the producer, pops in the consumer).
Two skeletons match when, position by position: events meet events; loops meet loops with
the same bounds (the same expressions of core indices, matched loop variables and
constants); ifs meet ifs on the same condition. A producer `if` whose every branch matches
the consumer on its own (the multicast sender / receiver split) is accepted when every
branch delivers the same block, and symmetrically for the consumer. Loops with one
constant trip count are inlined. Anything else is refused with an error naming the CB
and the lines of both threads.

Index arithmetic is compared and carried over as `Expr` trees (tuples): `("c", value)`,
`("core", dim)`, `("v", compute_value)` for the compute thread's loop variables and values,
and `(arith op name, predicate, *operands)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import FloatAttr, IntegerAttr
from xdsl.ir import Block, BlockArgument, Operation, SSAValue

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.ops import CMPI_OPS, INDEX_OPS
from tilegrid.passes.common import loc_of

Expr = tuple


class Unprovable(Exception):
    """The pairing cannot be proven; `op` is where it failed (for the error's line)."""

    def __init__(self, message: str, op: Operation | None = None) -> None:
        super().__init__(message)
        self.op = op


# --------------------------------------------------------------------------- expressions

PURE_INDEX_OPS = set(INDEX_OPS) | {"arith.cmpi", "arith.select", "arith.constant", "arith.index_cast",
                                   "tilegrid.core_index"}


def const_value(op: arith.ConstantOp) -> Any:
    v = op.value
    if isinstance(v, IntegerAttr):
        x = v.value.data
        if getattr(v.type, "width", None) is not None and v.type.width.data == 1:
            return bool(x)
        return int(x)
    if isinstance(v, FloatAttr):
        return float(v.value.data)
    raise Unprovable(f"unsupported constant {v}", op)


def canon(v: SSAValue, env: dict[SSAValue, Expr]) -> Expr:
    """The value's expression tree, folded; `env` names loop variables (and compute values)."""
    if v in env:
        return env[v]
    if isinstance(v, BlockArgument):
        raise Unprovable("an index depends on a loop whose counterpart in the other thread was not matched")
    op = v.owner
    if isinstance(op, arith.ConstantOp):
        return ("c", const_value(op))
    if isinstance(op, C.CoreIndexOp):
        return ("core", op.dim.data)
    if isinstance(op, arith.IndexCastOp):
        return canon(op.operands[0], env)
    name = op.name
    if name == "arith.cmpi":
        pred = op.predicate.value.data
        if pred not in CMPI_OPS:
            raise Unprovable(f"unsupported comparison predicate {pred}", op)
        a, b = (canon(x, env) for x in op.operands)
        if a[0] == "c" and b[0] == "c":
            return ("c", bool(CMPI_OPS[pred][0](a[1], b[1])))
        return ("cmp", pred, a, b)
    if name == "arith.select":
        c, a, b = (canon(x, env) for x in op.operands)
        if c[0] == "c":
            return a if c[1] else b
        return ("select", c, a, b)
    if name in INDEX_OPS:
        a, b = (canon(x, env) for x in op.operands)
        if a[0] == "c" and b[0] == "c":
            return ("c", INDEX_OPS[name].fold(a[1], b[1]))
        if name in ("arith.andi", "arith.ori"):
            for x, y in ((a, b), (b, a)):
                if x[0] == "c" and isinstance(x[1], bool):
                    if name == "arith.andi":
                        return y if x[1] else ("c", False)
                    return ("c", True) if x[1] else y
        if name == "arith.addi":
            if a == ("c", 0):
                return b
            if b == ("c", 0):
                return a
        if name == "arith.subi" and b == ("c", 0):
            return a
        if name == "arith.muli":
            if a == ("c", 1):
                return b
            if b == ("c", 1):
                return a
        return (name, a, b)
    raise Unprovable(f"an index is computed by {name}, which the GPU backend cannot carry between threads", op)


def depends_on_core(e: Expr, dim: int) -> bool:
    if e[0] == "core":
        return e[1] == dim
    if e[0] in ("c", "v"):
        return False
    return any(depends_on_core(x, dim) for x in e[1:] if isinstance(x, tuple))


# --------------------------------------------------------------------------- skeletons


@dataclass
class Node:
    kind: str  # "ev", "for", "if"
    op: Operation
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


def _is_event(op: Operation, cb: int, events: tuple[type, ...]) -> bool:
    return isinstance(op, events) and op.cb.data == cb


def skeleton(block: Block, cb: int, events: tuple[type, ...]) -> list[Node]:
    out: list[Node] = []
    for op in block.ops:
        if _is_event(op, cb, events):
            out.append(Node("ev", op))
        elif isinstance(op, scf.ForOp):
            body = skeleton(op.body.block, cb, events)
            if body:
                out.append(Node("for", op, body))
        elif isinstance(op, scf.IfOp):
            then = skeleton(op.true_region.block, cb, events)
            orelse = skeleton(op.false_region.block, cb, events) if op.false_region.blocks else []
            if then or orelse:
                out.append(Node("if", op, then, orelse))
    return out


# --------------------------------------------------------------------------- matching


@dataclass
class Pair:
    dm_event: Operation
    compute_event: Operation
    env: dict[SSAValue, Expr]  # data-movement values -> expressions of compute values


class Matcher:
    """Matches a data-movement thread's skeleton against the compute thread's for one CB."""

    def __init__(self) -> None:
        self.pairs: list[Pair] = []

    def _expand(self, nodes: list[Node], env: dict) -> list[Node]:
        """Inline loops of one constant trip (binding their variable to the lower bound)."""
        out: list[Node] = []
        for n in nodes:
            if n.kind == "for":
                try:
                    lb, ub, st = (canon(x, env) for x in (n.op.lb, n.op.ub, n.op.step))
                except Unprovable:
                    lb = ub = st = None
                if lb and lb[0] == ub[0] == st[0] == "c" and len(range(lb[1], ub[1], st[1])) == 1:
                    env[n.op.body.block.args[0]] = ("c", lb[1])
                    out.extend(self._expand(n.body, env))
                    continue
            out.append(n)
        return out

    def match(self, dm: list[Node], cp: list[Node], env: dict, cenv: dict) -> None:
        """`env`: data-movement values -> Expr; `cenv`: compute values -> Expr."""
        dm = self._expand(dm, env)
        cp = self._expand(cp, cenv)
        i = j = 0
        while i < len(dm) or j < len(cp):
            if i == len(dm):
                raise Unprovable("the compute thread pops more blocks here than the data-movement thread pushes",
                                 cp[j].op)
            if j == len(cp):
                raise Unprovable("the data-movement thread pushes more blocks here than the compute thread pops",
                                 dm[i].op)
            p, c = dm[i], cp[j]
            if p.kind == "ev" and c.kind == "ev":
                self.pairs.append(Pair(p.op, c.op, dict(env)))
            elif p.kind == "for" and c.kind == "for":
                pb = [canon(x, env) for x in (p.op.lb, p.op.ub, p.op.step)]
                cb_ = [canon(x, cenv) for x in (c.op.lb, c.op.ub, c.op.step)]
                if pb != cb_:
                    raise Unprovable("the loops around the pushes and the pops have different bounds", p.op)
                env2, cenv2 = dict(env), dict(cenv)
                civ = c.op.body.block.args[0]
                cenv2[civ] = ("v", civ)
                env2[p.op.body.block.args[0]] = ("v", civ)
                self.match(p.body, c.body, env2, cenv2)
            elif p.kind == "if" and c.kind == "if" and canon(p.op.cond, env) == canon(c.op.cond, cenv):
                self.match(p.body, c.body, dict(env), dict(cenv))
                self.match(p.orelse, c.orelse, dict(env), dict(cenv))
            elif p.kind == "if":
                cond = canon(p.op.cond, env)
                if cond[0] == "c":
                    self.match((p.body if cond[1] else p.orelse) + dm[i + 1:], cp[j:], env, cenv)
                else:
                    self.match(p.body + dm[i + 1:], cp[j:], dict(env), dict(cenv))
                    self.match(p.orelse + dm[i + 1:], cp[j:], dict(env), dict(cenv))
                return
            elif c.kind == "if":
                self.match(dm[i:], c.body + cp[j + 1:], dict(env), dict(cenv))
                self.match(dm[i:], c.orelse + cp[j + 1:], dict(env), dict(cenv))
                return
            else:
                raise Unprovable(f"a {'loop' if p.kind == 'for' else 'push'} in the data-movement thread meets a "
                                 f"{'loop' if c.kind == 'for' else 'pop'} in the compute thread", p.op)
            i += 1
            j += 1


# --------------------------------------------------------------------------- what a push holds


@dataclass(frozen=True)
class Load:
    """Block `indices` of tensor argument `arg` (Stream units), as compute-thread expressions."""

    arg: int
    indices: tuple[Expr, ...]


@dataclass(frozen=True)
class Store:
    """Write the pushed block to `arg` at `indices` when every `(cond, polarity)` guard holds."""

    arg: int
    indices: tuple[Expr, ...]
    guards: tuple[tuple[Expr, bool], ...]


def _ancestors(op: Operation) -> list[Operation]:
    out = []
    while op is not None:
        out.append(op)
        op = op.parent_op()
    return out


def _dominating(candidates: list[Operation], at: Operation) -> Operation | None:
    """The last candidate that runs before `at` on every path (same block or an enclosing one)."""
    best = None
    anc = _ancestors(at)
    for cand in candidates:
        for a in anc:
            if a.parent_block() is cand.parent_block() and a is not cand:
                blk = a.parent_block()
                ops = list(blk.ops)
                if ops.index(cand) < ops.index(a):
                    best = cand
                break
    return best


def _slot_of_pushes(thread: C.ThreadOp, cb: int) -> dict[Operation, SSAValue]:
    """Each push of `cb` publishes the oldest reserved, unpushed slot."""
    out: dict[Operation, SSAValue] = {}

    def walk(block: Block, fifo: list[SSAValue]) -> list[SSAValue]:
        for op in block.ops:
            if isinstance(op, C.CBReserveOp) and op.cb.data == cb:
                fifo = fifo + [op.result]
            elif isinstance(op, C.CBPushOp) and op.cb.data == cb:
                if not fifo:
                    raise Unprovable("a push with no reserved slot", op)
                out[op] = fifo[0]
                fifo = fifo[1:]
            elif isinstance(op, scf.ForOp):
                walk(op.body.block, list(fifo))
            elif isinstance(op, scf.IfOp):
                a = walk(op.true_region.block, list(fifo))
                b = walk(op.false_region.block, list(fifo)) if op.false_region.blocks else list(fifo)
                fifo = a if a == b else a  # a branch that leaves a slot reserved is caught by the pairing
        return fifo

    walk(thread.body.block, [])
    return out


def _reads_into(thread: C.ThreadOp, slot: SSAValue) -> list[C.DMAReadOp]:
    return [u.operation for u in slot.uses if isinstance(u.operation, C.DMAReadOp) and u.operation.dst == slot]


def load_of_push(thread: C.ThreadOp, push: Operation, slot: SSAValue, env: dict) -> Load:
    """The block a push of an input CB publishes: its dominating DMA read, or the read a
    multicast sender made (a multicast becomes the same plain load on every receiver)."""
    read = _dominating(_reads_into(thread, slot), push)
    if read is not None:
        return Load(read.arg.data, tuple(canon(x, env) for x in read.indices))
    cb = push.cb.data
    mcasts = [op for op in thread.walk() if isinstance(op, C.DMAMcastOp) and op.cb.data == cb]
    if not mcasts:
        raise Unprovable("nothing fills the block pushed here (no DMA read into its slot, no multicast into "
                         "this CB)", push)
    loads = set()
    for m in mcasts:
        src = m.src
        sread = _dominating(_reads_into(thread, src), m)
        if sread is None:
            raise Unprovable("the multicast source block is not filled by a DMA read before the multicast", m)
        idx = tuple(canon(x, env) for x in sread.indices)
        tgt = [canon(x, env) for x in m.target]
        extents = tgt[2:] if len(tgt) == 4 else [("c", 1), ("c", 1)]
        for d in (0, 1):
            if any(depends_on_core(e, d) for e in idx) and not (tgt[d] == ("core", d) and extents[d] == ("c", 1)):
                raise Unprovable(
                    f"the multicast block's DRAM index depends on core_index({d}), along which the multicast "
                    "spreads: receivers cannot recompute it", m)
        loads.add(Load(sread.arg.data, idx))
    if len(loads) != 1:
        raise Unprovable("several multicasts into this CB carry different blocks", push)
    return loads.pop()


def stores_of_wait(thread: C.ThreadOp, wait: C.CBWaitOp, env: dict) -> list[Store]:
    """Where a writer sends the block it waited for: each DMA write of it, with its guards."""
    out = []
    for u in wait.result.uses:
        w = u.operation
        if not isinstance(w, C.DMAWriteOp):
            if isinstance(w, C.DMAMcastOp):
                raise Unprovable("a popped output block is multicast; the GPU backend writes outputs to DRAM only", w)
            continue
        guards = []
        op = w
        while op.parent_block() is not wait.parent_block():
            parent = op.parent_op()
            if parent is None:
                raise Unprovable("the DMA write of this block is not inside the block that waited for it", w)
            if isinstance(parent, scf.IfOp):
                then = op.parent_region() is parent.true_region
                guards.append((canon(parent.cond, env), then))
            elif isinstance(parent, scf.ForOp):
                raise Unprovable("a popped block is written inside a loop of its own", w)
            op = parent
        guards = [(g, pol) for g, pol in guards if g[0] != "c"] if all(
            g[0] != "c" or bool(g[1]) == pol for g, pol in guards) else None
        if guards is None:
            continue  # a write under a condition that is statically false
        out.append(Store(w.arg.data, tuple(canon(x, env) for x in w.indices), tuple(reversed(guards))))
    return out


# --------------------------------------------------------------------------- the whole program


@dataclass
class Pairing:
    loads: dict[Operation, Load]  # compute cb_wait -> load
    stores: dict[Operation, list[Store]]  # compute cb_push (of an output CB) -> stores


def _fail(prog: C.ProgramOp, cb: int, dm: C.ThreadOp | None, compute: C.ThreadOp, e: Unprovable) -> CompileError:
    info = prog.arg_infos()[cb]
    lines = []
    for t in ([dm] if dm is not None else []) + [compute]:
        evs = [loc_of(op) for op in t.walk() if isinstance(op, (C.CBPushOp, C.CBWaitOp)) and op.cb.data == cb]
        evs = [e_.rsplit(":", 2)[1] for e_ in evs if e_]
        if evs:
            lines.append(f"thread '{t.thread_name.data}' at line{'s' if len(evs) > 1 else ''} "
                         f"{', '.join(dict.fromkeys(evs))}")
    where = "; ".join(lines)
    return CompileError(
        f"GPU backend: cannot prove how CB {cb} ('{info['name']}') pairs its pushes with its pops "
        f"({where}): {e}",
        loc_of(e.op) if e.op is not None else None,
        note="the GPU backend turns each pop into the load the paired DMA describes; mirror the compute "
             "thread's loops and ifs in the data-movement thread (same bounds, same conditions)",
    )


def pair_program(prog: C.ProgramOp) -> Pairing:
    threads = prog.threads
    computes = [t for t in threads if t.kind.data == "compute"]
    if len(computes) != 1:
        raise CompileError(f"GPU backend: a program needs exactly one compute thread, got {len(computes)}")
    compute = computes[0]
    dms = [t for t in threads if t.kind.data == "datamovement"]
    for op in compute.walk():
        if isinstance(op, (C.SemSetOp, C.SemIncOp, C.SemWaitOp, C.DMAReadOp, C.DMAWriteOp, C.DMAMcastOp)):
            raise CompileError(f"GPU backend: the compute thread uses {op.name}; only data-movement threads may",
                               loc_of(op))
    loads: dict[Operation, Load] = {}
    stores: dict[Operation, list[Store]] = {}
    for cb, info in enumerate(prog.arg_infos()):
        if info["output"]:
            cev = skeleton(compute.body.block, cb, (C.CBPushOp,))
            owners = [t for t in dms if skeleton(t.body.block, cb, (C.CBWaitOp,))]
        else:
            cev = skeleton(compute.body.block, cb, (C.CBWaitOp,))
            owners = [t for t in dms if skeleton(t.body.block, cb, (C.CBPushOp,))]
        if not cev and not owners:
            continue
        if len(owners) != 1:
            what = "pop" if info["output"] else "push"
            raise _fail(prog, cb, owners[0] if owners else None, compute, Unprovable(
                f"{len(owners)} data-movement threads {what} this CB; the GPU backend needs exactly one"))
        dm = owners[0]
        try:
            m = Matcher()
            if info["output"]:
                m.match(skeleton(dm.body.block, cb, (C.CBWaitOp,)), cev, {}, {})
                for p in m.pairs:
                    stores.setdefault(p.compute_event, [])
                    for s in stores_of_wait(dm, p.dm_event, p.env):
                        if s not in stores[p.compute_event]:
                            stores[p.compute_event].append(s)
            else:
                m.match(skeleton(dm.body.block, cb, (C.CBPushOp,)), cev, {}, {})
                slots = _slot_of_pushes(dm, cb)
                for p in m.pairs:
                    ld = load_of_push(dm, p.dm_event, slots[p.dm_event], p.env)
                    old = loads.get(p.compute_event)
                    if old is not None and old != ld:
                        raise Unprovable("this pop meets pushes of different blocks on different paths",
                                         p.compute_event)
                    loads[p.compute_event] = ld
        except Unprovable as e:
            raise _fail(prog, cb, dm, compute, e) from None
    return Pairing(loads, stores)
