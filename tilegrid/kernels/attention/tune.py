"""FlashAttention's autotuner: the chunks (and grid) the performance model predicts fastest.

Simulating a candidate under the timing model costs about as much as running the kernel, so the
tuner simulates as few as it can and no more of each than it must:

1. every candidate (q_chunk, kv_chunk[, grid]) gets a lower bound on its predicted time without
   compiling or simulating (`bound`: the compute thread's matmuls and score exps per core, every
   DMA's bytes on the DRAM channels, NoC links and ports it crosses; tilegrid/perf/bounds.py);
2. candidates are simulated timing-only in the order of their bounds; each run stops as soon as
   its clock passes the best time so far (`perf.session(stop_after=...)`: it cannot win);
3. once the next bound is at or above the best time, no remaining candidate can win: they are
   reported as pruned, never compiled.

The pick is the candidate with the least simulated time, the same one an exhaustive search finds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from ml_dtypes import bfloat16
from xdsl.dialects import scf

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
from tilegrid.kernels.attention.problem import AttentionConfig, Problem, WorkSplit, chunk_range
from tilegrid.numerics import dtype_of
from tilegrid.passes.common import program_of
from tilegrid.perf.costs import CostContext, op_cost
from tilegrid.perf.params import params_for
from tilegrid.targets import compile_kernel


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


def step_floor(plan: Plan, device: Device, fidelity: str, exp: str) -> float:
    """Cycles a K/V step costs the compute thread at least, before compiling: its two matmuls and
    the scores' exp (each op's cost is at least its engine cycles plus the per-op overhead)."""
    p, cfg = plan.problem, plan.config
    params = params_for(device.name)
    m, dt, ck = plan.group * cfg.q_chunk, p.head_dim_pad // 32, cfg.kv_chunk
    exp_cycles = params.sfpu_exp_approx if (cfg.fast_exp or exp == "approx") else params.sfpu_exp_accurate
    return 2 * m * dt * ck * params.matmul_cycles_per_tile[fidelity] + m * ck * exp_cycles + 3 * params.op_overhead_cycles


_steps: dict[tuple, float] = {}


def step_cycles(plan: Plan, device: Device, fidelity: str, exp: str, data_format: str | None) -> float:
    """Cycles a K/V step costs the compute thread at least, from its compiled tile IR: the model's
    cost (tilegrid/perf/costs.py) of every tile op and CB call in the loop that holds the matmuls,
    leaving out its branches (masks only some chunks pay for). Remembered per layout (the grid does
    not change the loop)."""
    key = (layout_key(plan, device), fidelity, exp, data_format)
    if key in _steps:
        return _steps[key]
    params = params_for(device.name)
    tensors = [perf.placeholder(shape, t) for shape, t in arguments_shapes(plan)]
    module = compile_kernel(build_kernel(plan, device), *tensors).compiled.module
    ctx = CostContext(params, fidelity, exp, tuple(_formats(_infos(plan, device), data_format)))
    thread = next(t for t in program_of(module).threads if t.kind.data == "compute")
    loops = [op for op in thread.walk() if isinstance(op, scf.ForOp)
             and any(isinstance(o, T.MatmulOp) for o in op.body.block.ops)]
    total = 0.0
    for op in loops[-1].body.block.ops if loops else ():
        if isinstance(op, T.MatmulOp | T.ComputeOp | T.ReduceOp | T.TransposeOp):
            total += op_cost(ctx, op, T.op_tiles(op)).total
        elif isinstance(op, C.CBWaitOp | C.CBPopOp | C.CBReserveOp | C.CBPushOp):
            total += params.cb_sync_cycles
    _steps[key] = total
    return total


_moves: dict[tuple, tuple[dict[tuple[int, int], int], perf.Bound]] = {}


def work(plan: Plan, device: Device, data_format: str | None) -> tuple[dict[tuple[int, int], int], perf.Bound]:
    """Each core's K/V steps, and the bound its DMAs give (tilegrid/perf/bounds.py): the reader's
    (NoC 0) Q block per item and K and V chunk per step, the writer's (NoC 1) output and LSE blocks.
    A block's DRAM channels repeat every `dram_channels` chunks (tile pages are dealt round-robin),
    so an item's K/V steps are counted per residue, not listed one by one."""
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
    gr, gc = cfg.grid
    steps: dict[tuple[int, int], int] = {}
    transfers = []
    for r in range(gr):
        for c in range(gc):
            n = 0
            for bh, qc in split.items(r, c):
                b, h = divmod(bh, heads)
                q = min(qc, split.nq - 1)
                lo, hi = chunk_range(p, q * qr, qr, kr, cfg.skip)
                n += hi - lo
                transfers.append(((r, c), 0, "dram_read", 0, (b, h, q, 0), q_bytes, 1))
                if not cfg.mcast or gc == 1 or c == 0:
                    for kc in range(lo, min(hi, lo + nch)):
                        times = len(range(kc, hi, nch))
                        transfers.append(((r, c), 0, "dram_read", 1, (b, h // per_kv, kc, 0), kv_bytes, times))
                        transfers.append(((r, c), 0, "dram_read", 2, (b, h // per_kv, kc, 0), kv_bytes, times))
                if qc < split.nq:
                    transfers.append(((r, c), 1, "dram_write", 6, (b, h, qc, 0), q_bytes, 1))
                    if p.return_lse:
                        transfers.append(((r, c), 1, "dram_write", 5, (b, h, qc, 0), m * 32 * 32 * 4, 1))
            steps[(r, c)] = n
    moved = perf.lower_bound(params, cfg.grid, infos, _formats(infos, data_format), {}, transfers)
    _moves[key] = (steps, moved)
    return steps, moved


def bound(plan: Plan, device: Device, fidelity: str, exp: str, data_format: str | None,
          step: float | None = None) -> tuple[perf.Bound, dict[tuple[int, int], float]]:
    """A lower bound on the timing model's cycles for `plan`: its DMAs' (`work`), or each core's
    K/V steps at `step` compute cycles each (default `step_floor`); and each core's compute floor."""
    steps, moved = work(plan, device, data_format)
    step = step_floor(plan, device, fidelity, exp) if step is None else step
    floors = {core: n * step for core, n in steps.items()}
    compute = perf.Bound(max(floors.values(), default=0.0), "compute")
    return max(compute, moved, key=lambda b: b.cycles), floors


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
    for cq, ck, grid in candidates(device, grid_free and base.grid is None):
        if (base.q_chunk and cq != base.q_chunk) or (base.kv_chunk and ck != base.kv_chunk):
            continue
        if cq > max(1, sq_tiles) or ck > max(1, skv_tiles):
            continue
        g_cfg = replace(base, q_chunk=cq, kv_chunk=ck, grid=base.grid or grid)
        # the plan may pack fewer GQA heads than the most (L1, cores): the least bound over them holds
        b = min((bound(_layout(problem, g_cfg, dtype_name, g), device, fidelity, exp, data_format)[0]
                 for g in head_groups(problem, g_cfg)), key=lambda x: x.cycles)
        cands.append(Candidate(cq, ck, g_cfg.grid, b.seconds(params), b.resource))
    cands.sort(key=lambda c: c.bound)
    best: Candidate | None = None
    with tqdm(cands, desc="autotune", unit="candidate", disable=not progress, file=progress_file, leave=False) as bar:
        for c in bar:
            if best is not None and c.bound >= best.seconds:
                continue  # pruned: cannot beat the best
            cfg = replace(base, q_chunk=c.q_chunk, kv_chunk=c.kv_chunk, grid=c.grid)
            try:
                plan = choose_plan(problem, cfg, device, dtype_name)
            except CompileError as e:
                if "L1" not in e.message:
                    raise
                c.status = "no L1 fit"
                continue
            c.group = plan.group
            # compiled now: the loop's real op costs give a tighter bound, for the layout chosen
            refined, floors = bound(plan, device, fidelity, exp, data_format,
                                    step=max(step_floor(plan, device, fidelity, exp),
                                             step_cycles(plan, device, fidelity, exp, data_format)))
            if refined.seconds(params) > c.bound:
                c.bound, c.bound_by = refined.seconds(params), refined.resource
            if best is not None and c.bound >= best.seconds:
                continue  # pruned after compiling
            tensors = [perf.placeholder(shape, t) for shape, t in arguments_shapes(plan)]
            stop = best.seconds * params.clock_ghz * 1e9 if best is not None else None
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
