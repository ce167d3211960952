"""Block IR (the pipeline's "block" level, after fuse-elementwise) -> Triton source.

One Triton program instance per grid core (`program_id(0)` = row * cols + col), and one per
iteration of the compute thread's outermost loop when that loop carries nothing (a virtual
core: `program_id(1)`). The compute thread's ops become Triton statements in order:

- a CB pop becomes the `tl.load` its paired DMA describes (`pairing.py`); a push of an
  output CB becomes the `tl.store` of the paired writer's DMA, under the writer's conditions;
- loop-carried blocks stay in registers (loop-carried Triton variables, fp32);
- every intermediate block is fp32 in registers, except what `astype("bf16")` rounds (a bf16
  tensor, the same values the simulator holds); a matmul runs on the tensor cores in bf16 when
  either operand is a bf16 block (fp32 accumulation), in exact fp32 otherwise;
- a matmul with an accumulator (fuse-accumulate's `acc + A @ B`) is `tl.dot(A, B, acc=acc)`; an
  exp with a scale (fold-exp-scale's `exp(x * s)`) is `exp2(x * s')` with `s' = s * log2(e)`;
- elementwise ops are spelled by the op table (tilegrid/ops.py, `OpDef.triton`);
- CB depth (double buffering) becomes software pipelining: `num_stages` of the launch;
- semaphores and multicasts disappear (each receiver loads the block itself).

Triton tensors have power-of-two shapes: a block dimension that is not one (96 = 3 tiles)
is padded; loads fill the padding with zeros, stores and reductions mask it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import FloatAttr, IntegerAttr
from xdsl.ir import Block, Operation, SSAValue

from tilegrid.errors import CompileError
from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.ir.core import BlockType, block_dims
from tilegrid.ops import CMPI_OPS, FLOAT_OPS, INDEX_OPS
from tilegrid.passes.common import loc_of
from tilegrid.targets.gpu.pairing import Expr, Load, Pairing, Store

LOG2E = 1.4426950408889634
PRELUDE = '''import triton
import triton.language as tl


@triton.jit
def _floordiv(a, b):
    q = a // b
    return tl.where((q * b != a) & ((a < 0) != (b < 0)), q - 1, q)
'''
# Under TRITON_INTERPRET=1 scalars derived from tl.program_id are 1-element arrays, which
# Python's range() rejects; the interpreter runs the kernel body as Python, so a plain helper
# turns loop bounds into ints there (compiled kernels never see it).
INTERPRETER_PRELUDE = '''

def _bound(x):
    return int(x.handle.data.reshape(-1)[0]) if hasattr(x, "handle") else int(x)
'''


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


def p2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def flit(x: float) -> str:
    if math.isnan(x):
        return 'float("nan")'
    if math.isinf(x):
        return '-float("inf")' if x < 0 else 'float("inf")'
    return repr(float(x))


@dataclass
class V:
    """A value in the generated code: a block (Triton tensor) or a scalar."""

    expr: str | None  # a name, or None for a folded constant (`const`)
    kind: str = "block"  # "block", "int", "float", "bool"
    const: Any = None  # folded scalar
    tshape: tuple[int, int] = (1, 1)  # the Triton tensor's shape (broadcastable to `full`)
    real: tuple[int, int] = (1, 1)  # the block's shape in elements
    dtype: str = "f32"  # "bf16", "f32" or "bool" (comparisons)
    block_dtype: str = "f32"  # the block's declared data format
    zpad: bool = True  # the padding of a padded dimension holds zeros

    @property
    def full(self) -> tuple[int, int]:
        return p2(self.real[0]), p2(self.real[1])


@dataclass
class GpuSource:
    """The generated Triton module and how to launch it."""

    kernel: str
    source: str
    function: str
    grid: tuple[int, int]
    num_warps: int
    num_stages: int
    args: list[dict] = field(default_factory=list)


class Lowering:
    def __init__(self, prog: C.ProgramOp, pairing: Pairing, virtual: bool = True) -> None:
        self.prog = prog
        self.pairing = pairing
        self.args = prog.arg_infos()
        self.vals: dict[SSAValue, V] = {}
        self.lines: list[str] = []
        self.ind = 1
        self.n = 0
        self.reserved: dict[int, list[SSAValue]] = {}
        self.stored: dict[SSAValue, V] = {}
        self.virtual = virtual
        self.grid1 = 1
        self.max_dot = 0
        self.stages = 1
        # what some generated names hold, for the one-line / one-row reduction below (`reduce_line`)
        self.loaded: dict[str, tuple] = {}  # a loaded block: (arg, base offset, row length, rows, cols)
        self.iota: dict[str, int] = {}  # a row (0) or column (1) index block
        self.line_mask: dict[str, tuple[int, float]] = {}  # iota == constant: (dim, index)
        self.selects: dict[str, tuple] = {}  # where(c, a, b): (c, a, b)
        self.fills: dict[str, float] = {}  # a filled block

    # ------------------------------------------------------------------ helpers
    def fresh(self, p: str = "v") -> str:
        self.n += 1
        return f"{p}{self.n}"

    def line(self, s: str) -> None:
        self.lines.append("    " * self.ind + s)

    def err(self, op: Operation, msg: str) -> CompileError:
        return CompileError(f"GPU backend: {msg}", loc_of(op))

    def get(self, v: SSAValue) -> V:
        x = self.vals.get(v)
        if x is None:
            raise CompileError(f"GPU backend: internal error: no value for {v}")
        return x

    def scal(self, v: SSAValue) -> str:
        x = self.get(v)
        if x.const is not None:
            return flit(x.const) if isinstance(x.const, float) else repr(x.const)
        return x.expr

    def f32(self, x: V) -> str:
        if x.const is not None:
            return flit(float(x.const))
        if x.dtype in ("bf16", "bool") or x.kind in ("int", "bool"):
            return f"{x.expr}.to(tl.float32)"
        return x.expr

    def full_f32(self, x: V) -> str:
        e = self.f32(x)
        if x.kind != "block":
            return e
        if x.tshape != x.full:
            e = f"tl.broadcast_to({e}, {x.full})"
        return e

    def assign(self, expr: str, **kw) -> V:
        name = self.fresh()
        self.line(f"{name} = {expr}")
        return V(name, **kw)

    def ex(self, e: Expr) -> str:
        """A pairing expression as Triton code in the compute thread's scope."""
        tag = e[0]
        if tag == "c":
            return repr(e[1])
        if tag == "core":
            return f"core{e[1]}"
        if tag == "v":
            return self.scal(e[1])
        if tag == "cmp":
            return f"({self.ex(e[2])} {CMPI_OPS[e[1]][1]} {self.ex(e[3])})"
        if tag == "select":
            return f"tl.where({self.ex(e[1])}, {self.ex(e[2])}, {self.ex(e[3])})"
        return INDEX_OPS[tag].triton.format(a=self.ex(e[1]), b=self.ex(e[2]))

    # ------------------------------------------------------------------ memory
    def _offsets(self, arg: int, indices: tuple[str, ...], rows: int, cols: int) -> tuple[str, str | None]:
        info = self.args[arg]
        shape = info["shape"]
        br, bc = block_dims(info)
        if (br, bc) != (rows, cols):
            raise CompileError(f"GPU backend: a {rows}x{cols} CB block moved to or from '{info['name']}' whose "
                               f"stream blocks are {br}x{bc}")
        strides = [1] * len(shape)
        for d in range(len(shape) - 2, -1, -1):
            strides[d] = strides[d + 1] * shape[d + 1]
        lead = len(shape) - 2
        if len(indices) != len(shape):
            raise CompileError(f"GPU backend: '{info['name']}' indexed with {len(indices)} indices")
        terms = [f"{indices[d]} * {strides[d]}" for d in range(lead)]
        terms.append(f"{indices[lead]} * {br * shape[-1]}")
        terms.append(f"{indices[lead + 1]} * {bc}")
        base = " + ".join(terms)
        if math.prod(shape) >= 2**31:
            base = f"({base}).to(tl.int64)"
        pr, pc = p2(br), p2(bc)
        offs = f"tl.arange(0, {pr})[:, None] * {shape[-1]} + tl.arange(0, {pc})[None, :]"
        masks = []
        if pr != br:
            masks.append(f"(tl.arange(0, {pr})[:, None] < {br})")
        if pc != bc:
            masks.append(f"(tl.arange(0, {pc})[None, :] < {bc})")
        return f"a{arg} + {base} + {offs}", (" & ".join(masks) if masks else None)

    def emit_load(self, op: C.CBWaitOp, ld: Load) -> None:
        t: BlockType = op.result.type
        r, c = t.dims
        ptr, mask = self._offsets(ld.arg, tuple(self.ex(e) for e in ld.indices), r, c)
        extra = f", mask={mask}, other=0.0" if mask else ""
        dt = self.args[ld.arg]["dtype"]
        self.vals[op.result] = self.assign(f"tl.load({ptr}{extra})", tshape=(p2(r), p2(c)), real=(r, c),
                                           dtype=dt, block_dtype=t.dtype, zpad=True)
        self.loaded[self.vals[op.result].expr] = (ld.arg, tuple(self.ex(e) for e in ld.indices), r, c)
        self.stages = max(self.stages, self.args[op.cb.data]["depth"] + 1)

    def emit_store(self, op: Operation, st: Store, value: V, slot_t: BlockType) -> None:
        r, c = slot_t.dims
        ptr, mask = self._offsets(st.arg, tuple(self.ex(e) for e in st.indices), r, c)
        v = self.f32(value)
        if value.tshape != (p2(r), p2(c)):
            v = f"tl.broadcast_to({v}, {(p2(r), p2(c))})"
        if self.args[st.arg]["dtype"] == "bf16":
            v = f"({v}).to(tl.bfloat16)"
        extra = f", mask={mask}" if mask else ""
        guards = [(self.ex(g) if pol else f"({self.ex(g)} == 0)") for g, pol in st.guards]
        if guards:
            self.line(f"if {' & '.join(guards)}:")
            self.ind += 1
        self.line(f"tl.store({ptr}, {v}{extra})")
        if guards:
            self.ind -= 1

    # ------------------------------------------------------------------ entry
    def run(self) -> GpuSource:
        compute = [t for t in self.prog.threads if t.kind.data == "compute"][0]
        gr, gc = self.prog.grid_shape
        name = "tg_" + self.prog.kernel.data
        body_ops = list(compute.body.block.ops)
        vloop = self.virtual_loop(body_ops) if self.virtual else None
        self.line("pid = tl.program_id(0)")
        self.line(f"core0 = pid // {gc}")
        self.line(f"core1 = pid % {gc}")
        for op in body_ops:
            if op is vloop:
                lb, ub, st = (self.get(x).const for x in (op.lb, op.ub, op.step))
                self.grid1 = len(range(lb, ub, st))
                iv = self.fresh("t")
                self.line(f"{iv} = {lb} + tl.program_id(1) * {st}")
                self.vals[op.body.block.args[0]] = V(iv, kind="int")
                self.emit_block(op.body.block)
            else:
                self.emit_op(op)
        head = f"@triton.jit\ndef {name}({', '.join(f'a{i}' for i in range(len(self.args)))}):"
        prelude = PRELUDE + (INTERPRETER_PRELUDE if interpreting() else "")
        src = prelude + "\n\n" + head + "\n" + "\n".join(self.lines) + "\n"
        warps = 8 if self.max_dot >= 128 * 128 else 4
        return GpuSource(self.prog.kernel.data, src, name, (gr * gc, self.grid1), warps, max(2, min(self.stages, 4)),
                         self.args)

    def virtual_loop(self, ops: list[Operation]) -> scf.ForOp | None:
        """The outermost loop, when it carries nothing and everything else at top level is index math."""
        loops = [op for op in ops if isinstance(op, scf.ForOp)]
        if len(loops) != 1 or loops[0].iter_args:
            return None
        for op in ops:
            if op is loops[0]:
                continue
            if op.name not in ("arith.constant", "tilegrid.core_index") and not op.name.startswith("arith."):
                return None
        loop = loops[0]
        for x in (loop.lb, loop.ub, loop.step):
            o = x.owner
            if not isinstance(o, arith.ConstantOp):
                return None
        return loop

    # ------------------------------------------------------------------ ops
    def emit_block(self, block: Block) -> list[V] | None:
        for op in block.ops:
            if isinstance(op, (scf.YieldOp, B.YieldOp)):
                return [self.get(v) for v in op.operands]
            self.emit_op(op)
        return None

    def emit_op(self, op: Operation) -> None:
        if isinstance(op, arith.ConstantOp):
            v = op.value
            if isinstance(v, IntegerAttr):
                x = v.value.data
                is_bool = getattr(v.type, "width", None) is not None and v.type.width.data == 1
                self.vals[op.result] = V(None, kind="bool" if is_bool else "int", const=bool(x) if is_bool else int(x))
            elif isinstance(v, FloatAttr):
                self.vals[op.result] = V(None, kind="float", const=float(v.value.data))
            else:
                raise self.err(op, f"unsupported constant {v}")
        elif isinstance(op, C.CoreIndexOp):
            self.vals[op.result] = V(f"core{op.dim.data}", kind="int")
        elif op.name.startswith("arith."):
            self.emit_arith(op)
        elif isinstance(op, scf.ForOp):
            self.emit_for(op)
        elif isinstance(op, scf.IfOp):
            self.emit_if(op)
        elif isinstance(op, C.CBWaitOp):
            ld = self.pairing.loads.get(op)
            if ld is None:
                raise self.err(op, f"the pop of CB {op.cb.data} ('{self.args[op.cb.data]['name']}') has no paired "
                                   "push in a data-movement thread")
            self.emit_load(op, ld)
        elif isinstance(op, (C.CBPopOp, C.PrintOp)):
            pass
        elif isinstance(op, C.CBReserveOp):
            self.reserved.setdefault(op.cb.data, []).append(op.result)
        elif isinstance(op, B.StoreOp):
            self.stored[op.dst] = self.get(op.value)
        elif isinstance(op, C.CBPushOp):
            self.emit_push(op)
        elif isinstance(op, B.FusedOp):
            for barg, x in zip(op.body.block.args, op.inputs):
                self.vals[barg] = self.vals[x]
            ys = self.emit_block(op.body.block) or []
            for res, y in zip(op.results, ys):
                self.vals[res] = self.retype(y, res.type)
        else:
            self.emit_block_op(op)

    def retype(self, y: V, t: BlockType) -> V:
        return V(y.expr, y.kind, y.const, y.tshape, t.dims, y.dtype, t.dtype, y.zpad)

    def emit_push(self, op: C.CBPushOp) -> None:
        cb = op.cb.data
        fifo = self.reserved.get(cb) or []
        if not fifo:
            raise self.err(op, f"push of CB {cb} with no reserved block")
        slot = fifo.pop(0)
        if not self.args[cb]["output"]:
            raise self.err(op, f"the compute thread pushes input CB {cb} ('{self.args[cb]['name']}'); the GPU "
                               "backend supports compute threads that only pop inputs and push outputs")
        value = self.stored.get(slot)
        if value is None:
            raise self.err(op, f"the block pushed to CB {cb} ('{self.args[cb]['name']}') was never stored")
        for st in self.pairing.stores.get(op, []):
            self.emit_store(op, st, value, slot.type)

    def emit_arith(self, op: Operation) -> None:
        name = op.name
        ins = [self.get(x) for x in op.operands]
        res = op.results[0]
        consts = [x.const for x in ins]
        s = [self.scal(x) for x in op.operands]
        if name in ("arith.index_cast", "arith.extf", "arith.truncf"):
            self.vals[res] = ins[0]
            return
        if name == "arith.sitofp":
            if consts[0] is not None:
                self.vals[res] = V(None, kind="float", const=float(consts[0]))
            else:
                self.vals[res] = self.assign(f"{s[0]}.to(tl.float32)", kind="float")
            return
        if name == "arith.cmpi":
            pred = op.predicate.value.data
            if all(c is not None for c in consts):
                self.vals[res] = V(None, kind="bool", const=bool(CMPI_OPS[pred][0](*consts)))
            else:
                self.vals[res] = self.assign(f"{s[0]} {CMPI_OPS[pred][1]} {s[1]}", kind="bool")
            return
        if name == "arith.select":
            if consts[0] is not None:
                self.vals[res] = ins[1] if consts[0] else ins[2]
            else:
                kind = ins[1].kind
                self.vals[res] = self.assign(f"tl.where({s[0]}, {s[1]}, {s[2]})", kind=kind)
            return
        if name in INDEX_OPS:
            if all(c is not None for c in consts):
                self.vals[res] = V(None, kind=ins[0].kind, const=INDEX_OPS[name].fold(*consts))
                return
            if name in ("arith.andi", "arith.ori"):
                for a, b in ((ins[0], ins[1]), (ins[1], ins[0])):
                    if isinstance(a.const, bool):
                        if name == "arith.andi":
                            self.vals[res] = b if a.const else V(None, kind="bool", const=False)
                        else:
                            self.vals[res] = V(None, kind="bool", const=True) if a.const else b
                        return
            self.vals[res] = self.assign(INDEX_OPS[name].triton.format(a=s[0], b=s[1]), kind=ins[0].kind)
            return
        if name in FLOAT_OPS:
            fold, sym = FLOAT_OPS[name]
            if all(c is not None for c in consts):
                self.vals[res] = V(None, kind="float", const=float(fold(float(consts[0]), float(consts[1]))))
            else:
                self.vals[res] = self.assign(f"{s[0]} {sym} {s[1]}", kind="float")
            return
        if name == "arith.negf":
            self.vals[res] = V(None, kind="float", const=-consts[0]) if consts[0] is not None else \
                self.assign(f"-{s[0]}", kind="float")
            return
        raise self.err(op, f"the GPU backend does not lower {name}")

    def carried_init(self, x: V) -> str:
        if x.kind == "block":
            return self.full_f32(x)
        if x.const is not None:
            dt = {"int": "tl.int32", "float": "tl.float32", "bool": "tl.int1"}[x.kind]
            return f"tl.full((), {flit(x.const) if x.kind == 'float' else repr(x.const)}, {dt})"
        return x.expr

    def carried_v(self, name: str, like: V, t: Any) -> V:
        if isinstance(t, BlockType):
            return V(name, tshape=(p2(t.dims[0]), p2(t.dims[1])), real=t.dims, dtype="f32", block_dtype=t.dtype,
                     zpad=False)
        return V(name, kind=like.kind)

    def emit_for(self, op: scf.ForOp) -> None:
        lb, ub, st = (self.scal(x) for x in (op.lb, op.ub, op.step))
        iv = self.fresh("i")
        names = []
        for x, barg in zip(op.iter_args, op.body.block.args[1:]):
            xv = self.get(x)
            n = self.fresh("c")
            self.line(f"{n} = {self.carried_init(xv)}")
            names.append(n)
            self.vals[barg] = self.carried_v(n, xv, barg.type)
        self.vals[op.body.block.args[0]] = V(iv, kind="int")
        if interpreting():
            lb, ub, st = (f"_bound({x})" for x in (lb, ub, st))
        self.line(f"for {iv} in range({lb}, {ub}, {st}):")
        self.ind += 1
        start = len(self.lines)
        ys = self.emit_block(op.body.block) or []
        tmps = []
        for y in ys:
            t = self.fresh("y")
            self.line(f"{t} = {self.carried_init(y)}")
            tmps.append(t)
        for n, t in zip(names, tmps):
            self.line(f"{n} = {t}")
        if len(self.lines) == start:
            self.line("pass")
        self.ind -= 1
        for res, n, barg in zip(op.results, names, op.body.block.args[1:]):
            self.vals[res] = self.vals[barg]

    def emit_if(self, op: scf.IfOp) -> None:
        c = self.get(op.cond)
        has_else = bool(op.false_region.blocks)
        if c.const is not None:
            blk = op.true_region.block if c.const else (op.false_region.block if has_else else None)
            ys = self.emit_block(blk) if blk is not None else []
            for res, y in zip(op.results, ys or []):
                self.vals[res] = y
            return
        names = [self.fresh("r") for _ in op.results]
        for i, blk in enumerate([op.true_region.block, op.false_region.block if has_else else None]):
            if blk is None:
                continue
            self.line("if " + c.expr + ":" if i == 0 else "else:")
            self.ind += 1
            start = len(self.lines)
            ys = self.emit_block(blk) or []
            for n, y in zip(names, ys):
                self.line(f"{n} = {self.carried_init(y)}")
            if len(self.lines) == start:
                self.line("pass")
            self.ind -= 1
        for res, n in zip(op.results, names):
            like = V(None, kind="block") if isinstance(res.type, BlockType) else V(None, kind="int")
            self.vals[res] = self.carried_v(n, like, res.type)

    # ------------------------------------------------------------------ block math
    def dot_operand(self, x: V, low: bool, inner_dim: int, inner_real: int) -> str:
        if low:
            e = x.expr if x.dtype == "bf16" else f"{self.f32(x)}.to(tl.bfloat16)"
        else:
            e = self.f32(x)
        if x.tshape != x.full:
            e = f"tl.broadcast_to({e}, {x.full})"
        if p2(inner_real) != inner_real and not x.zpad:
            idx = f"tl.arange(0, {p2(inner_real)})" + ("[None, :]" if inner_dim == 1 else "[:, None]")
            e = f"tl.where({idx} < {inner_real}, {e}, 0.0)"
        return e

    def emit_matmul(self, op: B.MatmulOp) -> None:
        t: BlockType = op.result.type
        lhs, rhs = self.get(op.lhs), self.get(op.rhs)
        full = (p2(t.dims[0]), p2(t.dims[1]))
        low = "bf16" in (lhs.block_dtype, rhs.block_dtype)
        k = lhs.real[1]
        a = self.dot_operand(lhs, low, 1, k)
        b = self.dot_operand(rhs, low, 0, k)
        extra = "" if low else ', input_precision="ieee"'
        acc_s, zpad = "", lhs.zpad and rhs.zpad
        if op.acc is not None:
            acc = self.get(op.acc)
            acc_s = f", acc={self.full_f32(acc)}"
            zpad = zpad and acc.zpad
        self.max_dot = max(self.max_dot, full[0] * full[1])
        self.vals[op.result] = self.assign(f"tl.dot({a}, {b}{acc_s}, out_dtype=tl.float32{extra})", tshape=full,
                                           real=t.dims, dtype="f32", block_dtype=t.dtype, zpad=zpad)

    def emit_block_op(self, op: Operation) -> None:
        t = op.results[0].type if op.results else None
        full = (p2(t.dims[0]), p2(t.dims[1])) if isinstance(t, BlockType) else None

        def out(expr: str, tshape, dtype="f32", zpad=False) -> None:
            self.vals[op.results[0]] = self.assign(expr, tshape=tshape, real=t.dims, dtype=dtype,
                                                   block_dtype=t.dtype, zpad=zpad)

        if isinstance(op, B.FillOp):
            out(f"tl.full({full}, {flit(op.value.value.data)}, tl.float32)", full, zpad=op.value.value.data == 0.0)
            self.fills[self.vals[op.results[0]].expr] = float(op.value.value.data)
        elif isinstance(op, B.IotaOp):
            if op.dim.data == 0:
                out(f"tl.arange(0, {full[0]})[:, None].to(tl.float32)", (full[0], 1))
            else:
                out(f"tl.arange(0, {full[1]})[None, :].to(tl.float32)", (1, full[1]))
            self.iota[self.vals[op.results[0]].expr] = op.dim.data
        elif isinstance(op, B.BroadcastOp):
            x = self.get(op.x)
            self.vals[op.results[0]] = V(x.expr, "block", x.const, x.tshape, t.dims, x.dtype, t.dtype, x.zpad)
        elif isinstance(op, B.CopyOp):
            self.emit_copy(op, out)
        elif isinstance(op, B.ElementwiseOp):
            self.emit_elementwise(op, out)
        elif isinstance(op, B.ReduceOp):
            x = self.get(op.x)
            line = self.reduce_line(op, x)
            if line is not None:  # the reduction of one row / column of a loaded block: that line, loaded
                out(line, (1, full[1]) if op.dim.data == 0 else (full[0], 1))
                return
            e = self.full_f32(x)
            d = 1 if op.dim.data == 1 else 0
            real = x.real[d]
            if p2(real) != real:
                ident = '-float("inf")' if op.kind.data == "max" else "0.0"
                idx = f"tl.arange(0, {p2(real)})" + ("[None, :]" if d == 1 else "[:, None]")
                e = f"tl.where({idx} < {real}, {e}, {ident})"
            red = f"{'tl.max' if op.kind.data == 'max' else 'tl.sum'}({e}, axis={d}, keep_dims=True)"
            if op.acc is not None:  # the reduction continues from `acc`
                acc = self.f32(self.get(op.acc))
                red = f"tl.maximum({acc}, {red})" if op.kind.data == "max" else f"{acc} + {red}"
            out(red, full)
        elif isinstance(op, B.TransposeOp):
            x = self.get(op.x)
            e = x.expr if x.dtype == "bf16" else self.full_f32(x)
            if x.tshape != x.full:
                e = f"tl.broadcast_to({e}, {x.full})"
            out(f"tl.trans({e})", full, dtype="bf16" if x.dtype == "bf16" else "f32", zpad=x.zpad)
        elif isinstance(op, B.MatmulOp):
            self.emit_matmul(op)
        else:
            raise self.err(op, f"the GPU backend does not lower {op.name}")

    def reduce_line(self, op: B.ReduceOp, x: V) -> str | None:
        """`colmax(where(row_index == r, X, -inf))` (or colsum with 0, or the row-wise mirror) of a loaded
        block X is row r of X: load that row alone. The same values, without a reduction across the
        block's rows (on a GPU one that crosses warps, through shared memory and barriers, in what is
        often a matmul loop) and without the block's other rows."""
        sel = self.selects.get(x.expr) if x.const is None else None
        if sel is None or op.acc is not None:
            return None
        c, a, b = sel
        ident = -math.inf if op.kind.data == "max" else 0.0
        fill = b.const if b.const is not None else self.fills.get(b.expr)
        if fill is None or float(fill) != ident or c.expr not in self.line_mask or a.expr not in self.loaded:
            return None
        dim, idx = self.line_mask[c.expr]
        arg, indices, r, cols = self.loaded[a.expr]
        n = (r, cols)[dim]  # the lines the mask picks from
        if dim != op.dim.data or idx != int(idx) or not 0 <= idx < n or a.real != (r, cols):
            return None
        ptr, mask = self._offsets(arg, indices, r, cols)
        w = self.args[arg]["shape"][-1]
        i = int(idx)
        if dim == 0:  # row i
            ptr = ptr.replace(f"tl.arange(0, {p2(r)})[:, None] * {w}", f"{i * w} + tl.arange(0, 1)[:, None] * {w}")
            mask = f"(tl.arange(0, {p2(cols)})[None, :] < {cols})" if p2(cols) != cols else None
        else:  # column i
            ptr = ptr.replace(f" + tl.arange(0, {p2(cols)})[None, :]", f" + {i} + tl.arange(0, 1)[None, :]")
            mask = f"(tl.arange(0, {p2(r)})[:, None] < {r})" if p2(r) != r else None
        extra = f", mask={mask}, other=0.0" if mask else ""
        load = f"tl.load({ptr}{extra})"
        return load if self.args[arg]["dtype"] == "f32" else f"{load}.to(tl.float32)"

    def emit_copy(self, op: B.CopyOp, out) -> None:
        """`astype` / a value copy: to bf16 the value is rounded (a bf16 tensor: every use reads the
        rounded value, as on the simulator; the tensor cores take it as it is), to f32 widened."""
        x = self.get(op.x)
        t: BlockType = op.result.type
        if t.dtype == "bf16" and x.dtype != "bf16":
            out(f"{self.f32(x)}.to(tl.bfloat16)", x.tshape, dtype="bf16", zpad=x.zpad)
        else:
            self.vals[op.result] = self.retype(x, t)

    def emit_elementwise(self, op: B.ElementwiseOp, out) -> None:
        d = op.OP
        ins = [self.get(v) for v in op.operands[: d.arity]]
        shape = tuple(max(x.tshape[k] if x.kind == "block" else 1 for x in ins) for k in (0, 1))
        names = ["x"] if d.arity == 1 else ["a", "b"] if d.arity == 2 else ["c", "a", "b"]
        text = {}
        for n, x in zip(names, ins):
            if n == "c":
                text[n] = x.expr if x.dtype == "bool" else f"({self.f32(x)} != 0)"
            else:
                text[n] = self.f32(x) if x.const is None else flit(float(x.const))
        if d.scalable and op.scale is not None:  # exp(x * s) as exp2(x * s * log2(e))
            s = self.get(op.scale)
            s2 = flit(float(s.const) * LOG2E) if s.const is not None else f"({self.f32(s)} * {LOG2E!r})"
            sub = op.x.owner
            if isinstance(sub, B.ElementwiseOp) and sub.OP.name == "sub" and all(
                    isinstance(v.type, BlockType) for v in sub.operands) and self.get(
                    sub.operands[0]).tshape != self.get(sub.operands[1]).tshape:
                # exp((a - b) * s) of a block and a broadcast vector (b a row max): one FMA per element,
                # a * s' - (b * s'). Not for two operands of one shape (the correction factor
                # exp((m - m_new) * s) of two columns): with a == b a huge sentinel (-1e30, a row that has
                # seen no key yet) the FMA leaves the rounding of b * s', and exp2 of that is 0 or inf.
                a, b = (self.f32(self.get(v)) for v in sub.operands)
                out(f"tl.exp2({a} * {s2} - {b} * {s2})", shape)
                return
            out(f"tl.exp2({text['x']} * {s2})", shape)
            return
        text.update({k: flit(v) if isinstance(v, float) else repr(v) for k, v in op.params().items()})
        if d.name == "eq" and len(ins) == 2:
            for a, b in ((ins[0], ins[1]), (ins[1], ins[0])):
                if a.expr in self.iota and isinstance(b.const, (int, float)):
                    out(d.spell("triton", **text), shape, dtype="bool")
                    self.line_mask[self.vals[op.results[0]].expr] = (self.iota[a.expr], float(b.const))
                    return
        if d.name == "where":
            out(d.spell("triton", **text), shape)
            self.selects[self.vals[op.results[0]].expr] = tuple(ins)
            return
        if d.arity == 1:
            for p in d.params:  # the spelling may need the number itself (x ** n)
                text[p.name] = op.params()[p.name] if p.kind is int and callable(d.triton) else text[p.name]
        out(d.spell("triton", **text), shape, dtype="bool" if d.compare else "f32")


def lower_program(prog: C.ProgramOp, pairing: Pairing, virtual: bool = True) -> GpuSource:
    return Lowering(prog, pairing, virtual).run()
