"""The roadmap's looped FlashAttention, completed: both matmuls, the correction factor on the
running sum and the accumulator, and the final division by the sum (the roadmap's own
pseudocode drops the correction; this is the correct online softmax).

Q: [seq_q, d] (one 32-row Q block per core row), K_all / V_all: [NUM_KV_BLOCKS, seq_kv, d].
Run: python examples/flash_attention_looped.py
"""

import numpy as np

from tilegrid import Program, Stream, compute, core_index, datamovement, dma, fill, pykernel_gen, rowmax, rowsum

NUM_KV_BLOCKS = 4


@pykernel_gen(grid=(1, 1), block_factors=[(1, 1), (1, 1), (1, 1), (1, 1)])
def flash_attention_looped(Q, K_all, V_all, out):
    Q_stream = Stream(Q)
    K_stream = Stream(K_all)
    V_stream = Stream(V_all)
    scale = 1.0 / np.sqrt(Q.shape[-1])

    @compute()
    async def attention_compute(Q_cb, K_cb, V_cb, out_cb):
        Q_block = Q_cb.pop()
        m_old = fill(-inf, shape=(32, 1))  # noqa: F821 - `inf` written bare is understood
        l_old = fill(0, shape=(32, 1))
        O_acc = fill(0, shape=(32, 32))
        for kv_idx in range(NUM_KV_BLOCKS):
            K_block = K_cb.pop()
            V_block = V_cb.pop()
            S = (Q_block @ K_block.transpose()) * scale
            m_new = rowmax(S, m_old)
            P = (S - m_new).exp()
            correction = (m_old - m_new).exp()
            l_new = rowsum(P, correction * l_old)
            O_acc = correction * O_acc + P @ V_block
            m_old = m_new
            l_old = l_new
        out_block = out_cb.reserve()
        out_block.store(O_acc * l_old.recip())
        out_cb.pop()

    @datamovement()
    async def dm_reader(Q_cb, K_cb, V_cb, out_cb):
        idx = core_index(0) + core_index(1)
        dma(Q_stream[idx, 0], Q_cb.reserve()).wait()
        for kv_idx in range(NUM_KV_BLOCKS):
            dma(K_stream[kv_idx, idx, 0], K_cb.reserve()).wait()
            dma(V_stream[kv_idx, idx, 0], V_cb.reserve()).wait()

    return Program(attention_compute, dm_reader)(Q, K_all, V_all, out)


def reference(Q, K_all, V_all):
    """float64 softmax(Q K^T / sqrt(d)) V over all KV blocks."""
    q = Q.astype(np.float64)
    k = np.concatenate(list(K_all.astype(np.float64)), axis=0)
    v = np.concatenate(list(V_all.astype(np.float64)), axis=0)
    s = q @ k.T / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)) @ v


if __name__ == "__main__":
    from ml_dtypes import bfloat16

    rng = np.random.default_rng(0)
    Q = rng.standard_normal((32, 32)).astype(bfloat16)
    K = rng.standard_normal((NUM_KV_BLOCKS, 32, 32)).astype(bfloat16)
    V = rng.standard_normal((NUM_KV_BLOCKS, 32, 32)).astype(bfloat16)
    out = np.full((32, 32), np.nan, dtype=bfloat16)
    flash_attention_looped(Q, K, V, out)
    ref = reference(Q, K, V)
    err = np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref)
    print(f"looped FlashAttention (bf16, {NUM_KV_BLOCKS} KV blocks): relative error vs float64 = {err:.2e}")
