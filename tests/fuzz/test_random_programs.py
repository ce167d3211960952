"""Random programs of the language (tests/fuzz/grammar.py) against a float64 interpretation of the
same program (tests/fuzz/oracle.py, whose docstring states the tolerance rule).

- Valid programs must compile, run and match the interpretation — under the deterministic
  schedule and, for about half of them, also under `schedule="random"` with a drawn seed (a fused
  op reading a CB slot after its release shows there); half are compiled with
  TILEGRID_SUBBLOCK_LOOPS=1 (the simulator then loops over DST subblocks).
- Invalid programs (one mutation of a valid one, grammar.MUTATIONS) must end in a TilegridError
  whose rendered text points at the user's file (and at the mutated line where the mistake has one
  line), with no compiler-internal file, traceback, Python repr or "internal compiler error".

CI runs a small derandomized budget (the whole file in well under a minute on one core);
`-m slow` runs the large one. A failure prints the program's source (hypothesis `note`), its input
seed and schedule; hypothesis shrinks it first. Constructs that trigger known bugs are kept out
by grammar.KNOWN_BUGS (each with an xfail kernel in test_regressions.py).
"""

from __future__ import annotations

import os
import traceback
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st

from fuzz.grammar import MUTATIONS, Program, invalid_programs, programs
from fuzz.harness import NP, Loaded, error_problems, make_inputs
from fuzz.oracle import REJECT_SENS, Unsafe, check, interpret, tolerance
from tilegrid.errors import TilegridError

CI_VALID = int(os.environ.get("TILEGRID_FUZZ_CI_VALID", 120))
CI_INVALID = int(os.environ.get("TILEGRID_FUZZ_CI_INVALID", 200))
SLOW_VALID = int(os.environ.get("TILEGRID_FUZZ_SLOW_VALID", 3000))
SLOW_INVALID = int(os.environ.get("TILEGRID_FUZZ_SLOW_INVALID", 2000))

COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
CI = settings(max_examples=CI_VALID, derandomize=True, **COMMON)
CI_BAD = settings(max_examples=CI_INVALID, derandomize=True, **COMMON)
SLOW = settings(max_examples=SLOW_VALID, **COMMON)
SLOW_BAD = settings(max_examples=SLOW_INVALID, **COMMON)

seeds = st.integers(0, 2**32 - 1)
schedules = st.one_of(st.none(), st.integers(0, 2**16))


def run_valid(prog: Program, seed: int, schedule_seed: int | None, subblock_loops: bool = False) -> None:
    note(f"--- program ---\n{prog.source}")
    note(f"input seed {seed}; random schedule seed {schedule_seed}; TILEGRID_SUBBLOCK_LOOPS={int(subblock_loops)}")
    inputs, out = make_inputs(prog, seed)
    try:
        ref = interpret(prog, inputs, "ref")
        pess = interpret(prog, inputs, "pess")
    except Unsafe:
        reject()  # outside the safe domain (see oracle.py): not a test case
    tol, sens = tolerance(prog, ref, pess)
    if sens > REJECT_SENS:
        reject()  # dominated by rounding: a 1% comparison says nothing
    note(f"tolerance {tol:.1e} (sensitivity {sens:.1e})")
    runs = [("deterministic", {})]
    if schedule_seed is not None:
        runs.append((f"random (seed={schedule_seed})", {"schedule": "random", "seed": schedule_seed}))
    with Loaded(prog.source) as k, subblocks(subblock_loops):
        for what, options in runs:
            out = np.full(out.shape, np.nan, dtype=NP[prog.out.dtype])
            try:
                k.kernel(*inputs, out, **options)
            except TilegridError as e:
                if "bytes of L1" in e.message:
                    reject()  # too big for one core's L1: a documented limit, not a test case
                pytest.fail(f"a valid program was rejected ({what} schedule):\n{e.render()}")
            why = check(prog, out, ref, pess)
            assert why is None, f"wrong answer ({what} schedule): {why}"


@contextmanager
def subblocks(on: bool):
    """TILEGRID_SUBBLOCK_LOOPS=1 while compiling: the simulator loops over DST subblocks (same results)."""
    old = os.environ.get("TILEGRID_SUBBLOCK_LOOPS")
    if on:
        os.environ["TILEGRID_SUBBLOCK_LOOPS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TILEGRID_SUBBLOCK_LOOPS", None)
        else:
            os.environ["TILEGRID_SUBBLOCK_LOOPS"] = old


def run_invalid(prog: Program, seed: int) -> None:
    note(f"--- program (mutation {prog.mutation!r}, expected line {prog.expect_line}) ---\n{prog.source}")
    inputs, out = make_inputs(prog, seed)
    with Loaded(prog.source) as k:
        try:
            k.kernel(*inputs, out)
        except Exception as e:  # noqa: BLE001 - any exception is judged below
            note("".join(traceback.format_exception(e)))
            problems = error_problems(e, prog, k.path)
        else:
            problems = [f"the mistake ({prog.mutation}) was accepted without an error"]
    assert not problems, "\n".join(problems)


@CI
@given(programs(), seeds, schedules, st.booleans())
def test_valid_programs_match_float64(prog, seed, schedule_seed, subblock_loops):
    run_valid(prog, seed, schedule_seed, subblock_loops)


@CI_BAD
@given(invalid_programs(), seeds)
def test_invalid_programs_end_in_a_clean_error(prog, seed):
    run_invalid(prog, seed)


@pytest.mark.slow
@SLOW
@given(programs(), seeds, schedules, st.booleans())
def test_valid_programs_match_float64_large(prog, seed, schedule_seed, subblock_loops):
    run_valid(prog, seed, schedule_seed, subblock_loops)


@pytest.mark.slow
@SLOW_BAD
@given(invalid_programs(), seeds)
def test_invalid_programs_end_in_a_clean_error_large(prog, seed):
    run_invalid(prog, seed)


def test_every_mutation_applies():
    """Each mutation kind can be applied to some generated program (so the invalid-program test covers it)."""
    seen: set[str] = set()

    @settings(max_examples=1500, derandomize=True, **COMMON)
    @given(st.data())
    def draw(data):
        kind = data.draw(st.sampled_from(MUTATIONS))
        data.draw(invalid_programs(kinds=(kind,)))
        seen.add(kind)

    draw()
    assert seen == set(MUTATIONS), f"never applied: {sorted(set(MUTATIONS) - seen)}"
