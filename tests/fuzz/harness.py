"""Running a generated program: its source as a module file, fresh inputs, the kernel call, and the
checks on what comes back (a result against the oracle, or a clean error)."""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

import tilegrid
from fuzz.grammar import BF16, Program
from tilegrid.errors import TilegridError

NP = {"bf16": bfloat16, "f32": np.float32}
PACKAGE = str(Path(tilegrid.__file__).parent)
# A file of the compiler itself (as tests/test_errors.py defines it).
INTERNAL = re.compile(r"tilegrid[/\\](?:(?:frontend|passes|sim|codegen|ir|lang|kernels|perf)[/\\]\w+|\w+)\.py")
# What an error meant for a user must not show: Python reprs of compiler objects, internal errors.
LEAKS = re.compile(r"Poison\(|SSAValue|<xdsl|object at 0x|internal compiler error|Traceback|"
                   r"\b(?:ValueError|KeyError|AttributeError|TypeError|NotImplementedError|AssertionError)\b")

_dir: str | None = None
_ids = itertools.count()


def workdir() -> str:
    global _dir
    if _dir is None:
        _dir = tempfile.mkdtemp(prefix="tilegrid_fuzz_")
        atexit.register(shutil.rmtree, _dir, True)
    return _dir


class Loaded:
    """A program's source written to its own .py file and imported (tilegrid parses thread sources)."""

    def __init__(self, source: str) -> None:
        k = next(_ids)
        self.path = os.path.join(workdir(), f"fuzz_kernel_{os.getpid()}_{k}.py")
        with open(self.path, "w") as f:
            f.write(source)
        self.module_name = f"tilegrid_fuzz_kernel_{os.getpid()}_{k}"
        spec = importlib.util.spec_from_file_location(self.module_name, self.path)
        assert spec is not None and spec.loader is not None
        self.module = importlib.util.module_from_spec(spec)
        sys.modules[self.module_name] = self.module
        spec.loader.exec_module(self.module)
        self.kernel = self.module.kern

    def close(self) -> None:
        """Forget the module and its compiled kernels (the compile cache keys on code objects)."""
        from tilegrid.targets.compile import clear_cache

        sys.modules.pop(self.module_name, None)
        clear_cache()

    def __enter__(self) -> Loaded:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_inputs(prog: Program, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Fresh standard-normal inputs (never zeros) in each input's format, and a NaN-poisoned output."""
    rng = np.random.default_rng(seed)
    inputs = []
    for k, a in enumerate(prog.inputs):
        shape = a.shape(prog.grid)
        if prog.ragged_input == k:
            shape = (shape[0], shape[1] + 16)
        x = rng.standard_normal(shape)
        inputs.append(x if prog.float64_input == k else x.astype(NP[a.dtype]))
    out = np.full(prog.out.shape(prog.grid), np.nan, dtype=NP[prog.out.dtype])
    return inputs, out


def error_problems(e: BaseException, prog: Program, path: str) -> list[str]:
    """What is wrong with how `e` reports the mistake in `prog` (empty: a clean error)."""
    if not isinstance(e, TilegridError):
        return [f"raised {type(e).__name__} (not a TilegridError): {e}"]
    text = e.render()
    problems = []
    if e.loc is None:
        problems.append("the error names no source location")
    elif os.path.realpath(e.loc.file) != os.path.realpath(path):
        problems.append(f"the error points at {e.loc.file}, not the user's file")
    if prog.expect_line is not None and f"{path}:{prog.expect_line}:" not in text \
            and f"line {prog.expect_line}" not in e.message:
        problems.append(f"the error does not name line {prog.expect_line}")
    if INTERNAL.search(text) or PACKAGE in text:
        problems.append("the error names a compiler-internal file")
    m = LEAKS.search(f"{e.message}\n{e.note or ''}")  # (not the quoted user line)
    if m:
        problems.append(f"the error shows compiler internals ({m.group(0)!r})")
    return [p + "\n" + text for p in problems]


def uses_bf16(prog: Program) -> bool:
    return any(a.dtype == BF16 for a in prog.args) or "bf16" in prog.source
