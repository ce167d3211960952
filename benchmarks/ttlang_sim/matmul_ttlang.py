#!/usr/bin/env python3
"""Multi-core tiled matmul C = A @ B written in tt-lang, run on tt-lang-sim.

Benchmark counterpart of tilegrid's matmul: same problem, Tenstorrent's own
language and pure-Python functional simulator (PyPI ``tt-lang-sim``).

Run with the interpreter of the scratch venv (see README.md in this folder):

    /work/ttlang-venv/bin/python benchmarks/ttlang_sim/matmul_ttlang.py --size 2048 --grid 8x8

Kernel layout (one ``ttl.operation`` on a ROWS x COLS grid of nodes):

* the output's tile grid is cut 2-D into ``bm x bn``-tile output blocks; node
  (r, q) owns a contiguous band of block rows and block columns;
* ``read_a`` (data-movement thread 0) streams the ``bm x bk`` A blocks of the
  node's output blocks from DRAM into ``a_dfb``;
* ``read_b_write_c`` (data-movement thread 1) streams the ``bk x bn`` B blocks
  into ``b_dfb`` and drains finished C blocks from ``c_dfb`` back to DRAM;
* ``mac`` (compute thread) adds ``a_blk @ b_blk`` into a running ``bm x bn``
  sum for every K block and hands the finished block to ``c_dfb``.  With
  ``--acc dfb`` (default) the running sum round-trips through an L1 dataflow
  buffer every K step (the last step writes straight into ``c_dfb``), which is
  what a 16-tile accumulator needs on hardware; with ``--acc dst`` it is a
  loop-carried block temporary (``acc += a_blk @ b_blk``), i.e. what would be
  DST-resident on hardware -- the simulator has no DST, so it never objects.

Every DFB has two slots (double buffering).  Timing covers the operation call
only (``time.perf_counter`` around it); imports, input generation and the
float64 reference are excluded.  One JSON line is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

# --- simulator setup (the same shadowing the ``tt-lang-sim`` launcher does):
# ``import ttl`` / ``import ttnn`` resolve to the simulator's implementations.
# NB: importing ttl.sim rebinds torch.bfloat16/float16 to torch.float32 (the
# simulator's default "float32 promotion"); see --no-fp32-promotion.
from ttl.sim.ttlang_sim import setup_simulator_imports  # noqa: E402

setup_simulator_imports()

import torch  # noqa: E402
import ttl  # noqa: E402  (simulator namespace object)
import ttnn  # noqa: E402  (simulator ttnn)

TILE = 32

# Module-level counters: kernel bodies run as greenlets with per-node copies of
# their closure variables, but module globals are shared, so these see every
# node's traffic.
_COUNT = {"dram_read_tiles": 0, "dram_write_tiles": 0, "tile_matmuls": 0, "tile_adds": 0}


def _span(total: int, parts: int, i: int) -> tuple[int, int]:
    """[lo, hi) of the i-th of `parts` near-equal contiguous shares of range(total)."""
    base, extra = divmod(total, parts)
    lo = i * base + min(i, extra)
    return lo, lo + base + (1 if i < extra else 0)


def make_matmul(rows: int, cols: int, bm: int, bn: int, bk: int, acc_mode: str = "dfb"):
    """Build the tt-lang operation for a rows x cols grid and bm/bn/bk-tile blocks.

    acc_mode "dfb": the running sum lives in an L1 dataflow buffer (acc_dfb),
    waited on and re-reserved every K step (works for any bm x bn on hardware).
    acc_mode "dst": the running sum is a loop-carried block temporary.
    """

    @ttl.operation(grid=(rows, cols))
    def tiled_matmul(a, b, c):
        m_blocks = a.shape[0] // TILE // bm
        k_blocks = a.shape[1] // TILE // bk
        n_blocks = b.shape[1] // TILE // bn
        g_rows, g_cols = ttl.grid_size(dims=2)

        a_dfb = ttl.make_dataflow_buffer_like(a, shape=(bm, bk), block_count=2)
        b_dfb = ttl.make_dataflow_buffer_like(b, shape=(bk, bn), block_count=2)
        c_dfb = ttl.make_dataflow_buffer_like(c, shape=(bm, bn), block_count=2)
        if acc_mode == "dfb":
            acc_dfb = ttl.make_dataflow_buffer_like(c, shape=(bm, bn), block_count=2)

            @ttl.compute()
            def mac():
                r, q = ttl.node(dims=2)
                m_lo, m_hi = _span(m_blocks, g_rows, r)
                n_lo, n_hi = _span(n_blocks, g_cols, q)
                for _ in range((m_hi - m_lo) * (n_hi - n_lo)):
                    # Partial sums round-trip through L1: the last K step
                    # writes straight into the output buffer.
                    with acc_dfb.reserve() as acc0:
                        acc0.store(ttl.block.fill(0.0, shape=(bm, bn)))
                    for kk in range(k_blocks):
                        with (
                            a_dfb.wait() as a_blk,
                            b_dfb.wait() as b_blk,
                            acc_dfb.wait() as acc_old,
                        ):
                            dst = c_dfb if kk == k_blocks - 1 else acc_dfb
                            with dst.reserve() as acc_new:
                                acc_new.store(acc_old + a_blk @ b_blk)
                        _COUNT["tile_matmuls"] += bm * bn * bk
                        _COUNT["tile_adds"] += bm * bn

        else:

            @ttl.compute()
            def mac():
                r, q = ttl.node(dims=2)
                m_lo, m_hi = _span(m_blocks, g_rows, r)
                n_lo, n_hi = _span(n_blocks, g_cols, q)
                for _ in range((m_hi - m_lo) * (n_hi - n_lo)):
                    # Loop-carried temporary: the running sum never leaves
                    # the compute thread (on hardware: DST registers, which
                    # only hold bm*bn tiles if bm*bn <= DST capacity).
                    acc = ttl.block.fill(0.0, shape=(bm, bn))
                    for _ in range(k_blocks):
                        with a_dfb.wait() as a_blk, b_dfb.wait() as b_blk:
                            acc += a_blk @ b_blk
                        _COUNT["tile_matmuls"] += bm * bn * bk
                        _COUNT["tile_adds"] += bm * bn
                    with c_dfb.reserve() as c_blk:
                        c_blk.store(acc)

        @ttl.datamovement()
        def read_a():
            r, q = ttl.node(dims=2)
            m_lo, m_hi = _span(m_blocks, g_rows, r)
            n_lo, n_hi = _span(n_blocks, g_cols, q)
            for mi in range(m_lo, m_hi):
                for _ in range(n_lo, n_hi):
                    for kk in range(k_blocks):
                        with a_dfb.reserve() as a_blk:
                            tx = ttl.copy(a[mi * bm : (mi + 1) * bm, kk * bk : (kk + 1) * bk], a_blk)
                            tx.wait()
                        _COUNT["dram_read_tiles"] += bm * bk

        @ttl.datamovement()
        def read_b_write_c():
            r, q = ttl.node(dims=2)
            m_lo, m_hi = _span(m_blocks, g_rows, r)
            n_lo, n_hi = _span(n_blocks, g_cols, q)
            for mi in range(m_lo, m_hi):
                for ni in range(n_lo, n_hi):
                    for kk in range(k_blocks):
                        with b_dfb.reserve() as b_blk:
                            tx = ttl.copy(b[kk * bk : (kk + 1) * bk, ni * bn : (ni + 1) * bn], b_blk)
                            tx.wait()
                        _COUNT["dram_read_tiles"] += bk * bn
                    with c_dfb.wait() as c_blk:
                        tx = ttl.copy(c_blk, c[mi * bm : (mi + 1) * bm, ni * bn : (ni + 1) * bn])
                        tx.wait()
                    _COUNT["dram_write_tiles"] += bm * bn

    return tiled_matmul


def _bf16_round(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round-to-nearest-even), returned as float32."""
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def _parse_grid(s: str) -> tuple[int, int]:
    r, c = s.lower().replace(",", "x").split("x")
    return int(r), int(c)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2048, help="M = N = K (default 2048)")
    p.add_argument("--m", type=int, help="override M")
    p.add_argument("--n", type=int, help="override N")
    p.add_argument("--k", type=int, help="override K")
    p.add_argument("--grid", default="8x8", help="ROWSxCOLS of nodes (default 8x8)")
    p.add_argument("--block", default="4,4,4", help="bm,bn,bk block size in tiles (default 4,4,4)")
    p.add_argument(
        "--acc",
        choices=("dfb", "dst"),
        default="dfb",
        help="accumulator: L1 dataflow buffer round trip (default) or loop-carried temporary",
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs; median reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads(N); 0 = torch default (default 1: see README)",
    )
    p.add_argument(
        "--no-fp32-promotion",
        action="store_true",
        help="back bf16 tensors with real torch.bfloat16 (simulator default is float32)",
    )
    args = p.parse_args(argv)

    M = args.m or args.size
    N = args.n or args.size
    K = args.k or args.size
    rows, cols = _parse_grid(args.grid)
    bm, bn, bk = (int(v) for v in args.block.split(","))
    for name, dim, blk in (("M", M, bm), ("N", N, bn), ("K", K, bk)):
        if dim % (TILE * blk):
            p.error(f"{name}={dim} must be a multiple of {TILE}*{blk}")

    if args.no_fp32_promotion:
        from ttl.sim.ttnnsim import set_disable_float32_promotion

        set_disable_float32_promotion(True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    a_np = _bf16_round(rng.standard_normal((M, K), dtype=np.float32))
    b_np = _bf16_round(rng.standard_normal((K, N), dtype=np.float32))

    def to_dev(x: np.ndarray):
        return ttnn.from_torch(torch.from_numpy(x), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)

    a = to_dev(a_np)
    b = to_dev(b_np)
    op = make_matmul(rows, cols, bm, bn, bk, args.acc)

    times = []
    c = None
    for _ in range(max(1, args.repeat)):
        c = to_dev(np.zeros((M, N), dtype=np.float32))
        for key in _COUNT:
            _COUNT[key] = 0
        t0 = time.perf_counter()
        op(a, b, c)
        times.append(time.perf_counter() - t0)

    out_t = ttnn.to_torch(c)
    compute_dtype = str(out_t.dtype).replace("torch.", "")
    out = out_t.to(torch.float32).numpy().astype(np.float64)
    ref = a_np.astype(np.float64) @ b_np.astype(np.float64)
    rel_err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))

    tile_bytes = TILE * TILE * 2  # declared dtype bfloat16 = 2 bytes/element
    result = {
        "size": args.size if not (args.m or args.n or args.k) else [M, N, K],
        "grid": f"{rows}x{cols}",
        "block": [bm, bn, bk],
        "acc": args.acc,
        "wall_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "runs_s": [round(t, 4) for t in times],
        "rel_err": rel_err,
        "tile_ops": _COUNT["tile_matmuls"],
        "tile_adds": _COUNT["tile_adds"],
        "dram_bytes": (_COUNT["dram_read_tiles"] + _COUNT["dram_write_tiles"]) * tile_bytes,
        "dram_read_bytes": _COUNT["dram_read_tiles"] * tile_bytes,
        "dram_write_bytes": _COUNT["dram_write_tiles"] * tile_bytes,
        "declared_dtype": "bfloat16",
        "compute_dtype": compute_dtype,
        "torch_threads": torch.get_num_threads(),
        "simulator": "tt-lang-sim " + _sim_version(),
    }
    print(json.dumps(result))
    return 0


def _sim_version() -> str:
    try:
        from importlib.metadata import version

        return version("tt-lang-sim")
    except Exception:  # pragma: no cover
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
