"""One minimal kernel per compiler bug that random programs (test_random_programs.py) found, each
asserting the correct behaviour: the right answer against float64 NumPy, or a clean TilegridError
naming the user's line. Tests marked xfail(strict=True) fail today; the reason says what tilegrid
does instead. Fixing a bug flips its test to passing (then drop the xfail) — and delete the
matching entry of grammar.KNOWN_BUGS so the fuzzer generates that construct again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, poisoned, rand

from fuzz import regression_kernels as rk
from fuzz.grammar import KNOWN_BUGS
from fuzz.harness import INTERNAL, LEAKS, PACKAGE
from tilegrid.errors import TilegridError


def marked_line(key: str) -> int:
    lines = Path(rk.__file__).read_text().splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if f"ERR[{key}]" in text]
    assert len(hits) == 1, key
    return hits[0]


def assert_clean_error(fn, key: str) -> None:
    """`fn` raises a TilegridError pointing at the line marked ERR[key], with no compiler internals."""
    try:
        fn()
    except TilegridError as e:
        text = e.render()
        assert e.loc is not None and os.path.realpath(e.loc.file) == os.path.realpath(rk.__file__), text
        assert e.loc.line == marked_line(key), f"points at line {e.loc.line}, not {marked_line(key)}:\n{text}"
        assert not INTERNAL.search(text) and PACKAGE not in text, text
        assert not LEAKS.search(f"{e.message}\n{e.note or ''}"), text
        return
    pytest.fail("no TilegridError")


def test_every_known_bug_has_a_regression_test():
    names = {n for n in globals() if n.startswith("test_")}
    assert set(KNOWN_BUGS.values()) <= names, sorted(set(KNOWN_BUGS.values()) - names)


# ---- from the issue -------------------------------------------------------------------------


def test_matmul_result_used_twice(rng):
    x, y = rand(rng, (32, 32)), rand(rng, (32, 32))
    out = poisoned((32, 32))
    rk.matmul_used_twice(x, y, out)
    assert_close(out, 2 * (x.astype(np.float64) @ y), "f32")


def test_matmul_in_with_accumulated_after(rng):
    x, y = rand(rng, (32, 64)), rand(rng, (64, 32))
    for seed in range(4):  # the interleavings under which the reader refills the slot first
        out = poisoned((32, 32))
        rk.matmul_in_with_accumulated_after(x, y, out, schedule="random", seed=seed)
        assert_close(out, x.astype(np.float64) @ y, "f32")


def test_transpose_in_with_used_after(rng):
    x, y = rand(rng, (64, 32)), rand(rng, (64, 32))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for seed in range(4):
        out = poisoned((32, 32))
        rk.transpose_in_with_used_after(x, y, out, schedule="random", seed=seed)
        assert_close(out, y64[:32] @ x64[:32].T + y64[32:] @ x64[32:].T, "f32")


def test_transpose_of_same_block_on_both_sides(rng):
    x = rand(rng, (32, 32))
    out = poisoned((32, 32))
    rk.transpose_both_sides(x, out)
    assert_close(out, x.T.astype(np.float64) @ x.T, "f32")


def test_carried_block_reassigned_to_popped_block(rng):
    x = rand(rng, (64, 32))
    out = poisoned((32, 32))
    rk.carry_popped_block(x, out)
    assert_close(out, x[32:].astype(np.float64), "f32")


def test_carried_block_reassigned_to_popped_block_in_if(rng):
    x = rand(rng, (64, 32))
    out = poisoned((32, 32))
    try:
        rk.carry_popped_block_in_if(x, out)
    except TilegridError as e:
        assert "Poison" not in e.render(), e.render()
        raise
    assert_close(out, x[32:].astype(np.float64), "f32")


def test_runtime_mod_of_negative_follows_python(rng):
    x = rand(rng, (32, 32))
    out = poisoned((32, 32))
    rk.runtime_mod(x, out)
    factor = sum(((i - 2) % 3) * 10 + ((i - 2) % -3) + ((i - 2) // 3) * 100 for i in range(5))
    assert_close(out, x.astype(np.float64) * factor, "f32")


# ---- found by tests/fuzz (new) ----------------------------------------------------------------


def test_runtime_division_by_zero_is_a_clean_error(rng):
    assert_clean_error(lambda: rk.runtime_div_by_zero(rand(rng, (32, 32)), poisoned((32, 32))), "runtime_div_by_zero")


def test_runtime_modulo_by_zero_is_a_clean_error(rng):
    assert_clean_error(lambda: rk.runtime_mod_by_zero(rand(rng, (32, 32)), poisoned((32, 32))), "runtime_mod_by_zero")


def test_compute_filling_an_implicitly_read_input_names_its_line(rng):
    assert_clean_error(lambda: rk.compute_fills_input(rand(rng, (32, 32)), poisoned((32, 32))), "compute_fills_input")
