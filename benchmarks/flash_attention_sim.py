"""Simulation speed of tilegrid's production FlashAttention (and, where installed, a tt-lang
FlashAttention on tt-lang-sim, in the same run).

One head, bf16, seq 1024 / 4096 / 16384, head_dim 64 / 128, causal and not, 8x8 and 8x10 grids.
Prints the cold time (chunk planning + compilation + run), the best-of-3 warm wall time (the
compiled kernel cached), K/V chunk steps and simulated tile operations per second, relative
error vs float64; with --ttlang, the tt-lang FlashAttention (benchmarks/ttlang_sim/, 1-tile
chunks unless the row fixes 64x64 blocks) in its own process, best of 3, and the ratio.
Run: python benchmarks/flash_attention_sim.py [--seqs 1024 4096] [--ttlang /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ml_dtypes import bfloat16
from ttlang_sim.launch import run_ttlang_script

from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference
from tilegrid.sim.observer import Counts


def run_tilegrid(seq: int, d: int, causal: bool, grid: tuple[int, int], chunks: tuple[int, int] | None = None) -> dict:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 1, seq, d)).astype(bfloat16) for _ in range(3))
    cfg = AttentionConfig(grid=grid, q_chunk=chunks[0] if chunks else None, kv_chunk=chunks[1] if chunks else None)
    plans: list = []
    t0 = time.perf_counter()
    flash_attention(q, k, v, causal=causal, config=cfg)  # cold: plans chunks, compiles (cached per shape)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(3):  # best of 3, the kernel compiled and cached
        plans.clear()
        t0 = time.perf_counter()
        out = flash_attention(q, k, v, causal=causal, config=cfg, plan_out=plans)
        times.append(time.perf_counter() - t0)
    wall = min(times)
    counts = Counts()
    flash_attention(q, k, v, causal=causal, config=cfg, observer=counts)
    ref, _ = reference(q, k, v, causal=causal)
    err = float(np.linalg.norm(np.asarray(out, np.float64) - ref) / np.linalg.norm(ref))
    p = plans[0]
    return {"wall_s": wall, "cold_s": cold, "rel_err": err, "tile_ops": counts.total_tile_ops, "steps": p.kv_steps, "chunks": (32 * p.config.q_chunk, 32 * p.config.kv_chunk)}


def run_ttlang(python: str, seq: int, d: int, causal: bool, grid: tuple[int, int],
               blocks: tuple[int, int] | None = None) -> dict | None:
    args = ["--seq", str(seq), "--head-dim", str(d), "--grid", f"{grid[0]}x{grid[1]}"]
    if causal:
        args.append("--causal")
    if blocks:
        args += ["--bq", str(blocks[0]), "--bkv", str(blocks[1])]
    return run_ttlang_script(python, "flash_attention_ttlang.py", args, timeout=1800)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seqs", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    p.add_argument("--grids", nargs="+", default=["8x8", "8x10"])
    p.add_argument("--ttlang", help="python interpreter of a venv with tt-lang-sim installed")
    p.add_argument("--ttlang-max-seq", type=int, default=4096,
                   help="longest sequence to run on tt-lang-sim (1-tile chunks take ~10 s at 4096)")
    args = p.parse_args()
    print(f"{'seq':>6} {'d':>4} {'causal':>6} {'grid':>5} {'chunks':>9} {'kv steps':>8} {'cold s':>7} {'wall s':>7}"
          f" {'steps/s':>8} {'tile ops/s':>10}"
          f" {'rel err':>9} {'tt-lang-sim s':>13} {'ratio':>6}")
    rows = []
    for grid_s in args.grids:
        grid = tuple(int(x) for x in grid_s.split("x"))
        for seq in args.seqs:
            for d in args.head_dims:
                for causal in (False, True):
                    rows.append((seq, d, causal, grid_s, grid, None))
    # like for like with tt-lang-sim's 64x64 blocks: one row with tilegrid's chunks fixed to 2x2 tiles
    rows.append((4096, 128, False, "8x8", (8, 8), (2, 2)))
    for seq, d, causal, grid_s, grid, chunks in rows:
        r = run_tilegrid(seq, d, causal, grid, chunks)
        tt = run_ttlang(args.ttlang, seq, d, causal, grid, chunks) if args.ttlang and seq <= args.ttlang_max_seq else None
        tts = f"{tt['min_s']:.2f}" if tt else "-"
        ratio = f"{tt['min_s'] / r['wall_s']:.1f}x" if tt else "-"
        ch = f"{r['chunks'][0]}/{r['chunks'][1]}"
        print(f"{seq:>6} {d:>4} {str(causal):>6} {grid_s:>5} {ch:>9} {r['steps']:>8} {r['cold_s']:>7.2f} "
              f"{r['wall_s']:>7.2f} {r['steps'] / r['wall_s']:>8.0f} {r['tile_ops'] / r['wall_s']:>10.3g} {r['rel_err']:>9.2e} {tts:>13} {ratio:>6}",
              flush=True)

if __name__ == "__main__":
    main()
