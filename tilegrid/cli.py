"""`tilegrid compile FILE` and `tilegrid run FILE`: the command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tilegrid import context
from tilegrid.errors import TilegridError


def _run_file(path: str, quiet: bool, argv: list[str] | None = None) -> None:
    """Run a script as `python FILE ARGS...` would (its sys.argv is [FILE, *ARGS]), then restore sys.argv."""
    if not os.path.isfile(path):
        raise TilegridError(f"no such file: {path}", note="give the path of a Python script that calls tilegrid kernels")
    saved = sys.argv
    sys.argv = [path, *(argv or [])]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = saved


def _compile_file(path: str, log: list, **ctx: Any) -> bool:
    """Run the script with its kernels compiled, not run (into `log`): False, with the reason
    printed, when it fails or compiles no kernel. The script's own checks may fail on outputs never
    computed; that is fine once a kernel compiled."""
    try:
        with context.use(mode="compile", log=log, **ctx):
            _run_file(path, quiet=True)
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return False
    except Exception as e:
        if not log:
            print(f"error: {path} failed before calling a kernel: {type(e).__name__}: {e}", file=sys.stderr)
            return False
    if not log:
        print(f"error: {path} called no tilegrid kernel", file=sys.stderr)
        return False
    return True


def _compiled_once(path: str, target: str, key: Callable[[Any], Any]) -> list | None:
    """FILE's kernels compiled for `target`, each distinct program (by `key`) once; None if it failed."""
    log: list = []
    if not _compile_file(path, log, target=target):
        return None
    first: dict = {}
    for p in log:
        first.setdefault(key(p), p)
    return list(first.values())


def cmd_compile_gpu(args: argparse.Namespace) -> int:
    """`--backend gpu`: compile FILE's kernels to Triton; `--emit triton` prints the source."""
    programs = _compiled_once(args.file, "gpu", key=lambda g: g.source)
    if programs is None:
        return 1
    for g in programs:
        if args.emit == "triton":
            print(g.source)
        print(f"# compiled kernel '{g.src.kernel}' to Triton in {g.compile_seconds * 1e3:.1f} ms: grid {g.src.grid}, "
              f"num_warps {g.src.num_warps}, num_stages {g.src.num_stages}")
    return 0


def cmd_compile_ttmetal(args: argparse.Namespace) -> int:
    """`--backend tt-metal`: compile FILE's kernels to tt-metal C++; `--emit cpp` prints the kernels."""
    from tilegrid.targets.ttmetal.spelling import has_raw

    programs = _compiled_once(args.file, "tt-metal", key=lambda p: p.digest)
    if programs is None:
        return 1
    for p in programs:
        if args.emit == "cpp":
            for name, src in p.sources.items():
                print(f"// ===== {name}\n{src}")
        sfpu = sorted({name for name, _ in p.sfpu})
        raw = [n for n in sfpu if has_raw(n)]
        refused = [n for n in sfpu if not has_raw(n)]
        print(f"// compiled kernel '{p.name}' to tt-metal in {p.compiled.compile_seconds * 1e3:.1f} ms: "
              f"{len(p.kernels)} kernels, {len(p.layout.cbs)} CBs"
              + (f"; SFPU ops {', '.join(sfpu)} as kernel-API calls (what a card runs)" if sfpu else "")
              + (f"; the simulated device runs tilegrid's raw routines for {', '.join(raw)}" if raw else "")
              + (f"; it refuses {', '.join(refused)} (no raw routine)" if refused else ""))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    if getattr(args, "backend", "sim") == "gpu":
        return cmd_compile_gpu(args)
    if getattr(args, "backend", "sim") == "tt-metal":
        return cmd_compile_ttmetal(args)
    log: list = []
    dumps: list[tuple[str, str]] = []
    dump = (lambda stage, text: dumps.append((stage, text))) if args.dump_ir else None
    if not _compile_file(args.file, log, target="sim", dump=dump):
        return 1
    for stage, text in dumps:
        print(f"// ----- IR after {stage} -----")
        print(text)
    for p in log:
        c = p.compiled
        gr, gc = c.program.grid_shape
        print(f"compiled kernel '{c.name}' for a {gr}x{gc} grid in {c.compile_seconds * 1e3:.1f} ms "
              f"({len(p.sources)} threads)")
        if args.report:
            print(c.l1.report())
    return 0


def _perf_outputs(summary, directory: str, prefix: str = "") -> list[str]:
    """Write the performance model's trace, summary JSON and plots; returns the paths."""
    import json
    import os

    os.makedirs(directory, exist_ok=True)
    files = [summary.write_trace(os.path.join(directory, f"{prefix}trace.json"))]
    path = os.path.join(directory, f"{prefix}summary.json")
    with open(path, "w") as f:
        json.dump(summary.to_dict(), f, indent=1)
    files.append(path)
    plots = summary.write_plots(directory, prefix)
    files += plots or []
    return files


def _script_args(args: argparse.Namespace) -> list[str]:
    rest = list(args.script_args)
    return rest[1:] if rest[:1] == ["--"] else rest


def cmd_run(args: argparse.Namespace) -> int:
    if args.perf:
        from tilegrid import perf

        with perf.session(args.fidelity, data_format=args.data_format, exp=args.exp) as s:
            try:
                _run_file(args.file, quiet=False, argv=_script_args(args))
            except TilegridError as e:
                print(e.render(), file=sys.stderr)
                return 1
        for i, summary in enumerate(s.results):
            print(summary.text())
            files = _perf_outputs(summary, args.perf, f"{i}_{summary.kernel}_")
            print(f"  wrote {', '.join(files)}" + ("" if len(files) > 2 else " (plots need matplotlib)"))
        return 0
    try:
        _run_file(args.file, quiet=False, argv=_script_args(args))
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return 1
    return 0


def _perf_flags(p: argparse.ArgumentParser, autotune: bool) -> None:
    p.add_argument("--perf", nargs="?", const="tilegrid_perf", default=None, metavar="DIR",
                   help="predict the run's time on the device with the performance model; print the summary and "
                   "write trace.json (Perfetto), summary.json and PNG plots to DIR (default tilegrid_perf)")
    p.add_argument("--fidelity", default="HiFi4", choices=["LoFi", "HiFi2", "HiFi3", "HiFi4"],
                   help="math fidelity of the matmuls, for the time and the numerics (with --perf / --autotune)")
    p.add_argument("--data-format", default=None, choices=["bfp8_b", "bfp4_b"],
                   help="store bf16 inputs and outputs in DRAM and CBs in this block-float format (with --perf / "
                   "--autotune)")
    p.add_argument("--exp", default="accurate", choices=["accurate", "approx"],
                   help="the SFPU exponential every plain exp uses, for the time and the numerics (with --perf / "
                   "--autotune); approx: the fast approximation, within 3.1%%")
    if autotune:
        p.add_argument("--autotune", action="store_true",
                       help="choose q/kv chunks (and the grid when --grid is not given) by predicted time")


class _Progress:
    """An observer that advances a progress bar by K/V chunk steps (two matmuls each)."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def on_op(self, core, thread, op, tiles, loc) -> None:
        if op.name == "tile.matmul":
            self.bar.update(0.5)

    def on_transfer(self, core, thread, kind, nbytes, loc, **detail) -> None:
        pass

    def on_sync(self, core, thread, event, obj, where) -> None:
        pass


def _grid(text: str) -> tuple[int, int]:
    try:
        r, c = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"grid is ROWSxCOLS, e.g. 8x10; got {text!r}") from e
    return r, c


def cmd_attention(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    from ml_dtypes import bfloat16
    from tqdm import tqdm

    from tilegrid import perf
    from tilegrid.device import DEVICES
    from tilegrid.kernels.attention import AttentionConfig, build_kernel, choose_plan, flash_attention, make_problem
    from tilegrid.kernels.attention.plan import arguments_shapes
    from tilegrid.targets import compile_kernel

    dtype = bfloat16 if args.dtype == "bf16" else np.float32
    rng = np.random.default_rng(args.seed)
    kv_heads = args.kv_heads or args.heads
    seq_kv = args.seq_kv or args.seq
    q = rng.standard_normal((args.batch, args.heads, args.seq, args.head_dim)).astype(dtype)
    k = rng.standard_normal((args.batch, kv_heads, seq_kv, args.head_dim)).astype(dtype)
    v = rng.standard_normal((args.batch, kv_heads, seq_kv, args.head_dim)).astype(dtype)
    window = None
    if args.window:
        left, right = (None if x in ("", "none") else int(x) for x in args.window.split(","))
        window = (left, right)
    device = DEVICES[args.device]
    cfg = AttentionConfig(q_chunk=args.q_chunk, kv_chunk=args.kv_chunk, grid=args.grid or device.grid,
                          mcast=args.mcast, acc_dtype=args.acc_dtype, fast_exp=args.fast_exp, gqa_pack=args.gqa_pack)
    t_tune = None
    if args.autotune:
        from tilegrid.kernels.attention import autotune_attention

        t0 = time.perf_counter()
        try:
            cfg, _ = autotune_attention(q.shape, k.shape, causal=args.causal, window=window,
                                        config=replace(cfg, grid=args.grid), device=device, fidelity=args.fidelity,
                                        data_format=args.data_format, dtype=dtype, grid_free=args.grid is None,
                                        exp=args.exp, progress=sys.stderr.isatty())
        except TilegridError as e:
            print(e.render(), file=sys.stderr)
            return 1
        t_tune = time.perf_counter() - t0
    if args.perf:
        return _attention_perf(args, q, k, v, window, cfg, device)
    try:
        plans: list = []
        t_compile = time.perf_counter()
        problem = make_problem(q, k, v, args.causal, None, window, None)
        plan = choose_plan(problem, cfg, device, args.dtype)
        compile_kernel(build_kernel(plan, device), *(perf.placeholder(s, t) for s, t in arguments_shapes(plan)))
        t_compile = time.perf_counter() - t_compile
        print(plan.describe())
        if plan.l1 is not None:
            print(plan.l1.report())
        with tqdm(total=plan.kv_steps, unit="kv chunk", desc="simulating", leave=False, disable=not sys.stderr.isatty()) as bar:
            t0 = time.perf_counter()
            out = flash_attention(q, k, v, causal=args.causal, window=window, config=plan.config, device=device,
                                  observer=_Progress(bar), plan_out=plans)
            seconds = time.perf_counter() - t0
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return 1
    ok = True
    if args.check:
        t_check = time.perf_counter()
        err, tol, ok = _check(args, q, k, v, window, out)
        t_check = time.perf_counter() - t_check
        print(f"relative error vs float64 reference: {err:.3e} ({'PASS' if ok else 'FAIL'}, tolerance {tol:.0e})")
    else:
        print("no check against the float64 reference (--no-check)")
    if t_tune is not None:
        print(f"autotune {t_tune:.2f} s")
    print(f"planning + compile {t_compile:.2f} s" + (" (the plan was compiled while tuning)" if t_tune else ""))
    print(f"simulation {seconds:.2f} s")
    if args.check:
        print(f"float64 reference check {t_check:.2f} s")
    return 0 if ok else 1


def _check(args: argparse.Namespace, q, k, v, window, out) -> tuple[float, float, bool]:
    """(relative error vs the float64 reference, tolerance, pass)."""
    import numpy as np

    from tilegrid.kernels.attention import reference

    ref, _ = reference(q, k, v, causal=args.causal, window=window)
    out64 = np.asarray(out, np.float64)
    err = float(np.linalg.norm(out64 - ref) / np.linalg.norm(ref))
    tol = 1e-2 if args.dtype == "bf16" else 1e-5
    return err, tol, err < tol and not np.isnan(out64).any()


def _attention_perf(args: argparse.Namespace, q, k, v, window, cfg, device) -> int:
    """`tilegrid attention ... --perf DIR`: the run under the timing model. Sizes whose float64
    reference is affordable run in full (numerics of the fidelity and data format, error shown);
    larger ones run timing-only (no arithmetic)."""
    import time

    import numpy as np

    from tilegrid import perf
    from tilegrid.kernels.attention import choose_plan, flash_attention, make_problem, reference

    b, h, sq, _ = q.shape
    timing_only = b * h * sq * k.shape[2] > 2**28
    try:
        plan = choose_plan(make_problem(q, k, v, args.causal, None, window, None), cfg, device, args.dtype)
        print(plan.describe())
        t0 = time.perf_counter()
        with perf.session(args.fidelity, data_format=args.data_format, exp=args.exp, timing_only=timing_only,
                          trace_cores=16) as s:
            out = flash_attention(q, k, v, causal=args.causal, window=window, config=plan.config, device=device)
        seconds = time.perf_counter() - t0
    except TilegridError as e:
        print(e.render(), file=sys.stderr)
        return 1
    ok, t_check = True, None
    if timing_only:
        print("timing-only run (no arithmetic): the problem is too large for a float64 reference check")
    elif not args.check:
        print("no check against the float64 reference (--no-check)")
    else:
        t_check = time.perf_counter()
        ref, _ = reference(q, k, v, causal=args.causal, window=window)
        out64 = np.asarray(out, np.float64)
        err = float(np.linalg.norm(out64 - ref) / np.linalg.norm(ref))
        ok = not np.isnan(out64).any()
        t_check = time.perf_counter() - t_check
        print(f"relative error vs float64 reference at {args.fidelity}"
              f"{', ' + args.data_format if args.data_format else ''}, {args.exp} exp: {err:.3e}")
    summary = s.last
    print(summary.text())
    files = _perf_outputs(summary, args.perf)
    print(f"simulation + model {seconds:.2f} s; wrote {', '.join(files)}"
          + ("" if len(files) > 2 else " (plots need matplotlib)"))
    if t_check is not None:
        print(f"float64 reference check {t_check:.2f} s")
    return 0 if ok else 1


def cmd_setup(args: argparse.Namespace) -> int:
    from tilegrid.targets.ttmetal import setup

    flags = (["--root", args.root] if args.root else []) + (["--smoke"] if args.smoke else []) + \
        (["--print-env"] if args.print_env else [])
    return setup.main(flags)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tilegrid", description="tilegrid: Tensix kernels in Python")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile FILE's kernel calls without simulating them")
    c.add_argument("file")
    c.add_argument("--dump-ir", action="store_true", help="print the IR after the frontend and after every pass")
    c.add_argument("--report", action="store_true", help="print per-core L1 use")
    c.add_argument("--backend", default="sim", choices=["sim", "gpu", "tt-metal"],
                   help="gpu: compile to Triton (no GPU needed); tt-metal: to tt-metal C++ (no device needed)")
    c.add_argument("--emit", default=None, choices=["triton", "cpp"],
                   help="print the generated source (triton with --backend gpu, cpp with --backend tt-metal)")
    c.set_defaults(fn=cmd_compile)
    r = sub.add_parser("run", help="run FILE (its kernels run on the simulator): tilegrid run FILE [-- ARGS...]",
                       usage="tilegrid run [options] FILE [-- ARGS...]")
    r.add_argument("file")
    r.add_argument("script_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="arguments for the script after `--`: its sys.argv is [FILE, ARGS...]")
    _perf_flags(r, autotune=False)
    r.set_defaults(fn=cmd_run)
    a = sub.add_parser("attention", help="run the production FlashAttention on the simulator and check it")
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--heads", type=int, default=8)
    a.add_argument("--kv-heads", type=int, default=None, help="fewer KV heads than heads: GQA / MQA")
    a.add_argument("--seq", type=int, default=2048)
    a.add_argument("--seq-kv", type=int, default=None)
    a.add_argument("--head-dim", type=int, default=64)
    a.add_argument("--causal", action="store_true")
    a.add_argument("--window", default=None, help="LEFT,RIGHT keys around each query (empty = unbounded)")
    a.add_argument("--grid", type=_grid, default=None, help="ROWSxCOLS (default: the device's grid)")
    a.add_argument("--device", default="wormhole_b0", choices=["wormhole_b0", "wormhole_n150", "blackhole_p100a"])
    a.add_argument("--q-chunk", type=int, default=None, help="tiles of 32 query rows per chunk")
    a.add_argument("--kv-chunk", type=int, default=None, help="tiles of 32 key rows per chunk")
    a.add_argument("--mcast", action="store_true", help="share K/V chunks along grid rows by multicast")
    a.add_argument("--fast-exp", action="store_true",
                   help="the scores' exp with the SFPU's fast approximation (as tt-metal's SDPA); the correction "
                   "factor's follows --exp")
    a.add_argument("--gqa-pack", action=argparse.BooleanOptionalAction, default=None,
                   help="stack all Q heads of a K/V group in one work item, so each K/V chunk is read once per group "
                   "(fewer heads only where L1 requires); --no-gqa-pack: one Q head per work item, as tt-metal lays "
                   "GQA out; neither: the planner packs the whole group or fewer heads where L1 or the core count asks")
    a.add_argument("--acc-dtype", default="f32", choices=["f32", "bf16"])
    a.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare the output with a float64 reference (default; its time is printed on its own line); "
                   "--no-check skips it")
    _perf_flags(a, autotune=True)
    a.set_defaults(fn=cmd_attention)
    s = sub.add_parser("setup", help="install what a target needs (tt-metal: ttnn + wolfpine + the stand-in toolchain)")
    s.add_argument("target", choices=["tt-metal"])
    s.add_argument("--root", default=None, help="cache root (default $TILEGRID_TTMETAL_HOME or ~/.cache/tilegrid/ttmetal)")
    s.add_argument("--smoke", action="store_true", help="open the simulated device once even if nothing changed")
    s.add_argument("--print-env", action="store_true", help="print the run environment as shell exports and exit")
    s.set_defaults(fn=cmd_setup)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
