"""Per-op costs of the compute thread, from the tile IR ops the simulator reports (typed events).

A Tensix compute "thread" is three RISC-V threads (unpack, math, pack) working as a pipeline over
double-buffered DST; the FPU and the SFPU are both driven by the math thread, so their cycles add
(tt-metal issue #55759: the exp on the math thread serialises with the matmuls). One tile op
therefore costs

    max(unpack, fpu + sfpu, pack) + op_overhead

cycles: the engines' throughput, and once per op the unpack -> math -> pack pipeline's fill and
drain (an op's first tile must pass all three stages before its last can be packed). Each engine's
own cycles count as its busy time. An elementwise op's cost class comes from the op table
(tilegrid/ops.py, `OpDef.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from xdsl.ir import Operation, SSAValue

from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.ops import Cost
from tilegrid.perf.params import FIDELITY_PHASES, TILE_BYTES, DeviceParams

# SFPU instructions per 32-datum vector of the ops that are not in the op table (ISA VectorUnit:
# one instruction per cycle). Counted here, not measured.
FILL_INSTR = 1  # store
IOTA_INSTR = 2  # index arithmetic, store
# Share of a tile's 32 SFPU vectors an op on a vector block must visit. A 32-datum vector is 4
# rows x 8 alternate columns of one 16x16 face (anchors §3, ISA SFPLOAD.md): column 0 lies in
# faces 0 and 2, 4 vectors each (tt-metal's `*_tile_first_column`, VectorMode::C: 8 of 32); row 0
# lies in faces 0 and 1, which VectorMode::R visits whole (16 of 32).
SFPU_VECTOR_SHARE = {"c": 8 / 32, "r": 16 / 32, "-": 1.0}


@dataclass(frozen=True)
class OpCost:
    """Cycles of one tile op on each engine and in all (see the module docstring)."""

    unpack: float
    fpu: float
    sfpu: float
    pack: float
    total: float
    flops: float = 0.0  # matmul FLOPs (2 per multiply-add)
    kind: str = ""


@dataclass(frozen=True, eq=False)  # hashed by identity: one per model run
class CostContext:
    """What an op's cost depends on besides the op: device, fidelity, exp mode, formats of the CBs."""

    params: DeviceParams
    fidelity: str = "HiFi4"
    exp: str = "accurate"  # "accurate" | "approx"
    cb_formats: tuple[str, ...] = ()  # format of each kernel argument's CB (data_format applied)


def _finish(ctx: CostContext, unpack: float, fpu: float, sfpu: float, pack: float,
            flops: float = 0.0, kind: str = "") -> OpCost:
    total = max(unpack, fpu + sfpu, pack) + ctx.params.op_overhead_cycles
    return OpCost(unpack, fpu, sfpu, pack, total, flops, kind)


def sfpu_cycles(ctx: CostContext, cost: Cost) -> float:
    """SFPU cycles per tile of an op of the table when it runs on the SFPU."""
    p = ctx.params
    if cost.kind == "exp_approx":
        return p.sfpu_exp_approx
    if cost.kind in ("exp", "poly"):  # poly: no figure, costed like exp (the same polynomial class)
        return p.sfpu_exp_approx if ctx.exp == "approx" else p.sfpu_exp_accurate
    if cost.kind == "recip":
        return p.sfpu_recip
    return cost.instr * p.sfpu_cycles_per_instr_tile


def _tile_bytes(ctx: CostContext, v: SSAValue) -> int:
    """Bytes of one tile of an operand: a CB slot in its argument's format (data_format applied), an
    L1 buffer in its own."""
    owner = v.owner
    if isinstance(owner, C.CBWaitOp | C.CBReserveOp):
        return TILE_BYTES[ctx.cb_formats[owner.cb.data]]
    return TILE_BYTES[v.type.dtype]


@lru_cache(maxsize=4096)
def op_cost(ctx: CostContext, op: Operation, tiles: int) -> OpCost:
    """Cost of one reported tile op (`tiles`: its tile operations, a matmul's M*K*N)."""
    p = ctx.params
    phases = FIDELITY_PHASES[ctx.fidelity]
    up, pk = p.unpack_bytes_per_cycle, p.pack_bytes_per_cycle
    if isinstance(op, T.MatmulOp):
        (m, k), n = op.a.type.tiles, op.out.type.tiles[1]
        h, w = op.subblock_shape or (1, 1)
        subblocks = (m // h) * (n // w)
        # per subblock and K tile: h in0 tiles to SrcB and w in1 tiles to SrcA, on the two unpackers
        bytes_b = subblocks * k * h * _tile_bytes(ctx, op.a)
        bytes_a = subblocks * k * w * _tile_bytes(ctx, op.b)
        fpu = m * k * n * p.matmul_cycles_per_tile[ctx.fidelity]
        if op.acc is not None:  # reload partials into DST: unpack + FPU copy per output tile
            bytes_a += m * n * _tile_bytes(ctx, op.acc)
            fpu += m * n * p.fpu_eltwise_cycles_per_tile
        unpack = max(bytes_a / up, bytes_b / up, (bytes_a + bytes_b) / p.unpack_joint_bytes_per_cycle)
        pack = m * n * _tile_bytes(ctx, op.out) / pk
        return _finish(ctx, unpack, fpu, 0, pack, 2 * 32**3 * m * k * n, "matmul")
    if isinstance(op, T.ReduceOp):
        fpu = tiles * p.fpu_reduce_cycles_per_tile * (1 if op.kind.data == "max" else phases)
        out_tiles = max(1, tiles // 4)  # one column (row reduce) or row of tiles; at most `tiles`
        unpack = tiles * _tile_bytes(ctx, op.x)
        if op.acc is not None:
            unpack += out_tiles * _tile_bytes(ctx, op.acc)
            fpu += out_tiles * p.fpu_eltwise_cycles_per_tile
        return _finish(ctx, unpack / up, fpu, 0, out_tiles * _tile_bytes(ctx, op.out) / pk, kind="reduce")
    if isinstance(op, T.TransposeOp):
        return _finish(ctx, tiles * _tile_bytes(ctx, op.x) / up, tiles * p.fpu_eltwise_cycles_per_tile, 0,
                       tiles * _tile_bytes(ctx, op.out) / pk, kind="transpose")
    assert isinstance(op, T.ComputeOp), op.name
    body = list(op.body.block.ops)
    loads = [o for o in body if isinstance(o, T.LoadOp)]
    unpack_bytes = sum(_tile_bytes(ctx, op.ins[o.input.data]) for o in loads)
    fpu = sfpu = 0.0
    fpu_binaries = 0
    for o in body:
        if isinstance(o, T.ELEMENTWISE):
            cost = o.OP.cost
            if cost.kind == "fpu" and all(isinstance(v.owner, T.LoadOp) for v in o.operands):
                fpu += p.fpu_eltwise_cycles_per_tile * (phases if o.OP.name == "mul" else 1)
                fpu_binaries += 1
            else:
                sfpu += sfpu_cycles(ctx, cost)
        elif isinstance(o, T.FillOp):
            sfpu += FILL_INSTR * p.sfpu_cycles_per_instr_tile
        elif isinstance(o, T.IotaOp):
            sfpu += IOTA_INSTR * p.sfpu_cycles_per_instr_tile
    fpu += max(0, len(loads) - 2 * fpu_binaries) * p.fpu_eltwise_cycles_per_tile  # datacopy into DST
    dims = [v.type.dims for v in op.outs]
    vector = "c" if all(c == 1 for _, c in dims) else "r" if all(r == 1 for r, _ in dims) else "-"
    sfpu *= SFPU_VECTOR_SHARE[vector]
    pack_bytes = sum(_tile_bytes(ctx, op.outs[o.output.data]) for o in body if isinstance(o, T.PackOp))
    return _finish(ctx, tiles * unpack_bytes / up, tiles * fpu, tiles * sfpu, tiles * pack_bytes / pk, kind="compute")


@lru_cache(maxsize=8192)
def op_label(op: Operation, tiles: int | None = None) -> str:
    """A short name of a reported op for reports and traces: `matmul 4x2x8`, `compute 8t exp,mul`."""
    n = f" {tiles}t" if tiles is not None else ""
    if isinstance(op, T.MatmulOp):
        (m, k), nn = op.a.type.tiles, op.out.type.tiles[1]
        return f"matmul {m}x{k}x{nn}"
    if isinstance(op, T.ReduceOp):
        return f"reduce{n} {op.kind.data}"
    if isinstance(op, T.TransposeOp):
        return f"transpose{n}"
    if isinstance(op, T.ComputeOp):
        return f"compute{n} " + ",".join(o.OP.name for o in op.body.block.ops if isinstance(o, T.ELEMENTWISE))
    return op.name
