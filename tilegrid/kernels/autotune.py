"""Choosing FlashAttention's chunk sizes (and grid, when free) by predicted time within L1."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tilegrid.device import Device
from tilegrid.errors import CompileError
from tilegrid.perf import placeholder, session


@dataclass
class Candidate:
    q_chunk: int
    kv_chunk: int
    grid: tuple[int, int]
    seconds: float | None  # None: does not fit L1
    bound: str = ""
    note: str = ""


def attention_candidates(device: Device, grid_free: bool) -> list[tuple[int, int, tuple[int, int]]]:
    from tilegrid.kernels.flash_attention import CHUNKS

    grids = [device.grid]
    if grid_free:
        r, c = device.grid
        grids += [g for g in ((r, c - 1), (r - 1, c), (8, 8)) if 0 < g[0] <= r and 0 < g[1] <= c and g != device.grid]
    return [(a, b, g) for g in grids for a, b in CHUNKS]


def autotune_attention(q_shape: tuple[int, ...], kv_shape: tuple[int, ...], *, causal: bool = False,
                       window: Any = None, config: Any = None, device: Device, fidelity: str = "HiFi4",
                       data_format: str | None = None, dtype: Any = None, grid_free: bool = False,
                       exp: str = "accurate", log: Any = print) -> tuple[Any, list[Candidate]]:
    """Predict every (q_chunk, kv_chunk[, grid]) candidate that fits L1 (timing-only runs) and return
    the fastest as an AttentionConfig, with all candidates weighed. exp: the SFPU exponential the
    prediction assumes ("accurate", the simulator's numerics, or "approx")."""
    from ml_dtypes import bfloat16

    from tilegrid.kernels.flash_attention import AttentionConfig, flash_attention

    base = config or AttentionConfig()
    dt = dtype or bfloat16
    q = placeholder(q_shape, dt)
    k = placeholder(kv_shape, dt)
    v = np.broadcast_to(np.zeros((), dt), kv_shape)
    cands: list[Candidate] = []
    sq_tiles, skv_tiles = -(-q_shape[2] // 32), -(-kv_shape[2] // 32)
    for cq, ck, grid in attention_candidates(device, grid_free and base.grid is None):
        if (base.q_chunk and cq != base.q_chunk) or (base.kv_chunk and ck != base.kv_chunk):
            continue
        if cq > max(1, sq_tiles) or ck > max(1, skv_tiles):
            continue
        g = base.grid or grid
        cfg = replace(base, q_chunk=cq, kv_chunk=ck, grid=g)
        try:
            with session(fidelity, timing_only=True, data_format=data_format, exp=exp, trace=False) as s:
                flash_attention(q, k, v, causal=causal, window=window, config=cfg, device=device)
            r = s.last
            cands.append(Candidate(cq, ck, g, r.seconds, r.bound))
        except CompileError as e:
            if "L1" not in e.message:
                raise
            cands.append(Candidate(cq, ck, g, None, note="does not fit L1"))
    fitting = [c for c in cands if c.seconds is not None]
    if not fitting:
        raise CompileError("autotune: no candidate fits L1")
    best = min(fitting, key=lambda c: c.seconds)
    if log:
        log(f"autotune ({fidelity}{', ' + data_format if data_format else ''}): candidates by predicted time")
        for c in sorted(cands, key=lambda c: (c.seconds is None, c.seconds or 0)):
            t = f"{c.seconds * 1e3:10.4f} ms  {c.bound}" if c.seconds is not None else f"{'-':>13}  {c.note}"
            mark = " <- chosen" if c is best else ""
            log(f"  q_chunk {c.q_chunk:2d} kv_chunk {c.kv_chunk:2d} grid {c.grid[0]}x{c.grid[1]}: {t}{mark}")
    return replace(base, q_chunk=best.q_chunk, kv_chunk=best.kv_chunk, grid=best.grid), cands
