"""ROADMAP.md, Gap 4 ("State Management Across Loop Iterations") and Phase 1 Step 3
("Test loop-carried state"), completed.

Step 3's pattern ``acc = initial; for i in range(N):  # noqa: B007 - `i` as in the roadmap acc = acc + compute(i)`` and Gap 4's
``m_new = rowmax(S, m_old); m_old = m_new`` in one loop: `initial` is a fill, `compute(i)` is
exp of the i-th block of x, and `S` is that block. Blocks assigned before a `for` and
reassigned in it are carried from one iteration to the next (scf.for iter_args).

x: [N_BLOCKS, 64, 64] (N_BLOCKS = x.shape[0]); on the 2x2 grid each core pops its own 32x32
block of x[0], x[1], ... in turn (implicit data movement). Outputs (num_outs=2), each [64, 64]:
    acc_out = sum_i exp(x[i])                 (per element)
    max_out = max over i and the row of x[i]  (each row's running max, broadcast along the row)
Run: python examples/roadmap_gap4_loop_carried_state.py
"""

import numpy as np

from tilegrid import Program, compute, fill, pykernel_gen, rowmax


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)], num_outs=2)
def loop_carried_state(x, acc_out, max_out):
    N = x.shape[0]

    @compute()
    async def comp(x_cb, acc_cb, max_cb):
        initial = fill(0, shape=(32, 32))
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - `inf` written bare is understood
        acc = initial
        for i in range(N):  # noqa: B007 - `i` as in the roadmap
            S = x_cb.pop()
            acc = acc + S.exp()  # acc = acc + compute(i)
            m_new = rowmax(S, m_old)  # reads m_old from the previous iteration
            m_old = m_new  # updates it for the next one
        acc_block = acc_cb.reserve()
        acc_block.store(acc)
        max_block = max_cb.reserve()
        max_block.store(fill(0, shape=(32, 32)) + m_old)  # the [32, 1] column, broadcast

    return Program(comp)(x, acc_out, max_out)


def reference(x, grid=(2, 2)):
    """float64 (acc_out, max_out)."""
    x = x.astype(np.float64)
    acc = np.exp(x).sum(axis=0)
    mx = np.empty(x.shape[1:])
    R, C = x.shape[1] // grid[0], x.shape[2] // grid[1]
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            mx[blk] = x[(slice(None), *blk)].max(axis=(0, 2))[:, None]
    return acc, mx


if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((3, 64, 64)).astype(np.float32)
    acc_out = np.full((64, 64), np.nan, dtype=np.float32)
    max_out = np.full((64, 64), np.nan, dtype=np.float32)
    loop_carried_state(x, acc_out, max_out)
    ref_acc, ref_max = reference(x)
    for name, out, ref in (("acc", acc_out, ref_acc), ("running max", max_out, ref_max)):
        err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        print(f"Gap 4 loop-carried {name} (fp32, 3 blocks, 2x2 grid): relative error vs float64 = {err:.2e}")
