"""Production FlashAttention against a float64 reference (and torch SDPA when installed).

The parameter matrix a FlashAttention user would recognise: causal or not, head dims
(including padded ones), sequence lengths that are not multiples of 32 or of the chunk,
seq_q != seq_kv, GQA / MQA, sliding windows, masks, fully masked rows, 1x1 .. 8x10 grids,
K/V multicast, bf16 and fp32; plus hypothesis-drawn shapes and options.
"""

from collections import Counter

import numpy as np
import pytest
from helpers import NP, TOL, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st

from tilegrid import TilegridError
from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference
from tilegrid.sim.observer import Counts


def qkv(rng, b, h, hk, sq, skv, d, dtype):
    q = (rng.standard_normal((b, h, sq, d))).astype(NP[dtype])
    k = (rng.standard_normal((b, hk, skv, d))).astype(NP[dtype])
    v = (rng.standard_normal((b, hk, skv, d))).astype(NP[dtype])
    return q, k, v


def check(rng, b, h, hk, sq, skv, d, dtype="bf16", causal=False, window=None, mask=None, grid=(2, 2), mcast=False,
          q_chunk=None, kv_chunk=None, acc_dtype="f32", gqa_pack=None):
    q, k, v = qkv(rng, b, h, hk, sq, skv, d, dtype)
    plans = []
    cfg = AttentionConfig(grid=grid, mcast=mcast, q_chunk=q_chunk, kv_chunk=kv_chunk, acc_dtype=acc_dtype,
                          gqa_pack=gqa_pack)
    out, lse = flash_attention(q, k, v, causal=causal, window=window, mask=mask, return_lse=True, config=cfg,
                               plan_out=plans)
    ref, ref_lse = reference(q, k, v, causal=causal, window=window, mask=mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert not np.isnan(np.asarray(out, np.float64)).any(), "NaN in the output"
    if np.linalg.norm(ref) > 0:
        err = rel_err(out, ref)
        assert err < TOL[dtype], f"relative error {err:.3e} ({dtype}); plan:\n{plans[0].describe()}"
    else:
        assert np.all(np.asarray(out, np.float64) == 0)
    dead = ~np.isfinite(ref_lse)
    assert np.all(np.asarray(out, np.float64)[dead] == 0), "fully masked rows must be 0"
    assert np.all(np.isneginf(lse[dead]))
    live = ~dead
    assert np.allclose(lse[live], ref_lse[live], atol=5e-2 if dtype == "bf16" else 1e-4)
    return plans[0]


CASES = [
    # b, h, hk, sq, skv, d, causal, grid
    (1, 1, 1, 64, 64, 32, False, (1, 1)),
    (1, 2, 2, 128, 128, 64, True, (2, 2)),
    (2, 4, 4, 256, 256, 64, True, (2, 4)),
    (1, 2, 1, 96, 160, 64, True, (2, 2)),     # seq_q < seq_kv, MQA
    (1, 4, 2, 160, 96, 128, True, (1, 3)),    # seq_q > seq_kv: first rows fully masked, GQA
    (1, 1, 1, 100, 77, 80, False, (2, 2)),    # lengths not multiples of 32, head_dim 80 padded to 96
    (1, 1, 1, 333, 333, 32, True, (3, 3)),    # odd chunk counts
    (1, 2, 2, 64, 64, 256, False, (1, 2)),    # head_dim 256
    (1, 3, 1, 224, 224, 96, True, (8, 10)),   # the full Wormhole grid, more cores than work
]


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,grid", CASES)
def test_matrix(b, h, hk, sq, skv, d, causal, grid, dtype, rng):
    check(rng, b, h, hk, sq, skv, d, dtype, causal=causal, grid=grid)


class ChunkSteps:
    """An observer counting the K/V chunk steps each core's compute thread actually ran: every step
    is two matmuls (Q K^T and P V)."""

    def __init__(self) -> None:
        self.matmuls: Counter = Counter()

    def on_op(self, core, thread, op, tiles, loc) -> None:
        if op.name == "tile.matmul":
            self.matmuls[core] += 1

    def on_transfer(self, *a, **kw) -> None:
        return None

    def on_sync(self, *a) -> None:
        pass

    @property
    def per_core(self) -> dict:
        return {c: n // 2 for c, n in self.matmuls.items()}


def visible_chunks(sq, skv, q_rows, kv_rows, causal=False, window=None) -> int:
    """Chunk pairs with at least one allowed (query, key), from the float64 reference's own mask
    (per head): the work a skipping kernel must do and may not skip."""
    i = np.arange(sq)[:, None] + (skv - sq)
    j = np.arange(skv)[None, :]
    allowed = np.ones((sq, skv), bool)
    if causal:
        allowed &= j <= i
    if window is not None:
        if window[0] is not None:
            allowed &= j >= i - window[0]
        if window[1] is not None:
            allowed &= j <= i + window[1]
    blocks = allowed.reshape(sq // q_rows, q_rows, skv // kv_rows, kv_rows).any(axis=(1, 3))
    return int(blocks.sum())


def run_counted(rng, h, sq, skv, causal=False, window=None, grid=(2, 2), q_chunk=2, kv_chunk=2, balance=True):
    q, k, v = qkv(rng, 1, h, h, sq, skv, 64, "f32")
    steps = ChunkSteps()
    cfg = AttentionConfig(grid=grid, q_chunk=q_chunk, kv_chunk=kv_chunk, balance=balance)
    out = flash_attention(q, k, v, causal=causal, window=window, config=cfg, observer=steps)
    assert rel_err(out, reference(q, k, v, causal=causal, window=window)[0]) < TOL["f32"]
    return steps.per_core


@pytest.mark.parametrize("window,causal", [((48, 16), False), ((40, None), True), ((None, 0), False), ((0, 0), False)])
def test_sliding_window_skips_chunks_outside_the_band(window, causal, rng):
    per_core = run_counted(rng, 2, 256, 256, causal=causal, window=window)
    assert sum(per_core.values()) == 2 * visible_chunks(256, 256, 64, 64, causal, window)
    assert sum(per_core.values()) < 2 * 4 * 4, "chunks outside the window must be skipped"


def test_causal_skips_chunks_above_the_diagonal(rng):
    per_core = run_counted(rng, 1, 512, 512, causal=True)
    n = 512 // 64
    assert sum(per_core.values()) == n * (n + 1) // 2 == visible_chunks(512, 512, 64, 64, causal=True)


def test_causal_balance_pairs_early_and_late_chunks(rng):
    """Causal work per core, as the cores ran it: pairing Q chunk i with chunk n-1-i gives every core
    the same number of K/V steps; dealing chunks in order does not."""
    balanced = run_counted(rng, 1, 512, 512, causal=True, grid=(1, 4), q_chunk=1, kv_chunk=1)
    naive = run_counted(rng, 1, 512, 512, causal=True, grid=(1, 4), q_chunk=1, kv_chunk=1, balance=False)
    assert sum(balanced.values()) == sum(naive.values()) == visible_chunks(512, 512, 32, 32, causal=True)
    assert max(balanced.values()) - min(balanced.values()) == 0
    assert max(naive.values()) - min(naive.values()) >= 4


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_attention_mask(kind, rng):
    sq, skv = 96, 128
    keep = rng.random((sq, skv)) > 0.3
    keep[5] = False  # a fully masked row
    mask = keep if kind == "bool" else np.where(keep, rng.standard_normal((sq, skv)) * 0.5, -np.inf).astype(np.float32)
    check(rng, 1, 2, 1, sq, skv, 64, mask=mask, grid=(2, 2))


@pytest.mark.parametrize("seed", range(2))
def test_kv_multicast(seed, rng):
    plan = check(rng, 1, 4, 2, 256, 192, 64, grid=(2, 4), mcast=True, q_chunk=1, kv_chunk=2)
    assert plan.config.mcast


@pytest.mark.parametrize("causal", [False, True])
def test_gqa_reads_each_kv_chunk_once_per_group(causal, rng):
    """K/V chunks read from DRAM, counted by an observer: packed, once per group; unpacked, once per head."""
    reads = {}
    for pack in (True, False):
        q, k, v = qkv(rng, 1, 4, 1, 128, 96, 64, "bf16")
        counts = Counts()
        cfg = AttentionConfig(grid=(2, 2), q_chunk=1, kv_chunk=1, gqa_pack=pack)
        out = flash_attention(q, k, v, causal=causal, config=cfg, observer=counts)
        assert rel_err(out, reference(q, k, v, causal=causal)[0]) < TOL["bf16"]
        reads[pack] = counts.bytes["dram_read"] - q.size * 2  # less Q, read once either way
    assert reads[False] == 4 * reads[True]


def test_kv_multicast_under_random_schedules(rng):
    q, k, v = qkv(rng, 1, 2, 2, 128, 128, 32, "f32")
    ref, _ = reference(q, k, v)
    for seed in range(3):
        out = flash_attention(q, k, v, config=AttentionConfig(grid=(2, 4), mcast=True, q_chunk=1, kv_chunk=1),
                              schedule="random", seed=seed)
        assert rel_err(out, ref) < TOL["f32"]


def test_multicast_is_switched_off_for_causal(rng):
    plan = check(rng, 1, 2, 2, 128, 128, 32, causal=True, grid=(2, 2), mcast=True)
    assert not plan.config.mcast and "multicast" in plan.describe()


def test_causal_without_skipping_computes_every_chunk(rng):
    q, k, v = qkv(rng, 1, 1, 1, 256, 256, 32, "f32")
    plans = []
    out = flash_attention(q, k, v, causal=True, plan_out=plans,
                          config=AttentionConfig(grid=(2, 2), q_chunk=2, kv_chunk=2, skip=False))
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < TOL["f32"]
    assert plans[0].kv_steps == 4 * 4


@pytest.mark.parametrize("sq,skv,chunks,offsets", [
    (256, 256, (2, 2), (0,)),  # equal aligned chunks: one mask serves every crossing chunk
    (192, 256, (2, 2), (0,)),  # bottom-right offset of 64 = one whole chunk: still aligned
    (224, 256, (2, 2), (-32, 32)),  # offset 32 cuts chunks: two crossing patterns
    (256, 256, (2, 1), (-32, 0)),  # Q chunk twice the K/V chunk: two K/V chunks cross it
    (256, 256, (4, 1), ()),  # four patterns: masks computed per chunk instead
])
def test_causal_masks_built_once_when_few_patterns_serve_every_chunk(rng, sq, skv, chunks, offsets):
    plan = check(rng, 1, 2, 2, sq, skv, 32, dtype="f32", causal=True, grid=(2, 2), q_chunk=chunks[0],
                 kv_chunk=chunks[1])
    assert plan.diagonals == offsets
    assert ("built once" in plan.describe()) is bool(offsets)


def test_fast_score_exp_costs_the_approximations_accuracy(rng):
    q, k, v = qkv(rng, 1, 2, 2, 256, 256, 64, "f32")
    ref, _ = reference(q, k, v, causal=True)
    errs = {}
    for fast in (False, True):
        cfg = AttentionConfig(grid=(2, 2), q_chunk=2, kv_chunk=2, fast_exp=fast)
        errs[fast] = rel_err(flash_attention(q, k, v, causal=True, config=cfg), ref)
    # exact exp: fp32 rounding only; the fast exp's +-3% per weight mostly cancels in softmax's ratio
    assert errs[False] < 1e-5 and 1e-3 < errs[True] < 4e-2, errs


def test_fp32_accumulators_beat_bf16_accumulators(rng):
    q, k, v = qkv(rng, 1, 1, 1, 64, 2048, 64, "bf16")
    ref, _ = reference(q, k, v)
    errs = {}
    for acc in ("f32", "bf16"):
        cfg = AttentionConfig(grid=(2, 1), q_chunk=1, kv_chunk=1, acc_dtype=acc)
        errs[acc] = rel_err(flash_attention(q, k, v, config=cfg), ref)
    assert errs["f32"] < TOL["bf16"] and errs["f32"] < errs["bf16"], errs


def test_scale(rng):
    q, k, v = qkv(rng, 1, 1, 1, 64, 64, 64, "f32")
    out = flash_attention(q, k, v, scale=0.3, config=AttentionConfig(grid=(1, 1)))
    assert rel_err(out, reference(q, k, v, scale=0.3)[0]) < TOL["f32"]


def test_torch_tensors_and_sdpa(rng):
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(x) for x in qkv(rng, 1, 2, 2, 128, 128, 64, "f32"))
    out = flash_attention(q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16), causal=True,
                          config=AttentionConfig(grid=(2, 2)))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    assert rel_err(out.float().numpy(), ref.numpy()) < TOL["bf16"]


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_torch_mask_tensors(kind, rng):
    """A torch mask (boolean or additive) is taken as its values; the result comes back as a tensor on q's device."""
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(x) for x in qkv(rng, 1, 2, 2, 64, 96, 32, "f32"))
    if kind == "bool":
        m = torch.from_numpy(rng.random((64, 96)) > 0.3)
        m[:, 0] = True
    else:
        m = torch.from_numpy(rng.standard_normal((64, 96)).astype(np.float32))
    out = flash_attention(q, k, v, mask=m, config=AttentionConfig(grid=(1, 2)))
    assert isinstance(out, torch.Tensor) and out.device == q.device and out.dtype == torch.float32
    ref, _ = reference(q.numpy(), k.numpy(), v.numpy(), mask=m.numpy())
    assert rel_err(out.numpy(), ref) < TOL["f32"]


@pytest.mark.parametrize("bad,match", [
    (dict(q=(1, 2, 64), k=(1, 1, 64, 32)), "batch, heads, seq, head_dim"),
    (dict(q=(1, 3, 64, 32), k=(1, 2, 64, 32)), "multiple of kv_heads"),
    (dict(q=(1, 1, 64, 320), k=(1, 1, 64, 320)), "head_dim"),
])
def test_bad_shapes_are_clear_errors(bad, match, rng):
    q = rng.standard_normal(bad["q"]).astype(np.float32)
    k = rng.standard_normal(bad["k"]).astype(np.float32)
    with pytest.raises(TilegridError, match=match):
        flash_attention(q, k, k)


@settings(deadline=None, max_examples=12, derandomize=False)
@given(
    sq=st.integers(1, 200), skv=st.integers(1, 200), d=st.sampled_from([16, 32, 64, 80]),
    heads=st.sampled_from([(1, 1), (2, 1), (4, 2)]), causal=st.booleans(),
    window=st.sampled_from([None, (32, 8), (None, 16), (64, None)]),
    grid=st.sampled_from([(1, 1), (2, 2), (1, 3), (4, 2)]), dtype=st.sampled_from(["bf16", "f32"]),
)
def test_property(sq, skv, d, heads, causal, window, grid, dtype):
    rng = np.random.default_rng(sq * 1000 + skv)
    check(rng, 1, heads[0], heads[1], sq, skv, d, dtype, causal=causal, window=window, grid=grid)


def test_mismatched_dtypes_are_a_clear_error(rng):
    q, k, v = qkv(rng, 1, 1, 1, 64, 64, 32, "f32")
    with pytest.raises(TilegridError, match="share one dtype"):
        flash_attention(q, k.astype(NP["bf16"]), v)


def test_empty_sequence_is_a_clear_error(rng):
    q, k, v = qkv(rng, 1, 1, 1, 64, 64, 32, "f32")
    with pytest.raises(TilegridError, match="sequences non-empty"):
        flash_attention(q[:, :, :0], k, v)


def test_chunks_that_overflow_l1_are_a_clear_error(rng):
    q, k, v = qkv(rng, 1, 1, 1, 256, 256, 256, "f32")
    with pytest.raises(TilegridError, match="bytes of L1 per core but") as e:
        flash_attention(q, k, v, config=AttentionConfig(grid=(1, 1), q_chunk=8, kv_chunk=8))
    text = e.value.render()
    assert "kernel 'flash_attention'" in text and "no layout fits L1: the smallest tried" in text, text
    assert "q_chunk / kv_chunk" in e.value.note


def test_single_buffered_cbs(rng):
    q, k, v = qkv(rng, 1, 2, 2, 128, 128, 64, "f32")
    out = flash_attention(q, k, v, causal=True, config=AttentionConfig(grid=(2, 2), double_buffer=False))
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < TOL["f32"]


def test_autotuned_plan(rng):
    q, k, v = qkv(rng, 1, 1, 1, 128, 128, 32, "bf16")
    plans = []
    out = flash_attention(q, k, v, causal=True, config=AttentionConfig(grid=(1, 2), autotune=True), plan_out=plans)
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < TOL["bf16"]
    assert plans[0].config.q_chunk and plans[0].config.kv_chunk


def test_production_chunks_keep_the_causal_mask_in_l1():
    # tt-metal's production SDPA shape on Blackhole: 256-row chunks, head_dim 128. With the
    # accumulators updated in place there is room for the causal mask built once and for
    # double-buffered Q / out CBs (compile only, no simulation)
    from ml_dtypes import bfloat16

    from tilegrid.device import BLACKHOLE_P100A
    from tilegrid.kernels.attention import choose_plan, make_problem

    q = np.zeros((1, 32, 4096, 128), bfloat16)
    k = np.zeros((1, 8, 4096, 128), bfloat16)
    cfg = AttentionConfig(q_chunk=8, kv_chunk=8, grid=(8, 8), gqa_pack=False)
    plan = choose_plan(make_problem(q, k, k, True, None, None, None), cfg, BLACKHOLE_P100A, "bf16")
    assert plan.diagonals == (0,) and plan.item_slots == 2
    assert plan.l1.used <= plan.l1.budget


# ---- score transforms, large chunks, planning fallbacks ---------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
def test_softcap(causal, dtype, rng):
    q, k, v = qkv(rng, 1, 2, 1, 96, 160, 64, dtype)
    q = (np.asarray(q, np.float32) * 4).astype(q.dtype)  # large logits, so the cap bites
    out, lse = flash_attention(q, k, v, causal=causal, softcap=5.0, return_lse=True,
                               config=AttentionConfig(grid=(2, 2), q_chunk=1, kv_chunk=2))
    ref, ref_lse = reference(q, k, v, causal=causal, softcap=5.0)
    assert rel_err(out, ref) < TOL[dtype]
    assert rel_err(out, reference(q, k, v, causal=causal)[0]) > 10 * TOL[dtype]  # the cap changed the result
    live = np.isfinite(ref_lse)
    assert np.allclose(lse[live], ref_lse[live], atol=5e-2 if dtype == "bf16" else 1e-4)


@pytest.mark.parametrize("causal,gqa_pack", [(False, True), (True, True), (True, False)])
def test_alibi(causal, gqa_pack, rng):
    q, k, v = qkv(rng, 2, 4, 2, 128, 128, 64, "f32")
    slopes = 2.0 ** (-8.0 * np.arange(1, 5) / 4)  # the ALiBi paper's geometric slopes, one per head
    out = flash_attention(q, k, v, causal=causal, alibi_slopes=slopes,
                          config=AttentionConfig(grid=(2, 2), q_chunk=1, kv_chunk=2, gqa_pack=gqa_pack))
    assert rel_err(out, reference(q, k, v, causal=causal, alibi_slopes=slopes)[0]) < TOL["f32"]
    per_batch = np.stack([slopes, slopes[::-1]])  # [batch, heads]
    out = flash_attention(q, k, v, causal=causal, alibi_slopes=per_batch,
                          config=AttentionConfig(grid=(2, 2), q_chunk=1, kv_chunk=2, gqa_pack=gqa_pack))
    assert rel_err(out, reference(q, k, v, causal=causal, alibi_slopes=per_batch)[0]) < TOL["f32"]


@pytest.mark.parametrize("kv_rows", [512, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_tt_metal_chunks_fit_one_blackhole_core(kv_rows, causal, rng):
    """tt-metal's largest SDPA chunks on Blackhole, 512 query rows with 512 or 128 key rows, head_dim
    128, bf16, GQA unpacked: the kernel fits one p100a core's L1 (accumulators updated in place) and
    is correct."""
    from tilegrid.device import BLACKHOLE_P100A

    q, k, v = qkv(rng, 1, 2, 1, 1024, 1024, 128, "bf16")
    plans = []
    cfg = AttentionConfig(grid=(1, 2), q_chunk=16, kv_chunk=kv_rows // 32, gqa_pack=False)
    out = flash_attention(q, k, v, causal=causal, config=cfg, device=BLACKHOLE_P100A, plan_out=plans)
    plan = plans[0]
    assert (plan.config.q_chunk, plan.config.kv_chunk, plan.group) == (16, kv_rows // 32, 1)
    assert plan.l1.used <= plan.l1.budget == BLACKHOLE_P100A.l1_bytes
    assert rel_err(out, reference(q, k, v, causal=causal)[0]) < TOL["bf16"]


def test_gqa_problem_from_the_fa2_matrix_that_did_not_fit(rng):
    """From FlashAttention-2's test matrix: MQA with 9 query heads, head_dim 192, 108 x 256, fp32
    (once an L1 overflow: nine heads stacked in one block)."""
    q, k, v = qkv(rng, 1, 9, 1, 108, 256, 192, "f32")
    assert rel_err(flash_attention(q, k, v), reference(q, k, v)[0]) < TOL["f32"]


def test_gqa_packing_that_does_not_fit_packs_fewer_heads(rng):
    """32 query heads on one K/V head, head_dim 256, fp32, one core: the 32 heads' Q chunks stacked
    in one block (1 MiB) cannot fit L1 whatever the chunks; the planner packs fewer heads per block
    (the most that fit) instead of failing."""
    q, k, v = qkv(rng, 1, 32, 1, 32, 64, 256, "f32")
    plans = []
    out = flash_attention(q, k, v, plan_out=plans, config=AttentionConfig(grid=(1, 1)))
    plan = plans[0]
    assert 1 < plan.group < 32 and 32 % plan.group == 0
    assert f"GQA: {plan.group} of each K/V group's 32 Q heads per work item (the whole group does not fit L1)" \
        in plan.describe()
    assert rel_err(out, reference(q, k, v)[0]) < TOL["f32"]
    # twice the heads per block does not fit: the planner took the most that do
    from dataclasses import replace

    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention.plan import fit_l1
    assert fit_l1(replace(plan, group=2 * plan.group), WORMHOLE)[0] is None


def test_gqa_packs_fewer_heads_to_give_every_core_work(rng):
    """MQA, 8 query heads, 64 rows, 4 cores: the whole group in one block is one work item for four
    cores; two heads per block give every core work and still read each K/V chunk once per block."""
    q, k, v = qkv(rng, 1, 8, 1, 64, 96, 64, "bf16")
    plans = []
    out = flash_attention(q, k, v, causal=True, plan_out=plans, config=AttentionConfig(grid=(2, 2)))
    assert plans[0].items >= 4 and plans[0].group > 1 and "would leave cores without work" in plans[0].describe()
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < TOL["bf16"]
    unpacked, whole = [], []
    flash_attention(q, k, v, causal=True, plan_out=unpacked, config=AttentionConfig(grid=(2, 2), gqa_pack=False))
    assert unpacked[0].group == 1 and "GQA" not in unpacked[0].describe()
    out = flash_attention(q, k, v, causal=True, plan_out=whole, config=AttentionConfig(grid=(2, 2), gqa_pack=True))
    assert whole[0].group == 8 and whole[0].items < 4  # asked for: the whole group, whatever the cores
    assert rel_err(out, reference(q, k, v, causal=True)[0]) < TOL["bf16"]


def test_mha_plan_says_nothing_about_gqa(rng):
    q, k, v = qkv(rng, 1, 2, 2, 64, 64, 256, "f32")
    plans = []
    flash_attention(q, k, v, plan_out=plans, config=AttentionConfig(grid=(1, 1)))
    assert "GQA" not in plans[0].describe()


@pytest.mark.parametrize("dtype", ["int64", "int32", "float16", "float64"])
def test_torch_and_numpy_dtypes_other_than_bf16_and_f32_are_rejected_alike(dtype, rng):
    """No silent casts: torch tensors of other dtypes are refused as NumPy arrays of them are."""
    torch = pytest.importorskip("torch")
    q = rng.standard_normal((1, 1, 64, 32)) * 4
    for x in (torch.from_numpy(q.astype(dtype)), q.astype(dtype)):
        with pytest.raises(TilegridError, match="must be bfloat16 or float32") as e:
            flash_attention(x, x, x)
        assert str(dtype) in e.value.message and e.value.note


def test_one_array_as_q_k_and_v(rng):
    """flash_attention(x, x, x): one array passed as all three inputs (once 'Stream is ambiguous')."""
    x = rng.standard_normal((1, 2, 96, 64)).astype(np.float32)
    out = flash_attention(x, x, x, causal=True, config=AttentionConfig(grid=(2, 2)))
    assert rel_err(out, reference(x, x, x, causal=True)[0]) < TOL["f32"]
