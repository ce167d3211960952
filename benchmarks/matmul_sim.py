"""Simulation speed of tilegrid's multi-core matmul beside tt-lang-sim's, in the same run.

For each size (bf16, 8x8 grid): tilegrid's matmul (its own block plan, and 4x4x4-tile blocks
like the tt-lang kernel's), with and without multicast: best-of-3 kernel wall time with the
kernel compiled and cached (the cold first call, which compiles, is reported separately),
simulated tile operations per second, DRAM bytes moved, relative error vs float64. With
--ttlang PYTHON it also runs benchmarks/ttlang_sim/matmul_ttlang.py (our tt-lang kernel) in
its own process under that interpreter (a venv with tt-lang-sim, see
benchmarks/ttlang_sim/README.md) and prints its best-of-3 time and the ratio.
Run: python benchmarks/matmul_sim.py [--sizes 1024 2048 4096] [--ttlang /work/ttlang-venv/bin/python]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ml_dtypes import bfloat16
from ttlang_sim.launch import run_ttlang_script

from tilegrid.kernels.gemm import matmul
from tilegrid.sim.observer import Counts


def run_tilegrid(n: int, grid: tuple[int, int], mcast: bool, repeats: int, blocks: tuple[int, int, int] | None) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(bfloat16)
    b = rng.standard_normal((n, n)).astype(bfloat16)
    kw = dict(grid=grid, mcast=mcast)
    if blocks:
        kw.update(block=blocks[:2], bk=blocks[2])
    t0 = time.perf_counter()
    matmul(a, b, **kw)  # cold: compiles (cached per shape signature)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = matmul(a, b, **kw)
        times.append(time.perf_counter() - t0)
    counts = Counts()
    matmul(a, b, **kw, observer=counts)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    wall = min(times)
    return {
        "wall_s": wall,
        "cold_s": cold,
        "tile_ops": counts.tile_ops["matmul"],
        "dram_bytes": counts.dram_bytes,
        "rel_err": float(np.linalg.norm(c.astype(np.float64) - ref) / np.linalg.norm(ref)),
    }


def run_ttlang(python: str, n: int, grid: tuple[int, int], blocks: tuple[int, int, int]) -> dict | None:
    args = ["--size", str(n), "--grid", f"{grid[0]}x{grid[1]}", "--block", ",".join(str(x) for x in blocks)]
    return run_ttlang_script(python, "matmul_ttlang.py", args, timeout=900)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--grid", default="8x8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ttlang", help="python interpreter of a venv with tt-lang-sim installed")
    args = p.parse_args()
    grid = tuple(int(x) for x in args.grid.split("x"))
    print(f"{'size':>6} {'grid':>5} {'blocks':>7} {'mcast':>5} {'cold s':>7} {'best s':>7} {'tile ops/s':>11}"
          f" {'DRAM MB':>8} {'rel err':>9} {'tt-lang-sim s':>13} {'ratio':>6}")
    for n in args.sizes:
        tt = run_ttlang(args.ttlang, n, grid, (4, 4, 4)) if args.ttlang else None
        for blocks in (None, (4, 4, 4)):
            for mcast in (False, True):
                r = run_tilegrid(n, grid, mcast, args.repeats, blocks)
                like = blocks is not None
                tts = f"{tt['min_s']:.2f}" if tt and like else "-"
                ratio = f"{tt['min_s'] / r['wall_s']:.2f}x" if tt and like else "-"
                bl = "4x4x4" if like else "auto"
                print(f"{n:>6} {args.grid:>5} {bl:>7} {str(mcast):>5} {r['cold_s']:>7.2f} {r['wall_s']:>7.2f} "
                      f"{r['tile_ops'] / r['wall_s']:>11.3g} {r['dram_bytes'] / 1e6:>8.1f} {r['rel_err']:>9.2e} "
                      f"{tts:>13} {ratio:>6}", flush=True)
        if tt:
            print(f"{'':>6} tt-lang-sim 4x4x4: {tt['min_s']:.2f} s best of 3, {tt['tile_ops'] / tt['min_s']:.3g} tile "
                  f"ops/s, DRAM {tt['dram_bytes'] / 1e6:.1f} MB, rel err {tt['rel_err']:.1e} (computes in "
                  f"{tt.get('compute_dtype', '?')})", flush=True)


if __name__ == "__main__":
    main()
