"""The SFPU's fast approximate exponential: `exp(x, approx=True)` from the language to the
simulator's numerics and the timing model's cost, checked against float64 exp."""

import numpy as np
import pytest
from helpers import poisoned, rand, tile_unary

from tilegrid import Program, compute, exp, perf, pykernel_gen
from tilegrid.device import WORMHOLE_N150
from tilegrid.ir import to_text
from tilegrid.numerics import exp_approx
from tilegrid.perf.costs import CostContext, op_cost
from tilegrid.perf.params import WORMHOLE_N150 as P
from tilegrid.targets import compile_kernel

APPROX_REL = 0.0313  # the linear 2^f ~ 1 + f, centred: +-3.12% (and 2^-8 steps of the exponent)


def test_numerics_against_float64():
    x = np.random.default_rng(0).uniform(-87, 88, 200_000).astype(np.float32)
    rel = exp_approx(x) / np.exp(x.astype(np.float64)) - 1
    assert np.abs(rel).max() < APPROX_REL
    assert np.abs(rel).max() > 0.025  # it is the approximation, not exp
    assert exp_approx(np.float32(0.0)) == np.float32(0.978515625)  # (127 * 256 + 245) << 15
    tiny = exp_approx(np.array([-np.inf, -1e4], np.float32))  # clamped at -88.5
    assert np.all((tiny >= 0) & (tiny < 1e-37))


def _kernel(form: str):
    @pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2)])
    def approx_exp(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            a = x_cb.pop()
            if form == "method":
                r = (a * 0.5).exp(approx=True)
            elif form == "function":
                r = exp(a * 0.5, approx=True)
            else:
                r = (a * 0.5).exp()
            out_cb.reserve().store(r)

        return Program(comp)(x, out)

    return approx_exp


@pytest.mark.parametrize("form", ["method", "function"])
def test_kernel_runs_the_approximation(rng, form):
    x = rand(rng, (64, 64), scale=4.0)
    out = poisoned((64, 64))
    _kernel(form)(x, out)
    ref = np.exp(x.astype(np.float64) * 0.5)
    rel = np.abs(out / ref - 1)
    assert rel.max() < APPROX_REL and rel.max() > 0.01
    assert '"tile.exp_approx"' in to_text(compile_kernel(_kernel(form), x, out).compiled.module)


def test_plain_exp_follows_the_runs_exp_mode(rng):
    x = rand(rng, (64, 64), scale=4.0)
    ref = np.exp(x.astype(np.float64) * 0.5)
    exact, approx = poisoned((64, 64)), poisoned((64, 64))
    _kernel("plain")(x, exact)
    with perf.session(exp="approx", trace=False):
        _kernel("plain")(x, approx)
    assert np.abs(exact / ref - 1).max() < 1e-6
    assert 0.01 < np.abs(approx / ref - 1).max() < APPROX_REL


def test_cost_of_the_approximation_and_of_column_vectors():
    accurate = CostContext(P, "HiFi4", exp="accurate", cb_formats=("bf16", "bf16"))
    # load one tile, exp, pack: SFPU cycles are the published per-tile figure, whatever the mode
    full = op_cost(accurate, tile_unary("exp_approx"), 1)
    assert full.sfpu == P.sfpu_exp_approx
    assert op_cost(accurate, tile_unary("exp"), 1).sfpu == P.sfpu_exp_accurate
    # a column vector needs column 0 only: 8 of a tile's 32 SFPU vectors (faces 0 and 2)
    col = op_cost(accurate, tile_unary("exp_approx", (32, 1)), 1)
    assert col.sfpu == pytest.approx(P.sfpu_exp_approx / 4)
    row = op_cost(accurate, tile_unary("exp_approx", (1, 32)), 1)
    assert row.sfpu == pytest.approx(P.sfpu_exp_approx / 2)


def test_column_vector_ops_are_costed_as_such(rng):
    @pykernel_gen(grid=(1, 1), block_factors=[(2, 2), (2, 2)])
    def col_exp(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            a = x_cb.pop()
            m = a.rowmax()
            out_cb.reserve().store(a - m.exp())

        return Program(comp)(x, out)

    x = rand(rng, (64, 64))
    out = poisoned((64, 64))
    with perf.session(trace=False) as s:
        col_exp(x, out, device=WORMHOLE_N150)
    ref = x - np.exp(x.max(-1, keepdims=True).astype(np.float64))
    assert np.abs(out - ref).max() < 1e-4
    sfpu = sum(v[1] for v in s.last.op_totals.values())
    # the column of row maxima: 2 tiles, exp on column 0 only; the subtraction runs on the FPU
    assert sfpu == pytest.approx(2 * P.sfpu_exp_accurate / 4)
