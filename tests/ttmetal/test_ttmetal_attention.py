"""FlashAttention end to end as tt-metal kernels on wolfpine's simulated Wormhole: the library kernel
(`tilegrid.kernels.flash_attention(..., backend="tt-metal")`, its SFPU ops as tilegrid's raw routines) and the
roadmap's looped FlashAttention examples, against float64 and tilegrid's functional simulator.

Numerics (docs/ttmetal.md, "FlashAttention on the simulated Wormhole"): the device computes the same algorithm as
the simulator, but its matrix unit truncates products and accumulates in its own fixed-point datapath (wolfpine's
port of ttsim), so S = Q K^T differs by up to a bf16 ulp of sum(|q k|); exp's and recip's raw routines are faithful
in f32.  Through P (bf16) and the output (bf16) most elements land one or two bf16 ulps from the simulator's.
Asserted: no element unwritten (outputs start as NaN), the relative norm error against float64 below 1e-2 (the
project's bf16 criterion), every element within 4 bf16 ulps (2^-5) of the largest |reference| of the float64 result
and of the simulator's.  Figures (errors, elements differing from the simulator, cycles) go to the logs directory.

One device session for the module (the target's shared session); the CI cases are small (1 core, seq 64), the
full matrix (1-4 cores, seq 64-256, head_dim 64 and 128, causal, GQA) is `slow`.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from helpers import DeviceRuns, figures_fixture, poisoned, rand

import tilegrid.kernels.attention as A
from tilegrid.targets.ttmetal.setup import find_env

ENV = find_env()
pytestmark = [
    pytest.mark.ttmetal,
    pytest.mark.skipif(ENV is None, reason="tt-metal environment not installed (or out of date): run "
                                           "`tilegrid setup tt-metal` (see docs/ttmetal_setup.md)"),
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIGURES: dict[str, dict] = {}
TOL = 2.0**-5  # 4 bf16 ulps of the largest |reference|


figures = figures_fixture(ENV, FIGURES, "test_ttmetal_attention", "tt-metal FlashAttention figures")


def compare(name: str, dev, sim, ref, run, wall: float, approx: bool = False) -> None:
    d, s, r = (np.asarray(x, np.float64) for x in (dev, sim, ref))
    assert not np.isnan(d).any(), f"{name}: {int(np.isnan(d).sum())} elements unwritten (NaN)"
    scale = np.abs(r).max()
    rel = np.linalg.norm(d - r) / np.linalg.norm(r)
    FIGURES[name] = {"wall_s": round(wall, 1), "built": run.built, "max_span_cycles": run.max_span_cycles,
                     "max_err": float(np.abs(d - r).max()), "sim_max_err": float(np.abs(s - r).max()),
                     "rel_err": float(rel), "sim_rel_err": float(np.linalg.norm(s - r) / np.linalg.norm(r)),
                     "differ_from_sim": int((d != s).sum()), "elements": int(d.size),
                     "max_diff_sim_over_scale": float(np.abs(d - s).max() / scale)}
    if approx:  # the fast exp is within 3.1% by design: as far from float64 as the simulator, give or take bf16
        # (an element may then be 3% of the largest |reference| off float64, the simulator's too: the device is
        # held to the simulator's answer, elementwise below)
        assert rel < FIGURES[name]["sim_rel_err"] + 5e-3, FIGURES[name]
    else:
        assert rel < 1e-2, FIGURES[name]
        assert np.abs(d - r).max() <= TOL * scale, FIGURES[name]
    assert np.abs(d - s).max() <= TOL * scale, FIGURES[name]


def run_attention(rng, grid, seq, head_dim, causal, heads=1, kv_heads=1, fast_exp=False):
    q = rand(rng, (1, heads, seq, head_dim), "bf16")
    k = rand(rng, (1, kv_heads, seq, head_dim), "bf16")
    v = rand(rng, (1, kv_heads, seq, head_dim), "bf16")
    cfg = A.AttentionConfig(grid=grid, fast_exp=fast_exp)
    runs = DeviceRuns()
    t0 = time.perf_counter()
    dev = A.flash_attention(q, k, v, causal=causal, config=cfg, backend="tt-metal", observer=runs)
    wall = time.perf_counter() - t0
    sim = A.flash_attention(q, k, v, causal=causal, config=cfg)
    ref = A.reference(*(x.astype(np.float64) for x in (q, k, v)), causal=causal)
    ref = ref[0] if isinstance(ref, tuple) else ref
    (run,) = runs.runs
    name = (f"fa_{grid[0]}x{grid[1]}_s{seq}_d{head_dim}{'_causal' if causal else ''}_h{heads}kv{kv_heads}"
            f"{'_fast_exp' if fast_exp else ''}")
    compare(name, dev, sim, ref, run, wall, approx=fast_exp)


def test_flash_attention_one_core(rng):
    """1 core, seq 64, head_dim 64, not causal: two K/V chunk steps of the online softmax."""
    run_attention(rng, (1, 1), 64, 64, False)


def test_flash_attention_causal_gqa(rng):
    """1 core, seq 64, causal, two Q heads sharing one K/V head (GQA-packed: the causal mask's row % QR is an
    index tile), exercising where / le / sub / fill of the mask and the skipped chunks."""
    run_attention(rng, (1, 1), 64, 64, True, heads=2, kv_heads=1)


def test_flash_attention_fast_exp(rng):
    """AttentionConfig(fast_exp=True): P = exp_approx((S - m) * scale), the raw routine of tt-metal's fast exp
    (Schraudolph's bit trick, scale folded in): as accurate as the simulator's (within 3.1% by design)."""
    run_attention(rng, (1, 1), 64, 64, False, fast_exp=True)


@pytest.mark.slow
@pytest.mark.parametrize("grid, seq, head_dim, causal, heads, kv_heads", [
    ((1, 2), 128, 64, False, 1, 1),
    ((1, 2), 128, 64, True, 1, 1),  # each core takes one branch of the diagonal-mask if
    ((2, 1), 64, 64, True, 1, 1),  # one core has no work item, the other both
    ((1, 1), 128, 128, True, 1, 1),
    ((2, 2), 256, 64, True, 2, 2),
    ((1, 4), 256, 128, False, 4, 2),
    ((2, 2), 128, 64, False, 4, 2),  # GQA unpacked over four cores (wrong with the scaler's self NoC reads)
    ((2, 2), 256, 128, True, 4, 1),
])
def test_flash_attention_matrix(rng, grid, seq, head_dim, causal, heads, kv_heads):
    """1 to 4 cores, seq 64 to 256, head_dim 64 and 128, causal and not, GQA (a few minutes each on wolfpine)."""
    run_attention(rng, grid, seq, head_dim, causal, heads, kv_heads)


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"tg_ttmetal_fa_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def on_device(kernel, *tensors):
    out = [np.copy(t) for t in tensors]
    runs = DeviceRuns()
    t0 = time.perf_counter()
    kernel(*out, backend="tt-metal", observer=runs)
    (run,) = runs.runs
    return out[-1], run, time.perf_counter() - t0


def test_roadmap_flash_attention_looped(rng):
    """ROADMAP.md's loop-based FA kernel as written (examples/roadmap_flash_attention_looped.py: 4 K/V blocks, its
    mock initial state and per-block max), against float64 of its own math and the simulator."""
    mod = example("roadmap_flash_attention_looped")
    q, k, v = rand(rng, (32, 32), "bf16", scale=0.35), rand(rng, (4, 32, 32), "bf16", scale=0.35), \
        rand(rng, (4, 32, 32), "bf16")
    dev, run, wall = on_device(mod.flash_attention_looped, q, k, v, poisoned((32, 32), "bf16"))
    sim = poisoned((32, 32), "bf16")
    mod.flash_attention_looped(q, k, v, sim)
    compare("roadmap_flash_attention_looped", dev, sim, mod.reference(q, k, v), run, wall)


@pytest.mark.slow
def test_roadmap_fa_with_init(rng):
    """ROADMAP.md's fa_with_init (state from host tensors, -inf running max; 4 K/V blocks): its loop swaps two
    carried blocks (the running sum and the accumulator trade places), which the C++ reassigns through
    temporaries."""
    mod = example("roadmap_fa_with_init")
    q, k, v = rand(rng, (32, 32), "bf16"), rand(rng, (128, 32), "bf16"), rand(rng, (128, 32), "bf16")
    init = mod.host_init(ml_dtypes.bfloat16)
    dev, run, wall = on_device(mod.fa_with_init, q, k, v, *init, poisoned((32, 32), "bf16"))
    sim = poisoned((32, 32), "bf16")
    mod.fa_with_init(q, k, v, *init, sim)
    compare("roadmap_fa_with_init", dev, sim, mod.reference(q, k, v), run, wall)
