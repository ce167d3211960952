"""FlashAttention forward, the kernel: its three threads, written in the tilegrid language.

The compute thread is FlashAttention-2's online softmax (Dao 2023, Algorithm 1), over Q chunks of
`q_chunk` tiles and K/V chunks of `kv_chunk` tiles, for each work item (batch, head, Q chunk):

    m = -BIG, l = 0, O = 0                       (l, O in fp32; m in the scores' own format)
    for each K/V chunk j the item needs (causal / window chunks skipped: kv_chunk_range):
        S = scores(Q @ K_j^T)                    (softcap, ALiBi, masks on the chunks they touch)
        m_new = max(m, rowmax(S))
        P = exp((S - m_new) * scale)             (the softmax scale folded into the exponent)
        c = exp((m - m_new) * scale)             (the correction factor, on the sum AND the output)
        l = c * l + rowsum(P);  O = c * O + P @ V_j;  m = m_new
    out = O / l  (0 where l = 0: fully masked rows);  lse = m * scale + log(l)

The reader streams Q once per item and K/V chunk by chunk (multicast along a grid row when the
plan says so); the writer writes each item's output (and log-sum-exp). Planning — chunk sizes,
the work split, what fits L1 — is tilegrid/kernels/attention/plan.py; every choice arrives here
as a compile-time constant of the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf
from typing import Any

from tilegrid.device import Device
from tilegrid.kernels.attention.problem import BIG, WorkSplit, crosses_mask, kv_chunk_range, work_unit
from tilegrid.lang import (
    Program,
    Semaphore,
    Stream,
    col_index,
    compute,
    core_index,
    datamovement,
    dma,
    fill,
    pykernel_gen,
    row_index,
    rowmax,
    rowsum,
    where,
)


def build_kernel(plan: Any, device: Device, schedule: str = "deterministic", seed: int | None = None) -> Callable:
    """The kernel for one plan (tilegrid/kernels/attention/plan.py `Plan`); its arguments are
    (q, k, v, mask, slopes, lse, out) as `arguments` lays them out."""
    p, cfg = plan.problem, plan.config
    gr, gc = cfg.grid
    ncores = gr * gc
    cq, ck, dt = cfg.q_chunk, cfg.kv_chunk, p.head_dim_pad // 32
    QR, KR = 32 * cq, 32 * ck  # rows per chunk
    G = plan.group  # Q heads stacked in one Q block (GQA packing)
    H, group = p.heads // G, p.heads // p.kv_heads // G
    QG = G * QR  # rows of a Q block: the Q chunk of each of the G heads
    scale, acc_dt, off = p.scale, cfg.acc_dtype, p.offset
    score_dt = plan.score_dtype
    split = WorkSplit.of(p, cfg, G)  # work items dealt to cores: rounds x halves, each a work_unit
    nq, BH, per_bh, halves, units = split.nq, split.bh_count, split.per_bh, split.halves, split.units
    rounds, col_rounds = split.rounds, split.col_rounds
    # which boundaries exist at all (compile-time), evaluated per chunk at run time
    has_left, has_right = p.left is not None, p.right is not None
    left, right = p.left or 0, p.right or 0
    has_pad = p.seq_kv_pad != p.seq_kv
    has_mask, skv, alibi, has_lse = p.has_mask, p.seq_kv, p.alibi, p.return_lse
    softcap = p.softcap is not None
    cap_in, cap_out = (scale / p.softcap, p.softcap / scale) if softcap else (1.0, 1.0)
    kv_all = -(-p.seq_kv // KR)
    skip, mcast, fast_exp = cfg.skip, cfg.mcast, cfg.fast_exp
    # The causal masks of the chunks that cross the diagonal (where L1 has room for them): built
    # once on the SFPU and added per crossing chunk on the FPU, as tt-metal adds the causal mask
    # tiles its writer generates. d0 (and d1): q0 - k0 + offset + right of the crossing chunks.
    one_diagonal, two_diagonals = bool(plan.diagonals), len(plan.diagonals) == 2
    d0, d1 = (plan.diagonals + (0, 0))[:2]
    item_depth, kv_depth = plan.item_slots, plan.kv_slots

    def work_item(t, half):
        """(valid, b * H + h, q chunk) of this core's round t (and half of a causal pair)."""
        return work_unit(t, half, core_index(0), core_index(1), mcast, gr, gc, ncores, per_bh, nq, units, BH,
                         col_rounds)

    def kv_chunks(q0):
        return kv_chunk_range(q0, QR, KR, kv_all, off, has_left, left, has_right, right, skip)

    def key_minus_query():
        """Each score's key position minus its query's, within a chunk pair (the rows of a
        GQA-packed block repeat per head)."""
        return col_index((QG, KR)) - row_index((QG, KR)) % QR

    def causal_mask(d):
        """0 where key - query <= d, else -inf (exact in bf16): added to a chunk the diagonal crosses."""
        return where(key_minus_query() <= d, fill(0.0, shape=(QG, KR), dtype="bf16"), -inf)

    def scores(S, q0, k0, slope, diagonal, diagonal1, mask_cb):
        """Q K^T of one chunk pair as softmax sees it (unscaled: the scale is folded into exp):
        softcapped, ALiBi-biased, and masked where the chunk crosses a mask's boundary."""
        if softcap:  # FlashAttention-2's softcap * tanh(scores / softcap), on the scaled scores
            S = (S * cap_in).tanh() * cap_out
        if alibi:  # - slope * |key - query|, on the scaled scores
            S = S - slope * abs(key_minus_query() + (k0 - q0 - off))
        if has_mask:
            S = S + mask_cb.pop()
        # only chunks that cross a mask boundary pay for masking
        if one_diagonal:  # the causal edge alone (plan.py `diagonal_offsets`)
            if crosses_mask(q0, k0, QR, KR, off, False, 0, True, right, False, skv):
                if two_diagonals and q0 - k0 + off + right == d1:
                    S = S + diagonal1
                else:
                    S = S + diagonal
        elif crosses_mask(q0, k0, QR, KR, off, has_left, left, has_right, right, has_pad, skv):
            rel = key_minus_query()
            if has_right:
                S = where(rel <= q0 - k0 + off + right, S, -inf)
            if has_left:
                S = where(rel >= q0 - k0 + off - left, S, -inf)
            if has_pad:
                S = where(col_index((QG, KR)) < skv - k0, S, -inf)
        return S

    bf = [(G * cq, dt, item_depth), (ck, dt, kv_depth), (ck, dt, kv_depth),
          (G * cq, ck, kv_depth) if has_mask else (1, 1, 1), (G * cq, 1, item_depth) if alibi else (1, 1, 1),
          (G * cq, 1, item_depth) if has_lse else (1, 1, 1), (G * cq, dt, item_depth)]

    @pykernel_gen(grid=(gr, gc), block_factors=bf, num_outs=2 if has_lse else 1, device=device, schedule=schedule,
                  seed=seed)
    def flash_attention(q, k, v, mask, slopes, lse, out):
        q_s, k_s, v_s, mask_s, slopes_s = Stream(q), Stream(k), Stream(v), Stream(mask), Stream(slopes)
        lse_s, out_s = Stream(lse), Stream(out)
        kv_ready, kv_valid = Semaphore(0), Semaphore(0)

        @compute()
        async def attention(q_cb, k_cb, v_cb, mask_cb, slopes_cb, lse_cb, out_cb):
            diagonal = causal_mask(d0) if one_diagonal else None
            diagonal1 = causal_mask(d1) if two_diagonals else None
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        q0 = min(qc, nq - 1) * QR
                        lo, hi = kv_chunks(q0)
                        Q = q_cb.pop()
                        slope = slopes_cb.pop().rowmax() * (1.0 / scale) if alibi else None
                        m = fill(-BIG, shape=(QG, 1), dtype=score_dt)  # running max
                        l_sum = fill(0, shape=(QG, 1), dtype=acc_dt)  # running sum
                        O_acc = fill(0, shape=(QG, 32 * dt), dtype=acc_dt)  # output accumulator
                        for kc in range(lo, hi):
                            K = k_cb.pop()
                            V = v_cb.pop()
                            S = scores(Q @ K.transpose(), q0, kc * KR, slope, diagonal, diagonal1, mask_cb)
                            m_new = rowmax(S, m)
                            # P in the inputs' format (bf16 halves its L1 and unpack bytes); its row
                            # sums accumulate in f32 all the same
                            P = ((S - m_new) * scale).exp(approx=fast_exp).astype(Q.dtype)
                            c = ((m - m_new) * scale).exp()  # the correction factor
                            l_sum = rowsum(P, c * l_sum)
                            O_acc = c * O_acc + P @ V
                            m = m_new
                        out_cb.reserve().store(O_acc * where(l_sum == 0.0, 0.0, l_sum.recip()))  # fully masked: 0
                        if has_lse:
                            lse_cb.reserve().store(m * scale + l_sum.log())

        @datamovement()
        async def reader(q_cb, k_cb, v_cb, mask_cb, slopes_cb, lse_cb, out_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        qc = min(qc, nq - 1)
                        b = bh // H
                        h = bh % H
                        hk = h // group  # grouped-query attention: the shared K/V head (group 1 when packed)
                        lo, hi = kv_chunks(qc * QR)
                        dma(q_s[b, h, qc, 0], q_cb.reserve()).wait()
                        if alibi:
                            dma(slopes_s[b, h, 0, 0], slopes_cb.reserve()).wait()
                        for kc in range(lo, hi):
                            if not mcast or gc == 1:
                                dma(k_s[b, hk, kc, 0], k_cb.reserve()).wait()
                                dma(v_s[b, hk, kc, 0], v_cb.reserve()).wait()
                            else:  # core (r, 0) reads each chunk once and multicasts it along row r
                                kb = k_cb.reserve()
                                vb = v_cb.reserve()
                                if core_index(1) == 0:
                                    dma(k_s[b, hk, kc, 0], kb).wait()
                                    dma(v_s[b, hk, kc, 0], vb).wait()
                                    kv_ready.wait(gc - 1, reset=0)
                                    dma(kb, kb, core=(core_index(0), 1), mcast=(1, gc - 1)).wait()
                                    dma(vb, vb, core=(core_index(0), 1), mcast=(1, gc - 1)).wait()
                                    kv_valid.set(1, core=(core_index(0), 1), mcast=(1, gc - 1))
                                else:
                                    kv_ready.inc(1, core=(core_index(0), 0))
                                    kv_valid.wait(1, reset=0)
                            if has_mask:
                                dma(mask_s[qc, kc], mask_cb.reserve()).wait()

        @datamovement()
        async def writer(q_cb, k_cb, v_cb, mask_cb, slopes_cb, lse_cb, out_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        o = out_cb.pop()
                        if qc < nq:
                            dma(o, out_s[bh // H, bh % H, qc, 0]).wait()
                        if has_lse:
                            s = lse_cb.pop()
                            if qc < nq:
                                dma(s, lse_s[bh // H, bh % H, qc, 0]).wait()

        return Program(attention, reader, writer)(q, k, v, mask, slopes, lse, out)

    return flash_attention
