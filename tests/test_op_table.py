"""Every entry of the op table (tilegrid/ops.py), written as a user writes it, on every target that
runs it: the simulator (f32 and bf16, against float64 references of this file's own, independent of
the table), the performance model (a priced cost class) and the GPU backend (Triton source; run in
Triton's CPU interpreter when torch and triton are installed)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from helpers import NP, poisoned, tile_unary

from tilegrid import perf
from tilegrid.device import WORMHOLE_N150
from tilegrid.numerics import round_to
from tilegrid.ops import OPS
from tilegrid.perf.costs import CostContext, op_cost
from tilegrid.perf.params import WORMHOLE_N150 as P
from tilegrid.targets.gpu import capture


def _gelu(x):
    return 0.5 * x * (1 + scipy.special.erf(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# op -> (user spellings over blocks a, b, c; float64 reference of the first spelling's math; input
# domain (lo, hi) of a and b; relative tolerance in f32 (None: DESIGN.md's 1e-5)).
CASES = {
    "exp": (["a.exp()", "exp(a)", "(a * 0.5).exp()"], lambda a, b: np.exp(a), (-4, 4), None),
    "exp_approx": (["a.exp(approx=True)", "exp(a, approx=True)"], lambda a, b: np.exp(a), (-4, 4), 0.0313),
    "recip": (["a.recip()", "recip(a)"], lambda a, b: 1 / a, (0.5, 4), None),
    "neg": (["-a", "a.neg()", "neg(a)"], lambda a, b: -a, (-4, 4), None),
    "sqrt": (["a.sqrt()", "sqrt(a)"], lambda a, b: np.sqrt(a), (0.01, 9), None),
    "rsqrt": (["a.rsqrt()", "rsqrt(a)"], lambda a, b: 1 / np.sqrt(a), (0.01, 9), None),
    "abs": (["abs(a)", "a.abs()"], lambda a, b: np.abs(a), (-4, 4), None),
    "log": (["a.log()", "log(a)"], lambda a, b: np.log(a), (0.01, 9), None),
    "log1p": (["a.log1p()", "log1p(a)"], lambda a, b: np.log1p(a), (-0.9, 9), None),
    "relu": (["a.relu()", "relu(a)"], lambda a, b: np.maximum(a, 0), (-4, 4), None),
    "sigmoid": (["a.sigmoid()", "sigmoid(a)"], lambda a, b: 1 / (1 + np.exp(-a)), (-8, 8), None),
    "tanh": (["a.tanh()", "tanh(a)"], lambda a, b: np.tanh(a), (-4, 4), None),
    "erf": (["a.erf()", "erf(a)"], lambda a, b: scipy.special.erf(a), (-3, 3), None),
    "gelu": (["a.gelu()", "gelu(a)"], lambda a, b: _gelu(a), (-4, 4), None),
    "gelu_tanh": (["a.gelu(approx=True)", "gelu(a, approx=True)"], lambda a, b: _gelu_tanh(a), (-4, 4), None),
    "silu": (["a.silu()", "silu(a)"], lambda a, b: a / (1 + np.exp(-a)), (-8, 8), None),
    "softplus": (["a.softplus()", "softplus(a)"], lambda a, b: np.logaddexp(0, a), (-8, 8), None),
    "pow": (["a ** 3", "pow(a, 3)", "a.pow(3)"], lambda a, b: a**3, (-2, 2), None),
    "clamp": (["a.clamp(-0.5, 0.75)", "clamp(a, -0.5, 0.75)", "clamp(a, lo=-0.5, hi=0.75)"],
              lambda a, b: np.clip(a, -0.5, 0.75), (-2, 2), None),
    "add": (["a + b", "a + 2.0"], lambda a, b: a + b, (-4, 4), None),
    "sub": (["a - b", "2.0 - b"], lambda a, b: a - b, (-4, 4), None),
    "mul": (["a * b", "a * 2.0"], lambda a, b: a * b, (-4, 4), None),
    "div": (["a / b", "1.0 / b"], lambda a, b: a / b, (0.5, 4), None),
    "max": (["maximum(a, b)", "max(a, b)"], lambda a, b: np.maximum(a, b), (-4, 4), None),
    "min": (["minimum(a, b)", "min(a, b)"], lambda a, b: np.minimum(a, b), (-4, 4), None),
    "mod": (["a % b"], lambda a, b: np.mod(a, b), (0.5, 4), None),
    "ge": (["a >= b"], lambda a, b: (a >= b) * 1.0, (-4, 4), None),
    "gt": (["a > b"], lambda a, b: (a > b) * 1.0, (-4, 4), None),
    "le": (["a <= b"], lambda a, b: (a <= b) * 1.0, (-4, 4), None),
    "lt": (["a < b"], lambda a, b: (a < b) * 1.0, (-4, 4), None),
    "eq": (["a == b"], lambda a, b: (a == b) * 1.0, (-4, 4), None),
    "ne": (["a != b"], lambda a, b: (a != b) * 1.0, (-4, 4), None),
    "where": (["where(a > b, a, b)", "where(a > b, a, 0.0)"], lambda a, b: np.where(a > b, a, b), (-4, 4), None),
}
SPELLINGS = [(name, s) for name, (spellings, *_) in CASES.items() for s in spellings]

KERNEL = '''
from tilegrid import *

@pykernel_gen(grid=(2, 1), block_factors=[(1, 2), (1, 2), (1, 2)])
def kernel(x, y, out):
    @compute()
    async def comp(x_cb, y_cb, out_cb):
        a = x_cb.pop()
        b = y_cb.pop()
        out_cb.reserve().store({expr})

    return Program(comp)(x, y, out)
'''
_kernels: dict[str, object] = {}


def kernel_for(expr: str, tmp: Path):
    """A 2x1-grid kernel storing `expr` of the blocks a (of x) and b (of y) into out."""
    if expr not in _kernels:
        path = tmp / f"k{len(_kernels)}.py"
        path.write_text(textwrap.dedent(KERNEL.format(expr=expr)))
        spec = importlib.util.spec_from_file_location(f"op_table_kernel_{len(_kernels)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _kernels[expr] = module.kernel
    return _kernels[expr]


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("op_table_kernels")


def inputs(name: str, dtype: str, seed: int = 0):
    lo, hi = CASES[name][2]
    rng = np.random.default_rng(seed)
    a, b = (rng.uniform(lo, hi, (64, 64)).astype(NP[dtype]) for _ in range(2))
    if name in ("eq", "ne"):
        b[::3] = a[::3]  # some equal elements
    return a, b


def reference(name: str, expr: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    first = CASES[name][0][0]
    if expr == first:
        return CASES[name][1](a64, b64)
    # another spelling of the same op on other operands: the op's reference, operands substituted
    alt = {"a + 2.0": (a64, 2.0), "2.0 - b": (2.0, b64), "a * 2.0": (a64, 2.0), "1.0 / b": (1.0, b64)}
    if expr in alt:
        return np.asarray(CASES[name][1](*alt[expr]), np.float64) * np.ones_like(a64)
    if expr == "(a * 0.5).exp()":
        return np.exp(a64 * 0.5)
    if expr == "where(a > b, a, 0.0)":
        return np.where(a64 > b64, a64, 0.0)
    return CASES[name][1](a64, b64)


def test_every_table_op_has_a_case_here():
    assert set(CASES) == set(OPS)


@pytest.mark.parametrize("name,expr", SPELLINGS, ids=[f"{n}:{s}" for n, s in SPELLINGS])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_simulator(name, expr, dtype, kernel_dir):
    a, b = inputs(name, dtype)
    out = poisoned((64, 64), dtype)
    kernel_for(expr, kernel_dir)(a, b, out)
    ref = reference(name, expr, a, b)
    out64 = out.astype(np.float64)
    assert not np.isnan(out64).any()
    if dtype == "bf16":  # one rounding of the f32 result to bf16 (inputs are bf16 already)
        ref = round_to(ref.astype(np.float32), "bf16").astype(np.float64) if name != "exp_approx" else ref
        tol = (CASES[name][3] or 0.0) + 2**-8
    else:
        tol = CASES[name][3] or 1e-5
    rel = np.abs(out64 - ref) / np.maximum(np.abs(ref), 1e-3 if dtype == "f32" else 1e-2)
    assert rel.max() <= tol, f"{expr}: max relative error {rel.max():.3e} > {tol:.0e}"


@pytest.mark.parametrize("name", list(OPS))
def test_cost_model_prices_every_op(name):
    """Each op's cost class is priced: a one-tile compute of it costs SFPU (or FPU) cycles."""
    d = OPS[name]
    ctx = CostContext(P, "HiFi4", cb_formats=("bf16", "bf16"))
    if d.arity == 1:
        c = op_cost(ctx, tile_unary(name), 1)
        assert c.sfpu > 0 and c.total > c.sfpu
    else:
        assert d.cost.kind in ("fpu", "sfpu") and d.cost.instr > 0


def test_perf_target_runs_the_new_ops(kernel_dir):
    a, b = inputs("gelu", "bf16")
    out = poisoned((64, 64), "bf16")
    with perf.session(trace=False) as s:
        kernel_for("a.gelu() + b.silu() * b.erf()", kernel_dir)(a, b, out, device=WORMHOLE_N150)
    assert s.last.cycles > 0 and not np.isnan(out.astype(np.float32)).any()


@pytest.mark.parametrize("name,expr", SPELLINGS, ids=[f"{n}:{s}" for n, s in SPELLINGS])
def test_triton_source(name, expr, kernel_dir):
    a, b = inputs(name, "f32")
    src = capture(kernel_for(expr, kernel_dir), a, b, np.zeros_like(a)).source
    compile(src, "<triton>", "exec")


# Where the GPU's f32 formula is looser than the simulator's (float64, rounded once), in units of the
# test's measure (|error| / max(|ref|, 1e-3)): gelu's 1 + erf(x / sqrt 2) cancels for x < -2 (absolute
# error ~6e-8 where gelu ~ -1e-4; Triton has no erfc); x % b rounds a / b before the floor.
GPU_TOL = {"gelu": 1e-4, "gelu_tanh": 2e-4, "mod": 1e-4}
HAVE_TRITON = all(importlib.util.find_spec(m) is not None for m in ("torch", "triton"))
INTERPRET = '''
import importlib.util, json, sys
import numpy as np
import torch
sys.path.insert(0, {tests!r})
from test_op_table import CASES, SPELLINGS, inputs, kernel_for, reference
from pathlib import Path
worst = {{}}
for name, expr in SPELLINGS:
    a, b = inputs(name, "f32")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out = torch.full((64, 64), float("nan"))
    kernel_for(expr, Path({tmp!r}))(ta, tb, out, backend="gpu")
    ref = reference(name, expr, a, b)
    o = out.double().numpy()
    # elementwise, as the simulator's test: a wrong line on any part of the range shows
    rel = np.abs(o - ref) / np.maximum(np.abs(ref), 1e-3)
    worst[expr] = float(rel.max()) if not np.isnan(o).any() else float("inf")
print(json.dumps(worst))
'''


@pytest.mark.skipif(not HAVE_TRITON, reason="needs torch and triton (the interpret extra)")
def test_triton_interpreter(tmp_path):
    """Every spelling run by the generated Triton kernel in Triton's CPU interpreter, f32, each element
    within 1e-5 relative error (of |ref|, or of 1e-3 near zero; the approximate exp within its 3.1%:
    the GPU's exp2 unit computes both exps), so a wrong coefficient in any branch of a spelling fails."""
    code = INTERPRET.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    worst = json.loads(res.stdout.strip().splitlines()[-1])
    tol = {expr: GPU_TOL.get(name) or CASES[name][3] or 1e-5 for name, expr in SPELLINGS}
    bad = {e: r for e, r in worst.items() if r > tol[e]}
    assert not bad, bad
