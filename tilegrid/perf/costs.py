"""Per-op costs of the compute thread, from the op descriptors the code generator emits.

A Tensix compute "thread" is three RISC-V threads (unpack, math, pack) working as a pipeline over
double-buffered DST; the FPU and the SFPU are both driven by the math thread, so their cycles add
(tt-metal issue #55759: the exp on the math thread serialises with the matmuls). One tile op
therefore costs

    max(unpack, fpu + sfpu, pack) + op_overhead

cycles: the engines' throughput, and once per op the unpack -> math -> pack pipeline's fill and
drain (an op's first tile must pass all three stages before its last can be packed).

cycles, and each engine's own cycles count as its busy time. Descriptor formats are documented in
`tilegrid.codegen.python._describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tilegrid.perf.params import FIDELITY_PHASES, TILE_BYTES, DeviceParams

# SFPU instructions per 32-datum vector (a tile is 32 vectors, anchors §3) for ops without a
# published per-tile figure: SFPLOAD of each DST operand + the op + SFPSTORE (ISA VectorUnit:
# one instruction per cycle). Counted here, not measured.
SFPU_INSTR = {
    "binary": 4,  # load, load, op, store
    "compare": 5,  # load, load, sub, set-cc, store
    "scalar": 3,  # load, mad with a constant, store
    "where": 6,  # 3 loads, set-cc, conditional move, store
    "simple_unary": 3,  # neg / abs / relu: load, op, store
    "fill": 1,  # store
    "iota": 2,  # index arithmetic, store
}
COMPARE = {"ge", "gt", "le", "lt", "eq", "ne"}
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

    def tile_bytes(self, src: str) -> int:
        if src.startswith("cb"):
            return TILE_BYTES[self.cb_formats[int(src[2:])]]
        return TILE_BYTES[src]


def _finish(ctx: CostContext, unpack: float, fpu: float, sfpu: float, pack: float,
            flops: float = 0.0, kind: str = "") -> OpCost:
    total = max(unpack, fpu + sfpu, pack) + ctx.params.op_overhead_cycles
    return OpCost(unpack, fpu, sfpu, pack, total, flops, kind)


def unary_sfpu_cycles(ctx: CostContext, kind: str) -> float:
    p = ctx.params
    per_instr = p.sfpu_cycles_per_instr_tile
    if kind == "exp_approx":
        return p.sfpu_exp_approx
    if kind == "exp":
        return p.sfpu_exp_approx if ctx.exp == "approx" else p.sfpu_exp_accurate
    if kind in ("recip", "sqrt", "rsqrt"):
        return p.sfpu_recip
    if kind in ("log", "sigmoid", "tanh"):  # no figure: costed like exp (same polynomial class)
        return p.sfpu_exp_approx if ctx.exp == "approx" else p.sfpu_exp_accurate
    return SFPU_INSTR["simple_unary"] * per_instr


@lru_cache(maxsize=4096)
def op_cost(ctx: CostContext, name: str, tiles: int) -> OpCost:
    """Cost of one reported tile op (`rt.op(core, name, tiles)`)."""
    p = ctx.params
    kind, _, desc = name.partition("|")
    phases = FIDELITY_PHASES[ctx.fidelity]
    up, pk = p.unpack_bytes_per_cycle, p.pack_bytes_per_cycle
    if not desc:  # a plain observer name without descriptor: a coarse cost per tile
        if kind == "matmul":
            return _finish(ctx, 0, tiles * p.matmul_cycles_per_tile[ctx.fidelity], 0, 0, 2 * 32**3 * tiles, kind)
        return _finish(ctx, tiles * 2048 / up, tiles * p.fpu_eltwise_cycles_per_tile, 0, tiles * 2048 / pk,
                       kind=kind)
    parts = desc.split("|")
    if kind == "matmul":
        m, k, n = (int(x) for x in parts[0].split(","))
        h, w = (int(x) for x in parts[1].split(","))
        a, b, acc, out = parts[2].split(",")
        subblocks = (m // h) * (n // w)
        # per subblock and K tile: h in0 tiles to SrcB and w in1 tiles to SrcA, on the two unpackers
        bytes_b = subblocks * k * h * ctx.tile_bytes(a)
        bytes_a = subblocks * k * w * ctx.tile_bytes(b)
        fpu = m * k * n * p.matmul_cycles_per_tile[ctx.fidelity]
        if acc != "-":  # reload partials into DST: unpack + FPU copy per output tile
            bytes_a += m * n * ctx.tile_bytes(acc)
            fpu += m * n * p.fpu_eltwise_cycles_per_tile
        unpack = max(bytes_a / up, bytes_b / up, (bytes_a + bytes_b) / p.unpack_joint_bytes_per_cycle)
        pack = m * n * ctx.tile_bytes(out) / pk
        return _finish(ctx, unpack, fpu, 0, pack, 2 * 32**3 * m * k * n, kind)
    if kind == "reduce":
        rkind = parts[0]
        x, out = parts[1].split(",")
        fpu = tiles * p.fpu_reduce_cycles_per_tile * (1 if rkind == "max" else phases)
        # output tiles: one column (row reduce) or row of tiles; at most `tiles`
        return _finish(ctx, tiles * ctx.tile_bytes(x) / up, fpu, 0, max(1, tiles // 4) * ctx.tile_bytes(out) / pk,
                       kind=kind)
    if kind == "transpose":
        x, out = parts[0].split(",")
        return _finish(ctx, tiles * ctx.tile_bytes(x) / up, tiles * p.fpu_eltwise_cycles_per_tile, 0,
                       tiles * ctx.tile_bytes(out) / pk, kind=kind)
    # compute: body | ins | outs | h,w | vector ; `tiles` = output tiles
    body = parts[0].split()
    ins = parts[1].split(",") if parts[1] else []
    outs = parts[2].split(",") if parts[2] else []
    loads = [b for b in body if b.startswith("L")]
    unpack_bytes = sum(ctx.tile_bytes(ins[int(b[1:].rstrip("rcs"))]) for b in loads)
    fpu_binaries = [b for b in body if b.startswith("B:") and b.endswith(":f")]
    fpu = 0.0
    for b in fpu_binaries:
        fpu += p.fpu_eltwise_cycles_per_tile * (phases if b.split(":")[1] == "mul" else 1)
    fpu += max(0, len(loads) - 2 * len(fpu_binaries)) * p.fpu_eltwise_cycles_per_tile  # datacopy into DST
    sfpu = 0.0
    per_instr = p.sfpu_cycles_per_instr_tile
    for b in body:
        if b.startswith("U:"):
            sfpu += unary_sfpu_cycles(ctx, b[2:])
        elif b.startswith("B:") and b.endswith(":s"):
            sfpu += SFPU_INSTR["compare" if b.split(":")[1] in COMPARE else "binary"] * per_instr
        elif b.startswith("S:"):
            sfpu += SFPU_INSTR["scalar"] * per_instr
        elif b == "W":
            sfpu += SFPU_INSTR["where"] * per_instr
        elif b == "F":
            sfpu += SFPU_INSTR["fill"] * per_instr
        elif b == "I":
            sfpu += SFPU_INSTR["iota"] * per_instr
    sfpu *= SFPU_VECTOR_SHARE[parts[4]]
    pack_bytes = sum(ctx.tile_bytes(outs[int(b[1:])]) for b in body if b.startswith("P"))
    return _finish(ctx, tiles * unpack_bytes / up, tiles * fpu, tiles * sfpu, tiles * pack_bytes / pk, kind=kind)
