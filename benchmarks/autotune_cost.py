"""What FlashAttention's autotuner costs next to a plain run, in one process.

For each problem: a plain `flash_attention` call (the default plan; imports and the first compiles
out of the way by a warm-up on another shape), then the same call with
`AttentionConfig(autotune=True)` (the tuner's candidates on the device grid, then the run), each as
wall and CPU seconds, their ratio, and what the tuner did: candidates compiled, simulated
(timing-only, in full or stopped once past the best) and pruned by their bounds.
CPU seconds are the figure to compare on a shared machine.
Run: python benchmarks/autotune_cost.py [--cases 8/8/2048/64/c 8/2/2048/64/c ...]
  a case is heads/kv_heads/seq/head_dim[/c for causal], batch 1, bf16.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE
from tilegrid.kernels.attention import AttentionConfig, flash_attention, tune

CASES = ["8/8/2048/64/c", "8/8/4096/64/c", "8/8/2048/64", "8/8/2048/128/c", "8/2/2048/64/c", "8/8/1024/64/c"]


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=CASES)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    warm = [rng.standard_normal((1, 1, 128, 64)).astype(bfloat16) for _ in range(3)]
    flash_attention(*warm, causal=True)  # imports and first compiles out of the way
    print(f"{'case':>16} {'plain wall':>10} {'plain cpu':>9} {'tuned wall':>10} {'tuned cpu':>9} {'cpu ratio':>9}"
          f"  {'candidates':>10} {'compiled':>8} {'simulated':>9} {'stopped':>7}")
    for case in args.cases:
        h, kvh, seq, d, *flag = case.split("/")
        causal = flag == ["c"]
        q = rng.standard_normal((1, int(h), int(seq), int(d))).astype(bfloat16)
        k, v = (rng.standard_normal((1, int(kvh), int(seq), int(d))).astype(bfloat16) for _ in range(2))
        pw, pc = timed(lambda: flash_attention(q, k, v, causal=causal))  # noqa: B023
        tw, tc = timed(lambda: flash_attention(q, k, v, causal=causal,  # noqa: B023
                                               config=AttentionConfig(autotune=True)))
        _, cands = tune.autotune_attention(q.shape, k.shape, causal=causal, device=WORMHOLE, log=None)  # the same run
        compiled = sum(c.compiled for c in cands)
        sims = sum(c.status == "simulated" for c in cands)
        stops = sum(c.status == "stopped" for c in cands)
        print(f"{case:>16} {pw:10.2f} {pc:9.2f} {tw:10.2f} {tc:9.2f} {tc / pc:9.1f}  {len(cands):10d} {compiled:8d} "
              f"{sims:9d} {stops:7d}")


if __name__ == "__main__":
    main()
