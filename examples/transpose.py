"""Newcomer example: a global transpose, with an explicit writer thread.

`block.transpose()` transposes one block (tile positions swap and each tile transposes).
To transpose the whole matrix, the block a core reads at block position (r, c) must be
written to position (c, r): an implicit writer would put it back at (r, c), so this kernel
has a data-movement thread that pops the output CB and DMAs it to the swapped position.
The input still arrives implicitly (no thread fills x's CB, so each core gets its own block).

x: [32 * rows, 32 * cols] on a (rows, cols) grid (one block per core), out: its transpose.
Run: python examples/transpose.py
"""

import numpy as np

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, pykernel_gen


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1)])
def transpose(x, out):
    out_stream = Stream(out)

    @compute()
    async def comp(x_cb, out_cb):
        blk = x_cb.pop()
        o = out_cb.reserve()
        o.store(blk.transpose())

    @datamovement()
    async def writer(x_cb, out_cb):
        dma(out_cb.pop(), out_stream[core_index(1), core_index(0)]).wait()

    return Program(comp, writer)(x, out)


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    x = np.random.default_rng(0).standard_normal((64, 64)).astype(bfloat16)
    out = np.full((64, 64), np.nan, dtype=bfloat16)
    transpose(x, out)
    ref = x.astype(np.float64).T
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"transpose (bf16, 2x2 grid): relative error vs float64 = {err:.2e}")
