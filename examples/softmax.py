"""Newcomer example: a row softmax over a batch, one 32-row stripe per core.

softmax(x)_ij = exp(x_ij - max_j x_ij) / sum_j exp(x_ij - max_j x_ij) along each row.
x: [batch, 32 * rows, 64] on a (rows, 1) grid: block_factors (1, 2) make one CB slot a full
32x64 stripe, so each core pops one stripe per batch element (implicit data movement loops
over the leading dimension too) and the compute thread loops over the batch.
Run: python examples/softmax.py
"""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(2, 1), block_factors=[(1, 2), (1, 2)])
def softmax(x, out):
    BATCH = x.shape[0]

    @compute()
    async def comp(x_cb, out_cb):
        for _ in range(BATCH):
            blk = x_cb.pop()
            p = (blk - blk.rowmax()).exp()  # subtract each row's max: exp never overflows
            o = out_cb.reserve()
            o.store(p * p.rowsum().recip())

    return Program(comp)(x, out)


def reference(x):
    x = x.astype(np.float64)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


if __name__ == "__main__":
    x = (np.random.default_rng(0).standard_normal((3, 64, 64)) * 4).astype(np.float32)
    out = np.full(x.shape, np.nan, dtype=np.float32)
    softmax(x, out)
    err = np.linalg.norm(out - reference(x)) / np.linalg.norm(reference(x))
    print(f"softmax (fp32, batch 3, 2x1 grid): relative error vs float64 = {err:.2e}")
