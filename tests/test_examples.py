"""examples/: every kernel against a float64 NumPy reference of its own math, on fresh random
inputs, at several shapes, on 1x1 and larger grids; the roadmap's fragments as written give a
clear tilegrid error naming what is missing; every example's `__main__` runs.

The references here are written independently of the examples' own `reference` functions.
Attention-like kernels whose roadmap math has no 1/sqrt(d) scale get Q and K drawn with
scale d**-0.25 (the usual scale folded into the inputs): with unit inputs |Q K^T| reaches ~20
and bf16 scores alone then cost about 1e-2 of relative error.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import NP, assert_close, poisoned, rand, shards

from tilegrid import (
    CompileError,
    Program,
    Stream,
    TilegridError,
    compute,
    exp,
    fill,
    pykernel_gen,
    rowmax,
    rowsum,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DTYPES = ["f32", "bf16"]
_modules: dict[str, object] = {}


def example(name: str):
    """Import examples/<name>.py (examples/ is not a package)."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"tilegrid_example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def per_block(fn, grid, *arrays):
    """Apply `fn` to each core's shard (the last two dims split over the grid), reassembled."""
    out = np.empty(arrays[0].shape)
    gens = [shards(a, grid) for a in arrays]
    for parts in zip(*gens):
        r, c, _ = parts[0]
        R, C = parts[0][2].shape[-2:]
        out[..., r * R:(r + 1) * R, c * C:(c + 1) * C] = fn(*[p[2] for p in parts])
    return out


def softmax_rows(s):
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


# ---- every example's __main__ -------------------------------------------------------------

MAINS = sorted(p.stem for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize(
    "name",
    MAINS,
)
def test_main_runs_and_is_accurate(name, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the roadmap's short block_factors lists
        runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    text = capsys.readouterr().out
    # each line names its data format; DESIGN.md's pass criterion: 1e-5 for fp32 data, 1e-2 for bf16
    errs = re.findall(r"\((fp32|bf16)[^\n]*relative error vs float64 = ([0-9.e+-]+)", text)
    assert errs and len(errs) == text.count("relative error"), text
    assert all(float(e) < {"fp32": 1e-5, "bf16": 1e-2}[fmt] for fmt, e in errs), text


# ---- newcomer examples ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (1, 2)])
def test_elementwise(rng, grid, dtype):
    shape = (32 * grid[0], 32 * grid[1])
    a, b = rand(rng, shape, dtype), rand(rng, shape, dtype)
    out = poisoned(shape, dtype)
    example("elementwise").elementwise(a, b, out, grid=grid)

    def ref(x, y):
        return np.exp(x / 2) + 1 / (1 + y * y) - x * x.mean(axis=1, keepdims=True) + y.max(axis=0, keepdims=True)

    assert_close(out, per_block(ref, grid, *f64(a, b)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,grid", [(32, (1, 1)), (64, (2, 1)), (128, (4, 1))])
@pytest.mark.parametrize("which", ["layer_norm", "max_abs_scale"])
def test_row_reductions(rng, which, rows, grid, dtype):
    x = rand(rng, (rows, 64), dtype)
    out = poisoned((rows, 64), dtype)
    getattr(example("row_reductions"), which)(x, out, grid=grid)
    (x64,) = f64(x)
    if which == "layer_norm":
        c = x64 - x64.mean(axis=1, keepdims=True)
        ref = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + 1e-5)
    else:
        ref = x64 / np.abs(x64).max(axis=1, keepdims=True)
    assert_close(out, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,grid,bf",
    [((32, 32), (1, 1), [(1, 1), (1, 1)]),
     ((64, 64), (2, 2), [(1, 1), (1, 1)]),
     ((32, 64), (1, 2), [(1, 1), (1, 1)]),
     ((128, 128), (2, 2), [(2, 2), (2, 2)]),
     ((64, 128), (2, 2), [(1, 2), (2, 1)])],
)
def test_transpose(rng, shape, grid, bf, dtype):
    x = rand(rng, shape, dtype)
    out = poisoned(shape[::-1], dtype)
    example("transpose").transpose(x, out, grid=grid, block_factors=bf)
    assert_close(out, x.astype(np.float64).T, dtype, tol=1e-12)  # a transpose is exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("k_blocks", [1, 3])
def test_matmul(rng, grid, k_blocks, dtype):
    A = rand(rng, (32 * grid[0], 32 * k_blocks), dtype)
    B = rand(rng, (32 * k_blocks, 32 * grid[1]), dtype)
    C = poisoned((32 * grid[0], 32 * grid[1]), dtype)
    example("matmul").matmul(A, B, C, grid=grid)
    a, b = f64(A, B)
    assert_close(C, a @ b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,grid,bf",
    [((1, 32, 64), (1, 1), [(1, 2), (1, 2)]),
     ((3, 64, 64), (2, 1), [(1, 2), (1, 2)]),
     ((2, 64, 128), (2, 1), [(1, 4), (1, 4)]),
     ((2, 32, 32), (1, 1), [(1, 1), (1, 1)])],
)
def test_softmax(rng, shape, grid, bf, dtype):
    x = rand(rng, shape, dtype, scale=4.0)
    out = poisoned(shape, dtype)
    example("softmax").softmax(x, out, grid=grid, block_factors=bf)
    assert_close(out, softmax_rows(x.astype(np.float64)), dtype)


# ---- What We Have Now: the single-tile demonstrator ------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (2, 1)])
def test_single_tile_demonstrator(rng, grid, dtype):
    shape = (32 * grid[0], 32 * grid[1])
    Q, K = rand(rng, shape, dtype, scale=32**-0.25), rand(rng, shape, dtype, scale=32**-0.25)
    out = poisoned(shape, dtype)
    example("roadmap_single_tile_demonstrator").single_tile_fa(Q, K, out, grid=grid)

    def ref(q, k):
        p = np.exp(q @ k.T)
        return p / p.sum(axis=1, keepdims=True)

    assert_close(out, per_block(ref, grid, *f64(Q, K)), dtype)


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def demonstrator_fragment(Q, K, V, out):
    @compute()
    async def comp(Q_cb, K_cb, V_cb, out_cb):
        # Processes ONE tile at a time
        K_T = K_block.transpose()  # noqa: F821 - 1 tile (32x32)
        S = Q_block @ K_T  # noqa: F821 - 1 Q tile @ 1 K tile
        P = S.exp()  # noqa: F841 - 1 tile
        result = P_norm.recip()  # noqa: F821, F841 - 1 tile

    return Program(comp)(Q, K, V, out)


def test_single_tile_demonstrator_fragment_names_what_is_missing(rng):
    x = [rand(rng, (64, 64)) for _ in range(3)]
    with pytest.raises(CompileError, match="name 'K_block' is not defined"):
        demonstrator_fragment(*x, poisoned((64, 64)))


# ---- Gap 1: flash_attention_loop -----------------------------------------------------------


def gap1_reference(Q, K, V):
    """The roadmap's Gap 1 math: running max, no correction factor, no final 1/l."""
    q, k, v = f64(Q, K, V)
    out = np.zeros(q.shape)
    m = np.full(q.shape[:-1] + (1,), -np.inf)
    for j in range(k.shape[-2] // 32):
        kj, vj = k[..., 32 * j:32 * (j + 1), :], v[..., 32 * j:32 * (j + 1), :]
        s = q @ np.swapaxes(kj, -1, -2)
        m = np.maximum(m, s.max(axis=-1, keepdims=True))
        out = out + np.exp(s - m) @ vj
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (2, 1), (1, 2)])
@pytest.mark.parametrize("kv_blocks", [1, 4])
def test_gap1_flash_attention_loop(rng, grid, kv_blocks, dtype):
    heads, seq_q = grid[1], 32 * grid[0]
    Q = rand(rng, (heads, seq_q, 32), dtype, scale=32**-0.25)
    K = rand(rng, (heads, 32 * kv_blocks, 32), dtype, scale=32**-0.25)
    V = rand(rng, (heads, 32 * kv_blocks, 32), dtype)
    out = poisoned(Q.shape, dtype)
    example("roadmap_gap1_flash_attention_loop").flash_attention_gap1(Q, K, V, out, grid=grid)
    assert_close(out, gap1_reference(Q, K, V), dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def gap1_fragment(Q, K, V, out):
    @compute()
    async def flash_attention_loop(Q_cb, K_cb, V_cb, out_cb):
        NUM_KV_BLOCKS = 4  # Example

        # Initialize running statistics
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - NOT IMPLEMENTED
        l_old = fill(0, shape=(32, 1))  # NOT IMPLEMENTED
        O_acc = fill(0, shape=(32, 32))  # NOT IMPLEMENTED

        for kv_idx in range(NUM_KV_BLOCKS):  # noqa: B007 - Python for loop
            K_block = K_cb.pop()  # Load next K chunk
            V_block = V_cb.pop()  # Load next V chunk

            # Compute scores
            S = Q_block @ K_block.transpose()  # noqa: F821

            # Update statistics
            m_new = rowmax(S, m_old)  # NOT IMPLEMENTED
            P = (S - m_new).exp()
            l_new = rowsum(P, l_old)  # NOT IMPLEMENTED

            # Apply attention
            O_acc = O_acc + P @ V_block  # Second matmul!

            m_old = m_new
            l_old = l_new

    return Program(flash_attention_loop)(Q, K, V, out)


def test_gap1_fragment_names_what_is_missing(rng):
    Q = rand(rng, (32, 32))
    K, V = rand(rng, (128, 32)), rand(rng, (128, 32))
    with pytest.raises(CompileError, match="name 'Q_block' is not defined"):
        gap1_fragment(Q, K, V, poisoned((32, 32)))


# ---- Gap 3: fill ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2)])
def test_gap3_fill(rng, grid, dtype):
    shape = (32 * grid[0], 32 * grid[1])
    x = rand(rng, shape, dtype, scale=3.0)
    out = poisoned(shape, dtype)
    example("roadmap_gap3_fill").fill_init(x, out, grid=grid)
    assert_close(out, per_block(softmax_rows, grid, *f64(x)), dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def gap3_fill_lines(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821, F841
        l_old = fill(0, shape=(32, 1))  # noqa: F841
        O_acc = fill(0, shape=(32, 32))
        o = out_cb.reserve()
        o.store(O_acc)

    return Program(comp)(x, out)


def test_gap3_fill_lines_as_written_compile(rng):
    """The three lines verbatim, two of their blocks unused, in a thread that stores the third."""
    out = poisoned((32, 32))
    gap3_fill_lines(rand(rng, (32, 32)), out)
    assert (out == 0).all()


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def gap3_option_a_d2m_constant(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        # Check if d2m has constant op
        constant = d2m.constant(value=-float('inf'), shape=(32, 1))  # noqa: F821, F841

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def option_b_constant(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        m_old = constant(-float('inf'), shape=(32, 1))  # noqa: F821, F841

    return Program(comp)(x, out)


@pytest.mark.parametrize("kernel,missing", [(gap3_option_a_d2m_constant, "d2m"), (option_b_constant, "constant")])
def test_constant_fragments_name_what_is_missing(rng, kernel, missing):
    """Gap 3 approach A and Option B spell the fill as `d2m.constant` / `constant`: not tilegrid names."""
    with pytest.raises(CompileError, match=f"name '{missing}' is not defined"):
        kernel(rand(rng, (32, 32)), poisoned((32, 32)))


# ---- Gap 4 / Step 3: loop-carried state -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2)])
@pytest.mark.parametrize("n", [1, 3])
def test_gap4_loop_carried_state(rng, grid, n, dtype):
    shape = (n, 32 * grid[0], 32 * grid[1])
    x = rand(rng, shape, dtype)
    acc_out, max_out = poisoned(shape[1:], dtype), poisoned(shape[1:], dtype)
    example("roadmap_gap4_loop_carried_state").loop_carried_state(x, acc_out, max_out, grid=grid)
    (x64,) = f64(x)
    assert_close(acc_out, np.exp(x64).sum(axis=0), dtype)

    def running_max(blk):  # blk: [n, 32, 32] -> every row's max over all n blocks, broadcast
        return np.broadcast_to(blk.max(axis=(0, 2))[:, None], blk.shape[1:])

    ref_max = np.empty(shape[1:])
    for r, c, blk in shards(x64, grid):
        ref_max[32 * r:32 * (r + 1), 32 * c:32 * (c + 1)] = running_max(blk)
    assert_close(max_out, ref_max, dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def step3_fragment(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        N = 4
        # Verify this pattern works:
        acc = initial  # noqa: F821
        for i in range(N):
            acc = acc + compute(i)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def gap4_fragment(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        NUM_KV_BLOCKS = 4
        for kv_idx in range(NUM_KV_BLOCKS):  # noqa: B007
            m_new = rowmax(S, m_old)  # noqa: F821 - Reads m_old from previous iteration
            m_old = m_new  # noqa: F841 - Updates for next iteration

    return Program(comp)(x, out)


@pytest.mark.parametrize("kernel,missing", [(step3_fragment, "initial"), (gap4_fragment, "S")])
def test_gap4_fragments_name_what_is_missing(rng, kernel, missing):
    with pytest.raises(CompileError, match=f"name '{missing}' is not defined"):
        kernel(rand(rng, (128, 32)), poisoned((32, 32)))


# ---- Step 4: correction factor ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (1, 2)])
def test_step4_correction_factor(rng, grid, dtype):
    shape = (32 * grid[0], 32 * grid[1])
    x1 = rand(rng, shape, dtype)
    x2 = (rand(rng, shape, "f32") + 1.0).astype(NP[dtype])
    out = poisoned(shape, dtype)
    example("roadmap_step4_correction_factor").correction_factor(x1, x2, out, grid=grid)

    def ref(a, b):
        return np.exp(a - np.maximum(a.max(axis=1), b.max(axis=1))[:, None])

    assert_close(out, per_block(ref, grid, *f64(x1, x2)), dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def step4_fragment(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        # Element-wise multiply with broadcast:
        correction = exp(m_old - m_new)  # noqa: F821 - Element-wise
        O_acc = correction * O_acc  # noqa: F821, F841 - Element-wise with accumulator

    return Program(comp)(x, out)


def test_step4_fragment_names_what_is_missing(rng):
    with pytest.raises(CompileError, match="name 'm_old' is not defined"):
        step4_fragment(rand(rng, (32, 32)), poisoned((32, 32)))


# ---- Gap 5: fa_multi_tile ----------------------------------------------------------------------


def attention_rows(q, k, v, scale=1.0):
    return softmax_rows(q @ k.T * scale) @ v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(2, 2), (1, 1), (1, 2)])
def test_gap5_fa_multi_tile(rng, grid, dtype):
    shape = (64 * grid[0], 64 * grid[1])
    Q, K = rand(rng, shape, dtype, scale=64**-0.25), rand(rng, shape, dtype, scale=64**-0.25)
    V = rand(rng, shape, dtype)
    out = poisoned(shape, dtype)
    with pytest.warns(UserWarning, match="block_factors has 3 entries for 4 tensor arguments"):
        example("roadmap_gap5_fa_multi_tile").fa_multi_tile(Q, K, V, out, grid=grid)
    assert_close(out, per_block(attention_rows, grid, *f64(Q, K, V)), dtype)


@pykernel_gen(
    grid=(2, 2),
    block_factors=[(2, 2), (2, 2), (2, 2)],  # 2x2 tiles per core
)
def fa_multi_tile_as_written(Q, K, V, out):
    @compute()
    async def comp(Q_cb, K_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()  # Now contains 2x2 tiles!

        # Operations automatically iterate over tiles
        K_T = K_block.transpose()  # noqa: F821 - Processes all 4 tiles
        S = Q_block @ K_T  # noqa: F841 - 2x2 @ 2x2 matmul


@pykernel_gen(grid=(2, 2), block_factors=[(2, 2), (2, 2), (2, 2)])
def fa_multi_tile_with_program(Q, K, V, out):
    @compute()
    async def comp(Q_cb, K_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()  # Now contains 2x2 tiles!

        # Operations automatically iterate over tiles
        K_T = K_block.transpose()  # noqa: F821 - Processes all 4 tiles
        S = Q_block @ K_T  # noqa: F841 - 2x2 @ 2x2 matmul

    return Program(comp)(Q, K, V, out)


@pytest.mark.parametrize(
    "kernel,message",
    [(fa_multi_tile_as_written, "kernel 'fa_multi_tile_as_written' built no Program"),
     (fa_multi_tile_with_program, "name 'K_block' is not defined")],
)
def test_gap5_fragment_names_what_is_missing(rng, kernel, message):
    x = [rand(rng, (128, 128)) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(TilegridError, match=message):
            kernel(*x, poisoned((128, 128)))


# ---- Gap 6: fa_large_grid ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(8, 10), (1, 1), (2, 2)])
def test_gap6_fa_large_grid(rng, grid, dtype):
    shape = (32 * grid[0], 32 * grid[1])
    Q, K, V = (rand(rng, shape, dtype) for _ in range(3))
    out = poisoned(shape, dtype)
    with pytest.warns(UserWarning, match="block_factors has 3 entries for 4 tensor arguments"):
        example("roadmap_gap6_fa_large_grid").fa_large_grid(Q, K, V, out, grid=grid)

    def ref(q, k, v):
        return attention_rows(q, k, v, 1 / np.sqrt(32))

    assert_close(out, per_block(ref, grid, *f64(Q, K, V)), dtype)


@pykernel_gen(grid=(8, 10), block_factors=[(1, 1), (1, 1), (1, 1)])
def fa_large_grid_as_written(Q, K, V, out):
    # Should work! Just more cores processing shards in parallel
    ...  # (the roadmap's body is only the comment, which Python cannot parse; `...` stands for it)


def test_gap6_fragment_says_no_program(rng):
    x = [rand(rng, (256, 320)) for _ in range(3)]
    with pytest.raises(TilegridError, match="built no Program"):
        fa_large_grid_as_written(*x, poisoned((256, 320)))


# ---- Loop-Based FA Kernel, literally -------------------------------------------------------


def looped_roadmap_reference(Q, K_all, V_all):
    """The roadmap's flash_attention_looped math: mock init, per-block max, no final 1/l."""
    q, k, v = f64(Q[:32, :32], K_all[:, :32, :32], V_all[:, :32, :32])  # block idx = 0 on 1x1
    m_old, O_acc = q.max(axis=1, keepdims=True), q @ q.T
    for kv in range(4):
        s = q @ k[kv].T
        m_new = s.max(axis=1, keepdims=True)
        O_acc = np.exp(m_old - m_new) * O_acc + np.exp(s - m_new) @ v[kv]
        m_old = m_new
    return O_acc


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seq", [32, 64])
def test_roadmap_flash_attention_looped(rng, seq, dtype):
    # No 1/sqrt(d), no normalisation, exp of unbounded differences: keep |S| moderate (in bf16
    # every intermediate of this snippet is bf16).
    scale = 0.35 if dtype == "bf16" else 0.6
    Q = rand(rng, (seq, 32), dtype, scale=scale)
    K_all = rand(rng, (4, seq, 32), dtype, scale=scale)
    V_all = rand(rng, (4, seq, 32), dtype)
    out = poisoned((32, 32), dtype)  # one 32x32 block: the kernel computes block idx = 0 only
    example("roadmap_flash_attention_looped").flash_attention_looped(Q, K_all, V_all, out)
    assert_close(out, looped_roadmap_reference(Q, K_all, V_all), dtype)


def test_house_flash_attention_looped(rng):
    """examples/flash_attention_looped.py (the corrected algorithm), for completeness."""
    Q = rand(rng, (32, 32), "bf16")
    K, V = rand(rng, (4, 32, 32), "bf16"), rand(rng, (4, 32, 32), "bf16")
    out = poisoned((32, 32), "bf16")
    example("flash_attention_looped").flash_attention_looped(Q, K, V, out)
    q, k, v = f64(Q, K.reshape(128, 32), V.reshape(128, 32))
    assert_close(out, attention_rows(q, k, v, 1 / np.sqrt(32)), "bf16")


# ---- Quick Win: looped FA v1 without P @ V -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (1, 2)])
def test_quick_win(rng, grid, dtype):
    Q = rand(rng, (32 * grid[0], 32 * grid[1]), dtype, scale=32**-0.25)
    K = rand(rng, (128 * grid[0], 32 * grid[1]), dtype, scale=32**-0.25)
    out = poisoned(Q.shape, dtype)
    example("roadmap_quick_win").looped_fa_v1(Q, K, out, grid=grid)

    def lse(q, k):
        s = q @ k.T
        m = s.max(axis=1, keepdims=True)
        return np.broadcast_to(m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)), q.shape)

    assert_close(out, per_block(lse, grid, *f64(Q, K)), dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])
def quick_win_fragment(Q, K, out):
    @compute()
    async def comp(Q_cb, K_cb, out_cb):
        # This should compile:
        for kv_idx in range(4):  # noqa: B007
            K = K_cb.pop()
            S = Q @ K.transpose()
            m_new = S.rowmax()
            P = (S - m_new).exp()
            l_new = P.rowsum()  # noqa: F841
            # Update stats...
            # (Skip P @ V for now)

    return Program(comp)(Q, K, out)


def test_quick_win_fragment_names_what_is_missing(rng):
    # `Q` is never popped: the thread sees the kernel's DRAM tensor Q, which it cannot use.
    with pytest.raises(CompileError, match="'Q'") as info:
        quick_win_fragment(rand(rng, (32, 32)), rand(rng, (128, 32)), poisoned((32, 32)))
    assert "internal compiler error" not in str(info.value)


# ---- Option A: fa_with_init ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kv_blocks", [1, 4])
def test_fa_with_init(rng, kv_blocks, dtype):
    mod = example("roadmap_fa_with_init")
    Q = rand(rng, (32, 32), dtype)
    K, V = rand(rng, (32 * kv_blocks, 32), dtype), rand(rng, (32 * kv_blocks, 32), dtype)
    out = poisoned((32, 32), dtype)
    mod.fa_with_init(Q, K, V, *mod.host_init(NP[dtype]), out)
    assert_close(out, attention_rows(*f64(Q, K, V), 1 / np.sqrt(32)), dtype)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])
def running_sum_from_popped_init(x, init, out):
    @compute()
    async def comp(x_cb, init_cb, out_cb):
        acc = init_cb.pop()  # fa_with_init's pattern: the initial state is a popped block
        for _ in range(2):
            acc = acc + x_cb.pop()
            o = out_cb.reserve()
            o.store(acc)

    return Program(comp)(x, init, out)


def test_popped_block_as_loop_carried_init(rng):
    x, init = rand(rng, (64, 32)), rand(rng, (32, 32))
    out = poisoned((64, 32))
    running_sum_from_popped_init(x, init, out)
    x64, i64 = f64(x, init)
    assert_close(out, np.concatenate([i64 + x64[:32], i64 + x64[:32] + x64[32:]]), "f32")


def test_fa_with_init_takes_the_roadmaps_host_columns_as_written(rng):
    """The roadmap's (32, 1) host columns for the running max and sum are column-vector arguments:
    their blocks are [32, 1], as the statistics the kernel computes, and the result is exact."""
    mod = example("roadmap_fa_with_init")
    Q, K, V = rand(rng, (32, 32)), rand(rng, (64, 32)), rand(rng, (64, 32))
    m_init, l_init = np.full((32, 1), -np.inf, np.float32), np.zeros((32, 1), np.float32)
    out = poisoned((32, 32))
    mod.fa_with_init(Q, K, V, m_init, l_init, np.zeros((32, 32), np.float32), out)
    assert_close(out, mod.reference(Q, K, V), "f32")


@pykernel_gen(
    block_factors=[(1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)],
    grid=(1, 1),
)
def fa_with_init_as_written(Q, K, V, m_init, l_init, O_init, out):
    m_init_stream = Stream(m_init)  # noqa: F841
    # ...

    @compute()
    async def comp(Q_cb, K_cb, V_cb, m_cb, l_cb, O_cb, out_cb):
        m_old = m_cb.pop()  # noqa: F841 - Load -inf initialization
        l_old = l_cb.pop()  # noqa: F841 - Load 0 initialization
        O_acc = O_cb.pop()  # noqa: F841 - Load 0 initialization
        # ... rest of algorithm


def test_fa_with_init_fragment_says_no_program(rng):
    x = [rand(rng, (32, 32)) for _ in range(6)]
    with pytest.raises(TilegridError, match="built no Program"):
        fa_with_init_as_written(*x, poisoned((32, 32)))


# ---- the short block_factors warning -----------------------------------------------------------


def test_short_block_factors_warning_points_at_the_caller(rng):
    Q, K, V = (rand(rng, (64, 64)) for _ in range(3))
    with pytest.warns(UserWarning) as record:
        example("roadmap_gap5_fa_multi_tile").fa_multi_tile(Q, K, V, poisoned((64, 64)), grid=(1, 1))
    # The user's code that the warning is about: the kernel's Program call, not tilegrid's internals.
    assert record[0].filename == example("roadmap_gap5_fa_multi_tile").__file__
