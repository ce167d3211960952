"""The tt-metal target without a device: what it generates (C++ kernels, the host program) and the
errors it gives. Runs everywhere (no tt-metal environment needed); tests/ttmetal/test_ttmetal_codegen.py runs
the generated programs on wolfpine."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from fuzz.grammar import programs
from fuzz.harness import Loaded, make_inputs
from helpers import poisoned, rand
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen, row_index, where
from tilegrid.errors import CompileError, DeadlockError, TilegridError
from tilegrid.targets import compile_kernel
from tilegrid.targets.ttmetal.device import DeviceError
from tilegrid.targets.ttmetal.program import TtMetalProgram
from tilegrid.targets.ttmetal.target import TtMetalTarget, device_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"tg_ttmetal_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def softmax_program() -> TtMetalProgram:
    mod = example("softmax")
    x = rand(np.random.default_rng(0), (2, 64, 64), "bf16")
    return compile_kernel(mod.softmax, x, poisoned((2, 64, 64), "bf16"), backend="tt-metal")


def test_softmax_compiles_to_kernel_api_calls():
    """The README's softmax needs the SFPU (exp, recip): it compiles to the kernel-API calls a card
    with sfpi runs, the reductions and broadcasts to the matrix unit, and the user's lines are comments."""
    p = softmax_program()
    assert isinstance(p, TtMetalProgram)
    comp = next(src for name, src in p.sources.items() if name.endswith("_comp.cpp"))
    for call in ("exp_tile_init<false>()", "exp_tile<false>(", "recip_tile_init()", "recip_tile(",
                 "reduce_tile<PoolType::MAX, ReduceDim::REDUCE_ROW>", "reduce_tile<PoolType::SUM, ReduceDim::REDUCE_ROW>",
                 "any_tiles_bcast<EltwiseBinaryType::ELWSUB, BroadcastType::COL>", "tile_regs_acquire()",
                 "pack_tile<true>(", '#include "api/compute/eltwise_unary/exp.h"'):
        assert call in comp, call
    assert "// softmax.py:23: p = (blk - blk.rowmax()).exp()" in comp
    assert [name for name, _ in p.sfpu] == ["exp", "recip"]
    # one compute kernel, the implicit reader and writer on the two data-movement RISC-Vs
    kinds = sorted((k.kind, k.processor) for k in p.kernels)
    assert kinds == [("compute", 0), ("dataflow", 0), ("dataflow", 1)]


def test_host_program_follows_the_compiled_layout():
    """CB sizes and formats as allocate-l1 chose them; every kernel on every core, with (row, col) as
    its first runtime arguments on logical core (x = col, y = row)."""
    p = softmax_program()
    host = p.host()
    infos = p.compiled.args
    arg_cbs = [cb for cb in host["cbs"] if "index" in cb and cb["index"] < len(infos)]
    for cb in arg_cbs:
        info = infos[cb["index"]]
        r, c = info["block"]
        tile = {"bf16": 2048, "f32": 4096}[info["dtype"]]
        assert cb["total_size"] == info["depth"] * r * c * tile and cb["page_size"] == tile
        assert cb["format"] == info["dtype"]
    gr, gc = p.grid
    for k in host["kernels"]:
        assert k["cores"] == [[0, 0], [gc - 1, gr - 1]]
        assert sorted(tuple(a["core"]) + tuple(a["args"]) for a in k["runtime_args"]) == sorted(
            (c, r, r, c) for r in range(gr) for c in range(gc))
    comp = next(k for k in host["kernels"] if k["kind"] == "compute")
    assert comp["math_fidelity"] == "HiFi4" and comp["fp32_dest_acc_en"] and not comp["dst_full_sync_en"]
    area = [cb for cb in host["cbs"] if "formats" in cb]  # the compute thread's buffers: one area, two views
    assert area and area[0]["total_size"] >= p.compiled.l1.areas[0][1]


@pykernel_gen(grid=(1, 1), block_factors=[(2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)])
def matmul_bias_blocks(a, b, c, y):
    """Several output blocks, each a K loop accumulating in DST and a bias epilogue."""
    a_stream, b_stream = Stream(a), Stream(b)
    mb, nb, kb = a.shape[0] // 64, b.shape[1] // 64, a.shape[1] // 64

    @compute()
    async def comp(a_cb, b_cb, c_cb, y_cb):
        for _ in range(mb * nb):
            acc = fill(0, shape=(64, 64))
            for _ in range(kb):
                acc = acc + a_cb.pop() @ b_cb.pop()
            y_cb.reserve().store(acc + c_cb.pop())

    @datamovement()
    async def reader(a_cb, b_cb, c_cb, y_cb):
        for m in range(mb):
            for n in range(nb):
                for k in range(kb):
                    dma(a_stream[m, k], a_cb.reserve()).wait()
                    dma(b_stream[k, n], b_cb.reserve()).wait()

    return Program(comp, reader)(a, b, c, y)


def matmul_bias_blocks_program() -> TtMetalProgram:
    rng = np.random.default_rng(0)
    a, b, c = rand(rng, (64, 128), "bf16"), rand(rng, (128, 128), "bf16"), rand(rng, (64, 128), "bf16")
    return compile_kernel(matmul_bias_blocks, a, b, c, poisoned((64, 128), "bf16"), backend="tt-metal")


def test_a_loop_reconfigures_what_its_previous_trip_changed():
    """The first op of the compute kernel sits in a loop: compute_kernel_hw_startup configures the engines
    for it, but its later trips start from what the epilogue (an fp32 buffer + bf16 bias) left, so the
    matmul reconfigures SrcA / SrcB inside the loop (before: it unpacked bf16 tiles as fp32, wrong results)."""
    comp = matmul_bias_blocks_program().kernels[0].source
    body = comp[comp.index("for (int32_t"):]
    init = body.index("matmul_init(")
    assert "reconfig_data_format_srca(cb_b);" in body[:init] and "reconfig_data_format_srcb(cb_a);" in body[:init]


def test_implicit_only_kernels_read_on_noc0_and_write_on_noc1():
    """Only the compiler's readers and writers: the readers' kernel (NCRISC) on NoC 0, the writers' (BRISC)
    on NoC 1, tt-metal's preferred NoCs for DRAM reads and writes on Wormhole; a user thread keeps its own."""
    host = softmax_program().host()
    nocs = {k["processor"]: k["noc"] for k in host["kernels"] if k["kind"] == "dataflow"}
    assert nocs == {0: 1, 1: 0}
    user = matmul_bias_blocks_program().host()
    assert {k["processor"]: k["noc"] for k in user["kernels"] if k["kind"] == "dataflow"} == {0: 0, 1: 1}


def test_sfpu_kernel_is_refused_on_the_simulator_naming_op_and_line():
    """What the stand-in compiler cannot build is said plainly, before any device is opened."""
    p = softmax_program()
    with pytest.raises(CompileError) as info:
        TtMetalTarget().run(p, [], None, None)  # refused before touching the device
    text = info.value.render()
    assert "'exp' runs on the SFPU" in text and "also needs recip" in text
    assert re.search(r"softmax\.py:23", text) and "p = (blk - blk.rowmax()).exp()" in text


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def inverse_square(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop() ** -2)

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def two_blocks_held(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        a = x_cb.pop()
        b = x_cb.pop()
        out_cb.reserve().store(a + b)

    return Program(comp)(x, out)


@pytest.mark.parametrize("kernel, words", [
    (inverse_square, ["x ** n only for n >= 0", "x_cb.pop() ** -2"]),
    (two_blocks_held, ["a second popped block of one CB", "tilegrid.cb_wait", "b = x_cb.pop()"]),
])
def test_what_cannot_be_emitted_is_a_compile_error_naming_op_and_line(kernel, words):
    with pytest.raises(CompileError) as info:
        compile_kernel(kernel, rand(np.random.default_rng(1), (64, 32)), poisoned((32, 32)), backend="tt-metal")
    text = info.value.render()
    for w in words:
        assert w in text, (w, text)


def test_row_and_column_indices_compile_to_index_tiles():
    """row_index / col_index: a copy of an index tile a data-movement kernel wrote (causal masks)."""
    p = compile_kernel(causal, rand(np.random.default_rng(1), (32, 32)), poisoned((32, 32)), backend="tt-metal")
    comp = next(s for n, s in p.sources.items() if n.endswith("_comp.cpp"))
    assert "copy_tile(cb_index_tiles, 0, " in comp and "// row_index" in comp
    assert any("tg_float_bits" in s for n, s in p.sources.items() if not n.endswith("_comp.cpp"))


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def causal(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        out_cb.reserve().store(where(row_index((32, 32)) >= 0, blk, blk))

    return Program(comp)(x, out)


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def three_readers(x, out):
    xs = Stream(x)

    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop() + x_cb.pop() + x_cb.pop())

    @datamovement()
    async def r0(x_cb, out_cb):
        dma(xs[core_index(0), 0], x_cb.reserve()).wait()

    @datamovement()
    async def r1(x_cb, out_cb):
        dma(xs[core_index(0), 0], x_cb.reserve()).wait()

    @datamovement()
    async def r2(x_cb, out_cb):
        dma(xs[core_index(0), 0], x_cb.reserve()).wait()

    return Program(comp, r0, r1, r2)(x, out)


def test_three_data_movement_threads_is_a_compile_error():
    with pytest.raises(CompileError) as info:
        compile_kernel(three_readers, rand(np.random.default_rng(2), (32, 32)), poisoned((32, 32)),
                       backend="tt-metal")
    assert "two data-movement RISC-Vs" in info.value.render()


def test_math_fidelity_is_checked():
    mod = example("matmul")
    a, b = rand(np.random.default_rng(3), (64, 64), "bf16"), rand(np.random.default_rng(4), (64, 64), "bf16")
    with pytest.raises(CompileError, match="math_fidelity must be one of"):
        mod.matmul(a, b, poisoned((64, 64), "bf16"), math_fidelity="HiFi5")
    p = compile_kernel(mod.matmul, a, b, poisoned((64, 64), "bf16"), backend="tt-metal")
    assert "matmul_tiles(" in next(s for n, s in p.sources.items() if n.endswith("_comp.cpp"))


def test_compiler_failure_names_kernel_file_and_line(tmp_path):
    """A C++ compile failure reported by the device server becomes tilegrid's error: which kernel
    (tt-metal's build names the RISC-V), which generated file, the compiler's error lines."""
    p = softmax_program()
    log = ("TT_THROW: trisc0 build failed. Log: In file included from chlkc_list.h:26,\n"
           "../chlkc_unpack.cpp:44:9: error: 'exp_tile' was not declared in this scope\n")
    err = DeviceError("compile", "kernel compilation failed", {"compiler_output": log})
    e = device_error(p, err, tmp_path)
    text = e.render()
    comp = next(k for k in p.kernels if k.kind == "compute")
    assert isinstance(e, CompileError) and str(tmp_path / f"{comp.name}.cpp") in text
    assert f"{comp.name}.cpp:44:9: error: 'exp_tile' was not declared" in text
    dm = next(k for k in p.kernels if k.kind == "dataflow" and k.processor == 1)
    e = device_error(p, DeviceError("compile", "failed", {"compiler_output": "ncrisc build failed. Log: x: error: y"}),
                     tmp_path)
    assert f"'{dm.name}'" in e.render() and comp.name not in e.render().split("generated source")[0]


def test_device_hang_and_l1_overflow_are_tilegrid_errors(tmp_path):
    p = softmax_program()
    e = device_error(p, DeviceError("deadlock", "no progress", {"watchdog": "[DEADLOCK cycle=1] ..."}), tmp_path)
    assert isinstance(e, DeadlockError) and "[DEADLOCK" in e.render()
    text = ("TT_THROW @ program.cpp:2567: tt::exception\ninfo:\nStatically allocated circular buffers on core range "
            "[0-0 - 0-0] grow to 1547616 B which is beyond max L1 size of 1499136 B")
    e = device_error(p, DeviceError("runtime", text), tmp_path)
    assert isinstance(e, CompileError) and "1499136 bytes" in e.render() and "block_factors" in e.render()


def test_cli_emits_cpp(capsys):
    """`tilegrid compile FILE --backend tt-metal --emit cpp` prints the kernels of FILE's kernel calls."""
    from tilegrid.cli import main

    assert main(["compile", str(EXAMPLES / "matmul.py"), "--backend", "tt-metal", "--emit", "cpp"]) == 0
    out = capsys.readouterr().out
    assert "// ===== matmul_comp.cpp" in out and "matmul_tiles(cb_A, cb_B" in out
    assert "// ===== matmul_reader.cpp" in out and "noc_async_read_page(" in out
    assert "compiled kernel 'matmul' to tt-metal" in out and "SFPU" not in out


# ---- random programs of the language (tests/fuzz/grammar.py) ----------------------------------------

@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(programs(), st.integers(0, 2**32 - 1))
def test_random_programs_compile_to_tt_metal(prog, seed):
    """Every valid program of the language compiles to tt-metal C++, or gets a compile error that names
    the user's line (a construct this target does not emit) — never an internal failure."""
    note(f"--- program ---\n{prog.source}")
    inputs, out = make_inputs(prog, seed)
    with Loaded(prog.source) as k:
        try:
            p = compile_kernel(k.kernel, *inputs, out, backend="tt-metal")
        except CompileError as e:
            if "bytes of L1" in e.message:
                return
            assert e.loc is not None and "internal" not in e.message, e.render()
            return
    assert any(k.kind == "compute" for k in p.kernels)
    for name, src in p.sources.items():
        assert src.count("{") == src.count("}"), name
        assert "kernel_main()" in src


# ---- SFPU spelling: kernel API (a card with sfpi) or tilegrid's raw routines, per op ---------------------------


def comp_source(p: TtMetalProgram) -> str:
    return next(k.source for k in p.kernels if k.kind == "compute")


def test_sfpu_raw_selects_tilegrids_routines():
    """sfpu="raw": every SFPU op of the softmax is a raw routine (definitions before kernel_main, a MATH call on
    its DST tile), no kernel-API SFPU header or init, nothing the simulated device would refuse."""
    mod = example("softmax")
    x = rand(np.random.default_rng(0), (2, 64, 64), "bf16")
    p = compile_kernel(mod.softmax, x, poisoned((2, 64, 64), "bf16"), backend="tt-metal", sfpu="raw")
    comp = comp_source(p)
    assert p.sfpu == []  # nothing needs sfpi
    assert "exp_tile" not in comp and "recip_tile" not in comp and "eltwise_unary/exp.h" not in comp
    assert re.search(r"MATH\(\(tilegrid_sfpu_exp_[0-9a-f]{8}\(0\)\)\);\n", comp)
    assert re.search(r"MATH\(\(tilegrid_sfpu_recip_[0-9a-f]{8}\(0\)\)\);\n", comp)
    assert comp.index("inline void tilegrid_sfpu_exp_") < comp.index("void kernel_main()")
    assert "static_assert(DST_ACCUM_MODE == true" in comp  # generated for the kernel's fp32 DST


def test_sfpu_per_op_override_mixes_the_two():
    """{"exp": "api"}: exp stays tt-metal's kernel-API call (so the simulated run would refuse it, by name),
    recip is the raw routine ("default": "raw")."""
    mod = example("softmax")
    x = rand(np.random.default_rng(0), (2, 64, 64), "bf16")
    p = compile_kernel(mod.softmax, x, poisoned((2, 64, 64), "bf16"), backend="tt-metal",
                       sfpu={"exp": "api", "default": "raw"})
    comp = comp_source(p)
    assert "exp_tile<false>(0);" in comp and "tilegrid_sfpu_recip_" in comp and "recip_tile(" not in comp
    assert [name for name, _ in p.sfpu] == ["exp"]
    with pytest.raises(CompileError) as info:
        TtMetalTarget().run(p, [], None, None)
    assert "'exp' runs on the SFPU" in info.value.render() and "raw routines that run here" in info.value.render()


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
def tanh_kernel(x, out):
    @compute()
    async def comp(x_cb, out_cb):
        out_cb.reserve().store(x_cb.pop().tanh())

    return Program(comp)(x, out)


def test_sfpu_op_without_raw_routine_is_refused_naming_op_and_line():
    """On the simulated device "auto" falls back to the kernel API where tilegrid has no raw routine (tanh): the
    run is refused before any device opens, naming the op and the user's line; sfpu="raw" names it at compile
    time."""
    x = rand(np.random.default_rng(1), (32, 32))
    with pytest.raises(CompileError) as info:
        tanh_kernel(x, poisoned((32, 32)), backend="tt-metal")
    text = info.value.render()
    assert "'tanh' runs on the SFPU" in text and "no raw SFPU routine for 'tanh'" in text
    assert "out_cb.reserve().store(x_cb.pop().tanh())" in text and "tanh_kernel" in text
    with pytest.raises(CompileError) as info:
        compile_kernel(tanh_kernel, x, poisoned((32, 32)), backend="tt-metal", sfpu="raw")
    text = info.value.render()
    assert "no raw SFPU routine for 'tanh'" in text and "x_cb.pop().tanh()" in text


@pytest.mark.parametrize("option, words", [
    ("fast", ["sfpu='fast' is not a mode"]),
    ({"expp": "raw"}, ["names 'expp', which is no SFPU op"]),
    ({"exp": "sfpi"}, ["'sfpi' is not a mode"]),
])
def test_sfpu_option_mistakes_name_the_kernel(option, words):
    x = rand(np.random.default_rng(2), (32, 32))
    with pytest.raises(CompileError) as info:
        compile_kernel(tanh_kernel, x, poisoned((32, 32)), backend="tt-metal", sfpu=option)
    text = info.value.render()
    assert "kernel 'tanh_kernel'" in text, text
    for w in words:
        assert w in text, text


def test_flash_attention_compiles_to_raw_routines_for_the_simulator():
    """The library FlashAttention (causal, GQA-packed) with sfpu="raw": its SFPU ops (the scaled exp, max, recip,
    where, the comparisons and fills of its masks) are all raw routines; the causal mask's `row % QR` is an index
    tile, not an SFPU remainder."""
    from ml_dtypes import bfloat16

    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, arguments, build_kernel, choose_plan, make_problem

    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 2, 64, 64)).astype(bfloat16)
    k = rng.standard_normal((1, 1, 64, 64)).astype(bfloat16)
    problem = make_problem(q, k, k, True, None, None, None, None, None, False)
    plan = choose_plan(problem, AttentionConfig(grid=(1, 1)), WORMHOLE, "bf16", "tt-metal")
    kernel = build_kernel(plan, WORMHOLE)
    p = compile_kernel(kernel, *arguments(plan, q, k, k), backend="tt-metal", sfpu="raw")
    comp = comp_source(p)
    assert p.sfpu == []
    for routine in ("exp", "max", "recip", "where", "le", "eq", "fill", "sub"):
        assert f"inline void tilegrid_sfpu_{routine}_" in comp, routine
    assert "remainder" not in comp and "_tile_init" not in comp.replace("copy_tile_init", "")


def test_tile_offsets_of_a_subblock_row_are_parenthesised():
    """A subblock's second tile row at run time (sr + 1) in a block two tiles wide is page (sr + 1) * 2: an earlier
    version wrote sr + 1 * 2, and GQA-packed FlashAttention (4-tile-row blocks, 2-row subblocks) read and wrote
    the wrong tiles."""
    from tilegrid.targets.ttmetal.compute import Buf

    b = Buf("cb", "0", (4, 2), "f32", "area")
    assert b.page("sr + 1", 1) == "(sr + 1) * 2 + 1"
    assert b.page("sr", 0) == "sr * 2" and b.page(3, 1) == "7"


def test_on_a_card_sfpu_ops_are_not_refused_and_the_card_environment_is_asked_for(monkeypatch):
    """TILEGRID_TTMETAL_DEVICE=hw: the run goes to a card (the kernel API, no refusal of SFPU ops); without the
    card's Python and tt-metal root the error names both; a bad device name is an error naming the variable."""
    mod = example("softmax")
    x = rand(np.random.default_rng(1), (2, 64, 64), "bf16")
    monkeypatch.setenv("TILEGRID_TTMETAL_DEVICE", "hw")
    monkeypatch.delenv("TILEGRID_TTMETAL_PYTHON", raising=False)
    monkeypatch.delenv("TT_METAL_HOME", raising=False)
    with pytest.raises(TilegridError, match="TILEGRID_TTMETAL_PYTHON.*TT_METAL_HOME") as e:
        mod.softmax(x, poisoned((2, 64, 64), "bf16"), backend="tt-metal")
    assert "SFPU" not in e.value.message and "cannot open its device" in e.value.message
    monkeypatch.setenv("TILEGRID_TTMETAL_DEVICE", "card")
    with pytest.raises(TilegridError, match="TILEGRID_TTMETAL_DEVICE='card'"):
        mod.softmax(x, poisoned((2, 64, 64), "bf16"), backend="tt-metal")
