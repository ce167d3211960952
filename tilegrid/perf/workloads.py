"""Kernels in the tilegrid language that the published measurements describe (for the timing model).

- `blocked_matmul`: tt-metal's 2-D multicast matmul structure at production sizes: core (r, c)
  owns a (M/rows) x (N/cols) shard of C and walks it in (bm x bn)-tile output blocks; for each
  block it loops over K in bk-tile steps, core (r, 0) reading A blocks from DRAM and multicasting
  them along grid row r, core (0, c) reading B blocks and multicasting them down column c.
  (tilegrid.kernels.matmul keeps a whole shard's accumulator in L1, which does not fit at 16384^3.)
- `dram_read` / `dram_copy`: every core streams its shard of a DRAM tensor through L1 (and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import TilegridError
from tilegrid.lang import Program, Semaphore, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen


def blocked_matmul(a: Any, b: Any, *, grid: tuple[int, int] = (8, 8), bm: int = 8, bn: int = 8, bk: int = 2,
                   acc_dtype: str = "bf16", mcast: bool = True, device: Device = WORMHOLE, out: Any = None) -> Any:
    """C = A @ B with (bm, bn, bk)-tile blocks per core (see the module docstring).

    acc_dtype "bf16" runs DST in 16-bit mode (8 tiles double-buffered), as tt-metal's BF16 GEMM
    runs; "f32" uses fp32 accumulation (4 tiles)."""
    m, k = a.shape
    n = b.shape[1]
    gr, gc = grid
    mt, kt, nt = m // 32, k // 32, n // 32
    if mt % (gr * bm) or nt % (gc * bn) or kt % bk:
        raise TilegridError(f"blocked_matmul: {m}x{k}x{n} does not split into {grid} cores of {bm}x{bn}x{bk} tiles")
    mb, nb, kb = mt // (gr * bm), nt // (gc * bn), kt // bk  # output blocks per core (rows, cols), K steps
    if out is None:
        out = np.full((m, n), np.nan, dtype=a.dtype) if a.strides != (0, 0) else np.broadcast_to(
            np.zeros((), a.dtype), (m, n))
    acc_shape = (32 * bm, 32 * bn)
    nblocks = mb * nb

    @pykernel_gen(grid=grid, block_factors=[(bm, bk, 2), (bk, bn, 2), (bm, bn, 2)], device=device,
                  fp32_acc=acc_dtype == "f32")
    def blocked_matmul_kernel(a, b, c):
        a_s, b_s = Stream(a), Stream(b)
        a_ready, a_valid = Semaphore(0), Semaphore(0)
        b_ready, b_valid = Semaphore(0), Semaphore(0)

        @compute()
        async def mm(a_cb, b_cb, c_cb):
            for ob in range(nblocks):
                acc = fill(0, shape=acc_shape, dtype=acc_dtype)
                for kk in range(kb):
                    acc = acc + a_cb.pop() @ b_cb.pop()
                c_cb.reserve().store(acc)

        @datamovement()
        async def read_a(a_cb, b_cb, c_cb):
            r = core_index(0)
            col = core_index(1)
            for ob in range(nblocks):
                i = r * mb + ob // nb
                for kk in range(kb):
                    blk = a_cb.reserve()
                    if not mcast or gc == 1:
                        dma(a_s[i, kk], blk).wait()
                    elif col == 0:
                        dma(a_s[i, kk], blk).wait()
                        a_ready.wait(gc - 1, reset=0)
                        dma(blk, blk, core=(r, 1), mcast=(1, gc - 1)).wait()
                        a_valid.set(1, core=(r, 1), mcast=(1, gc - 1))
                    else:
                        a_ready.inc(1, core=(r, 0))
                        a_valid.wait(1, reset=0)

        @datamovement()
        async def read_b(a_cb, b_cb, c_cb):
            r = core_index(0)
            col = core_index(1)
            for ob in range(nblocks):
                j = col * nb + ob % nb
                for kk in range(kb):
                    blk = b_cb.reserve()
                    if not mcast or gr == 1:
                        dma(b_s[kk, j], blk).wait()
                    elif r == 0:
                        dma(b_s[kk, j], blk).wait()
                        b_ready.wait(gr - 1, reset=0)
                        dma(blk, blk, core=(1, col), mcast=(gr - 1, 1)).wait()
                        b_valid.set(1, core=(1, col), mcast=(gr - 1, 1))
                    else:
                        b_ready.inc(1, core=(0, col))
                        b_valid.wait(1, reset=0)

        return Program(mm, read_a, read_b)(a, b, c)

    blocked_matmul_kernel(a, b, out)
    return out


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
