"""Kernels in the tilegrid language that the published measurements describe (for the timing model).

- `blocked_matmul`: `tilegrid.kernels.gemm` (tt-metal's 2-D multicast matmul structure) with
  the output block and K step fixed, as the published GEMM runs fix them.
- `dram_read` / `dram_copy`: every core streams its shard of a DRAM tensor through L1 (and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import TilegridError
from tilegrid.kernels.gemm import matmul
from tilegrid.lang import Program, compute, fill, pykernel_gen


def blocked_matmul(a: Any, b: Any, *, grid: tuple[int, int] = (8, 8), bm: int = 8, bn: int = 8, bk: int = 2,
                   acc_dtype: str = "bf16", mcast: bool = True, device: Device = WORMHOLE, out: Any = None) -> Any:
    """C = A @ B with (bm, bn, bk)-tile blocks per core: `tilegrid.kernels.gemm` with the blocks fixed.

    acc_dtype "bf16" runs DST in 16-bit mode (8 tiles double-buffered), as tt-metal's BF16 GEMM
    runs; "f32" uses fp32 accumulation (4 tiles)."""
    m, k = a.shape
    n = b.shape[1]
    gr, gc = grid
    if (m // 32) % (gr * bm) or (n // 32) % (gc * bn) or (k // 32) % bk:
        raise TilegridError(f"blocked_matmul: {m}x{k}x{n} does not split into {grid} cores of {bm}x{bn}x{bk} tiles")
    if out is None:
        out = np.full((m, n), np.nan, dtype=a.dtype) if a.strides != (0, 0) else np.broadcast_to(
            np.zeros((), a.dtype), (m, n))
    return matmul(a, b, grid=grid, mcast=mcast, bk=bk, block=(bm, bn), acc_dtype=acc_dtype, device=device, out=out)


def dram_read(shape: tuple[int, int], *, grid: tuple[int, int] = (8, 8), block: tuple[int, int] = (4, 4),
              device: Device = WORMHOLE, x: Any = None) -> Any:
    """Every core reads its shard of `x` (bf16, `shape`) from DRAM block by block (the DRAM read
    microbenchmark's traffic); the compute thread only consumes the blocks."""
    gr, gc = grid
    rows, cols = shape
    nblk = (rows // (32 * block[0] * gr)) * (cols // (32 * block[1] * gc))
    x = x if x is not None else np.broadcast_to(np.zeros((), bfloat16), shape)
    out = np.full((32 * gr, 32 * gc), np.nan, np.float32)

    @pykernel_gen(grid=grid, block_factors=[(block[0], block[1], 2), (1, 1)], device=device)
    def dram_read_kernel(x, out):
        @compute()
        async def consume(x_cb, out_cb):
            for i in range(nblk):
                x_cb.pop()
            out_cb.reserve().store(fill(0, shape=(32, 32)))

        return Program(consume)(x, out)

    dram_read_kernel(x, out)
    return out


def dram_copy(shape: tuple[int, int], *, grid: tuple[int, int] = (8, 8), block: tuple[int, int] = (4, 4),
              device: Device = WORMHOLE, x: Any = None) -> Any:
    """out = x through L1: each core reads its shard block by block and writes it back."""
    x = x if x is not None else np.broadcast_to(np.zeros((), bfloat16), shape)
    out = np.full(shape, np.nan, x.dtype) if x.strides != (0, 0) else np.broadcast_to(np.zeros((), x.dtype), shape)
    gr, gc = grid
    nblk = (shape[0] // (32 * block[0] * gr)) * (shape[1] // (32 * block[1] * gc))

    @pykernel_gen(grid=grid, block_factors=[(block[0], block[1], 2), (block[0], block[1], 2)], device=device)
    def dram_copy_kernel(x, out):
        @compute()
        async def copy(x_cb, out_cb):
            for i in range(nblk):
                out_cb.reserve().store(x_cb.pop())

        return Program(copy)(x, out)

    dram_copy_kernel(x, out)
    return out
