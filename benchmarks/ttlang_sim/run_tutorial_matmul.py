#!/usr/bin/env python3
"""Time tt-lang-sim's own bundled matmul tutorial at a chosen size (reference point).

The issue's figure ("about 0.9 s at 2048^3 on an 8x8 grid") is for this
tutorial: ``ttl/tutorials/matmul/step_4_multinode_grid_full.py`` as shipped in
the tt-lang-sim wheel (y = relu(A @ B + C), 4x4x4-tile blocks, accumulator
round-tripped through a DFB).  This script does not copy that code: it reads
the installed file, changes only the problem size and wraps the operation
call in ``time.perf_counter``, then runs it under the simulator exactly as the
``tt-lang-sim`` launcher would.

    /work/ttlang-venv/bin/python benchmarks/ttlang_sim/run_tutorial_matmul.py --size 2048 --grid 8x8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--grid", default="8x8", help="ROWSxCOLS for grid='full'")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads(N); 0 = torch default")
    p.add_argument(
        "--step",
        default="step_4_multinode_grid_full",
        help="tutorial file under ttl/tutorials/matmul/ (default step_4_multinode_grid_full)",
    )
    args = p.parse_args(argv)

    import ttl.sim
    from ttl.sim.operation import set_default_grid
    from ttl.sim.ttlang_sim import setup_simulator_imports

    tutorials_dir = Path(ttl.sim.__file__).resolve().parent.parent / "tutorials"

    setup_simulator_imports()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows, cols = (int(x) for x in args.grid.lower().split("x"))
    set_default_grid((rows, cols))

    src_path = tutorials_dir / "matmul" / f"{args.step}.py"
    src = src_path.read_text()
    size_line = "M, K, N = 8192, 8192, 8192"
    call_line = "    y = tutorial_operation(a, b, c)\n"
    if size_line not in src or call_line not in src:
        print(f"unexpected tutorial source layout in {src_path}", file=sys.stderr)
        return 2
    s = args.size
    src = src.replace(size_line, f"M, K, N = {s}, {s}, {s}")
    src = src.replace(
        call_line,
        "    import time as _t\n"
        f"    for _ in range({max(1, args.repeat)}):\n"
        "        _t0 = _t.perf_counter()\n"
        "        y = tutorial_operation(a, b, c)\n"
        "        _TIMES.append(_t.perf_counter() - _t0)\n",
    )
    g: dict = {"__name__": "__main__", "__file__": str(src_path), "_TIMES": []}
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        exec(compile(src, str(src_path), "exec"), g)

    import ttnn  # simulator ttnn (shadowed)

    a64, b64, c64 = (ttnn.to_torch(g[n]).double().numpy() for n in ("a", "b", "c"))
    ref = np.maximum(a64 @ b64 + c64, 0.0)
    out = g["y"].double().numpy()
    times = g["_TIMES"]
    print(
        json.dumps(
            {
                "tutorial": args.step,
                "size": s,
                "grid": f"{rows}x{cols}",
                "wall_s": round(statistics.median(times), 4),
                "min_s": round(min(times), 4),
                "runs_s": [round(t, 4) for t in times],
                "rel_err": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
                "tutorial_stdout": buf.getvalue().strip(),
                "compute_dtype": str(g["y"].dtype).replace("torch.", ""),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
