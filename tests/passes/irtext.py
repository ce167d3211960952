"""Pass tests' helpers: wrap hand-written threads in a program, run one pass, FileCheck the output."""

from __future__ import annotations

import io
import tempfile
from contextlib import redirect_stderr
from pathlib import Path

from filecheck.matcher import Matcher
from filecheck.options import parse_argv_options
from xdsl.passes import ModulePass

from tilegrid import ir


def _ints(xs) -> str:
    return "[" + ", ".join(f"#builtin.int<{x}>" for x in xs) + "]"


def arg(name: str, shape: tuple[int, ...] = (32, 32), dtype: str = "f32", block: tuple[int, int] = (1, 1),
        depth: int = 1, output: bool = False) -> str:
    """One entry of `tilegrid.program`'s `args`, as the printer writes it."""
    return (f'{{name = "{name}", shape = {_ints(shape)}, dtype = "{dtype}", block = {_ints(block)}, '
            f"depth = #builtin.int<{depth}>, output = #builtin.int<{int(output)}>}}")


IN_OUT = [arg("x"), arg("out", output=True)]


def program(threads: str, args: list[str] = IN_OUT, grid: tuple[int, int] = (1, 1), dst_capacity: int = 4,
            l1_budget: int = 1466368) -> str:
    """A module holding one `tilegrid.program` whose body is `threads` (generic-format thread ops)."""
    return (
        '"builtin.module"() ({\n'
        f'  "tilegrid.program"() <{{kernel = "k", grid = [#builtin.int<{grid[0]}>, #builtin.int<{grid[1]}>], '
        f"args = [{', '.join(args)}], dst_capacity = #builtin.int<{dst_capacity}>, "
        f"l1_budget = #builtin.int<{l1_budget}>}}> ({{\n"
        f"{threads}\n"
        "  }) : () -> ()\n"
        "}) : () -> ()\n"
    )


def run_pass(p: ModulePass, text: str) -> str:
    """Parse `text` (which must verify), run only `p`, verify, and return the printed result.

    The result must also print, parse and print back identically."""
    module = ir.parse(text)
    module.verify()
    p.apply(ir.context(), module)
    module.verify()
    out = ir.to_text(module)
    assert ir.to_text(ir.parse(out)) == out, "the pass output does not round-trip"
    return out


def apply_pass(p: ModulePass, text: str) -> None:
    """Parse `text` without verifying it and run `p` (for tests of the pass's own errors)."""
    p.apply(ir.context(), ir.parse(text))


def filecheck(output: str, checks: str) -> None:
    """Match `output` against the CHECK lines in `checks` with FileCheck (the `filecheck` package)."""
    with tempfile.TemporaryDirectory() as d:
        check_file, input_file = Path(d, "checks"), Path(d, "input")
        check_file.write_text(checks)
        input_file.write_text(output)
        report = io.StringIO()
        with redirect_stderr(report):
            rc = Matcher.from_opts(parse_argv_options(["filecheck", str(check_file), "--input-file", str(input_file)])).run()
    assert rc == 0, f"FileCheck failed:\n{report.getvalue()}\n--- output ---\n{output}"
