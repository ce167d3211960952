"""The autotuner's bounds before and after compiling: floors of what the timing model predicts.

The tuner prunes a candidate once its bound reaches the best simulated time, so a bound above the
prediction would lose the best plan; a loose one costs compiles and simulations. These tests hold
both: each floor is at most what the model charges, and the compiled one is nearly exact.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE
from tilegrid.kernels.attention import AttentionConfig, build_kernel, choose_plan
from tilegrid.kernels.attention.plan import arguments_shapes, make_problem
from tilegrid.kernels.attention.tune import CHUNKS, bound, compute_cost, step_floor


def _problem(heads, kv_heads, seq, d, causal, dtype=bfloat16, window=None):
    q = perf.placeholder((1, heads, seq, d), dtype)
    kv = perf.placeholder((1, kv_heads, seq, d), dtype)
    return make_problem(q, kv, kv, causal, None, window, None)


@pytest.mark.parametrize("causal, window", [(True, None), (False, None), (False, (96, 0))])
def test_compiled_floors_are_each_cores_compute_time_from_below(causal, window):
    """Per core, the floor from the compiled kernel (its ops' costs x the items, steps and causal
    edge steps the core is dealt) is at most the compute thread's busy time in the simulated run,
    and within 3% of it on the busiest core."""
    p = _problem(3, 3, 384, 64, causal, window=window)
    for cq, ck in [(4, 4), (2, 4), (4, 2), (1, 2)]:
        plan = choose_plan(p, AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=(2, 2)), WORMHOLE, "bf16")
        _, floors = bound(plan, WORMHOLE, "HiFi4", "accurate", None,
                          costs=compute_cost(plan, WORMHOLE, "HiFi4", "accurate", None))
        with perf.session("HiFi4", timing_only=True, trace=False) as s:
            build_kernel(plan, WORMHOLE)(*(perf.placeholder(sh, t) for sh, t in arguments_shapes(plan)))
        run = s.last
        busy = {core: run.ends[(core, "attention")] - run.compute_wait[core] * run.cycles for core in floors}
        for core, floor in floors.items():
            assert floor <= busy[core] * (1 + 1e-9), (cq, ck, core, floor, busy[core])
        top = max(busy, key=busy.get)
        assert floors[top] >= 0.97 * busy[top], (cq, ck, floors[top], busy[top])


@pytest.mark.parametrize("variant", [
    dict(causal=True, tight=0.85),
    dict(causal=False, d=128, dtype=np.float32, kv_heads=2, fidelity="HiFi2", exp="approx"),
    dict(causal=True, kv_heads=2, fidelity="LoFi", fast_exp=True),
    dict(causal=True, data_format="bfp8_b", exp="approx"),
    dict(causal=False, d=96, window=(64, 64)),
])
def test_the_floor_before_compiling_is_below_every_compiled_layouts_step(variant):
    """`step_floor` (from the kernel's structure, no compile) never exceeds the compiled step loop's
    cost, for every chunk pair the tuner weighs and the numerics it tunes for; with bf16 inputs and
    the accurate exp (the SFPU's exp dominates) it is within 15% of it."""
    v = dict(heads=4, kv_heads=4, d=64, dtype=bfloat16, fidelity="HiFi4", exp="accurate", fast_exp=False,
             data_format=None, window=None, tight=0.0) | variant
    p = _problem(v["heads"], v["kv_heads"], 512, v["d"], v["causal"], v["dtype"], v["window"])
    dtype = "f32" if v["dtype"] is np.float32 else "bf16"
    for cq, ck in CHUNKS:
        plan = choose_plan(p, AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=(2, 2), fast_exp=v["fast_exp"]),
                           WORMHOLE, dtype)
        cost, _ = compute_cost(plan, WORMHOLE, v["fidelity"], v["exp"], v["data_format"])
        floor = step_floor(plan, WORMHOLE, v["fidelity"], v["exp"], v["data_format"])
        assert v["tight"] * cost.per_step < floor <= cost.per_step, (cq, ck, plan.group, floor, cost)


def test_a_tighter_bound_never_drops_below_the_looser_one():
    """Weighing a candidate further (its DMAs, then its compiled costs) only raises its bound."""
    p = _problem(4, 4, 512, 64, True)
    for cq, ck in CHUNKS:
        plan = choose_plan(p, AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=(2, 2)), WORMHOLE, "bf16")
        floor = bound(plan, WORMHOLE, "HiFi4", "accurate", None, dma=False)[0].cycles
        moved = bound(plan, WORMHOLE, "HiFi4", "accurate", None)[0].cycles
        compiled = bound(plan, WORMHOLE, "HiFi4", "accurate", None,
                         costs=compute_cost(plan, WORMHOLE, "HiFi4", "accurate", None))[0].cycles
        assert floor <= moved <= compiled, (cq, ck, floor, moved, compiled)
        _ = replace(plan)  # plans are plain dataclasses the tuner copies


@pytest.mark.parametrize("variant", [
    dict(heads=4, kv_heads=2, d=96, causal=False, window=(64, 0)),
    dict(heads=2, kv_heads=2, d=64, causal=False, data_format="bfp8_b", exp="approx", fidelity="HiFi2"),
    dict(heads=4, kv_heads=1, d=128, causal=True, seq=320),
])
def test_the_final_bound_never_passes_the_simulated_time(variant):
    """The bound a candidate is simulated (or pruned) with, its compiled compute floor, its DMAs and
    the soonest its first blocks land, is at most the timing model's prediction, for each layout."""
    v = dict(seq=256, data_format=None, exp="accurate", fidelity="HiFi4", window=None) | variant
    p = _problem(v["heads"], v["kv_heads"], v["seq"], v["d"], v["causal"], window=v["window"])
    for cq, ck in [(4, 4), (2, 4), (4, 2), (1, 1)]:
        plan = choose_plan(p, AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=(2, 2)), WORMHOLE, "bf16")
        b, _ = bound(plan, WORMHOLE, v["fidelity"], v["exp"], v["data_format"],
                     costs=compute_cost(plan, WORMHOLE, v["fidelity"], v["exp"], v["data_format"]))
        with perf.session(v["fidelity"], exp=v["exp"], data_format=v["data_format"], timing_only=True,
                          trace=False) as s:
            build_kernel(plan, WORMHOLE)(*(perf.placeholder(sh, t) for sh, t in arguments_shapes(plan)))
        assert b.cycles <= s.last.cycles * (1 + 1e-9), (cq, ck, b, s.last.cycles)
        assert b.cycles >= 0.7 * s.last.cycles, (cq, ck, b, s.last.cycles)
