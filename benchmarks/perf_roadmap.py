"""The roadmap's performance path for FlashAttention, measured with the timing model.

One row per (step, variant) and one column group per (seq, head_dim): predicted time on Wormhole
(the 8x10 die unless the step varies the grid), the speed-up over the step's first variant, DRAM
traffic, and the bound. All rows use q = kv = 4 tiles (128 rows) unless the variant says otherwise,
so each step changes one thing. Steps:
  chunks: single tile per core step (q = kv = 1 tile) vs many tiles (q = kv = 4)
  grid:   1x1 -> 2x2 -> 8x8 -> 8x10
  dbuf:   CB depth 1 (AttentionConfig(double_buffer=False)) vs 2, without and with multicast
  mcast:  K/V multicast along grid rows off / on (non-causal)
  causal: no skipping (AttentionConfig(skip=False): every K/V chunk computed, the crossing and
          wholly masked ones masked) / skipping, items dealt round-robin / skipping + balancing
  gqa:    32 Q heads on 8 K/V heads, K/V re-read per Q head (gqa_pack=False) vs read once per
          group (gqa_pack=True: the group's 4 Q chunks stacked in one Q block; q = 2 tiles where the
          16-tile Q block of q = 4 does not fit L1)
With --autotune: for each (seq, head_dim, causal) the chunks FlashAttention's default heuristic picks
(the first CHUNKS entry that fits L1 and gives every core a work item) beside the ones the timing
model's autotuner picks (tilegrid/kernels/attention/tune.py: the CHUNKS entry that fits with the least predicted
time; candidates its bounds rule out are not simulated, so the runner-up is the best of those it simulated).
Timing-only runs (no arithmetic). Run:
  python benchmarks/perf_roadmap.py [--seqs 2048 8192 16384] [--dims 64 128] [--markdown] [--json F]
  python benchmarks/perf_roadmap.py --autotune [--seqs 2048 8192] [--fidelity HiFi4 --exp accurate]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE
from tilegrid.errors import CompileError
from tilegrid.kernels.attention import AttentionConfig, flash_attention


def predict(seq: int, d: int, heads: int = 8, kv_heads: int | None = None, causal: bool = False,
            fidelity: str = "HiFi2", exp: str = "approx", plan_out: list | None = None, **cfg) -> perf.Summary:
    kvh = kv_heads or heads
    q = perf.placeholder((1, heads, seq, d))
    k = perf.placeholder((1, kvh, seq, d))
    v = np.broadcast_to(np.zeros((), bfloat16), (1, kvh, seq, d))
    with perf.session(fidelity, timing_only=True, trace=False, exp=exp) as s:
        flash_attention(q, k, v, causal=causal, config=AttentionConfig(**cfg), device=WORMHOLE, plan_out=plan_out)
    return s.last


DQ = {"q_chunk": 4, "kv_chunk": 4}
GQA = {"heads": 32, "kv_heads": 8}

# (step, variant, keyword arguments of `predict`; a list = fall-backs tried in order when L1 is short)
STEPS: list[tuple[str, str, dict | list[dict]]] = [
    ("chunks", "1 tile per core step (q=kv=32 rows)", {"q_chunk": 1, "kv_chunk": 1}),
    ("chunks", "many tiles (q=kv=128 rows)", DQ),
    ("grid", "1x1", {**DQ, "grid": (1, 1)}),
    ("grid", "2x2", {**DQ, "grid": (2, 2)}),
    ("grid", "8x8", {**DQ, "grid": (8, 8)}),
    ("grid", "8x10", {**DQ, "grid": (8, 10)}),
    ("dbuf", "CB depth 1 (double_buffer=False)", {**DQ, "double_buffer": False}),
    ("dbuf", "CB depth 2 (double_buffer=True)", {**DQ, "double_buffer": True}),
    ("dbuf", "CB depth 1, K/V multicast", {**DQ, "double_buffer": False, "mcast": True}),
    ("dbuf", "CB depth 2, K/V multicast", {**DQ, "double_buffer": True, "mcast": True}),
    ("mcast", "K/V multicast off", {**DQ, "mcast": False}),
    ("mcast", "K/V multicast on", {**DQ, "mcast": True}),
    ("causal", "no skipping (skip=False)", {**DQ, "causal": True, "skip": False, "balance": False}),
    ("causal", "skipping, round-robin items", {**DQ, "causal": True, "balance": False}),
    ("causal", "skipping + balancing", {**DQ, "causal": True, "balance": True}),
    ("gqa", "4 Q heads per K/V head, K/V per Q head", {**DQ, **GQA, "gqa_pack": False}),
    ("gqa", "4 Q heads per K/V head, K/V once per group",
     [{**DQ, **GQA, "gqa_pack": True}, {**DQ, **GQA, "gqa_pack": True, "q_chunk": 2}]),
]

# rows the "x" (speed-up) column is relative to: the first of each step, and the multicast pair of dbuf
BASES = {i for i, s in enumerate(STEPS) if i == 0 or STEPS[i - 1][0] != s[0]} | {
    next(i for i, s in enumerate(STEPS) if s[1] == "CB depth 1, K/V multicast")}


def run_row(seq: int, d: int, kws: dict | list[dict], heads: int, fidelity: str, exp: str) -> dict:
    """Predict one variant (the first of `kws` that fits L1); a dict for the table."""
    err = None
    for kw in kws if isinstance(kws, list) else [kws]:
        kw = dict(kw)
        kw.setdefault("heads", heads)
        plans: list = []
        t0 = time.perf_counter()
        try:
            r = predict(seq, d, **kw, fidelity=fidelity, exp=exp, plan_out=plans)
        except CompileError as e:
            if "L1" not in e.message:
                raise
            err = "does not fit L1"
            continue
        c = plans[-1].config
        useful = 4 * kw["heads"] * seq * seq * d / (2 if kw.get("causal") else 1)
        return {"ms": r.seconds * 1e3, "tflops": useful / r.seconds / 1e12, "exec_tflop": r.flops / 1e12,
                "dram_gb": r.dram_bytes / 1e9, "mcast_gb": r.mcast_bytes / 1e9, "bound": r.bound.split(" (")[0],
                "chunks": (c.q_chunk, c.kv_chunk), "heads": kw["heads"], "wall_s": time.perf_counter() - t0}
    return {"error": err}


def autotune_rows(seqs: list[int], dims: list[int], heads: int, fidelity: str, exp: str) -> None:
    """Default heuristic vs autotuner, WH 8x10, batch 1, `heads` heads, causal and not."""
    from tilegrid.kernels.attention import autotune_attention, build_kernel, choose_plan, make_problem
    from tilegrid.kernels.attention.plan import arguments_shapes

    def predicted_ms(plan) -> float:
        with perf.session(fidelity, timing_only=True, exp=exp, trace=False) as s:
            build_kernel(plan, WORMHOLE)(*(perf.placeholder(sh, t) for sh, t in arguments_shapes(plan)))
        return s.last.seconds * 1e3

    print(f"autotune vs default plan: WH 8x10, {heads} heads, {fidelity}, exp {exp}")
    rows = ["| seq | d | causal | default (q, kv) | default ms | autotuned (q, kv) | autotuned ms | default/autotuned "
            "| runner-up (q, kv) ms |", "|---|---|---|---|---|---|---|---|---|"]
    for seq in seqs:
        for d in dims:
            for causal in (False, True):
                shape = (1, heads, seq, d)
                x = perf.placeholder(shape)
                t0 = time.perf_counter()
                plan = choose_plan(make_problem(x, x, x, causal, None, None, None), AttentionConfig(), WORMHOLE,
                                   "bf16")
                dflt = (plan.config.q_chunk, plan.config.kv_chunk)
                tuned, cands = autotune_attention(shape, shape, causal=causal, device=WORMHOLE, fidelity=fidelity,
                                                  exp=exp, log=None)
                ms = {(c.q_chunk, c.kv_chunk): c.seconds * 1e3 for c in cands if c.seconds is not None}
                ms.setdefault(dflt, predicted_ms(plan))
                order = sorted(ms, key=ms.get)
                best = (tuned.q_chunk, tuned.kv_chunk)
                ranked = ", ".join(f"{a}x{b} {ms[(a, b)]:.3f}" for a, b in order[:4])
                print(f"seq {seq:6d} d {d:4d} causal {causal!s:5}: default {dflt} {ms.get(dflt, float('nan')):.3f} ms, "
                      f"autotuned {best} {ms[best]:.3f} ms; fastest: {ranked}; no fit: "
                      f"{[(c.q_chunk, c.kv_chunk) for c in cands if c.seconds is None]} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                second = order[1] if len(order) > 1 else best
                rows.append(f"| {seq} | {d} | {'yes' if causal else 'no'} | {dflt[0]}, {dflt[1]} | "
                            f"{ms.get(dflt, float('nan')):.3f} | {best[0]}, {best[1]} | {ms[best]:.3f} | "
                            f"{ms.get(dflt, float('nan')) / ms[best]:.2f} | {second[0]}, {second[1]}: "
                            f"{ms[second]:.3f} |")
    print("\n".join(rows))


ABBR = {"DRAM": "D", "unpack": "U", "pack": "P", "math thread": "M", "compute": "F", "SFPU": "S", "NoC": "N",
        "waiting": "W"}


def markdown(results: dict, heads_of: dict[int, int]) -> str:
    """One table: a row per variant, a column per (seq, head_dim): predicted ms, speed-up over the
    step's first variant (x), bound (D DRAM, U unpack, P pack, M math thread FPU + SFPU, F FPU,
    S SFPU, N NoC, W waiting); the last column: DRAM GB of the last column's run."""
    cols = sorted({(s, d) for s, d, _ in results})
    heads = ", ".join(f"{s}: {heads_of.get(s, '?')}" for s in sorted({s for s, _ in cols}))
    out = [f"heads per seq ({heads}; the gqa rows 4x that on as many K/V heads)\n",
           "| step | variant |" + "".join(f" {s}, d={d} |" for s, d in cols) + f" DRAM GB ({cols[-1][0]}, d={cols[-1][1]}) |",
           "|---|---|" + "---|" * (len(cols) + 1)]
    base: dict = {}
    for i, (step, label, _) in enumerate(STEPS):
        if not any((s, d, i) in results for s, d in cols):
            continue
        cells = []
        for s, d in cols:
            r = results.get((s, d, i), {"error": "not run"})
            if i in BASES:
                base[(s, d)] = r.get("ms", 0.0)
            if "ms" not in r:
                cells.append(f" {r['error']} |")
                continue
            x = base.get((s, d)) or 0.0
            q = f" q={r['chunks'][0]}" if step == "gqa" and r["chunks"] != (4, 4) else ""
            cells.append(f" {r['ms']:.3f} ({x / r['ms']:.2f}x) {ABBR.get(r['bound'], r['bound'])}{q} |")
        last = results.get((*cols[-1], i), {})
        out.append(f"| {step} | {label} |" + "".join(cells) + f" {last.get('dram_gb', float('nan')):.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=int, nargs="+", default=[2048, 8192, 16384])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--heads", type=int, default=8, help="Q heads (the gqa step uses 32 on 8 K/V heads)")
    ap.add_argument("--long-heads", type=int, default=None,
                    help="Q heads at seq >= 16384 (the gqa step: 4x that on as many K/V), to keep runs short")
    ap.add_argument("--steps", nargs="+", default=None, help="only these steps (chunks grid dbuf mcast causal gqa)")
    ap.add_argument("--exp", default="approx", choices=["approx", "accurate"],
                    help="SFPU exp (tt-metal SDPA's default is approx, anchors/tt_metal_sdpa.md §5)")
    ap.add_argument("--fidelity", default="HiFi2", help="tt-metal SDPA's default is HiFi2")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument("--from-json", nargs="+", default=None, help="print the markdown table of saved --json files")
    ap.add_argument("--autotune", action="store_true", help="default chunk heuristic vs the autotuner instead")
    args = ap.parse_args()
    if args.from_json:
        results, heads_of = {}, {}
        for fn in args.from_json:
            for row in json.load(open(fn)):
                i = next(k for k, st in enumerate(STEPS) if st[0] == row["step"] and
                         (st[1] == row["variant"] or st[0] == "gqa" and st[1][-8:] == row["variant"][-8:]))
                row["chunks"] = tuple(row.get("chunks", (4, 4)))
                results[(row["seq"], row["d"], i)] = row
                if row["step"] != "gqa" and "heads" in row:
                    heads_of[row["seq"]] = row["heads"]
        print(markdown(results, heads_of))
        return
    if args.autotune:
        autotune_rows(args.seqs, args.dims, args.heads, args.fidelity, args.exp)
        return
    print(f"WH 8x10, {args.fidelity}, exp {args.exp}; TFLOP/s counts useful attention FLOPs "
          "(4*B*H*S^2*D, halved when causal)")
    print(f"{'step':<7} {'variant':<40} {'seq':>6} {'d':>4} {'pred ms':>10} {'TFLOP/s':>8} {'DRAM GB':>8}  "
          "bound [chunks] (wall s)")
    results: dict = {}
    heads_of = {}
    for seq in args.seqs:
        heads = args.long_heads if (args.long_heads and seq >= 16384) else args.heads
        heads_of[seq] = heads
        for d in args.dims:
            for i, (step, label, kws) in enumerate(STEPS):
                if args.steps and step not in args.steps:
                    continue
                if step == "gqa":
                    kws = [{**kw, "heads": 4 * heads, "kv_heads": heads} for kw in
                           (kws if isinstance(kws, list) else [kws])]
                r = results[(seq, d, i)] = run_row(seq, d, kws, heads, args.fidelity, args.exp)
                if "ms" not in r:
                    print(f"{step:<7} {label:<40} {seq:>6} {d:>4} {'-':>10} {'-':>8} {'-':>8}  {r['error']}")
                    continue
                print(f"{step:<7} {label:<40} {seq:>6} {d:>4} {r['ms']:10.3f} {r['tflops']:8.2f} {r['dram_gb']:8.3f}  "
                      f"{r['bound']} {list(r['chunks'])} ({r['wall_s']:.1f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"seq": s, "d": d, "step": STEPS[i][0], "variant": STEPS[i][1], **r}
                       for (s, d, i), r in results.items()], f, indent=1)
    if args.markdown:
        print(markdown(results, heads_of))


if __name__ == "__main__":
    main()
