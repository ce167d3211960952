"""Kernels that are correct; the mistakes are in how they are declared or called."""

from tilegrid import Program, compute, pykernel_gen


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])  # ERR[exp_kernel]
def exp_kernel(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2)])  # ERR[bf_kernel]
def bf_kernel(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    return Program(comp)(x, out)


@pykernel_gen(grid=(9, 12), block_factors=[(1, 1), (1, 1)])  # ERR[big_grid]
def big_grid(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(16, 16, 2), (16, 16, 2)])  # ERR[l1_overflow]
def l1_overflow(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])  # ERR[no_program]
def no_program(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    Program(comp)  # built, but never called with the tensors


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])  # ERR[bf_too_long]
def bf_too_long(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    return Program(comp)(x, out)
