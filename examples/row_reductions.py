"""Newcomer example: row reductions (`rowsum`, `rowmax`) — layer norm and max-abs scaling.

A reduction over the last dimension gives a [32, 1] column per block row, which then
broadcasts back across the row. Each core takes a whole 32-row stripe of x (block_factors
(1, 2): one CB slot is 32x64 elements, and x is 64 wide), so the reductions see full rows.

    layer_norm:     out = (x - mean) / sqrt(var + 1e-5)      per row
    max_abs_scale:  out = x / max(|x|)                        per row

x, out: [32 * grid rows, 64] (grid (2, 1): two stripes of 32 rows).
Run: python examples/row_reductions.py
"""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(2, 1), block_factors=[(1, 2), (1, 2)])
def layer_norm(x, out):
    inv_n = 1.0 / x.shape[-1]  # a constant from the kernel function, usable in the thread

    @compute()
    async def comp(x_cb, out_cb):
        x_blk = x_cb.pop()
        mean = x_blk.rowsum() * inv_n  # [32, 1]
        centered = x_blk - mean
        var = (centered * centered).rowsum(dim=-1) * inv_n  # dim=-1 (or axis=-1) is the default
        o = out_cb.reserve()
        o.store(centered * (var + 1e-5).rsqrt())

    return Program(comp)(x, out)


@pykernel_gen(grid=(2, 1), block_factors=[(1, 2), (1, 2)])
def max_abs_scale(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        x_blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(x_blk * x_blk.abs().rowmax().recip())

    return Program(comp)(x, out)


def reference_layer_norm(x):
    x = x.astype(np.float64)
    c = x - x.mean(axis=-1, keepdims=True)
    return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + 1e-5)


def reference_max_abs_scale(x):
    x = x.astype(np.float64)
    return x / np.abs(x).max(axis=-1, keepdims=True)


if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    for kernel, reference in ((layer_norm, reference_layer_norm), (max_abs_scale, reference_max_abs_scale)):
        out = np.full((64, 64), np.nan, dtype=np.float32)
        kernel(x, out)
        ref = reference(x)
        err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        print(f"{kernel.__name__} (fp32, 2x1 grid): relative error vs float64 = {err:.2e}")
