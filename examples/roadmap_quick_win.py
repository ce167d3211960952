"""ROADMAP.md, "Quick Win for Next Session": looped FA v1 without the second matmul, completed.

The roadmap's loop (pop K, S = Q @ K^T, per-block max, P, per-block sum) is kept line for
line. Completed: `Q` is popped before the loop, and "# Update stats..." is the online update
of the running max and sum (each block's sum rescaled to the new max). Without P @ V the
kernel outputs the statistics themselves: each row's log-sum-exp over all four KV blocks,
m + log(l), broadcast along the row.

Implicit data movement: each core gets its own 32x32 block of Q and the four 32x32 blocks of
its own shard of K (row-major). Q, out: [64, 64] and K: [256, 64] on the 2x2 grid (a core's K
shard is 128x32: four KV blocks of 32 rows).
Run: python examples/roadmap_quick_win.py
"""

import numpy as np

from tilegrid import Program, compute, fill, maximum, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
def looped_fa_v1(Q, K, out):
    @compute()
    async def comp(Q_cb, K_cb, out_cb):
        Q = Q_cb.pop()  # not in the roadmap's snippet
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - `inf` written bare is understood
        l_old = fill(0, shape=(32, 1))

        for kv_idx in range(4):  # noqa: B007
            K = K_cb.pop()
            S = Q @ K.transpose()
            m_new = S.rowmax()
            P = (S - m_new).exp()
            l_new = P.rowsum()
            # Update stats...
            m_run = maximum(m_old, m_new)
            l_old = l_old * (m_old - m_run).exp() + l_new * (m_new - m_run).exp()
            m_old = m_run
            # (Skip P @ V for now)

        out_block = out_cb.reserve()
        out_block.store(fill(0, shape=(32, 32)) + (m_old + l_old.log()))

    return Program(comp)(Q, K, out)


def reference(Q, K, grid=(2, 2)):
    """float64 row log-sum-exp of Q_rc @ K_c^T per core (K_c: the core's 128x32 shard of K)."""
    q, k = Q.astype(np.float64), K.astype(np.float64)
    R, C = q.shape[0] // grid[0], q.shape[1] // grid[1]
    KR = k.shape[0] // grid[0]
    out = np.empty(q.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            s = q[r * R:(r + 1) * R, c * C:(c + 1) * C] @ k[r * KR:(r + 1) * KR, c * C:(c + 1) * C].T
            m = s.max(axis=1, keepdims=True)
            out[r * R:(r + 1) * R, c * C:(c + 1) * C] = m + np.log(np.exp(s - m).sum(axis=1, keepdims=True))
    return out


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    rng = np.random.default_rng(0)
    Q = (rng.standard_normal((64, 64)) * 0.4).astype(bfloat16)
    K = (rng.standard_normal((256, 64)) * 0.4).astype(bfloat16)
    out = np.full((64, 64), np.nan, dtype=bfloat16)
    looped_fa_v1(Q, K, out)
    ref = reference(Q, K)
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"Quick Win looped FA v1, row log-sum-exp (bf16, 4 KV blocks, 2x2 grid): relative error vs float64 = {err:.2e}")
