"""float64 FlashAttention, forward and backward: the truth the tests and the CLI check against.

FlashAttention's conventions: causal aligned bottom-right (query i sees keys up to i + seq_kv -
seq_q), rows whose every key is masked output 0 with log-sum-exp -inf and get zero gradients;
softcap and ALiBi as FlashAttention-2 applies them; grouped K/V heads serve (and sum the gradients
of) their group of Q heads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def softmax(q: np.ndarray, k: np.ndarray, causal: bool, scale: float, window: tuple | None, mask: Any,
            softcap: float | None = None, alibi_slopes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(P, lse): the attention probabilities [b, h, sq, skv] (0 in fully masked rows) and the
    log-sum-exp of the scaled scores (-inf there), K heads repeated over their group."""
    b, h, sq, d = q.shape
    hk, skv = k.shape[1], k.shape[2]
    s = (q @ np.repeat(k, h // hk, axis=1).swapaxes(-1, -2)) * scale  # BLAS: the check costs less than the run
    if softcap is not None:
        s = softcap * np.tanh(s / softcap)
    i = np.arange(sq)[:, None] + (skv - sq)
    j = np.arange(skv)[None, :]
    if alibi_slopes is not None:
        slopes = np.broadcast_to(np.asarray(alibi_slopes, np.float64), (b, h))
        s = s - slopes[:, :, None, None] * np.abs(j - i)[None, None]
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
    e = np.exp(s - mx_safe)
    denom = e.sum(-1, keepdims=True)
    live = denom > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(live, e / np.where(live, denom, 1.0), 0.0)
        lse = np.where(live[..., 0], np.log(np.where(live, denom, 1.0))[..., 0] + mx_safe[..., 0], -np.inf)
    return p, lse


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = False, scale: float | None = None,
              window: tuple | None = None, mask: Any = None, softcap: float | None = None,
              alibi_slopes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 attention output and log-sum-exp, a head at a time (the [seq_q, seq_kv] temporaries of one
    head stay small where those of all heads at once would cost more in page faults than in arithmetic)."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    b, h = q.shape[:2]
    group = h // k.shape[1]
    slopes = None if alibi_slopes is None else np.broadcast_to(np.asarray(alibi_slopes, np.float64), (b, h))
    out = np.empty((*q.shape[:-1], v.shape[-1]))
    lse = np.empty(q.shape[:-1])
    for bi in range(b):
        for hi in range(h):
            kv = slice(hi // group, hi // group + 1)
            p, lse[bi, hi] = softmax(q[bi:bi + 1, hi:hi + 1], k[bi:bi + 1, kv], causal, scale, window, mask, softcap,
                                     None if slopes is None else slopes[bi:bi + 1, hi:hi + 1])
            out[bi, hi] = p[0, 0] @ v[bi, kv][0]
    return out, lse


def reference_backward(q: Any, k: Any, v: Any, dout: Any, causal: bool = False, scale: float | None = None,
                       window: tuple | None = None, mask: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 gradients (dq, dk, dv) of attention for the output gradient `dout`, derived
    analytically: dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = scale dS K,
    dK = scale dS^T Q; grouped K/V heads sum their Q heads' dK, dV."""
    q, k, v, dout = (np.asarray(x, dtype=np.float64) for x in (q, k, v, dout))
    b, h, sq, d = q.shape
    hk, skv = k.shape[1], k.shape[2]
    g = h // hk
    kr, vr = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    p, _ = softmax(q, k, causal, scale, window, mask)
    dv = p.swapaxes(-1, -2) @ dout
    dp = dout @ vr.swapaxes(-1, -2)
    ds = p * (dp - (dout * (p @ vr)).sum(-1, keepdims=True))
    dq = scale * ds @ kr
    dk = scale * ds.swapaxes(-1, -2) @ q
    return dq, dk.reshape(b, hk, g, skv, d).sum(2), dv.reshape(b, hk, g, skv, d).sum(2)
