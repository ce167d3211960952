"""Mistakes that only show while the kernel runs on the simulator."""

from tilegrid import Program, Semaphore, Stream, compute, core_index, datamovement, dma, pykernel_gen


@pykernel_gen(grid=(2, 1), block_factors=[(1, 1), (1, 1)])
def stream_index_runtime(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[core_index(0) + 1, 0], x_cb.reserve()).wait()  # ERR[stream_index_runtime]

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def double_pop(x, out):
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        a = x_cb.pop()
        b = x_cb.pop()  # ERR[double_pop]
        o = out_cb.reserve()
        o.store(a + b)

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, core_index(1)], x_cb.reserve()).wait()

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(2, 1), block_factors=[(1, 1), (1, 1)])
def same_output_block(x, out):
    out_stream = Stream(out)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())

    @datamovement()
    async def writer(x_cb, out_cb):
        dma(out_cb.pop(), out_stream[0, 0]).wait()  # ERR[same_output_block]

    return Program(comp, writer)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def extra_push(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.exp())
        p = out_cb.reserve()
        p.store(blk)  # ERR[extra_push]: the push that has no consumer

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])  # two outputs, but num_outs left at 1
def forgot_num_outs(x, out, out2):
    @compute()
    async def comp(x_cb, out_cb, out2_cb):
        blk = x_cb.pop()
        out_cb.reserve().store(blk.exp())  # ERR[forgot_num_outs]
        out2_cb.reserve().store(blk)

    return Program(comp)(x, out, out2)


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1)])
def semaphore_never_set(x, out):
    x_stream = Stream(x)
    go = Semaphore(0)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())  # DEADLOCK[symptom]

    @datamovement()
    async def reader(x_cb, out_cb):
        go.wait(1)  # ERR[semaphore_never_set]
        dma(x_stream[core_index(0), core_index(1)], x_cb.reserve()).wait()

    return Program(comp, reader)(x, out)


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def waited_read(x, out):
    """Correct as written; tests delete its dma_wait from the IR."""
    x_stream = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().exp())

    @datamovement()
    async def reader(x_cb, out_cb):
        dma(x_stream[0, core_index(1)], x_cb.reserve()).wait()  # ERR[waited_read]

    return Program(comp, reader)(x, out)
