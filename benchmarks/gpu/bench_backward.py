"""FlashAttention backward (and forward + backward) on the GPU: tilegrid's kernels through the
PyTorch op `tilegrid.torch.flash_attention` against torch SDPA's flash (FlashAttention-2) and cuDNN
backends, on the same bf16 inputs.

Times are `triton.testing.do_bench` medians. FLOPs as FlashAttention-2 counts them: forward
4*B*H*N^2*D, backward 2.5x that, both halved for causal. Backward = the autograd backward of
one forward (retain_graph), what a training step pays; forward + backward = both from scratch.
tilegrid's backward is three kernels (prep, dK/dV, dQ: backward_kernel.py); their times alone are
printed beside. Errors: dq, dk, dv against SDPA's memory-efficient backend in float32.

    python benchmarks/gpu/bench_backward.py [--quick] [--seqs 1024,4096] [--dims 64,128] [--out R.json]
    python benchmarks/gpu/bench_backward.py --sweep [--seqs 4096]    # chunk x launch candidates per kernel
    python benchmarks/gpu/bench_backward.py --overhead                # host time per call at 4x16x4096x128
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import triton
from ml_dtypes import bfloat16
from torch.nn.attention import SDPBackend, sdpa_kernel

import tilegrid.torch as tgt
from tilegrid.device import WORMHOLE
from tilegrid.kernels.attention import make_problem
from tilegrid.kernels.attention.backward import KERNELS, choose_backward_plan
from tilegrid.kernels.attention.backward import argument_shapes as backward_shapes

# Candidates of the sweep, each kernel alone: (chunks, warps, stages); dK/dV chunks are (K/V, Q) tiles,
# dQ chunks (Q, K/V) tiles.
DKDV_SWEEP = [((4, 1), 4, 3), ((4, 1), 4, 4), ((4, 2), 8, 3), ((4, 2), 8, 4), ((2, 2), 4, 3), ((2, 1), 4, 3)]
DQ_SWEEP = [((4, 2), 8, 3), ((4, 2), 4, 3), ((4, 2), 8, 4), ((4, 4), 8, 3)]


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def rel(a, b) -> float:
    return (torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double())).item()


def shape(n: int) -> tuple[int, int]:
    return (8, 16) if n <= 4096 else (2, 16)


def sdpa(backend):
    def run(q, k, v, causal):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


def ours(q, k, v, causal):
    return tgt.flash_attention(q, k, v, causal=causal)


def timings(fn, q, k, v, do, causal) -> tuple[float, float]:
    """(backward ms, forward + backward ms) of an attention function."""
    out = fn(q, k, v, causal)
    bwd = bench(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True))
    both = bench(lambda: torch.autograd.grad(fn(q, k, v, causal), (q, k, v), do))
    return bwd, both


def entry_for(q, k, causal):
    return tgt.gpu_entry(q, k, None, causal, 1 / math.sqrt(q.shape[-1]), -1, -1)


def kernel_times(entry, q, k, v, do, causal) -> dict:
    """Each backward kernel alone on prepared tensors (no padding at these shapes)."""
    out, lse = entry.forward(q, k, v, None)
    entry.backward(do, q, k, v, out, lse, None)  # compiles on first use
    b, h, n, d = q.shape
    col = torch.empty((b, h, n, 32), device="cuda")
    row = torch.empty((b, h, 32, n), device="cuda")
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
    dm = entry.dummy
    k_ = entry.bwd
    return {"prep": bench(lambda: k_["prep"](out, do, lse, col, row)),
            "dkdv": bench(lambda: k_["dkdv"](q, k, v, do, row, dm, dk, dv)),
            "dq": bench(lambda: k_["dq"](q, k, v, do, col, dm, dq)),
            "fwd": bench(lambda: entry.fwd(q, k, v, dm, dm, torch.empty_like(lse), torch.empty_like(out)))}


def run_row(d: int, n: int, causal: bool) -> dict:
    b, h = shape(n)
    q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    fwd_flops = 4 * b * h * n * n * d / (2 if causal else 1)
    row = {"B": b, "H": h, "N": n, "D": d, "causal": causal}

    def tf(ms, mult):
        return fwd_flops * mult / ms / 1e9

    # float32 reference gradients (memory-efficient backend: no N^2 buffer)
    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    ref = torch.autograd.grad(sdpa(SDPBackend.EFFICIENT_ATTENTION)(q32, k32, v32, causal), (q32, k32, v32), do.float())
    for name, fn in (("sdpa_flash", sdpa(SDPBackend.FLASH_ATTENTION)), ("cudnn", sdpa(SDPBackend.CUDNN_ATTENTION)),
                     ("tilegrid", ours)):
        try:
            grads = torch.autograd.grad(fn(q, k, v, causal), (q, k, v), do)
            row[f"{name}_err"] = max(rel(g, r) for g, r in zip(grads, ref))
            bwd, both = timings(fn, q, k, v, do, causal)
            row[f"{name}_bwd"], row[f"{name}_fwdbwd"] = tf(bwd, 2.5), tf(both, 3.5)
        except RuntimeError as e:  # a backend that does not take these inputs
            print(f"  {name}: {str(e)[:120]}", flush=True)
            row[f"{name}_bwd"] = row[f"{name}_fwdbwd"] = row[f"{name}_err"] = float("nan")
    t0 = time.time()
    kt = kernel_times(entry_for(q, k, causal), q.detach(), k.detach(), v.detach(), do, causal)
    row["kernels_ms"] = {key: round(ms, 4) for key, ms in kt.items()}
    row["tilegrid_kernels_bwd"] = tf(kt["prep"] + kt["dkdv"] + kt["dq"], 2.5)
    row["vs_flash"] = row["tilegrid_bwd"] / row["sdpa_flash_bwd"]
    row["kernel_s"] = round(time.time() - t0, 1)
    return row


def sweep_row(d: int, n: int, causal: bool) -> list[dict]:
    """Each dK/dV and dQ candidate (chunks, warps, stages), timed alone, with its gradient's error."""
    b, h = shape(n)
    q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    z = np.zeros((), bfloat16)
    problem = make_problem(np.broadcast_to(z, q.shape), np.broadcast_to(z, k.shape), np.broadcast_to(z, k.shape),
                           causal, None, None, None)
    fwd_flops = 4 * b * h * n * n * d / (2 if causal else 1)
    base = entry_for(q, k, causal)
    out, lse = base.forward(q, k, v, None)
    q32, k32, v32 = (x.float().requires_grad_() for x in (q, k, v))
    ref = torch.autograd.grad(sdpa(SDPBackend.EFFICIENT_ATTENTION)(q32, k32, v32, causal), (q32, k32, v32), do.float())
    col, row = torch.empty((b, h, n, 32), device="cuda"), torch.empty((b, h, 32, n), device="cuda")
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
    dm = base.dummy
    rows = []
    for kind, configs in (("dkdv", DKDV_SWEEP), ("dq", DQ_SWEEP)):
        for chunks, w, s in configs:
            t0 = time.time()
            full = (chunks, (4, 2)) if kind == "dkdv" else ((4, 1), chunks)
            try:
                plan = choose_backward_plan(problem, WORMHOLE.grid, WORMHOLE, "bf16", "gpu", full)
                prep = tgt.compile_launch(KERNELS["prep"](plan, WORMHOLE), backward_shapes(plan, "prep"), 4, 3)
                kern = tgt.compile_launch(KERNELS[kind](plan, WORMHOLE), backward_shapes(plan, kind), w, s)
                prep(out, do, lse, col, row)
                args = (q, k, v, do, row, dm, dk, dv) if kind == "dkdv" else (q, k, v, do, col, dm, dq)
                kern(*args)
                err = max(rel(dk, ref[1]), rel(dv, ref[2])) if kind == "dkdv" else rel(dq, ref[0])
                ms = bench(lambda kern=kern, args=args: kern(*args))
            except Exception as ex:  # noqa: BLE001 - a launch configuration that does not fit
                print(f"  {kind} {chunks} w{w} s{s}: {str(ex)[:120]}", flush=True)
                continue
            r = {"D": d, "N": n, "causal": causal, "kernel": kind, "chunks": chunks, "warps": w, "stages": s,
                 "ms": round(ms, 4), "share_tflops": fwd_flops * (2 if kind == "dkdv" else 1.5) / ms / 1e9,
                 "err": err, "compile_s": round(time.time() - t0, 1)}
            print(json.dumps(r), flush=True)
            rows.append(r)
    return rows


def overhead() -> dict:
    """Host time per call (issuing the work, no synchronisation) and device time per call, tilegrid
    vs SDPA flash, at 4x16x4096x128 bf16: forward, and forward + backward."""
    b, h, n, d = 4, 16, 4096, 128
    q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    flash = sdpa(SDPBackend.FLASH_ATTENTION)
    res = {}

    def host_us(fn, calls=100) -> float:
        fn()
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - t0) / calls * 1e6)
            torch.cuda.synchronize()
        return best

    entry = entry_for(q, k, False)
    dm = entry.dummy
    lse, out = torch.empty(b, h, n, 32, device="cuda"), torch.empty_like(q)
    scale = 1 / math.sqrt(d)

    def op(q, k, v):  # the custom op itself (what torch.compile traces), autograd through the dispatcher
        return torch.ops.tilegrid.flash_attention_fwd(q, k, v, None, False, scale, -1, -1)[0]

    fn = entry.fwd
    cases = {
        "fwd": {"sdpa": lambda: flash(q, k, v, False), "tilegrid": lambda: ours(q, k, v, False),
                "tilegrid_op": lambda: op(q, k, v), "kernel": lambda: fn(q, k, v, dm, dm, lse, out),
                "kernel_jit": lambda: fn.fn[fn.grid](q, k, v, dm, dm, lse, out, num_warps=fn.num_warps,
                                                     num_stages=fn.num_stages)},
        "fwd+bwd": {"sdpa": lambda: torch.autograd.grad(flash(qg, kg, vg, False), (qg, kg, vg), do),
                    "tilegrid": lambda: torch.autograd.grad(ours(qg, kg, vg, False), (qg, kg, vg), do),
                    "tilegrid_op": lambda: torch.autograd.grad(op(qg, kg, vg), (qg, kg, vg), do),
                    "kernel": lambda: entry.backward(do, q, k, v, *entry.forward(q, k, v, None), None)},
    }
    for name, fns in cases.items():
        r = {}
        for who, f in fns.items():
            r[f"{who}_host_us"] = host_us(f)
            r[f"{who}_ms"] = bench(f)
        if "kernel_ms" in r:
            r["beyond_kernel_us"] = (r["tilegrid_ms"] - r["kernel_ms"]) * 1e3
            r["op_overhead_us"] = r["tilegrid_host_us"] - r["kernel_host_us"]
        res[name] = r
        print(name, json.dumps({k_: round(x, 2) for k_, x in r.items()}), flush=True)
    return res


def table(rows: list[dict]) -> str:
    hdr = ("| D | N | causal | B x H | bwd: SDPA flash | cuDNN | tilegrid | tilegrid / flash | fwd+bwd: SDPA flash | "
           "cuDNN | tilegrid | tilegrid kernels (prep / dK,dV / dQ ms) | err (tilegrid, flash) |")
    lines = [hdr, "|---" * (hdr.count("|") - 1) + "|"]
    for r in rows:
        km = r["kernels_ms"]
        lines.append(
            f"| {r['D']} | {r['N']} | {'yes' if r['causal'] else 'no'} | {r['B']}x{r['H']} | {r['sdpa_flash_bwd']:.0f} | "
            f"{r['cudnn_bwd']:.0f} | **{r['tilegrid_bwd']:.0f}** | {r['vs_flash']:.2f} | {r['sdpa_flash_fwdbwd']:.0f} | "
            f"{r['cudnn_fwdbwd']:.0f} | {r['tilegrid_fwdbwd']:.0f} | {km['prep']:.3f} / {km['dkdv']:.3f} / {km['dq']:.3f} | "
            f"{r['tilegrid_err']:.1e}, {r['sdpa_flash_err']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seqs", default=None)
    ap.add_argument("--dims", default="64,128")
    ap.add_argument("--causal", default="0,1")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    seqs = [int(x) for x in a.seqs.split(",")] if a.seqs else ([1024, 4096] if a.quick else [1024, 4096, 16384])
    if a.overhead and not a.seqs:
        seqs = []
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__}", flush=True)
    result: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    if a.overhead:
        result["overhead"] = overhead()
    rows = []
    for d in [int(x) for x in a.dims.split(",")]:
        for n in seqs:
            for causal in (bool(int(c)) for c in a.causal.split(",")):
                try:
                    if a.sweep:
                        rows += sweep_row(d, n, causal)
                    else:
                        rows.append(run_row(d, n, causal))
                        print(json.dumps(rows[-1]), flush=True)
                except Exception as e:  # noqa: BLE001 - report the row and go on
                    print(f"row d={d} n={n} causal={causal} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                torch.cuda.empty_cache()
    result["rows"] = rows
    if rows and not a.sweep:
        print()
        print(table(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
