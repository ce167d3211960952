"""Multi-core matmul written in the tilegrid language.

The output is split 2-D over the grid: core (r, c) owns an (M/rows) x (N/cols) shard of C and
walks it in (bm x bn)-tile output blocks; for each block it loops over K in bk-tile steps,
accumulating in DST / L1 (fp32 by default). Input CBs are double-buffered. With `mcast=True`
it has the structure of tt-metal's multicast-reuse matmul: core (r, 0) reads each A block
from DRAM once and multicasts it along grid row r; core (0, c) reads each B block once and
multicasts it down grid column c. Receivers reserve their slot, signal the sender (`ready`),
and push once the sender says the data landed (`valid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tilegrid.device import WORMHOLE, Device
from tilegrid.errors import TilegridError
from tilegrid.lang import Program, Semaphore, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen
from tilegrid.passes.allocate_l1 import TILE_BYTES


@dataclass(frozen=True)
class MatmulPlan:
    """Grid (rows, cols); output block (bm, bn) tiles; K step bk tiles; output blocks per core (mb, nb)."""

    grid: tuple[int, int]
    bm: int
    bn: int
    bk: int
    mb: int = 1
    nb: int = 1

    def l1_bytes(self, in_dtype: str, acc_dtype: str) -> int:
        t_in, t_acc = TILE_BYTES[in_dtype], TILE_BYTES[acc_dtype]
        cbs = 2 * (self.bm * self.bk + self.bk * self.bn + self.bm * self.bn) * t_in
        buffers = self.bm * self.bn * t_acc  # the accumulator, updated in place (update-in-place)
        return cbs + buffers


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def plan_matmul(m: int, k: int, n: int, grid: tuple[int, int], device: Device, in_dtype: str = "bf16",
                acc_dtype: str = "f32", bk: int | None = None, block: tuple[int, int] | None = None) -> MatmulPlan:
    """Largest grid (up to `grid`) that divides the output tiles; the largest output block (up to
    8x8 tiles, or `block`) and K step (up to 8, or `bk`) that divide the shard and fit L1."""
    mt, kt, nt = m // 32, k // 32, n // 32
    gr, gc = _largest_divisor(mt, grid[0]), _largest_divisor(nt, grid[1])
    sm, sn = mt // gr, nt // gc  # shard tiles per core
    blocks = [block] if block else [(a, b) for a in range(min(sm, 8), 0, -1) if sm % a == 0
                                    for b in range(min(sn, 8), 0, -1) if sn % b == 0]
    blocks.sort(key=lambda ab: -ab[0] * ab[1])
    ks = [bk] if bk else [d for d in range(min(kt, 8), 0, -1) if kt % d == 0]
    for bm, bn in blocks:
        for d in ks:
            plan = MatmulPlan((gr, gc), bm, bn, d, sm // bm, sn // bn)
            if sm % bm == 0 and sn % bn == 0 and kt % d == 0 and plan.l1_bytes(in_dtype, acc_dtype) <= device.l1_bytes:
                return plan
    raise TilegridError(f"matmul: no output block of a {sm}x{sn}-tile shard fits L1 ({device.l1_bytes} bytes)",
                        note="use a larger grid or smaller blocks")


def matmul(a: Any, b: Any, *, grid: tuple[int, int] = (8, 8), mcast: bool = False, bk: int | None = None,
           block: tuple[int, int] | None = None, acc_dtype: str = "f32", device: Device = WORMHOLE,
           schedule: str = "deterministic", seed: int | None = None, out: Any = None, observer: Any = None,
           backend: str = "sim", math_fidelity: str = "HiFi4") -> Any:
    """C = A @ B on a grid of cores. A: [M, K], B: [K, N] (bf16 or float32, multiples of 32).

    Returns C in A's dtype (a new NumPy array, or `out`). `mcast` shares A / B blocks along grid
    rows / columns by multicast instead of every core reading them from DRAM. `block` (bm, bn)
    and `bk` fix the tiles of an output block and of a K step; `acc_dtype="bf16"` accumulates in
    16-bit DST mode (8 tiles double-buffered), as tt-metal's BF16 GEMM does. `math_fidelity`: the
    matrix unit's fidelity phases (LoFi ... HiFi4, exact bf16 products).
    """
    a_np, b_np = np.asarray(a), np.asarray(b)
    if a_np.ndim != 2 or b_np.ndim != 2 or a_np.shape[1] != b_np.shape[0]:
        raise TilegridError(f"matmul: shapes {a_np.shape} and {b_np.shape} do not multiply (need [M, K] @ [K, N])")
    m, k = a_np.shape
    n = b_np.shape[1]
    if m % 32 or k % 32 or n % 32:
        raise TilegridError(f"matmul: dimensions M={m}, K={k}, N={n} must be multiples of 32 (whole tiles)")
    in_dtype = "bf16" if a_np.dtype != np.float32 else "f32"
    plan = plan_matmul(m, k, n, grid, device, in_dtype, acc_dtype, bk, block)
    if out is None:
        out = np.full((m, n), np.nan, dtype=a_np.dtype)
    _build(plan, k // 32 // plan.bk, mcast, acc_dtype, device, schedule, seed)(
        a_np, b_np, out, observer=observer, backend=backend, math_fidelity=math_fidelity)
    return out


def _build(plan: MatmulPlan, kb: int, mcast: bool, acc_dtype: str, device: Device, schedule: str,
           seed: int | None):
    (gr, gc), bm, bn, bk, mb, nb = plan.grid, plan.bm, plan.bn, plan.bk, plan.mb, plan.nb
    acc_shape = (32 * bm, 32 * bn)
    nblocks = mb * nb

    @pykernel_gen(grid=(gr, gc), block_factors=[(bm, bk, 2), (bk, bn, 2), (bm, bn, 2)], device=device,
                  fp32_acc=acc_dtype == "f32", schedule=schedule, seed=seed)
    def matmul_kernel(a, b, out):
        a_stream, b_stream = Stream(a), Stream(b)
        a_ready, a_valid = Semaphore(0), Semaphore(0)
        b_ready, b_valid = Semaphore(0), Semaphore(0)

        @compute()
        async def mm(a_cb, b_cb, out_cb):
            for ob in range(nblocks):
                acc = fill(0, shape=acc_shape, dtype=acc_dtype)
                for k in range(kb):
                    acc = acc + a_cb.pop() @ b_cb.pop()
                out_cb.reserve().store(acc)

        @datamovement()
        async def read_a(a_cb, b_cb, out_cb):
            r = core_index(0)
            c = core_index(1)
            for ob in range(nblocks):
                i = r * mb + ob // nb  # the A row-block of this output block
                for k in range(kb):
                    blk = a_cb.reserve()
                    if not mcast or gc == 1:
                        dma(a_stream[i, k], blk).wait()
                    elif c == 0:
                        dma(a_stream[i, k], blk).wait()
                        a_ready.wait(gc - 1, reset=0)
                        dma(blk, blk, core=(r, 1), mcast=(1, gc - 1)).wait()
                        a_valid.set(1, core=(r, 1), mcast=(1, gc - 1))
                    else:
                        a_ready.inc(1, core=(r, 0))
                        a_valid.wait(1, reset=0)

        @datamovement()
        async def read_b(a_cb, b_cb, out_cb):
            r = core_index(0)
            c = core_index(1)
            for ob in range(nblocks):
                j = c * nb + ob % nb  # the B column-block of this output block
                for k in range(kb):
                    blk = b_cb.reserve()
                    if not mcast or gr == 1:
                        dma(b_stream[k, j], blk).wait()
                    elif r == 0:
                        dma(b_stream[k, j], blk).wait()
                        b_ready.wait(gr - 1, reset=0)
                        dma(blk, blk, core=(1, c), mcast=(gr - 1, 1)).wait()
                        b_valid.set(1, core=(1, c), mcast=(gr - 1, 1))
                    else:
                        b_ready.inc(1, core=(0, c))
                        b_valid.wait(1, reset=0)

        return Program(mm, read_a, read_b)(a, b, out)

    return matmul_kernel
