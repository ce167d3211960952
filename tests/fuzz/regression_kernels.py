"""Minimal kernels for the compiler bugs random programs found (see test_regressions.py).

Thread functions are compiled from their source, so the kernels live in this file; a line that a
kernel's error must name carries a `# ERR[key]` marker.
"""

from tilegrid import Program, compute, core_index, fill, pykernel_gen

BF3 = [(1, 1), (1, 1), (1, 1)]


@pykernel_gen(grid=(1, 1), block_factors=BF3)
def matmul_used_twice(x, y, out):
    @compute()
    async def comp(x_cb, y_cb, out_cb):
        a = x_cb.pop()
        b = y_cb.pop()
        p = a @ b
        o = out_cb.reserve()
        o.store(p + p)

    return Program(comp)(x, y, out)


@pykernel_gen(grid=(1, 1), block_factors=BF3)
def matmul_in_with_accumulated_after(x, y, out):
    # x: 32x64, y: 64x32 (two blocks each); out = x @ y
    @compute()
    async def comp(x_cb, y_cb, out_cb):
        acc = fill(0.0, (32, 32))
        for _k in range(2):
            b = y_cb.pop()
            with x_cb.wait() as a:
                p = a @ b
            acc = acc + p  # reads `a` after the `with` released it if the matmul is fused here
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, y, out)


@pykernel_gen(grid=(1, 1), block_factors=BF3)
def transpose_in_with_used_after(x, y, out):
    # x, y: 64x32 (two blocks each); out = y0 @ x0^T + y1 @ x1^T
    @compute()
    async def comp(x_cb, y_cb, out_cb):
        acc = fill(0.0, (32, 32))
        for _k in range(2):
            b = y_cb.pop()
            with x_cb.wait() as a:
                t = a.transpose()
            acc = acc + b @ t  # absorbing the transpose reads `a` after its release
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, y, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def transpose_both_sides(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        a = x_cb.pop()
        o = out_cb.reserve()
        o.store(a.transpose() @ a.transpose())

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def carry_popped_block(x, out):
    # x: 64x32 (two blocks); out = the last block
    @compute()
    async def comp(x_cb, out_cb):
        acc = fill(0.0, (32, 32))
        for _i in range(2):
            blk = x_cb.pop()
            acc = blk
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def carry_popped_block_in_if(x, out):
    # x: 64x32 (two blocks); out = the second block
    @compute()
    async def comp(x_cb, out_cb):
        acc = fill(0.0, (32, 32))
        for i in range(2):
            blk = x_cb.pop()
            if i == 1:
                acc = blk
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def runtime_mod(x, out):
    # out = x * sum over i in 0..4 of ((i - 2) % 3) * 10 + ((i - 2) % -3) + ((i - 2) // 3) * 100
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        acc = fill(0.0, (32, 32))
        for i in range(5):
            acc = acc + blk * (((i - 2) % 3) * 10 + ((i - 2) % -3) + ((i - 2) // 3) * 100)
        o = out_cb.reserve()
        o.store(acc)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def runtime_div_by_zero(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk * (core_index(0) // 0))  # ERR[runtime_div_by_zero]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def runtime_mod_by_zero(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk * (core_index(0) % 0))  # ERR[runtime_mod_by_zero]

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def compute_fills_input(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        x_cb.reserve().store(fill(1.0, (32, 32)))  # ERR[compute_fills_input]
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk)

    return Program(comp)(x, out)
