"""ROADMAP.md, Gap 6 ("Grid Scaling"): `fa_large_grid` on the full 8x10 Wormhole grid, completed.

The roadmap's kernel has only a comment for a body ("Should work! Just more cores processing
shards in parallel"); completed with per-core single-tile attention. grid=(8, 10) is 8 rows of
10 cores (80 cores); block_factors lists three entries for four arguments (the last is
repeated, with a warning). Each core takes its own 32x32 block of Q, K and V (implicit data
movement) and computes softmax(Q_rc @ K_rc^T / sqrt(32)) @ V_rc.

Q, K, V, out: [256, 320] (8 x 32 rows, 10 x 32 columns).
Run: python examples/roadmap_gap6_fa_large_grid.py
"""

import warnings

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(8, 10), block_factors=[(1, 1), (1, 1), (1, 1)])
def fa_large_grid(Q, K, V, out):
    # Should work! Just more cores processing shards in parallel
    scale = 1.0 / np.sqrt(32)

    @compute()
    async def comp(Q_cb, K_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()
        K_block = K_cb.pop()
        V_block = V_cb.pop()
        S = (Q_block @ K_block.transpose()) * scale
        P = (S - S.rowmax()).exp()
        out_block = out_cb.reserve()
        out_block.store((P @ V_block) * P.rowsum().recip())

    return Program(comp)(Q, K, V, out)


def reference(Q, K, V, grid=(8, 10)):
    """float64 softmax(Q_rc @ K_rc^T / sqrt(32)) @ V_rc for each core's 32x32 block (r, c)."""
    q, k, v = (a.astype(np.float64) for a in (Q, K, V))
    R, C = q.shape[0] // grid[0], q.shape[1] // grid[1]
    out = np.empty(q.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            s = q[blk] @ k[blk].T / np.sqrt(32)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[blk] = (p / p.sum(axis=1, keepdims=True)) @ v[blk]
    return out


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((256, 320)).astype(bfloat16) for _ in range(3))
    out = np.full((256, 320), np.nan, dtype=bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the roadmap's three block_factors for four arguments
        fa_large_grid(Q, K, V, out)
    ref = reference(Q, K, V)
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"Gap 6 fa_large_grid (bf16, 8x10 grid = 80 cores): relative error vs float64 = {err:.2e}")
