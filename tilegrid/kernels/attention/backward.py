"""FlashAttention backward: `flash_attention_backward(q, k, v, out, lse, dout, ...) -> (dq, dk, dv)`.

The kernels are backward_kernel.py (prep, dK/dV, dQ). This module plans them (chunk sizes that fit
a Tensix core's L1, checked by compiling, or the GPU's), lays the tensors out as they read them,
runs the three programs on a target and returns the gradients in the inputs' kind and format
(their float64 truth: reference.py `reference_backward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import CompileError, TilegridError
from tilegrid.kernels.attention.backward_kernel import build_dkdv, build_dq, build_prep
from tilegrid.kernels.attention.plan import make_problem
from tilegrid.kernels.attention.problem import Problem
from tilegrid.targets import compile_kernel

# (big, small) chunk tiles, best first: the dK/dV pass keeps `big` K/V rows and streams `small`
# Q rows; the dQ pass keeps `big` Q rows and streams `small` K/V rows; prep works on `big` rows.
BACKWARD_CHUNKS = [(4, 2), (4, 1), (2, 2), (2, 1), (1, 1)]


@dataclass(frozen=True)
class BackwardPlan:
    """The layout of the three backward programs: the problem with lengths padded to whole chunks
    of both passes, and each pass's chunks in tiles of 32 rows."""

    problem: Problem
    grid: tuple[int, int]
    dkdv: tuple[int, int]  # (K/V tiles a work item keeps, Q tiles per step)
    dq: tuple[int, int]  # (Q tiles a work item keeps, K/V tiles per step); prep works on the same Q chunks
    item_slots: int = 2  # CB slots of blocks read once per work item
    stream_slots: int = 2  # CB slots of the streamed blocks
    balance: bool = True  # pair chunk j with n - 1 - j under a causal mask
    dtype: str = "bf16"
    l1: tuple = field(default=(), compare=False)  # the L1 plans of (prep, dK/dV, dQ), Tensix only

    def describe(self) -> str:
        p = self.problem
        (kk, kq), (qq, qk) = self.dkdv, self.dq
        return (f"backward: grid {self.grid[0]}x{self.grid[1]}, dK/dV: {32 * kk} K/V rows x {32 * kq} Q rows per step, "
                f"dQ: {32 * qq} Q rows x {32 * qk} K/V rows per step, {p.batch}x{p.heads} heads ({p.kv_heads} K/V "
                f"heads), seq {p.seq_q}/{p.seq_kv} padded to {p.seq_q_pad}/{p.seq_kv_pad}, head_dim {p.head_dim}"
                + (f" (padded to {p.head_dim_pad})" if p.head_dim_pad != p.head_dim else "")
                + (", CBs single-buffered to fit L1" if self.stream_slots == 1 else ""))


def make_plan(p: Problem, grid: tuple[int, int], chunks: Any, **kw: Any) -> BackwardPlan:
    """A plan for `chunks`: (big, small) for both passes, or ((dK/dV K/V, Q), (dQ Q, K/V)) tiles;
    the lengths padded to whole chunks of every pass."""
    dkdv, dq = chunks if isinstance(chunks[0], tuple) else ((chunks[0], chunks[1]),) * 2
    q_rows, kv_rows = 32 * math.lcm(dkdv[1], dq[0]), 32 * math.lcm(dkdv[0], dq[1])
    padded = replace(p, seq_q_pad=-(-p.seq_q // q_rows) * q_rows, seq_kv_pad=-(-p.seq_kv // kv_rows) * kv_rows)
    return BackwardPlan(padded, grid, tuple(dkdv), tuple(dq), **kw)


def gpu_backward_chunks(p: Problem, dtype: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Chunks on the GPU, ((dK/dV K/V, Q), (dQ Q, K/V)) tiles, the fastest of benchmarks/gpu/
    bench_backward.py --sweep and dkdv_variants.py in bf16: dQ keeps 128 Q rows and streams 64 K/V
    rows; dK/dV keeps 128 K/V rows and streams 32 Q rows at head_dim 64, 64 Q rows at 128 (two
    [K/V rows, head_dim] fp32 accumulators live in registers); f32 blocks take twice the bytes, so
    half the rows."""
    if dtype == "bf16":
        if p.head_dim_pad <= 64:
            return (4, 1), (4, 2)
        return (4, 2), (4, 2)
    return ((2, 1), (2, 1)) if p.head_dim_pad <= 128 else ((1, 1), (1, 1))


_plans: dict[tuple, BackwardPlan] = {}


def choose_backward_plan(p: Problem, grid: tuple[int, int], device: Device, dtype: str, backend: str = "sim",
                         chunks: Any = None) -> BackwardPlan:
    """The first chunks (BACKWARD_CHUNKS) whose three programs fit L1 (checked by compiling) and give
    every core work; on the GPU, `gpu_backward_chunks` (Tensix L1 does not bind). `chunks` as
    `make_plan` takes them fixes them. Remembered per problem."""
    key = (p, grid, device, dtype, backend, chunks)
    if key in _plans:
        return _plans[key]
    if grid[0] > device.grid[0] or grid[1] > device.grid[1]:
        raise TilegridError(f"flash_attention_backward: grid {grid} is larger than the {device.name} grid "
                            f"{device.grid}")
    if backend == "gpu":
        plan = make_plan(p, grid, chunks or gpu_backward_chunks(p, dtype), dtype=dtype)
    else:
        plan = _fit(p, grid, device, dtype, chunks)
    _plans[key] = plan
    return plan


def _fit(p: Problem, grid: tuple[int, int], device: Device, dtype: str, chunks: Any) -> BackwardPlan:
    tiles = max(-(-p.seq_q // 32), -(-p.seq_kv // 32))
    cands = [chunks] if chunks else [c for c in BACKWARD_CHUNKS if c[0] <= max(1, tiles)] or [(1, 1)]
    ncores = grid[0] * grid[1]
    fitting: list[BackwardPlan] = []
    error: CompileError | None = None
    for c in cands:
        for item, stream in ((2, 2), (1, 2), (1, 1)):
            plan = make_plan(p, grid, c, item_slots=item, stream_slots=stream, dtype=dtype)
            try:
                plan = replace(plan, l1=tuple(compile_only(plan, device, which) for which in KERNELS))
            except CompileError as e:
                if "L1" not in e.message:
                    raise
                error = e
                continue
            fitting.append(plan)
            break
        if fitting and items(fitting[-1]) >= ncores:
            return fitting[-1]
    if not fitting:
        raise error or TilegridError("flash_attention_backward: no chunk size fits L1")
    return max(fitting, key=items)


def items(plan: BackwardPlan) -> int:
    """Work items of the smaller of the two gradient passes."""
    p = plan.problem
    return min(p.batch * p.kv_heads * (p.seq_kv_pad // (32 * plan.dkdv[0])),
               p.batch * p.heads * (p.seq_q_pad // (32 * plan.dq[0])))


KERNELS = {"prep": build_prep, "dkdv": build_dkdv, "dq": build_dq}


def argument_shapes(plan: BackwardPlan, which: str) -> list[tuple[tuple[int, ...], Any]]:
    """The tensor arguments (shape, NumPy dtype) of kernel `which`, in order."""
    p = plan.problem
    dt = bfloat16 if plan.dtype == "bf16" else np.float32
    f32 = np.float32
    b, h, hk, sq, skv, d = p.batch, p.heads, p.kv_heads, p.seq_q_pad, p.seq_kv_pad, p.head_dim_pad
    q, kv = ((b, h, sq, d), dt), ((b, hk, skv, d), dt)
    col, row = ((b, h, sq, 32), f32), ((b, h, 32, sq), f32)
    if which == "prep":
        return [q, q, col, col, row]
    if which == "dkdv":
        return [q, kv, kv, q, row, ((skv, sq) if p.has_mask else (32, 32), f32), kv, kv]
    return [q, kv, kv, q, col, ((sq, skv) if p.has_mask else (32, 32), f32), q]


def compile_only(plan: BackwardPlan, device: Device, which: str, backend: str = "sim") -> Any:
    """Kernel `which` compiled for zero-size placeholders: the L1 plan (sim) or the program (gpu)."""
    tensors = [np.broadcast_to(np.zeros((), dt), shape) for shape, dt in argument_shapes(plan, which)]
    prog = compile_kernel(KERNELS[which](plan, device), *tensors, backend=backend)
    return prog.compiled.l1 if backend != "gpu" else prog


def mask_operand(mask: Any, p: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The user's mask as the kernels add it, padded with -inf: [seq_q_pad, seq_kv_pad] for dQ and its
    transpose for dK/dV (additive values over the scale: the kernels add them to unscaled scores)."""
    m = np.asarray(mask)
    add = np.where(m, 0.0, -np.inf) if m.dtype == bool else m.astype(np.float64)
    mp = np.full((p.seq_q_pad, p.seq_kv_pad), -np.inf, np.float64)
    mp[: p.seq_q, : p.seq_kv] = add / p.scale
    mp = mp.astype(np.float32)
    return mp, np.ascontiguousarray(mp.T)


def _numpy(x: Any, name: str, dtype: Any = None) -> tuple[np.ndarray, Any]:
    """(NumPy view, torch dtype or None) of a NumPy array or CPU torch tensor."""
    if type(x).__module__.startswith("torch"):
        tdt = x.dtype
        arr = x.detach().cpu().float().numpy()
        if str(tdt) == "torch.bfloat16":
            arr = arr.astype(bfloat16)
        elif str(tdt) != "torch.float32":
            arr = np.asarray(arr, np.float64)  # rejected below unless it is the lse
        return arr, tdt
    return np.asarray(x), None


def _pad(x: np.ndarray, shape: tuple[int, ...], fill: float = 0.0) -> np.ndarray:
    if x.shape == shape:
        return np.ascontiguousarray(x)
    out = np.full(shape, fill, dtype=x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def flash_attention_backward(
    q: Any,
    k: Any,
    v: Any,
    out: Any,
    lse: Any,
    dout: Any,
    *,
    causal: bool = False,
    scale: float | None = None,
    window: tuple[int | None, int | None] | None = None,
    mask: Any = None,
    grid: tuple[int, int] | None = None,
    chunks: Any = None,
    device: Device = WORMHOLE,
    schedule: str = "deterministic",
    seed: int | None = None,
    observer: Any = None,
    plan_out: list | None = None,
    backend: str = "sim",
) -> tuple[Any, Any, Any]:
    """The gradients (dq, dk, dv) of `flash_attention(q, k, v, ...)` for the output gradient `dout`.

    out, lse: the forward's output and log-sum-exp (`flash_attention(..., return_lse=True)`);
    dout: like out. q, k, v, causal, scale, window, mask: as the forward was called (grouped-query
    K/V heads get the sum of their Q heads' gradients). bf16 or float32 NumPy arrays or torch
    tensors; the gradients come back in q's kind and format, dk / dv shaped like k / v.
    grid: cores (default the device's); chunks: (big, small) tiles for both passes, or
    ((dK/dV K/V, Q), (dQ Q, K/V)) (default planned).
    Rows whose every key is masked (lse = -inf) get zero gradients, as in FlashAttention.
    """
    qn, tdt = _numpy(q, "q")
    kn, _ = _numpy(k, "k")
    vn, _ = _numpy(v, "v")
    on, _ = _numpy(out, "out")
    don, _ = _numpy(dout, "dout")
    ln, _ = _numpy(lse, "lse")
    for name, x in (("q", qn), ("k", kn), ("v", vn), ("out", on), ("dout", don)):
        if x.dtype not in (np.dtype(bfloat16), np.dtype(np.float32)) or x.dtype != qn.dtype:
            raise TilegridError(f"flash_attention_backward: {name} must be bfloat16 or float32 like q "
                                f"({qn.dtype}), got {x.dtype}", note="convert every tensor to one format")
    problem = make_problem(qn, kn, vn, causal, scale, window, mask)
    b, h, sq, d = qn.shape
    for name, x, shape in (("out", on, qn.shape), ("dout", don, qn.shape), ("lse", ln, (b, h, sq))):
        if tuple(x.shape) != tuple(shape):
            raise TilegridError(f"flash_attention_backward: {name} must have shape {tuple(shape)} (as the forward "
                                f"returns it), got {tuple(x.shape)}")
    dtype = "bf16" if qn.dtype == np.dtype(bfloat16) else "f32"
    plan = choose_backward_plan(problem, grid or device.grid, device, dtype, backend, chunks)
    if plan_out is not None:
        plan_out.append(plan)
    grads = run_backward(plan, device, qn, kn, vn, on, ln, don, mask, backend, schedule, seed, observer)
    if tdt is not None:
        import torch

        return tuple(torch.from_numpy(np.asarray(g, np.float32)).to(tdt) for g in grads)
    return grads


def run_backward(plan: BackwardPlan, device: Device, q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray,
                 lse: np.ndarray, dout: np.ndarray, mask: Any, backend: str = "sim", schedule: str = "deterministic",
                 seed: int | None = None, observer: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad and lay out the NumPy inputs, run prep, dK/dV and dQ, and cut the gradients back."""
    p = plan.problem
    b, h, hk, sq, skv, d = p.batch, p.heads, p.kv_heads, p.seq_q_pad, p.seq_kv_pad, p.head_dim_pad
    qp, op, dop = (_pad(x, (b, h, sq, d)) for x in (q, out, dout))
    kp, vp = (_pad(x, (b, hk, skv, d)) for x in (k, v))
    lse_col = np.repeat(_pad(np.asarray(lse, np.float32), (b, h, sq), -np.inf)[..., None], 32, axis=3)
    mp, mt = mask_operand(mask, p) if mask is not None else (np.zeros((32, 32), np.float32),) * 2
    col = np.full((b, h, sq, 32), np.nan, np.float32)
    row = np.full((b, h, 32, sq), np.nan, np.float32)
    run = {"backend": backend, "observer": observer}
    build = {"device": device, "schedule": schedule, "seed": seed}
    build_prep(plan, **build)(op, dop, lse_col, col, row, **run)
    dk, dv = (np.full((b, hk, skv, d), np.nan, q.dtype) for _ in range(2))
    build_dkdv(plan, **build)(qp, kp, vp, dop, row, mt, dk, dv, **run)
    dq = np.full((b, h, sq, d), np.nan, q.dtype)
    build_dq(plan, **build)(qp, kp, vp, dop, col, mp, dq, **run)
    return (np.ascontiguousarray(dq[:, :, : p.seq_q, : p.head_dim]),
            np.ascontiguousarray(dk[:, :, : p.seq_kv, : p.head_dim]),
            np.ascontiguousarray(dv[:, :, : p.seq_kv, : p.head_dim]))
