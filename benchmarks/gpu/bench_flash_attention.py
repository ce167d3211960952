"""FlashAttention forward on the GPU: the tilegrid kernel compiled to Triton vs torch SDPA
(flash and cuDNN backends) and a plain hand-written Triton FA2 (triton_fa2.py).

Same bf16 inputs for every implementation; `triton.testing.do_bench` medians; TFLOP/s
counted as 4*B*H*N^2*D (halved for causal). The tilegrid kernel is `tilegrid.kernels.
flash_attention`'s own kernel (the tilegrid source), compiled by the GPU backend; its
Q/KV chunk sizes (the tilegrid AttentionConfig) and the launch's warps / pipeline stages
are picked by timing a few candidates, as the Triton baseline's autotuner does.

    python benchmarks/gpu/bench_flash_attention.py [--quick] [--out RESULTS.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import triton
from ml_dtypes import bfloat16
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(__file__))
import triton_fa2  # noqa: E402

import tilegrid.kernels.attention as F  # noqa: E402
from tilegrid.device import WORMHOLE  # noqa: E402
from tilegrid.errors import TilegridError  # noqa: E402
from tilegrid.targets.gpu import capture  # noqa: E402

CHUNKS = {64: [(4, 4), (4, 2)], 128: [(4, 2), (4, 4)]}  # (q_chunk, kv_chunk) tiles of 32 rows
LAUNCH = [(4, 2), (4, 3), (8, 2), (8, 3)]  # (num_warps, num_stages)


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")


def tilegrid_programs(b, h, n, d, causal):
    """The tilegrid FA kernel compiled for the GPU, one per chunk candidate."""
    q = np.zeros((b, h, n, d), bfloat16)
    p = F.make_problem(q, q, q, causal, None, None, None)
    out = []
    for cq, ck in CHUNKS[d]:
        cfg = F.AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=WORMHOLE.grid)
        try:
            plan = F.choose_plan(p, cfg, WORMHOLE, "bf16", backend="gpu")
        except TilegridError as e:  # a chunk that does not fit a Tensix core's L1 is not a tilegrid program
            print(f"  skip chunks {cq}x{ck}: {e.message[:80]}", flush=True)
            continue
        args = F.arguments(plan, q, q.copy(), q.copy(), None)
        prog = capture(F.build_kernel(plan, WORMHOLE), *args)
        out.append((plan, prog))
    return out


def rel(a, b) -> float:
    return (torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double())).item()


def run_row(d: int, n: int, causal: bool, source_dir: str | None) -> dict:
    b, h = (8, 16) if n <= 4096 else (2, 16)
    q, k, v = (torch.randn(b, h, n, d, device="cuda").bfloat16() for _ in range(3))
    scale = 1 / math.sqrt(d)
    flops = 4 * b * h * n * n * d / (2 if causal else 1)
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    row = {"B": b, "H": h, "N": n, "D": d, "causal": causal}

    def tf(ms):
        return flops / ms / 1e9

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        row["sdpa_flash"] = tf(bench(sdpa))
    try:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            row["cudnn"] = tf(bench(sdpa))
    except RuntimeError as e:
        row["cudnn"] = float("nan")
        print("  cudnn:", str(e)[:100])
    o2 = triton_fa2.attention(q, k, v, causal, scale)
    row["triton_fa2_err"] = rel(o2, ref)
    row["triton_fa2"] = tf(bench(lambda: triton_fa2.attention(q, k, v, causal, scale)))
    best = None
    t0 = time.time()
    out = torch.full_like(q, float("nan"))
    lse = torch.empty(b, h, n, 32, device="cuda")
    mask = torch.zeros(32, 32, device="cuda")
    slopes = torch.zeros(32, 32, device="cuda")
    tensors = (q, k, v, mask, slopes, lse, out)
    for plan, prog in tilegrid_programs(b, h, n, d, causal):
        for w, s in LAUNCH:
            try:
                prog(*tensors, num_warps=w, num_stages=s)
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001 - a launch configuration that does not fit
                print(f"  launch {w},{s} failed: {str(e)[:100]}")
                continue
            ms = bench(lambda prog=prog, w=w, s=s: prog(*tensors, num_warps=w, num_stages=s))
            if best is None or ms < best[0]:
                out.fill_(float("nan"))
                prog(*tensors, num_warps=w, num_stages=s)
                best = (ms, plan.config.q_chunk * 32, plan.config.kv_chunk * 32, w, s, rel(out, ref), prog)
    if best is not None:
        ms, bm, bn, w, s, err, prog = best
        row.update(tilegrid=tf(ms), tilegrid_cfg=f"{bm}x{bn} w{w} s{s}", tilegrid_err=err,
                   tune_s=round(time.time() - t0, 1))
        if source_dir:
            os.makedirs(source_dir, exist_ok=True)
            with open(os.path.join(source_dir, f"fa_d{d}_n{n}_{'causal' if causal else 'full'}.py"), "w") as f:
                f.write(prog.source)
    else:
        row.update(tilegrid=float("nan"), tilegrid_cfg="-", tilegrid_err=float("nan"))
    row["vs_fa2"] = row["tilegrid"] / row["triton_fa2"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seqs", default=None, help="comma-separated sequence lengths")
    ap.add_argument("--dims", default="64,128", help="comma-separated head dims")
    ap.add_argument("--source-dir", default=None, help="write each generated Triton source here")
    a = ap.parse_args()
    rows = []
    seqs = [1024, 4096] if a.quick else [1024, 4096, 16384]
    if a.seqs:
        seqs = [int(x) for x in a.seqs.split(",")]
    torch.manual_seed(0)
    for d in [int(x) for x in a.dims.split(",")]:
        for n in seqs:
            for causal in (False, True):
                row = run_row(d, n, causal, a.source_dir)
                rows.append(row)
                print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    print()
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__}")
    hdr = "| D | N | causal | B x H | SDPA flash | cuDNN | Triton FA2 | tilegrid | tilegrid / FA2 | tilegrid config | err |"
    print(hdr)
    print("|---" * (hdr.count("|") - 1) + "|")
    for r in rows:
        print(f"| {r['D']} | {r['N']} | {'yes' if r['causal'] else 'no'} | {r['B']}x{r['H']} | {r['sdpa_flash']:.0f} | "
              f"{r['cudnn']:.0f} | {r['triton_fa2']:.0f} | {r['tilegrid']:.0f} | {r['vs_fa2']:.2f} | "
              f"{r['tilegrid_cfg']} | {r['tilegrid_err']:.1e} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
