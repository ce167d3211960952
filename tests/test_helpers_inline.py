"""Plain Python helper functions called from a thread are inlined (shared index arithmetic)."""

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import CompileError, Program, Stream, compute, core_index, datamovement, dma, pykernel_gen

GRID = (2, 3)


def block_of(r, c, flip=False):
    """The x block core (r, c) reads: its own, or the mirrored one."""
    if flip:
        r = GRID[0] - 1 - r
        c = GRID[1] - 1 - c
    return r, c


def make(flip):
    @pykernel_gen(grid=GRID, block_factors=[(1, 1), (1, 1)])
    def mirror(x, out):
        xs = Stream(x)

        @datamovement()
        async def reader(x_cb, out_cb):
            i, j = block_of(core_index(0), core_index(1), flip=flip)
            dma(xs[i, j], x_cb.reserve()).wait()

        @compute()
        async def comp(x_cb, out_cb):
            out_cb.reserve().store(x_cb.pop() * 3.0)

        return Program(comp, reader)(x, out)

    return mirror


@pytest.mark.parametrize("flip", [False, True])
def test_inlined_helper(flip, rng):
    x = rand(rng, (64, 96))
    out = poisoned((64, 96))
    make(flip)(x, out)
    ref = x.astype(np.float64) * 3
    assert_close(out, ref[::-1, ::-1].reshape(2, 32, 3, 32)[:, ::-1, :, ::-1].reshape(64, 96) if flip else ref, "f32")


def early_return(v):
    if v > 0:
        return v
    return 0


def test_helper_with_early_return_is_an_error(rng):
    @pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
    def k(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            n = early_return(core_index(0))
            out_cb.reserve().store(x_cb.pop() * n)

        return Program(comp)(x, out)

    with pytest.raises(CompileError, match="returns once, as its last statement"):
        k(rand(rng, (32, 32)), poisoned((32, 32)))
