"""Simulation speed of tilegrid's multi-core matmul (and, where installed, tt-lang-sim's).

Prints a table: size, grid, multicast, wall time, simulated tile operations per second,
DRAM bytes moved, relative error vs float64. With --ttlang PYTHON it also runs the tt-lang
matmul in benchmarks/ttlang_sim/ under that interpreter (a venv with tt-lang-sim) and
prints the ratio. Run: python benchmarks/matmul_sim.py [--sizes 1024 2048 4096]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import runner
from tilegrid.kernels.matmul import matmul
from tilegrid.sim.observer import Counts


def run_tilegrid(n: int, grid: tuple[int, int], mcast: bool, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(bfloat16)
    b = rng.standard_normal((n, n)).astype(bfloat16)
    matmul(a, b, grid=grid, mcast=mcast)  # compile (cached) and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = matmul(a, b, grid=grid, mcast=mcast)
        times.append(time.perf_counter() - t0)
    counts = Counts()
    runner.observer = counts
    try:
        matmul(a, b, grid=grid, mcast=mcast)
    finally:
        runner.observer = None
    ref = a.astype(np.float64) @ b.astype(np.float64)
    wall = float(np.median(times))
    return {
        "wall_s": wall,
        "tile_ops": counts.total_tile_ops,
        "dram_bytes": counts.dram_bytes,
        "rel_err": float(np.linalg.norm(c.astype(np.float64) - ref) / np.linalg.norm(ref)),
    }


def run_ttlang(python: str, n: int, grid: tuple[int, int]) -> dict | None:
    script = Path(__file__).parent / "ttlang_sim" / "matmul_ttlang.py"
    if not script.exists():
        return None
    try:
        out = subprocess.run([python, str(script), "--size", str(n), "--grid", f"{grid[0]}x{grid[1]}"],
                             capture_output=True, text=True, timeout=900, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as e:
        print(f"tt-lang-sim run failed for {n}: {e}", file=sys.stderr)
        return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--grid", default="8x8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ttlang", help="python interpreter of a venv with tt-lang-sim installed")
    args = p.parse_args()
    grid = tuple(int(x) for x in args.grid.split("x"))
    print(f"{'size':>6} {'grid':>5} {'mcast':>5} {'wall s':>8} {'tile ops/s':>11} {'DRAM MB':>8} {'rel err':>9}"
          f" {'tt-lang-sim s':>13} {'ratio':>6}")
    for n in args.sizes:
        tt = run_ttlang(args.ttlang, n, grid) if args.ttlang else None
        for mcast in (False, True):
            r = run_tilegrid(n, grid, mcast, args.repeats)
            tts = f"{tt['wall_s']:.2f}" if tt else "-"
            ratio = f"{tt['wall_s'] / r['wall_s']:.2f}x" if tt else "-"
            print(f"{n:>6} {args.grid:>5} {str(mcast):>5} {r['wall_s']:>8.2f} {r['tile_ops'] / r['wall_s']:>11.3g} "
                  f"{r['dram_bytes'] / 1e6:>8.1f} {r['rel_err']:>9.2e} {tts:>13} {ratio:>6}")


if __name__ == "__main__":
    main()
