"""FlashAttention forward: `flash_attention(q, k, v, ...)`, written in the tilegrid language.

    kernel.py   the kernel's threads (the online softmax of FlashAttention-2, the reader, the writer)
    plan.py     the plan: chunk sizes, work split, CB depths and masks that fit L1
    tune.py     the autotuner: the chunks the performance model predicts fastest (bounds, then simulation)
    problem.py  the problem and the config, and the chunk-skipping rule both of those use
    backward.py, backward_kernel.py   the backward: `flash_attention_backward(...)` and its kernels

This module is the user's entry: it checks and pads the inputs, asks for a plan, lays the tensors
out as the kernel reads them (GQA-packed heads interleaved chunk by chunk), runs the kernel on a
target and returns the output (and log-sum-exp) in the inputs' kind and format. `reference` and
`reference_backward` (reference.py) are the float64 truth the tests and the CLI check against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import TilegridError
from tilegrid.kernels.attention.backward import flash_attention_backward
from tilegrid.kernels.attention.kernel import build_kernel
from tilegrid.kernels.attention.plan import CHUNKS, Plan, choose_plan, gpu_chunks, make_problem
from tilegrid.kernels.attention.problem import AttentionConfig, Problem
from tilegrid.kernels.attention.reference import reference, reference_backward
from tilegrid.kernels.attention.tune import autotune_attention, tuned_config

__all__ = ["CHUNKS", "AttentionConfig", "Plan", "Problem", "arguments", "autotune_attention", "build_kernel",
           "choose_plan", "flash_attention", "flash_attention_backward", "make_problem", "reference",
           "reference_backward"]


def _to_numpy(x: Any, name: str) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """NumPy view of a NumPy array or torch tensor, and a function turning a result back."""
    if type(x).__module__.startswith("torch"):
        import torch

        dt = x.dtype
        if dt not in (torch.bfloat16, torch.float32):
            raise TilegridError(f"flash_attention: {name} must be bfloat16 or float32, got {dt}",
                                note="convert with .to(torch.bfloat16) or .float()")
        arr = x.detach().cpu().float().numpy()
        arr = arr.astype(bfloat16) if dt == torch.bfloat16 else arr
        return arr, lambda r: torch.from_numpy(np.asarray(r, dtype=np.float32)).to(device=x.device, dtype=dt)
    arr = np.asarray(x)
    if arr.dtype not in (np.dtype(bfloat16), np.dtype(np.float32)):
        raise TilegridError(f"flash_attention: {name} must be bfloat16 or float32, got {arr.dtype}",
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
    softcap: float | None = None,
    alibi_slopes: Any = None,
    return_lse: bool = False,
    config: AttentionConfig | None = None,
    device: Device = WORMHOLE,
    schedule: str = "deterministic",
    seed: int | None = None,
    observer: Any = None,
    plan_out: list | None = None,
    backend: str = "sim",
) -> Any:
    """softmax(Q K^T * scale + mask) V as one tilegrid kernel, on the simulator (or `backend`).

    q: [batch, heads, seq_q, head_dim]; k, v: [batch, kv_heads, seq_kv, head_dim] with heads a
    multiple of kv_heads (grouped-query / multi-query attention). bf16 or float32, NumPy
    arrays or torch tensors (the result is the same kind and dtype as q).
    causal: mask keys after each query, aligned bottom-right when seq_q != seq_kv.
    scale: default 1/sqrt(head_dim). window: (left, right) keys allowed around each query's
    position (None = unbounded on that side). mask: [seq_q, seq_kv], boolean (True = keep)
    or additive, broadcast over batch and heads. softcap: scores become softcap * tanh(scores /
    softcap) (Gemma 2's logit softcapping). alibi_slopes: [heads] or [batch, heads]: scores get
    - slope * |key position - query position| (ALiBi), as FlashAttention-2. return_lse: also
    return the log-sum-exp [batch, heads, seq_q] (-inf for fully masked rows, whose output is 0).
    observer: watches every simulated op and transfer (tilegrid/sim/runtime.py `Observer`).
    """
    qn, back = _to_numpy(q, "q")
    kn, _ = _to_numpy(k, "k")
    vn, _ = _to_numpy(v, "v")
    if type(mask).__module__.startswith("torch"):  # a mask on any device, as NumPy (bool stays bool)
        mask = mask.detach().cpu()
        mask = (mask.float() if mask.is_floating_point() else mask).numpy()
    slopes = None if alibi_slopes is None else np.asarray(
        alibi_slopes.detach().cpu().float().numpy() if hasattr(alibi_slopes, "detach") else alibi_slopes, np.float64)
    problem = make_problem(qn, kn, vn, causal, scale, window, mask, softcap, slopes, return_lse)
    cfg = config or AttentionConfig()
    dtype = "bf16" if qn.dtype == np.dtype(bfloat16) else "f32"
    if backend == "gpu" and not (cfg.q_chunk or cfg.kv_chunk):
        cfg = replace(cfg, **gpu_chunks(problem, cfg, dtype))
    if cfg.autotune and not (cfg.q_chunk and cfg.kv_chunk):
        cfg = tuned_config(problem, cfg, device, dtype)
    plan = choose_plan(problem, cfg, device, dtype, backend)
    if plan_out is not None:
        plan_out.append(plan)
    kernel = build_kernel(plan, device, schedule, seed)
    tensors = arguments(plan, qn, kn, vn, mask, slopes)
    kernel(*tensors, backend=backend, observer=observer)
    g, rows = plan.group, 32 * plan.config.q_chunk
    out = _unpack(tensors[-1], g, rows)
    sq, d = problem.seq_q, problem.head_dim
    result = back(np.ascontiguousarray(out[:, :, :sq, :d]))
    if return_lse:
        lse = _unpack(tensors[-2], g, rows)
        return result, back(np.ascontiguousarray(lse[:, :, :sq, 0]).astype(np.float32))
    return result


def _pad(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if x.shape == shape:
        return np.ascontiguousarray(x)
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


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


def arguments(plan: Plan, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: Any = None,
              slopes: np.ndarray | None = None) -> list[np.ndarray]:
    """The padded tensors in kernel order: q, k, v, mask, slopes, lse, out (placeholders where a
    feature is off). With GQA packing the Q heads of a K/V group are interleaved chunk by chunk,
    [b, kv_head, (q chunk, head in group, row), d], so one CB block holds a chunk of every head of
    the group (see `_unpack`)."""
    p, g = plan.problem, plan.group
    cq = 32 * plan.config.q_chunk
    qp = _pack(_pad(q, (p.batch, p.heads, p.seq_q_pad, p.head_dim_pad)), g, cq)
    kp = _pad(k, (p.batch, p.kv_heads, p.seq_kv_pad, p.head_dim_pad))
    vp = _pad(v, (p.batch, p.kv_heads, p.seq_kv_pad, p.head_dim_pad))
    sqp, skvp = p.seq_q_pad, p.seq_kv_pad
    if mask is not None:
        m = np.asarray(mask)
        add = np.where(m, 0.0, -np.inf) if m.dtype == bool else m.astype(np.float64)
        # the kernel adds the mask to unscaled scores: S + mask / scale, then exp((S' - m) * scale)
        mp = np.full((sqp, skvp), -np.inf, np.float64)
        mp[: p.seq_q, : p.seq_kv] = add / p.scale
        mp = np.repeat(mp.reshape(sqp // cq, 1, cq, skvp), g, axis=1).reshape(sqp * g, skvp).astype(np.float32)
    else:
        mp = np.zeros((32, 32), np.float32)
    heads = p.heads // g
    if slopes is not None:  # one block per (batch, packed head): row r holds its head's slope
        s = np.broadcast_to(slopes, (p.batch, p.heads)).reshape(p.batch, heads, g)
        sp = np.repeat(np.repeat(s, cq, axis=2)[..., None], 32, axis=3).astype(np.float32)
    else:
        sp = np.zeros((32, 32), np.float32)
    lse = np.full((p.batch, heads, sqp * g, 32), np.nan, np.float32) if p.return_lse else np.zeros((32, 32), np.float32)
    out = np.full((p.batch, heads, sqp * g, p.head_dim_pad), np.nan, dtype=q.dtype)
    return [qp, kp, vp, mp, sp, lse, out]
