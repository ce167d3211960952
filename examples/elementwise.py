"""Newcomer example: elementwise math on blocks (exp, recip, scalars, broadcasting).

The smallest kind of kernel: one compute thread, no data-movement thread. Each core pops its
own 32x32 block of `a` and of `b` (implicit data movement: the core's shard, block by block),
computes, and stores one block of `out`, which is written back to the same place.

    out = exp(a / 2) + 1 / (1 + b*b) - a * rowmean(a) + colmax(b)

`a.rowsum() * (1 / 32)` is a [32, 1] column (one number per row) and `b.colmax()` a [1, 32] row;
in `+ - * /` they stretch across the block, like NumPy broadcasting.
Run: python examples/elementwise.py
"""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
def elementwise(a, b, out):
    @compute()
    async def comp(a_cb, b_cb, out_cb):
        a_blk = a_cb.pop()  # wait for this core's block of a, take it
        b_blk = b_cb.pop()
        smooth = (a_blk * 0.5).exp()  # scalar multiply, then e**x
        bump = (1.0 + b_blk * b_blk).recip()  # 1 / (1 + b^2)
        row_mean = a_blk.rowsum() * (1.0 / 32)  # [32, 1]
        col_max = b_blk.colmax()  # [1, 32]
        o = out_cb.reserve()  # a free slot of the output CB
        o.store(smooth + bump - a_blk * row_mean + col_max)  # filled: pushed to the writer

    return Program(comp)(a, b, out)


def reference(a, b, grid=(2, 2)):
    """float64 version, block by block (each core's 32x32 block)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    R, C = a.shape[0] // grid[0], a.shape[1] // grid[1]
    out = np.empty(a.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            x, y = a[blk], b[blk]
            out[blk] = np.exp(x / 2) + 1 / (1 + y * y) - x * x.mean(axis=1, keepdims=True) + y.max(axis=0, keepdims=True)
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    b = rng.standard_normal((64, 64)).astype(np.float32)
    out = np.full((64, 64), np.nan, dtype=np.float32)  # NaN: an element the kernel misses shows
    elementwise(a, b, out)
    ref = reference(a, b)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    print(f"elementwise (fp32, 2x2 grid): relative error vs float64 = {err:.2e}")
