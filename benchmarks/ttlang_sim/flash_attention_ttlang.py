#!/usr/bin/env python3
"""Online-softmax FlashAttention forward (one head) in tt-lang, run on tt-lang-sim.

O = softmax(Q K^T / sqrt(D) [+ causal mask]) V for Q, K, V, O of shape [S, D].

    /work/ttlang-venv/bin/python benchmarks/ttlang_sim/flash_attention_ttlang.py \
        --seq 1024 --head-dim 64 --grid 8x8 [--causal]

Kernel layout (one ``ttl.operation`` on a ROWS x COLS grid of nodes):

* Q is cut into chunks of ``bq`` tile rows (``bq * 32`` queries); the chunks are
  dealt out to the nodes in contiguous runs (node id = r * COLS + q).  Nodes
  that get no chunk (e.g. S=1024 has only 32 one-tile chunks for 64 nodes)
  have no work.
* ``read_qk`` (data-movement thread 0) loads the node's Q chunk once, then
  streams K chunk by chunk (``bkv`` tiles = ``bkv * 32`` keys per chunk);
* ``read_v_write_o`` (data-movement thread 1) streams the matching V chunks
  (and, with --causal, the diagonal-chunk mask) and writes finished O chunks;
* ``attend`` (compute thread) keeps the running row max ``m``, running row sum
  ``l`` and unnormalised output ``acc`` for its Q chunk.  Per KV chunk:

      s     = (q @ k^T) * scale                [+ mask on the diagonal chunk]
      m_new = max(m, rowmax(s))
      p     = exp(s - m_new)                    (m_new broadcast along keys)
      alpha = exp(m - m_new)                    (correction factor)
      l     = alpha * l + rowsum(p)
      acc   = alpha * acc + p @ v
      m     = m_new

  and at the end ``o = acc * (1 / l)``.

Row statistics are (bq, 1)-tile blocks: tt-lang's ``reduce_max``/``reduce_sum``
over dims=[-1] leave each row's value in column 0 of the tile, and
``ttl.block.broadcast(..., dims=[-1])`` spreads column 0 back across a block.

With --causal, KV chunks entirely above the diagonal are skipped, and the one
diagonal chunk per Q chunk gets an additive mask (0 on/below the diagonal,
-inf above) read from a small [bq*32, bq*32] DRAM tensor; causal needs bq == bkv.

Timing covers the operation call only; imports, inputs and the float64
reference are excluded.  One JSON line is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
from ttl.sim.ttlang_sim import setup_simulator_imports  # noqa: E402

setup_simulator_imports()

import torch  # noqa: E402
import ttl  # noqa: E402  (simulator namespace object)
import ttnn  # noqa: E402  (simulator ttnn)

TILE = 32
NEG_INF = float("-inf")

# Shared across all nodes' greenlets (closure variables are copied per node).
_COUNT = {"dram_read_tiles": 0, "dram_write_tiles": 0, "tile_matmuls": 0, "kv_chunks": 0}


def _span(total: int, parts: int, i: int) -> tuple[int, int]:
    """[lo, hi) of the i-th of `parts` near-equal contiguous shares of range(total)."""
    base, extra = divmod(total, parts)
    lo = i * base + min(i, extra)
    return lo, lo + base + (1 if i < extra else 0)


def _kv_range(qc: int, kv_chunks: int, causal: bool) -> int:
    """Number of KV chunks Q chunk `qc` attends to (chunks 0 .. n-1)."""
    return qc + 1 if causal else kv_chunks


def make_flash_attention(rows: int, cols: int, bq: int, bkv: int, causal: bool, scale: float):
    """Build the tt-lang operation for a rows x cols grid."""

    @ttl.operation(grid=(rows, cols))
    def flash_attention(q, k, v, mask, o):
        q_chunks = q.shape[0] // TILE // bq
        kv_chunks = k.shape[0] // TILE // bkv
        dt = q.shape[1] // TILE  # head_dim in tiles
        g_rows, g_cols = ttl.grid_size(dims=2)

        q_dfb = ttl.make_dataflow_buffer_like(q, shape=(bq, dt), block_count=2)
        k_dfb = ttl.make_dataflow_buffer_like(k, shape=(bkv, dt), block_count=2)
        v_dfb = ttl.make_dataflow_buffer_like(v, shape=(bkv, dt), block_count=2)
        m_dfb = ttl.make_dataflow_buffer_like(mask, shape=(bq, bkv), block_count=1)
        o_dfb = ttl.make_dataflow_buffer_like(o, shape=(bq, dt), block_count=2)
        # Compute-private running state (row max, row sum, unnormalised output):
        # each KV step waits on the old block and reserves the next one.
        mx_dfb = ttl.make_dataflow_buffer_like(o, shape=(bq, 1), block_count=2)
        sm_dfb = ttl.make_dataflow_buffer_like(o, shape=(bq, 1), block_count=2)
        acc_dfb = ttl.make_dataflow_buffer_like(o, shape=(bq, dt), block_count=2)

        @ttl.compute()
        def attend():
            r, c = ttl.node(dims=2)
            lo, hi = _span(q_chunks, g_rows * g_cols, r * g_cols + c)
            scale_blk = ttl.block.fill(scale, shape=(bq, bkv))
            for qc in range(lo, hi):
                # Running state lives in L1 (DFBs), one block per KV step.
                with mx_dfb.reserve() as m0:
                    m0.store(ttl.block.fill(NEG_INF, shape=(bq, 1)))
                with sm_dfb.reserve() as l0:
                    l0.store(ttl.block.fill(0.0, shape=(bq, 1)))
                with acc_dfb.reserve() as a0:
                    a0.store(ttl.block.fill(0.0, shape=(bq, dt)))
                with q_dfb.wait() as q_blk:
                    n_kv = _kv_range(qc, kv_chunks, causal)
                    for j in range(n_kv):
                        with k_dfb.wait() as k_blk:
                            s = (q_blk @ ttl.block.transpose(k_blk)) * scale_blk
                        if causal and j == qc:
                            with m_dfb.wait() as mask_blk:
                                s = s + mask_blk
                        with (
                            mx_dfb.wait() as m_old,
                            sm_dfb.wait() as l_old,
                            acc_dfb.wait() as acc_old,
                            v_dfb.wait() as v_blk,
                        ):
                            m_new = ttl.math.max(m_old, ttl.math.reduce_max(s, dims=[-1], shape=(bq, 1)))
                            p = ttl.math.exp(s - ttl.block.broadcast(m_new, dims=[-1], shape=(bq, bkv)))
                            alpha = ttl.math.exp(m_old - m_new)
                            if j + 1 < n_kv:  # the row max is not needed after the last step
                                with mx_dfb.reserve() as m_nxt:
                                    m_nxt.store(m_new)
                            with sm_dfb.reserve() as l_nxt:
                                l_nxt.store(alpha * l_old + ttl.math.reduce_sum(p, dims=[-1], shape=(bq, 1)))
                            with acc_dfb.reserve() as acc_nxt:
                                acc_nxt.store(
                                    acc_old * ttl.block.broadcast(alpha, dims=[-1], shape=(bq, dt)) + p @ v_blk
                                )
                        _COUNT["tile_matmuls"] += 2 * bq * bkv * dt
                        _COUNT["kv_chunks"] += 1
                with (
                    sm_dfb.wait() as l_fin,
                    acc_dfb.wait() as acc_fin,
                    o_dfb.reserve() as o_blk,
                ):
                    o_blk.store(acc_fin * ttl.block.broadcast(ttl.math.recip(l_fin), dims=[-1], shape=(bq, dt)))

        @ttl.datamovement()
        def read_qk():
            r, c = ttl.node(dims=2)
            lo, hi = _span(q_chunks, g_rows * g_cols, r * g_cols + c)
            for qc in range(lo, hi):
                with q_dfb.reserve() as q_blk:
                    tx = ttl.copy(q[qc * bq : (qc + 1) * bq, 0:dt], q_blk)
                    tx.wait()
                _COUNT["dram_read_tiles"] += bq * dt
                for j in range(_kv_range(qc, kv_chunks, causal)):
                    with k_dfb.reserve() as k_blk:
                        tx = ttl.copy(k[j * bkv : (j + 1) * bkv, 0:dt], k_blk)
                        tx.wait()
                    _COUNT["dram_read_tiles"] += bkv * dt

        @ttl.datamovement()
        def read_v_write_o():
            r, c = ttl.node(dims=2)
            lo, hi = _span(q_chunks, g_rows * g_cols, r * g_cols + c)
            for qc in range(lo, hi):
                for j in range(_kv_range(qc, kv_chunks, causal)):
                    if causal and j == qc:
                        with m_dfb.reserve() as mask_blk:
                            tx = ttl.copy(mask[0:bq, 0:bkv], mask_blk)
                            tx.wait()
                        _COUNT["dram_read_tiles"] += bq * bkv
                    with v_dfb.reserve() as v_blk:
                        tx = ttl.copy(v[j * bkv : (j + 1) * bkv, 0:dt], v_blk)
                        tx.wait()
                    _COUNT["dram_read_tiles"] += bkv * dt
                with o_dfb.wait() as o_blk:
                    tx = ttl.copy(o_blk, o[qc * bq : (qc + 1) * bq, 0:dt])
                    tx.wait()
                _COUNT["dram_write_tiles"] += bq * dt

    return flash_attention


def _bf16_round(x: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def _parse_grid(s: str) -> tuple[int, int]:
    r, c = s.lower().replace(",", "x").split("x")
    return int(r), int(c)


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """float64 softmax(q k^T / sqrt(d)) v."""
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    s = q64 @ k64.T / math.sqrt(q.shape[1])
    if causal:
        s = np.where(np.tri(s.shape[0], s.shape[1], dtype=bool), s, -np.inf)
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return (p @ v64) / p.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=1024, help="sequence length S")
    p.add_argument("--head-dim", type=int, default=64, help="head dim D (multiple of 32)")
    p.add_argument("--grid", default="8x8", help="ROWSxCOLS of nodes (default 8x8)")
    p.add_argument("--bq", type=int, default=1, help="Q chunk in tiles (default 1 = 32 rows)")
    p.add_argument("--bkv", type=int, default=0, help="KV chunk in tiles (default: same as --bq)")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--repeat", type=int, default=3, help="timed runs; median reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads(N); 0 = torch default (default 1: see README)"
    )
    p.add_argument(
        "--no-fp32-promotion",
        action="store_true",
        help="back bf16 tensors with real torch.bfloat16 (simulator default is float32)",
    )
    args = p.parse_args(argv)

    S, D = args.seq, args.head_dim
    bq = args.bq
    bkv = args.bkv or bq
    rows, cols = _parse_grid(args.grid)
    if D % TILE:
        p.error("--head-dim must be a multiple of 32")
    if S % (TILE * bq) or S % (TILE * bkv):
        p.error("--seq must be a multiple of 32*bq and 32*bkv")
    if args.causal and bq != bkv:
        p.error("--causal needs --bq == --bkv")

    if args.no_fp32_promotion:
        from ttl.sim.ttnnsim import set_disable_float32_promotion

        set_disable_float32_promotion(True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    q_np, k_np, v_np = (_bf16_round(rng.standard_normal((S, D), dtype=np.float32)) for _ in range(3))
    # Additive mask for a diagonal (bq*32 x bkv*32) chunk: 0 on/below, -inf above.
    mask_np = np.where(np.tri(bq * TILE, bkv * TILE, dtype=bool), 0.0, NEG_INF).astype(np.float32)

    def to_dev(x: np.ndarray):
        return ttnn.from_torch(torch.from_numpy(x), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)

    q, k, v, mask = (to_dev(x) for x in (q_np, k_np, v_np, mask_np))
    op = make_flash_attention(rows, cols, bq, bkv, args.causal, 1.0 / math.sqrt(D))

    times = []
    o = None
    for _ in range(max(1, args.repeat)):
        o = to_dev(np.zeros((S, D), dtype=np.float32))
        for key in _COUNT:
            _COUNT[key] = 0
        t0 = time.perf_counter()
        op(q, k, v, mask, o)
        times.append(time.perf_counter() - t0)

    out_t = ttnn.to_torch(o)
    compute_dtype = str(out_t.dtype).replace("torch.", "")
    out = out_t.to(torch.float32).numpy().astype(np.float64)
    ref = reference(q_np, k_np, v_np, args.causal)
    rel_err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))

    tile_bytes = TILE * TILE * 2  # declared bfloat16
    q_chunks = S // TILE // bq
    busy = min(q_chunks, rows * cols)
    result = {
        "seq": S,
        "head_dim": D,
        "grid": f"{rows}x{cols}",
        "causal": args.causal,
        "bq": bq,
        "bkv": bkv,
        "busy_nodes": busy,
        "wall_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "runs_s": [round(t, 4) for t in times],
        "rel_err": rel_err,
        "max_abs_err": float(np.max(np.abs(out - ref))),
        "tile_ops": _COUNT["tile_matmuls"],
        "kv_chunks": _COUNT["kv_chunks"],
        "dram_bytes": (_COUNT["dram_read_tiles"] + _COUNT["dram_write_tiles"]) * tile_bytes,
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
