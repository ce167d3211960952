"""The final tile IR text alone runs a kernel: `parse_compiled(text)` simulates bit-for-bit like
the normal compile-and-run, and matches a float64 reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from tilegrid import Program, compute, core_index, ir, pykernel_gen
from tilegrid.targets import compile_kernel
from tilegrid.targets.compile import parse_compiled
from tilegrid.targets.sim import run_compiled


def load_example(name: str):
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tilegrid_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pykernel_gen(grid=(2, 2), block_factors=[(1, 2), (1, 2)])
def exp_left_double_right(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        if core_index(1) == 0:
            y = blk.exp()
        else:
            y = blk * 2.0
        o = out_cb.reserve()
        o.store(y)

    return Program(comp)(x, out)


def flash_attention(rng):
    fa = load_example("flash_attention_looped")
    q = rand(rng, (32, 32), "bf16")
    k = rand(rng, (fa.NUM_KV_BLOCKS, 32, 32), "bf16")
    v = rand(rng, (fa.NUM_KV_BLOCKS, 32, 32), "bf16")
    return fa.flash_attention_looped, [q, k, v, poisoned((32, 32), "bf16")], fa.reference(q, k, v), "bf16"


def branch_per_core_column(rng):
    x = rand(rng, (64, 128), "f32")
    x64 = x.astype(np.float64)
    ref = np.concatenate([np.exp(x64[:, :64]), 2 * x64[:, 64:]], axis=1)
    return exp_left_double_right, [x, poisoned((64, 128), "f32")], ref, "f32"


CASES = {"flash_attention_looped": flash_attention, "branch_per_core_column": branch_per_core_column}


@pytest.mark.parametrize("case", CASES)
def test_from_text_runs_like_the_compiled_kernel(rng, case):
    kernel, tensors, ref, dtype = CASES[case](rng)
    kernel(*tensors)
    expected = tensors[-1].copy()
    compiled = compile_kernel(kernel, *tensors).compiled

    fresh = parse_compiled(ir.to_text(compiled.module))
    assert fresh.args == compiled.args  # the text carries the argument descriptions
    out = poisoned(expected.shape, dtype)
    run_compiled(fresh, [*tensors[:-1], out], kernel.config)

    assert out.tobytes() == expected.tobytes()
    assert_close(out, ref, dtype)
