"""A script with a mistake, for `tilegrid run`: a matmul whose inner dimensions differ."""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(1, 1), block_factors=[(1, 2), (1, 1), (1, 1)])
def bad_matmul(a, b, out):
    @compute()
    async def comp(a_cb, b_cb, out_cb):
        c = a_cb.pop() @ b_cb.pop()  # ERR[cli]
        o = out_cb.reserve()
        o.store(c)

    return Program(comp)(a, b, out)


if __name__ == "__main__":
    rng = np.random.default_rng()
    a = rng.standard_normal((32, 64)).astype(np.float32)
    b = rng.standard_normal((32, 32)).astype(np.float32)
    out = np.full((32, 32), np.nan, np.float32)
    bad_matmul(a, b, out)
