"""`tilegrid compile FILE` and `tilegrid run FILE`: the command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import runpy
import sys

from tilegrid.errors import TilegridError


def _run_file(path: str, quiet: bool) -> None:
    sys.argv = [path]
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        runpy.run_path(path, run_name="__main__")


def cmd_compile(args: argparse.Namespace) -> int:
    from tilegrid import runner
    from tilegrid.lang import kernel

    kernel._overrides["mode"] = "compile"
    runner._cache.clear()
    runner.compile_log.clear()
    dumps: list[tuple[str, str]] = []
    if args.dump_ir:
        orig = runner.compile_threads

        def compile_with_dump(*a, **k):
            return orig(*a, **k, dump=lambda stage, text: dumps.append((stage, text)))

        runner.compile_threads = compile_with_dump
    try:
        _run_file(args.file, quiet=True)
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except Exception as e:  # the script's own checks may fail on unsimulated (NaN) outputs
        if not runner.compile_log:
            print(f"error: {args.file} failed before calling a kernel: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    finally:
        kernel._overrides.clear()
    if not runner.compile_log:
        print(f"error: {args.file} called no tilegrid kernel", file=sys.stderr)
        return 1
    for stage, text in dumps:
        print(f"// ----- IR after {stage} -----")
        print(text)
    for c in runner.compile_log:
        prog = c.program
        gr, gc = prog.grid_shape
        print(f"compiled kernel '{prog.kernel.data}' for a {gr}x{gc} grid in {c.compile_seconds * 1e3:.1f} ms "
              f"({len(c.sources)} threads)")
        if args.report:
            print(c.l1.report())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        _run_file(args.file, quiet=False)
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tilegrid", description="tilegrid: Tensix kernels in Python")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile FILE's kernel calls without simulating them")
    c.add_argument("file")
    c.add_argument("--dump-ir", action="store_true", help="print the IR after the frontend and after every pass")
    c.add_argument("--report", action="store_true", help="print per-core L1 use")
    c.set_defaults(fn=cmd_compile)
    r = sub.add_parser("run", help="run FILE (its kernels run on the simulator)")
    r.add_argument("file")
    r.set_defaults(fn=cmd_run)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
