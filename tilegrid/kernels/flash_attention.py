"""FlashAttention forward, written in the tilegrid language.

The compute thread is the online softmax of FlashAttention-2 (Dao 2023, Algorithm 1) over
Q chunks of `q_chunk` tiles and K/V chunks of `kv_chunk` tiles:

    m = -inf, l = 0, O = 0                                   (fp32 buffers by default)
    for each K/V chunk j:
        S = Q @ K_j^T                      (masked on diagonal / window / padding chunks)
        m_new = max(m, rowmax(S))
        P = exp((S - m_new) * scale)       (the softmax scale folded into the exponent)
        c = exp((m - m_new) * scale)       (the correction factor, on the sum AND the output)
        l = c * l + rowsum(P);  O = c * O + P @ V_j;  m = m_new
    O = O / l;  lse = m * scale + log(l)

Work is split over the whole grid as (batch x head x Q-chunk) items; causal work is
balanced by pairing Q chunk i with chunk n-1-i; causal, sliding-window and padding masks
skip K/V chunks that are wholly masked and mask only the chunks that cross the boundary.
K/V stream chunk by chunk through double-buffered CBs; with `mcast=True` (non-causal, no
window) each grid row works on one head and core (r, 0) multicasts every K/V chunk along
its row. Grouped-query attention reads the shared K/V head of each Q head directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from math import inf
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import CompileError, TilegridError
from tilegrid.lang import (
    Program,
    Semaphore,
    Stream,
    col_index,
    compute,
    core_index,
    datamovement,
    dma,
    fill,
    pykernel_gen,
    row_index,
    rowmax,
    rowsum,
    where,
)
from tilegrid.targets import compile_kernel

NEG_INF = float("-inf")


@dataclass(frozen=True)
class AttentionConfig:
    """How the kernel is laid out; `None` fields are chosen from the shapes, L1 and DST.

    q_chunk / kv_chunk: tiles (of 32 rows) of Q / K-V per chunk.
    grid: (rows, cols) of cores (default: the device's whole grid).
    mcast: share K/V chunks along grid rows by multicast (non-causal, no window only).
    acc_dtype: format of the running max, sum and output accumulator ("f32" or "bf16").
    balance: pair early and late Q chunks so causal work is even across cores.
    gqa_pack: with fewer K/V heads than Q heads, one work item stacks the Q chunks of every
        head of a K/V group into one taller block, so each K/V chunk is read once per group
        (not once per Q head).
    double_buffer: CBs of 2 slots so data movement overlaps compute (1 slot when off).
    autotune: choose q_chunk / kv_chunk by the performance model's predicted time (tilegrid.perf)
        instead of "largest that fits L1 and gives every core work"; inside a perf session, for
        that session's fidelity, exp mode and data format (else HiFi4, accurate exp).
    skip: skip K/V chunks that a causal / window mask hides wholly (off: compute and mask them,
        the roadmap's "causal without skipping", for measuring what skipping saves).
    fast_exp: the scores' exp uses the SFPU's fast approximate exponential
        (`exp(x, approx=True)`), as tt-metal's SDPA does whatever its exp_approx_mode; the
        correction factor's exp follows the run's exp mode either way.
    """

    q_chunk: int | None = None
    kv_chunk: int | None = None
    grid: tuple[int, int] | None = None
    mcast: bool = False
    acc_dtype: str = "f32"
    balance: bool = True
    gqa_pack: bool = True
    double_buffer: bool = True
    autotune: bool = False
    skip: bool = True
    fast_exp: bool = False

    def group_of(self, p: Problem) -> int:
        """Q heads stacked per work item: a K/V group when packing grouped-query attention."""
        return p.heads // p.kv_heads if self.gqa_pack else 1


@dataclass(frozen=True)
class Problem:
    """Shapes after padding (elements) and the masking rules, as the kernel sees them."""

    batch: int
    heads: int
    kv_heads: int
    seq_q: int  # real lengths
    seq_kv: int
    head_dim: int
    seq_q_pad: int
    seq_kv_pad: int
    head_dim_pad: int
    causal: bool
    window: tuple[int | None, int | None]
    has_mask: bool
    scale: float

    @property
    def offset(self) -> int:
        """Query i sits at key position i + offset (bottom-right alignment, as FlashAttention)."""
        return self.seq_kv - self.seq_q

    @property
    def right(self) -> int | None:
        """Keys allowed to the right of a query's position (None: unbounded)."""
        r = self.window[1]
        if self.causal:
            return 0 if r is None else min(r, 0)
        return r

    @property
    def left(self) -> int | None:
        return self.window[0]


@dataclass
class Plan:
    """The chosen layout and what it costs: shown by `tilegrid attention`."""

    problem: Problem
    config: AttentionConfig
    items: int  # Q-chunk work items
    kv_steps: int  # K/V chunk steps over all items (after skipping)
    l1: Any = None
    notes: list[str] = field(default_factory=list)
    diagonals: tuple[int, ...] = ()  # offsets of the causal masks built once and kept in L1 (_build_kernel)
    item_slots: int = 2  # slots of the CBs that change once per work item (Q, out, lse)

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
            + (f", {c.group_of(p)} Q heads per work item" if c.group_of(p) > 1 else "")
            + f") x {p.seq_q_pad // (32 * c.q_chunk)} q chunks = {self.items} work items, {self.kv_steps} K/V chunk steps"
            + (" (causal: chunks above the diagonal skipped)" if p.causal and c.skip else ""),
            f"accumulators {c.acc_dtype}, K/V multicast {'on' if c.mcast else 'off'}, "
            f"causal balance {'on' if c.balance and p.causal else 'off'}"
            + (f", causal mask{'s' if len(self.diagonals) > 1 else ''} built once" if self.diagonals else "")
            + (", Q / out CBs single-buffered to make room" if self.item_slots == 1 and c.double_buffer else ""),
        ]
        return "\n".join(lines + self.notes)


def kv_range(p: Problem, q0: int, q_rows: int, kv_rows: int, nkv: int, skip: bool = True) -> tuple[int, int]:
    """K/V chunks [lo, hi) that are not wholly masked for queries [q0, q0 + q_rows)."""
    lo, hi = 0, -(-p.seq_kv // kv_rows)
    if not skip:
        return lo, hi
    if p.left is not None:
        lo = max(lo, (q0 + p.offset - p.left) // kv_rows)
    if p.right is not None:
        hi = min(hi, (q0 + q_rows - 1 + p.offset + p.right) // kv_rows + 1)
    return max(0, lo), max(min(hi, nkv), max(0, lo))


def _pad(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if x.shape == shape:
        return np.ascontiguousarray(x)
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def _to_numpy(x: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """NumPy view of a NumPy array or torch tensor, and a function turning a result back."""
    if type(x).__module__.startswith("torch"):
        import torch

        dt = x.dtype
        arr = x.detach().cpu().float().numpy()
        arr = arr.astype(bfloat16) if dt == torch.bfloat16 else arr.astype(np.float32)
        return arr, lambda r: torch.from_numpy(np.asarray(r, dtype=np.float32)).to(dt)
    arr = np.asarray(x)
    if arr.dtype not in (np.dtype(bfloat16), np.dtype(np.float32)):
        raise TilegridError(f"flash_attention: inputs must be bfloat16 or float32, got {arr.dtype}",
                            note="convert with .astype(ml_dtypes.bfloat16) or .astype(np.float32)")
    return arr, lambda r: r


def flash_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    causal: bool = False,
    scale: float | None = None,
    window: tuple[int | None, int | None] | None = None,
    mask: Any = None,
    return_lse: bool = False,
    config: AttentionConfig | None = None,
    device: Device = WORMHOLE,
    schedule: str = "deterministic",
    seed: int | None = None,
    observer: Any = None,
    plan_out: list | None = None,
    backend: str = "sim",
) -> Any:
    """softmax(Q K^T * scale + mask) V on the simulator, as one tilegrid kernel.

    q: [batch, heads, seq_q, head_dim]; k, v: [batch, kv_heads, seq_kv, head_dim] with heads a
    multiple of kv_heads (grouped-query / multi-query attention). bf16 or float32, NumPy
    arrays or torch tensors (the result is the same kind and dtype as q).
    causal: mask keys after each query, aligned bottom-right when seq_q != seq_kv.
    scale: default 1/sqrt(head_dim). window: (left, right) keys allowed around each query's
    position (None = unbounded on that side). mask: [seq_q, seq_kv], boolean (True = keep)
    or additive, broadcast over batch and heads. return_lse: also return the log-sum-exp
    [batch, heads, seq_q] (-inf for fully masked rows, whose output is 0).
    """
    qn, back = _to_numpy(q)
    kn, _ = _to_numpy(k)
    vn, _ = _to_numpy(v)
    problem = make_problem(qn, kn, vn, causal, scale, window, mask)
    cfg = config or AttentionConfig()
    dtype = "bf16" if qn.dtype == np.dtype(bfloat16) else "f32"
    if backend == "gpu" and not (cfg.q_chunk or cfg.kv_chunk):
        cfg = replace(cfg, **gpu_chunks(problem, cfg, dtype))
    args = _arguments(problem, qn, kn, vn, mask, cfg)
    plan = choose_plan(problem, cfg, device, dtype, args, backend)
    if plan_out is not None:
        plan_out.append(plan)
    kernel = _build_kernel(plan, device, schedule, seed)
    tensors = _arguments(problem, qn, kn, vn, mask, plan.config)
    kernel(*tensors, backend=backend, observer=observer)
    g, rows = plan.config.group_of(plan.problem), 32 * plan.config.q_chunk
    out, lse = _unpack(tensors[-2], g, rows), _unpack(tensors[-1], g, rows)
    sq, d = problem.seq_q, problem.head_dim
    result = back(np.ascontiguousarray(out[:, :, :sq, :d]))
    if return_lse:
        return result, back(np.ascontiguousarray(lse[:, :, :sq, 0]).astype(np.float32))
    return result


def make_problem(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float | None,
                 window: tuple | None, mask: Any) -> Problem:
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
    dp = -(-d // 32) * 32
    return Problem(b, h, hk, sq, skv, d, sq, skv, dp, causal, tuple(window) if window else (None, None),
                   mask is not None, scale if scale is not None else 1.0 / math.sqrt(d))


def _arguments(p: Problem, q, k, v, mask, cfg: AttentionConfig) -> list[np.ndarray]:
    """Padded tensors in kernel order: q, k, v, mask, out, lse. With `gqa_pack` the Q heads of a
    K/V group are interleaved chunk by chunk, [b, kv_head, (q chunk, head in group, row), d],
    so one CB block holds a chunk of every head of the group (see `_unpack`)."""
    cq, ck = (cfg.q_chunk or 1) * 32, (cfg.kv_chunk or 1) * 32
    sqp, skvp = -(-p.seq_q // cq) * cq, -(-p.seq_kv // ck) * ck
    g = cfg.group_of(p)
    dt = q.dtype
    qp = _pack(_pad(q, (p.batch, p.heads, sqp, p.head_dim_pad)), g, cq)
    kp = _pad(k, (p.batch, p.kv_heads, skvp, p.head_dim_pad))
    vp = _pad(v, (p.batch, p.kv_heads, skvp, p.head_dim_pad))
    if mask is not None:
        m = np.asarray(mask)
        add = np.where(m, 0.0, NEG_INF) if m.dtype == bool else m.astype(np.float64)
        # the kernel adds the mask to unscaled scores: S + mask / scale, then exp((S' - m) * scale)
        mp = np.full((sqp, skvp), NEG_INF, np.float64)
        mp[: p.seq_q, : p.seq_kv] = add / p.scale
        mp = np.repeat(mp.reshape(sqp // cq, 1, cq, skvp), g, axis=1).reshape(sqp * g, skvp).astype(np.float32)
    else:
        mp = np.zeros((32, 32), np.float32)
    heads = p.heads // g
    out = np.full((p.batch, heads, sqp * g, p.head_dim_pad), np.nan, dtype=dt)
    lse = np.full((p.batch, heads, sqp * g, 32), np.nan, dtype=np.float32)
    return [qp, kp, vp, mp, out, lse]


def _pack(x: np.ndarray, g: int, rows: int) -> np.ndarray:
    """[b, h, s, d] -> [b, h/g, (s/rows) * g * rows, d]: chunk-major, the group's heads inside."""
    if g == 1:
        return x
    b, h, s, d = x.shape
    y = x.reshape(b, h // g, g, s // rows, rows, d).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(y).reshape(b, h // g, s * g, d)


def _unpack(y: np.ndarray, g: int, rows: int) -> np.ndarray:
    """Inverse of `_pack`."""
    if g == 1:
        return y
    b, hg, sg, d = y.shape
    s = sg // g
    x = y.reshape(b, hg, s // rows, g, rows, d).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x).reshape(b, hg * g, s, d)


def _count(p: Problem, cq: int, ck: int, sqp: int, skvp: int, g: int = 1, skip: bool = True) -> tuple[int, int]:
    """Work items and K/V chunk steps (each step reads one K and one V chunk)."""
    nq, nkv = sqp // (32 * cq), skvp // (32 * ck)
    steps = 0
    for qc in range(nq):
        lo, hi = kv_range(p, qc * 32 * cq, 32 * cq, 32 * ck, nkv, skip)
        steps += hi - lo
    heads = p.heads // g
    return p.batch * heads * nq, p.batch * heads * steps


# Preference order of (q_chunk, kv_chunk) tiles. (4, 8) first: the performance model's autotuner
# picks it, or is within 7% of it, for WH 8x10 at seq 2048 and 8192, d 64 and 128, causal or not
# (HiFi4, accurate exp: the simulator's numerics; docs/perf.md "autotuner vs default").
CHUNKS = [(4, 8), (8, 8), (8, 4), (4, 4), (4, 2), (2, 4), (2, 2), (2, 1), (1, 2), (1, 1)]


_plans: dict[tuple, Plan] = {}


def choose_plan(p: Problem, cfg: AttentionConfig, device: Device, dtype: str, args0: list,
                backend: str = "sim") -> Plan:
    """The largest chunks that fit L1 (checked by compiling) and still give every core work; or,
    with `autotune`, the chunks the performance model predicts fastest. Remembered per problem.
    On the GPU backend Tensix L1 does not bind the plan, and the causal mask stays in the K/V loop
    (registers, not L1, would hold a precomputed block)."""
    key = (p, cfg, device, dtype, backend, _tuning_options() if cfg.autotune else None)
    if key not in _plans:
        _plans[key] = _choose_plan(p, cfg, device, dtype, tensix=backend == "sim")
    return _plans[key]


def _tuning_options() -> tuple[str, str, str | None]:
    """What `autotune=True` tunes for: the running performance session's fidelity, exp mode and
    data format, or (outside one) HiFi4 with the accurate exp, the simulator's own numerics."""
    from tilegrid.perf.run import active_options

    o = active_options()
    return (o.fidelity, o.exp, o.data_format) if o else ("HiFi4", "accurate", None)


def gpu_chunks(p: Problem, cfg: AttentionConfig, dtype: str) -> dict[str, int]:
    """Chunks for the GPU backend, where one program's blocks live in registers and shared memory:
    bf16 128-row Q blocks (GQA-packed heads included) and 64 / 128-row K/V blocks, what the H100
    benchmark picks; f32 blocks take twice the bytes, so half the rows (32 for head_dim > 128)."""
    g = cfg.group_of(p)
    d = p.head_dim_pad
    if dtype == "bf16":
        q_rows, kv_tiles = 128, 2 if d <= 64 else 4
    else:
        q_rows, kv_tiles = 64 if d <= 128 else 32, 2 if d <= 64 else 1
    return {"q_chunk": max(1, q_rows // 32 // g), "kv_chunk": kv_tiles}


def _choose_plan(p: Problem, cfg: AttentionConfig, device: Device, dtype: str, tensix: bool = True) -> Plan:
    if cfg.autotune and not (cfg.q_chunk and cfg.kv_chunk):
        from tilegrid.kernels.autotune import autotune_attention

        q_shape = (p.batch, p.heads, p.seq_q, p.head_dim)
        kv_shape = (p.batch, p.kv_heads, p.seq_kv, p.head_dim)
        fidelity, exp, data_format = _tuning_options()
        tuned, _ = autotune_attention(q_shape, kv_shape, causal=p.causal, window=p.window, config=replace(cfg, autotune=False),
                                      device=device, dtype=bfloat16 if dtype == "bf16" else np.float32, log=lambda *a: None,
                                      fidelity=fidelity, exp=exp, data_format=data_format)
        cfg = replace(cfg, q_chunk=tuned.q_chunk, kv_chunk=tuned.kv_chunk, grid=tuned.grid, autotune=False)
    grid = cfg.grid or device.grid
    if grid[0] > device.grid[0] or grid[1] > device.grid[1]:
        raise TilegridError(f"flash_attention: grid {grid} is larger than the {device.name} grid {device.grid}")
    mcast = cfg.mcast and not p.causal and p.window == (None, None)
    notes = [] if mcast == cfg.mcast else ["K/V multicast needs non-causal attention without a window: off"]
    ncores = grid[0] * grid[1]
    sq_tiles, skv_tiles = -(-p.seq_q // 32), -(-p.seq_kv // 32)
    if cfg.q_chunk and cfg.kv_chunk:
        cands = [(cfg.q_chunk, cfg.kv_chunk)]
    else:
        cands = [(a, b) for a, b in CHUNKS if (cfg.q_chunk in (None, a)) and (cfg.kv_chunk in (None, b))
                 and a <= max(1, sq_tiles) and b <= max(1, skv_tiles)]
        cands = cands or [(cfg.q_chunk or 1, cfg.kv_chunk or 1)]
    fitting = []
    last_error: CompileError | None = None
    for cq, ck in cands:
        c = replace(cfg, q_chunk=cq, kv_chunk=ck, grid=grid, mcast=mcast)
        sqp, skvp = -(-p.seq_q // (32 * cq)) * 32 * cq, -(-p.seq_kv // (32 * ck)) * 32 * ck
        pp = replace(p, seq_q_pad=sqp, seq_kv_pad=skvp)
        items, steps = _count(pp, cq, ck, sqp, skvp, c.group_of(pp), c.skip)
        if tensix:
            plan, error = _fit_l1(Plan(pp, c, items, steps, notes=list(notes)), device, dtype)
            if plan is None:
                last_error = error
                continue
        else:  # the GPU backend: registers and shared memory hold the blocks, not Tensix L1
            plan = Plan(pp, c, items, steps, notes=list(notes))
        fitting.append(plan)
        if items >= ncores or (cfg.q_chunk and cfg.kv_chunk):
            return plan
    if not fitting:
        raise last_error or TilegridError("flash_attention: no chunk size fits L1")
    return max(fitting, key=lambda pl: (pl.items, pl.config.kv_chunk))


def _fit_l1(plan: Plan, device: Device, dtype: str) -> tuple[Plan | None, CompileError | None]:
    """The plan with its L1 report if it fits: with the causal masks built once (the per-item CBs
    single-buffered if that is what makes room: a work item is many K/V steps long, so one Q slot
    costs little), else with masks per chunk; (None, the L1 error) if nothing fits."""
    cfg = plan.config
    offsets = _diagonal_offsets(plan.problem, cfg.q_chunk, cfg.kv_chunk, cfg.skip)
    error = None
    for diagonals, slots in [(offsets, 2), (offsets, 1), ((), 2)] if offsets else [((), 2)]:
        candidate = replace(plan, diagonals=diagonals, item_slots=slots, notes=list(plan.notes))
        try:
            candidate.l1 = _compile_only(candidate, device, dtype)
            return candidate, None
        except CompileError as e:
            if "L1" not in e.message:
                raise
            error = e
    return None, error


def _diagonal_offsets(p: Problem, cq: int, ck: int, skip: bool) -> tuple[int, ...]:
    """With only a causal (right) boundary, the K/V chunks that cross it do so at a few offsets
    (q0 - k0 + offset + right): one with equal aligned chunks, two when one chunk is twice the
    other. Those masks are built once; () when there are more, or other masks, or no skipping."""
    if p.right is None or p.left is not None or p.seq_kv_pad != p.seq_kv or not skip:
        return ()
    qr, kr = 32 * cq, 32 * ck
    found = set()
    for q0 in range(0, p.seq_q_pad, qr):
        lo, hi = kv_range(p, q0, qr, kr, -(-p.seq_kv // kr), skip)
        found.update(q0 - k * kr + p.offset + p.right for k in range(lo, hi) if k * kr + kr - 1 > q0 + p.offset + p.right)
    return tuple(sorted(found)) if 1 <= len(found) <= 2 else ()


def _compile_only(plan: Plan, device: Device, dtype: str) -> Any:
    p = plan.problem
    g = plan.config.group_of(p)
    np_dt = bfloat16 if dtype == "bf16" else np.float32
    q = np.zeros((p.batch, p.heads // g, p.seq_q_pad * g, p.head_dim_pad), np_dt)
    k = np.zeros((p.batch, p.kv_heads, p.seq_kv_pad, p.head_dim_pad), np_dt)
    mask = np.zeros((p.seq_q_pad * g, p.seq_kv_pad) if p.has_mask else (32, 32), np.float32)
    out = np.zeros_like(q)
    lse = np.zeros((p.batch, p.heads // g, p.seq_q_pad * g, 32), np.float32)
    kernel = _build_kernel(plan, device, "deterministic", None)
    return compile_kernel(kernel, q, k, k.copy(), mask, out, lse).compiled.l1


def _build_kernel(plan: Plan, device: Device, schedule: str, seed: int | None) -> Callable:
    p, cfg = plan.problem, plan.config
    gr, gc = cfg.grid
    ncores = gr * gc
    cq, ck, dt = cfg.q_chunk, cfg.kv_chunk, p.head_dim_pad // 32
    QR, KR = 32 * cq, 32 * ck  # rows per chunk
    nq = p.seq_q_pad // QR
    G = cfg.group_of(p)  # Q heads stacked in one Q block (GQA packing)
    B, H, group = p.batch, p.heads // G, p.heads // p.kv_heads // G
    BH = B * H
    QG = G * QR  # rows of a Q block: the Q chunk of each of the G heads
    scale, acc_dt, off = p.scale, cfg.acc_dtype, p.offset
    causal_pairs = cfg.balance and p.causal and not cfg.mcast
    per_bh = (nq + 1) // 2 if causal_pairs else nq
    halves = 2 if causal_pairs else 1
    units = BH * per_bh
    rounds = -(-units // ncores)
    # Masks: which boundaries exist at all (static), evaluated per chunk at run time.
    left = p.left if p.left is not None else -1
    right = p.right if p.right is not None else -1
    has_left, has_right = p.left is not None, p.right is not None
    has_pad = p.seq_kv_pad != p.seq_kv
    has_mask, skv = p.has_mask, p.seq_kv
    kv_all = -(-p.seq_kv // KR)
    skip = cfg.skip
    mcast = cfg.mcast
    fast_exp = cfg.fast_exp
    # The causal masks of the chunks that cross the diagonal (where L1 has room for them): built
    # once on the SFPU and added per crossing chunk on the FPU, as tt-metal adds the causal mask
    # tiles its writer generates. d0 (and d1): q0 - k0 + offset + right of the crossing chunks.
    one_diagonal = bool(plan.diagonals)
    two_diagonals = len(plan.diagonals) == 2
    d0, d1 = (plan.diagonals + (0, 0))[:2]
    depth = 2 if cfg.double_buffer else 1
    mask_bf = (G * cq, ck, depth) if has_mask else (1, 1, 1)
    row_rounds, col_rounds = -(-BH // gr), -(-nq // gc)
    if mcast:
        rounds = row_rounds * col_rounds

    def work_item(t, half):
        """(valid, b * H + h, q chunk) of this core's round t (and half of a causal pair)."""
        if mcast:  # grid row r works on heads r, r + gr, ...; columns split the Q chunks
            bh = core_index(0) + (t // col_rounds) * gr
            qc = core_index(1) + (t % col_rounds) * gc  # may pass nq: computed, never written
            valid = bh < BH
        else:  # items dealt round-robin; a causal pair is Q chunks j and nq - 1 - j
            u = t * ncores + core_index(0) * gc + core_index(1)
            bh = u // per_bh
            j = u % per_bh
            qc = j if half == 0 else nq - 1 - j
            valid = u < units and (half == 0 or qc != j)
        return valid, bh, qc

    def kv_chunks(q0):
        """K/V chunks [lo, hi) not wholly masked for the Q chunk starting at row q0 (see kv_range)."""
        lo = 0
        hi = kv_all
        if has_left and skip:
            lo = max(0, (q0 + off - left) // KR)
        if has_right and skip:
            hi = max(lo, min(kv_all, (q0 + QR - 1 + off + right) // KR + 1))
        return lo, hi

    def key_minus_query():
        """Each score's key position minus its query's, within a chunk pair (the rows of a
        GQA-packed block repeat per head)."""
        return col_index((QG, KR)) - row_index((QG, KR)) % QR

    def causal_mask(d):
        """0 where key - query <= d, else -inf (exact in bf16): added to a chunk the diagonal crosses."""
        return where(key_minus_query() <= d, fill(0.0, shape=(QG, KR), dtype="bf16"), -inf)

    item_depth = min(depth, plan.item_slots)

    @pykernel_gen(grid=(gr, gc), block_factors=[(G * cq, dt, item_depth), (ck, dt, depth), (ck, dt, depth), mask_bf,
                                                 (G * cq, dt, item_depth), (G * cq, 1, item_depth)],
                  num_outs=2, device=device, schedule=schedule, seed=seed)
    def flash_attention(q, k, v, mask, out, lse):
        q_s, k_s, v_s, mask_s, out_s, lse_s = Stream(q), Stream(k), Stream(v), Stream(mask), Stream(out), Stream(lse)
        kv_ready, kv_valid = Semaphore(0), Semaphore(0)

        @compute()
        async def attention(q_cb, k_cb, v_cb, mask_cb, out_cb, lse_cb):
            if one_diagonal:
                diagonal = causal_mask(d0)
            if two_diagonals:
                diagonal1 = causal_mask(d1)
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        q0 = min(qc, nq - 1) * QR
                        lo, hi = kv_chunks(q0)
                        Q = q_cb.pop()
                        m_old = fill(-inf, shape=(QG, 1), dtype=acc_dt)
                        l_old = fill(0, shape=(QG, 1), dtype=acc_dt)
                        O_acc = fill(0, shape=(QG, 32 * dt), dtype=acc_dt)
                        for kc in range(lo, hi):
                            K = k_cb.pop()
                            V = v_cb.pop()
                            S = Q @ K.transpose()
                            if has_mask:
                                S = S + mask_cb.pop()
                            k0 = kc * KR
                            # only chunks that cross a mask boundary pay for masking
                            if one_diagonal:
                                if k0 + KR - 1 > q0 + off + right:
                                    if two_diagonals and q0 - k0 + off + right == d1:
                                        S = S + diagonal1
                                    else:
                                        S = S + diagonal
                            elif (has_right and k0 + KR - 1 > q0 + off + right) or (
                                has_left and k0 < q0 + QR - 1 + off - left) or (has_pad and k0 + KR > skv):
                                rel = key_minus_query()
                                if has_right:
                                    S = where(rel <= q0 - k0 + off + right, S, -inf)
                                if has_left:
                                    S = where(rel >= q0 - k0 + off - left, S, -inf)
                                if has_pad:
                                    S = where(col_index((QG, KR)) < skv - k0, S, -inf)
                            m_new = rowmax(S, m_old)
                            m_safe = where(m_new == -inf, 0.0, m_new)  # rows masked so far stay at 0
                            # P in the inputs' format (bf16 halves its L1 and unpack bytes); its row
                            # sums accumulate in f32 all the same
                            P = ((S - m_safe) * scale).exp(approx=fast_exp).astype(Q.dtype)
                            correction = ((m_old - m_safe) * scale).exp()
                            l_old = rowsum(P, correction * l_old)
                            O_acc = correction * O_acc + P @ V
                            m_old = m_new
                        inv_l = where(l_old == 0.0, 0.0, l_old.recip())  # fully masked rows give 0
                        out_cb.reserve().store(O_acc * inv_l)
                        lse_cb.reserve().store(m_old * scale + l_old.log())

        @datamovement()
        async def reader(q_cb, k_cb, v_cb, mask_cb, out_cb, lse_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        qc = min(qc, nq - 1)
                        b = bh // H
                        h = bh % H
                        hk = h // group  # grouped-query attention: the shared K/V head (group 1 when packed)
                        lo, hi = kv_chunks(qc * QR)
                        dma(q_s[b, h, qc, 0], q_cb.reserve()).wait()
                        for kc in range(lo, hi):
                            if not mcast or gc == 1:
                                dma(k_s[b, hk, kc, 0], k_cb.reserve()).wait()
                                dma(v_s[b, hk, kc, 0], v_cb.reserve()).wait()
                            else:  # core (r, 0) reads each chunk once and multicasts it along row r
                                kb = k_cb.reserve()
                                vb = v_cb.reserve()
                                if core_index(1) == 0:
                                    dma(k_s[b, hk, kc, 0], kb).wait()
                                    dma(v_s[b, hk, kc, 0], vb).wait()
                                    kv_ready.wait(gc - 1, reset=0)
                                    dma(kb, kb, core=(core_index(0), 1), mcast=(1, gc - 1)).wait()
                                    dma(vb, vb, core=(core_index(0), 1), mcast=(1, gc - 1)).wait()
                                    kv_valid.set(1, core=(core_index(0), 1), mcast=(1, gc - 1))
                                else:
                                    kv_ready.inc(1, core=(core_index(0), 0))
                                    kv_valid.wait(1, reset=0)
                            if has_mask:
                                dma(mask_s[qc, kc], mask_cb.reserve()).wait()

        @datamovement()
        async def writer(q_cb, k_cb, v_cb, mask_cb, out_cb, lse_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        o = out_cb.pop()
                        s = lse_cb.pop()
                        if qc < nq:
                            dma(o, out_s[bh // H, bh % H, qc, 0]).wait()
                            dma(s, lse_s[bh // H, bh % H, qc, 0]).wait()

        return Program(attention, reader, writer)(q, k, v, mask, out, lse)

    return flash_attention


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = False, scale: float | None = None,
              window: tuple | None = None, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 attention and log-sum-exp, FlashAttention's conventions (bottom-right causal, fully
    masked rows give 0 and lse -inf)."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    b, h, sq, d = q.shape
    hk, skv = k.shape[1], k.shape[2]
    k = np.repeat(k, h // hk, axis=1)
    v = np.repeat(v, h // hk, axis=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    i = np.arange(sq)[:, None] + (skv - sq)
    j = np.arange(skv)[None, :]
    allowed = np.ones((sq, skv), bool)
    if causal:
        allowed &= j <= i
    if window is not None:
        left, right = window
        if left is not None:
            allowed &= j >= i - left
        if right is not None:
            allowed &= j <= i + right
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == bool:
            allowed &= m
        else:
            s = s + m.astype(np.float64)
    s = np.where(allowed, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    mx_safe = np.where(np.isfinite(mx), mx, 0.0)
    p = np.exp(s - mx_safe)
    denom = p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, (p @ v) / np.where(denom > 0, denom, 1), 0.0)
        lse = np.where(denom[..., 0] > 0, np.log(np.where(denom[..., 0] > 0, denom[..., 0], 1)) + mx_safe[..., 0], -np.inf)
    return out, lse
