"""One mistake per kernel, each caught while compiling the thread bodies."""

from tilegrid import Program, Semaphore, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def wrong_cb_count(x, out):
    @compute()
    async def comp(x_cb):  # ERR[wrong_cb_count]
        blk = x_cb.pop()
        blk.exp()

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 2), (1, 1), (1, 1)])
def matmul_inner(a, b, out):
    @compute()
    async def comp(a_cb, b_cb, out_cb):
        a_blk = a_cb.pop()
        b_blk = b_cb.pop()
        c = a_blk @ b_blk  # ERR[matmul_inner]
        o = out_cb.reserve()
        o.store(c)

    return Program(comp)(a, b, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 2), (2, 1), (1, 2)])
def broadcast_mismatch(a, b, out):
    @compute()
    async def comp(a_cb, b_cb, out_cb):
        a_blk = a_cb.pop()
        b_blk = b_cb.pop()
        c = a_blk + b_blk  # ERR[broadcast_mismatch]
        o = out_cb.reserve()
        o.store(c)

    return Program(comp)(a, b, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def no_such_method(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.foo())  # ERR[no_such_method]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])
def undefined_name(Q, V, out):
    # A roadmap-style fragment: `K_block` and `scale` are never defined anywhere.
    @compute()
    async def comp(Q_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()
        V_block = V_cb.pop()
        S = (Q_block @ K_block.transpose()) * scale  # noqa: F821  ERR[undefined_name]
        o = out_cb.reserve()
        o.store(S @ V_block)

    return Program(comp)(Q, V, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def read_before_fill(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        y = o.exp() + blk  # ERR[read_before_fill]
        o.store(y)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 2), (1, 1)])
def store_wrong_shape(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())  # ERR[store_wrong_shape]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def fill_bad_shape(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        bias = fill(0.5, shape=(32, 48))  # ERR[fill_bad_shape]
        o = out_cb.reserve()
        o.store(blk + bias)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def dma_wrong_kinds(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_cb, x_stream[0, 0]).wait()  # ERR[dma_wrong_kinds]

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def carried_shape_change(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        acc = fill(0, shape=(32, 32))
        for _i in range(2):
            blk = x_cb.pop()
            acc = (acc + blk).rowsum()  # ERR[carried_shape_change]
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def used_after_release(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        for _i in range(2):
            blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())  # ERR[used_after_release]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def used_after_with(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        with x_cb.wait() as blk:
            y = blk.exp()
        o = out_cb.reserve()
        o.store(y + blk)  # ERR[used_after_with]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def stream_index_const(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[2, 0], x_cb.reserve()).wait()  # ERR[stream_index_const]

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def output_popped_twice(x, out):
    out_stream = Stream(out)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
        out_cb.pop()  # ERR[output_popped_twice]

    @datamovement()
    async def writer(x_cb, out_cb):
        dma(out_cb.pop(), out_stream[0, 0]).wait()  # ALSO[output_popped_twice]

    return Program(comp, writer)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def api_outside_thread(x, out):
    ones = fill(1.0, shape=(32, 32))  # ERR[api_outside_thread]

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk + ones)

    return Program(comp)(x, out)


@pykernel_gen(grid=(2, 1), block_factors=[(1, 1), (1, 1)])
def core_index_outside_thread(x, out):
    row = core_index(0)  # ERR[core_index_outside_thread]

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk * row)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def empty_body(x, out):
    @compute()
    async def comp(x_cb, out_cb):  # ERR[empty_body]
        ...  # the roadmap's fragments leave the body to the reader

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def core_index_bad_dim(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk * core_index(2))  # ERR[core_index_bad_dim]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def if_on_block(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        if blk > 0:  # ERR[if_on_block]
            blk = blk.exp()
        o = out_cb.reserve()
        o.store(blk)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def rowmax_wrong_dim(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk - blk.rowmax(dim=0))  # ERR[rowmax_wrong_dim]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def returns_value(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        return blk.exp()  # ERR[returns_value]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def unused_value(x, out):
    # Not a mistake: a value computed and never used must not crash the compiler.
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        unused = blk.exp()  # noqa: F841
        o = out_cb.reserve()
        o.store(blk * 2.0)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def exp_approx_not_constant(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp(approx=blk))  # ERR[exp_approx_not_constant]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def astype_unknown(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        out_cb.reserve().store(blk.astype("f16"))  # ERR[astype_unknown]

    return Program(comp)(x, out)


# ---- DMAs never waited: races on hardware (docs/language.md, "Data movement") --------------------


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def dma_read_never_waited(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, core_index(1)], x_cb.reserve())  # ERR[dma_read_never_waited]

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def dma_waited_on_one_path(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        blk = x_cb.reserve()
        h = dma(x_stream[0, core_index(1)], blk)  # ERR[dma_waited_on_one_path]
        if core_index(1) == 0:
            h.wait()

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def dma_write_never_waited(x, out):
    out_stream = Stream(out)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())

    @datamovement()
    async def writer(x_cb, out_cb):
        dma(out_cb.pop(), out_stream[0, core_index(1)])  # ERR[dma_write_never_waited]

    return Program(comp, writer)(x, out)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def mcast_before_wait(x, out):
    x_stream = Stream(x)
    ready = Semaphore(0)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        blk = x_cb.reserve()
        if core_index(1) == 0:
            h = dma(x_stream[0, 0], blk)  # ERR[mcast_before_wait]
            ready.wait(1, reset=0)
            dma(blk, blk, core=(0, 1), mcast=(1, 1)).wait()
            h.wait()
        else:
            ready.inc(1, core=(0, 0))

    return Program(comp, reader)(x, out)
