"""tilegrid's timing model (backend "perf") beside wolfpine's cycle-approximate count, on the very
kernels the tt-metal target emits; and tilegrid's functional simulator beside wolfpine's results.

For the library matmul (tilegrid.kernels.gemm.matmul), an add with a row broadcast (x + bias, bias a
[1, N] row vector) and a row reduction broadcast back (x - rowmax(x)), on simulated Wormhole grids
1x1, 1x2 and 2x2, bf16, HiFi4, blocks of 2x2 tiles:

- cycles: the model's prediction (its last thread's end) and wolfpine's (TT_SIM_COST_MODEL=1: the
  longest core's span over its five RISC-Vs, from the cycle stamps the device server records), and
  their ratio; engine by engine: the model's compute-thread end and FPU / unpack / pack busy cycles,
  its data-movement threads' last end, beside wolfpine's per-RISC-V spans (TRISC0 unpack, TRISC1
  math, TRISC2 pack, BRISC, NCRISC) and its MATRIX / PACKER units' busy cycles (`"engines": true`);
- numerics: the device's output against the functional simulator's on the same inputs: how many
  elements differ and the largest difference in bf16 ulps (distance between the bit patterns).

Needs the tt-metal environment (`tilegrid setup tt-metal`). Run (a few minutes on 2 cores):

    PYTHONPATH=. python benchmarks/ttmetal_vs_model.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import Program, compute, perf, pykernel_gen
from tilegrid.kernels.gemm import matmul
from tilegrid.targets import compile_kernel
from tilegrid.targets.ttmetal.device import DeviceSession
from tilegrid.targets.ttmetal.target import COST_MODEL

BLOCK = 64  # elements: 2x2 tiles


def add_row_kernel(grid: tuple[int, int], rows_per_core: int) -> Any:
    """out = x + bias: x [M, N] split over the grid, bias [1, N] (each grid column its shard); per core
    one bias block held while the x blocks of its rows stream through."""
    nblk = rows_per_core // BLOCK

    @pykernel_gen(grid=grid, block_factors=[(2, 2, 2), (1, 2), (2, 2, 2)])
    def add_row(x, bias, out):
        @compute()
        async def comp(x_cb, b_cb, out_cb):
            b = b_cb.pop()
            for _ in range(nblk):
                out_cb.reserve().store(x_cb.pop() + b)

        return Program(comp)(x, bias, out)

    return add_row


def sub_rowmax_kernel(grid: tuple[int, int], rows_per_core: int) -> Any:
    """out = x - rowmax(x) per 64x64 block (a row reduction, broadcast back along the rows)."""
    nblk = rows_per_core // BLOCK

    @pykernel_gen(grid=grid, block_factors=[(2, 2, 2), (2, 2, 2)])
    def sub_rowmax(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            for _ in range(nblk):
                blk = x_cb.pop()
                out_cb.reserve().store(blk - blk.rowmax())

        return Program(comp)(x, out)

    return sub_rowmax


@dataclass
class Case:
    kernel: str
    grid: tuple[int, int]
    shape: str
    fn: Callable[..., Any]  # fn(*tensors): launches the kernel (the output last)
    tensors: list[np.ndarray]
    scale: np.ndarray  # sum of |terms| per output (float64): errors are measured in bf16 ulps of it


def rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(bfloat16)


def cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    out: list[Case] = []
    mm = [((1, 1), (64, 128, 64)), ((1, 2), (64, 128, 128)), ((2, 2), (128, 128, 128))]
    if not quick:
        mm += [((1, 1), (128, 256, 128)), ((2, 2), (256, 256, 256))]
    for grid, (m, k, n) in mm:
        def fn(a, b, c, grid=grid):
            return matmul(a, b, grid=grid, bk=2, block=(2, 2), out=c)
        a, b = rand(rng, (m, k)), rand(rng, (k, n))
        out.append(Case("matmul", grid, f"{m}x{k} @ {k}x{n}", fn, [a, b, np.full((m, n), np.nan, bfloat16)],
                        np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))))
    ew = [((1, 1), 64), ((1, 2), 64), ((2, 2), 64)] + ([] if quick else [((1, 1), 256), ((2, 2), 256)])
    for grid, rows in ew:
        m, n = rows * grid[0], BLOCK * grid[1]
        x, bias = rand(rng, (m, n)), rand(rng, (1, n))
        x64 = np.abs(x.astype(np.float64))
        out.append(Case("x + bias[1,N]", grid, f"{m}x{n}", add_row_kernel(grid, rows),
                        [x, bias, np.full((m, n), np.nan, bfloat16)], x64 + np.abs(bias.astype(np.float64))))
        blocks = x.astype(np.float64).reshape(m // BLOCK, BLOCK, n // BLOCK, BLOCK)
        rowmax = np.broadcast_to(blocks.max(axis=3, keepdims=True), blocks.shape).reshape(m, n)
        out.append(Case("x - rowmax(x)", grid, f"{m}x{n}", sub_rowmax_kernel(grid, rows),
                        [x, np.full((m, n), np.nan, bfloat16)], x64 + np.abs(rowmax)))
    return out


def model(case: Case) -> dict[str, float]:
    """The timing model's prediction: total, compute thread, data movement, and engine busy cycles."""
    with perf.session("HiFi4", trace=False) as s:
        case.fn(*[np.copy(t) for t in case.tensors])
    r = s.last
    ends = {"compute": 0.0, "dm": 0.0}
    for (_core, thread), end in r.ends.items():
        kind = "compute" if r.thread_kinds.get(thread) == "compute" else "dm"
        ends[kind] = max(ends[kind], end)
    busy = {u: max(b[u] for b in r.busy.values()) * r.cycles for u in ("fpu", "unpack", "pack")}
    return {"cycles": r.cycles, **ends, **busy}


def device(case: Case, dev: DeviceSession) -> tuple[dict[str, float], np.ndarray]:
    """The emitted kernels on wolfpine: cycles per RISC-V and unit (max over cores), and the output."""
    program = compile_kernel(case.fn, *case.tensors, backend="tt-metal")
    args = program.compiled.args
    req = program.host([None if a["output"] else t for t, a in zip(case.tensors, args)])
    req["engines"] = True
    res = dev.run(req)
    out_i = len(case.tensors) - 1
    y = np.asarray(res.outputs[program.tensor_name(out_i)], np.float32)
    cyc = res.cycles
    rec: dict[str, float] = {"cycles": cyc["max_span_cycles"]}
    for risc in ("trisc0", "trisc1", "trisc2", "brisc", "ncrisc"):
        rec[risc] = max(c[risc]["cycles"] for c in cyc["cores"] if risc in c)
    units = (res.reply.get("engines") or {}).get("cores", {})
    for unit in ("MATRIX", "PACKER", "UNPACKER"):
        rec[unit] = max((u.get(unit, {}).get("busy_cycles", 0) for k, u in units.items() if "," in k
                         and not k.startswith("unified")), default=0)
    return rec, y


def simulate(case: Case) -> np.ndarray:
    tensors = [np.copy(t) for t in case.tensors]
    case.fn(*tensors)
    return np.asarray(tensors[-1])


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance between bf16 bit patterns (ordered so that adjacent floats differ by one)."""
    def ordered(x: np.ndarray) -> np.ndarray:
        bits = np.asarray(x, np.float32).astype(bfloat16).view(np.uint16).astype(np.int64)
        return np.where(bits & 0x8000, 0x8000 - bits, bits)
    return np.abs(ordered(a) - ordered(b))


def bf16_ulp(x: np.ndarray) -> np.ndarray:
    """One bf16 unit in the last place at each value's magnitude (8 significant bits)."""
    mag = np.maximum(np.abs(np.asarray(x, np.float64)), np.finfo(np.float32).tiny)
    return np.exp2(np.floor(np.log2(mag)) - 7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the smallest size of each kernel and grid only")
    opts = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    with DeviceSession(sim_env=COST_MODEL) as dev:
        for case in cases(opts.quick):
            m = model(case)
            d, y = device(case, dev)
            sim = simulate(case)
            ulps = ulp_distance(y, sim)
            of_scale = np.abs(y.astype(np.float64) - sim.astype(np.float64)) / bf16_ulp(case.scale)
            rows.append((case, m, d, int(np.count_nonzero(ulps)), ulps.size, int(ulps.max()), float(of_scale.max())))
    print(f"tilegrid perf model vs wolfpine (Wormhole, cost model on), bf16, HiFi4 "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print(f"{'kernel':<14} {'grid':>4} {'shape':<18} {'model':>7} {'wolfpine':>9} {'wolf/model':>10}")
    for case, m, d, *_ in rows:
        print(f"{case.kernel:<14} {case.grid[0]}x{case.grid[1]:<2} {case.shape:<18} {m['cycles']:>7.0f} "
              f"{d['cycles']:>9.0f} {d['cycles'] / m['cycles']:>10.2f}")
    print("\nengine by engine (cycles; max over cores). model: compute thread end, FPU / unpack / pack busy, "
          "data movement end;\nwolfpine: TRISC0 (unpack) / TRISC1 (math) / TRISC2 (pack) / BRISC / NCRISC spans, "
          "MATRIX / PACKER unit busy")
    print(f"{'kernel':<14} {'grid':>4} {'m.comp':>7} {'m.fpu':>6} {'m.unp':>6} {'m.pack':>6} {'m.dm':>6} | "
          f"{'TRISC0':>6} {'TRISC1':>6} {'TRISC2':>6} {'BRISC':>6} {'NCRISC':>6} {'MATRIX':>6} {'PACKER':>6}")
    for case, m, d, *_ in rows:
        print(f"{case.kernel:<14} {case.grid[0]}x{case.grid[1]:<2} {m['compute']:>7.0f} {m['fpu']:>6.0f} "
              f"{m['unpack']:>6.0f} {m['pack']:>6.0f} {m['dm']:>6.0f} | {d['trisc0']:>6.0f} {d['trisc1']:>6.0f} "
              f"{d['trisc2']:>6.0f} {d['brisc']:>6.0f} {d['ncrisc']:>6.0f} {d['MATRIX']:>6.0f} {d['PACKER']:>6.0f}")
    print("\nfunctional simulator vs wolfpine, same inputs (bf16 outputs): elements that differ, the largest "
          "distance\nbetween bit patterns (bf16 ulps), the largest difference in bf16 ulps of sum(|terms|)")
    print(f"{'kernel':<14} {'grid':>4} {'shape':<18} {'differ':>19} {'max ulps':>8} {'of sum|terms|':>13}")
    for case, _m, _d, ndiff, n, maxu, of_scale in rows:
        print(f"{case.kernel:<14} {case.grid[0]}x{case.grid[1]:<2} {case.shape:<18} "
              f"{f'{ndiff}/{n} ({ndiff / n:.1%})':>19} {maxu:>8} {of_scale:>13.2f}")


if __name__ == "__main__":
    main()
