"""Compile the library kernels for the GPU without running them (shared by the GPU tests)."""

from __future__ import annotations

import numpy as np
from ml_dtypes import bfloat16

import tilegrid.kernels.attention as F
import tilegrid.kernels.gemm as MM
from tilegrid.device import WORMHOLE
from tilegrid.targets.gpu import capture


def fa_program(b=1, h=2, hk=2, sq=256, skv=256, d=64, causal=False, grid=(2, 2), mcast=False, window=None,
               q_chunk=None, kv_chunk=None, dtype=bfloat16, mask=None):
    q = np.zeros((b, h, sq, d), dtype)
    k = np.zeros((b, hk, skv, d), dtype)
    p = F.make_problem(q, k, k, causal, None, window, mask)
    cfg = F.AttentionConfig(q_chunk=q_chunk, kv_chunk=kv_chunk, grid=grid, mcast=mcast)
    plan = F.choose_plan(p, cfg, WORMHOLE, "bf16" if dtype == bfloat16 else "f32", backend="gpu")
    args = F.arguments(plan, q, k, k.copy(), mask)
    return capture(F.build_kernel(plan, WORMHOLE), *args), plan


def matmul_program(m=128, k=256, n=128, grid=(2, 2), mcast=False, bk=2):
    plan = MM.plan_matmul(m, k, n, grid, WORMHOLE, "bf16", "f32", bk)
    kern = MM._build(plan, k // 32 // plan.bk, mcast, "f32", WORMHOLE, "deterministic", None)
    a = np.zeros((m, k), bfloat16)
    bb = np.ones((k, n), bfloat16)  # distinct arrays: a Stream names its tensor by identity
    return capture(kern, a, bb, np.zeros((m, n), bfloat16)), plan
