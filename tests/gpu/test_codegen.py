"""IR -> Triton source, on the CPU: no torch, no Triton, no GPU needed."""

import ast
import re

import numpy as np
import pytest
from gpu_cases import fa_program, matmul_program

from tilegrid import Program, TilegridError, compute, core_index, datamovement, dma, pykernel_gen
from tilegrid.lang import Stream
from tilegrid.targets.gpu import capture

FA_CASES = [
    dict(b=1, h=1, hk=1, sq=64, skv=64, d=32, grid=(1, 1)),
    dict(b=1, h=2, hk=2, sq=128, skv=128, d=64, causal=True),
    dict(b=1, h=2, hk=1, sq=96, skv=160, d=64, causal=True),
    dict(b=1, h=4, hk=2, sq=160, skv=96, d=128, causal=True, grid=(1, 3)),
    dict(b=1, h=1, hk=1, sq=100, skv=77, d=80),
    dict(b=1, h=2, hk=2, sq=256, skv=256, d=64, mcast=True),
    dict(b=1, h=2, hk=2, sq=256, skv=256, d=64, window=(48, 16)),
    dict(b=1, h=3, hk=1, sq=224, skv=224, d=96, causal=True, grid=(8, 10)),
]


def structure(src: str) -> ast.Module:
    tree = ast.parse(src)
    compile(src, "<generated>", "exec")
    return tree


@pytest.mark.parametrize("case", FA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_flash_attention_source_compiles(case):
    prog, plan = fa_program(**case)
    src = prog.source
    tree = structure(src)
    kernels = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("tg_")]
    assert len(kernels) == 1 and len(kernels[0].args.args) == 7  # q, k, v, mask, slopes, lse, out
    assert "semaphore" not in src.lower() and "sem_" not in src
    # Q once per work item, K and V once per K/V chunk: three loads, two stores (out, lse)
    assert src.count("tl.load(") == 3 and src.count("tl.store(") == 2
    # two tensor-core dots, the second accumulating into the corrected output in registers
    assert src.count("tl.dot(") == 2 and re.search(r"tl\.dot\([^\n]*acc=", src)
    assert "tl.exp2(" in src
    # the K/V loop is a real loop with the running max, sum and output carried in registers
    inner = [n for n in ast.walk(kernels[0]) if isinstance(n, ast.For)]
    assert inner, "no loop in the generated kernel"
    assert prog.src.grid[0] == plan.config.grid[0] * plan.config.grid[1]


def test_flash_attention_virtual_cores():
    """More work items than cores: the round loop becomes a second grid axis, not a serial loop."""
    prog, plan = fa_program(b=2, h=8, hk=8, sq=512, skv=512, d=64, grid=(2, 2), q_chunk=2, kv_chunk=2)
    assert prog.src.grid[1] > 1
    assert "tl.program_id(1)" in prog.source


def test_multicast_becomes_a_plain_load():
    prog, _ = fa_program(mcast=True, grid=(2, 2), h=4, hk=4)
    # receivers load K/V themselves: every program has one K and one V load in its loop
    assert prog.source.count("tl.load(") == 3


@pytest.mark.parametrize("mcast", [False, True])
def test_matmul_source_compiles(mcast):
    prog, _ = matmul_program(mcast=mcast)
    src = prog.source
    structure(src)
    assert src.count("tl.load(") == 2 and src.count("tl.store(") == 1
    assert "acc=" in src  # acc + A @ B accumulates into the dot


def test_unpairable_program_is_refused_naming_the_cb():
    @pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
    def bad(x, out):
        xs = Stream(x)

        @compute()
        async def comp(x_cb, out_cb):
            for i in range(2):
                blk = x_cb.pop()
                out_cb.reserve().store(blk)

        @datamovement()
        async def reader(x_cb, out_cb):
            for i in range(2):
                if core_index(0) == 0:
                    dma(xs[0, 0], x_cb.reserve()).wait()

        return Program(comp, reader)(x, out)

    x = np.zeros((32, 32), np.float32)
    with pytest.raises(TilegridError, match=r"CB 0 \('x'\).*reader"):
        capture(bad, x, np.zeros_like(x))


def test_mismatched_loop_bounds_are_refused():
    @pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
    def bad2(x, out):
        xs = Stream(x)

        @compute()
        async def comp(x_cb, out_cb):
            for i in range(2):
                blk = x_cb.pop()
                out_cb.reserve().store(blk)

        @datamovement()
        async def reader(x_cb, out_cb):
            for i in range(core_index(0) + 2):
                dma(xs[0, 0], x_cb.reserve()).wait()

        return Program(comp, reader)(x, out)

    x = np.zeros((32, 32), np.float32)
    with pytest.raises(TilegridError, match="different bounds"):
        capture(bad2, x, np.zeros((64, 32), np.float32))


def test_readme_kernel_with_implicit_data_movement():
    @pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1)])
    def softmax_rows(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            blk = x_cb.pop()
            p = (blk - blk.rowmax()).exp()
            o = out_cb.reserve()
            o.store(p * p.rowsum().recip())

        return Program(comp)(x, out)

    x = np.zeros((64, 64), np.float32)
    prog = capture(softmax_rows, x, np.zeros_like(x))
    structure(prog.source)
    assert prog.source.count("tl.load(") == 1 and prog.source.count("tl.store(") == 1


def test_gpu_backend_imports_torch_and_triton_lazily():
    import subprocess
    import sys

    code = ("import sys, tilegrid.targets.gpu, tilegrid.targets.gpu.lower, tilegrid.targets.gpu.pairing; "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


EXAMPLES = sorted(p for p in __import__("pathlib").Path(__file__).parents[2].joinpath("examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_cli_emits_triton_for_every_example(path, capsys):
    from tilegrid.cli import main

    assert main(["compile", str(path), "--backend", "gpu", "--emit", "triton"]) == 0
    out = capsys.readouterr().out
    assert "@triton.jit" in out
    compile(out, str(path), "exec")


def test_causal_mask_stays_in_the_loop_on_the_gpu():
    # Tensix keeps a precomputed diagonal mask in L1; on the GPU it would pin a block in registers
    _, plan = fa_program(b=1, h=2, hk=2, sq=256, skv=256, d=128, causal=True, q_chunk=4, kv_chunk=4)
    assert not plan.diagonal_once


def test_fast_exp_lowers_to_the_gpus_exp2():
    from gpu_cases import WORMHOLE

    import tilegrid.kernels.attention as F

    q = np.zeros((1, 2, 128, 64), np.float32)
    p = F.make_problem(q, q, q, True, None, None, None)
    plan = F.choose_plan(p, F.AttentionConfig(grid=(1, 2), q_chunk=2, kv_chunk=2, fast_exp=True), WORMHOLE, "f32",
                         backend="gpu")
    args = F.arguments(plan, q, q, q.copy(), None)
    src = capture(F.build_kernel(plan, WORMHOLE), *args).source
    structure(src)
    assert "tl.exp2(" in src


def test_correction_factor_subtracts_before_scaling():
    """exp((m - m_new) * s) of two running maxima is exp2((m - m_new) * s'), not the FMA form
    m * s' - m_new * s' the scores take: for a row that has seen no key both are the -1e30 sentinel,
    and the FMA's rounding residue (about 1e22) made the factor inf and the fully masked row NaN."""
    prog, _ = fa_program(b=1, h=4, hk=2, sq=160, skv=96, d=128, causal=True)
    exps = re.findall(r"tl\.exp2\(([^\n]*)\)", prog.source)
    assert len(exps) == 2
    fma = [e for e in exps if re.fullmatch(r"\w+ \* [\d.e+-]+ - \w+ \* [\d.e+-]+", e)]
    assert len(fma) == 1  # P = exp((S - m_new) * s): a block and a column, one FMA per element
    factor = next(e for e in exps if e not in fma)
    assert re.fullmatch(r"\w+ \* [\d.e+-]+", factor)  # (m - m_new), subtracted first, then scaled


def line_pick_kernel():
    """colmax / rowsum of a block masked to one row / column (loaded alone on the GPU), and a column
    max over two rows (a real reduction), of a 32x64 block."""
    from math import inf

    from tilegrid import col_index, row_index, where

    @pykernel_gen(grid=(1, 1), block_factors=[(1, 2), (1, 2)])
    def line_pick(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            blk = x_cb.pop()
            row3 = where(row_index((32, 64)) == 3, blk, -inf).colmax()
            col5 = where(col_index((32, 64)) == 5, blk, 0.0).rowsum()
            top2 = where(row_index((32, 64)) < 2, blk, -inf).colmax()
            out_cb.reserve().store(row3 + col5 * 2.0 + top2 * 4.0)

        return Program(comp)(x, out)

    return line_pick


def test_one_line_of_a_loaded_block_is_loaded_alone():
    x = np.zeros((32, 64), np.float32)
    src = capture(line_pick_kernel(), x, np.zeros_like(x)).source
    structure(src)
    assert src.count("tl.max(") == 1 and "tl.sum(" not in src  # only top2 reduces
    assert "+ 192 + tl.arange(0, 1)[:, None] * 64" in src  # row 3 (3 * 64 elements in)
    assert "+ 5 + tl.arange(0, 1)[None, :]" in src  # column 5


def test_backward_dkdv_interior_loop_has_no_mask_or_reduction():
    from ml_dtypes import bfloat16

    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import make_problem
    from tilegrid.kernels.attention.backward import KERNELS, argument_shapes, choose_backward_plan

    z = np.zeros((), bfloat16)
    q = np.broadcast_to(z, (1, 2, 512, 128))
    plan = choose_backward_plan(make_problem(q, q, q, True, None, None, None), (2, 2), WORMHOLE, "bf16", "gpu",
                                ((4, 2), (4, 2)))
    src = capture(KERNELS["dkdv"](plan, WORMHOLE),
                  *(np.broadcast_to(np.zeros((), dt), s) for s, dt in argument_shapes(plan, "dkdv"))).source
    structure(src)
    loops = re.split(r"\n\s*for i\d+ in range\(", src)
    edge, interior = loops[-2], loops[-1].split("tl.store(")[0]
    assert re.search(r"\n\s*if v\d+:", edge)  # the causal boundary, masked
    assert not re.search(r"\n\s*if ", interior) and "tl.max(" not in interior  # no branch, no reduction
    assert interior.count("tl.arange(0, 1)[:, None]") == 2  # lse and delta: one row each
