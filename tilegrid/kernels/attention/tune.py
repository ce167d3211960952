"""FlashAttention's autotuner: the chunks (and grid) the performance model predicts fastest.

Simulating a candidate under the timing model costs about as much as running the kernel, and
compiling one a sixth of that, so the tuner does each only where a bound cannot settle it. Every
candidate (q_chunk, kv_chunk[, grid]) has a lower bound on its predicted time that tightens as it
is weighed further, each step dearer than the last:

0. before compiling: each core's K/V steps at `step_floor` (the step loop's ops from the kernel's
   structure, at their cheapest);
1. compiled (`choose_plan`: the layout that fits L1): the compute thread's own op costs per work
   item, K/V step and mask-crossing step (`compute_cost`) times what each core is dealt (`counts`):
   the compute thread's busy time, exactly for this kernel;
2. with its DMAs: the bytes every DRAM channel, NoC link and port carries (`moves`,
   tilegrid/perf/bounds.py);
3. simulated, timing-only, stopping as soon as its clock (plus the compute it has left) passes the
   best time so far (`perf.session(stop_after=..., floors=...)`).

The candidate with the least bound is always weighed next (best first), so once the least bound
left reaches the best simulated time no candidate left can win: the rest are pruned. The pick is
the candidate with the least simulated time, the one an exhaustive search finds.
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from ml_dtypes import bfloat16
from xdsl.dialects import scf
from xdsl.dialects.builtin import IntegerAttr

from tilegrid import context, perf
from tilegrid.device import Device
from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.kernels.attention.kernel import build_kernel
from tilegrid.kernels.attention.plan import (
    CHUNKS,
    Plan,
    arguments_shapes,
    choose_plan,
    count,
    head_groups,
    layout_key,
    make_problem,
)
from tilegrid.kernels.attention.problem import AttentionConfig, Problem, WorkSplit, chunk_crosses, chunk_range
from tilegrid.numerics import dtype_of
from tilegrid.passes.common import program_of
from tilegrid.perf.costs import SFPU_VECTOR_SHARE, CostContext, op_cost
from tilegrid.perf.model import dram_spread
from tilegrid.perf.params import TILE_BYTES, params_for
from tilegrid.targets import compile_ir


@dataclass
class Candidate:
    """One candidate as the tuner weighed it: its bound, then (if simulated) its predicted time."""

    q_chunk: int
    kv_chunk: int
    grid: tuple[int, int]
    bound: float  # seconds: the predicted time cannot be less
    bound_by: str  # the resource that gives the bound
    seconds: float | None = None  # predicted (simulated) time
    bottleneck: str = ""  # what the simulation says binds
    status: str = "pruned"  # "simulated", "stopped" (passed the best), "pruned" (bound >= best), "no L1 fit"
    group: int = 1  # GQA heads per work item of the plan
    compiled: bool = False  # weighed by its compiled kernel (or found not to fit L1)


def candidates(device: Device, grid_free: bool) -> list[tuple[int, int, tuple[int, int]]]:
    grids = [device.grid]
    if grid_free:
        r, c = device.grid
        grids += [g for g in ((r, c - 1), (r - 1, c), (8, 8)) if 0 < g[0] <= r and 0 < g[1] <= c and g != device.grid]
    return [(a, b, g) for g in grids for a, b in CHUNKS]


def _infos(plan: Plan, device: Device) -> list[dict]:
    """The kernel's arguments as the timing model sees them (shape, block, dtype), without compiling."""
    bfs = build_kernel(plan, device).config.block_factors
    return [{"shape": shape, "block": tuple(bf[:2]), "dtype": dtype_of(np.zeros((), dt))}
            for (shape, dt), bf in zip(arguments_shapes(plan), bfs)]


def _formats(infos: list[dict], data_format: str | None) -> list[str]:
    """Each argument's format in DRAM and its CB (as the perf target applies `data_format`)."""
    return [data_format if (data_format and a["dtype"] == "bf16") else a["dtype"] for a in infos]


def step_floor(plan: Plan, device: Device, fidelity: str, exp: str, data_format: str | None = None) -> float:
    """Cycles a K/V step costs the compute thread at least, before compiling (kernel.py's step
    loop is eight tile ops: two matmuls, the row max and row sum, the new max, the exp of the
    scores, the correction factor and the accumulator's rescale): each op's per-op overhead, the
    busiest engine of the matmuls, reductions and the scores' exp, the correction's exp on its
    [32, 1] column, and the four CB calls of K and V (tilegrid/perf/costs.py). Operands are taken
    in their smallest format and whole, so no compiled layout costs less (tests check it)."""
    p, cfg = plan.problem, plan.config
    params = params_for(device.name)
    m, dt, ck = plan.group * cfg.q_chunk, p.head_dim_pad // 32, cfg.kv_chunk
    up, joint, overhead = params.unpack_bytes_per_cycle, params.unpack_joint_bytes_per_cycle, params.op_overhead_cycles
    kv = TILE_BYTES[data_format if data_format and plan.dtype == "bf16" else plan.dtype]  # K, V in their CBs
    q = min(kv, TILE_BYTES[plan.dtype])
    s, pt = TILE_BYTES[plan.score_dtype], TILE_BYTES[plan.dtype]  # S; P (in the inputs' format)
    accurate = params.sfpu_exp_approx if exp == "approx" else params.sfpu_exp_accurate
    score_exp = params.sfpu_exp_approx if cfg.fast_exp else accurate
    mm = m * dt * ck * params.matmul_cycles_per_tile[fidelity]
    scores = m * ck  # tiles
    qk = max(mm, (m * dt * q + dt * ck * kv) / joint)
    pv = max(mm, (scores * pt + ck * dt * kv) / joint)
    reduces = max(scores * s / up, scores * params.fpu_reduce_cycles_per_tile) + scores * pt / up
    exp_p = max(scores * s / up, scores * score_exp, scores * pt / params.pack_bytes_per_cycle)
    exp_c = m * accurate * SFPU_VECTOR_SHARE["c"]
    return qk + pv + reduces + exp_p + exp_c + 8 * overhead + 4 * params.cb_sync_cycles


@dataclass(frozen=True)
class ComputeCost:
    """Cycles the compute thread's ops and CB calls cost (the timing model's own op costs, from
    the compiled tile IR) once, per round of the work loops, per work item and per K/V step; a
    branch counts its cheaper side and a loop of unknown trips nothing, so each is a floor."""

    once: float
    per_round: float
    per_item: float
    per_step: float
    per_edge: float = 0.0  # more, per step that crosses a mask boundary (its mask branch)

    def core(self, rounds: int, items: int, steps: int, edges: int) -> float:
        return (self.once + rounds * self.per_round + items * self.per_item + steps * self.per_step
                + edges * self.per_edge)


def _region(block: Any, cost: Callable[[Any], float], taken: bool = False) -> float:
    """Cycles a block's ops cost at least: its own ops, each `if` at its cheaper side (its true side
    when `taken`: only this block's own ifs), loops none."""
    total = 0.0
    for op in block.ops:
        if isinstance(op, scf.IfOp):
            sides = [_region(r.block, cost) if r.blocks else 0.0 for r in (op.true_region, op.false_region)]
            total += sides[0] if taken else min(sides)
        elif not isinstance(op, scf.ForOp):
            total += cost(op)
    return total


def _trips(loop: scf.ForOp) -> int:
    """A loop's trip count when its bounds are constants, else 0 (a floor)."""
    bounds = [getattr(getattr(v.owner, "value", None), "value", None) for v in (loop.lb, loop.ub, loop.step)]
    if not all(isinstance(b, IntegerAttr) for b in bounds):
        return 0
    lb, ub, st = (b.value.data for b in bounds)
    return max(0, -(-(ub - lb) // st)) if st > 0 else 0


_costs: dict[tuple, tuple[ComputeCost, int]] = {}


def compute_cost(plan: Plan, device: Device, fidelity: str, exp: str, data_format: str | None
                 ) -> tuple[ComputeCost, int]:
    """The compute thread's floor costs (`ComputeCost`) and its rounds (trips of the work loops
    around the work item's `if valid`), from the compiled kernel. Remembered per layout (the grid
    does not change a core's code, only what it is dealt)."""
    key = (layout_key(plan, device), fidelity, exp, data_format)
    if key in _costs:
        return _costs[key]
    params = params_for(device.name)
    tensors = [perf.placeholder(shape, t) for shape, t in arguments_shapes(plan)]
    module = compile_ir(build_kernel(plan, device), *tensors).module
    ctx = CostContext(params, fidelity, exp, tuple(_formats(_infos(plan, device), data_format)))

    def cost(op: Any) -> float:
        if isinstance(op, T.MatmulOp | T.ComputeOp | T.ReduceOp | T.TransposeOp):
            return op_cost(ctx, op, T.op_tiles(op)).total
        if isinstance(op, C.CBWaitOp | C.CBPopOp | C.CBReserveOp | C.CBPushOp):
            return params.cb_sync_cycles
        return 0.0

    thread = next(t for t in program_of(module).threads if t.kind.data == "compute")
    loops = [op for op in thread.walk() if isinstance(op, scf.ForOp)
             and any(isinstance(o, T.MatmulOp) for o in op.body.block.ops)]
    step = loops[-1] if loops else None
    item = step.parent_op() if step is not None else None
    if not isinstance(item, scf.IfOp) or step.parent_block() is not item.true_region.block:
        found = ComputeCost(_region(thread.body.block, cost), 0.0, 0.0, 0.0), 0  # not the expected shape
    else:
        rounds, outer, body = 1, item.parent_op(), item.parent_block()
        per_round = _region(body, cost)
        while isinstance(outer, scf.ForOp):
            rounds *= _trips(outer)
            outer = outer.parent_op()
        # in a step that crosses a mask boundary the step's branches take their mask side
        per_step = _region(step.body.block, cost)
        per_edge = _region(step.body.block, cost, taken=True) - per_step
        found = ComputeCost(_region(thread.body.block, cost), per_round if rounds else 0.0,
                            _region(item.true_region.block, cost), per_step, per_edge), rounds
    _costs[key] = found
    return found


_counts: dict[tuple, dict[tuple[int, int], tuple[int, int, int]]] = {}


def counts(plan: Plan) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Each core's work items, K/V steps, and steps that cross a mask boundary (their mask branch
    runs), as the kernel's threads deal them (problem.py `WorkSplit`, `chunk_range`, `crosses_mask`)."""
    key = (plan.problem, plan.config, plan.group)
    if key in _counts:
        return _counts[key]
    p, cfg = plan.problem, plan.config
    qr, kr = 32 * cfg.q_chunk, 32 * cfg.kv_chunk
    split = WorkSplit.of(p, cfg, plan.group)
    found: dict[tuple[int, int], tuple[int, int, int]] = {}
    for r in range(cfg.grid[0]):
        for c in range(cfg.grid[1]):
            steps = edges = 0
            items = split.items(r, c)
            for _, qc in items:
                q0 = min(qc, split.nq - 1) * qr
                lo, hi = chunk_range(p, q0, qr, kr, cfg.skip)
                steps += hi - lo
                # the crossing chunks are a suffix (right edge, padding) and a prefix (left edge)
                top = hi
                while top > lo and chunk_crosses(p, q0, (top - 1) * kr, qr, kr):
                    top -= 1
                bottom = lo
                while bottom < top and chunk_crosses(p, q0, bottom * kr, qr, kr):
                    bottom += 1
                edges += (hi - top) + (bottom - lo)
            found[(r, c)] = (len(items), steps, edges)
    _counts[key] = found
    return found


_moves: dict[tuple, tuple[perf.Bound, dict[tuple[int, int], float]]] = {}


def moves(plan: Plan, device: Device, data_format: str | None
          ) -> tuple[perf.Bound, dict[tuple[int, int], float]]:
    """The bound the kernel's DMAs give (tilegrid/perf/bounds.py): the reader's (NoC 0) Q block per
    item and K and V chunk per step, the writer's (NoC 1) output and LSE blocks. A block's DRAM
    channels repeat every `dram_channels` chunks (tile pages are dealt round-robin), so an item's
    K/V steps are counted per residue, and one core's same DMAs once with their count. And per
    core, when its first Q block and first K chunk land at the soonest (`landed`): its compute
    cannot start the first item, or its first step, before."""
    key = (plan.problem, plan.config, plan.group, plan.dtype, device, data_format)  # not the CB layout
    if key in _moves:
        return _moves[key]
    p, cfg, g = plan.problem, plan.config, plan.group
    params = params_for(device.name)
    infos = _infos(plan, device)
    m, qr, kr = g * cfg.q_chunk, 32 * cfg.q_chunk, 32 * cfg.kv_chunk
    esize = 2 if plan.dtype == "bf16" else 4
    q_bytes, kv_bytes = m * 32 * p.head_dim_pad * esize, kr * p.head_dim_pad * esize
    split = WorkSplit.of(p, cfg, g)
    heads, per_kv, nch = p.heads // g, p.heads // p.kv_heads // g, params.dram_channels
    gc = cfg.grid[1]
    transfers: dict[tuple, int] = defaultdict(int)
    starts: dict[tuple[int, int], tuple[float, ...]] = {}
    for r in range(cfg.grid[0]):
        for c in range(gc):
            core = (r, c)
            for bh, qc in split.items(r, c):
                b, h = divmod(bh, heads)
                q = min(qc, split.nq - 1)
                lo, hi = chunk_range(p, q * qr, qr, kr, cfg.skip)
                transfers[(core, 0, "dram_read", 0, (b, h, q, 0), q_bytes)] += 1
                if core not in starts and hi > lo and (not cfg.mcast or gc == 1):
                    starts[core] = landed(params, infos, data_format, core, [(0, (b, h, q, 0), q_bytes),
                                                                             (1, (b, h // per_kv, lo, 0), kv_bytes)])
                if not cfg.mcast or gc == 1 or c == 0:
                    for kc in range(lo, min(hi, lo + nch)):
                        times = len(range(kc, hi, nch))
                        transfers[(core, 0, "dram_read", 1, (b, h // per_kv, kc, 0), kv_bytes)] += times
                        transfers[(core, 0, "dram_read", 2, (b, h // per_kv, kc, 0), kv_bytes)] += times
                if qc < split.nq:
                    transfers[(core, 1, "dram_write", 6, (b, h, qc, 0), q_bytes)] += 1
                    if p.return_lse:
                        transfers[(core, 1, "dram_write", 5, (b, h, qc, 0), m * 32 * 32 * 4)] += 1
    found = _moves[key] = (perf.lower_bound(params, cfg.grid, infos, _formats(infos, data_format), {},
                                            (t + (n,) for t, n in transfers.items())), starts)
    return found


def landed(params: Any, infos: list[dict], data_format: str | None, core: tuple[int, int],
           reads: list[tuple[int, tuple, int]]) -> tuple[float, ...]:
    """The soonest each of `reads` (argument, block index, bytes), which the reader issues one after
    another, each waited for, has landed: each costs its issue, its bytes through the core's NoC
    port or its busiest DRAM channel, the route latency of its slowest channel and the DRAM latency
    (tilegrid/perf/model.py `handle_dram`), with nothing else in the way."""
    fmts = _formats(infos, data_format)
    t, out = 0.0, []
    for arg, idx, nbytes in reads:
        ntiles = max(1, nbytes // TILE_BYTES[infos[arg]["dtype"]])
        tile = TILE_BYTES[fmts[arg]]
        chans, share = dram_spread(params.dram_channels, infos[arg], idx, ntiles)
        lat = params.dram_legs(params.noc_xy(*core), 0, "dram_read", chans)[1]
        busiest = max(ntiles * tile / params.noc_bytes_per_cycle,
                      share * tile / params.dram_bytes_per_cycle_per_channel)
        t += params.dma_issue_cycles + busiest + lat + params.dram_latency_cycles
        out.append(t)
    return tuple(out)


def bound(plan: Plan, device: Device, fidelity: str, exp: str, data_format: str | None,
          costs: tuple[ComputeCost, int] | None = None, dma: bool = True
          ) -> tuple[perf.Bound, dict[tuple[int, int], float]]:
    """A lower bound on the timing model's cycles for `plan`, and each core's compute floor: its
    items and K/V steps at `costs` (the compiled kernel's `compute_cost`; without them, its steps at
    `step_floor`), and (`dma`) what its DMAs take (`moves`)."""
    cost, rounds = costs or (ComputeCost(0.0, 0.0, 0.0, step_floor(plan, device, fidelity, exp, data_format)), 0)
    floors = {core: cost.core(rounds, *n) for core, n in counts(plan).items()}
    compute = perf.Bound(max(floors.values(), default=0.0), "compute")
    if not dma:
        return compute, floors
    moved, starts = moves(plan, device, data_format)
    # what runs before the first item (the masks built once, a round's ops) need not wait for its Q
    # block, nor the item's own ops for its first K chunk; the rest does
    ahead = cost.once + rounds * cost.per_round
    started = perf.Bound(max((floors[core] + max(0.0, tq - ahead, tk - ahead - cost.per_item)
                              for core, (tq, tk) in starts.items()), default=0.0), "compute")
    return max(compute, started, moved, key=lambda b: b.cycles), floors


def _layout(p: Problem, cfg: AttentionConfig, dtype: str, g: int) -> Plan:
    """The plan's work layout for chunks and heads per block (no L1 check: what the bound needs)."""
    cq, ck = cfg.q_chunk, cfg.kv_chunk
    pp = replace(p, seq_q_pad=-(-p.seq_q // (32 * cq)) * 32 * cq, seq_kv_pad=-(-p.seq_kv // (32 * ck)) * 32 * ck)
    mcast = cfg.mcast and not p.causal and p.window == (None, None)
    c = replace(cfg, mcast=mcast)
    items, steps = count(pp, cq, ck, g, c.skip)
    return Plan(pp, c, items, steps, dtype=dtype, group=g)


def autotune_attention(q_shape: tuple[int, ...], kv_shape: tuple[int, ...], *, causal: bool = False,
                       window: Any = None, config: AttentionConfig | None = None, device: Device,
                       fidelity: str = "HiFi4", data_format: str | None = None, dtype: Any = None,
                       grid_free: bool = False, exp: str = "accurate", log: Callable[[str], Any] | None = print,
                       progress: bool = False, progress_file: Any = None
                       ) -> tuple[AttentionConfig, list[Candidate]]:
    """The fastest (q_chunk, kv_chunk[, grid]) by the timing model's prediction (see the module
    docstring), as an AttentionConfig, and every candidate as weighed. exp: the SFPU exponential the
    prediction assumes ("accurate", the simulator's numerics, or "approx"). `log` gets the table of
    candidates with the pick marked; `progress` shows a bar (tqdm) on `progress_file` (stderr)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    base = config or AttentionConfig()
    dt = dtype or bfloat16
    dtype_name = "f32" if np.dtype(dt) == np.float32 else "bf16"
    z = np.zeros((1, 1, 1, 1), dt)
    problem = make_problem(np.broadcast_to(z, q_shape), np.broadcast_to(z, kv_shape), np.broadcast_to(z, kv_shape),
                           causal, None, window, None)
    params = params_for(device.name)
    sq_tiles, skv_tiles = -(-q_shape[2] // 32), -(-kv_shape[2] // 32)
    cands: list[Candidate] = []
    layouts: list[list[Plan]] = []  # per candidate, its work layout for each number of GQA heads per block
    for cq, ck, grid in candidates(device, grid_free and base.grid is None):
        if (base.q_chunk and cq != base.q_chunk) or (base.kv_chunk and ck != base.kv_chunk):
            continue
        if cq > max(1, sq_tiles) or ck > max(1, skv_tiles):
            continue
        g_cfg = replace(base, q_chunk=cq, kv_chunk=ck, grid=base.grid or grid)
        layouts.append([_layout(problem, g_cfg, dtype_name, g) for g in head_groups(problem, g_cfg)])
        cands.append(Candidate(cq, ck, g_cfg.grid, 0.0, ""))
    for i, c in enumerate(cands):  # before compiling: the least compute floor over the packings the plan may take
        b = min((bound(plan, device, fidelity, exp, data_format, dma=False)[0] for plan in layouts[i]),
                key=lambda x: x.cycles)
        c.bound, c.bound_by = b.seconds(params), b.resource
    # Best first: a candidate's bound only tightens as it is weighed further (its compiled kernel's
    # compute costs, then its DMAs), so the least bound is refined until it is final, then simulated;
    # once the least bound left is at or above the best time, no candidate left can win.
    stage = [0] * len(cands)  # 0: compute floor, 1: compiled, 2: and DMAs: simulate next
    queue = [(c.bound, i) for i, c in enumerate(cands)]
    heapq.heapify(queue)
    compiled: dict[int, tuple[Plan, tuple[ComputeCost, int], dict[tuple[int, int], float]]] = {}
    best: Candidate | None = None

    def tighten(c: Candidate, b: perf.Bound) -> None:
        if b.seconds(params) > c.bound:
            c.bound, c.bound_by = b.seconds(params), b.resource

    with tqdm(total=len(cands), desc="autotune", unit="candidate", disable=not progress, file=progress_file,
              leave=False) as bar:
        while queue and (best is None or queue[0][0] < best.seconds):
            _, i = heapq.heappop(queue)
            c = cands[i]
            if stage[i] == 0:
                try:
                    plan = choose_plan(problem, replace(base, q_chunk=c.q_chunk, kv_chunk=c.kv_chunk, grid=c.grid),
                                       device, dtype_name)
                except CompileError as e:
                    if "L1" not in e.message:
                        raise
                    c.status, c.compiled = "no L1 fit", True
                    bar.update()
                    continue
                c.group, c.compiled = plan.group, True
                costs = compute_cost(plan, device, fidelity, exp, data_format)
                b, floors = bound(plan, device, fidelity, exp, data_format, costs=costs, dma=False)
                compiled[i] = (plan, costs, floors)
                tighten(c, b)
            elif stage[i] == 1:
                plan, costs, _ = compiled[i]
                tighten(c, bound(plan, device, fidelity, exp, data_format, costs=costs)[0])
            else:
                plan, _, floors = compiled[i]
                tensors = [perf.placeholder(shape, t) for shape, t in arguments_shapes(plan)]
                stop = best.seconds * params.clock_ghz * 1e9 if best is not None else None
                bar.update()
                with perf.session(fidelity, timing_only=True, data_format=data_format, exp=exp, trace=False,
                                  stop_after=stop, floors=floors) as s:
                    try:
                        build_kernel(plan, device)(*tensors)
                    except perf.Overrun:
                        c.status = "stopped"
                        continue
                c.status, c.seconds, c.bottleneck = "simulated", s.last.seconds, s.last.bound
                if best is None or c.seconds < best.seconds:
                    best = c
                    bar.set_postfix_str(f"best {best.seconds * 1e3:.4f} ms")
                continue
            stage[i] += 1
            heapq.heappush(queue, (c.bound, i))
        bar.update(bar.total - bar.n)  # the rest: pruned by their bounds
    if best is None:
        raise CompileError("autotune: no candidate fits L1", kernel="flash_attention",
                           note="give a smaller head_dim or bf16 inputs")
    if log:
        log(table(cands, best, fidelity, data_format, exp, time.perf_counter() - t0))
    return replace(base, q_chunk=best.q_chunk, kv_chunk=best.kv_chunk, grid=best.grid), cands


def table(cands: list[Candidate], best: Candidate, fidelity: str, data_format: str | None, exp: str,
          seconds: float) -> str:
    """The candidates weighed, fastest first, the pick marked."""
    sim = sum(c.status in ("simulated", "stopped") for c in cands)
    lines = [f"autotune ({fidelity}, {exp} exp{', ' + data_format if data_format else ''}): {len(cands)} candidates, "
             f"{sim} simulated (timing-only), {sum(c.status == 'pruned' for c in cands)} pruned by their bounds, "
             f"in {seconds:.2f} s",
             f"  {'q chunk':>7} {'kv chunk':>8} {'grid':>5} {'heads':>5} {'bound ms':>9} {'predicted ms':>12}  notes"]
    order = sorted(cands, key=lambda c: (c.seconds is None, c.seconds or 0.0, c.bound))
    for c in order:
        pred = f"{c.seconds * 1e3:12.4f}" if c.seconds is not None else f"{'-':>12}"
        note = {"simulated": f"{c.bottleneck}-bound", "stopped": "stopped: passed the best",
                "pruned": f"bound ({c.bound_by}) >= best: not simulated", "no L1 fit": "does not fit L1"}[c.status]
        mark = "  <- chosen" if c is best else ""
        heads = str(c.group) if c.status in ("simulated", "stopped") else "-"
        lines.append(f"  {32 * c.q_chunk:7d} {32 * c.kv_chunk:8d} {c.grid[0]}x{c.grid[1]:<3d} {heads:>5} "
                     f"{c.bound * 1e3:9.4f} {pred}  {note}{mark}")
    return "\n".join(lines)


def tuning_options() -> tuple[str, str, str | None]:
    """What `autotune=True` tunes for: the running performance session's fidelity, exp mode and
    data format, or (outside one) HiFi4 with the accurate exp, the simulator's own numerics."""
    s = context.current().perf
    o = s.options if s is not None else None
    return (o.fidelity, o.exp, o.data_format) if o else ("HiFi4", "accurate", None)


_tuned: dict[tuple, AttentionConfig] = {}


def tuned_config(p: Problem, cfg: AttentionConfig, device: Device, dtype: str) -> AttentionConfig:
    """`cfg` with `autotune=True` resolved: the chunks and grid the tuner picks for the running
    session's numerics (remembered per problem)."""
    key = (p, cfg, device, dtype, tuning_options())
    if key not in _tuned:
        fidelity, exp, data_format = tuning_options()
        tuned, _ = autotune_attention((p.batch, p.heads, p.seq_q, p.head_dim),
                                      (p.batch, p.kv_heads, p.seq_kv, p.head_dim), causal=p.causal,
                                      window=p.window, config=replace(cfg, autotune=False), device=device,
                                      dtype=bfloat16 if dtype == "bf16" else np.float32, log=None, fidelity=fidelity,
                                      exp=exp, data_format=data_format)
        _tuned[key] = replace(cfg, q_chunk=tuned.q_chunk, kv_chunk=tuned.kv_chunk, grid=tuned.grid, autotune=False)
    return _tuned[key]
