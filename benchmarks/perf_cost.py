"""What the timing model costs beside the plain functional simulation (issue: at most 2x).

FlashAttention, batch 1, 8 heads, seq 2048, head_dim 64, causal, Wormhole 8x10 (the README's main
job): wall time of the plain simulation, the simulation with the timing model, with its Perfetto
trace as well, and the timing-only mode (no arithmetic). Best of --repeat runs each, after one
warm-up run that compiles the kernel.
Run: python benchmarks/perf_cost.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.kernels.attention import flash_attention


def best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # compile and warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 8, 2048, 64)).astype(bfloat16) for _ in range(3))

    def plain() -> None:
        flash_attention(q, k, v, causal=True)

    def modelled(**opts) -> Callable[[], None]:
        def run() -> None:
            with perf.session(**opts):
                flash_attention(q, k, v, causal=True)
        return run

    base = best(plain, args.repeat)
    rows = [("plain simulation", base), ("simulation + timing model", best(modelled(trace=False), args.repeat)),
            ("simulation + timing model + trace", best(modelled(trace=True), args.repeat)),
            ("timing-only (no arithmetic)", best(modelled(trace=False, timing_only=True), args.repeat))]
    print(f"{'run':<36} {'wall s':>8} {'x plain':>8}")
    for name, t in rows:
        print(f"{name:<36} {t:>8.3f} {t / base:>8.2f}")


if __name__ == "__main__":
    main()
