"""tilegrid beside Tenstorrent's tt-lang on the same simulated Wormhole (wolfpine, cost model on).

The same three kernels, bf16, grid 1x1, 64x64 blocks (2x2 tiles), CBs two blocks deep, HiFi4:
elementwise add (128x128), a matmul with a K loop (128x256 @ 256x128) and a matmul + elementwise
epilogue (a @ b + c). tt-lang's come from `ttlang_compile.py` (run here in the tt-lang venv, see
README.md); tilegrid's are written below in tilegrid's language (the matmul is the library's,
`tilegrid.kernels.gemm.matmul`). Both run through tilegrid's device server on the same inputs.
Printed per kernel and compiler: compile time (Python source to tt-metal C++), wolfpine cycles (the
core's span over its five RISC-Vs; per-RISC-V spans after), the largest error against float64.

    PYTHONPATH=. python benchmarks/ttmetal_vs_ttlang/bench.py [--ttlang-venv /work/ttlang-cc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import Program, Stream, compute, datamovement, dma, fill, pykernel_gen
from tilegrid.kernels.gemm import matmul
from tilegrid.targets import compile_kernel
from tilegrid.targets.compile import clear_cache
from tilegrid.targets.ttmetal.device import DeviceSession
from tilegrid.targets.ttmetal.setup import find_env
from tilegrid.targets.ttmetal.target import COST_MODEL

HERE = Path(__file__).resolve().parent
BLOCK = 64  # elements: 2x2 tiles, tt-lang's BLOCK
ADD = (128, 128)
MATMUL = (128, 256, 128)
RISCS = ("brisc", "ncrisc", "trisc0", "trisc1", "trisc2")


# ---- tilegrid's kernels ----------------------------------------------------------------------------


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2, 2), (2, 2, 2), (2, 2, 2)])
def add(a, b, y):
    nblk = (a.shape[0] // BLOCK) * (a.shape[1] // BLOCK)

    @compute()
    async def comp(a_cb, b_cb, y_cb):
        for _ in range(nblk):
            y_cb.reserve().store(a_cb.pop() + b_cb.pop())

    return Program(comp)(a, b, y)


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)])
def matmul_epilogue(a, b, c, y):
    """y = a @ b + c: the K loop accumulates in DST; c's block (read implicitly) is added as the
    accumulator leaves DST."""
    a_stream, b_stream = Stream(a), Stream(b)
    mb, nb, kb = a.shape[0] // BLOCK, b.shape[1] // BLOCK, a.shape[1] // BLOCK

    @compute()
    async def comp(a_cb, b_cb, c_cb, y_cb):
        for _ in range(mb * nb):
            acc = fill(0, shape=(BLOCK, BLOCK))
            for _ in range(kb):
                acc = acc + a_cb.pop() @ b_cb.pop()
            y_cb.reserve().store(acc + c_cb.pop())

    @datamovement()
    async def reader(a_cb, b_cb, c_cb, y_cb):
        for m in range(mb):
            for n in range(nb):
                for k in range(kb):
                    dma(a_stream[m, k], a_cb.reserve()).wait()
                    dma(b_stream[k, n], b_cb.reserve()).wait()

    return Program(comp, reader)(a, b, c, y)


def library_matmul(a: Any, b: Any, y: Any) -> Any:
    return matmul(a, b, grid=(1, 1), bk=2, block=(2, 2), out=y)


def tilegrid_kernels() -> dict[str, tuple[Callable[..., Any], list[str]]]:
    """name (tt-lang's) -> (launch(*tensors), the tensors it takes of a, b, c, y)."""
    return {"add": (add, ["a", "b", "y"]),
            "matmul": (library_matmul, ["a", "b", "y"]),  # tt-lang's matmul takes c too, unused
            "matmul_epilogue": (matmul_epilogue, ["a", "b", "c", "y"])}


# ---- the comparison ---------------------------------------------------------------------------------


def ttlang_compile(venv: Path, out: Path) -> None:
    """Run ttlang_compile.py in tt-lang's venv under wolfpine's environment (its ttnn wants a cluster)."""
    env = find_env()
    tt = venv / "lib" / "python3.12" / "site-packages" / "ttnn"
    run_env = dict(os.environ, TT_METAL_SIMULATOR=str(env.simulator_dir), WOLFPINE_PYTHON=str(env.python),
                   TT_METAL_SLOW_DISPATCH_MODE="1", TT_METAL_HOME=str(tt), TT_METAL_RUNTIME_ROOT=str(tt))
    run_env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(venv / "bin" / "python"), str(HERE / "ttlang_compile.py"), str(out)], cwd=out,
                          env=run_env, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        sys.exit(f"ttlang_compile.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def inputs(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    m, k, n = MATMUL
    shapes = {"add": {"a": ADD, "b": ADD, "y": ADD},
              "matmul": {"a": (m, k), "b": (k, n), "c": (m, n), "y": (m, n)}}
    shapes["matmul_epilogue"] = shapes["matmul"]
    return {name: {t: rng.standard_normal(s).astype(bfloat16) if t != "y" else np.full(s, np.nan, bfloat16)
                   for t, s in sh.items()} for name, sh in shapes.items()}


def reference(name: str, data: dict[str, np.ndarray]) -> np.ndarray:
    a, b = data["a"].astype(np.float64), data["b"].astype(np.float64)
    if name == "add":
        return a + b
    return a @ b + (data["c"].astype(np.float64) if name == "matmul_epilogue" else 0.0)


def spans(cycles: dict) -> dict[str, int]:
    core = max(cycles["cores"], key=lambda c: c["span_cycles"])
    return {"span": cycles["max_span_cycles"], **{r: core[r]["cycles"] for r in RISCS if r in core}}


def run_ttlang(dev: DeviceSession, program: dict, data: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    names = program["names"]
    tensors = {n: {"shape": list(data[n].shape), "dtype": "bf16", "data": data[n].astype(np.float32)}
               for n in names[:-1]}
    tensors[names[-1]] = {"shape": list(data[names[-1]].shape), "dtype": "bf16", "output": True}
    res = dev.run({"tensors": tensors, "cbs": program["cbs"], "semaphores": [], "kernels": program["kernels"]})
    return res.outputs[names[-1]], spans(res.cycles)


def compile_tilegrid(fn: Callable[..., Any], tensors: list[np.ndarray], repeat: int = 3) -> tuple[Any, list[float]]:
    """tilegrid's compile to tt-metal C++ (every pass, the C++ and the host program), cold cache each time."""
    times, program = [], None
    for _ in range(repeat):
        clear_cache()
        t0 = time.perf_counter()
        program = compile_kernel(fn, *tensors, backend="tt-metal")
        times.append(time.perf_counter() - t0)
    return program, times


def run_tilegrid(dev: DeviceSession, program: Any, tensors: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    args = program.compiled.args
    res = dev.run(program.host([None if a["output"] else t for t, a in zip(tensors, args)]))
    return res.outputs[program.tensor_name(len(tensors) - 1)], spans(res.cycles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ttlang-venv", type=Path, default=Path("/work/ttlang-cc"),
                    help="the Python 3.12 venv with tt-lang 1.1.1 (README.md)")
    ap.add_argument("--ttlang-json", type=Path, default=None,
                    help="use tt-lang programs ttlang_compile.py wrote already (skips tt-lang's compile)")
    ap.add_argument("--show", action="store_true", help="print both compilers' compute kernels")
    opts = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tilegrid-vs-ttlang-"))
    out_dir = opts.ttlang_json
    if out_dir is None:
        out_dir = scratch
        ttlang_compile(opts.ttlang_venv, out_dir)
    ttlang = {name: json.loads((out_dir / f"{name}.json").read_text()) for name in tilegrid_kernels()}
    data = inputs(np.random.default_rng(0))
    rows = []
    with DeviceSession(sim_env=COST_MODEL) as dev:
        for name, (fn, takes) in tilegrid_kernels().items():
            ref = reference(name, data[name])
            scale = np.abs(ref).max()
            tensors = [np.copy(data[name][t]) for t in takes]
            program, ctimes = compile_tilegrid(fn, tensors)
            y_tg, c_tg = run_tilegrid(dev, program, tensors)
            y_tl, c_tl = run_ttlang(dev, ttlang[name], data[name])
            err_tg = float(np.abs(y_tg.astype(np.float64) - ref).max())
            err_tl = float(np.abs(y_tl.astype(np.float64) - ref).max())
            rows.append((name, ttlang[name]["compile_s"], ctimes, c_tl, c_tg, err_tl / scale, err_tg / scale))
            if opts.show:
                comp = next(k for k in ttlang[name]["kernels"] if k["kind"] == "compute")
                print(f"==== tt-lang {name} compute\n{comp['source']}\n==== tilegrid {name} compute\n"
                      f"{program.kernels[0].source}")
    print("tilegrid vs tt-lang 1.1.1 on wolfpine's Wormhole (cost model on), bf16, grid 1x1, HiFi4; "
          "compile: Python -> tt-metal C++ (tilegrid: first / best of 3, cold cache);\n"
          "cycles: the core's span over its five RISC-Vs; error: max |y - float64| / max |float64|\n")
    print(f"{'kernel':<16} {'tt-lang ms':>10} {'tilegrid ms':>13} {'ratio':>6} | {'tt-lang cyc':>11} "
          f"{'tilegrid cyc':>12} {'ratio':>6} | {'tt-lang err':>11} {'tilegrid err':>12}")
    for name, tl_s, tg_s, c_tl, c_tg, e_tl, e_tg in rows:
        print(f"{name:<16} {tl_s * 1e3:>10.0f} {f'{tg_s[0] * 1e3:.0f} / {min(tg_s) * 1e3:.0f}':>13} "
              f"{tl_s / min(tg_s):>6.2f} | {c_tl['span']:>11} {c_tg['span']:>12} {c_tl['span'] / c_tg['span']:>6.2f} | "
              f"{e_tl:>11.1e} {e_tg:>12.1e}")
    print("\nper RISC-V (cycles of the slowest core): BRISC / NCRISC / TRISC0 unpack / TRISC1 math / TRISC2 pack")
    for name, _tl_s, _tg_s, c_tl, c_tg, *_ in rows:
        for who, c in (("tt-lang", c_tl), ("tilegrid", c_tg)):
            print(f"{name:<16} {who:<9} " + " ".join(f"{c.get(r, 0):>6}" for r in RISCS))
    print("\nratio: tt-lang / tilegrid (above 1: tilegrid faster)")


if __name__ == "__main__":
    main()
