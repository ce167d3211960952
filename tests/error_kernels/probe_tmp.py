from tilegrid import Program, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])
def bf_long(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def ci2(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk * core_index(2))
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def ret(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        return blk
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def no_compute(x, out):
    x_stream = Stream(x)
    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, 0], x_cb.reserve()).wait()
    return Program(reader)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def dst_big(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        a = x_cb.pop()
        y = ((a * 2.0 + a.exp()) * (a.exp() * a + a)) * ((a + 1.0).exp() * (a * 3.0 - a.exp()))
        o = out_cb.reserve()
        o.store(y)
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def reserve_twice(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
        p = out_cb.reserve()
        p.store(blk)
    return Program(comp)(x, out)


@pykernel_gen(grid=(2, 1), block_factors=[(1, 1), (1, 1)])
def same_block(x, out):
    x_stream = Stream(x)
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, 0], x_cb.reserve()).wait()
    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 2)])
def cb_mismatch(x, out):
    x_stream = Stream(x)
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, 0], out_cb.reserve()).wait()
    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def rowmax_dim(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk - blk.rowmax(dim=0))
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def scalar_in_cond(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        if blk > 0:
            blk = blk.exp()
        o = out_cb.reserve()
        o.store(blk)
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def unfilled_reserve(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        y = blk.exp()
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def numpy_in_thread(x, out):
    import numpy as np
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(np.exp(blk))
    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def out_pop_twice_runtime(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
        out_cb.pop()
        out_cb.pop()
    return Program(comp)(x, out)
