"""What FlashAttention's autotuner costs next to a plain run, in one process.

For each problem: a plain `flash_attention` call (the default plan; compile cached after a warm-up
on another problem of the same kernel family), then the same call with `AttentionConfig(autotune=True)`
(the tuner's candidates on the device grid, then the run), each as wall and CPU seconds, and their
ratio. CPU seconds are the figure to compare on a shared machine.
Run: python benchmarks/autotune_cost.py [--seqs 2048 4096]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.kernels.attention import AttentionConfig, flash_attention


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seqs", type=int, nargs="+", default=[2048])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    warm = [rng.standard_normal((1, 1, 128, args.head_dim)).astype(bfloat16) for _ in range(3)]
    flash_attention(*warm, causal=True)  # imports and first compiles out of the way
    print(f"{'seq':>6} {'plain wall':>10} {'plain cpu':>9} {'tuned wall':>10} {'tuned cpu':>9} {'cpu ratio':>9}")
    for seq in args.seqs:
        q, k, v = (rng.standard_normal((1, args.heads, seq, args.head_dim)).astype(bfloat16) for _ in range(3))
        pw, pc = timed(lambda: flash_attention(q, k, v, causal=True))  # noqa: B023
        tw, tc = timed(lambda: flash_attention(q, k, v, causal=True, config=AttentionConfig(autotune=True)))  # noqa: B023
        print(f"{seq:6d} {pw:10.2f} {pc:9.2f} {tw:10.2f} {tc:9.2f} {tc / pc:9.1f}")


if __name__ == "__main__":
    main()
