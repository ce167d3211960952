"""Shared test helpers: fresh random inputs, poisoned outputs, relative-error checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ml_dtypes import bfloat16

TOL = {"bf16": 1e-2, "f32": 1e-5}
NP = {"bf16": bfloat16, "f32": np.float32}


def rand(rng: np.random.Generator, shape, dtype: str = "f32", scale: float = 1.0) -> np.ndarray:
    """Random normal data (never zeros) in the given data format."""
    return (rng.standard_normal(shape) * scale).astype(NP[dtype])


def poisoned(shape, dtype: str = "f32") -> np.ndarray:
    """An output buffer full of NaN, so any element the kernel does not write shows."""
    return np.full(shape, np.nan, dtype=NP[dtype])


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    out64 = np.asarray(out, dtype=np.float64)
    if np.isnan(out64).any():
        return float("inf")
    return float(np.linalg.norm(out64 - ref) / np.linalg.norm(ref))


def assert_close(out: np.ndarray, ref: np.ndarray, dtype: str, tol: float | None = None) -> None:
    err = rel_err(out, ref)
    limit = TOL[dtype] if tol is None else tol
    assert err < limit, f"relative error {err:.3e} exceeds {limit:.0e} ({dtype})"


def shards(a: np.ndarray, grid: tuple[int, int]):
    """(r, c, view) for each core's shard of the last two dimensions."""
    gr, gc = grid
    R, C = a.shape[-2] // gr, a.shape[-1] // gc
    for r in range(gr):
        for c in range(gc):
            yield r, c, a[..., r * R:(r + 1) * R, c * C:(c + 1) * C]


def tile_matmul(m: int = 1, k: int = 1, n: int = 1, acc: bool = False):
    """A `tile.matmul` of CB slots (cb0 @ cb1 -> cb2, bf16) as the simulator reports it to observers."""
    from tilegrid.ir import core as C
    from tilegrid.ir import tile as T

    a = C.CBWaitOp(0, C.BlockType((32 * m, 32 * k), "bf16"))
    b = C.CBWaitOp(1, C.BlockType((32 * k, 32 * n), "bf16"))
    out = C.CBReserveOp(2, C.BlockType((32 * m, 32 * n), "bf16"))
    op = T.MatmulOp(a.result, b.result, out.result, acc=out.result if acc else None)
    op.properties["subblock"] = T.subblock_attr(1, 1)
    return op


def tile_unary(name: str, out: tuple[int, int] = (32, 32), **params):
    """A `tile.compute` loading cb0 (bf16), applying op-table entry `name`, packing into cb1 of shape `out`."""
    from xdsl.ir import Block, Region

    from tilegrid.ir import core as C
    from tilegrid.ir import tile as T

    x = C.CBWaitOp(0, C.BlockType(out, "bf16"))
    o = C.CBReserveOp(1, C.BlockType(out, "bf16"))
    load = T.LoadOp(0)
    d = T.OPS[name].OP
    params = params or {p.name: 2 if p.kind is int else 0.5 for p in d.params}
    u = T.OPS[name](load.results[0], **params)
    body = Block([load, u, T.PackOp(u.results[0], 0)])
    op = T.ComputeOp([x.result], [], [o.result], Region(body))
    op.properties["subblock"] = T.subblock_attr(1, 1)
    return op


class DeviceRuns:
    """Observer of a kernel call on the tt-metal target: collects its device runs (cycles, timings);
    `engines=True` also asks for wolfpine's per-unit counters."""

    def __init__(self, engines: bool = False) -> None:
        self.engines = engines
        self.runs: list = []

    def on_device_run(self, run) -> None:
        self.runs.append(run)


def figures_fixture(env, figures: dict, stem: str, title: str):
    """A module's autouse fixture that, after its tests, writes the figures they recorded to the
    tt-metal logs directory (`stem`.figures.json) and prints them."""

    @pytest.fixture(scope="module", autouse=True)
    def figures_written():
        yield
        if env is not None and figures:
            out = env.logs_dir / f"{stem}.figures.json"
            out.write_text(json.dumps(figures, indent=1) + "\n")
            print(f"\n{title} ({out}):\n{json.dumps(figures, indent=1)}")

    return figures_written
