"""tilegrid kernels compiled by the tt-metal target and run on wolfpine's simulated Wormhole, against
tilegrid's functional simulator (backend="sim") and float64.

One device session for the module (the target's process-wide `shared_session`, wolfpine's cost model
on). Numerics, as measured and explained in docs/ttmetal.md:
- data movement (copies, transposes, multicasts) is bit-exact;
- an elementwise op of the matrix unit is within one bf16 ulp of the simulator's result (both round
  the exact result to bf16; the packer's rounding differs from round-to-nearest-even at ties);
- a chain of ops in DST moves each intermediate back to a source register, configured fp32 (TF32);
- a matmul or a sum runs through the FPU's fixed-point datapath (wolfpine ports Tenstorrent's ttsim:
  products truncated to ~12 bits and aligned in groups of eight lanes, rounded into DST each step),
  so it is within one bf16 ulp of sum(|a * b|) of the float64 result, where the simulator is exact.
Every figure goes to the logs directory (test_ttmetal_codegen.figures.json) and is printed.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from helpers import DeviceRuns, figures_fixture, poisoned, rand

from tilegrid import (
    Program,
    Stream,
    col_index,
    compute,
    core_index,
    datamovement,
    dma,
    fill,
    pykernel_gen,
    row_index,
)
from tilegrid.errors import CompileError
from tilegrid.targets import compile_kernel
from tilegrid.targets.ttmetal.setup import find_env

ENV = find_env()
pytestmark = [
    pytest.mark.ttmetal,
    pytest.mark.skipif(ENV is None, reason="tt-metal environment not installed (or out of date): run "
                                           "`python -m tilegrid.targets.ttmetal.setup` (see docs/ttmetal_setup.md)"),
]
FIGURES: dict[str, dict] = {}


figures = figures_fixture(ENV, FIGURES, "test_ttmetal_codegen", "tt-metal codegen figures")


def bf16_ulp(x: np.ndarray) -> np.ndarray:
    """One bf16 unit in the last place at each value's magnitude (8 significant bits)."""
    mag = np.maximum(np.abs(np.asarray(x, np.float64)), np.finfo(np.float32).tiny)
    return np.exp2(np.floor(np.log2(mag)) - 7)


def on_device(kernel, *tensors, **options):
    """Run `kernel` on the simulated device; returns its output (a fresh copy of the poisoned one) and run."""
    runs = DeviceRuns()
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
        # each intermediate moves from DST back to a source register, configured fp32 (19 bits, TF32);
        # the products go through the FPU datapath: within an ulp of |x + y| |x| + |y|
        x64, y64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        check_dot("elementwise_chain", dev, sim, (x64 + y64) * x64 - y64, np.abs(x64 + y64) * np.abs(x64) + np.abs(y64),
                  run, wall)
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


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
def test_transpose_example(dtype):
    """examples/transpose.py (2x2 grid, an explicit writer to the swapped block): bit-exact (fp32 tiles
    unpack straight into DST and transpose there)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tg_example_transpose",
                                                  Path(__file__).resolve().parents[2] / "examples" / "transpose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = rand(np.random.default_rng(5), (64, 64), dtype)
    (_, dev), run, wall = on_device(mod.transpose, x, poisoned((64, 64), dtype))
    record(f"transpose_example_{dtype}", run, wall, bit_exact=float(np.mean(np.asarray(dev) == np.asarray(x).T)))
    np.testing.assert_array_equal(np.asarray(dev, np.float32), np.asarray(x, np.float32).T)


def test_fp32_add_is_tf32_on_the_matrix_unit(rng):
    """fp32 operands reach the matrix unit as TF32 (19 bits): within one bf16 ulp of |a| + |b|, not the
    simulator's exact fp32 sum (an SFPU add would be exact; docs/ttmetal.md)."""
    a, b = rand(rng, (32, 64)), rand(rng, (32, 64))
    (_, _, dev), run, wall = on_device(KERNELS["add"], a, b, poisoned((32, 64)))
    (_, _, sim) = on_sim(KERNELS["add"], a, b, poisoned((32, 64)))
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    check_dot("elementwise_add_f32", dev, sim, a64 + b64, np.abs(a64) + np.abs(b64), run, wall)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1, 2), (1, 1, 2), (1, 1)])
def batched_sub(a, b, out):
    """A batch dimension (the implicit readers loop over it, element indices of the leading dimension)
    and double-buffered input CBs."""
    BATCH = a.shape[0]  # noqa: N806

    @compute()
    async def comp(a_cb, b_cb, out_cb):
        for _ in range(BATCH):
            out_cb.reserve().store(a_cb.pop() - b_cb.pop())

    return Program(comp)(a, b, out)


def test_batched_double_buffered(rng):
    a, b = rand(rng, (3, 32, 64), "bf16"), rand(rng, (3, 32, 64), "bf16")
    (_, _, dev), run, wall = on_device(batched_sub, a, b, poisoned((3, 32, 64), "bf16"))
    (_, _, sim) = on_sim(batched_sub, a, b, poisoned((3, 32, 64), "bf16"))
    check_elementwise("batched_sub", dev, sim, run, wall)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1), (1, 1)], num_outs=2)
def plus_indices(x, by_row, by_col):
    """row_index / col_index: index tiles a data-movement kernel writes, copied into DST."""

    @compute()
    async def comp(x_cb, by_row_cb, by_col_cb):
        blk = x_cb.pop()
        by_row_cb.reserve().store(blk + row_index((32, 32)))
        by_col_cb.reserve().store(col_index((32, 32)) + blk)

    return Program(comp)(x, by_row, by_col)


def test_row_and_column_indices(rng):
    x = rand(rng, (32, 64), "bf16")
    outs = poisoned((32, 64), "bf16"), poisoned((32, 64), "bf16")
    (_, dev_r, dev_c), run, wall = on_device(plus_indices, x, *outs)
    (_, sim_r, sim_c) = on_sim(plus_indices, x, *outs)
    check_elementwise("plus_row_index", dev_r, sim_r, run, wall)
    check_elementwise("plus_col_index", dev_c, sim_c, run, wall)


# ---- matmul ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid, mcast, fidelity", [
    ((1, 1), False, "HiFi4"),
    ((1, 2), False, "HiFi4"),
    ((2, 2), False, "HiFi4"),
    ((2, 2), True, "HiFi4"),
    ((1, 2), True, "HiFi2"),
], ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_library_matmul(grid, mcast, fidelity, rng):
    """tilegrid.kernels.matmul (2x2-tile output blocks, a K loop of two 2-tile steps with the fp32
    accumulator reloaded into DST, double-buffered inputs), with and without multicast + semaphores,
    bf16, at HiFi4 and HiFi2: the simulator computes the same fidelity phases exactly; the device
    adds the FPU datapath's error (within an ulp of sum(|a * b|))."""
    from tilegrid.kernels.gemm import matmul

    gr, gc = grid
    a, b = rand(rng, (64 * gr, 128), "bf16"), rand(rng, (128, 64 * gc), "bf16")
    runs = DeviceRuns()
    t0 = time.perf_counter()
    dev = matmul(a, b, grid=grid, mcast=mcast, bk=2, block=(2, 2), backend="tt-metal", observer=runs,
                 math_fidelity=fidelity)
    wall = time.perf_counter() - t0
    sim = matmul(a, b, grid=grid, mcast=mcast, bk=2, block=(2, 2), math_fidelity=fidelity)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(a64) @ np.abs(b64)
    name = f"matmul_{gr}x{gc}{'_mcast' if mcast else ''}_{fidelity}"
    check_dot(name, dev, sim, np.asarray(sim, np.float64), scale, runs.runs[0], wall)
    if fidelity == "HiFi4":  # and both against float64
        check_dot(name, dev, sim, a64 @ b64, scale, runs.runs[0], wall)


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def matmul_bias(A, B, bias, out):
    """C = A @ B + bias: examples/matmul.py's reader and K loop, and an elementwise epilogue (the fp32
    accumulator plus the core's bf16 block of `bias`, which arrives implicitly)."""
    A_stream = Stream(A)
    B_stream = Stream(B)
    K_BLOCKS = A.shape[1] // 32  # noqa: N806

    @compute()
    async def comp(A_cb, B_cb, bias_cb, out_cb):
        acc = fill(0, shape=(32, 32))
        for _ in range(K_BLOCKS):
            acc = acc + A_cb.pop() @ B_cb.pop()
        out_cb.reserve().store(acc + bias_cb.pop())

    @datamovement()
    async def reader(A_cb, B_cb, bias_cb, out_cb):
        r = core_index(0)
        c = core_index(1)
        for k in range(K_BLOCKS):
            dma(A_stream[r, k], A_cb.reserve()).wait()
            dma(B_stream[k, c], B_cb.reserve()).wait()

    return Program(comp, reader)(A, B, bias, out)


def test_matmul_epilogue(rng):
    """A matmul followed by an elementwise epilogue: the fp32 accumulator (an f32 buffer) + a bf16 block."""
    a, b, bias = rand(rng, (64, 96), "bf16"), rand(rng, (96, 64), "bf16"), rand(rng, (64, 64), "bf16")
    (_, _, _, dev), run, wall = on_device(matmul_bias, a, b, bias, poisoned((64, 64), "bf16"))
    (_, _, _, sim) = on_sim(matmul_bias, a, b, bias, poisoned((64, 64), "bf16"))
    a64, b64, c64 = (np.asarray(x, np.float64) for x in (a, b, bias))
    check_dot("matmul_bias", dev, sim, a64 @ b64 + c64, np.abs(a64) @ np.abs(b64) + np.abs(c64), run, wall)


def test_matmul_epilogue_over_several_blocks(rng):
    """Two output blocks of 2x2 tiles, each a K loop of two steps in DST and a bias epilogue: the second
    block's matmul runs after the first one's epilogue reconfigured the unpacker (an fp32 buffer + bf16)."""
    from test_ttmetal_compile import matmul_bias_blocks

    a, b, bias = rand(rng, (64, 128), "bf16"), rand(rng, (128, 128), "bf16"), rand(rng, (64, 128), "bf16")
    (_, _, _, dev), run, wall = on_device(matmul_bias_blocks, a, b, bias, poisoned((64, 128), "bf16"))
    (_, _, _, sim) = on_sim(matmul_bias_blocks, a, b, bias, poisoned((64, 128), "bf16"))
    a64, b64, c64 = (np.asarray(x, np.float64) for x in (a, b, bias))
    check_dot("matmul_bias_blocks", dev, sim, a64 @ b64 + c64, np.abs(a64) @ np.abs(b64) + np.abs(c64), run, wall)


@pykernel_gen(grid=(1, 2), block_factors=[(2, 2, 2), (1, 2), (2, 2, 2)])
def add_row_vector(x, bias, out):
    """x + bias with bias a [1, N] row vector (padded to whole tiles in DRAM), held over two x blocks."""

    @compute()
    async def comp(x_cb, b_cb, out_cb):
        b = b_cb.pop()
        for _ in range(2):
            out_cb.reserve().store(x_cb.pop() + b)

    return Program(comp)(x, bias, out)


def test_row_vector_argument(rng):
    x, bias = rand(rng, (128, 128), "bf16"), rand(rng, (1, 128), "bf16")
    (_, _, dev), run, wall = on_device(add_row_vector, x, bias, poisoned((128, 128), "bf16"))
    (_, _, sim) = on_sim(add_row_vector, x, bias, poisoned((128, 128), "bf16"))
    check_elementwise("add_row_vector", dev, sim, run, wall)


# ---- examples ---------------------------------------------------------------------------------------


def test_matmul_example(rng):
    """examples/matmul.py: a reader thread, a K loop with the accumulator carried, an implicit writer."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tg_example_matmul",
                                                  Path(__file__).resolve().parents[2] / "examples" / "matmul.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a, b = rand(rng, (64, 96), "bf16"), rand(rng, (96, 64), "bf16")
    (_, _, dev), run, wall = on_device(mod.matmul, a, b, poisoned((64, 64), "bf16"))
    (_, _, sim) = on_sim(mod.matmul, a, b, poisoned((64, 64), "bf16"))
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    check_dot("matmul_example", dev, sim, a64 @ b64, np.abs(a64) @ np.abs(b64), run, wall)


# ---- errors from the device ---------------------------------------------------------------------------


def test_cpp_compile_failure_names_the_generated_file(tmp_path, rng):
    """Generated C++ that does not compile (here: made so on purpose) ends in tilegrid's message naming
    the kernel and the generated file, not in a compiler dump."""
    import dataclasses

    from tilegrid.targets.ttmetal.device import shared_session
    from tilegrid.targets.ttmetal.target import COST_MODEL, run_program

    a, b = rand(rng, (32, 64), "bf16"), rand(rng, (32, 64), "bf16")
    program = compile_kernel(KERNELS["add"], a, b, poisoned((32, 64), "bf16"), backend="tt-metal")
    broken = [dataclasses.replace(k, source=k.source.replace("add_tiles(", "tilegrid_no_such_call("))
              if k.kind == "compute" else k for k in program.kernels]
    program = dataclasses.replace(program, kernels=broken)
    with pytest.raises(CompileError) as info:
        run_program(program, [a, b, poisoned((32, 64), "bf16")], shared_session(sim_env=COST_MODEL), root=tmp_path)
    text = info.value.render()
    comp = broken[0]
    path = tmp_path / "generated" / f"{program.name}-{program.digest}" / f"{comp.name}.cpp"
    assert str(path) in text and "tilegrid_no_such_call" in text and path.read_text() == comp.source
    assert re.search(rf"{comp.name}\.cpp:\d+:\d+: error", text)


@pykernel_gen(grid=(1, 1), block_factors=[(8, 8, 2), (8, 8, 2), (4, 4, 2), (8, 8, 1)])
def large_blocks(a, b, c, out):
    @compute()
    async def comp(a_cb, b_cb, c_cb, out_cb):
        c_cb.pop()
        out_cb.reserve().store(a_cb.pop() + b_cb.pop())

    return Program(comp)(a, b, c, out)


def test_l1_overflow_as_tt_metal_reports_it(rng):
    """1.38 MiB of CBs fit tilegrid's L1 budget (1432 KiB) but not what tt-metal leaves for CBs: our error."""
    a, b, c = rand(rng, (256, 256)), rand(rng, (256, 256)), rand(rng, (128, 128))
    with pytest.raises(CompileError) as info:
        large_blocks(a, b, c, poisoned((256, 256)), backend="tt-metal")
    text = info.value.render()
    assert "1441792 bytes per core" in text and "beyond its 1499136 bytes" in text
