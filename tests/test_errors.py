"""Bad input: every user mistake gets a clear error naming the kernel, the user's line and a fix.

Each kernel lives in tests/error_kernels/ (thread functions are parsed from source, so they must
be in files); its offending line carries a `# ERR[key]` marker and the tests assert that exact
line number. A rendered error must name the kernel, point at `file:line` of the user's source,
quote that line, give a `note`, and mention no file of the compiler itself.

Tests marked xfail(strict=True) describe the error as it should be; each reason says what
tilegrid does instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from error_kernels import compile_mistakes as cm
from error_kernels import inputs as ins
from error_kernels import runtime_mistakes as rm
from error_kernels import unsupported as un
from helpers import poisoned, rand

import tilegrid
from tilegrid import Program, compute, pykernel_gen
from tilegrid.errors import CompileError, DeadlockError, TilegridError

KERNELS = Path(__file__).parent / "error_kernels"
PACKAGE = str(Path(tilegrid.__file__).parent)
# A file of the compiler itself (not a user file that happens to sit under a folder named tilegrid).
INTERNAL = re.compile(r"tilegrid[/\\](?:(?:frontend|passes|sim|codegen|ir|lang|kernels|perf)[/\\]\w+|\w+)\.py")


def marked_line(module, key: str, tag: str = "ERR") -> int:
    """The 1-based line of `module`'s file that carries the marker `# ...TAG[key]`."""
    lines = Path(module.__file__).read_text().splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if f"{tag}[{key}]" in text]
    assert len(hits) == 1, f"marker {tag}[{key}] found {len(hits)} times in {module.__file__}"
    return hits[0]


def source_line(module, line: int) -> str:
    return Path(module.__file__).read_text().splitlines()[line - 1].strip()


def check(
    e: TilegridError,
    kernel: str,
    module,
    key: str,
    *words: str,
    note: bool = True,
) -> str:
    """Assert the rendered error names `kernel`, points at the marked line and has a note."""
    text = e.render()
    first = text.splitlines()[0]
    line = marked_line(module, key)
    assert f"kernel '{kernel}'" in first, text
    assert e.loc is not None, f"no source location:\n{text}"
    assert os.path.realpath(e.loc.file) == os.path.realpath(module.__file__), text
    assert e.loc.line == line, f"points at line {e.loc.line}, expected {line}:\n{text}"
    assert f"--> {e.loc.file}:{line}:" in text, text
    assert source_line(module, line) in text, f"the source line is not quoted:\n{text}"
    if note:
        assert e.note, f"no note with a fix:\n{text}"
        assert "= note: " in text, text
    for w in words:
        assert w.lower() in e.message.lower(), f"{w!r} not in the message:\n{text}"
    assert not INTERNAL.search(text) and PACKAGE not in text, f"the message names a compiler-internal file:\n{text}"
    assert "Traceback" not in text, text
    return text


def raises(fn: Callable[[], object], cls: type[TilegridError] = TilegridError) -> TilegridError:
    with pytest.raises(cls) as info:
        fn()
    return info.value


def out_like(shape) -> np.ndarray:
    return poisoned(shape)


# ---- the kernel's inputs and declaration --------------------------------------------------


def test_shape_not_multiple_of_32(rng):
    e = raises(lambda: ins.exp_kernel(rand(rng, (48, 64)), out_like((48, 64))), CompileError)
    check(e, "exp_kernel", ins, "exp_kernel", "'x'", "(48, 64)", "multiple")


def test_unsupported_dtype_float64(rng):
    x = rng.standard_normal((32, 32))  # float64
    e = raises(lambda: ins.exp_kernel(x, out_like((32, 32))), CompileError)
    text = check(e, "exp_kernel", ins, "exp_kernel", "'x'", "float64")
    assert "bfloat16" in text and "float32" in text


def test_block_factors_do_not_divide(rng):
    e = raises(lambda: ins.bf_kernel(rand(rng, (64, 96)), out_like((64, 96))), CompileError)
    check(e, "bf_kernel", ins, "bf_kernel", "block_factors", "(2, 2)", "(64, 96)")


def test_grid_larger_than_device(rng):
    e = raises(lambda: ins.big_grid(rand(rng, (288, 384)), out_like((288, 384))), CompileError)
    check(e, "big_grid", ins, "big_grid", "9x12", "8x10")


def test_l1_overflow_names_bytes_and_line(rng):
    e = raises(lambda: ins.l1_overflow(rand(rng, (512, 512)), out_like((512, 512))), CompileError)
    check(e, "l1_overflow", ins, "l1_overflow", "bytes", str(1432 * 1024))


def test_kernel_builds_no_program(rng):
    e = raises(lambda: ins.no_program(rand(rng, (32, 32)), out_like((32, 32))))
    check(e, "no_program", ins, "no_program", "no Program")


def test_block_factors_longer_than_arguments(rng):
    e = raises(lambda: ins.bf_too_long(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "bf_too_long", ins, "bf_too_long", "3 entries", "2 tensor arguments")


def test_kernel_named_once(rng):
    e = raises(lambda: ins.exp_kernel(rand(rng, (48, 64)), out_like((48, 64))))
    first = e.render().splitlines()[0]
    assert first.count("exp_kernel") == 1, first


# ---- thread bodies: compile errors ---------------------------------------------------------


def test_wrong_number_of_cb_parameters(rng):
    e = raises(lambda: cm.wrong_cb_count(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "wrong_cb_count", cm, "wrong_cb_count", "1 CB parameter", "2 tensor arguments")


def test_matmul_inner_dims_mismatch(rng):
    e = raises(lambda: cm.matmul_inner(rand(rng, (32, 64)), rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "matmul_inner", cm, "matmul_inner", "inner", "32x64", "32x32")


def test_broadcast_shape_mismatch(rng):
    e = raises(
        lambda: cm.broadcast_mismatch(rand(rng, (32, 64)), rand(rng, (64, 32)), out_like((32, 64))), CompileError
    )
    check(e, "broadcast_mismatch", cm, "broadcast_mismatch", "broadcast", "32x64", "64x32")


def test_exp_approx_must_be_a_constant_bool(rng):
    e = raises(lambda: cm.exp_approx_not_constant(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = check(e, "exp_approx_not_constant", cm, "exp_approx_not_constant", "approx", "True or False")
    assert "approx=True" in e.note, text


def test_block_has_no_such_method(rng):
    e = raises(lambda: cm.no_such_method(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = check(e, "no_such_method", cm, "no_such_method", "'foo'")
    assert "exp" in e.note and "transpose" in e.note, text


@pytest.mark.parametrize(
    "kernel, key, construct",
    [
        (un.uses_while, "while", "While"),
        (un.uses_try, "try", "Try"),
        (un.uses_lambda, "lambda", "Lambda"),
        (un.uses_listcomp, "listcomp", "ListComp"),
        (un.uses_nested_def, "nested_def", "FunctionDef"),
        (un.uses_for_over_list, "for_list", "range"),
    ],
)
def test_unsupported_python_construct(rng, kernel, key, construct):
    e = raises(lambda: kernel(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, kernel.__name__, un, key, construct)


@pytest.mark.parametrize("kernel, key, words", [
    (un.uses_np_mean, "np_mean", ("'numpy.mean'", "not a tilegrid operation", "x.rowsum()")),
    (un.uses_np_clip, "np_clip", ("'numpy.clip'", "not a tilegrid operation", "x.clamp(lo, hi)")),
])
def test_numpy_functions_that_are_not_tilegrid_ops_name_the_block_method(rng, kernel, key, words):
    e = raises(lambda: kernel(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = check(e, kernel.__name__, un, key, *words[:2])
    assert words[2] in e.note and "np.exp(x) is exp(x)" in e.note, text


@pytest.mark.parametrize("kernel, words", [
    (cm.dma_read_never_waited, ("race", "CB 'x_cb'", "never waited", "pushed")),
    (cm.dma_waited_on_one_path, ("race", "CB 'x_cb'", "the path that does not wait")),
    (cm.dma_write_never_waited, ("race", "CB 'out_cb'", "never waited", "released")),
    (cm.mcast_before_wait, ("race", "CB 'x_cb'", "never waited", "multicast")),
])
def test_dma_never_waited_before_its_block_is_used_is_a_race(rng, kernel, words):
    """On hardware a DMA's block may not have landed (or been read) until its handle is waited: an
    error naming the DMA's line, where the simulator would have given the right answer."""
    e = raises(lambda: kernel(rand(rng, (32, 64)), out_like((32, 64))), CompileError)
    text = check(e, kernel.__name__, cm, kernel.__name__, *words)
    assert ".wait()" in e.note, text


def test_the_simulator_proves_a_dma_race_the_compiler_let_through(rng):
    """The IR of a correct reader with its dma_wait deleted (as a faulty pass might): the simulator
    refuses to push the block while the DMA filling it is in flight, naming the DMA's line."""
    from tilegrid import ir
    from tilegrid.targets import compile_kernel
    from tilegrid.targets.compile import parse_compiled
    from tilegrid.targets.sim import run_compiled

    x, out = rand(rng, (32, 64)), out_like((32, 64))
    compiled = compile_kernel(rm.waited_read, x, out).compiled
    text = ir.to_text(compiled.module)
    at = f"{Path(rm.__file__).name}:{marked_line(rm, 'waited_read')}:"
    cut = [line for line in text.splitlines() if not ("tilegrid.dma_wait" in line and at in line)]
    assert len(cut) == len(text.splitlines()) - 1
    e = raises(lambda: run_compiled(parse_compiled("\n".join(cut)), [x, out], rm.waited_read.config))
    assert "race" in e.message and "before the DMA filling it" in e.message, e.render()
    assert e.loc.line == marked_line(rm, "waited_read"), e.render()


def test_undefined_name_in_roadmap_fragment(rng):
    e = raises(lambda: cm.undefined_name(rand(rng, (32, 32)), rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = check(e, "undefined_name", cm, "undefined_name", "'K_block'", "not defined")
    assert "define" in e.note, text


def test_empty_thread_body_fragment(rng):
    e = raises(lambda: cm.empty_body(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "empty_body", cm, "empty_body", "empty")


def test_read_reserved_block_before_fill(rng):
    e = raises(lambda: cm.read_before_fill(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "read_before_fill", cm, "read_before_fill", "reserved", "before it is filled", "out_cb")


def test_store_wrong_shaped_block(rng):
    e = raises(lambda: cm.store_wrong_shape(rand(rng, (32, 64)), out_like((32, 32))), CompileError)
    check(e, "store_wrong_shape", cm, "store_wrong_shape", "32x64", "32x32", "out_cb")


def test_fill_shape_not_whole_tiles(rng):
    e = raises(lambda: cm.fill_bad_shape(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "fill_bad_shape", cm, "fill_bad_shape", "(32, 48)", "whole tiles")


def test_dma_wrong_argument_kinds(rng):
    e = raises(lambda: cm.dma_wrong_kinds(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "dma_wrong_kinds", cm, "dma_wrong_kinds", "dma()", "CB 'x_cb'", "Stream")


def test_carried_loop_variable_changes_shape(rng):
    e = raises(lambda: cm.carried_shape_change(rand(rng, (64, 32)), out_like((32, 32))), CompileError)
    check(e, "carried_shape_change", cm, "carried_shape_change", "'acc'", "32x32", "32x1")


def test_block_used_after_release_in_loop(rng):
    e = raises(lambda: cm.used_after_release(rand(rng, (64, 32)), out_like((32, 32))), CompileError)
    check(e, "used_after_release", cm, "used_after_release", "'blk'", "loop")


def test_block_used_after_with_release(rng):
    e = raises(lambda: cm.used_after_with(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "used_after_with", cm, "used_after_with", "after its release", "x_cb")


def test_stream_index_out_of_range_constant(rng):
    e = raises(lambda: cm.stream_index_const(rand(rng, (64, 32)), out_like((32, 32))), CompileError)
    check(e, "stream_index_const", cm, "stream_index_const", "stream index 2", "out of range", "'x'")


def test_output_cb_popped_by_compute_and_writer(rng):
    e = raises(lambda: cm.output_popped_twice(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, "output_popped_twice", cm, "output_popped_twice", "'out'", "compute", "data-movement")
    for key, tag in (("output_popped_twice", "ERR"), ("output_popped_twice", "ALSO")):
        line = marked_line(cm, key, tag)
        assert f"line {line}" in e.message or f":{line}:" in e.message, e.render()


@pytest.mark.parametrize(
    "kernel, what",
    [(cm.api_outside_thread, "fill()"), (cm.core_index_outside_thread, "core_index()")],
)
def test_tilegrid_function_outside_thread(rng, kernel, what):
    e = raises(lambda: kernel(rand(rng, (64, 32)), out_like((64, 32))))
    check(e, kernel.__name__, cm, kernel.__name__, what, "inside")


@pytest.mark.parametrize(
    "kernel, words",
    [
        pytest.param(cm.returns_value, ("returns nothing",), id="return-value"),
        pytest.param(cm.core_index_bad_dim, ("core_index()", "got 2"), id="core_index-dim"),
        pytest.param(cm.if_on_block, ("condition", "block"), id="if-on-block"),
        pytest.param(cm.rowmax_wrong_dim, ("rowmax()", "dim=0"), id="rowmax-dim"),
    ],
)
def test_more_thread_mistakes(rng, kernel, words):
    e = raises(lambda: kernel(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    check(e, kernel.__name__, cm, kernel.__name__, *words)


def test_thread_source_not_available(rng):
    ns: dict = {}
    src = (
        "@pykernel_gen(grid=(1, 1))\n"
        "def exec_kernel(x, out):\n"
        "    @compute()\n"
        "    async def comp(x_cb, out_cb):\n"
        "        o = out_cb.reserve()\n"
        "        o.store(x_cb.pop().exp())\n"
        "    return Program(comp)(x, out)\n"
    )
    exec(src, {"pykernel_gen": pykernel_gen, "compute": compute, "Program": Program}, ns)
    e = raises(lambda: ns["exec_kernel"](rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = e.render()
    assert text.startswith("error in kernel 'exec_kernel'"), text
    assert "source" in e.message and ".py file" in (e.note or ""), text
    assert not INTERNAL.search(text), text


def test_unused_value_does_not_crash_the_compiler(rng):
    x = rand(rng, (32, 32))
    out = out_like((32, 32))
    cm.unused_value(x, out)
    np.testing.assert_allclose(out, x * 2.0, rtol=1e-6)


# ---- run time: simulator errors and deadlocks ---------------------------------------------


def test_stream_index_out_of_range_at_run_time(rng):
    e = raises(lambda: rm.stream_index_runtime(rand(rng, (64, 32)), out_like((64, 32))))
    text = check(e, "stream_index_runtime", rm, "stream_index_runtime", "stream index 2", "out of range", "'x'")
    assert "core (1, 0)" in text and "reader" in text, text


def test_deadlock_pop_twice_push_once(rng):
    """The cause (comp pops a block its finished reader never pushes) comes first, with its line and
    source; the implicit writer only waits behind it, so no note about implicit data movement."""
    e = raises(lambda: rm.double_pop(rand(rng, (32, 64)), out_like((32, 64))), DeadlockError)
    text = check(e, "double_pop", rm, "double_pop", "deadlock")
    line = marked_line(rm, "double_pop")
    lines = text.splitlines()
    cause = lines.index("waiting for what no running thread will do (the cause):")
    behind = lines.index("blocked behind them:")
    comp = [i for i, s in enumerate(lines) if "thread 'comp' on cores (0, 0), (0, 1): pops CB 'x'" in s]
    assert len(comp) == 1 and cause < comp[0] < behind, text
    assert f"{rm.__file__}:{line}:" in lines[comp[0]] and "'reader' has finished" in lines[comp[0] + 1], text
    assert source_line(rm, line) in lines[comp[0] + 2], text
    writer = [i for i, s in enumerate(lines) if "thread 'implicit_writer_out'" in s]
    assert len(writer) == 1 and writer[0] > behind and "waits for 'comp' to push" in lines[writer[0] + 1], text
    assert "implicit" not in e.note and "shard" not in e.note, text


def test_deadlock_on_a_semaphore_points_at_the_wait_not_its_symptoms(rng):
    e = raises(lambda: rm.semaphore_never_set(rand(rng, (64, 64)), out_like((64, 64))), DeadlockError)
    text = check(e, "semaphore_never_set", rm, "semaphore_never_set", "semaphore 0 to equal 1")
    lines = text.splitlines()
    behind = lines.index("blocked behind them:")
    reader = [i for i, s in enumerate(lines) if "thread 'reader' on cores (0, 0), (0, 1), (1, 0), (1, 1):" in s]
    assert len(reader) == 1 and reader[0] < behind and "no thread of the kernel will ever set" in lines[reader[0] + 1]
    symptom = marked_line(rm, "symptom", "DEADLOCK")
    comp = [i for i, s in enumerate(lines) if "thread 'comp'" in s]
    assert len(comp) == 1 and comp[0] > behind and f":{symptom}:" in lines[comp[0]], text
    assert "semaphore" in e.note and "implicit" not in e.note, text


def test_deadlock_report_has_no_empty_locations(rng):
    e = raises(lambda: rm.double_pop(rand(rng, (32, 64)), out_like((32, 64))), DeadlockError)
    for s in e.message.splitlines():
        if s.strip().startswith("core ("):
            assert not s.rstrip().endswith(" at"), e.render()


def error_or_warning(fn: Callable[[], object], kernel: str, module, key: str, *words: str) -> None:
    """`fn` must raise a TilegridError at the marked line, or warn naming that line."""
    line = marked_line(module, key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
        except TilegridError as e:
            check(e, kernel, module, key, *words)
            return
    msgs = [str(w.message) for w in caught]
    assert any(
        all(x in m for x in words) and (f"line {line}" in m or f":{line}:" in m) for m in msgs
    ), f"no error and no warning naming line {line}: {msgs}"


def test_two_cores_write_the_same_output_block(rng):
    x = rand(rng, (64, 32))
    error_or_warning(lambda: rm.same_output_block(x, out_like((64, 32))), "same_output_block", rm,
                     "same_output_block", "'out'")


def test_an_output_without_num_outs_is_named_with_the_fix(rng):
    x = rand(rng, (32, 32))
    e = raises(lambda: rm.forgot_num_outs(x, out_like((32, 32)), out_like((32, 32))))
    text = check(e, "forgot_num_outs", rm, "forgot_num_outs", "'out'", "is an input of the kernel")
    assert "num_outs" in e.note, text


def test_astype_takes_a_known_format(rng):
    e = raises(lambda: cm.astype_unknown(rand(rng, (32, 32)), out_like((32, 32))), CompileError)
    text = check(e, "astype_unknown", cm, "astype_unknown", "'bf16' or 'f32'", "'f16'")
    assert "astype" in e.note, text


def test_more_pushes_than_pops(rng):
    x = rand(rng, (32, 32))
    error_or_warning(lambda: rm.extra_push(x, out_like((32, 32))), "extra_push", rm, "extra_push", "'out'")


# ---- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["run", "compile"])
def test_cli_prints_rendered_error_without_traceback(cmd):
    script = KERNELS / "cli_error.py"
    line = next(i + 1 for i, s in enumerate(script.read_text().splitlines()) if "ERR[cli]" in s)
    root = Path(__file__).parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "tilegrid.cli", cmd, str(script)],
        capture_output=True, text=True, timeout=60, cwd=root,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    err = proc.stderr
    assert "error in kernel 'bad_matmul'" in err, err
    assert f"cli_error.py:{line}:" in err, err
    assert "c = a_cb.pop() @ b_cb.pop()" in err and "= note:" in err, err
    assert not INTERNAL.search(err), err


# ---- where only the note is missing, the rest is guarded ----------------------------------


@pytest.mark.parametrize(
    "module, kernel, shapes, words",
    [
        (ins, "bf_too_long", [(32, 32), (32, 32)], ("3 entries", "2 tensor arguments")),
        (cm, "dma_wrong_kinds", [(32, 32), (32, 32)], ("dma()", "CB 'x_cb'", "Stream")),
        (cm, "used_after_release", [(64, 32), (32, 32)], ("'blk'", "loop")),
        (cm, "stream_index_const", [(64, 32), (32, 32)], ("stream index 2", "out of range", "'x'")),
        (cm, "core_index_bad_dim", [(32, 32), (32, 32)], ("core_index()", "got 2")),
        (cm, "if_on_block", [(32, 32), (32, 32)], ("condition", "block")),
        (cm, "rowmax_wrong_dim", [(32, 32), (32, 32)], ("rowmax()", "dim=0")),
        (rm, "stream_index_runtime", [(64, 32), (64, 32)], ("stream index 2", "out of range", "'x'")),
    ],
)
def test_kernel_line_and_message_even_without_note(rng, module, kernel, shapes, words):
    """The xfail tests above wait for a note; the kernel, line and message must already be right."""
    *inputs, out_shape = shapes
    e = raises(lambda: getattr(module, kernel)(*(rand(rng, s) for s in inputs), out_like(out_shape)))
    check(e, kernel, module, kernel, *words, note=False)


@pytest.mark.parametrize("cmd", ["run", "compile"])
def test_cli_missing_file_is_a_clear_error(cmd, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tilegrid.cli", cmd, str(tmp_path / "nope.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_deadlock_with_implicit_data_movement_explains_the_shard(rng):
    from tilegrid import Program, compute, pykernel_gen

    @pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])
    def one_block(x, out):
        @compute()
        async def comp(x_cb, out_cb):
            out_cb.reserve().store(x_cb.pop())

        return Program(comp)(x, out)

    with pytest.raises(DeadlockError) as e:
        one_block(rand(rng, (64, 32)), out_like((64, 32)))  # the shard holds 2 blocks, the kernel moves 1
    text = e.value.render()
    assert "implicit_writer_out" in text and "'comp' has finished without a matching push" in text, text
    assert "core's own shard" in e.value.note, text


def test_the_same_kernel_in_two_files_is_reported_in_each_own_file(tmp_path):
    """Two files with the same kernel text compile to equal code objects; each error still points
    at its own file and line (the frontend's parse cache is per code object, not per equal code)."""
    import importlib.util

    src = (
        "from tilegrid import Program, compute, pykernel_gen\n"
        "from tilegrid.lang import fill\n\n\n"
        "@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1)])\n"
        "def kern(a, out):\n"
        "    @compute()\n"
        "    async def comp(a_cb, out_cb):\n"
        "        x = a_cb.pop()\n"
        "        out_cb.reserve().store(x + fill(1.0, (64, 64)))\n\n"
        "    return Program(comp)(a, out)\n"
    )
    x = rand(np.random.default_rng(3), (32, 32))
    for name in ("first", "second"):
        path = tmp_path / f"{name}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(f"tilegrid_twin_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(CompileError) as info:
            module.kern(x, poisoned((32, 32)))
        assert os.path.realpath(info.value.loc.file) == os.path.realpath(path)
        assert f"{path}:10:" in info.value.render()
