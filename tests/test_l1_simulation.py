"""The simulator runs in the L1 the allocator laid out: CBs and buffers live at their offsets, in
their formats, so a wrong layout is a wrong answer; loop-carried accumulators are updated in place."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import Program, compute, fill, pykernel_gen
from tilegrid.passes import allocate_l1
from tilegrid.targets import compile_kernel


def two_products():
    @pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2), (2, 2)])
    def kernel(x, y, out):
        @compute()
        async def comp(x_cb, y_cb, out_cb):
            a = x_cb.pop()
            b = y_cb.pop()
            p = a @ b  # two matmul results alive at once, each in its own buffer
            q = a @ a
            out_cb.reserve().store(p * 2.0 - q)

        return Program(comp)(x, y, out)

    return kernel


def test_two_live_buffers_get_disjoint_places(rng):
    x, y = rand(rng, (64, 64)), rand(rng, (64, 64))
    out = poisoned((64, 64))
    two_products()(x, y, out)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert_close(out, 2 * x64 @ y64 - x64 @ x64, "f32")


# An allocator that puts every buffer at offset 0 (an overlap planted on purpose) makes the second
# product overwrite the first while it is still needed: the simulator, running in the layout, gives
# a wrong answer instead of hiding the bug.
def test_a_planted_overlap_is_a_wrong_answer(rng, monkeypatch):
    def everything_at_zero(bufs):
        for b in bufs:
            b.offset = 0
        return max(b.size for b in bufs)

    monkeypatch.setattr(allocate_l1, "_first_fit", everything_at_zero)
    monkeypatch.setattr("tilegrid.targets.compile._cache", {})
    x, y = rand(rng, (64, 64)), rand(rng, (64, 64))
    out = poisoned((64, 64))
    two_products()(x, y, out)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(out, 2 * x64 @ y64 - x64 @ x64, "f32")


def running_sum():
    @pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2), (2, 2)])
    def kernel(x, y, out):
        @compute()
        async def comp(x_cb, y_cb, out_cb):
            acc = fill(0.0, shape=(64, 64))
            for _ in range(3):
                acc = acc + x_cb.pop() @ y_cb.pop()  # accumulated in place, in one buffer
            out_cb.reserve().store(acc)

        return Program(comp)(x, y, out)

    return kernel


def test_loop_carried_accumulator_is_updated_in_place(rng):
    x, y = rand(rng, (3 * 64, 64)), rand(rng, (3 * 64, 64))
    out = poisoned((64, 64))
    running_sum()(x, y, out)
    xb, yb = x.astype(np.float64).reshape(3, 64, 64), y.astype(np.float64).reshape(3, 64, 64)
    assert_close(out, sum(xb[i] @ yb[i] for i in range(3)), "f32")
    plan = compile_kernel(running_sum(), x, y, out).compiled.l1
    # the accumulator: one 64x64 f32 buffer (16 KiB), not its initial value and two carried places
    assert [(b.size, b.carried) for b in plan.buffers] == [(16384, False)]
