"""FlashAttention planning: from a problem to a plan the kernel is built from.

Chunk sizes (the largest that fit L1, checked by compiling the kernel, and still give every core
work; the performance model's fastest with `autotune`: tune.py), the work split, the CB depths and
whether the causal masks are kept in L1 — and, when a layout does not fit, the next one: per-item
CBs single-buffered, then K/V single-buffered, then the masks built per chunk; then fewer GQA heads
per block, then smaller chunks (`_choose_plan`). No layout fitting is a clear error naming the
smallest one tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import Device
from tilegrid.errors import CompileError, TilegridError
from tilegrid.kernels.attention.kernel import build_kernel
from tilegrid.kernels.attention.problem import AttentionConfig, Problem, chunk_range
from tilegrid.targets import compile_ir

# Preference order of (q_chunk, kv_chunk) tiles. (4, 8) first: the performance model's autotuner
# picks it, or is within 7% of it, for WH 8x10 at seq 2048 and 8192, d 64 and 128, causal or not
# (HiFi4, accurate exp: the simulator's numerics; docs/perf.md "autotuner vs default").
CHUNKS = [(4, 8), (8, 8), (8, 4), (4, 4), (4, 2), (2, 4), (2, 2), (2, 1), (1, 2), (1, 1)]


@dataclass
class Plan:
    """The chosen layout and what it costs: shown by `tilegrid attention`."""

    problem: Problem
    config: AttentionConfig
    items: int  # Q-chunk work items
    kv_steps: int  # K/V chunk steps over all items (after skipping)
    l1: Any = None
    notes: list[str] = field(default_factory=list)
    diagonals: tuple[int, ...] = ()  # offsets of the causal masks built once and kept in L1
    item_slots: int = 2  # slots of the CBs that change once per work item (Q, out, lse)
    kv_slots: int = 2  # slots of the K, V (and mask) CBs
    dtype: str = "bf16"  # the inputs' format
    group: int = 1  # Q heads of one K/V group stacked per work item (GQA packing; 1 = unpacked)

    @property
    def score_dtype(self) -> str:
        """The format of S = Q K^T as the kernel transforms it (an f32 mask or ALiBi bias widen it)."""
        return "f32" if self.dtype == "f32" or self.problem.has_mask or self.problem.alibi else "bf16"

    @property
    def diagonal_once(self) -> bool:
        return bool(self.diagonals)

    def describe(self) -> str:
        p, c = self.problem, self.config
        gr, gc = c.grid
        lines = [
            f"grid {gr}x{gc} ({gr * gc} cores), q chunk {32 * c.q_chunk} rows, kv chunk {32 * c.kv_chunk} rows, "
            f"head_dim {p.head_dim}" + (f" (padded to {p.head_dim_pad})" if p.head_dim_pad != p.head_dim else ""),
            f"{p.batch} x {p.heads} heads ({p.kv_heads} KV heads"
            + (f", {self.group} Q heads per work item" if self.group > 1 else "")
            + f") x {p.seq_q_pad // (32 * c.q_chunk)} q chunks = {self.items} work items, {self.kv_steps} K/V chunk steps"
            + (" (causal: chunks above the diagonal skipped)" if p.causal and c.skip else ""),
            f"accumulators {c.acc_dtype}, K/V multicast {'on' if c.mcast else 'off'}, "
            f"causal balance {'on' if c.balance and p.causal else 'off'}"
            + (f", causal mask{'s' if len(self.diagonals) > 1 else ''} built once" if self.diagonals else "")
            + (", Q / out CBs single-buffered to make room" if self.item_slots == 1 and c.double_buffer else "")
            + (", K / V CBs single-buffered to make room" if self.kv_slots == 1 and c.double_buffer else ""),
        ]
        return "\n".join(lines + self.notes)


def make_problem(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float | None,
                 window: tuple | None, mask: Any, softcap: float | None = None, alibi_slopes: Any = None,
                 return_lse: bool = True) -> Problem:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise TilegridError(
            f"flash_attention: q, k, v must be [batch, heads, seq, head_dim]; got shapes {q.shape}, {k.shape}, {v.shape}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TilegridError(f"flash_attention: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    b, h, sq, d = q.shape
    bk, hk, skv, dk = k.shape
    if k.shape != v.shape or bk != b or dk != d:
        raise TilegridError(f"flash_attention: k {k.shape} and v {v.shape} must both be [{b}, kv_heads, seq_kv, {d}]")
    if hk < 1 or h % hk:
        raise TilegridError(f"flash_attention: heads ({h}) must be a multiple of kv_heads ({hk})")
    if d > 256 or d < 1 or sq < 1 or skv < 1:
        raise TilegridError(f"flash_attention: head_dim must be 1..256 and sequences non-empty (got d={d}, {sq}, {skv})")
    if window is not None and (len(window) != 2 or any(w is not None and w < 0 for w in window)):
        raise TilegridError(f"flash_attention: window must be (left, right) with non-negative ints or None, got {window}")
    if mask is not None and tuple(np.shape(mask)) != (sq, skv):
        raise TilegridError(f"flash_attention: mask must be [seq_q, seq_kv] = [{sq}, {skv}], got {np.shape(mask)}")
    if softcap is not None and not (isinstance(softcap, int | float) and softcap > 0):
        raise TilegridError(f"flash_attention: softcap must be a positive number (or None), got {softcap!r}")
    if alibi_slopes is not None and tuple(np.shape(alibi_slopes)) not in ((h,), (b, h)):
        raise TilegridError(f"flash_attention: alibi_slopes must be [heads] = [{h}] or [batch, heads] = [{b}, {h}], "
                            f"got {np.shape(alibi_slopes)}")
    dp = -(-d // 32) * 32
    return Problem(b, h, hk, sq, skv, d, sq, skv, dp, causal, tuple(window) if window else (None, None),
                   mask is not None, scale if scale is not None else 1.0 / math.sqrt(d),
                   float(softcap) if softcap else None, alibi_slopes is not None, return_lse)


def count(p: Problem, cq: int, ck: int, g: int = 1, skip: bool = True) -> tuple[int, int]:
    """Work items and K/V chunk steps (each step reads one K and one V chunk)."""
    nq = p.seq_q_pad // (32 * cq)
    steps = 0
    for qc in range(nq):
        lo, hi = chunk_range(p, qc * 32 * cq, 32 * cq, 32 * ck, skip)
        steps += hi - lo
    heads = p.heads // g
    return p.batch * heads * nq, p.batch * heads * steps


_plans: dict[tuple, Plan] = {}


def choose_plan(p: Problem, cfg: AttentionConfig, device: Device, dtype: str, backend: str = "sim") -> Plan:
    """The largest chunks whose kernel fits L1 (checked by compiling) and still give every core
    work (`autotune` is resolved before planning: tune.py `tuned_config`). Remembered per problem.
    On the GPU backend Tensix L1 does not bind the plan, and the causal mask stays in the
    K/V loop (registers, not L1, would hold a precomputed block)."""
    key = (p, cfg, device, dtype, backend)
    if key not in _plans:
        _plans[key] = _choose_plan(p, cfg, device, dtype, tensix=backend != "gpu")
    return _plans[key]


def gpu_chunks(p: Problem, cfg: AttentionConfig, dtype: str) -> dict[str, int]:
    """Chunks for the GPU backend, where one program's blocks live in registers and shared memory:
    bf16 128-row Q blocks (GQA-packed heads included) and 64 / 128-row K/V blocks, what the H100
    benchmark picks; f32 blocks take twice the bytes, so half the rows (32 for head_dim > 128)."""
    g = p.heads // p.kv_heads if cfg.gqa_pack is not False else 1
    d = p.head_dim_pad
    if dtype == "bf16":
        q_rows, kv_tiles = 128, 2 if d <= 64 else 4
    else:
        q_rows, kv_tiles = 64 if d <= 128 else 32, 2 if d <= 64 else 1
    return {"q_chunk": max(1, q_rows // 32 // g), "kv_chunk": kv_tiles}


def head_groups(p: Problem, cfg: AttentionConfig) -> list[int]:
    """Q heads per work item to consider, most first: unless `gqa_pack` is False, every divisor of
    the K/V group (all of it, then fewer heads per block, down to one); else one."""
    full = p.heads // p.kv_heads
    return [g for g in range(full, 0, -1) if full % g == 0] if cfg.gqa_pack is not False else [1]


def _choose_plan(p: Problem, cfg: AttentionConfig, device: Device, dtype: str, tensix: bool = True) -> Plan:
    """Every (heads per block, q chunk, kv chunk) is weighed without compiling (work items are
    arithmetic) and tried best first: the most cores given work, then the chunk preference
    (CHUNKS), then the most heads per block (K/V read once per block). The first whose kernel fits
    L1 in some layout (`fit_l1`, by compiling) is the plan; a candidate at least as large as one
    that did not fit in any layout is skipped without compiling. Only when nothing fits (chunks
    fixed by the config too large, say) is the answer no, naming the smallest layout tried."""
    grid = cfg.grid or device.grid
    if grid[0] > device.grid[0] or grid[1] > device.grid[1]:
        raise TilegridError(f"flash_attention: grid {grid} is larger than the {device.name} grid {device.grid}")
    mcast = cfg.mcast and not p.causal and p.window == (None, None)
    notes = [] if mcast == cfg.mcast else ["K/V multicast needs non-causal attention without a window: off"]
    ncores = grid[0] * grid[1]
    sq_tiles, skv_tiles = -(-p.seq_q // 32), -(-p.seq_kv // 32)
    if cfg.q_chunk and cfg.kv_chunk:
        chunks = [(cfg.q_chunk, cfg.kv_chunk)]
    else:
        chunks = [(a, b) for a, b in CHUNKS if (cfg.q_chunk in (None, a)) and (cfg.kv_chunk in (None, b))
                  and a <= max(1, sq_tiles) and b <= max(1, skv_tiles)]
        chunks = chunks or [(cfg.q_chunk or 1, cfg.kv_chunk or 1)]
    full = p.heads // p.kv_heads
    groups = head_groups(p, cfg) if tensix else [full if cfg.gqa_pack is not False else 1]
    ranked = []
    for rank, (cq, ck) in enumerate(chunks):
        sqp, skvp = -(-p.seq_q // (32 * cq)) * 32 * cq, -(-p.seq_kv // (32 * ck)) * 32 * ck
        pp = replace(p, seq_q_pad=sqp, seq_kv_pad=skvp)
        for g in groups:
            c = replace(cfg, q_chunk=cq, kv_chunk=ck, grid=grid, mcast=mcast)
            items, steps = count(pp, cq, ck, g, c.skip)
            busy = -min(items, ncores)  # gqa_pack=True: the whole group first, whatever the cores
            key = (-g, busy, rank) if cfg.gqa_pack is True else (busy, rank, -g)
            ranked.append((key, Plan(pp, c, items, steps, notes=list(notes), dtype=dtype, group=g)))
    ranked.sort(key=lambda x: x[0])
    too_big: list[tuple[int, int, int]] = []  # (group, q chunk, kv chunk) that fit no layout
    last_error: CompileError | None = None
    for _, plan in ranked:
        size = (plan.group, plan.config.q_chunk, plan.config.kv_chunk)
        if any(all(a >= b for a, b in zip(size, small)) for small in too_big):
            continue
        if tensix:
            fitted, error = fit_l1(plan, device)
            if fitted is None:
                too_big.append(size)
                last_error = error
                continue
            plan = fitted
        if plan.group < full and cfg.gqa_pack is not False:
            why = ("does not fit L1" if any(g == full and all(a >= b for a, b in zip((cq, ck), size[1:]))
                                             for g, cq, ck in too_big) else "would leave cores without work")
            plan.notes.append(f"GQA: {plan.group} of each K/V group's {full} Q heads per work item (the whole group "
                              f"{why})")
        return plan
    assert last_error is not None
    raise CompileError(
        f"no layout fits L1: the smallest tried ({32 * too_big[-1][1]}-row Q chunks, "
        f"{32 * too_big[-1][2]}-row K/V chunks, {too_big[-1][0]} head(s) per block, single-buffered CBs) — "
        f"{last_error.message.removeprefix('error: ')}",
        kernel="flash_attention",
        note="let the planner choose the chunks (leave q_chunk / kv_chunk unset), or use a smaller head_dim, bf16 "
        "inputs or a device with more L1")


def layouts(plan: Plan) -> list[tuple[tuple[int, ...], int, int]]:
    """(causal masks built once, per-item slots, K/V slots) to try, best first: the masks kept in L1
    are worth more than double-buffered Q / out (once per item), which are worth less than
    double-buffered K / V (every step)."""
    offsets = diagonal_offsets(plan.problem, plan.config.q_chunk, plan.config.kv_chunk, plan.config.skip)
    depth = 2 if plan.config.double_buffer else 1
    out = []
    for diag in ([offsets, ()] if offsets else [()]):
        for item, kv in ((depth, depth), (1, depth), (1, 1)):
            if (diag, item, kv) not in out:
                out.append((diag, item, kv))
    return sorted(out, key=lambda x: (-x[2], -len(x[0]), -x[1]))


def fit_l1(plan: Plan, device: Device) -> tuple[Plan | None, CompileError | None]:
    """The plan with its L1 report in the first layout (`layouts`) whose kernel fits L1; (None, the
    L1 error) if none does. When the best layout does not fit, the leanest is compiled next: if even
    it does not fit, two compiles say so."""
    options = layouts(plan)
    order = options if len(options) <= 2 else [options[0], options[-1], *options[1:-1]]
    lean = None
    for layout in order:
        diagonals, item_slots, kv_slots = layout
        candidate = replace(plan, diagonals=diagonals, item_slots=item_slots, kv_slots=kv_slots, notes=list(plan.notes))
        try:
            candidate.l1 = compile_only(candidate, device)
        except CompileError as e:
            if "L1" not in e.message:
                raise
            if layout == options[-1]:
                return None, e
            continue
        if layout != options[-1] or len(order) <= 2:
            return candidate, None
        lean = candidate
    return lean, None


def diagonal_offsets(p: Problem, cq: int, ck: int, skip: bool) -> tuple[int, ...]:
    """With only a causal (right) boundary, the K/V chunks that cross it do so at a few offsets
    (q0 - k0 + offset + right): one with equal aligned chunks, two when one chunk is twice the
    other. Those masks are built once; () when there are more, or other masks, or no skipping."""
    if p.right is None or p.left is not None or p.seq_kv_pad != p.seq_kv or not skip:
        return ()
    qr, kr = 32 * cq, 32 * ck
    found = set()
    for q0 in range(0, p.seq_q_pad, qr):
        lo, hi = chunk_range(p, q0, qr, kr, skip)
        found.update(q0 - k * kr + p.offset + p.right for k in range(lo, hi) if k * kr + kr - 1 > q0 + p.offset + p.right)
    return tuple(sorted(found)) if 1 <= len(found) <= 2 else ()


def arguments_shapes(plan: Plan) -> list[tuple[tuple[int, ...], Any]]:
    """The kernel's tensor arguments (shape, NumPy dtype), in order: q, k, v, mask, slopes, lse, out."""
    p, g = plan.problem, plan.group
    dt = bfloat16 if plan.dtype == "bf16" else np.float32
    rows = p.seq_q_pad * g
    return [
        ((p.batch, p.heads // g, rows, p.head_dim_pad), dt),
        ((p.batch, p.kv_heads, p.seq_kv_pad, p.head_dim_pad), dt),
        ((p.batch, p.kv_heads, p.seq_kv_pad, p.head_dim_pad), dt),
        ((rows, p.seq_kv_pad) if p.has_mask else (32, 32), np.float32),
        ((p.batch, p.heads // g, 32 * plan.config.q_chunk * g, 32) if p.alibi else (32, 32), np.float32),
        ((p.batch, p.heads // g, rows, 32) if p.return_lse else (32, 32), np.float32),
        ((p.batch, p.heads // g, rows, p.head_dim_pad), dt),
    ]


_l1: dict[tuple, Any] = {}


def layout_key(plan: Plan, device: Device) -> tuple:
    """What a plan's per-core L1 (its CBs and buffers) depends on: everything but the grid, which
    only changes how work items are dealt."""
    return (plan.problem, replace(plan.config, grid=None), plan.group, plan.diagonals, plan.item_slots,
            plan.kv_slots, plan.dtype, device)


def compile_only(plan: Plan, device: Device) -> Any:
    """The L1 plan of the kernel for `plan` (compiled for zero-size placeholders: no data); or its
    L1 error. Remembered per layout: the same chunks on another grid need no new compile."""
    key = layout_key(plan, device)
    if key not in _l1:
        tensors = [np.broadcast_to(np.zeros((), dt), shape) for shape, dt in arguments_shapes(plan)]
        try:
            _l1[key] = compile_ir(build_kernel(plan, device), *tensors).l1
        except CompileError as e:
            if "L1" not in e.message:
                raise
            _l1[key] = e
    if isinstance(_l1[key], CompileError):
        raise _l1[key]
    return _l1[key]
