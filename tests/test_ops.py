"""Every block op against float64 NumPy: 1x1 and 2x2 grids, single- and multi-tile blocks, fp32 and bf16.

One kernel, the op chosen by a compile-time constant (a static `if`), each core working on
its own shard through implicit data movement.
"""

import numpy as np
import pytest
from helpers import NP, assert_close, poisoned, rand, shards

from tilegrid import Program, col_index, compute, fill, maximum, minimum, pykernel_gen, row_index, rowmax, rowsum, where

UNARY = {
    "exp": np.exp,
    "recip": lambda x: 1 / x,
    "sqrt": np.sqrt,
    "neg": np.negative,
    "abs": np.abs,
    "relu": lambda x: np.maximum(x, 0),
    "scalar": lambda x: (x * 0.5 + 3.0) / 2.0 - 1.0,
    "rscalar": lambda x: 2.0 - x,
    "rowmax_bcast": lambda x: x - x.max(-1, keepdims=True),
    "rowsum_bcast": lambda x: x * (1 / x.sum(-1, keepdims=True)),
    "colmax_bcast": lambda x: x - x.max(-2, keepdims=True),
    "colsum_bcast": lambda x: x + x.sum(-2, keepdims=True),
    "transpose": lambda x: x.T,
    "fill_acc": lambda x: np.maximum(x.max(-1, keepdims=True), -0.25) + x,
    "causal": lambda x: np.where(np.arange(x.shape[0])[:, None] >= np.arange(x.shape[1])[None, :], x, -1e4),
}
BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": lambda a, b: a / b,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "matmul": np.matmul,
    "softmax_qk": lambda a, b: _softmax(a @ b.T / np.sqrt(a.shape[-1])),
}


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def make_unary(op, grid, bf):
    @pykernel_gen(grid=grid, block_factors=[bf, bf])
    def unary(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            a = x_cb.pop()
            if op == "exp":
                r = a.exp()
            elif op == "recip":
                r = a.recip()
            elif op == "sqrt":
                r = a.sqrt()
            elif op == "neg":
                r = -a
            elif op == "abs":
                r = abs(a)
            elif op == "relu":
                r = a.relu()
            elif op == "scalar":
                r = (a * 0.5 + 3.0) / 2.0 - 1
            elif op == "rscalar":
                r = 2.0 - a
            elif op == "rowmax_bcast":
                r = a - a.rowmax(dim=-1)
            elif op == "rowsum_bcast":
                r = a * a.rowsum(dim=-1).recip()
            elif op == "colmax_bcast":
                r = a - a.colmax()
            elif op == "colsum_bcast":
                r = a + a.colsum()
            elif op == "transpose":
                r = a.transpose()
            elif op == "fill_acc":
                r = rowmax(a, fill(-0.25, shape=(32 * bf[0], 1))) + a
            else:  # causal mask from row / column index blocks
                shape = (32 * bf[0], 32 * bf[1])
                r = where(row_index(shape) >= col_index(shape), a, -1e4)
            o = out_cb.reserve()
            o.store(r)

        return Program(comp)(x, out)

    return unary


def make_binary(op, grid, bf):
    @pykernel_gen(grid=grid, block_factors=[bf, bf, bf])
    def binary(x, y, out):
        @compute()
        async def comp(x_cb, y_cb, out_cb):
            a = x_cb.pop()
            b = y_cb.pop()
            if op == "add":
                r = a + b
            elif op == "sub":
                r = a - b
            elif op == "mul":
                r = a * b
            elif op == "div":
                r = a / b
            elif op == "maximum":
                r = maximum(a, b)
            elif op == "minimum":
                r = minimum(a, b)
            elif op == "matmul":
                r = a @ b
            else:
                s = (a @ b.transpose()) * (1.0 / (32 * bf[1]) ** 0.5)
                p = (s - rowmax(s)).exp()
                r = p * rowsum(p).recip()
            with out_cb.reserve() as o:
                o.store(r)

        return Program(comp)(x, y, out)

    return binary


CASES = [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 1), (2, 2)), ((2, 2), (2, 2)), ((1, 2), (2, 4)),
         ((1, 1), (4, 4)), ((1, 1), (8, 4)), ((1, 1), (8, 8))]


def per_shard(fn, grid, *arrays):
    out = np.empty(arrays[0].shape)
    views = [list(shards(a.astype(np.float64), grid)) for a in arrays]
    for parts in zip(*views):
        r, c = parts[0][0], parts[0][1]
        R, C = parts[0][2].shape
        out[r * R:(r + 1) * R, c * C:(c + 1) * C] = fn(*(p[2] for p in parts))
    return out


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("grid,bf", CASES)
@pytest.mark.parametrize("op", list(UNARY))
def test_unary(op, grid, bf, dtype, rng):
    if op == "transpose" and bf[0] != bf[1]:
        pytest.skip("transpose of a non-square block changes the shard shape")
    shape = (32 * bf[0] * grid[0], 32 * bf[1] * grid[1])
    x = rand(rng, shape, dtype)
    if op in ("sqrt", "recip", "rowsum_bcast"):
        x = (np.abs(x.astype(np.float32)) + 0.5).astype(NP[dtype])
    out = poisoned(shape, dtype)
    make_unary(op, grid, bf)(x, out)
    assert_close(out, per_shard(UNARY[op], grid, x), dtype)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("grid,bf", [c for c in CASES if c[1][0] == c[1][1] or c[1] == (8, 4)])
@pytest.mark.parametrize("op", list(BINARY))
def test_binary(op, grid, bf, dtype, rng):
    if op in ("matmul", "softmax_qk") and bf[0] != bf[1]:
        pytest.skip("x @ y and x @ y^T per shard need square blocks here")
    shape = (32 * bf[0] * grid[0], 32 * bf[1] * grid[1])
    x, y = rand(rng, shape, dtype), rand(rng, shape, dtype)
    if op == "div":
        y = (np.abs(y.astype(np.float32)) + 0.5).astype(NP[dtype])
    out = poisoned(shape, dtype)
    make_binary(op, grid, bf)(x, y, out)
    assert_close(out, per_shard(BINARY[op], grid, x, y), dtype)
