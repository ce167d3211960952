"""Smaller language features: print(block) on the simulator, `if` on core indices, `with` blocks,
and a kernel called twice reusing its compiled form."""

import math

import numpy as np
from helpers import assert_close, poisoned, rand

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, pykernel_gen
from tilegrid.targets import compile_kernel


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
def shout(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        with x_cb.wait() as blk:
            if core_index(1) == 1:
                print("core 1 sees", blk)
                y = blk * 2.0
            else:
                y = blk + 1.0
            with out_cb.reserve() as o:
                o.store(y)

    return Program(comp)(x, out)


def test_print_and_branch_on_core_index(rng, capsys):
    x = rand(rng, (32, 64))
    out = poisoned((32, 64))
    shout(x, out)
    text = capsys.readouterr().out
    assert "[core (0, 1) comp] core 1 sees" in text and "[core (0, 0)" not in text
    x64 = x.astype(np.float64)
    assert_close(out, np.concatenate([x64[:, :32] + 1, x64[:, 32:] * 2], axis=1), "f32")


def test_compiled_once_per_shape_signature(rng):
    x = rand(rng, (32, 64))
    first = compile_kernel(shout, x, poisoned((32, 64)))
    assert compile_kernel(shout, rand(rng, (32, 64)), poisoned((32, 64))) is first
    second = compile_kernel(shout, rand(rng, (32, 64), "bf16"), poisoned((32, 64), "bf16"))
    assert second is not first  # a new signature compiles anew


@pykernel_gen(grid=(1, 1), block_factors=[(2, 1), (2, 1)])
def scaled_by_rows(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        b = x_cb.pop()
        rows, cols = b.shape  # static: (64, 32)
        if b.dtype == "f32":
            out_cb.reserve().store(b * (rows / cols))

    return Program(comp)(x, out)


def test_block_shape_and_dtype_are_compile_time_values(rng):
    x = rand(rng, (64, 32))
    out = poisoned((64, 32))
    scaled_by_rows(x, out)
    assert_close(out, x.astype(np.float64) * 2.0, "f32")


def _gated(extra: bool):
    @pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 1)])
    def gated(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            blk = x_cb.pop()
            y = blk + 1.0
            if extra and core_index(1) == 1:  # `extra` False: the run-time test is never compiled
                y = y * undefined_when_off  # noqa: F821
            if not extra or core_index(1) == 0:  # `not extra` True: no run-time test either
                y = y * 2.0
            out_cb.reserve().store(y)

        return Program(comp)(x, out)

    return gated


def test_and_or_short_circuit_on_compile_time_values(rng):
    x = rand(rng, (32, 64))
    out = poisoned((32, 64))
    _gated(False)(x, out)
    assert_close(out, (x.astype(np.float64) + 1.0) * 2.0, "f32")


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2), (2, 1)], num_outs=2)
def convert_and_sum(x, out, sums):
    @compute()
    async def comp(x_cb, out_cb, sums_cb):
        a = x_cb.pop()
        b = (a * 3.0).astype("bf16")  # packed (rounded) to bf16 before the add reads it
        out_cb.reserve().store(b.astype(a.dtype) + 1.0)
        s = b.rowsum()
        assert_f32 = s.dtype == "f32"  # sums come back in f32, whatever the input's format
        sums_cb.reserve().store(s * 1.0 if assert_f32 else -s)

    return Program(comp)(x, out, sums)


def test_astype_rounds_and_sums_accumulate_in_f32(rng):
    from ml_dtypes import bfloat16

    x = rand(rng, (64, 64))
    out, sums = poisoned((64, 64)), poisoned((64, 32))
    convert_and_sum(x, out, sums)
    b = (x.astype(np.float32) * np.float32(3.0)).astype(bfloat16).astype(np.float64)
    assert np.array_equal(out, (b + 1.0).astype(np.float32))
    assert np.abs(sums[:, 0] - b.sum(-1)).max() < 1e-4 * np.abs(b).sum(-1).max()


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1)])
def numpy_names(x, y, out):
    @compute()
    async def comp(x_cb, y_cb, out_cb):
        a = x_cb.pop()
        b = y_cb.pop()
        s = np.maximum(np.exp(a), np.abs(b)) + np.transpose(a) * math.sqrt(2.0) + np.matmul(a, b) * (1.0 / np.pi)
        out_cb.reserve().store(np.where(b > 0.0, s, np.tanh(b)))

    return Program(comp)(x, y, out)


def test_numpy_functions_named_like_tilegrid_ops_are_those_ops(rng):
    """docs/language.md, 'Functions of other modules': np.exp(x) is exp(x); math.sqrt(2.0) of a
    number known at compile time is that number."""
    x, y = rand(rng, (32, 32)), rand(rng, (32, 32))
    out = poisoned((32, 32))
    numpy_names(x, y, out)
    a, b = x.astype(np.float64), y.astype(np.float64)
    s = np.maximum(np.exp(a), np.abs(b)) + a.T * math.sqrt(2.0) + (a @ b) / np.pi
    assert_close(out, np.where(b > 0, s, np.tanh(b)), "f32")


@pykernel_gen(grid=(1, 2), block_factors=[(1, 1), (1, 2), (1, 1)])
def same_array_twice(x, y, out):
    x_s, y_s = Stream(x), Stream(y)

    @compute()
    async def comp(x_cb, y_cb, out_cb):
        a = x_cb.pop()
        b = y_cb.pop()
        out_cb.reserve().store(a * b.rowsum())

    @datamovement()
    async def reader(x_cb, y_cb, out_cb):
        dma(x_s[0, core_index(1)], x_cb.reserve()).wait()
        dma(y_s[0, 0], y_cb.reserve()).wait()

    return Program(comp, reader)(x, y, out)


def test_one_array_passed_as_two_inputs_with_different_blocks(rng):
    """`k(a, a, out)` is legal: each argument reads the same memory in its own blocks."""
    x = rand(rng, (32, 64))
    out = poisoned((32, 64))
    same_array_twice(x, x, out)
    x64 = x.astype(np.float64)
    assert_close(out, x64 * x64.sum(1, keepdims=True), "f32")


def test_outside_verify_each_the_final_ir_is_verified_once_before_lowering(monkeypatch):
    """Without TILEGRID_VERIFY=each, a compile that only weighs a layout (`compile_ir`) leaves the IR
    unverified; the first target to lower it verifies it, once, and the run is right."""
    from tilegrid.targets import compile_ir
    from tilegrid.targets.compile import clear_cache

    monkeypatch.setenv("TILEGRID_VERIFY", "")
    clear_cache()
    x = np.random.default_rng(7).standard_normal((64, 32)).astype(np.float32)
    compiled = compile_ir(scaled_by_rows, x, np.full_like(x, np.nan))
    assert not compiled.verified and compiled.l1.used > 0
    out = scaled_by_rows(x, np.full_like(x, np.nan))
    assert compiled.verified
    np.testing.assert_allclose(out, x * 2.0, rtol=1e-6)
    clear_cache()
