"""ROADMAP.md, Gap 1 ("Looping Over KV Chunks"): the `flash_attention_loop` compute thread,
completed into a kernel with streams and a data-movement thread.

The compute thread is the roadmap's, line for line, plus the two things its fragment never
defines: `Q_block` (popped before the loop) and an output (the final `O_acc` is stored).
Its math is kept AS WRITTEN, and that math is not softmax attention: it has no correction
factor (`O_acc` is never rescaled when the running max grows) and no final division by the
running sum. What it computes per query row is

    O = sum_k exp(S_k - m_k) @ V_k,   S_k = Q K_k^T,   m_k = max(m_{k-1}, rowmax(S_k)),

and the reference below computes exactly that. `examples/flash_attention_looped.py` is the
correct algorithm.

Layout: Q: [heads, seq_q, 32], K, V: [heads, NUM_KV_BLOCKS * 32, 32], out like Q.
Core (r, c) of the grid works on head c and query block r, so the grid is (seq_q / 32, heads).
Run: python examples/roadmap_gap1_flash_attention_loop.py
"""

import numpy as np

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen, rowmax, rowsum


@pykernel_gen(grid=(2, 2), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def flash_attention_gap1(Q, K, V, out):
    Q_stream = Stream(Q)
    K_stream = Stream(K)
    V_stream = Stream(V)
    out_stream = Stream(out)
    num_kv_blocks = K.shape[-2] // 32

    @compute()
    async def flash_attention_loop(Q_cb, K_cb, V_cb, out_cb):
        NUM_KV_BLOCKS = num_kv_blocks  # the roadmap writes `4  # Example`
        Q_block = Q_cb.pop()  # not in the roadmap's fragment

        # Initialize running statistics
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - `inf` written bare is understood
        l_old = fill(0, shape=(32, 1))
        O_acc = fill(0, shape=(32, 32))

        for kv_idx in range(NUM_KV_BLOCKS):  # noqa: B007
            K_block = K_cb.pop()  # Load next K chunk
            V_block = V_cb.pop()  # Load next V chunk

            # Compute scores
            S = Q_block @ K_block.transpose()

            # Update statistics
            m_new = rowmax(S, m_old)
            P = (S - m_new).exp()
            l_new = rowsum(P, l_old)

            # Apply attention (as written: no correction factor)
            O_acc = O_acc + P @ V_block

            m_old = m_new
            l_old = l_new

        out_block = out_cb.reserve()  # not in the fragment: hand the result out
        out_block.store(O_acc)

    @datamovement()
    async def dm(Q_cb, K_cb, V_cb, out_cb):
        head = core_index(1)
        q_blk = core_index(0)
        dma(Q_stream[head, q_blk, 0], Q_cb.reserve()).wait()
        for kv_idx in range(num_kv_blocks):
            dma(K_stream[head, kv_idx, 0], K_cb.reserve()).wait()
            dma(V_stream[head, kv_idx, 0], V_cb.reserve()).wait()
        dma(out_cb.pop(), out_stream[head, q_blk, 0]).wait()

    return Program(flash_attention_loop, dm)(Q, K, V, out)


def reference(Q, K, V):
    """float64 version of the roadmap's Gap 1 math (no correction, no normalisation)."""
    q, k, v = (a.astype(np.float64) for a in (Q, K, V))
    out = np.zeros(q.shape)
    m = np.full(q.shape[:-1] + (1,), -np.inf)
    for j in range(k.shape[-2] // 32):
        s = q @ k[..., 32 * j:32 * (j + 1), :].swapaxes(-1, -2)
        m = np.maximum(m, s.max(axis=-1, keepdims=True))
        out += np.exp(s - m) @ v[..., 32 * j:32 * (j + 1), :]
    return out


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    rng = np.random.default_rng(0)
    heads, seq_q, seq_kv = 2, 64, 4 * 32  # grid (2, 2): 2 query blocks x 2 heads; 4 KV blocks
    # The roadmap's S = Q K^T has no 1/sqrt(d): draw Q and K with scale d**-0.25 instead.
    Q = (rng.standard_normal((heads, seq_q, 32)) * 32**-0.25).astype(bfloat16)
    K = (rng.standard_normal((heads, seq_kv, 32)) * 32**-0.25).astype(bfloat16)
    V = rng.standard_normal((heads, seq_kv, 32)).astype(bfloat16)
    out = np.full(Q.shape, np.nan, dtype=bfloat16)
    flash_attention_gap1(Q, K, V, out)
    ref = reference(Q, K, V)
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"Gap 1 flash_attention_loop (bf16, as written): relative error vs float64 = {err:.2e}")
