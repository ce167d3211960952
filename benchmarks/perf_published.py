"""The timing model against the physical limits and published measurements, side by side.

Every published figure comes from shared/anchors (wormhole.md §6-7, tt_metal_sdpa.md §6); the
model's parameters come from ISA / microbenchmark figures only (tilegrid/perf/params.py) and were
not tuned to any of these points. Runs are timing-only (no arithmetic), so production sizes take
seconds to a minute each.

Run: python benchmarks/perf_published.py [--quick] [--json FILE] [--only matmul|dram|sdpa]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import BLACKHOLE_P100A, WORMHOLE_N150
from tilegrid.kernels.attention import AttentionConfig, flash_attention
from tilegrid.perf.workloads import blocked_matmul, dram_read

# (dtype, fidelity, published TFLOP/s): WH n150 8x8, M = K = N = 16384 (anchors/wormhole.md §7,
# tt-metal tech_reports/GEMM_FLOPS/GEMM_FLOPS.md [06bd3735]).
MATMUL_POINTS = [
    ("bf16", "HiFi4", 54.31),
    ("bf16", "HiFi2", 85.30),
    ("bfp8_b", "HiFi2", 102.42),
    ("bfp8_b", "LoFi", 163.11),
    ("bfp4_b", "LoFi", 199.76),
]


def run_matmul(n: int) -> list[dict]:
    rows = []
    for fmt, fid, published in MATMUL_POINTS:
        t0 = time.perf_counter()
        with perf.session(fid, timing_only=True, data_format=None if fmt == "bf16" else fmt, trace=False) as s:
            blocked_matmul(perf.placeholder((n, n)), perf.placeholder((n, n)), grid=(8, 8), bm=8, bn=8, bk=8,
                           acc_dtype="bf16", device=WORMHOLE_N150)
        r = s.last
        rows.append({
            "point": f"WH n150 8x8 matmul {n}^3 {fmt} {fid}", "published": published if n == 16384 else None,
            "unit": "TFLOP/s", "predicted": r.tflops, "peak": r.peak_tflops, "bound": r.bound,
            "wall_s": time.perf_counter() - t0,
        })
    return rows


def run_dram() -> list[dict]:
    rows = []
    t0 = time.perf_counter()
    with perf.session(timing_only=True, trace=False) as s:
        dram_read((16384, 8192), grid=(8, 8), block=(8, 8), device=WORMHOLE_N150)
    r = s.last
    rows.append({"point": "WH n150 8x8 DRAM read 256 MiB (8x8-tile blocks)", "published": 267.0, "unit": "GB/s",
                 "predicted": r.dram_gbps, "peak": r.dram_peak_gbps, "bound": r.bound,
                 "wall_s": time.perf_counter() - t0})
    return rows


def sdpa(seq: int, grid: tuple[int, int], chunk: int, exp: str) -> perf.Summary:
    q = perf.placeholder((1, 32, seq, 128))
    k = perf.placeholder((1, 8, seq, 128))
    v = np.broadcast_to(np.zeros((), bfloat16), (1, 8, seq, 128))
    with perf.session("HiFi4", timing_only=True, data_format="bfp8_b", exp=exp, trace=False) as s:
        # tt-metal's SDPA computes the scores' exp with the fast approximate exp whatever its
        # exp_approx_mode, which only picks the correction factor's exp (compute_common.hpp)
        flash_attention(q, k, v, causal=True, config=AttentionConfig(q_chunk=chunk // 32, kv_chunk=chunk // 32,
                                                                     grid=grid, gqa_pack=False, fast_exp=True),
                        device=BLACKHOLE_P100A)  # tt-metal re-reads K/V per Q head (anchors §2)
    return s.last


# Blackhole p100a, Llama-3.1-8B attention prefill: 32 Q heads, 8 KV heads, head_dim 128, causal.
# (label, seq, tilegrid grid, chunk, published us, source)
SDPA_POINTS = [
    ("production point (issue #55759): 64 cores, q=k=256, HiFi4, accurate exp, BFP8", 4096, (8, 8), 256, 2950.0),
    ("PR #56898 grid (8,8), S1024 (chunk 64 assumed)", 1024, (8, 8), 64, 371.7),
    ("PR #56898 grid (11,10), S1024 (chunk 64 assumed)", 1024, (10, 11), 64, 345.1),
    ("PR #56898 grid (8,8), S4096", 4096, (8, 8), 256, 2994.4),
    ("PR #56898 grid (11,10), S4096", 4096, (10, 11), 256, 2271.1),
    ("PR #56898 grid (8,8), S8192", 8192, (8, 8), 256, 11567.9),
    ("PR #56898 grid (11,10), S8192", 8192, (10, 11), 256, 7255.8),
]


def run_sdpa(quick: bool) -> list[dict]:
    rows = []
    for label, seq, grid, chunk, published in SDPA_POINTS:
        if quick and seq > 4096:
            continue
        t0 = time.perf_counter()
        acc = sdpa(seq, grid, chunk, "accurate")
        approx = sdpa(seq, grid, chunk, "approx")
        rows.append({"point": f"BH p100a SDPA {label}", "published": published, "unit": "us",
                     "predicted": acc.seconds * 1e6, "predicted_approx_exp": approx.seconds * 1e6,
                     "bound": acc.bound, "sfpu_share": acc.mean_busy("sfpu"), "fpu_share": acc.mean_busy("fpu"),
                     "wall_s": time.perf_counter() - t0})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="matmul at 4096^3, SDPA up to seq 4096")
    ap.add_argument("--only", choices=["matmul", "dram", "sdpa"], default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    rows: list[dict] = []
    if args.only in (None, "matmul"):
        rows += run_matmul(4096 if args.quick else 16384)
    if args.only in (None, "dram"):
        rows += run_dram()
    if args.only in (None, "sdpa"):
        rows += run_sdpa(args.quick)
    print(f"{'point':<92} {'published':>10} {'predicted':>10} {'pred/pub':>8}  bound (wall s)")
    for r in rows:
        pub = r["published"]
        ratio = f"{r['predicted'] / pub:8.2f}" if pub else "       -"
        pubs = f"{pub:10.1f}" if pub else "         -"
        extra = ""
        if "predicted_approx_exp" in r:
            extra = f"; approx exp {r['predicted_approx_exp']:.0f} us ({r['predicted_approx_exp'] / pub:.2f})"
        if "peak" in r and r["unit"] != "us":
            extra = f"; limit {r['peak']:.1f} {r['unit']}"
        print(f"{r['point'] + ' [' + r['unit'] + ']':<92} {pubs} {r['predicted']:10.1f} {ratio}  {r['bound']} "
              f"({r['wall_s']:.1f}){extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
