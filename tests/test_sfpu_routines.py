"""tilegrid's raw SFPU routines (tilegrid/targets/ttmetal/sfpu.py) without a device: their numerics, executed by the
instruction-level model (sfpu_model.py), against float64 and tilegrid's simulator over the whole float range; the
ISA's scheduling rules; the C++ the code generator gets.  tests/ttmetal/test_sfpu.py runs the same routines on the
simulated Wormhole and checks the model against it bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from tilegrid.targets.ttmetal import sfpu
from tilegrid.targets.ttmetal import sfpu_isa as I
from tilegrid.targets.ttmetal import sfpu_model as M
from tilegrid.targets.ttmetal import sfpu_reference as R

FORMATS = [pytest.param(True, id="f32"), pytest.param(False, id="bf16")]


def model_run(name: str, xs: list[np.ndarray], fp32: bool) -> np.ndarray:
    op, params = R.routine_params(name)
    return M.execute(sfpu.RAW[op](fp32_dest=fp32, **params), xs, fp32)


@pytest.mark.parametrize("fp32", FORMATS)
@pytest.mark.parametrize("name", list(R.SPECS))
def test_routine_meets_its_spec(name, fp32, rng):
    """Every routine, on 20k inputs over its whole domain (specials, normals, the full exponent range, denormals,
    the op's edges): within its ulp bound of float64 for normal results, below 2^-126 where the result is (flushed),
    NaN and infinity exactly where the correctly rounded result has them, and the special values exact."""
    xs = R.inputs(name, rng, 20000)
    y = model_run(name, xs, fp32)
    c = R.check(name, xs, y, fp32)
    bound = R.SPECS[name].bound if fp32 else min(R.SPECS[name].bound, 0.5 + 2.0**-6)
    assert c["max_ulp"] <= bound, c
    assert c["nan_mismatch"] == 0 and c["inf_mismatch"] == 0, c
    assert c["specials_wrong"] == [], c
    assert c["small_abs"] <= R.TINY, c
    if not fp32 and R.SPECS[name].arithmetic and name not in ("mad", "exp_approx", "add", "sub", "mul"):
        assert c["exact"] > 0.998, c  # bf16: the nearest bf16 of an accurate f32, but for ties / double rounding
    # (mad, add, sub, mul: one f32 rounding then bf16's ties away from zero; sums of bf16 values often tie)


@pytest.mark.parametrize("fp32", FORMATS)
@pytest.mark.parametrize("name", list(R.SPECS))
def test_routine_versus_simulator(name, fp32, rng):
    """Against tilegrid's functional simulator (the op table's `sim`, rounded to the DST format): the differences
    are the SFPU's flushed denormals, or (f32) the simulator's own rounding: NumPy's float32 exp and log are up to
    2.4 / 2.9 ulp off, its mul-then-add rounds twice, numerics.exp_approx rounds slope * x before adding the bias."""
    xs = R.inputs(name, rng, 20000)
    d = R.versus_sim(name, xs, model_run(name, xs, fp32), fp32)
    assert d["other_nan"] == 0 and (d["nan_input"] == 0 or name in ("max", "min")), d
    if not R.SPECS[name].arithmetic or (name == "exp_approx" and not fp32):
        assert d["other"] == 0, d  # bit moves / bf16 exp_approx: identical but for denormals
    elif name == "exp_approx":
        assert d["other"] <= 0.002 * d["n"] and d["other_max_ulp"] <= 2**15, d  # one step of n
    elif name in R.COMPARES:  # operands within 2^-126 of each other: the SFPU flushes a - b, they compare equal
        assert d["other"] <= 0.0005 * d["n"], d
    elif name == "mad":
        assert d["other"] <= (0.05 if fp32 else 0.01) * d["n"], d  # the simulator's two roundings
    elif name in ("add", "sub", "mul"):  # f32: one rounding, as the simulator's; bf16: ties away from zero
        assert d["other"] <= (0.001 if fp32 else 0.02) * d["n"] and d["other_max_ulp"] <= 1.0, d
    elif fp32:
        assert d["other_max_ulp"] <= 3.0, d
    else:
        assert d["other"] <= 0.002 * d["n"] and d["other_max_ulp"] <= 1.0, d


def programs() -> list[tuple[str, sfpu.Program]]:
    out = []
    for fp32 in (True, False):
        for name in R.SPECS:
            op, params = R.routine_params(name)
            out.append((f"{name}-{'f32' if fp32 else 'bf16'}", sfpu.RAW[op](fp32_dest=fp32, **params)))
        out.append(("exp-runtime-scale", sfpu.routine("exp", "raw", fp32, scale="scale_bits").program))
    return out


@pytest.mark.parametrize("label,prog", programs(), ids=[p[0] for p in programs()])
def test_schedule_obeys_the_isa(label, prog):
    """ISA "Instruction scheduling": no instruction reads a result of SFPMAD / SFPADDI / SFPMULI on the next cycle,
    SFPSWAP is followed by SFPNOP, and the loop body fits the 10-bit DST address (32 vectors x 2 rows)."""
    body = list(prog.body)
    for prev, ins in zip(body, body[1:] + body[:1]):  # the loop wraps around (INCRWC is no SFPU instruction)
        if prev.op in I.SLOW:
            assert not (prev.writes & ins.reads), f"{label}: {ins.op} reads LReg{sorted(prev.writes)} too early"
        if prev.op == "SFPSWAP":
            assert ins.op == "SFPNOP", label
    assert prog.instructions == sum(1 for i in body if i.op != "INCRWC")
    assert all(i.op != "SFPLOAD" or i.tile < prog.operands for i in body)


def test_schedule_inserts_nops_only_where_needed():
    """A multiply-add followed by a reader of its result gets one SFPNOP; by an independent instruction none."""
    dep = I.schedule([I.mad(0, 1, 2, 3), I.store(3)])
    indep = I.schedule([I.mad(0, 1, 2, 3), I.loadi(4, I.LOADI_BF16, 0x3F80), I.store(3)])
    assert [i.op for i in dep] == ["SFPMAD", "SFPNOP", "SFPSTORE"]
    assert [i.op for i in indep] == ["SFPMAD", "SFPLOADI", "SFPSTORE"]


def test_instruction_encoding_matches_the_macros():
    """Negative 12-bit immediates are masked (they would otherwise corrupt the neighbouring fields); a C++
    expression immediate makes a run-time (TT_) instruction."""
    assert I.iadd_imm(1, 2, -255).cpp() == "TTI_SFPIADD(0xf01, 1, 2, 5);"
    assert I.shft(3, -16).cpp() == "TTI_SFPSHFT(0xff0, 0, 3, 1);"
    assert I.loadi(4, I.LOADI_UPPER, "((s) >> 16)").cpp() == "TT_SFPLOADI(4, 8, ((s) >> 16));"
    assert I.const(5, 2.0) == [I.loadi(5, I.LOADI_BF16, 0x4000, "2.0")]
    assert [i.mod for i in I.const(5, 0.1)] == [I.LOADI_UPPER, I.LOADI_LOWER]


def test_routine_interface_for_the_code_generator():
    """raw: C++ definitions (math thread only, guarded common part, a compile-time check of the DST format) and a
    call per DST tile; run-time scalars become arguments; api: tt-metal's kernel API, the default."""
    r = sfpu.routine("exp", mode="raw", fp32_dest=False, scale=0.125)
    assert r.definitions.startswith("#ifdef TRISC_MATH") and "static_assert(DST_ACCUM_MODE == false" in r.definitions
    assert "TTI_SFPMAD(" in r.definitions and "#pragma GCC unroll 0" in r.definitions
    assert r.call(3).startswith("MATH((tilegrid_sfpu_exp_") and r.call(3).endswith("(3)));") and r.init == ""
    with pytest.raises(TypeError):
        r.call(0, 1)
    mx = sfpu.routine("max", mode="raw")
    assert mx.call("i", "j", "k").endswith("(i, j, k)));") and "TT_OP_SFPLOAD(0, 0, 3, (a << 6))" in mx.definitions
    both = r.definitions + mx.definitions
    assert both.count("#define TILEGRID_SFPU_COMMON") == 2 and both.count("#ifndef TILEGRID_SFPU_COMMON") == 2
    rt = sfpu.routine("mad", mode="raw", a="get_arg_val<uint32_t>(1)", b=1.0)
    assert rt.call(0).startswith("MATH((tilegrid_sfpu_mad_") and rt.call(0).endswith("(0, get_arg_val<uint32_t>(1))));")
    assert "TT_SFPLOADI(4, 8, ((p0) >> 16));" in rt.definitions and "uint32_t p0)" in rt.definitions
    assert sfpu.routine("exp", "raw", scale=0.5).call(0) != r.call(0)  # one function per compile-time scale
    api = sfpu.routine("exp")  # the op table's kernel-API spelling
    assert (api.mode, api.init, api.call(2)) == ("api", "exp_tile_init<false>();", "exp_tile<false>(2);")
    assert sfpu.routine("where").call(0, 1, 2, 3) == "where_tile<DataFormat::Float32>(0, 1, 2, 3);"
    assert sfpu.routine("max").call(0, 1, 0) == "binary_max_tile(0, 1, 0);"
    with pytest.raises(KeyError):
        sfpu.routine("erf", mode="raw")
    with pytest.raises(ValueError):
        sfpu.routine("exp", mode="sfpi")


def test_runtime_scale_equals_compile_time_scale(rng):
    """The same scale given at run time (as f32 bits) computes the same bits as the one baked in."""
    x = R.inputs("exp_scaled", rng, 4096)
    rt = sfpu.routine("exp", "raw", True, scale="scale_bits").program
    ct = sfpu.routine("exp", "raw", True, scale=0.125).program
    a = M.execute(rt, x, True, {"p0": I.f32_bits(0.125)})
    b = M.execute(ct, x, True)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_fma_model_rounds_once_but_for_the_partial_fusion(rng):
    """The SFPMAD model: on operands without cancellation it is within an ulp of the correctly rounded fused
    multiply-add, and equal to it but for ~0.4% (the product keeps 27 bits and a sticky bit); it
    reads denormals as zero, flushes -0 and denormal results to +0, and follows IEEE for infinities and NaN."""
    a, b, c = (rng.standard_normal(50000).astype(np.float32) for _ in range(3))
    c = np.abs(c) * np.sign(a * b)  # same signs: no cancellation
    got = M.fma(a.view(np.uint32), b.view(np.uint32), c.view(np.uint32)).view(np.float32)
    want = (a.astype(np.float64) * b + c).astype(np.float32)
    assert np.mean(got == want) > 0.99 and np.all(np.abs(got - want) <= np.spacing(np.abs(want)))
    sp = np.array([[np.inf, 0, 1], [1e-40, 1e30, 0], [-1.0, 0.0, 0.0], [np.inf, 1, -np.inf], [2, 3, 1e-40]],
                  np.float32).T
    got = M.fma(*(v.view(np.uint32) for v in sp)).view(np.float32)
    assert np.isnan(got[0]) and got[1] == 0 and got[2] == 0 and not np.signbit(got[2])
    assert np.isnan(got[3]) and got[4] == 6.0
