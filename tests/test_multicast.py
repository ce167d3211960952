"""Multicast and semaphores: a correct handshake works under random interleavings; a missing
wait is caught (as a race or an unfilled push), never a silent wrong answer."""

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import Program, Semaphore, Stream, TilegridError, compute, core_index, datamovement, dma, pykernel_gen


def make_broadcast_kernel(wait_ready: bool, wait_valid: bool, schedule: str, seed: int, ready_count: int = 3):
    """Core (r, 0) reads blocks (r, 0..2) of x and multicasts each along its row; every core doubles them."""

    @pykernel_gen(grid=(2, 4), block_factors=[(1, 1), (1, 1)], schedule=schedule, seed=seed)
    def row_bcast(x, out):
        xs = Stream(x)
        ready = Semaphore(0)
        valid = Semaphore(0)

        @datamovement()
        async def reader(x_cb, out_cb):
            r = core_index(0)
            for i in range(3):
                blk = x_cb.reserve()
                if core_index(1) == 0:
                    dma(xs[r, i], blk).wait()
                    if wait_ready:
                        ready.wait(ready_count, reset=0)
                    dma(blk, blk, core=(r, 1), mcast=(1, 3)).wait()
                    valid.set(1, core=(r, 1), mcast=(1, 3))
                else:
                    ready.inc(1, core=(r, 0))
                    if wait_valid:
                        valid.wait(1, reset=0)

        @compute()
        async def comp(x_cb, out_cb):
            for i in range(3):
                b = x_cb.pop()
                out_cb.reserve().store(b * 2.0)

        return Program(comp, reader)(x, out)

    return row_bcast


def reference(x):
    return np.tile(x.astype(np.float64) * 2, (1, 4))


@pytest.mark.parametrize("seed", range(6))
def test_handshake_is_correct_under_random_schedules(seed, rng):
    x = rand(rng, (64, 96))
    out = poisoned((64, 384))
    make_broadcast_kernel(True, True, "random", seed)(x, out)
    assert_close(out, reference(x), "f32")


@pytest.mark.parametrize("missing", ["ready", "valid"])
def test_missing_wait_is_a_compile_error(missing, rng):
    kernel = make_broadcast_kernel(missing != "ready", missing != "valid", "random", 0)
    with pytest.raises(TilegridError, match="no thread ever waits on it") as e:
        kernel(rand(rng, (64, 96)), poisoned((64, 384)))
    assert "test_multicast.py" in e.value.render()


def test_too_early_handshake_is_caught_under_some_seed(rng):
    """The sender waits for one receiver instead of three: under some interleaving it multicasts
    into a core that has not reserved its slot yet, which is reported as a race."""
    x = rand(rng, (64, 96))
    failures = []
    for seed in range(12):
        out = poisoned((64, 384))
        kernel = make_broadcast_kernel(True, True, "random", seed, ready_count=1)
        try:
            kernel(x, out)
        except TilegridError as e:
            failures.append(e)
            continue
        # A run that slipped through must still be right, never silently wrong.
        assert_close(out, reference(x), "f32")
    assert failures, "no seed exposed the early multicast"
    text = failures[0].render()
    assert "race" in text or "nothing filled" in text or "deadlock" in text, text
    assert "test_multicast.py" in text


def test_multicast_outside_the_grid_is_an_error(rng):
    @pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
    def oob(x, out):
        xs = Stream(x)

        @datamovement()
        async def reader(x_cb, out_cb):
            blk = x_cb.reserve()
            dma(xs[0, 0], blk).wait()
            if core_index(1) == 0:
                dma(blk, blk, core=(0, 1), mcast=(1, 2)).wait()

        @compute()
        async def comp(x_cb, out_cb):
            out_cb.reserve().store(x_cb.pop())

        return Program(comp, reader)(x, out)

    with pytest.raises(TilegridError, match="outside the 1x2 grid"):
        oob(rand(rng, (32, 32)), poisoned((32, 64)))


def test_semaphore_nobody_waits_on_is_an_error(rng):
    @pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
    def lonely(x, out):
        xs = Stream(x)
        sem = Semaphore(0)

        @datamovement()
        async def reader(x_cb, out_cb):
            dma(xs[0, core_index(1)], x_cb.reserve()).wait()
            sem.inc(1, core=(0, 0))

        @compute()
        async def comp(x_cb, out_cb):
            out_cb.reserve().store(x_cb.pop())

        return Program(comp, reader)(x, out)

    with pytest.raises(TilegridError, match="no thread ever waits on it") as e:
        lonely(rand(rng, (32, 64)), poisoned((32, 64)))
    assert "test_multicast.py" in e.value.render()
