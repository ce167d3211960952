"""Row [1, N] and column [M, 1] vectors as kernel arguments: a LayerNorm's gamma / beta, a bias, a
per-row scale. Blocks of them are [1, N] / [M, 1] blocks (padded to tiles in L1 and DRAM traffic) that
broadcast like the ones kernels compute; implicit data movement gives every grid row (column) the
vector's shard of its columns (rows)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import (
    Program,
    Stream,
    TilegridError,
    compute,
    core_index,
    datamovement,
    dma,
    fill,
    perf,
    pykernel_gen,
)

N = 128
EPS = 1e-5


@pykernel_gen(grid=(2, 1), block_factors=[(1, 4), (1, 4), (1, 4), (1, 4)])
def layernorm(x, gamma, beta, out):
    @compute()
    async def comp(x_cb, g_cb, b_cb, out_cb):
        x = x_cb.pop()
        mean = x.rowsum() * (1.0 / N)
        d = x - mean
        var = (d * d).rowsum() * (1.0 / N)
        out_cb.reserve().store(d * (var + EPS).rsqrt() * g_cb.pop() + b_cb.pop())

    return Program(comp)(x, gamma, beta, out)


def layernorm_ref(x, g, b):
    x, g, b = (np.asarray(a, np.float64) for a in (x, g, b))
    m = x.mean(1, keepdims=True)
    return (x - m) / np.sqrt(x.var(1, keepdims=True) + EPS) * g + b


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_layernorm_with_row_vector_gamma_and_beta(dtype, rng):
    x, g, b = rand(rng, (64, N), dtype), rand(rng, (1, N), dtype), rand(rng, (1, N), dtype)
    out = poisoned((64, N), dtype)
    layernorm(x, g, b, out)
    assert_close(out, layernorm_ref(x, g, b), dtype)


KT = 2  # K steps of the matmul


@pykernel_gen(grid=(2, 2), block_factors=[(1, 2), (2, 1), (1, 1), (1, 1)])
def linear_bias_gelu(a, w, bias, out):
    a_s, w_s, bias_s = Stream(a), Stream(w), Stream(bias)

    @compute()
    async def comp(a_cb, w_cb, b_cb, out_cb):
        acc = fill(0.0, shape=(32, 32))
        for k in range(KT):
            acc = acc + a_cb.pop() @ w_cb.pop()
        out_cb.reserve().store((acc + b_cb.pop()).gelu())

    @datamovement()
    async def reader(a_cb, w_cb, b_cb, out_cb):
        r = core_index(0)
        c = core_index(1)
        for k in range(KT):
            dma(a_s[r, k], a_cb.reserve()).wait()
            dma(w_s[k, c], w_cb.reserve()).wait()
        dma(bias_s[0, c], b_cb.reserve()).wait()

    return Program(comp, reader)(a, w, bias, out)


def gelu_ref(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_matmul_bias_gelu_with_row_vector_bias(dtype, rng):
    a, w, bias = rand(rng, (64, 64 * KT), dtype), rand(rng, (64 * KT, 64), dtype), rand(rng, (1, 64), dtype)
    out = poisoned((64, 64), dtype)
    linear_bias_gelu(a, w, bias, out)
    a64, w64, b64 = (np.asarray(t, np.float64) for t in (a, w, bias))
    assert_close(out, gelu_ref(a64 @ w64 + b64), dtype)


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def shift_and_scale(x, bias, scale, out):
    @compute()
    async def comp(x_cb, b_cb, s_cb, out_cb):
        out_cb.reserve().store((x_cb.pop() + b_cb.pop()) * s_cb.pop())

    return Program(comp)(x, bias, scale, out)


def test_implicit_movement_gives_every_core_its_share_of_a_vector(rng):
    """x [64, 64] on 2x2 cores: each core adds its column shard of bias [1, 64] (read by both grid
    rows) and multiplies by its row shard of scale [64, 1] (read by both grid columns)."""
    x, bias, scale = rand(rng, (64, 64)), rand(rng, (1, 64)), rand(rng, (64, 1))
    out = poisoned((64, 64))
    shift_and_scale(x, bias, scale, out)
    x64, b64, s64 = (t.astype(np.float64) for t in (x, bias, scale))
    assert_close(out, (x64 + b64) * s64, "f32")


def test_vector_blocks_move_as_whole_tiles_under_the_performance_model(rng):
    x, g, b = rand(rng, (64, N)), rand(rng, (1, N)), rand(rng, (1, N))
    out = poisoned((64, N))
    with perf.session("HiFi4") as s:
        layernorm(x, g, b, out)
    assert_close(out, layernorm_ref(x, g, b), "f32")
    tile = 32 * 32 * 4
    # x in and out once; gamma and beta once per core (2 cores), each a row of 4 tiles padded
    assert s.last.dram_bytes == 2 * x.size * 4 + 2 * 2 * 4 * tile


def test_vector_block_factor_must_be_one_along_the_vector(rng):
    @pykernel_gen(grid=(1, 1), block_factors=[(2, 4), (2, 4), (2, 4), (2, 4)])
    def bad(x, gamma, beta, out):
        @compute()
        async def comp(x_cb, g_cb, b_cb, out_cb):
            out_cb.reserve().store(x_cb.pop() * g_cb.pop() + b_cb.pop())

        return Program(comp)(x, gamma, beta, out)

    with pytest.raises(TilegridError, match="a vector's blocks are one row") as e:
        bad(rand(rng, (64, N)), rand(rng, (1, N)), rand(rng, (1, N)), poisoned((64, N)))
    assert "kernel 'bad'" in e.value.render() and "(1, 4)" in e.value.note


def test_a_one_by_one_argument_is_refused(rng):
    with pytest.raises(TilegridError, match="row \\[1, N\\] or column \\[M, 1\\] vector"):
        shift_and_scale(rand(rng, (64, 64)), rand(rng, (1, 1)), rand(rng, (64, 1)), poisoned((64, 64)))


HAVE = all(__import__("importlib").util.find_spec(m) for m in ("torch", "triton"))


@pytest.mark.skipif(not HAVE, reason="needs torch and triton (the gpu extra)")
def test_gpu_backend_runs_vector_arguments_in_the_triton_interpreter():
    code = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import numpy as np
from test_vector_args import layernorm, layernorm_ref
rng = np.random.default_rng(0)
x, g, b = (rng.standard_normal(s).astype(np.float32) for s in ((64, 128), (1, 128), (1, 128)))
out = np.full((64, 128), np.nan, np.float32)
layernorm(x, g, b, out, backend="gpu")
ref = layernorm_ref(x, g, b)
err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
assert err < 1e-5, err
"""
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)

