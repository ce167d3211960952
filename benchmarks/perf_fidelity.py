"""FlashAttention accuracy beside predicted time, per math fidelity, data format and exp mode.

Each choice changes the numbers as well as the time: the functional simulator applies the
matrix unit's fidelity phases, bfp8_b rounding of the kernel's inputs and outputs, and the SFPU's
fast approximate exp (`exp="approx"`: every exp, the scores' and the correction factor's), while
the timing model prices them. Wormhole 8x10, batch 1, 8 heads, seq 1024, head_dim 64, causal,
q = kv chunk 4 tiles, bf16 inputs; error = ||out - ref|| / ||ref|| against float64.
Run: python benchmarks/perf_fidelity.py [--markdown]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE
from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference

FIDELITIES = ("LoFi", "HiFi2", "HiFi3", "HiFi4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 8, 1024, 64)).astype(bfloat16) for _ in range(3))
    ref, _ = reference(q, k, v, causal=True)
    cfg = AttentionConfig(q_chunk=4, kv_chunk=4)
    head = ("exp", "fidelity", "data format", "rel. error", "predicted ms", "bound")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head) if args.markdown else
          f"{head[0]:>8} {head[1]:>8} {head[2]:>11} {head[3]:>10} {head[4]:>12}  {head[5]}")
    for exp, fmt, fid in itertools.product(("accurate", "approx"), ("bf16", "bfp8_b"), FIDELITIES):
        with perf.session(fid, data_format=None if fmt == "bf16" else fmt, exp=exp, trace=False) as s:
            out = flash_attention(q, k, v, causal=True, config=cfg, device=WORMHOLE)
        err = np.linalg.norm(np.asarray(out, np.float64) - ref) / np.linalg.norm(ref)
        r = s.last
        cells = (exp, fid, fmt, f"{err:.2e}", f"{r.seconds * 1e3:.4f}", r.bound)
        print("| " + " | ".join(cells) + " |" if args.markdown else
              f"{exp:>8} {fid:>8} {fmt:>11} {err:>10.2e} {r.seconds * 1e3:>12.4f}  {r.bound}", flush=True)


if __name__ == "__main__":
    main()
