"""tilegrid kernels compiled by the tt-metal target and run on wolfpine's simulated Wormhole, against
tilegrid's functional simulator (backend="sim") and float64.

One device session for the module (the target's process-wide `shared_session`, wolfpine's cost model
on). Numerics, as measured and explained in docs/ttmetal.md:
- data movement (copies, transposes, multicasts) is bit-exact;
- an elementwise op of the matrix unit is within one bf16 ulp of the simulator's result (both round
  the exact result to bf16; the packer's rounding differs from round-to-nearest-even at ties);
- a matmul or a sum runs through the FPU's fixed-point datapath (wolfpine ports Tenstorrent's ttsim:
  products truncated to ~12 bits and aligned in groups of eight lanes, rounded into DST each step),
  so it is within one bf16 ulp of sum(|a * b|) of the float64 result, where the simulator is exact.
Every figure goes to the logs directory (test_codegen.figures.json) and is printed.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from helpers import poisoned, rand

from tilegrid import Program, compute, pykernel_gen
from tilegrid.targets.ttmetal.setup import find_env

ENV = find_env()
pytestmark = [
    pytest.mark.ttmetal,
    pytest.mark.skipif(ENV is None, reason="tt-metal environment not installed (or out of date): run "
                                           "`python -m tilegrid.targets.ttmetal.setup` (see docs/ttmetal_setup.md)"),
]
FIGURES: dict[str, dict] = {}


class Runs:
    """Observer of a kernel call: the device runs (cycles, timings)."""

    def __init__(self) -> None:
        self.runs: list = []

    def on_device_run(self, run) -> None:
        self.runs.append(run)


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    if ENV is not None and FIGURES:
        out = ENV.logs_dir / "test_codegen.figures.json"
        out.write_text(json.dumps(FIGURES, indent=1) + "\n")
        print(f"\ntt-metal codegen figures ({out}):\n{json.dumps(FIGURES, indent=1)}")


def bf16_ulp(x: np.ndarray) -> np.ndarray:
    """One bf16 unit in the last place at each value's magnitude (8 significant bits)."""
    mag = np.maximum(np.abs(np.asarray(x, np.float64)), np.finfo(np.float32).tiny)
    return np.exp2(np.floor(np.log2(mag)) - 7)


def truncate_bf16(x: np.ndarray) -> np.ndarray:
    """x (as float32) with its low 16 bits dropped: a bf16 rounded toward zero."""
    f = np.ascontiguousarray(x, np.float32)
    return (f.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)


def on_device(kernel, *tensors, **options):
    """Run `kernel` on the simulated device; returns its output (a fresh copy of the poisoned one) and run."""
    runs = Runs()
    out = [np.copy(t) for t in tensors]
    t0 = time.perf_counter()
    kernel(*out, backend="tt-metal", observer=runs, **options)
    wall = time.perf_counter() - t0
    (run,) = runs.runs
    return out, run, wall


def on_sim(kernel, *tensors, **options):
    out = [np.copy(t) for t in tensors]
    kernel(*out, **options)
    return out


def record(name: str, run, wall: float, **numbers) -> None:
    FIGURES[name] = {"wall_s": round(wall, 2), "built": run.built, "program_s": run.timing.get("program_s"),
                     "max_span_cycles": run.max_span_cycles, **numbers}


def check_elementwise(name: str, dev: np.ndarray, sim: np.ndarray, run, wall: float) -> None:
    """Within one bf16 ulp of the simulator (both round the exact result to bf16); counts recorded."""
    d, s = np.asarray(dev, np.float64), np.asarray(sim, np.float64)
    assert not np.isnan(d).any(), "the device left outputs unwritten"
    ulps = np.abs(d - s) / bf16_ulp(s)
    record(name, run, wall, bit_exact=float(np.mean(d == s)), max_ulps=float(ulps.max()))
    assert ulps.max() <= 1.0, f"{name}: {ulps.max()} bf16 ulps from the simulator"


def check_dot(name: str, dev: np.ndarray, sim: np.ndarray, ref: np.ndarray, scale: np.ndarray, run,
              wall: float, ulps: float = 1.0) -> None:
    """A matmul / sum: device within `ulps` bf16 ulps of scale = sum(|terms|) of float64 (the FPU datapath)."""
    d, s = np.asarray(dev, np.float64), np.asarray(sim, np.float64)
    assert not np.isnan(d).any(), "the device left outputs unwritten"
    err = np.abs(d - ref) / bf16_ulp(scale)
    sim_err = np.abs(s - ref) / bf16_ulp(scale)
    record(name, run, wall, bit_exact_vs_sim=float(np.mean(d == s)), max_err_ulps_of_scale=float(err.max()),
           sim_max_err_ulps_of_scale=float(sim_err.max()))
    assert err.max() <= ulps, f"{name}: error {err.max()} bf16 ulps of sum(|a*b|)"


# ---- kernels -------------------------------------------------------------------------------------


def elementwise(fn):
    """A 1x2-grid kernel out = fn(a, b) of one 32x32 block per core (implicit data movement)."""

    @pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
    def kernel(a, b, out):
        return Program(fn)(a, b, out)

    kernel.__name__ = fn.fn.__name__
    return kernel


@compute()
async def add(a_cb, b_cb, out_cb):
    out_cb.reserve().store(a_cb.pop() + b_cb.pop())


@compute()
async def sub(a_cb, b_cb, out_cb):
    out_cb.reserve().store(a_cb.pop() - b_cb.pop())


@compute()
async def mul(a_cb, b_cb, out_cb):
    out_cb.reserve().store(a_cb.pop() * b_cb.pop())


@compute()
async def sub_rowmax(a_cb, b_cb, out_cb):  # a column broadcast: [32, 1] across each row
    x = a_cb.pop()
    y = b_cb.pop()
    out_cb.reserve().store(x - y.rowmax())


@compute()
async def add_colsum(a_cb, b_cb, out_cb):  # a row broadcast: [1, 32] down each column
    x = a_cb.pop()
    y = b_cb.pop()
    out_cb.reserve().store(x + y.colsum())


@compute()
async def rowsum_mul(a_cb, b_cb, out_cb):  # the broadcast operand first (the matrix unit takes it second)
    x = a_cb.pop()
    y = b_cb.pop()
    out_cb.reserve().store(y.rowsum() * x)


@compute()
async def chain(a_cb, b_cb, out_cb):  # intermediates in DST: the dest-reuse forms
    x = a_cb.pop()
    y = b_cb.pop()
    out_cb.reserve().store((x + y) * x - y)


KERNELS = {f.fn.__name__: elementwise(f) for f in (add, sub, mul, sub_rowmax, add_colsum, rowsum_mul, chain)}


@pytest.mark.parametrize("op", ["add", "sub", "mul", "sub_rowmax", "add_colsum", "rowsum_mul", "chain"])
def test_elementwise(op, rng):
    """Elementwise add / sub / mul, with column and row broadcasts (from row / column reductions),
    on a 1x2 grid, bf16, against the simulator."""
    kernel = KERNELS[op]
    a, b = rand(rng, (32, 64), "bf16"), rand(rng, (32, 64), "bf16")
    (_, _, dev), run, wall = on_device(kernel, a, b, poisoned((32, 64), "bf16"))
    (_, _, sim) = on_sim(kernel, a, b, poisoned((32, 64), "bf16"))
    if op in ("sub_rowmax", "add_colsum", "rowsum_mul"):
        # the reduction is a sum (or max) through the FPU datapath: within an ulp of sum(|terms|)
        x64, y64 = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
        blocks = y64.reshape(32, 2, 32)  # each core's 32x32 block
        if op == "sub_rowmax":
            scale = x64 + np.broadcast_to(blocks.max(axis=2, keepdims=True), blocks.shape).reshape(32, 64)
        elif op == "add_colsum":
            scale = x64 + y64.sum(axis=0, keepdims=True)
        else:
            scale = x64 * np.broadcast_to(blocks.sum(axis=2, keepdims=True), blocks.shape).reshape(32, 64)
        check_dot(f"elementwise_{op}", dev, sim, np.asarray(sim, np.float64), scale, run, wall)
    elif op == "chain":
        # each intermediate moves from DST back to SrcA in the sources' format (bf16), truncated there
        # (the simulator keeps it in fp32 DST). Against the model that truncates: one ulp where the
        # datapath's product (~12-bit partial products, 1/16 ulp) truncates the other way, one for the
        # final rounding
        x64, y64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        t2 = truncate_bf16(truncate_bf16(x64 + y64) * x64)
        check_dot("elementwise_chain", dev, sim, t2 - y64, np.abs(t2) + np.abs(y64), run, wall, ulps=2.0625)
    else:
        check_elementwise(f"elementwise_{op}", dev, sim, run, wall)


@pykernel_gen(grid=(2, 1), block_factors=[(1, 2), (1, 2), (1, 2)], num_outs=2)
def row_reductions(x, centred, scaled):
    @compute()
    async def comp(x_cb, centred_cb, scaled_cb):
        blk = x_cb.pop()
        centred_cb.reserve().store(blk - blk.rowmax())
        scaled_cb.reserve().store(blk * blk.rowsum())

    return Program(comp)(x, centred, scaled)


def test_row_reductions(rng):
    """rowmax and rowsum over two tiles a row (reduce_tile accumulating in DST), broadcast back over
    the row, on a 2x1 grid: x - rowmax(x) and x * rowsum(x)."""
    x = rand(rng, (64, 64), "bf16")
    outs = poisoned((64, 64), "bf16"), poisoned((64, 64), "bf16")
    (_, dev_c, dev_s), run, wall = on_device(row_reductions, x, *outs)
    (_, sim_c, sim_s) = on_sim(row_reductions, x, *outs)
    x64 = np.asarray(x, np.float64)
    # a max is exact: x - max(x) rounds once, as on the simulator
    check_elementwise("rowmax_centred", dev_c, sim_c, run, wall)
    check_dot("rowsum_scaled", dev_s, sim_s, x64 * x64.sum(axis=1, keepdims=True),
              np.abs(x64) * np.abs(x64).sum(axis=1, keepdims=True), run, wall)


def test_transpose_example():
    """examples/transpose.py (2x2 grid, an explicit writer to the swapped block): bit-exact."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tg_example_transpose",
                                                  Path(__file__).resolve().parents[2] / "examples" / "transpose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = rand(np.random.default_rng(5), (64, 64), "bf16")
    (_, dev), run, wall = on_device(mod.transpose, x, poisoned((64, 64), "bf16"))
    record("transpose_example", run, wall, bit_exact=float(np.mean(np.asarray(dev) == np.asarray(x).T)))
    np.testing.assert_array_equal(np.asarray(dev, np.float32), np.asarray(x, np.float32).T)
