"""What FlashAttention computes (the problem) and how a user may ask it to be laid out (the config),
and the one rule both the planner and the kernel use: which K/V chunks a Q chunk must visit."""

from __future__ import annotations

from dataclasses import dataclass

# The running max starts at a very negative finite value, not -inf: a row that is masked so far
# keeps m = -BIG, and exp(S - m) = exp(-inf) = 0, exp(m_old - m_new) = 1 without -inf - -inf.
BIG = 1e30


@dataclass(frozen=True)
class AttentionConfig:
    """How the kernel is laid out; `None` fields are chosen from the shapes, L1 and DST.

    q_chunk / kv_chunk: tiles (of 32 rows) of Q / K-V per chunk.
    grid: (rows, cols) of cores (default: the device's whole grid).
    mcast: share K/V chunks along grid rows by multicast (non-causal, no window only).
    acc_dtype: format of the running sum and output accumulator ("f32" or "bf16"); the running
        max is kept in the scores' own format (the max of bf16 scores is a bf16 value).
    balance: pair early and late Q chunks so causal work is even across cores.
    gqa_pack: with fewer K/V heads than Q heads, one work item stacks the Q chunks of the heads
        of a K/V group into one taller block, so each K/V chunk is read once per block of heads
        (not once per Q head). None (default): the planner packs the whole group, or fewer heads
        per block where the whole group does not fit L1 or would leave cores without work; True:
        the whole group (fewer heads only where L1 requires); False: one head per work item, as
        tt-metal's SDPA lays GQA out.
    double_buffer: CBs of 2 slots so data movement overlaps compute (the planner single-buffers
        per-item CBs, then K/V, when that is what makes a layout fit L1).
    autotune: choose q_chunk / kv_chunk by the performance model's predicted time (tilegrid.perf)
        instead of "largest that fits L1 and gives every core work"; inside a perf session, for
        that session's fidelity, exp mode and data format (else HiFi4, accurate exp).
    skip: skip K/V chunks that a causal / window mask hides wholly (off: compute and mask them,
        the roadmap's "causal without skipping", for measuring what skipping saves).
    fast_exp: the scores' exp uses the SFPU's fast approximate exponential
        (`exp(x, approx=True)`), as tt-metal's SDPA does whatever its exp_approx_mode; the
        correction factor's exp follows the run's exp mode either way.
    """

    q_chunk: int | None = None
    kv_chunk: int | None = None
    grid: tuple[int, int] | None = None
    mcast: bool = False
    acc_dtype: str = "f32"
    balance: bool = True
    gqa_pack: bool | None = None
    double_buffer: bool = True
    autotune: bool = False
    skip: bool = True
    fast_exp: bool = False


@dataclass(frozen=True)
class Problem:
    """Shapes after padding (elements), the masking rules and the score transforms, as the kernel sees them."""

    batch: int
    heads: int
    kv_heads: int
    seq_q: int  # real lengths
    seq_kv: int
    head_dim: int
    seq_q_pad: int
    seq_kv_pad: int
    head_dim_pad: int
    causal: bool
    window: tuple[int | None, int | None]
    has_mask: bool
    scale: float
    softcap: float | None = None  # scores become softcap * tanh(scores / softcap)
    alibi: bool = False  # per-head slopes: scores - slope * |key position - query position|
    return_lse: bool = True

    @property
    def offset(self) -> int:
        """Query i sits at key position i + offset (bottom-right alignment, as FlashAttention)."""
        return self.seq_kv - self.seq_q

    @property
    def right(self) -> int | None:
        """Keys allowed to the right of a query's position (None: unbounded)."""
        r = self.window[1]
        if self.causal:
            return 0 if r is None else min(r, 0)
        return r

    @property
    def left(self) -> int | None:
        return self.window[0]


def kv_chunk_range(q0, q_rows, kv_rows, kv_chunks, offset, has_left, left, has_right, right, skip):
    """K/V chunks [lo, hi) not wholly masked for the queries [q0, q0 + q_rows): a query at row i
    sees keys i + offset - left .. i + offset + right. Plain Python over integers: the planner calls
    it with numbers, the kernel's threads with run-time values (the frontend inlines it)."""
    lo = 0
    hi = kv_chunks
    if has_left and skip:
        lo = max(0, (q0 + offset - left) // kv_rows)
    if has_right and skip:
        hi = max(lo, min(kv_chunks, (q0 + q_rows - 1 + offset + right) // kv_rows + 1))
    return lo, hi


def crosses_mask(q0, k0, q_rows, kv_rows, offset, has_left, left, has_right, right, has_pad, seq_kv):
    """Whether the chunk pair (queries from q0, keys from k0) crosses a boundary of the mask: a
    causal / window edge or the keys' padding (the chunks that pay for masking). Plain Python, as
    `kv_chunk_range`: the kernel's compute thread and the autotuner's bounds call it."""
    return (has_right and k0 + kv_rows - 1 > q0 + offset + right) or (
        has_left and k0 < q0 + q_rows - 1 + offset - left) or (has_pad and k0 + kv_rows > seq_kv)


@dataclass(frozen=True)
class WorkSplit:
    """How work items (batch x packed head x Q chunk) are dealt to the cores: what the kernel's
    threads loop over (`rounds` x `halves`, each resolved by `work_unit`)."""

    grid: tuple[int, int]
    mcast: bool
    nq: int  # Q chunks per head
    bh_count: int  # batch x packed heads
    per_bh: int  # units per (batch, head): Q chunks, or causal pairs of them
    halves: int  # 2 when a unit is a causal pair
    units: int
    rounds: int
    col_rounds: int

    @staticmethod
    def of(p: Problem, cfg: AttentionConfig, group: int) -> WorkSplit:
        gr, gc = cfg.grid
        nq = p.seq_q_pad // (32 * cfg.q_chunk)
        bh = p.batch * (p.heads // group)
        pairs = cfg.balance and p.causal and not cfg.mcast
        per_bh = (nq + 1) // 2 if pairs else nq
        units = bh * per_bh
        col_rounds = -(-nq // gc)
        rounds = -(-bh // gr) * col_rounds if cfg.mcast else -(-units // (gr * gc))
        return WorkSplit((gr, gc), cfg.mcast, nq, bh, per_bh, 2 if pairs else 1, units, rounds, col_rounds)

    def items(self, r: int, c: int) -> list[tuple[int, int]]:
        """(b * H + h, q chunk) of every work item core (r, c) computes, in order."""
        gr, gc = self.grid
        out = []
        for t in range(self.rounds):
            for half in range(self.halves):
                valid, bh, qc = work_unit(t, half, r, c, self.mcast, gr, gc, gr * gc, self.per_bh, self.nq,
                                          self.units, self.bh_count, self.col_rounds)
                if valid:
                    out.append((bh, qc))
        return out


def work_unit(t, half, r, c, mcast, gr, gc, ncores, per_bh, nq, units, bh_count, col_rounds):
    """(valid, b * H + h, q chunk) of core (r, c)'s round t (and half of a causal pair). With K/V
    multicast, grid row r works on heads r, r + gr, ... and the columns split the Q chunks (a chunk
    index may pass nq: computed, never written); else units are dealt round-robin, and with causal
    pairs (`per_bh` < nq) a unit is Q chunks j and nq - 1 - j. Plain Python over integers: the
    kernel's threads call it with core indices, the autotuner's bounds with numbers."""
    if mcast:
        bh = r + (t // col_rounds) * gr
        qc = c + (t % col_rounds) * gc
        valid = bh < bh_count
    else:
        u = t * ncores + r * gc + c
        bh = u // per_bh
        j = u % per_bh
        qc = j if half == 0 else nq - 1 - j
        valid = u < units and (half == 0 or qc != j)
    return valid, bh, qc


def chunk_crosses(p: Problem, q0: int, k0: int, q_rows: int, kv_rows: int) -> bool:
    """`crosses_mask` for a problem."""
    return bool(crosses_mask(q0, k0, q_rows, kv_rows, p.offset, p.left is not None, p.left or 0, p.right is not None,
                             p.right or 0, p.seq_kv_pad != p.seq_kv, p.seq_kv))


def chunk_range(p: Problem, q0: int, q_rows: int, kv_rows: int, skip: bool = True) -> tuple[int, int]:
    """`kv_chunk_range` for a problem."""
    return kv_chunk_range(q0, q_rows, kv_rows, -(-p.seq_kv // kv_rows), p.offset, p.left is not None, p.left or 0,
                          p.right is not None, p.right or 0, skip)
