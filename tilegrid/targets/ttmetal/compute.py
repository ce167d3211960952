"""The compute thread -> one tt-metal compute kernel (the same C++ runs on the three TRISCs: unpack,
math and pack; each kernel-API call does its own thread's part).

- A popped CB block is read by the unpacker at page `i` from the CB's read pointer
  (`cb_wait_front` / `cb_pop_front`); a reserved one is written by the packer at page `i` from its
  write pointer (`pack_tile<true>`, `cb_reserve_back` / `cb_push_back`).
- A buffer (`tilegrid.alloc`) is a run of pages of the buffer area (layout.py) at its allocate-l1
  offset; a loop-carried one alternates between its two places (`pingpong`), as on the simulator.
  After an op wrote buffers the packer pushes a page of the `sync` CB; before an op reads one the
  unpacker takes every page pushed since (`pending` counts them on all three TRISCs alike).
- Each tile op runs subblock by subblock, as allocate-dst chose: `tile_regs_acquire`, the math
  (unrolled over the subblock's tiles, op by op), `tile_regs_commit` / `tile_regs_wait`, the packs,
  `tile_regs_release`. DST tile of body slot `s` and subblock tile `t` is `s * h * w + t`.
- A `tile.compute` body is matched to the matrix unit where it can be: a load is `copy_tile` (or
  `unary_bcast`), `a op b` of two loads is `add_tiles` / `any_tiles_bcast` (the broadcast operand
  second), `d op b` with `d` in DST is the dest-reuse form; everything else is an SFPU call
  (spelling.py), recorded so that a simulated run can refuse it by name and line.
- Inits and data-format reconfigurations are emitted only where the op before (in straight-line
  code) left another configuration.
- A matmul that accumulates into a buffer through a loop (`acc = acc + a @ b`, one DST subblock)
  keeps the accumulator in DST for the whole loop, as a hand-written tt-metal matmul does: one
  acquire before the loop (zero when the buffer was just filled with zeros, else the buffer copied
  in); the op after the loop that reads it last (the store, or an elementwise epilogue) runs in the
  same DST section on it where it is; otherwise it is packed into its buffer.
- A DST operand of a dest-reuse op moves to a source register configured fp32 (19 bits, TF32, as an
  fp32 CB describes it), not in the other operand's bf16: chains keep the simulator's precision.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import FloatData
from xdsl.ir import Operation, SSAValue

from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.ops import OPS as OPS_BY_NAME
from tilegrid.ops import OpDef
from tilegrid.passes.allocate_dst import best_subblock
from tilegrid.passes.common import loc_of
from tilegrid.targets.ttmetal.cpp import (
    ScalarWriter,
    collect_rules,
    rule,
    unsupported,
)
from tilegrid.targets.ttmetal.layout import Layout
from tilegrid.targets.ttmetal.spelling import Scalar, SfpuCode, SfpuModes, Speller

HEADERS = ["api/compute/common.h", "api/compute/tile_move_copy.h"]
BCAST = {"row": "BroadcastType::ROW", "col": "BroadcastType::COL", "scalar": "BroadcastType::SCALAR"}


@dataclass
class Buf:
    """Where a block lives: pages from `base` (a C++ expression) of CB `cb` (its constant)."""

    cb: str
    base: str
    tiles: tuple[int, int]
    dtype: str
    kind: str  # "in": a popped CB block; "out": a reserved CB block; "area": a buffer

    def page(self, r: int | str, c: int | str) -> str:
        """The page of tile (r, c) (a vector's broadcast dimension is its only tile)."""
        tr, tc = self.tiles
        row = 0 if tr == 1 else r
        col = 0 if tc == 1 else c
        return lin(self.base, mul(row, tc), col)


def mul(a: int | str, k: int) -> int | str:
    if isinstance(a, str) and a.lstrip("-").isdigit():
        a = int(a)
    if isinstance(a, int):
        return a * k
    if k == 1:
        return a
    return f"({a}) * {k}" if not a.replace("_", "").isalnum() else f"{a} * {k}"  # (sr + 1) * 2, not sr + 1 * 2


def lin(*terms: int | str) -> str:
    """A sum of constants and C++ terms, folded."""
    const = sum(t for t in terms if isinstance(t, int))
    for t in terms:
        if isinstance(t, str) and t.lstrip("-").isdigit():
            const += int(t)
    parts = [t for t in terms if isinstance(t, str) and not t.lstrip("-").isdigit()]
    if const or not parts:
        parts.append(str(const))
    return " + ".join(parts)


@dataclass
class Engine:
    """What the unpacker, math and packer are configured for (None: unknown)."""

    srca: str | None = None
    srcb: str | None = None
    pack: str | None = None
    init: str | None = None


@dataclass
class Instr:
    """One step of a compute body, applied to every tile of a subblock."""

    kind: str  # copy, bcast, iota (bcast: its dim; modulo: its tile rows / columns repeat every `modulo`), fpu,
    #            reuse, sfpu
    slot: int  # the DST slot of its result
    inputs: tuple[int, ...] = ()  # the compute's inputs it unpacks
    bcast: str = "none"
    op: OpDef | None = None
    reuse: str = ""  # DEST_TO_SRCA / DEST_TO_SRCB
    code: SfpuCode | None = None  # an SFPU step's code, DST slots written @slot
    loc: str | None = None
    name: str = ""  # the SFPU op (what a simulated run refuses)
    modulo: int = 0


@collect_rules
class ComputeWriter(ScalarWriter):
    kind = "compute"

    def __init__(self, layout: Layout, dst_capacity: int, fp32_dest: bool, sfpu: SfpuModes | None = None) -> None:
        super().__init__()
        self.speller = Speller(sfpu or SfpuModes(), fp32_dest)
        self.sfpu_inits: set[str] = set()  # kernel-API SFPU inits (a raw routine clobbers what they set up)
        self.layout = layout
        self.capacity = dst_capacity
        self.fp32_dest = fp32_dest
        self.bufs: dict[SSAValue, Buf] = {}
        self.held: dict[tuple[str, str], int] = {}  # (cb, "in"/"out") -> blocks held
        self.engine = Engine()
        self.first_config: tuple[str, str, str] | None = None
        self.headers: list[str] = list(HEADERS)
        self.sfpu: list[tuple[str, str | None]] = []  # (op, user's line) of every SFPU op
        self.fpu_reads: set[str] = set()  # CBs the matrix unit reads through SrcA / SrcB
        self.copy_reads: set[str] = set()  # CBs copied into DST
        self.toggles: list[str] = []
        self.dirty = False  # a buffer may have been written since the unpacker last synchronised
        self.in_dst: T.MatmulOp | None = None  # the matmul whose loop accumulates in DST (being emitted)
        self.resident: Buf | None = None  # a buffer whose value is in DST, committed, not yet packed
        self.resident_op: T.MatmulOp | None = None
        formats = {f for _, f, _ in (x for cb in layout.cbs for x in cb.formats)}

        self.mixed_formats = len(formats) > 1
        self.cb_format = {name: fmt for cb in layout.cbs for (i, fmt, _) in cb.formats
                          for name, idx in layout.constants.items() if idx == i}

    # ---- configuration ---------------------------------------------------------------------------

    def include(self, header: str | None) -> None:
        if header and header not in self.headers:
            self.headers.append(header)

    def configure(self, srca: str, srcb: str, pack: str | None, init: str | None) -> None:
        """Reconfigure data formats and run `init` unless the engine is already so configured."""
        if self.first_config is None:  # compute_kernel_hw_startup configures the engines for it
            self.first_config = (srca, srcb, pack or srca)
            if not self.loops:  # in a C++ loop, only its first trip starts so: later trips reconfigure
                self.engine = Engine(self.cb_format[srca], self.cb_format[srcb], self.cb_format[pack or srca])
        if self.mixed_formats:
            if self.engine.srca != self.cb_format[srca]:
                self.line(f"reconfig_data_format_srca({srca});")
                self.engine.srca = self.cb_format[srca]
            if self.engine.srcb != self.cb_format[srcb]:
                self.line(f"reconfig_data_format_srcb({srcb});")
                self.engine.srcb = self.cb_format[srcb]
            if pack is not None and self.engine.pack != self.cb_format[pack]:
                self.line(f"pack_reconfig_data_format({pack});")
                self.engine.pack = self.cb_format[pack]
        if init is not None and self.engine.init != init:
            self.line(f"{init};")
            self.engine.init = init

    def fp32_view(self) -> str:
        name = self.layout.format_view()
        if name not in self.cb_format:
            self.cb_format[name] = "f32"
            self.mixed_formats = True
        return name

    def forget(self) -> None:
        """Control flow joins here: the configuration is whatever the other path left."""
        self.engine = Engine(None if self.mixed_formats else self.engine.srca,
                             None if self.mixed_formats else self.engine.srcb,
                             None if self.mixed_formats else self.engine.pack, None)

    def scalar(self, v: SSAValue) -> Scalar:
        """A compute's scalar operand: its value when it is a constant, else its C++ name."""
        owner = v.owner
        if isinstance(owner, arith.ConstantOp) and isinstance(getattr(owner.value, "value", None), FloatData):
            return float(owner.value.value.data)
        return self.name(v)

    # ---- buffers and their synchronisation -------------------------------------------------------

    def buf(self, v: SSAValue) -> Buf:
        b = self.bufs.get(v)
        if b is None:
            owner = v.owner if isinstance(v.owner, Operation) else v.block.parent_op()
            raise unsupported(owner, "a block this compute kernel has no place for")
        return b

    def reads(self, op: Operation, values, keep=None, resident: SSAValue | None = None) -> list[Buf]:
        """The blocks an op reads; the unpacker first waits for the buffer writes before it. With
        `keep`, the result follows `keep`'s order (the `resident` one, in DST already, as a placeholder)."""
        if keep is not None:
            bufs = self.reads(op, values)
            found = dict(zip(values, bufs))
            return [found[v] if v is not resident else Buf("", "0", v.type.tiles, v.type.dtype, "dst") for v in keep]
        bufs = [self.buf(v) for v in values]
        for b in bufs:
            if b.kind == "out":
                raise unsupported(op, "a read of a reserved CB block in the compute thread",
                                  note="keep the value in a variable and store it once")
        if any(b.kind == "area" for b in bufs) and self.dirty:
            self.line(f"for (; pending > 0; --pending) {{ cb_wait_front({self.layout.sync}, 1); "
                      f"cb_pop_front({self.layout.sync}, 1); }}")
            self.dirty = False
        return bufs

    def wrote(self, bufs: list[Buf]) -> None:
        """After an op wrote buffers: the packer tells the unpacker (one page of the sync CB)."""
        if any(b.kind == "area" for b in bufs):
            self.line(f"cb_push_back({self.layout.sync}, 1);")
            self.line("++pending;")
            self.dirty = True

    # ---- CB protocol -----------------------------------------------------------------------------

    def _arg(self, op: Operation) -> tuple[str, C.BlockType]:
        cb = self.layout.arg_cb[op.cb.data]
        return cb, op.results[0].type if op.results else None

    def _take(self, op: Operation, side: str) -> None:
        self.comment_for(op)
        cb, t = self._arg(op)
        key = (cb, side)
        if self.held.get(key, 0):
            raise unsupported(op, f"a second {'popped' if side == 'in' else 'reserved'} block of one CB while the "
                                  "compute thread holds the first", note="release the first block before taking the next")
        self.held[key] = 1
        n = t.tiles[0] * t.tiles[1]
        self.line(f"{'cb_wait_front' if side == 'in' else 'cb_reserve_back'}({cb}, {n});")
        self.bufs[op.results[0]] = Buf(cb, "0", t.tiles, t.dtype, side)

    def _give(self, op: Operation, side: str) -> None:
        self.comment_for(op)
        cb = self.layout.arg_cb[op.cb.data]
        self.held[(cb, side)] = 0
        self.line(f"{'cb_pop_front' if side == 'in' else 'cb_push_back'}({cb}, {self.arg_tiles[op.cb.data]});")

    @rule(C.AllocOp)
    def _alloc(self, op: C.AllocOp) -> None:
        t = op.result.type
        cb = self.layout.area[t.dtype]
        first = self.layout.buffer_page(op, op.offset.data)
        if op.pingpong is None:
            base = str(first)
        else:
            second = self.layout.buffer_page(op, op.pingpong.data)
            flip = f"pp{op.offset.data}"
            if flip not in self.toggles:
                self.toggles.append(flip)
            self.line(f"{flip} = !{flip};")
            base = self.name(op.result) + "_page"
            self.line(f"const uint32_t {base} = {flip} ? {first} : {second};")
        self.bufs[op.result] = Buf(cb, base, t.tiles, t.dtype, "area")

    # blocks carried through loops and ifs: a page variable (the CB is the same on every path)
    def carry_block(self, var: str, v: SSAValue, init: SSAValue | None) -> None:
        t = v.type
        if init is not None:
            src = self.buf(init)
            if src.kind != "area":
                raise unsupported(v.owner if isinstance(v.owner, Operation) else v.block.parent_op(),
                                  "a CB block carried through a loop")
            self.line(f"uint32_t {var} = {src.base};")
        else:
            self.line(f"uint32_t {var} = 0;")
        self.bufs[v] = Buf(self.layout.area[t.dtype], var, t.tiles, t.dtype, "area")

    def block_value(self, v: SSAValue) -> str:
        return self.buf(v).base

    def _carried(self, results, inits, args) -> list[str]:
        out = super()._carried(results, inits, args)
        for a, r in zip(args, results):
            if r in self.bufs:
                self.bufs[a] = self.bufs[r]
        return out

    def loop_body(self, op) -> None:
        held = dict(self.held)
        self.forget()
        if self.dirty or any(isinstance(o, (T.ComputeOp, T.MatmulOp, T.ReduceOp, T.TransposeOp)) for o in op.walk()):
            self.dirty = self.dirty or self.layout.sync is not None
        super().loop_body(op)
        if {k: v for k, v in self.held.items() if v} != {k: v for k, v in held.items() if v}:
            raise unsupported(op, "a loop whose body does not release every CB block it takes")
        self.forget()

    def branch_state(self) -> object:
        return dataclasses.replace(self.engine), self.dirty

    def restore_branch(self, state: object) -> None:
        engine, dirty = state  # type: ignore[misc]
        self.engine, self.dirty = dataclasses.replace(engine), dirty

    def _if(self, op) -> None:
        dirty = self.dirty
        super()._if(op)
        self.dirty = dirty or self.dirty or self.layout.sync is not None
        self.forget()

    # ---- a matmul accumulating in DST through its loop ---------------------------------------------

    PASSIVE = (arith.ConstantOp, C.CBWaitOp, C.CBReserveOp, C.CBPushOp, C.CBPopOp, C.AllocOp, C.PrintOp)

    def body(self, ops) -> None:
        ops = list(ops)
        loops = {k: mm for k, o in enumerate(ops) if isinstance(o, scf.ForOp) and (mm := dst_matmul(o)) is not None}
        zeros = {k: zero_fill_before(ops, k, mm.acc) for k, mm in loops.items()}
        skip = {z for z in zeros.values() if z is not None}
        for k, o in enumerate(ops):
            if k in skip:
                continue
            if k in loops:
                self.flush()
                self.accumulate_in_dst(o, loops[k], zeros[k] is not None)
                continue
            self.op(o)
        self.flush()

    def op(self, op: Operation) -> None:
        if self.resident is not None and not isinstance(op, self.PASSIVE):
            if isinstance(op, T.ComputeOp) and self.drain_into(op):
                return
            self.flush()
        super().op(op)

    def accumulate_in_dst(self, loop: scf.ForOp, mm: T.MatmulOp, zero: bool) -> None:
        a_cb, b_cb = (self.layout.arg_cb[v.owner.cb.data] for v in (mm.a, mm.b))
        acc = self.buf(mm.acc)
        self.comment_for(mm)
        self.line("// the accumulator stays in DST through the loop")
        self.line("tile_regs_acquire();")
        if not zero:
            self.reads(mm, [mm.acc])
            self.copy_into_dst(acc, *mm.out.type.tiles, 0, 0)
        self.include("api/compute/matmul.h")
        self.fpu_reads.update({a_cb, b_cb})
        self.configure(b_cb, a_cb, acc.cb, f"matmul_init({a_cb}, {b_cb}, {1 if mm.b_transposed else 0})")
        self.in_dst = mm
        self.op(loop)
        self.in_dst = None
        self.resident, self.resident_op = acc, mm  # DST acquired, the math section still open

    def flush(self) -> None:
        """Pack the DST-resident accumulator into its buffer."""
        if self.resident is None:
            return
        acc, (h, w) = self.resident, self.resident_op.out.type.tiles
        self.resident = None
        self.line("tile_regs_commit();")
        self.line("tile_regs_wait();")
        self.configure_pack(acc.cb)
        self.pack_subblock(acc, h, w)
        self.line("tile_regs_release();")
        self.wrote([acc])

    def drain_into(self, op: T.ComputeOp) -> bool:
        """The op right after the loop reads the accumulator for the last time (`out.store(acc)`, or an
        epilogue `out.store(acc * c + d)`) in one DST subblock: it runs in the same DST section, on the
        accumulator where it is, and the buffer is never written."""
        mm = self.resident_op
        acc = mm.out
        users = {u.operation for u in acc.uses}
        if (acc not in op.ins or op.subblock_shape != acc.type.tiles or op.outs[0].type.tiles != acc.type.tiles
                or any(u is not mm and u is not op and not is_zero_fill(u) for u in users)
                or any(isinstance(o, T.LoadOp) and op.ins[o.input.data] is acc and o.bcast.data != "none"
                       for o in op.body.block.ops)):
            return False
        h, w = acc.type.tiles
        steps, packs, nslots = select(op, [self.scalar(v) for v in op.scalars], self.speller,
                                      in_dst={op.ins.index(acc): 0})
        if nslots * h * w > self.capacity:
            return False
        self.comment_for(op)
        self.resident = None
        ins = self.reads(op, [v for v in op.ins if v is not acc], keep=op.ins, resident=acc)
        outs = [self.buf(v) for v in op.outs]
        self.compute_section(steps, packs, ins, outs, h, w, 0, 0, acquire=False)
        self.wrote(outs)
        return True

    # ---- tile ops --------------------------------------------------------------------------------

    def subblocks(self, tiles: tuple[int, int], sub: tuple[int, int], emit, reconfigures: bool) -> None:
        """Run `emit(sr, sc)` for every subblock origin (C++ loops when there is more than one).
        `reconfigures`: the subblock's code switches inits, so each iteration starts unknown."""
        (rows, cols), (h, w) = tiles, sub
        r_loop, c_loop = rows > h, cols > w
        sr: int | str = "sr" if r_loop else 0
        sc: int | str = "sc" if c_loop else 0
        if r_loop:
            self.line(f"for (uint32_t sr = 0; sr < {rows}; sr += {h}) {{")
            self.indent += 1
        if c_loop:
            self.line(f"for (uint32_t sc = 0; sc < {cols}; sc += {w}) {{")
            self.indent += 1
        if (r_loop or c_loop) and reconfigures:
            self.forget()
        emit(sr, sc)
        for _ in range(int(r_loop) + int(c_loop)):
            self.indent -= 1
            self.line("}")

    def dst_section(self, math, packs) -> None:
        self.line("tile_regs_acquire();")
        math()
        self.line("tile_regs_commit();")
        self.line("tile_regs_wait();")
        packs()
        self.line("tile_regs_release();")

    def pack(self, out: Buf, dst: int | str, r: int | str, c: int | str) -> None:
        self.line(f"pack_tile<true>({dst}, {out.cb}, {out.page(r, c)});")

    def pack_subblock(self, out: Buf, h: int, w: int, sr: int | str = 0, sc: int | str = 0) -> None:
        """Pack DST tiles 0 .. h*w - 1 into the subblock of `out` at (sr, sc)."""
        for i in range(h):
            for j in range(w):
                self.pack(out, i * w + j, lin(sr, i), lin(sc, j))

    def copy_into_dst(self, src: Buf, h: int, w: int, sr, sc, slot_base: int = 0) -> None:
        """Unpack tiles of `src` for a subblock into DST (an fp32 buffer straight into DST)."""
        cb = self.copy_source(src)
        self.configure(cb, cb, None, f"copy_init({cb})")
        for i in range(h):
            for j in range(w):
                self.line(f"copy_tile({cb}, {src.page(lin(sr, i), lin(sc, j))}, {slot_base + i * w + j});")

    def copy_source(self, src: Buf) -> str:
        """The CB index a copy into DST reads: an fp32 buffer through its unpack-to-DST view."""
        if src.kind == "area" and src.dtype == "f32" and self.layout.area_dest:
            return self.layout.area_dest
        self.copy_reads.add(src.cb)
        return src.cb

    @rule(T.MatmulOp)
    def _matmul(self, op: T.MatmulOp) -> None:
        self.comment_for(op)
        if op is self.in_dst:  # inside its DST-accumulating loop: the products only
            a, b = self.buf(op.a), self.buf(op.b)
            self.matmul_tiles(op, a, b, 0, 0)
            return
        a, b, *acc = self.reads(op, [op.a, op.b, *([op.acc] if op.acc is not None else [])])
        out = self.buf(op.out)
        h, w = op.subblock_shape
        tb = 1 if op.b_transposed else 0
        self.include("api/compute/matmul.h")
        self.fpu_reads.update({a.cb, b.cb})
        mm_init = f"matmul_init({a.cb}, {b.cb}, {tb})"
        if not acc:
            self.configure(b.cb, a.cb, out.cb, mm_init)

        def body(sr, sc) -> None:
            def math() -> None:
                if acc:
                    self.copy_into_dst(acc[0], h, w, sr, sc)
                    self.configure(b.cb, a.cb, out.cb, mm_init)
                self.matmul_tiles(op, a, b, sr, sc)

            self.dst_section(math, lambda: self.pack_subblock(out, h, w, sr, sc))

        self.subblocks(op.out.type.tiles, (h, w), body, bool(acc))
        self.wrote([out])

    def matmul_tiles(self, op: T.MatmulOp, a: Buf, b: Buf, sr, sc) -> None:
        """DST[i, j] += sum over k of a[sr + i, k] @ b[k, sc + j] for the op's subblock."""
        k = op.a.type.tiles[1]
        h, w = op.subblock_shape
        loop = k > 1
        kk: int | str = "kt" if loop else 0
        if loop:
            self.line(f"for (uint32_t kt = 0; kt < {k}; ++kt) {{")
            self.indent += 1
        for i in range(h):
            for j in range(w):
                ai = a.page(lin(sr, i), kk)
                bi = b.page(lin(sc, j), kk) if op.b_transposed else b.page(kk, lin(sc, j))
                self.line(f"matmul_tiles({a.cb}, {b.cb}, {ai}, {bi}, {i * w + j});")
        if loop:
            self.indent -= 1
            self.line("}")

    @rule(T.ReduceOp)
    def _reduce(self, op: T.ReduceOp) -> None:
        self.comment_for(op)
        x, *acc = self.reads(op, [op.x, *([op.acc] if op.acc is not None else [])])
        out = self.buf(op.out)
        kind = "PoolType::MAX" if op.kind.data == "max" else "PoolType::SUM"
        row = op.dim.data == 1
        dim = "ReduceDim::REDUCE_ROW" if row else "ReduceDim::REDUCE_COL"
        sc_cb = self.layout.scaler
        self.include("api/compute/reduce.h")
        init = f"reduce_init<{kind}, {dim}>({x.cb}, {sc_cb}, {out.cb})"
        srca, srcb = (sc_cb, x.cb) if row and op.kind.data == "sum" else (x.cb, sc_cb)
        self.fpu_reads.add(x.cb)
        if not acc:
            self.configure(srca, srcb, out.cb, init)
        xr, xc = op.x.type.tiles
        h, w = op.subblock_shape

        def body(sr, sc) -> None:
            def math() -> None:
                if acc:
                    self.copy_into_dst(acc[0], h, w, sr, sc)
                    self.configure(srca, srcb, out.cb, init)
                for i in range(h):
                    for j in range(w):
                        r, c = lin(sr, i), lin(sc, j)
                        steps = xc if row else xr
                        loop = steps > 1
                        if loop:
                            self.line(f"for (uint32_t q = 0; q < {steps}; ++q) {{")
                            self.indent += 1
                        q: int | str = "q" if loop else 0
                        tile = x.page(r, q) if row else x.page(q, c)
                        self.line(f"reduce_tile<{kind}, {dim}>({x.cb}, {sc_cb}, {tile}, 0, {i * w + j});")
                        if loop:
                            self.indent -= 1
                            self.line("}")

            self.dst_section(math, lambda: self.pack_subblock(out, h, w, sr, sc))

        self.subblocks(op.out.type.tiles, (h, w), body, bool(acc))
        self.line(f"reduce_uninit({x.cb});  // the packer's edge mask back to its default")
        self.engine.init = None
        self.wrote([out])

    @rule(T.TransposeOp)
    def _transpose(self, op: T.TransposeOp) -> None:
        self.comment_for(op)
        (x,) = self.reads(op, [op.x])
        out = self.buf(op.out)
        self.include("api/compute/transpose.h")
        cb = self.copy_source(x)  # fp32 unpacks straight into DST and transposes there: exact
        self.configure(cb, cb, out.cb, f"transpose_init({cb})")
        h, w = op.subblock_shape

        def body(sr, sc) -> None:
            def math() -> None:
                for i in range(h):
                    for j in range(w):
                        self.line(f"transpose_tile({cb}, {x.page(lin(sc, j), lin(sr, i))}, {i * w + j});")

            self.dst_section(math, lambda: self.pack_subblock(out, h, w, sr, sc))

        self.subblocks(op.out.type.tiles, (h, w), body, False)
        self.wrote([out])

    @rule(T.ComputeOp)
    def _compute(self, op: T.ComputeOp) -> None:
        self.comment_for(op)
        ins = self.reads(op, list(op.ins))
        outs = [self.buf(v) for v in op.outs]
        scalars = [self.scalar(v) for v in op.scalars]
        h, w = op.subblock_shape
        hw = h * w
        steps, packs, nslots = select(op, scalars, self.speller)
        if nslots * hw > self.capacity:  # an SFPU fill of a scalar takes a DST slot allocate-dst did not
            h, w, hw = 1, 1, 1  # count: the body runs a tile at a time (docs/ttmetal.md)
            self.line("// a tile at a time: this body needs more DST slots than allocate-dst counted")
        out_rows = op.outs[0].type.tiles
        wider = best_subblock(out_rows, nslots, self.capacity)
        if wider is not None and wider[0] * wider[1] > hw:  # allocate-dst counted a DST slot for each load, which
            h, w = wider  # the matrix unit reads from SrcA / SrcB instead: fewer, larger DST sections
            hw = h * w

        def body(sr, sc) -> None:
            self.compute_section(steps, packs, ins, outs, h, w, sr, sc)

        if len(steps) == 1 and steps[0].kind != "bcast":  # one instruction: configured before the loops
            self.prepare(steps[0], ins)
        if len({self.cb_format[outs[k].cb] for _, k in packs}) == 1:
            self.configure_pack(outs[packs[0][1]].cb)
        self.subblocks(out_rows, (h, w), body, len(steps) > 1 or len(packs) > 1 and self.mixed_formats)
        self.wrote(outs)

    def compute_section(self, steps: list[Instr], packs: list[tuple[int, int]], ins: list[Buf], outs: list[Buf],
                        h: int, w: int, sr: int | str, sc: int | str, acquire: bool = True) -> None:
        """One DST section of a compute body: its steps over the subblock at (sr, sc), then its packs
        (`acquire=False`: DST is already acquired, holding the inputs the steps find there)."""
        hw = h * w
        tiles = [(lin(sr, i), lin(sc, j), i * w + j) for i in range(h) for j in range(w)]
        if acquire:
            self.line("tile_regs_acquire();")
        for s in steps:
            self.step(s, ins, tiles, hw)
        self.line("tile_regs_commit();")
        self.line("tile_regs_wait();")
        for slot, k in packs:
            self.configure_pack(outs[k].cb)
            for r, c, t in tiles:
                self.pack(outs[k], slot * hw + t, r, c)
        self.line("tile_regs_release();")

    def configure_pack(self, cb: str) -> None:
        if self.first_config is None:
            self.configure(cb, cb, cb, None)
        elif self.mixed_formats and self.engine.pack != self.cb_format[cb]:
            self.line(f"pack_reconfig_data_format({cb});")
            self.engine.pack = self.cb_format[cb]

    def prepare(self, s: Instr, ins: list[Buf]) -> None:
        """Configure the engines for an instruction of a compute body (its init, its data formats)."""
        if s.kind in ("copy", "iota"):
            cb = self.copy_source(ins[s.inputs[0]]) if s.kind == "copy" else self.layout.index
            if s.kind == "iota":
                self.copy_reads.add(cb)
            self.configure(cb, cb, None, f"copy_init({cb})")
        elif s.kind == "bcast":
            cb = ins[s.inputs[0]].cb
            self.include("api/compute/bcast.h")
            self.configure(cb, cb, None, f"unary_bcast_init<{BCAST[s.bcast]}>({cb})")
        elif s.kind == "fpu":
            a, b = ins[s.inputs[0]].cb, ins[s.inputs[1]].cb
            self.include("api/compute/eltwise_binary.h")
            self.fpu_reads.update({a, b})
            if s.bcast == "none":
                self.configure(a, b, None, f"{s.op.name}_init({a}, {b})")
            else:
                self.include("api/compute/bcast.h")
                self.configure(a, b, None, f"bcast_init<{self.bcast_op(s)}>({a}, {b})")
        elif s.kind == "reuse":
            cb = ins[s.inputs[0]].cb
            self.include("api/compute/eltwise_binary.h")
            self.fpu_reads.add(cb)
            # the operand that moves from DST to a source register keeps 19 bits (TF32) where an fp32 CB
            # can describe that register's format, not the 16 of the other operand's bf16
            dst = self.fp32_view() if self.fp32_dest else cb
            srca, srcb = (dst, cb) if s.reuse == "DEST_TO_SRCA" else (cb, dst)
            self.configure(srca, srcb, None, f"{s.op.name}_reuse_dest_init<EltwiseBinaryReuseDestType::{s.reuse}>({cb})")
        else:  # sfpu
            self.include(s.code.header)
            if s.code.definitions:
                self.helper(s.code.definitions)
            if not s.code.needs_sfpi:  # a raw routine: no init; it clobbers LRegs an API init set up
                if self.engine.init in self.sfpu_inits:
                    self.engine.init = None
            elif self.engine.init != s.code.init:
                self.line(f"{s.code.init};")
                self.engine.init = s.code.init
                self.sfpu_inits.add(s.code.init)

    @staticmethod
    def bcast_op(s: Instr) -> str:
        return f"EltwiseBinaryType::{s.op.ttmetal.fpu}, {BCAST[s.bcast]}"

    def step(self, s: Instr, ins: list[Buf], tiles, hw: int) -> None:
        """One instruction of a compute body over the subblock's tiles."""
        self.prepare(s, ins)
        for r, c, t in tiles:
            dst = s.slot * hw + t
            if s.kind == "copy":
                src = ins[s.inputs[0]]
                self.line(f"copy_tile({self.copy_source(src)}, {src.page(r, c)}, {dst});")
            elif s.kind == "iota":  # the index tile of this tile row (or column)
                rc = r if s.bcast == "0" else c
                if s.modulo:  # an index modulo a multiple of 32: the index tiles repeat every `modulo` tiles
                    rc = int(rc) if isinstance(rc, str) and rc.isdigit() else rc
                    rc = rc % s.modulo if isinstance(rc, int) else f"({rc}) % {s.modulo}"
                page = rc if s.bcast == "0" else lin(rc, self.layout.index_rows)
                self.line(f"copy_tile({self.layout.index}, {page}, {dst});  // {'row' if s.bcast == '0' else 'col'}_index")
            elif s.kind == "bcast":
                src = ins[s.inputs[0]]
                self.line(f"unary_bcast<{BCAST[s.bcast]}>({src.cb}, {src.page(r, c)}, {dst});")
            elif s.kind == "fpu":
                a, b = ins[s.inputs[0]], ins[s.inputs[1]]
                call = f"{s.op.name}_tiles" if s.bcast == "none" else f"any_tiles_bcast<{self.bcast_op(s)}>"
                self.line(f"{call}({a.cb}, {b.cb}, {a.page(r, c)}, {b.page(r, c)}, {dst});")
            elif s.kind == "reuse":
                src = ins[s.inputs[0]]
                self.line(f"{s.op.name}_reuse_dest_tiles<EltwiseBinaryReuseDestType::{s.reuse}>({src.cb}, "
                          f"{src.page(r, c)}, {dst});")
            else:
                self.line(per_tile(s.code.call, hw, t) + ";")
        if s.kind == "bcast":
            self.line(f"unary_bcast_uninit<{BCAST[s.bcast]}>({ins[s.inputs[0]].cb});  // no broadcast again")
            self.engine.init = None
        if s.kind == "sfpu" and s.code.needs_sfpi:
            self.sfpu.append((s.name, s.loc))

    # ---- the kernel ------------------------------------------------------------------------------

    def kernel(self, thread: C.ThreadOp, kernel_name: str, arg_tiles: dict[int, int]) -> str:
        self.arg_tiles = arg_tiles
        self.body(thread.body.block.ops)
        if self.layout.sync:  # leave the sync CB empty: buffer writes no op read (a core with no work items)
            self.line(f"for (; pending > 0; --pending) {{ cb_wait_front({self.layout.sync}, 1); "
                      f"cb_pop_front({self.layout.sync}, 1); }}  // the end: every buffer write taken")
        startup = self.first_config or (next(iter(self.layout.arg_cb.values())),) * 3
        head = [f"// tilegrid kernel '{kernel_name}', thread '{thread.thread_name.data}': the compute kernel "
                "(unpack, math and pack TRISCs run this same code)", "#include <cstdint>"]
        head += [f'#include "{h}"' for h in self.headers]
        cbs = []
        for cb in self.layout.cbs:
            for idx, fmt, _page in cb.formats:
                name = next(n for n, i in self.layout.constants.items() if i == idx)
                view = ("  [the same memory, copies unpack it straight into DST]" if name == self.layout.area_dest
                        else f"  [{fmt} view]" if len(cb.formats) > 1 else "")
                cbs.append(f"constexpr uint32_t {name} = {idx};  // {cb.purpose}{view}")
        pre = [f"    compute_kernel_hw_startup({startup[0]}, {startup[1]}, {startup[2]});"]
        if self.layout.scaler:
            pre.append(f"    cb_wait_front({self.layout.scaler}, 1);  // the reduce scaler (a data-movement kernel wrote it)")
        if self.layout.index:
            pre.append(f"    cb_wait_front({self.layout.index}, {self.layout.index_rows + self.layout.index_cols});  "
                       "// row / column index tiles (a data-movement kernel wrote them)")
        if self.layout.sync:
            pre.append("    uint32_t pending = 0;  // buffer writes the unpacker has not waited for yet")
        pre += [f"    bool {t} = false;" for t in self.toggles]
        return self.source(head, cbs, pre)


SLOT = re.compile(r"@(\d+)")


def at(slot: int) -> str:
    """A DST slot in SFPU code; `per_tile` turns it into the DST index of a subblock tile."""
    return f"@{slot}"


def per_tile(text: str, hw: int, t: int) -> str:
    return SLOT.sub(lambda m: str(int(m.group(1)) * hw + t), text)


def select(op: T.ComputeOp, scalars: list[Scalar], speller: Speller, in_dst: dict[int, int] | None = None
           ) -> tuple[list[Instr], list[tuple[int, int]], int]:
    """Instruction selection for a compute body: (steps, packs (slot, output), DST slots per tile).

    A value is a load of an input (`("load", input, bcast)`, read from L1 by whichever instruction
    uses it), a scalar, a zero, or computed into a DST slot. Slots are allocated by linear scan; an
    instruction that works in place (the SFPU's unary ops, the dest-reuse binaries) takes over the
    slot of an operand that dies there, or a copy of one that lives on. `in_dst`: inputs already in
    DST (input -> slot)."""
    body = list(op.body.block.ops)
    loc = loc_of(op)
    remaining: dict[SSAValue, int] = {}
    for o in body:
        for v in o.operands:
            remaining[v] = remaining.get(v, 0) + (1 << 20 if isinstance(o, T.PackOp) else 1)
    # a scalar's value: a float known now, or the C++ name of a run-time one
    state: dict[SSAValue, tuple] = {a: ("scalar", text) for a, text in zip(op.body.block.args, scalars)}
    slot_of: dict[SSAValue, int] = {}
    steps: list[Instr] = []
    packs: list[tuple[int, int]] = []
    free: list[int] = []
    preloaded = in_dst or {}
    count = 1 + max(preloaded.values(), default=-1)

    def alloc(fresh: bool = False) -> int:
        nonlocal count
        if free and not fresh:
            free.sort()
            return free.pop(0)
        count += 1
        return count - 1

    def sfpu(code: SfpuCode, name: str, slot: int) -> Instr:
        return Instr("sfpu", slot, code=code, loc=loc, name=name)

    def iota_step(v: SSAValue, slot: int) -> Instr:
        return Instr("iota", slot, bcast=str(state[v][1]), modulo=state[v][2])

    def load_step(v: SSAValue, slot: int) -> Instr:
        _, i, bcast = state[v]
        return Instr("copy" if bcast == "none" else "bcast", slot, (i,), bcast)

    def in_dst(v: SSAValue) -> int:
        """v in a DST slot (shared with its other readers)."""
        if v in slot_of:
            return slot_of[v]
        kind = state[v][0]
        if kind == "zero":
            s = alloc(fresh=True)  # DST is zero when acquired: the packer's release clears it
        elif kind == "load":
            s = alloc()
            steps.append(load_step(v, s))
        elif kind == "iota":
            s = alloc()
            steps.append(iota_step(v, s))
        else:  # a scalar: filled in by the SFPU
            s = alloc()
            steps.append(sfpu(speller.fill(at(s), state[v][1], loc), "fill", s))
        slot_of[v] = s
        return s

    def owned(v: SSAValue) -> int:
        """A slot holding v that the instruction may overwrite."""
        if remaining[v] == 1:
            s = in_dst(v)
            del slot_of[v]  # handed over: not freed when v dies
            return s
        kind = state[v][0]
        if kind in ("load", "iota"):
            s = alloc()
            steps.append(load_step(v, s) if kind == "load" else iota_step(v, s))
            return s
        if kind == "zero":
            return alloc(fresh=True)
        src, s = in_dst(v), alloc()
        steps.append(sfpu(speller.copy(at(src), at(s), loc), "copy", s))
        return s

    def release(values) -> None:
        for v in values:
            remaining[v] -= 1
            if remaining[v] == 0 and v in slot_of:
                free.append(slot_of.pop(v))

    for o in body:
        if isinstance(o, T.LoadOp):
            if o.input.data in preloaded:
                state[o.result] = ("computed",)
                slot_of[o.result] = preloaded[o.input.data]
            else:
                state[o.result] = ("load", o.input.data, o.bcast.data)
            continue
        if isinstance(o, T.FillOp):
            v = o.value.value.data
            state[o.result] = ("zero",) if v == 0.0 else ("scalar", float(v))
            continue
        if isinstance(o, T.IotaOp):
            state[o.result] = ("iota", o.dim.data, 0)
            continue
        if isinstance(o, T.PackOp):
            packs.append((in_dst(o.x), o.output.data))
            continue
        d: OpDef = o.OP
        args = list(o.operands)
        result = o.results[0]
        state[result] = ("computed",)
        how = fpu_binary(d, args, state)
        if how is not None:
            kind, inputs, bcast, reuse = how
            if kind == "fpu":
                release(args)
                s = alloc()
                steps.append(Instr("fpu", s, inputs, bcast, d))
            else:
                s = owned(args[0] if reuse == "DEST_TO_SRCA" else args[1])
                steps.append(Instr("reuse", s, inputs, "none", d, reuse))
                release(args)
            slot_of[result] = s
            continue
        kinds = [state[a][0] for a in args]
        if (d.name == "mod" and kinds == ["iota", "scalar"] and not state[args[0]][2]
                and isinstance(state[args[1]][1], float) and state[args[1]][1] % 32 == 0 and state[args[1]][1] > 0):
            # an index modulo a multiple of 32 (a GQA-packed block's position within its head): the index tiles
            # of the first m / 32 tile rows (columns), repeated; exact, and no SFPU remainder
            state[result] = ("iota", state[args[0]][1], int(state[args[1]][1]) // 32)
            release(args)
            continue
        if d.arity == 2 and d.name in ("add", "sub", "mul", "div") and kinds.count("scalar") == 1:
            x, sv = (args[0], state[args[1]][1]) if kinds[1] == "scalar" else (args[1], state[args[0]][1])
            names = [d.name] if kinds[1] == "scalar" or d.name in ("add", "mul") else (
                ["rsub"] if d.name == "sub" else ["recip", "mul"])  # s - x; s / x = (1 / x) * s
            s = owned(x)
            for name in names:
                code = (speller.op(OPS_BY_NAME["recip"], {"x": at(s)}, {}, None, loc) if name == "recip" else
                        speller.scalar(name, d.name, at(s), sv, loc))
                steps.append(Instr("sfpu", s, code=code, loc=loc, name=d.name))
            release([a for a in args if a is not x])
            slot_of[result] = s
            continue
        params = o.params()
        if d.arity == 1 or (d.scalable and len(args) == 2):
            s = owned(args[0])
            scale: Scalar | None = state[args[1]][1] if len(args) == 2 else None
            code = speller.op(d, {"x": at(s)}, params, scale, loc)
            steps.append(Instr("sfpu", s, code=code, loc=loc, name=d.name))
            release(args[1:])
            slot_of[result] = s
            continue
        slots = [in_dst(a) for a in args]
        release(args)
        s = alloc()
        names = ["a", "b"] if d.arity == 2 else ["c", "a", "b"]
        operands = {n: at(x) for n, x in zip(names, slots)} | {"out": at(s)}
        steps.append(Instr("sfpu", s, code=speller.op(d, operands, params, None, loc), loc=loc, name=d.name))
        slot_of[result] = s
    return steps, packs, max(count, 1)


def fpu_binary(d: OpDef, args: list[SSAValue], state: dict):
    """How the matrix unit computes `a op b`, or None: ("fpu", (ia, ib), bcast, "") for two loads
    (the broadcast one second), ("reuse", (i,), "none", kind) for a DST operand and a load."""
    if d.arity != 2 or d.ttmetal is None or d.ttmetal.fpu is None:
        return None
    a, b = args
    va, vb = state[a], state[b]
    commutes = d.name in ("add", "mul")
    if va[0] == "load" and vb[0] == "load":
        if va[2] == "none":
            return "fpu", (va[1], vb[1]), vb[2], ""
        if vb[2] == "none" and commutes:
            return "fpu", (vb[1], va[1]), va[2], ""
        # `row - b`: the FPU broadcasts only its second operand, and a broadcast into DST followed by
        # the dest-reuse subtraction came out wrong on wolfpine (docs/ttmetal.md): the SFPU does it
        return None
    in_dst = ("computed", "iota")  # values in DST (an index tile is copied there first)
    if va[0] in in_dst and vb[0] == "load" and vb[2] == "none" and a is not b:
        return "reuse", (vb[1],), "none", "DEST_TO_SRCA"
    if vb[0] in in_dst and va[0] == "load" and va[2] == "none" and a is not b:
        return "reuse", (va[1],), "none", "DEST_TO_SRCB"
    return None


def is_zero_fill(op: Operation) -> bool:
    """A `tile.compute` that fills its one output with zeros."""
    if not isinstance(op, T.ComputeOp) or len(op.outs) != 1 or op.ins:
        return False
    body = list(op.body.block.ops)
    return (len(body) == 2 and isinstance(body[0], T.FillOp) and body[0].value.value.data == 0.0
            and isinstance(body[1], T.PackOp))


def dst_matmul(loop: scf.ForOp) -> T.MatmulOp | None:
    """The matmul of a loop that only accumulates `acc = acc + a @ b` (acc a buffer from outside the loop,
    updated in place, one DST subblock; a and b popped in the loop), else None."""
    if loop.iter_args:
        return None
    body = list(loop.body.block.ops)
    mms = [o for o in body if isinstance(o, T.MatmulOp)]
    if len(mms) != 1 or any(not isinstance(o, (*ComputeWriter.PASSIVE, T.MatmulOp, scf.YieldOp))
                            or isinstance(o, C.AllocOp) for o in body):
        return None
    mm = mms[0]
    if mm.acc is None or mm.acc is not mm.out or mm.subblock_shape != mm.out.type.tiles:
        return None
    if not isinstance(mm.acc.owner, C.AllocOp) or mm.acc.owner.parent_block() is loop.body.block:
        return None
    if any(u.operation.parent_block() is loop.body.block and u.operation is not mm for u in mm.acc.uses):
        return None
    return mm if all(isinstance(v.owner, C.CBWaitOp) and v.owner.parent_block() is loop.body.block
                     for v in (mm.a, mm.b)) else None


def zero_fill_before(ops: list[Operation], k: int, acc: SSAValue) -> int | None:
    """The index of a zero fill of `acc` right before ops[k] (constants between), or None."""
    j = k - 1
    while j >= 0 and isinstance(ops[j], arith.ConstantOp):
        j -= 1
    if j >= 0 and is_zero_fill(ops[j]) and ops[j].outs[0] is acc:
        return j
    return None
