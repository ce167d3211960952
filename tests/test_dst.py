"""DST modes: capacity follows the mode, every lowered op fits it, and the simulator fails loudly
on a program whose subblock would not fit."""

import re

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import WORMHOLE, Program, TilegridError, compute, ir, pykernel_gen
from tilegrid.ir import tile as T
from tilegrid.passes.common import program_of
from tilegrid.targets import compile_kernel
from tilegrid.targets.compile import parse_compiled
from tilegrid.targets.sim import run_compiled


@pytest.mark.parametrize("fp32_acc,double_buffer,capacity", [(True, True, 4), (False, True, 8), (True, False, 8),
                                                             (False, False, 16)])
def test_capacity_follows_the_mode(fp32_acc, double_buffer, capacity):
    assert WORMHOLE.dst_capacity(fp32_acc, double_buffer) == capacity


def make(fp32_acc, double_buffer):
    @pykernel_gen(grid=(1, 1), block_factors=[(8, 8), (8, 8)], fp32_acc=fp32_acc, dst_double_buffer=double_buffer)
    def chain(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            a = x_cb.pop()
            out_cb.reserve().store((a * 2.0 + a.exp()) * a - a.rowmax())

        return Program(comp)(x, out)

    return chain


@pytest.mark.parametrize("fp32_acc,double_buffer", [(True, True), (False, False)])
def test_subblocks_fit_every_mode(fp32_acc, double_buffer, rng):
    x = rand(rng, (256, 256))
    out = poisoned((256, 256))
    make(fp32_acc, double_buffer)(x, out)
    x64 = x.astype(np.float64)
    assert_close(out, (x64 * 2 + np.exp(x64)) * x64 - x64.max(1, keepdims=True), "f32")
    compiled = compile_kernel(make(fp32_acc, double_buffer), x, out).compiled
    cap = program_of(compiled.module).dst_capacity.data
    for op in compiled.module.walk():
        if isinstance(op, T.ComputeOp):
            slots = 1 + max(o.dst.data for o in op.body.block.ops if getattr(o, "dst", None) is not None)
            h, w = op.subblock_shape
            assert slots * h * w <= cap
        elif isinstance(op, T.MatmulOp | T.ReduceOp | T.TransposeOp):
            h, w = op.subblock_shape
            assert h * w <= cap


def test_simulator_rejects_a_subblock_larger_than_dst(rng):
    x = rand(rng, (256, 256))
    compiled = compile_kernel(make(True, True), x, poisoned((256, 256))).compiled
    text = ir.to_text(compiled.module)
    # Hand-edit the tile IR: give the reduce a subblock of 8 tiles, twice the DST's 4.
    bad = re.sub(r'("tile.reduce"\(.*?subblock = )\[#builtin.int<\d+>, #builtin.int<\d+>\]',
                 r'\1[#builtin.int<8>, #builtin.int<1>]', text, count=1)
    assert bad != text
    broken = parse_compiled(bad)
    with pytest.raises(TilegridError, match="Insufficient DST capacity: 8 tiles needed, 4 available"):
        run_compiled(broken, [x, poisoned((256, 256))], make(True, True).config)
