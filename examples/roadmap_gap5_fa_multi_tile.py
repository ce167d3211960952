"""ROADMAP.md, Gap 5 ("Multiple Tiles Per Core"): `fa_multi_tile`, completed.

The roadmap's kernel: grid (2, 2), block_factors (2, 2) for every argument (the roadmap lists
three entries for four arguments; the last is repeated, with a warning), so each CB slot holds
2x2 tiles (64x64 elements). Its compute thread stops after S = Q_block @ K_T and never pops
`K_block`; completed with the K and V pops and a softmax(S) @ V per core (no 1/sqrt(d) scale,
as the roadmap writes S). Every op works on whole 2x2-tile blocks; the compiler splits them
into subblocks that fit DST (4 tiles in the default fp32-accumulation, double-buffered mode),
which is the roadmap's "Insufficient DST capacity" fix.

Q, K, V, out: [128, 128] fp32 on the 2x2 grid; core (r, c) computes attention on its own
64x64 blocks (implicit data movement): out_rc = softmax(Q_rc @ K_rc^T) @ V_rc.
Run: python examples/roadmap_gap5_fa_multi_tile.py
"""

import warnings

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(
    grid=(2, 2),
    block_factors=[(2, 2), (2, 2), (2, 2)],  # 2x2 tiles per core
)
def fa_multi_tile(Q, K, V, out):
    @compute()
    async def comp(Q_cb, K_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()  # Now contains 2x2 tiles!
        K_block = K_cb.pop()  # not in the roadmap's fragment
        V_block = V_cb.pop()  # not in the roadmap's fragment

        # Operations automatically iterate over tiles
        K_T = K_block.transpose()  # Processes all 4 tiles
        S = Q_block @ K_T  # 2x2 @ 2x2 matmul

        # Completion: softmax(S) @ V
        P = (S - S.rowmax()).exp()
        attn = (P @ V_block) * P.rowsum().recip()
        out_block = out_cb.reserve()
        out_block.store(attn)

    return Program(comp)(Q, K, V, out)


def reference(Q, K, V, grid=(2, 2)):
    """float64 softmax(Q_rc @ K_rc^T) @ V_rc for each core's block (r, c)."""
    q, k, v = (a.astype(np.float64) for a in (Q, K, V))
    R, C = q.shape[0] // grid[0], q.shape[1] // grid[1]
    out = np.empty(q.shape)
    for r in range(grid[0]):
        for c in range(grid[1]):
            blk = np.s_[r * R:(r + 1) * R, c * C:(c + 1) * C]
            s = q[blk] @ k[blk].T
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[blk] = (p / p.sum(axis=1, keepdims=True)) @ v[blk]
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    Q, K, V = ((rng.standard_normal((128, 128)) * 0.35).astype(np.float32) for _ in range(3))
    out = np.full((128, 128), np.nan, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the roadmap's three block_factors for four arguments
        fa_multi_tile(Q, K, V, out)
    ref = reference(Q, K, V)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    print(f"Gap 5 fa_multi_tile (fp32, 2x2 tiles per core, 2x2 grid): relative error vs float64 = {err:.2e}")
