"""ROADMAP.md, "What We Have Now": the single-tile FA demonstrator, completed.

The roadmap shows four lines of its compute thread; `K_block`, `Q_block` and `P_norm` are
never defined there. Completed: each core pops its own 32x32 block of Q and of K (implicit
data movement: no data-movement thread, so every core gets its own shard), computes the
softmax of Q K^T, and stores it. `P_norm` is the row sum of P, so the result is
P * P_norm.recip(). No 1/sqrt(d) scale and no max subtraction, as in the roadmap.

Q, K, out: [64, 64] on the 2x2 grid; core (r, c) computes softmax(Q_rc @ K_rc^T) where X_rc
is the 32x32 block (r, c) of X.
Run: python examples/roadmap_single_tile_demonstrator.py
"""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
def single_tile_fa(Q, K, out):
    @compute()
    async def comp(Q_cb, K_cb, out_cb):
        Q_block = Q_cb.pop()
        K_block = K_cb.pop()
        # Processes ONE tile at a time
        K_T = K_block.transpose()  # 1 tile (32x32)
        S = Q_block @ K_T  # 1 Q tile @ 1 K tile
        P = S.exp()  # 1 tile
        P_norm = P.rowsum()  # not in the roadmap: the [32, 1] row sums
        result = P * P_norm.recip()  # the roadmap writes `P_norm.recip()`: 1 tile
        out_block = out_cb.reserve()
        out_block.store(result)
        out_cb.pop()  # with implicit data movement this only marks the block done

    return Program(comp)(Q, K, out)


def reference(Q, K, grid=(2, 2)):
    """float64: per core, softmax(Q_rc @ K_rc^T) without max subtraction."""
    q, k = Q.astype(np.float64), K.astype(np.float64)
    R, C = q.shape[0] // grid[0], q.shape[1] // grid[1]
    out = np.empty(q.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            p = np.exp(q[blk] @ k[blk].T)
            out[blk] = p / p.sum(axis=1, keepdims=True)
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    Q = (rng.standard_normal((64, 64)) * 0.4).astype(np.float32)
    K = (rng.standard_normal((64, 64)) * 0.4).astype(np.float32)
    out = np.full((64, 64), np.nan, dtype=np.float32)
    single_tile_fa(Q, K, out)
    ref = reference(Q, K)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    print(f"single-tile FA demonstrator (fp32, 2x2 grid): relative error vs float64 = {err:.2e}")
