"""FlashAttention backward, the kernels: three programs written in the tilegrid language.

FlashAttention-2's backward (Dao 2023, Algorithm 2) recomputes the probabilities from Q, K and the
forward's log-sum-exp instead of storing them. With S = Q K^T, P = exp(S * scale - lse):

    delta = rowsum(dO * O)                          (prep: one pass over O and dO)
    dV = P^T dO;  dP = dO V^T;  dS = P * (dP - delta)
    dK = scale * dS^T Q;  dQ = scale * dS K         (the scale applied once, at the end)

The work is split so that no two cores ever add into the same output block (Tensix has no
atomic adds to DRAM, and a GPU run of the same program needs none):

- `build_prep`: per Q chunk, delta and lse / scale (fully masked rows: +BIG, so P = 0), written
  twice: as columns (L in columns 0..15, delta in 16..31 of a 32-wide block) for the dQ pass and
  transposed as rows for the dK/dV pass; one tile row holds both, so each pass reads one block.
- `build_dkdv`: per K/V chunk (and K/V head), dK and dV accumulate in fp32 over every Q chunk
  that sees the chunk, and over every Q head of a grouped-query group (GQA/MQA sums its
  gradients inside one work item). It works transposed, S^T = K Q^T, so that P^T and dS^T are
  what the matmuls dV += P^T dO and dK += dS^T Q take as they are.
- `build_dq`: per Q chunk, dQ accumulates over the K/V chunks the chunk sees, recomputing S and
  dP (two more matmuls per chunk pair than an atomic dQ would cost: 7 instead of 5).

Masks follow the forward: causal (bottom-right aligned), windows, padding and a user mask, only
on the chunks that cross a boundary; chunks a mask hides wholly are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf
from typing import Any

from tilegrid.device import Device
from tilegrid.kernels.attention.problem import BIG, Problem, kv_chunk_range
from tilegrid.lang import (
    Program,
    Stream,
    col_index,
    compute,
    core_index,
    datamovement,
    dma,
    fill,
    pykernel_gen,
    row_index,
    where,
)


def q_chunk_range(k0, kv_rows, q_rows, q_chunks, offset, has_left, left, has_right, right):
    """Q chunks [lo, hi) holding a query that sees a key of [k0, k0 + kv_rows): the mirror of
    `kv_chunk_range` (a query at row i sees keys i + offset - left .. i + offset + right)."""
    lo = 0
    hi = q_chunks
    if has_right:
        lo = min(q_chunks, max(0, (k0 - offset - right) // q_rows))
    if has_left:
        hi = max(lo, min(q_chunks, (k0 + kv_rows - 1 - offset + left) // q_rows + 1))
    return lo, hi


def dealer(grid: tuple[int, int], groups: int, chunks: int, pairs: bool) -> tuple[Callable, int, int]:
    """`work_item(t, half) -> (valid, group, chunk)`: the items (group, chunk) dealt round-robin to
    the cores, one per core per round t; with `pairs` chunk j and chunks - 1 - j make one item
    (the two halves), so causal work is even across cores. Also the rounds and halves."""
    gr, gc = grid
    ncores = gr * gc
    per_group = (chunks + 1) // 2 if pairs else chunks
    units = groups * per_group

    def work_item(t, half):
        u = t * ncores + core_index(0) * gc + core_index(1)
        grp = u // per_group
        j = u % per_group
        c = j if half == 0 else chunks - 1 - j
        valid = u < units and (half == 0 or c != j)
        return valid, grp, c

    return work_item, -(-units // ncores), 2 if pairs else 1


def band(p: Problem) -> tuple[int, bool, int, bool, int]:
    """(offset, has_left, left, has_right, right): the keys each query sees, as the chunk rules take them."""
    return p.offset, p.left is not None, p.left or 0, p.right is not None, p.right or 0


def chunk_masker(p: Problem, q_rows: int, kv_rows: int, keys_on_rows: bool) -> Callable:
    """`masked(S, q0, k0, mask_cb, edge=True)`: the scores of the chunk pair at query q0, key k0 with
    the user's mask added and -inf where causal / window / padding hide a key, paid only by the
    chunks that cross a boundary (`edge=False`: a chunk known to cross no causal / window boundary,
    only padding is checked). `keys_on_rows`: S is transposed (keys down, queries across)."""
    off, has_left, left, has_right, right = band(p)
    skv, has_pad, has_mask = p.seq_kv, p.seq_kv_pad != p.seq_kv, p.has_mask
    shape = (kv_rows, q_rows) if keys_on_rows else (q_rows, kv_rows)

    def masked(S, q0, k0, mask_cb, edge=True):
        if has_mask:
            S = S + mask_cb.pop()
        if (edge and has_right and k0 + kv_rows - 1 > q0 + off + right) or (
                edge and has_left and k0 < q0 + q_rows - 1 + off - left) or (has_pad and k0 + kv_rows > skv):
            if keys_on_rows:
                key = row_index(shape)
                rel = key - col_index(shape)
            else:
                key = col_index(shape)
                rel = key - row_index(shape)
            if has_right:
                S = where(rel <= q0 - k0 + off + right, S, -inf)
            if has_left:
                S = where(rel >= q0 - k0 + off - left, S, -inf)
            if has_pad:
                S = where(key < skv - k0, S, -inf)
        return S

    return masked


def build_prep(plan: Any, device: Device, schedule: str = "deterministic", seed: int | None = None) -> Callable:
    """delta = rowsum(O * dO) and L = lse / scale per Q chunk; arguments (out, dout, lse, stats_col,
    stats_row) as `backward.arguments` lays them out."""
    p, grid = plan.problem, plan.grid
    cq, dt = plan.dq[0], p.head_dim_pad // 32
    QR, H, inv = 32 * cq, p.heads, 1.0 / p.scale
    work_item, rounds, _ = dealer(grid, p.batch * p.heads, p.seq_q_pad // QR, False)
    bf = [(cq, dt, 2), (cq, dt, 2), (cq, 1, 2), (cq, 1, 2), (1, cq, 2)]

    @pykernel_gen(grid=grid, block_factors=bf, num_outs=2, device=device, schedule=schedule, seed=seed)
    def attention_backward_prep(out, dout, lse, stats_col, stats_row):
        o_s, do_s, lse_s, col_s, row_s = Stream(out), Stream(dout), Stream(lse), Stream(stats_col), Stream(stats_row)

        @compute()
        async def prep(o_cb, do_cb, lse_cb, col_cb, row_cb):
            for t in range(rounds):
                valid, bh, qc = work_item(t, 0)
                if valid:
                    out_blk = o_cb.pop()
                    dO = do_cb.pop()
                    lse = lse_cb.pop()
                    delta = (out_blk.astype("f32") * dO).rowsum()
                    L = where(lse > -BIG, lse * inv, BIG)  # fully masked rows (lse = -inf): P = 0
                    stats = where(col_index((QR, 32)) < 16, L, delta)
                    col_cb.reserve().store(stats)
                    row_cb.reserve().store(stats.transpose())

        @datamovement()
        async def reader(o_cb, do_cb, lse_cb, col_cb, row_cb):
            for t in range(rounds):
                valid, bh, qc = work_item(t, 0)
                if valid:
                    dma(o_s[bh // H, bh % H, qc, 0], o_cb.reserve()).wait()
                    dma(do_s[bh // H, bh % H, qc, 0], do_cb.reserve()).wait()
                    dma(lse_s[bh // H, bh % H, qc, 0], lse_cb.reserve()).wait()

        @datamovement()
        async def writer(o_cb, do_cb, lse_cb, col_cb, row_cb):
            for t in range(rounds):
                valid, bh, qc = work_item(t, 0)
                if valid:
                    dma(col_cb.pop(), col_s[bh // H, bh % H, qc, 0]).wait()
                    dma(row_cb.pop(), row_s[bh // H, bh % H, 0, qc]).wait()

        return Program(prep, reader, writer)(out, dout, lse, stats_col, stats_row)

    return attention_backward_prep


def build_dkdv(plan: Any, device: Device, schedule: str = "deterministic", seed: int | None = None) -> Callable:
    """dK, dV per K/V chunk; arguments (q, k, v, dout, stats_row, mask_t, dk, dv)."""
    p, grid = plan.problem, plan.grid
    (ck, cq), dt = plan.dkdv, p.head_dim_pad // 32
    QR, KR, D = 32 * cq, 32 * ck, p.head_dim_pad
    HK, group, scale = p.kv_heads, p.heads // p.kv_heads, p.scale
    q_all, has_mask = -(-p.seq_q // QR), p.has_mask
    off, has_left, left, has_right, right = band(p)
    work_item, rounds, halves = dealer(grid, p.batch * HK, p.seq_kv_pad // KR, p.causal and plan.balance)
    masked = chunk_masker(p, QR, KR, keys_on_rows=True)
    item, stream = plan.item_slots, plan.stream_slots

    def q_chunks(k0):
        return q_chunk_range(k0, KR, QR, q_all, off, has_left, left, has_right, right)

    def q_bounds(k0):
        """(lo, a, b, hi): the Q chunks [lo, hi) of the K/V chunk at k0 in three runs: [lo, a) cross the
        causal boundary (a query sees fewer keys than the chunk holds), [b, hi) the window's left
        boundary, [a, b) neither. Only the edge runs check the boundaries, so the interior loop, most
        of the work at long sequences, has no branch (on a GPU: no spills, no barriers)."""
        lo, hi = q_chunks(k0)
        a = min(hi, max(lo, (k0 + KR - 1 - off - right + QR - 1) // QR)) if has_right else lo
        b = max(a, min(hi, (k0 - QR + 1 - off + left) // QR + 1)) if has_left else hi
        return lo, a, b, hi

    def step(K, V, dK, dV, q_cb, do_cb, st_cb, mask_cb, k0, qc, edge):
        """dK, dV plus the Q chunk qc's share."""
        Q = q_cb.pop()
        dO = do_cb.pop()
        st = st_cb.pop()
        # [1, QR]: lse / scale (rows 0..15 of st) and delta (rows 16..31), each one row of st (the GPU
        # backend loads that row alone: no reduction across rows)
        L = where(row_index((32, QR)) == 0, st, -inf).colmax()
        delta = where(row_index((32, QR)) == 16, st, -inf).colmax()
        ST = masked(K @ Q.transpose(), qc * QR, k0, mask_cb, edge)
        PT = ((ST - L) * scale).exp()  # P^T, recomputed
        dV = dV + PT.astype(Q.dtype) @ dO
        dST = PT * (V @ dO.transpose() - delta)  # dS^T = P^T * (dP^T - delta)
        dK = dK + dST.astype(Q.dtype) @ Q
        return dK, dV

    def read(q_s, do_s, st_s, mask_s, q_cb, do_cb, st_cb, mask_cb, b, h, kc, qc):
        """The blocks of `step` for the Q chunk qc of head h."""
        dma(q_s[b, h, qc, 0], q_cb.reserve()).wait()
        dma(do_s[b, h, qc, 0], do_cb.reserve()).wait()
        dma(st_s[b, h, 0, qc], st_cb.reserve()).wait()
        if has_mask:
            dma(mask_s[kc, qc], mask_cb.reserve()).wait()

    bf = [(cq, dt, stream), (ck, dt, item), (ck, dt, item), (cq, dt, stream), (1, cq, stream),
          (ck, cq, stream) if has_mask else (1, 1, 1), (ck, dt, item), (ck, dt, item)]

    @pykernel_gen(grid=grid, block_factors=bf, num_outs=2, device=device, schedule=schedule, seed=seed)
    def attention_backward_dkdv(q, k, v, dout, stats_row, mask_t, dk, dv):
        q_s, k_s, v_s, do_s, st_s, mask_s = Stream(q), Stream(k), Stream(v), Stream(dout), Stream(stats_row), \
            Stream(mask_t)
        dk_s, dv_s = Stream(dk), Stream(dv)

        @compute()
        async def dkdv(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dk_cb, dv_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bhk, kc = work_item(t, half)
                    if valid:
                        k0 = kc * KR
                        K = k_cb.pop()
                        V = v_cb.pop()
                        dK = fill(0, shape=(KR, D), dtype="f32")
                        dV = fill(0, shape=(KR, D), dtype="f32")
                        lo, a, b, hi = q_bounds(k0)
                        for g in range(group):  # the Q heads sharing this K/V head: their gradients add up
                            if has_right:
                                for qc in range(lo, a):
                                    dK, dV = step(K, V, dK, dV, q_cb, do_cb, st_cb, mask_cb, k0, qc, True)
                            for qc in range(a, b):
                                dK, dV = step(K, V, dK, dV, q_cb, do_cb, st_cb, mask_cb, k0, qc, False)
                            if has_left:
                                for qc in range(b, hi):
                                    dK, dV = step(K, V, dK, dV, q_cb, do_cb, st_cb, mask_cb, k0, qc, True)
                        dk_cb.reserve().store(dK * scale)
                        dv_cb.reserve().store(dV)

        @datamovement()
        async def reader(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dk_cb, dv_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bhk, kc = work_item(t, half)
                    if valid:
                        b = bhk // HK
                        hk = bhk % HK
                        dma(k_s[b, hk, kc, 0], k_cb.reserve()).wait()
                        dma(v_s[b, hk, kc, 0], v_cb.reserve()).wait()
                        lo, a, b_, hi = q_bounds(kc * KR)
                        for g in range(group):
                            h = hk * group + g
                            if has_right:
                                for qc in range(lo, a):
                                    read(q_s, do_s, st_s, mask_s, q_cb, do_cb, st_cb, mask_cb, b, h, kc, qc)
                            for qc in range(a, b_):
                                read(q_s, do_s, st_s, mask_s, q_cb, do_cb, st_cb, mask_cb, b, h, kc, qc)
                            if has_left:
                                for qc in range(b_, hi):
                                    read(q_s, do_s, st_s, mask_s, q_cb, do_cb, st_cb, mask_cb, b, h, kc, qc)

        @datamovement()
        async def writer(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dk_cb, dv_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bhk, kc = work_item(t, half)
                    if valid:
                        dma(dk_cb.pop(), dk_s[bhk // HK, bhk % HK, kc, 0]).wait()
                        dma(dv_cb.pop(), dv_s[bhk // HK, bhk % HK, kc, 0]).wait()

        return Program(dkdv, reader, writer)(q, k, v, dout, stats_row, mask_t, dk, dv)

    return attention_backward_dkdv


def build_dq(plan: Any, device: Device, schedule: str = "deterministic", seed: int | None = None) -> Callable:
    """dQ per Q chunk; arguments (q, k, v, dout, stats_col, mask, dq)."""
    p, grid = plan.problem, plan.grid
    (cq, ck), dt = plan.dq, p.head_dim_pad // 32
    QR, KR, D = 32 * cq, 32 * ck, p.head_dim_pad
    H, group, scale = p.heads, p.heads // p.kv_heads, p.scale
    kv_all, has_mask = -(-p.seq_kv // KR), p.has_mask
    off, has_left, left, has_right, right = band(p)
    work_item, rounds, halves = dealer(grid, p.batch * H, p.seq_q_pad // QR, p.causal and plan.balance)
    masked = chunk_masker(p, QR, KR, keys_on_rows=False)
    item, stream = plan.item_slots, plan.stream_slots

    def kv_chunks(q0):
        return kv_chunk_range(q0, QR, KR, kv_all, off, has_left, left, has_right, right, True)

    bf = [(cq, dt, item), (ck, dt, stream), (ck, dt, stream), (cq, dt, item), (cq, 1, item),
          (cq, ck, stream) if has_mask else (1, 1, 1), (cq, dt, item)]

    @pykernel_gen(grid=grid, block_factors=bf, device=device, schedule=schedule, seed=seed)
    def attention_backward_dq(q, k, v, dout, stats_col, mask, dq):
        q_s, k_s, v_s, do_s, st_s, mask_s = Stream(q), Stream(k), Stream(v), Stream(dout), Stream(stats_col), \
            Stream(mask)
        dq_s = Stream(dq)

        @compute()
        async def dq_pass(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dq_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        q0 = qc * QR
                        lo, hi = kv_chunks(q0)
                        Q = q_cb.pop()
                        dO = do_cb.pop()
                        st = st_cb.pop()
                        first = col_index((QR, 32)) < 16
                        L = where(first, st, -inf).rowmax()  # [QR, 1]: lse / scale
                        delta = where(first, -inf, st).rowmax()
                        dQ = fill(0, shape=(QR, D), dtype="f32")
                        for kc in range(lo, hi):
                            K = k_cb.pop()
                            V = v_cb.pop()
                            S = masked(Q @ K.transpose(), q0, kc * KR, mask_cb)
                            P = ((S - L) * scale).exp()
                            dS = P * (dO @ V.transpose() - delta)
                            dQ = dQ + dS.astype(Q.dtype) @ K
                        dq_cb.reserve().store(dQ * scale)

        @datamovement()
        async def reader(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dq_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        b = bh // H
                        h = bh % H
                        hk = h // group
                        lo, hi = kv_chunks(qc * QR)
                        dma(q_s[b, h, qc, 0], q_cb.reserve()).wait()
                        dma(do_s[b, h, qc, 0], do_cb.reserve()).wait()
                        dma(st_s[b, h, qc, 0], st_cb.reserve()).wait()
                        for kc in range(lo, hi):
                            dma(k_s[b, hk, kc, 0], k_cb.reserve()).wait()
                            dma(v_s[b, hk, kc, 0], v_cb.reserve()).wait()
                            if has_mask:
                                dma(mask_s[qc, kc], mask_cb.reserve()).wait()

        @datamovement()
        async def writer(q_cb, k_cb, v_cb, do_cb, st_cb, mask_cb, dq_cb):
            for t in range(rounds):
                for half in range(halves):
                    valid, bh, qc = work_item(t, half)
                    if valid:
                        dma(dq_cb.pop(), dq_s[bh // H, bh % H, qc, 0]).wait()

        return Program(dq_pass, reader, writer)(q, k, v, dout, stats_col, mask, dq)

    return attention_backward_dq
