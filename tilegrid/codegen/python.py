"""Tile IR -> Python source: one generator function per thread, NumPy per DST subblock.

The generated code is what the simulator runs, so a wrong pass shows up as a wrong
answer. One table entry per op, keyed by op class, mirroring the dialect files. Blocking
CB ops become `yield from rt.cb_...`; tile ops become loops over their DST subblocks
whose bodies are vectorised NumPy over the whole subblock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, ModuleOp
from xdsl.ir import Operation, SSAValue

from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.ops import CMPI_SYMBOLS, FLOAT_OPS, INDEX_OPS, OPS, _trunc_div
from tilegrid.passes.common import loc_of, program_of

ARITH = {name: o.python for name, o in INDEX_OPS.items()} | {
    name: f"np.float32({{a}} {sym} {{b}})" for name, (_, sym) in FLOAT_OPS.items()
}


def py_float(v: float) -> str:
    if math.isnan(v):
        return "np.float32(np.nan)"
    if math.isinf(v):
        return "np.float32(np.inf)" if v > 0 else "np.float32(-np.inf)"
    return f"np.float32({v!r})"


@dataclass
class ThreadSource:
    """A thread's generated source, and the CBs and semaphores it serves (for deadlock reports:
    who could unblock a thread waiting on them)."""

    name: str
    kind: str
    source: str
    produces: frozenset[int] = frozenset()  # CBs it reserves and pushes
    consumes: frozenset[int] = frozenset()  # CBs it waits for and pops
    signals: frozenset[int] = frozenset()  # semaphores it sets or increments


def thread_roles(ops) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """(CBs produced, CBs consumed, semaphores signalled) by a thread's ops, nested ones included."""
    produces, consumes, signals = set(), set(), set()
    for top in ops:
        for op in top.walk():
            if isinstance(op, C.CBReserveOp | C.CBPushOp):
                produces.add(op.cb.data)
            elif isinstance(op, C.CBWaitOp | C.CBPopOp):
                consumes.add(op.cb.data)
            elif isinstance(op, C.SemSetOp | C.SemIncOp):
                signals.add(op.sem.data)
    return frozenset(produces), frozenset(consumes), frozenset(signals)


@dataclass
class Gen:
    """Emits the Python source of one thread.

    Options of the simulated numerics (the performance model's runs set them): `timing` skips the
    NumPy arithmetic (control flow never depends on data) but keeps every CB, DMA, semaphore and op
    report; `fidelity` applies the matrix unit's math fidelity; `exp` = "approx" computes every exp
    with the SFPU's fast approximation."""

    locs: list[str]
    events: list[Operation]
    lines: list[str] = field(default_factory=list)
    names: dict[SSAValue, str] = field(default_factory=dict)
    indent: int = 1
    loops: bool = field(default_factory=lambda: os.environ.get("TILEGRID_SUBBLOCK_LOOPS", "") not in ("", "0"))
    opened: list[bool] = field(default_factory=list)
    timing: bool = False
    fidelity: str | None = None
    exp: str = "accurate"
    toggles: list[str] = field(default_factory=list)  # ping-pong buffers' toggles (thread-local)

    def name(self, v: SSAValue) -> str:
        if v not in self.names:
            self.names[v] = f"v{len(self.names)}"
        return self.names[v]

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def loc(self, op: Operation) -> int:
        where = loc_of(op) or ""
        if where not in self.locs:
            self.locs.append(where)
        return self.locs.index(where)

    def body(self, ops) -> None:
        for op in ops:
            fn = EMIT.get(type(op))
            if fn is None:
                raise NotImplementedError(f"codegen: no rule for {op.name}")
            fn(self, op)


EMIT: dict[type, Callable[[Gen, Operation], None]] = {}


def rule(*classes: type):
    def deco(fn):
        for c in classes:
            EMIT[c] = fn
        return fn

    return deco


# ---- arith / scf -----------------------------------------------------------------------------


@rule(arith.ConstantOp)
def _constant(g: Gen, op: arith.ConstantOp) -> None:
    v = op.value
    if isinstance(v, FloatAttr):
        g.line(f"{g.name(op.result)} = {py_float(v.value.data)}")
    elif isinstance(v, IntegerAttr):
        val = v.value.data
        if not isinstance(v.type, IndexType) and v.type.width.data == 1:
            val = bool(val)
        g.line(f"{g.name(op.result)} = {val!r}")
    else:
        raise NotImplementedError(f"constant {v}")


@rule(*(c for c in arith.Arith.operations if c.name in ARITH))
def _arith_binary(g: Gen, op: Operation) -> None:
    a, b = (g.name(v) for v in op.operands)
    if op.name in INDEX_OPS and INDEX_OPS[op.name].divides:
        g.line(f"if {b} == 0: rt.zero_division(core, {g.loc(op)})")
    g.line(f"{g.name(op.results[0])} = {ARITH[op.name].format(a=a, b=b)}")


@rule(arith.CmpiOp)
def _cmpi(g: Gen, op: arith.CmpiOp) -> None:
    g.line(f"{g.name(op.result)} = {g.name(op.lhs)} {CMPI_SYMBOLS[op.predicate.value.data]} {g.name(op.rhs)}")


@rule(arith.SelectOp)
def _select(g: Gen, op: arith.SelectOp) -> None:
    c, a, b = (g.name(v) for v in op.operands)
    g.line(f"{g.name(op.result)} = {a} if {c} else {b}")


@rule(arith.IndexCastOp)
def _index_cast(g: Gen, op: Operation) -> None:
    g.line(f"{g.name(op.results[0])} = int({g.name(op.operands[0])})")


@rule(arith.SIToFPOp)
def _sitofp(g: Gen, op: Operation) -> None:
    g.line(f"{g.name(op.results[0])} = np.float32({g.name(op.operands[0])})")


@rule(scf.ForOp)
def _for(g: Gen, op: scf.ForOp) -> None:
    body = op.body.block
    carried = [g.name(a) for a in body.args[1:]]
    for c, init in zip(carried, op.iter_args):
        g.line(f"{c} = {g.name(init)}")
    g.line(f"for {g.name(body.args[0])} in range({g.name(op.lb)}, {g.name(op.ub)}, {g.name(op.step)}):")
    g.indent += 1
    g.line("pass")
    g.body(body.ops)
    g.indent -= 1
    for r, c in zip(op.results, carried):
        g.line(f"{g.name(r)} = {c}")


@rule(scf.IfOp)
def _if(g: Gen, op: scf.IfOp) -> None:
    g.line(f"if {g.name(op.cond)}:")
    for region in (op.true_region, op.false_region):
        g.indent += 1
        g.line("pass")
        if region.blocks:
            g.body(region.block.ops)
        g.indent -= 1
        if region is op.true_region:
            g.line("else:")


@rule(scf.YieldOp)
def _yield(g: Gen, op: scf.YieldOp) -> None:
    parent = op.parent_op()
    if not op.operands:
        return
    if isinstance(parent, scf.ForOp):
        targets = [g.name(a) for a in parent.body.block.args[1:]]
    else:
        targets = [g.name(r) for r in parent.results]
    g.line(f"{', '.join(targets)}, = {', '.join(g.name(v) for v in op.operands)},")


# ---- tilegrid: cores, CBs, DMA ---------------------------------------------------------------


@rule(C.CoreIndexOp)
def _core_index(g: Gen, op: C.CoreIndexOp) -> None:
    g.line(f"{g.name(op.result)} = core.{'r' if op.dim.data == 0 else 'c'}")


@rule(C.CBReserveOp, C.CBWaitOp)
def _cb_take(g: Gen, op: Operation) -> None:
    fn = "cb_reserve" if isinstance(op, C.CBReserveOp) else "cb_wait"
    g.line(f"{g.name(op.results[0])} = yield from rt.{fn}(core, {op.cb.data}, {g.loc(op)})")


def _preempt(g: Gen) -> None:
    """A point where a random schedule may switch threads (after a visible side effect)."""
    g.line("if rt.preempt: yield None")


@rule(C.CBPushOp, C.CBPopOp)
def _cb_give(g: Gen, op: Operation) -> None:
    fn = "cb_push" if isinstance(op, C.CBPushOp) else "cb_pop"
    g.line(f"rt.{fn}(core, {op.cb.data}, {g.loc(op)})")
    _preempt(g)


def _dma(g: Gen, op: Operation, call: str) -> None:
    """A DMA call: its handle is what the runtime returns (None: complete; an observer timing the
    transfer may return one, and then hears the thread's wait)."""
    g.line(f"{g.name(op.results[0])} = {call}")


@rule(C.DMAMcastOp)
def _dma_mcast(g: Gen, op: C.DMAMcastOp) -> None:
    call = f"rt.dma_mcast(core, {op.cb.data}, {g.name(op.src)}, {_tuple(g, op.target)}, {g.loc(op)})"
    _dma(g, op, call)
    _preempt(g)


@rule(C.SemSetOp, C.SemIncOp)
def _sem_update(g: Gen, op: Operation) -> None:
    fn = "sem_set" if isinstance(op, C.SemSetOp) else "sem_inc"
    g.line(f"rt.{fn}(core, {op.sem.data}, {g.name(op.value)}, {_tuple(g, op.target)}, {g.loc(op)})")
    _preempt(g)


@rule(C.SemWaitOp)
def _sem_wait(g: Gen, op: C.SemWaitOp) -> None:
    reset = g.name(op.reset) if op.reset is not None else "None"
    g.line(f"yield from rt.sem_wait(core, {op.sem.data}, {g.name(op.value)}, {reset}, {g.loc(op)})")


def _tuple(g: Gen, vals) -> str:
    return "(" + "".join(f"{g.name(v)}, " for v in vals) + ")"


@rule(C.DMAReadOp)
def _dma_read(g: Gen, op: C.DMAReadOp) -> None:
    call = f"rt.dma_read(core, {op.arg.data}, {_tuple(g, op.indices)}, {g.name(op.dst)}, {g.loc(op)})"
    _dma(g, op, call)
    _preempt(g)


@rule(C.DMAWriteOp)
def _dma_write(g: Gen, op: C.DMAWriteOp) -> None:
    call = f"rt.dma_write(core, {op.arg.data}, {g.name(op.src)}, {_tuple(g, op.indices)}, {g.loc(op)})"
    _dma(g, op, call)


@rule(C.DMAWaitOp)
def _dma_wait(g: Gen, op: Operation) -> None:
    g.line(f"rt.dma_wait(core, {g.name(op.operands[0])})")


@rule(C.PrintOp)
def _print(g: Gen, op: C.PrintOp) -> None:
    if g.timing:
        return
    g.line(f"rt.print(core, {op.label.data!r}, {g.name(op.value)})")


@rule(C.AllocOp)
def _alloc(g: Gen, op: C.AllocOp) -> None:
    """The buffer at its L1 offset; a loop-carried value's buffers alternate between its two places
    (one toggle per place, shared by the buffers coalesced there)."""
    if g.timing:
        g.line(f"{g.name(op.result)} = None")
        return
    if op.offset is None:
        raise NotImplementedError("codegen: a tilegrid.alloc without an L1 offset (allocate-l1 must run first)")
    t = op.result.type
    at = str(op.offset.data)
    if op.pingpong is not None:
        flip = f"_pp{op.offset.data}"
        if flip not in g.toggles:
            g.toggles.append(flip)
        at = f"({op.offset.data} if {flip} else {op.pingpong.data})"
        g.line(f"{flip} = not {flip}")
    g.line(f"{g.name(op.result)} = core.buffer({at}, {t.dims}, {t.dtype!r})")


# ---- tile ops --------------------------------------------------------------------------------


def _subblock_loops(g: Gen, shape: tuple[int, int], sub: tuple[int, int]) -> tuple[str, str]:
    """Open loops over DST subblocks of a block of `shape`; returns the row / col slice texts.

    By default the whole block is one NumPy expression: every element is computed exactly as
    in its subblock (elementwise ops, row-wise reductions and K-accumulating matmuls do not
    depend on how output tiles are grouped), and the subblock's DST need is checked by
    `rt.dst_acquire` and the op verifiers. TILEGRID_SUBBLOCK_LOOPS=1 emits the loops."""
    (rows, cols), (h, w) = shape, sub
    sh, sw = min(rows, 32 * h), min(cols, 32 * w)
    if not g.loops or (sh == rows and sw == cols):
        g.opened.append(False)
        return f"0:{rows}", f"0:{cols}"
    g.opened.append(True)
    r, c = f"_r{g.indent}", f"_c{g.indent}"
    g.line(f"for {r} in range(0, {rows}, {sh}):")
    g.indent += 1
    g.line(f"for {c} in range(0, {cols}, {sw}):")
    g.indent += 1
    return f"{r}:{r} + {sh}", f"{c}:{c} + {sw}"


def _close(g: Gen) -> None:
    if g.opened.pop():
        g.indent -= 2


def _observe(g: Gen, op: Operation) -> None:
    """Report the op (a typed event: the tile IR op itself) and its tile operations to the observer,
    if there is one."""
    if op not in g.events:
        g.events.append(op)
    g.line(f"if obs: rt.op(core, {g.events.index(op)}, {T.op_tiles(op)}, {g.loc(op)})")


def _unpack(expr: str, v: SSAValue, copy: bool = False) -> str:
    """A block (or slice) of L1 as the math engines see it: fp32 (a bf16 block is widened, exactly)."""
    if v.type.dtype == "bf16":
        return f"{expr}.astype(np.float32)"
    return f"{expr}.copy()" if copy else expr


def _in_slice(src: tuple[int, int], rs: str, cs: str) -> str:
    """Slice of an input for the current subblock; a vector dimension is not sliced (broadcast)."""
    return f"[{rs if src[0] != 1 else '0:1'}, {cs if src[1] != 1 else '0:1'}]"


@rule(T.ComputeOp)
def _compute(g: Gen, op: T.ComputeOp) -> None:
    shape, sub = op.shape, op.subblock_shape
    assert sub is not None, "allocate-dst must run before codegen"
    slots = 1 + max((o.dst.data for o in op.body.block.ops if getattr(o, "dst", None) is not None), default=0)
    ins = [g.name(v) for v in op.ins]
    scalars = [g.name(v) for v in op.scalars]
    outs = [g.name(v) for v in op.outs]
    loc = g.loc(op)
    g.line(f"rt.dst_acquire({slots * sub[0] * sub[1]}, {loc})")
    if g.timing:
        _observe(g, op)
        return
    rs, cs = _subblock_loops(g, shape, sub)
    tv: dict[SSAValue, str] = dict(zip(op.body.block.args, scalars))
    for k, o in enumerate(op.body.block.ops):
        t = f"t{k}"
        if isinstance(o, T.LoadOp):
            src = op.ins[o.input.data]
            load = f"{ins[o.input.data]}{_in_slice(src.type.dims, rs, cs)}"
            # unpacked into DST (fp32): a copy when an output is packed over the same buffer (in place)
            g.line(f"{t} = {_unpack(load, src, copy=src in op.outs)}")
        elif isinstance(o, T.FillOp):
            g.line(f"{t} = {py_float(o.value.value.data)}")
        elif isinstance(o, T.IotaOp):
            sl = rs if o.dim.data == 0 else cs
            start = sl.split(":")[0]
            n = f"({sl.split(':')[1]}) - {start}"
            shape_expr = f"(({n}), 1)" if o.dim.data == 0 else f"(1, ({n}))"
            g.line(f"{t} = np.arange({start}, {start} + {n}, dtype=np.float32).reshape{shape_expr}")
        elif isinstance(o, T.ELEMENTWISE):
            d = o.OP
            if d.name == "exp" and g.exp == "approx":  # the run's exp mode: every exp approximate
                d = OPS["exp_approx"]
            args = [tv[v] for v in o.operands]
            if d.scalable and len(args) == 2:  # exp(x * scale) in one op
                args = [f"({args[0]} * {args[1]})"]
            args += [repr(v) for v in o.params().values()]
            g.line(f"{t} = OP_{d.name}({', '.join(args)})")
        elif isinstance(o, T.PackOp):  # packed into L1 in the output's format (a bf16 output rounds)
            g.line(f"{outs[o.output.data]}[{rs}, {cs}] = {tv[o.x]}")
            continue
        else:
            raise NotImplementedError(o.name)
        if o.results:
            tv[o.results[0]] = t
    _close(g)
    _observe(g, op)


@rule(T.MatmulOp)
def _matmul(g: Gen, op: T.MatmulOp) -> None:
    a, b, out = g.name(op.a), g.name(op.b), g.name(op.out)
    sub = op.subblock_shape
    g.line(f"rt.dst_acquire({sub[0] * sub[1]}, {g.loc(op)})")
    if g.timing:
        _observe(g, op)
        return
    rs, cs = _subblock_loops(g, op.out.type.dims, sub)
    acc = f" + {_unpack(f'{g.name(op.acc)}[{rs}, {cs}]', op.acc)}" if op.acc is not None else ""
    lhs = _unpack(f"{a}[{rs}, :]", op.a)
    rhs = _unpack(f"{b}[{cs}, :]", op.b) + ".T" if op.b_transposed else _unpack(f"{b}[:, {cs}]", op.b)
    if g.fidelity:  # the matrix unit's fidelity phases (tilegrid/numerics.py)
        prod = f"fidelity_matmul({lhs}, {rhs}, {g.fidelity!r})"
    else:
        prod = f"np.matmul({lhs}, {rhs})"
    g.line(f"{out}[{rs}, {cs}] = {prod}{acc}")
    _close(g)
    _observe(g, op)


@rule(T.ReduceOp)
def _reduce(g: Gen, op: T.ReduceOp) -> None:
    x, out = g.name(op.x), g.name(op.out)
    sub = op.subblock_shape
    fn = "max" if op.kind.data == "max" else "sum"
    extra = "" if fn == "max" else ", dtype=np.float32"
    g.line(f"rt.dst_acquire({sub[0] * sub[1]}, {g.loc(op)})")
    if g.timing:
        _observe(g, op)
        return
    rs, cs = _subblock_loops(g, op.out.type.dims, sub)
    red = (f"{_unpack(f'{x}[{rs}, :]', op.x)}.{fn}(axis=1, keepdims=True{extra})" if op.dim.data == 1
           else f"{_unpack(f'{x}[:, {cs}]', op.x)}.{fn}(axis=0, keepdims=True{extra})")
    if op.acc is not None:  # the reduction continues from `acc`, reloaded into DST
        a = _unpack(f"{g.name(op.acc)}[{rs}, {cs}]", op.acc)
        red = f"np.maximum({a}, {red})" if fn == "max" else f"({a} + {red})"
    g.line(f"{out}[{rs}, {cs}] = {red}")
    _close(g)
    _observe(g, op)


@rule(T.TransposeOp)
def _transpose(g: Gen, op: T.TransposeOp) -> None:
    x, out = g.name(op.x), g.name(op.out)
    sub = op.subblock_shape
    g.line(f"rt.dst_acquire({sub[0] * sub[1]}, {g.loc(op)})")
    if g.timing:
        _observe(g, op)
        return
    rs, cs = _subblock_loops(g, op.out.type.dims, sub)
    g.line(f"{out}[{rs}, {cs}] = {x}[{cs}, {rs}].T")
    _close(g)
    _observe(g, op)


# ---- module ----------------------------------------------------------------------------------


def generate(module: ModuleOp, *, timing: bool = False, fidelity: str | None = None,
             exp: str = "accurate") -> tuple[list[ThreadSource], list[str], list[Operation]]:
    """Python source for every thread of the program, the table of source locations and the table
    of reported ops (see `Gen` for the options)."""
    prog = program_of(module)
    locs: list[str] = []
    events: list[Operation] = []
    out = []
    for th in prog.threads:
        g = Gen(locs, events, timing=timing, fidelity=fidelity, exp=exp)
        g.line("obs = rt.observer is not None")
        g.line("if False:")
        g.line("    yield None")
        g.body(th.body.block.ops)
        g.lines[1:1] = [f"    {t} = False" for t in g.toggles]
        fname = f"thread_{len(out)}"
        src = f"def {fname}(rt, core):\n" + "\n".join(g.lines) + "\n"
        out.append(ThreadSource(th.thread_name.data, th.kind.data, src, *thread_roles(th.body.block.ops)))
    return out, locs, events


def load(sources: list[ThreadSource]) -> list[Callable]:
    """Compile generated sources into generator functions."""
    import numpy as np

    from tilegrid.numerics import fidelity_matmul

    fns = []
    for k, s in enumerate(sources):
        ns = {"np": np, "math": math, "fidelity_matmul": fidelity_matmul,
              "_trunc_div": _trunc_div, **{f"OP_{name}": d.sim for name, d in OPS.items()}}
        exec(compile(s.source, f"<tilegrid thread {s.name}>", "exec"), ns)
        fns.append(ns[f"thread_{k}"])
    return fns
