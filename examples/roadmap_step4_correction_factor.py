"""ROADMAP.md, Phase 1 Step 4 ("Add correction factor ops"), completed.

    correction = exp(m_old - m_new)  # Element-wise
    O_acc = correction * O_acc        # Element-wise with accumulator

The roadmap gives only these two lines. Completed: O_acc = exp(x1 - m_old) holds the first
block's exponentials relative to its own row max m_old; a second block x2 raises the running
max to m_new, and the correction rescales O_acc as if it had been computed against m_new:
correction * O_acc = exp(x1 - m_new). The kernel stores the rescaled O_acc.

x1, x2, out: [64, 64] on the 2x2 grid (each core its own 32x32 block, implicit data movement).
Run: python examples/roadmap_step4_correction_factor.py
"""

import numpy as np

from tilegrid import Program, compute, exp, pykernel_gen, rowmax


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
def correction_factor(x1, x2, out):
    @compute()
    async def comp(x1_cb, x2_cb, out_cb):
        x1_block = x1_cb.pop()
        x2_block = x2_cb.pop()
        m_old = x1_block.rowmax()
        O_acc = exp(x1_block - m_old)
        m_new = rowmax(x2_block, m_old)

        correction = exp(m_old - m_new)  # Element-wise
        O_acc = correction * O_acc  # Element-wise with accumulator

        out_block = out_cb.reserve()
        out_block.store(O_acc)

    return Program(comp)(x1, x2, out)


def reference(x1, x2, grid=(2, 2)):
    """float64 exp(x1 - m_new), m_new the row max over both blocks of each core."""
    x1, x2 = x1.astype(np.float64), x2.astype(np.float64)
    R, C = x1.shape[0] // grid[0], x1.shape[1] // grid[1]
    out = np.empty(x1.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            m_new = np.maximum(x1[blk].max(axis=1), x2[blk].max(axis=1))[:, None]
            out[blk] = np.exp(x1[blk] - m_new)
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((64, 64)).astype(np.float32)
    x2 = (rng.standard_normal((64, 64)) + 1.0).astype(np.float32)  # a larger max in most rows
    out = np.full((64, 64), np.nan, dtype=np.float32)
    correction_factor(x1, x2, out)
    ref = reference(x1, x2)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    print(f"Step 4 correction factor (fp32, 2x2 grid): relative error vs float64 = {err:.2e}")
