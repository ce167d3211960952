"""Python constructs a thread body cannot use, one per kernel."""

import numpy as np

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_while(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        n = 0
        while n < 2:  # ERR[while]
            blk = blk.exp()
        o = out_cb.reserve()
        o.store(blk)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_try(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        try:  # ERR[try]
            blk = blk.exp()
        except ValueError:
            pass
        o = out_cb.reserve()
        o.store(blk)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_lambda(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        f = lambda b: b.exp()  # noqa: E731  ERR[lambda]
        o = out_cb.reserve()
        o.store(f(blk))

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_listcomp(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        parts = [blk * k for k in range(2)]  # ERR[listcomp]
        o = out_cb.reserve()
        o.store(parts[0])

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_nested_def(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()

        def helper(b):  # ERR[nested_def]
            return b.exp()

        o = out_cb.reserve()
        o.store(helper(blk))

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_for_over_list(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        for s in [1.0, 2.0]:  # ERR[for_list]
            blk = blk * s
        o = out_cb.reserve()
        o.store(blk)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_np_mean(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk - np.mean(blk))  # ERR[np_mean]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def uses_np_clip(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(np.clip(blk, -1.0, 1.0))  # ERR[np_clip]

    return Program(comp)(x, out)
