"""A plain, hand-written Triton FlashAttention-2 forward: the baseline the compiled tilegrid
kernel is measured against (not used by tilegrid itself).

One program per (128-row Q block, batch x head); K/V blocks streamed through a software-
pipelined loop; online softmax in exp2 with the scale folded in; causal attention runs the
unmasked blocks first and masks only the diagonal block(s). Plain pointer loads, no TMA.
Block shapes, warps and stages are autotuned.
"""

from __future__ import annotations

import triton
import triton.language as tl

CONFIGS = [triton.Config({"BM": 128, "BN": bn}, num_warps=w, num_stages=s)
           for bn in (64, 128) for w in (4, 8) for s in (2, 3)]


@triton.jit
def _inner(acc, l_i, m_i, q, k_base, v_base, lo, hi, offs_m, offs_n, qk_scale, D: tl.constexpr,
           BN: tl.constexpr, MASK: tl.constexpr):
    offs_d = tl.arange(0, D)
    for start in range(lo, hi, BN):
        k = tl.load(k_base + (start + offs_n)[:, None] * D + offs_d[None, :])
        qk = tl.dot(q, tl.trans(k))
        if MASK:
            qk = tl.where(offs_m[:, None] >= (start + offs_n)[None, :], qk, -float("inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.exp2(qk * qk_scale - m_ij[:, None])
        alpha = tl.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + (start + offs_n)[:, None] * D + offs_d[None, :])
        acc = tl.dot(p.to(tl.bfloat16), v, acc * alpha[:, None])
        m_i = m_ij
    return acc, l_i, m_i


@triton.autotune(CONFIGS, key=["N", "D", "CAUSAL"])
@triton.jit
def _fa2(Q, K, V, Out, sm_scale, N, D: tl.constexpr, CAUSAL: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    base = bh.to(tl.int64) * N * D
    offs_m = start_m * BM + tl.arange(0, BM)
    offs_n = tl.arange(0, BN)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + base + offs_m[:, None] * D + offs_d[None, :])
    m_i = tl.zeros([BM], tl.float32) - float("inf")
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D], tl.float32)
    qk_scale = sm_scale * 1.44269504
    if CAUSAL:
        hi = start_m * BM
        acc, l_i, m_i = _inner(acc, l_i, m_i, q, K + base, V + base, 0, hi, offs_m, offs_n, qk_scale, D, BN, False)
        acc, l_i, m_i = _inner(acc, l_i, m_i, q, K + base, V + base, hi, hi + BM, offs_m, offs_n, qk_scale, D, BN,
                               True)
    else:
        acc, l_i, m_i = _inner(acc, l_i, m_i, q, K + base, V + base, 0, N, offs_m, offs_n, qk_scale, D, BN, False)
    acc = acc / l_i[:, None]
    tl.store(Out + base + offs_m[:, None] * D + offs_d[None, :], acc.to(tl.bfloat16))


def attention(q, k, v, causal: bool, sm_scale: float):
    """q, k, v: [B, H, N, D] bf16 contiguous CUDA tensors; N a multiple of 128."""
    import torch

    b, h, n, d = q.shape
    o = torch.empty_like(q)
    _fa2[lambda meta: (triton.cdiv(n, meta["BM"]), b * h)](q, k, v, o, sm_scale, n, D=d, CAUSAL=causal)
    return o
