"""Compile time per grid size: SPMD kernels compile once, whatever the number of cores.

Compiles the production FlashAttention kernel (frontend, every pass, codegen) for grids from
1x1 to 8x10 with a cold cache and prints milliseconds. Run: python benchmarks/compile_time.py
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE
from tilegrid.kernels.attention import AttentionConfig, Plan, build_kernel, make_problem
from tilegrid.kernels.attention.plan import arguments_shapes
from tilegrid.targets import compile_kernel
from tilegrid.targets.compile import clear_cache


def main() -> None:
    print(f"{'grid':>6} {'cores':>6} {'compile ms':>11}")
    for grid in [(1, 1), (2, 2), (4, 4), (8, 8), (8, 10)]:
        q = np.zeros((1, 8, 1024, 64), bfloat16)
        p = make_problem(q, q, q, True, None, None, None)
        p = replace(p, seq_q_pad=1024, seq_kv_pad=1024)
        plan = Plan(p, AttentionConfig(q_chunk=2, kv_chunk=4, grid=grid), 0, 0)
        tensors = [np.zeros(shape, dt) for shape, dt in arguments_shapes(plan)]
        t0 = time.perf_counter()
        clear_cache()
        compile_kernel(build_kernel(plan, WORMHOLE), *tensors)
        ms = (time.perf_counter() - t0) * 1e3
        print(f"{grid[0]}x{grid[1]:<4} {grid[0] * grid[1]:>6} {ms:>11.1f}")


if __name__ == "__main__":
    main()
