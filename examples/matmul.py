"""Newcomer example: C = A @ B on a grid, with a reader thread and a loop-carried accumulator.

Core (r, c) computes block (r, c) of C: the sum over k of A[r, k] @ B[k, c]. Its reader
thread DMAs those blocks from DRAM into the CBs, one pair per step; the compute thread pops
them and accumulates in a block carried from one loop iteration to the next. The output is
written back implicitly (no thread pops out's CB: each core's block goes to its own place).

A: [32 * rows, 32 * K_BLOCKS], B: [32 * K_BLOCKS, 32 * cols], C: [32 * rows, 32 * cols] on a
(rows, cols) grid; K_BLOCKS = A.shape[1] // 32.
Run: python examples/matmul.py
"""

import numpy as np

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1)])
def matmul(A, B, C):
    A_stream = Stream(A)
    B_stream = Stream(B)
    K_BLOCKS = A.shape[1] // 32  # plain Python: the kernel function sees the shapes

    @compute()
    async def comp(A_cb, B_cb, C_cb):
        acc = fill(0, shape=(32, 32))
        for _ in range(K_BLOCKS):
            a = A_cb.pop()
            b = B_cb.pop()
            acc = acc + a @ b
        c_blk = C_cb.reserve()
        c_blk.store(acc)

    @datamovement()
    async def reader(A_cb, B_cb, C_cb):
        r = core_index(0)
        c = core_index(1)
        for k in range(K_BLOCKS):
            dma(A_stream[r, k], A_cb.reserve()).wait()
            dma(B_stream[k, c], B_cb.reserve()).wait()

    return Program(comp, reader)(A, B, C)


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 96)).astype(bfloat16)
    B = rng.standard_normal((96, 64)).astype(bfloat16)
    C = np.full((64, 64), np.nan, dtype=bfloat16)
    matmul(A, B, C)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    err = np.linalg.norm(C.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"matmul (bf16, 64x96 @ 96x64, 2x2 grid): relative error vs float64 = {err:.2e}")
