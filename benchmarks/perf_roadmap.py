"""The roadmap's performance path for FlashAttention, measured with the timing model.

One table row per (step, seq, head_dim): predicted time on Wormhole (8x10 die unless the step
varies the grid), TFLOP/s, and the bound. Steps (each against the one before it):
  chunks: single tile per core (q = kv = 1 tile) vs many tiles (the default plan's chunks)
  grid: 1x1 -> 2x2 -> 8x8 -> 8x10
  mcast: K/V multicast along grid rows off / on (non-causal)
  causal: full (non-causal work, the "no skipping" upper bound) / skipping / skipping + balancing
  gqa: 32 Q heads on 8 K/V heads, K/V re-read per Q head vs read once per group (gqa_pack)
Double buffering (CB depth 2) is fixed in the FlashAttention kernel (no knob), so it is not a row.
Timing-only runs (no arithmetic). Run: python benchmarks/perf_roadmap.py [--seqs 2048 8192] [--dims 64 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE
from tilegrid.kernels.flash_attention import AttentionConfig, flash_attention


def predict(seq: int, d: int, heads: int = 8, kv_heads: int | None = None, causal: bool = False,
            fidelity: str = "HiFi2", exp: str = "approx", **cfg) -> perf.Summary:
    kvh = kv_heads or heads
    q = perf.placeholder((1, heads, seq, d))
    k = perf.placeholder((1, kvh, seq, d))
    v = np.broadcast_to(np.zeros((), bfloat16), (1, kvh, seq, d))
    with perf.session(fidelity, timing_only=True, trace=False, exp=exp) as s:
        flash_attention(q, k, v, causal=causal, config=AttentionConfig(**cfg), device=WORMHOLE)
    return s.last


def steps(seq: int, d: int) -> list[tuple[str, str, dict]]:
    dq = {"q_chunk": 4, "kv_chunk": 4}
    return [
        ("chunks", "1 tile per core (q=kv=32 rows)", {"q_chunk": 1, "kv_chunk": 1}),
        ("chunks", "many tiles (q=kv=128 rows)", dq),
        ("grid", "1x1", {**dq, "grid": (1, 1)}),
        ("grid", "2x2", {**dq, "grid": (2, 2)}),
        ("grid", "8x8", {**dq, "grid": (8, 8)}),
        ("grid", "8x10", {**dq, "grid": (8, 10)}),
        ("mcast", "K/V multicast off", {**dq, "mcast": False}),
        ("mcast", "K/V multicast on", {**dq, "mcast": True}),
        ("causal", "no skipping (non-causal work)", {**dq, "causal": False}),
        ("causal", "skipping, no balancing", {**dq, "causal": True, "balance": False}),
        ("causal", "skipping + balancing", {**dq, "causal": True, "balance": True}),
        ("gqa", "32 Q / 8 KV heads, K/V per Q head", {**dq, "heads": 32, "kv_heads": 8, "gqa_pack": False}),
        ("gqa", "32 Q / 8 KV heads, K/V once per group", {**dq, "heads": 32, "kv_heads": 8, "gqa_pack": True}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seqs", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--steps", nargs="+", default=None, help="only these steps (chunks grid mcast causal gqa)")
    ap.add_argument("--exp", default="approx", choices=["approx", "accurate"],
                    help="SFPU exp (tt-metal SDPA's default is approx, anchors/tt_metal_sdpa.md §5)")
    ap.add_argument("--fidelity", default="HiFi2", help="tt-metal SDPA's default is HiFi2")
    ap.add_argument("--skip-1x1", action="store_true", help="leave out the 1x1 grid (slow at long sequences)")
    args = ap.parse_args()
    print(f"WH 8x10, {args.fidelity}, exp {args.exp}; TFLOP/s counts useful attention FLOPs "
          "(4*B*H*S^2*D, halved when causal)")
    print(f"{'step':<7} {'variant':<40} {'seq':>6} {'d':>4} {'pred ms':>10} {'TFLOP/s':>8}  bound (wall s)")
    for seq in args.seqs:
        for d in args.dims:
            for step, label, kw in steps(seq, d):
                if args.steps and step not in args.steps:
                    continue
                if args.skip_1x1 and kw.get("grid") == (1, 1):
                    continue
                kw = dict(kw)
                extra = {k: kw.pop(k) for k in ("heads", "kv_heads", "causal") if k in kw}
                t0 = time.perf_counter()
                try:
                    r = predict(seq, d, **extra, **kw, fidelity=args.fidelity, exp=args.exp)
                except Exception as e:  # a variant that does not fit (L1) is reported, not fatal
                    print(f"{step:<7} {label:<40} {seq:>6} {d:>4} {'-':>10} {'-':>8}  {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:80]}")
                    continue
                useful = 4 * extra.get("heads", 8) * seq * seq * d / (2 if extra.get("causal") else 1)
                print(f"{step:<7} {label:<40} {seq:>6} {d:>4} {r.seconds * 1e3:10.3f} {useful / r.seconds / 1e12:8.2f}  "
                      f"{r.bound} "
                      f"({time.perf_counter() - t0:.1f})", flush=True)


if __name__ == "__main__":
    main()
