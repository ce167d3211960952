"""Print -> parse -> print is the identity: every op and type of the tilegrid, block and tile
dialects, and the IR after every pipeline stage of real kernels."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, IntAttr, ModuleOp, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.parser import Parser

from tilegrid import Program, compute, context, core_index, ir, pykernel_gen
from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.ir.block import BLOCK
from tilegrid.ir.core import TILEGRID
from tilegrid.ir.tile import TILE
from tilegrid.ops import OPS, OpDef
from tilegrid.targets import compile_kernel

BF = C.BlockType((32, 32), "bf16")
F = C.BlockType((32, 32), "f32")
COL = C.BlockType((32, 1), "f32")
ROW = C.BlockType((1, 32), "f32")
WIDE = C.BlockType((32, 64), "f32")


def roundtrip(module: ModuleOp) -> str:
    """Verify `module`, print it, parse and verify the text, and check it prints back identically."""
    module.verify()
    text = ir.to_text(module)
    again = ir.parse(text)
    again.verify()
    assert ir.to_text(again) == text
    return text


# ---- types -----------------------------------------------------------------------------------

TYPES = [
    ("!tilegrid.block<64x32xbf16>", C.BlockType((64, 32), "bf16")),
    ("!tilegrid.block<32x1xf32>", C.BlockType((32, 1), "f32")),
    ("!tilegrid.block<1x96xf32>", C.BlockType((1, 96), "f32")),
    ("!tilegrid.dma", C.DMAType()),
    ("!tile.dst", T.DstType()),
]


@pytest.mark.parametrize("text, built", TYPES, ids=[t for t, _ in TYPES])
def test_type_roundtrip(text, built):
    parsed = Parser(ir.context(), text).parse_type()
    assert parsed == built
    assert str(parsed) == text


# ---- ops -------------------------------------------------------------------------------------


class Body:
    """The ops of a one-thread program; helpers make the operands an op under test needs."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []

    def add(self, op: Operation) -> SSAValue | None:
        self.ops.append(op)
        return op.results[0] if op.results else None

    def blk(self, t: C.BlockType = BF, cb: int = 0) -> SSAValue:
        return self.add(C.CBWaitOp(cb, t))

    def buf(self, t: C.BlockType = F) -> SSAValue:
        return self.add(C.AllocOp(t))

    def idx(self, dim: int = 0) -> SSAValue:
        return self.add(C.CoreIndexOp(dim))

    def scalar(self) -> SSAValue:
        return self.add(arith.ConstantOp(FloatAttr(0.5, f32)))

    def compute(self, body: Callable[[Block], None], ins=(), scalars=(), outs=None, subblock=None) -> None:
        """A tile.compute whose region `body` fills; one f32 output buffer unless `outs` is given."""
        blk = Block(arg_types=[f32] * len(scalars))
        body(blk)
        op = T.ComputeOp(list(ins), list(scalars), outs if outs is not None else [self.buf()], Region(blk))
        if subblock:
            op.properties["subblock"] = T.subblock_attr(*subblock)
        self.add(op)


def tile(blk: Block, op: Operation, dst: int | None = None) -> SSAValue | None:
    """Append a tile-body op to `blk`, with DST slot `dst` (as allocate-dst sets it) if given."""
    if dst is not None:
        op.properties["dst"] = IntAttr(dst)
    blk.add_op(op)
    return op.results[0] if op.results else None


def _pack_twice(blk: Block) -> None:
    x = tile(blk, T.LoadOp(0))
    tile(blk, T.PackOp(x, 0))
    tile(blk, T.PackOp(x, 1))


def _fused(b: Body) -> None:
    body = Block(arg_types=[BF, f32])
    neg = B.op("neg")(body.args[0])
    body.add_ops([neg, B.YieldOp([neg.result])])
    b.add(B.FusedOp([b.blk(), b.scalar()], [BF], Region(body)))


def _fused_two_outputs(b: Body) -> None:
    body = Block(arg_types=[BF])
    e = B.op("exp")(body.args[0])
    body.add_ops([e, B.YieldOp([e.result, body.args[0]])])
    b.add(B.FusedOp([b.blk()], [BF, BF], Region(body)))


def _tile_body_ops(blk: Block) -> None:
    x = tile(blk, T.LoadOp(0, "col"))
    one = tile(blk, T.FillOp(1.0))
    i = tile(blk, T.IotaOp(1))
    e = tile(blk, T.OPS["exp"](x, blk.args[0]))
    m = tile(blk, T.OPS["mul"](e, one))
    s = tile(blk, T.OPS["sub"](blk.args[0], m))
    tile(blk, T.PackOp(tile(blk, T.OPS["where"](i, s, m)), 0))


def _tile_body_with_slots(blk: Block) -> None:
    a = tile(blk, T.LoadOp(0, "none"), dst=0)
    b = tile(blk, T.LoadOp(1, "row"), dst=1)
    tile(blk, T.PackOp(tile(blk, T.OPS["max"](a, b), dst=0), 0))


PARAMS = {int: 3, float: 0.25}


def _block_table_op(d: OpDef) -> Callable[[Body], None]:
    """block.<name> of an op-table entry: blocks (a binary op's second operand a scalar), its parameters."""
    def case(b: Body) -> None:
        if d.arity == 1:
            if d.scalable:
                b.add(B.op(d.name)(b.blk(F), b.scalar()))
            else:
                b.add(B.op(d.name)(b.blk(F), **{p.name: PARAMS[p.kind] for p in d.params}))
        elif d.arity == 2:
            b.add(B.op(d.name)(b.blk(BF), b.scalar()))
        else:
            b.add(B.op(d.name)(b.blk(F), b.blk(F, 1), b.blk(F, 2), F))
    return case


def _tile_table_op(d: OpDef) -> Callable[[Body], None]:
    """tile.<name> of an op-table entry inside a tile.compute (a binary op's second operand a scalar)."""
    def body(blk: Block) -> None:
        x = tile(blk, T.LoadOp(0))
        if d.arity == 1:
            params = {} if d.scalable else {p.name: PARAMS[p.kind] for p in d.params}
            y = tile(blk, T.OPS[d.name](x, **params))
        elif d.arity == 2:
            y = tile(blk, T.OPS[d.name](x, blk.args[0]))
        else:
            y = tile(blk, T.OPS[d.name](x, x, x))
        tile(blk, T.PackOp(y, 0))
    return lambda b: b.compute(body, [b.blk()], [b.scalar()])


def _matmul_acc_subblock(b: Body) -> None:
    op = T.MatmulOp(b.blk(), b.blk(cb=1), b.buf(), acc=b.buf())
    op.properties["subblock"] = T.subblock_attr(1, 1)
    b.add(op)


def _alloc_with_offset(b: Body) -> None:
    op = C.AllocOp(WIDE)
    op.properties["offset"] = IntAttr(4096)
    b.add(op)


# One case per op (and per optional property or operand); the ops that make its operands come along.
CASES: dict[str, Callable[[Body], None]] = {
    "tilegrid.core_index": lambda b: b.idx(1),
    "tilegrid.cb_reserve": lambda b: b.add(C.CBReserveOp(1, BF)),
    "tilegrid.cb_push": lambda b: b.add(C.CBPushOp(1)),
    "tilegrid.cb_wait": lambda b: b.blk(C.BlockType((64, 64), "f32")),
    "tilegrid.cb_pop": lambda b: b.add(C.CBPopOp(0)),
    "tilegrid.dma_read": lambda b: b.add(C.DMAReadOp(0, [b.idx(), b.idx(1)], b.add(C.CBReserveOp(0, BF)))),
    "tilegrid.dma_write": lambda b: b.add(C.DMAWriteOp(1, b.blk(), [b.idx(), b.idx(), b.idx(1)])),
    "tilegrid.dma_wait": lambda b: b.add(C.DMAWaitOp(b.add(C.DMAWriteOp(1, b.blk(), [b.idx(), b.idx(1)])))),
    "tilegrid.dma_mcast": lambda b: b.add(C.DMAMcastOp(0, b.blk(), [b.idx(), b.idx(1), b.idx(), b.idx(1)])),
    "tilegrid.sem_set": lambda b: b.add(C.SemSetOp(0, b.idx())),
    "tilegrid.sem_inc remote": lambda b: b.add(C.SemIncOp(1, b.idx(), [b.idx(), b.idx(1)])),
    "tilegrid.sem_wait": lambda b: b.add(C.SemWaitOp(0, b.idx())),
    "tilegrid.sem_wait reset": lambda b: b.add(C.SemWaitOp(0, b.idx(), reset=b.idx(1))),
    "tilegrid.print": lambda b: b.add(C.PrintOp(b.blk(), "x")),
    "tilegrid.alloc": lambda b: b.buf(COL),
    "tilegrid.alloc offset": _alloc_with_offset,
    "block.add two blocks": lambda b: b.add(B.op("add")(b.blk(BF), b.blk(F, 1))),
    "block.div scalar first": lambda b: b.add(B.op("div")(b.scalar(), b.blk())),
    "block.copy": lambda b: b.add(B.CopyOp(b.blk(F), BF)),
    "block.broadcast": lambda b: b.add(B.BroadcastOp(b.blk(COL), WIDE)),
    "block.fill -inf": lambda b: b.add(B.FillOp(float("-inf"), COL)),
    "block.fill nan": lambda b: b.add(B.FillOp(float("nan"), F)),
    "block.iota": lambda b: b.add(B.IotaOp(1, WIDE)),
    "block.reduce": lambda b: b.add(B.ReduceOp("max", 0, b.blk(WIDE))),
    "block.reduce acc": lambda b: b.add(B.ReduceOp("sum", 1, b.blk(WIDE), b.blk(COL, 1))),
    "block.matmul": lambda b: b.add(B.MatmulOp(b.blk(WIDE), b.blk(C.BlockType((64, 32), "bf16"), 1))),
    "block.matmul acc": lambda b: b.add(B.MatmulOp(b.blk(WIDE), b.blk(C.BlockType((64, 32), "bf16"), 1), b.blk(F, 2))),
    "block.transpose": lambda b: b.add(B.TransposeOp(b.blk(WIDE))),
    "block.store": lambda b: b.add(B.StoreOp(b.add(C.CBReserveOp(1, BF)), b.blk(F))),
    "block.fused + block.yield": _fused,
    "block.fused two outputs": _fused_two_outputs,
    "tile.compute + body ops": lambda b: b.compute(_tile_body_ops, [b.blk(COL)], [b.scalar()]),
    "tile.compute subblock + dst": lambda b: b.compute(_tile_body_with_slots, [b.blk(), b.blk(ROW, 1)], subblock=(1, 1)),
    "tile.compute two outputs": lambda b: b.compute(_pack_twice, [b.blk()], outs=[b.buf(), b.buf(BF)]),
    "tile.matmul": lambda b: b.add(T.MatmulOp(b.blk(), b.blk(cb=1), b.buf())),
    "tile.matmul acc subblock": _matmul_acc_subblock,
    "tile.matmul transpose_b": lambda b: b.add(T.MatmulOp(b.blk(), b.blk(cb=1), b.buf(), transpose_b=True)),
    "tile.reduce": lambda b: b.add(T.ReduceOp("sum", 1, b.blk(WIDE), b.buf(COL))),
    "tile.reduce acc": lambda b: b.add(T.ReduceOp("sum", 1, b.blk(WIDE), b.buf(COL), acc=b.buf(COL))),
    "tile.transpose": lambda b: b.add(T.TransposeOp(b.blk(WIDE), b.buf(C.BlockType((64, 32), "f32")))),
    **{f"block.{d.name} (table)": _block_table_op(d) for d in OPS.values()},
    **{f"tile.compute {d.name} (table)": _tile_table_op(d) for d in OPS.values()},
}

ARGS = [
    dict(name="x", shape=(2, 64, 64), dtype="bf16", block=(1, 2), depth=2, output=False),
    dict(name="out", shape=(64, 64), dtype="f32", block=(2, 2), depth=1, output=True),
]


def one_thread_program(case: str, kind: str = "compute", semaphores=()) -> ModuleOp:
    b = Body()
    CASES[case](b)
    thread = C.ThreadOp(kind, "t", Region(Block(b.ops)))
    return ModuleOp([C.ProgramOp("k", (2, 4), ARGS, [thread], dst_capacity=8, l1_budget=65536, semaphores=semaphores)])


@pytest.mark.parametrize("case", CASES)
def test_op_roundtrip(case):
    text = roundtrip(one_thread_program(case))
    assert f'"{case.split()[0]}"' in text


# Threads of both kinds, an implicit one, an empty one, and a program with semaphores.
def test_program_and_threads_roundtrip():
    threads = [
        C.ThreadOp("compute", "comp", Region(Block([C.CBPopOp(0)]))),
        C.ThreadOp("datamovement", "implicit_reader_x", Region(Block([C.CBPushOp(0)])), implicit="reader"),
        C.ThreadOp("datamovement", "idle", Region(Block())),
    ]
    text = roundtrip(ModuleOp([C.ProgramOp("k", (1, 2), ARGS, threads, semaphores=(0, 3))]))
    assert 'implicit = "reader"' in text
    assert "semaphores = [#builtin.int<0>, #builtin.int<3>]" in text


# Every op the dialects define has a case above, so a new op cannot skip the roundtrip.
def test_every_op_has_a_case():
    seen = {"tilegrid.program", "tilegrid.thread"}
    for case in CASES:
        seen |= {op.name for op in one_thread_program(case).walk()}
    defined = {op.name for dialect in (TILEGRID, BLOCK, TILE) for op in dialect.operations}
    assert defined - seen == set()


# ---- the IR after every pipeline stage of real kernels ----------------------------------------

STAGES = ["frontend", "infer-shapes", "implicit-data-movement", "fold-exp-scale", "fuse-accumulate",
          "fuse-elementwise", "lower-to-tile", "allocate-dst", "update-in-place", "allocate-l1"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def flash_attention_looped():
    spec = importlib.util.spec_from_file_location("tilegrid_example_fa_looped", EXAMPLES / "flash_attention_looped.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    q = np.zeros((32, 32), np.float32)
    kv = np.zeros((module.NUM_KV_BLOCKS, 32, 32), np.float32)
    return module.flash_attention_looped, (q, kv, kv.copy(), q.copy())


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def per_core_branch(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        if core_index(1) == 0:
            y = blk.exp()
        else:
            y = blk * 2.0
        o = out_cb.reserve()
        o.store(y)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2)])
def softmax_2x2_tiles(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        p = (blk - blk.rowmax()).exp()
        o = out_cb.reserve()
        o.store(p * p.rowsum().recip())

    return Program(comp)(x, out)


KERNELS = {
    "flash_attention_looped": flash_attention_looped,
    "if_on_core_index": lambda: (per_core_branch, (np.zeros((32, 64), np.float32), np.zeros((32, 64), np.float32))),
    "2x2_tile_block": lambda: (softmax_2x2_tiles, (np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32))),
}


def compile_stages(kernel, tensors) -> list[tuple[str, str]]:
    """Compile `kernel` (no simulation), recording the IR text after the frontend and every pass."""
    stages: list[tuple[str, str]] = []
    with context.use(dump=lambda stage, text: stages.append((stage, text))):
        compile_kernel(kernel, *tensors)
    return stages


@pytest.mark.parametrize("name", KERNELS)
def test_every_stage_roundtrips(name):
    kernel, tensors = KERNELS[name]()
    stages = compile_stages(kernel, tensors)
    assert [s for s, _ in stages] == STAGES
    for stage, text in stages:
        module = ir.parse(text)
        module.verify()
        assert ir.to_text(module) == text, f"the IR after {stage} does not print back identically"
