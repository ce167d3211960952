"""tilegrid's raw SFPU routines (tilegrid/targets/ttmetal/sfpu.py) on wolfpine's simulated Wormhole: each routine as
a real tt-metal program (reader -> copy_tile -> routine -> pack_tile -> writer, sfpu_harness.py), every op in one
program per DST format (bf16, and fp32 with f32 tensors unpacked straight to DST), 2048 values per op: specials,
normals, the full exponent range, denormals and the op's edges.  The device must agree bit for bit with the
instruction-level model (sfpu_model.py) and so meet each routine's bound against float64
(tests/test_sfpu_routines.py checks the model over more values, without a device).

One device (one server, one simulator) for the whole module; outputs and the routine's DST slot start as NaN.
Skips unless `python -m tilegrid.targets.ttmetal.setup` has run.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tilegrid.targets.ttmetal import sfpu
from tilegrid.targets.ttmetal import sfpu_isa as I
from tilegrid.targets.ttmetal import sfpu_model as M
from tilegrid.targets.ttmetal import sfpu_reference as R
from tilegrid.targets.ttmetal.setup import find_env

ENV = find_env()
pytestmark = [
    pytest.mark.ttmetal,
    pytest.mark.skipif(ENV is None, reason="tt-metal environment not installed (or out of date): run "
                                           "`python -m tilegrid.targets.ttmetal.setup` (see docs/ttmetal_setup.md)"),
]

N = 2048  # values per op: two tiles
RUNTIME_SCALE = "(0x3e000000)"  # 0.125 as f32 bits, given to exp at run time (a C++ expression)
TIMINGS: dict[str, object] = {}


@pytest.fixture(scope="module")
def dev():
    from tilegrid.targets.ttmetal.device import DeviceSession

    session = DeviceSession(ENV, sim_env={"TT_SIM_COST_MODEL": "1"})
    session.start()
    yield session
    session.close()
    out = ENV.logs_dir / "test_sfpu.timings.json"
    out.write_text(json.dumps(TIMINGS, indent=1) + "\n")


def cases(fp32: bool, rng: np.random.Generator) -> list[tuple[str, sfpu.SfpuRoutine, list[np.ndarray]]]:
    out = []
    for name in R.SPECS:
        op, params = R.routine_params(name)
        out.append((name, sfpu.routine(op, "raw", fp32, **params), R.inputs(name, rng, N)))
    xs = out[[c[0] for c in out].index("exp_scaled")][2]
    out.append(("exp_runtime_scale", sfpu.routine("exp", "raw", fp32, scale=RUNTIME_SCALE), xs))
    return out


_RESULTS: dict[bool, dict] = {}


def results(dev, fp32: bool) -> dict:
    """Run every op in one program for this DST format (once per module): name -> (inputs, device, model)."""
    if fp32 not in _RESULTS:
        from tilegrid.targets.ttmetal import sfpu_harness as H

        rng = np.random.default_rng(20261127 + fp32)
        cs = cases(fp32, rng)
        t0 = time.perf_counter()
        outs, res = H.run(dev, [(r, xs) for _, r, xs in cs], fp32)
        TIMINGS["f32" if fp32 else "bf16"] = {"wall_s": round(time.perf_counter() - t0, 3), **res.timing,
                                              "built": res.built}
        got = {}
        for (name, r, xs), y in zip(cs, outs):
            read = [M.to_dst(x, fp32).view(np.float32) for x in xs]
            model = M.execute(r.program, read, fp32, {"p0": int(RUNTIME_SCALE.strip("()"), 16)})
            got[name] = (xs, y, model)
        _RESULTS[fp32] = got
    return _RESULTS[fp32]


FORMATS = [pytest.param(True, id="f32"), pytest.param(False, id="bf16")]


@pytest.mark.parametrize("fp32", FORMATS)
@pytest.mark.parametrize("name", [*R.SPECS, "exp_runtime_scale"])
def test_device_equals_model_and_meets_spec(dev, name, fp32):
    """Bit for bit the model's result (NaN matching NaN), hence nothing left unwritten (the output and the DST slot
    start as NaN), within the routine's bound of float64, its special values exact."""
    xs, y, model = results(dev, fp32)[name]
    same = (y.view(np.uint32) == model.view(np.uint32)) | (np.isnan(y) & np.isnan(model))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, f"{bad.size} differ, e.g. {[(float(xs[0][i]), float(y[i]), float(model[i])) for i in bad[:5]]}"
    spec = "exp_scaled" if name == "exp_runtime_scale" else name
    c = R.check(spec, xs, y, fp32)
    assert c["max_ulp"] <= R.SPECS[spec].bound and c["nan_mismatch"] == 0 and c["inf_mismatch"] == 0, c
    assert c["specials_wrong"] == [] and c["small_abs"] <= R.TINY, c


@pytest.mark.parametrize("fp32", FORMATS)
def test_runtime_scale_matches_compile_time_scale(dev, fp32):
    """exp(x * scale) with the scale passed at run time (TT_SFPLOADI through the instruction buffer) computes what
    the scale baked into TTI_SFPLOADI does."""
    r = results(dev, fp32)
    assert np.array_equal(r["exp_runtime_scale"][1].view(np.uint32), r["exp_scaled"][1].view(np.uint32))


def test_routine_cost_is_what_the_model_counts(dev):
    """wolfpine's per-unit counters: the SFPU executed exactly the instructions the routines' programs count
    (setup, 32 vectors, teardown per tile; SFPNOP included), for exp on 2 tiles."""
    from tilegrid.targets.ttmetal import sfpu_harness as H

    r = sfpu.routine("exp", "raw", False)
    xs = [np.linspace(-10, 10, N, dtype=np.float32)]
    _, res = H.run(dev, [(r, xs)], False, engines=True)
    units = res.reply["engines"]["cores"]["0,0"]
    TIMINGS["exp_engines"] = {u: units[u] for u in ("SFPU", "MATRIX") if u in units}
    assert units["SFPU"]["ops"] == 2 * r.program.per_tile(), units["SFPU"]
    assert I.count(list(r.program.body)) == r.program.instructions
