"""The README's first kernel: per-core softmax of each 32x32 shard on a 2x2 grid."""

import numpy as np
from helpers import assert_close, poisoned, rand, shards

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1)])
def softmax_rows(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        p = (blk - blk.rowmax()).exp()
        o = out_cb.reserve()
        o.store(p * p.rowsum().recip())

    return Program(comp)(x, out)


def test_softmax_shards(rng):
    x = rand(rng, (64, 64))
    out = poisoned((64, 64))
    softmax_rows(x, out)
    ref = np.empty((64, 64))
    for r, c, s in shards(x.astype(np.float64), (2, 2)):
        e = np.exp(s - s.max(1, keepdims=True))
        ref[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = e / e.sum(1, keepdims=True)
    assert_close(out, ref, "f32")
