"""ROADMAP.md, Gap 3 / Step 2 ("Fill / Initialization Operations"): the three fill lines.

    m_old = fill(-inf, shape=(32, 1))
    l_old = fill(0, shape=(32, 1))
    O_acc = fill(0, shape=(32, 32))

The roadmap gives only these lines; completed here into a kernel that shows what they are
for: they are the identities of one online-softmax step. Starting from them, one step over a
block x gives exactly softmax(x) per row: rowmax(x, -inf) = rowmax(x), rowsum(P, 0) = rowsum(P),
and 0 + P / l = P / l.

x, out: [64, 64] on the 2x2 grid (each core its own 32x32 block, implicit data movement).
Run: python examples/roadmap_gap3_fill.py
"""

import numpy as np

from tilegrid import Program, compute, fill, pykernel_gen, rowmax, rowsum


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1)])
def fill_init(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - `inf` written bare is understood
        l_old = fill(0, shape=(32, 1))
        O_acc = fill(0, shape=(32, 32))

        x_block = x_cb.pop()
        m_new = rowmax(x_block, m_old)  # max(rowmax(x), -inf)
        P = (x_block - m_new).exp()
        l_new = rowsum(P, l_old)  # rowsum(P) + 0
        O_acc = O_acc + P * l_new.recip()
        out_block = out_cb.reserve()
        out_block.store(O_acc)

    return Program(comp)(x, out)


def reference(x, grid=(2, 2)):
    """float64 softmax of each row of each core's block."""
    x = x.astype(np.float64)
    R, C = x.shape[0] // grid[0], x.shape[1] // grid[1]
    out = np.empty(x.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            p = np.exp(x[blk] - x[blk].max(axis=1, keepdims=True))
            out[blk] = p / p.sum(axis=1, keepdims=True)
    return out


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    x = np.random.default_rng(0).standard_normal((64, 64)).astype(bfloat16)
    out = np.full((64, 64), np.nan, dtype=bfloat16)
    fill_init(x, out)
    ref = reference(x)
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"Gap 3 fill as the initial state (bf16, 2x2 grid): relative error vs float64 = {err:.2e}")
