"""FlashAttention backward on the simulator against float64 analytic gradients.

The forward's parameter matrix: causal with seq_q != seq_kv, GQA / MQA (dK, dV summed over each
group), sliding windows, boolean and additive masks, lengths that are not multiples of 32, head_dim
32..256, fully masked rows (zero gradients), bf16 and fp32. The out / lse the backward takes come
from tilegrid's own forward, as a training step would produce them. A small matrix runs in CI; the
whole cross product is marked slow.
"""

from collections import Counter

import numpy as np
import pytest
from helpers import NP, TOL, rel_err

from tilegrid import TilegridError
from tilegrid.kernels import flash_attention, flash_attention_backward, reference_backward
from tilegrid.kernels.attention import AttentionConfig


def run(rng, b, h, hk, sq, skv, d, dtype="f32", causal=False, window=None, mask=None, grid=(2, 2), chunks=None,
        observer=None):
    """Random q, k, v, dout; tilegrid's forward (out, lse) and backward; the float64 gradients."""
    q = rng.standard_normal((b, h, sq, d)).astype(NP[dtype])
    k, v = (rng.standard_normal((b, hk, skv, d)).astype(NP[dtype]) for _ in range(2))
    dout = rng.standard_normal((b, h, sq, d)).astype(NP[dtype])
    out, lse = flash_attention(q, k, v, causal=causal, window=window, mask=mask, return_lse=True,
                               config=AttentionConfig(grid=grid))
    plans = []
    grads = flash_attention_backward(q, k, v, out, lse, dout, causal=causal, window=window, mask=mask, grid=grid,
                                     chunks=chunks, plan_out=plans, observer=observer)
    return grads, reference_backward(q, k, v, dout, causal=causal, window=window, mask=mask), plans[0]


def allowed(sq, skv, causal=False, window=None, mask=None):
    """[seq_q, seq_kv]: which keys each query sees (bottom-right aligned, as the forward)."""
    i = np.arange(sq)[:, None] + (skv - sq)
    j = np.arange(skv)[None, :]
    ok = np.ones((sq, skv), bool)
    if causal:
        ok &= j <= i
    if window is not None and window[0] is not None:
        ok &= j >= i - window[0]
    if window is not None and window[1] is not None:
        ok &= j <= i + window[1]
    if mask is not None:
        ok &= np.asarray(mask) if np.asarray(mask).dtype == bool else np.isfinite(mask)
    return ok


def check(rng, *shape, dtype="f32", causal=False, window=None, mask=None, **kw):
    grads, refs, plan = run(rng, *shape, dtype=dtype, causal=causal, window=window, mask=mask, **kw)
    ok = allowed(shape[3], shape[4], causal, window, mask)
    dead = {"dq": ~ok.any(1), "dk": ~ok.any(0), "dv": ~ok.any(0)}  # queries / keys with no allowed pair
    for name, g, r in zip(("dq", "dk", "dv"), grads, refs):
        assert g.shape == r.shape and g.dtype == np.dtype(NP[dtype]), f"{name}: {g.shape} {g.dtype}"
        err = rel_err(g, r)
        assert err < TOL[dtype], f"{name}: relative error {err:.3e} ({dtype}); {plan.describe()}"
        assert np.all(np.asarray(g, np.float64)[:, :, dead[name]] == 0), f"{name}: rows with no visible pair must be 0"
    return plan


CASES = [
    # b, h, hk, sq, skv, d, causal, grid, dtype
    (1, 1, 1, 64, 64, 32, False, (1, 1), "f32"),
    (1, 2, 2, 128, 128, 64, True, (2, 2), "bf16"),
    (1, 2, 1, 96, 160, 64, True, (2, 2), "f32"),      # seq_q < seq_kv, MQA
    (1, 4, 2, 160, 96, 128, True, (1, 3), "bf16"),    # seq_q > seq_kv: first rows fully masked, GQA
    (1, 1, 1, 100, 77, 80, False, (2, 2), "f32"),     # lengths not multiples of 32, head_dim 80 padded to 96
    (1, 2, 2, 64, 64, 256, False, (1, 2), "bf16"),    # head_dim 256
]
SLOW_CASES = [
    (2, 4, 4, 256, 256, 64, True, (2, 4)),
    (1, 1, 1, 333, 333, 32, True, (3, 3)),    # odd chunk counts
    (1, 3, 1, 224, 224, 96, True, (8, 10)),   # the full Wormhole grid, more cores than work
    (1, 4, 1, 128, 320, 128, False, (2, 2)),
    (2, 2, 1, 200, 64, 64, True, (2, 3)),
]


@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,grid,dtype", CASES)
def test_matrix(b, h, hk, sq, skv, d, causal, grid, dtype, rng):
    check(rng, b, h, hk, sq, skv, d, dtype=dtype, causal=causal, grid=grid)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,grid", [c[:8] for c in CASES] + SLOW_CASES)
def test_matrix_exhaustive(b, h, hk, sq, skv, d, causal, grid, dtype, rng):
    check(rng, b, h, hk, sq, skv, d, dtype=dtype, causal=causal, grid=grid)


@pytest.mark.parametrize("window,causal,dtype", [((40, 10), False, "f32"), ((64, None), True, "bf16")])
def test_sliding_window(window, causal, dtype, rng):
    check(rng, 1, 2, 1, 256, 256, 32, dtype=dtype, causal=causal, window=window, grid=(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("window", [(1, 0), (None, 0), (100, 20), (31, None)])
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
def test_sliding_window_exhaustive(window, dtype, rng):
    check(rng, 1, 2, 2, 192, 160, 64, dtype=dtype, window=window, grid=(2, 2))


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
def test_window_of_one_key(dtype, rng):
    """window (0, 0): each query sees one key, P = 1, so dS = dP - rowsum(dO * O) = 0: dq and dk are
    zero (to rounding: relative to dv's size), dv = dO moved to its key."""
    (dq, dk, dv), (_, _, ref_dv), _ = run(rng, 1, 2, 1, 96, 64, 32, dtype=dtype, window=(0, 0))
    assert rel_err(dv, ref_dv) < TOL[dtype]
    size = np.linalg.norm(ref_dv)
    for name, g in (("dq", dq), ("dk", dk)):
        assert np.linalg.norm(np.asarray(g, np.float64)) < TOL[dtype] * size, name


@pytest.mark.parametrize("kind,dtype", [("bool", "f32"), ("additive", "bf16")])
def test_attention_mask(kind, dtype, rng):
    sq, skv = 96, 128
    keep = rng.random((sq, skv)) > 0.3
    keep[5] = False  # a fully masked row: zero dq, no part in dk / dv
    mask = keep if kind == "bool" else np.where(keep, rng.standard_normal((sq, skv)) * 0.5, -np.inf).astype(np.float32)
    check(rng, 1, 2, 1, sq, skv, 64, dtype=dtype, mask=mask, grid=(2, 2))


def visible(sq, skv, q_rows, kv_rows, causal):
    """Chunk pairs holding at least one (query, key) the mask allows."""
    ok = np.zeros((-(-sq // q_rows) * q_rows, -(-skv // kv_rows) * kv_rows), bool)
    ok[:sq, :skv] = allowed(sq, skv, causal)
    return int(ok.reshape(ok.shape[0] // q_rows, q_rows, -1, kv_rows).any(axis=(1, 3)).sum())


class Matmuls:
    """Counts tile.matmul ops per kernel (by the compute thread's name)."""

    def __init__(self) -> None:
        self.count: Counter = Counter()

    def on_op(self, core, thread, op, tiles, loc) -> None:
        if op.name == "tile.matmul":
            self.count[thread] += 1

    def on_transfer(self, *a, **kw) -> None:
        return None

    def on_sync(self, *a) -> None:
        pass


@pytest.mark.parametrize("sq,skv", [(256, 256), (128, 320)])
def test_causal_chunks_are_skipped(sq, skv, rng):
    """dK/dV runs 4 matmuls per visible (K/V chunk, Q chunk) pair, dQ 3, and no more: chunk pairs a
    causal mask hides wholly are never computed."""
    counts = Matmuls()
    _, _, plan = run(rng, 1, 1, 1, sq, skv, 32, causal=True, chunks=((2, 1), (2, 2)), observer=counts)
    (kk, kq), (qq, qk) = ((32 * a, 32 * b) for a, b in (plan.dkdv, plan.dq))
    assert counts.count["dkdv"] == 4 * visible(sq, skv, kq, kk, True) < 4 * (sq // kq) * (skv // kk)
    assert counts.count["dq_pass"] == 3 * visible(sq, skv, qq, qk, True)


def test_reference_matches_torch_float64_autograd(rng):
    torch = pytest.importorskip("torch")
    b, h, hk, sq, skv, d = 1, 4, 2, 48, 80, 32
    q, k, v, do = (rng.standard_normal(s) for s in ((b, h, sq, d), (b, hk, skv, d), (b, hk, skv, d), (b, h, sq, d)))
    keep = rng.random((sq, skv)) > 0.2
    ref = reference_backward(q, k, v, do, causal=True, mask=keep)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    allowed = torch.tensor(keep) & torch.ones(sq, skv, dtype=torch.bool).tril(skv - sq)
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk.repeat_interleave(2, 1), tv.repeat_interleave(2, 1),
                                                           attn_mask=allowed)
    out.backward(torch.tensor(do))
    for r, t in zip(ref, (tq.grad, tk.grad, tv.grad)):
        assert rel_err(r, t.numpy()) < 1e-12


def test_bad_input(rng):
    q = rng.standard_normal((1, 2, 64, 32)).astype(np.float32)
    lse = np.zeros((1, 2, 64), np.float32)
    with pytest.raises(TilegridError, match="dout must have shape"):
        flash_attention_backward(q, q, q, q, lse, q[:, :1])
    with pytest.raises(TilegridError, match="lse must have shape"):
        flash_attention_backward(q, q, q, q, lse[..., :10], q)
    with pytest.raises(TilegridError, match="out must be bfloat16 or float32 like q"):
        flash_attention_backward(q, q, q, q.astype(np.float64), lse, q)


def test_performance_model_predicts_the_training_step():
    """Forward + backward under the timing model: every program has a time and a bound, and the
    matmul FLOPs it executed are the algorithm's (non-causal: 2 per chunk pair forward, 4 in dK/dV,
    3 in dQ, none in prep)."""
    from tilegrid.kernels.attention.step_perf import predict_step

    step = predict_step((1, 2, 256, 64), (1, 2, 256, 64))
    unit = 2 * 2 * 256 * 256 * 64
    assert {k: s.flops / unit for k, s in step.summaries.items()} == {"forward": 2, "prep": 0, "dkdv": 4, "dq": 3}
    assert all(s.seconds > 0 and s.bound for s in step.summaries.values())
    assert step.backward_seconds > step.forward_seconds
    assert "backward" in step.text() and "dkdv" in step.text()
