"""FlashAttention backward and the PyTorch op on a real GPU (skipped without CUDA).

The backward kernels compiled to Triton (NaN-poisoned outputs) over the simulator's parameter
matrix against float64 gradients; `tilegrid.torch.flash_attention` on CUDA tensors (outputs on
the inputs' device, on the caller's stream; repeated calls reuse the cached plans); gradients
through it against float64; non-contiguous inputs; `torch.compile(fullgraph=True)` of a block
that calls it; and the errors a GPU caller can meet (float16, float64, mixed devices).
"""

import numpy as np
import pytest
from helpers import NP, TOL, rel_err
from test_gpu_flash_attention import needs_cuda

from tilegrid import TilegridError
from tilegrid.kernels import flash_attention, flash_attention_backward, reference, reference_backward

CASES = [
    # b, h, hk, sq, skv, d, causal, window, masked
    (1, 1, 1, 64, 64, 32, False, None, False),
    (2, 4, 4, 256, 256, 64, True, None, False),
    (1, 2, 1, 96, 160, 64, True, None, False),      # seq_q < seq_kv, MQA
    (1, 4, 2, 160, 96, 128, True, None, False),     # seq_q > seq_kv: fully masked rows, GQA
    (1, 1, 1, 100, 77, 80, False, None, False),     # lengths, head_dim not whole tiles
    (1, 1, 1, 333, 333, 32, True, None, False),
    (1, 2, 2, 64, 64, 256, False, None, False),     # head_dim 256
    (1, 2, 2, 256, 192, 64, False, (50, 10), False),
    (1, 2, 1, 96, 128, 64, False, None, True),      # boolean mask, a fully masked row
]


def inputs(rng, b, h, hk, sq, skv, d, dtype, masked):
    q = rng.standard_normal((b, h, sq, d)).astype(NP[dtype])
    k, v = (rng.standard_normal((b, hk, skv, d)).astype(NP[dtype]) for _ in range(2))
    dout = rng.standard_normal((b, h, sq, d)).astype(NP[dtype])
    mask = None
    if masked:
        mask = rng.random((sq, skv)) > 0.3
        mask[4] = False
    return q, k, v, dout, mask


@needs_cuda
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,window,masked", CASES)
def test_backward_kernels_on_gpu(b, h, hk, sq, skv, d, causal, window, masked, dtype, rng):
    q, k, v, dout, mask = inputs(rng, b, h, hk, sq, skv, d, dtype, masked)
    out, lse = reference(q, k, v, causal=causal, window=window, mask=mask)
    grads = flash_attention_backward(q, k, v, out.astype(NP[dtype]), lse.astype(np.float32), dout, causal=causal,
                                     window=window, mask=mask, backend="gpu")
    for name, g, r in zip(("dq", "dk", "dv"), grads, reference_backward(q, k, v, dout, causal=causal, window=window,
                                                                        mask=mask)):
        assert g.dtype == np.dtype(NP[dtype]) and rel_err(g, r) < TOL[dtype], f"{name}: {rel_err(g, r):.2e}"


@needs_cuda
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,window,masked", CASES[1:5] + CASES[7:])
def test_torch_op_gradients_on_gpu(b, h, hk, sq, skv, d, causal, window, masked, dtype, rng):
    import torch

    import tilegrid.torch as tgt

    tdt = {"bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    q, k, v, dout, mask = inputs(rng, b, h, hk, sq, skv, d, "f32", masked)
    tq, tk, tv = (torch.tensor(x, device="cuda", dtype=tdt, requires_grad=True) for x in (q, k, v))
    tm = None if mask is None else torch.tensor(mask, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the inputs were made on the default stream
    with torch.cuda.stream(stream):  # the op runs on the caller's stream
        out, lse = tgt.flash_attention(tq, tk, tv, causal=causal, window=window, mask=tm, return_lse=True)
        out.backward(torch.tensor(dout, device="cuda", dtype=tdt))
    stream.synchronize()
    assert out.device == tq.device and out.dtype == tdt and tq.grad.device == tq.device
    args = [x.detach().double().cpu().numpy() for x in (tq, tk, tv)]
    ref, ref_lse = reference(*args, causal=causal, window=window, mask=mask)
    assert rel_err(out.detach().double().cpu().numpy(), ref) < TOL[dtype]
    live = np.isfinite(ref_lse)
    assert np.allclose(lse.cpu().numpy()[live], ref_lse[live], atol=1e-3)
    ddo = torch.tensor(dout, dtype=tdt).double().numpy()
    for name, x, g in zip("qkv", (tq, tk, tv), reference_backward(*args, ddo, causal=causal, window=window, mask=mask)):
        assert x.grad.dtype == tdt and rel_err(x.grad.double().cpu().numpy(), g) < TOL[dtype], name


@needs_cuda
def test_repeated_calls_reuse_the_plans(rng, monkeypatch):
    import torch

    import tilegrid.torch as tgt

    q, k, v = (torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    tgt.flash_attention(q, k, v, causal=True).sum().backward()

    def no_planning(*a, **kw):
        raise AssertionError("a repeated call planned again")

    monkeypatch.setattr(tgt, "choose_plan", no_planning)
    monkeypatch.setattr(tgt, "choose_backward_plan", no_planning)
    monkeypatch.setattr(tgt, "capture", no_planning)
    for _ in range(2):
        tgt.flash_attention(q, k, v, causal=True).sum().backward()


@needs_cuda
def test_non_contiguous_inputs(rng):
    """q, k, v as a model makes them (a permuted view of one projection) give what contiguous
    copies give, forward and backward."""
    import torch

    import tilegrid.torch as tgt

    qkv = torch.randn(2, 128, 3, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    assert not q.is_contiguous()
    out = tgt.flash_attention(q, k, v, causal=True)
    dout = torch.randn_like(out)
    out.backward(dout)
    q2, k2, v2 = (x.detach().contiguous().requires_grad_() for x in (q, k, v))
    out2 = tgt.flash_attention(q2, k2, v2, causal=True)
    out2.backward(dout)
    assert torch.equal(out, out2)
    assert torch.equal(qkv.grad.permute(2, 0, 3, 1, 4)[0], q2.grad)


@needs_cuda
def test_compile_fullgraph_on_gpu(rng):
    import torch

    import tilegrid.torch as tgt

    torch.manual_seed(int(rng.integers(1 << 31)))
    lin = torch.nn.Linear(64, 192, device="cuda", dtype=torch.bfloat16)

    def block(x):
        q, k, v = lin(x).view(2, 256, 3, 4, 16).permute(2, 0, 3, 1, 4)
        return tgt.flash_attention(q, k, v, causal=True).transpose(1, 2).reshape(2, 256, 64)

    x = torch.randn(2, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    eager = block(x)
    eager.float().square().sum().backward()
    gx = x.grad.clone()
    x.grad = None
    compiled = torch.compile(block, fullgraph=True)
    got = compiled(x)
    got.float().square().sum().backward()
    assert rel_err(got.detach().double().cpu().numpy(), eager.detach().double().cpu().numpy()) < 1e-2
    assert rel_err(x.grad.double().cpu().numpy(), gx.double().cpu().numpy()) < 1e-2


@needs_cuda
@pytest.mark.parametrize("make,match", [
    (lambda q: (q.half(), q.half(), q.half(), None), "float16"),
    (lambda q: (q.double(), q.double(), q.double(), None), "float64"),
    (lambda q: (q.int(), q.int(), q.int(), None), "torch.int32"),
    (lambda q: (q, q.cpu(), q, None), "k is on cpu but q is on cuda"),
    (lambda q: (q, q, q, torch_ones(q).cpu()), "mask is on cpu but q is on cuda"),
    (lambda q: (q, q, q.float(), None), "v is torch.float32 but q is torch.bfloat16"),
])
def test_bad_input_on_gpu(make, match):
    import torch

    import tilegrid.torch as tgt

    q = torch.randn(1, 2, 64, 32, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(TilegridError, match=match):
        tgt.flash_attention(*make(q)[:3], mask=make(q)[3])


def torch_ones(q):
    import torch

    return torch.ones(q.shape[2], q.shape[2], dtype=torch.bool, device=q.device)


@needs_cuda
def test_forward_through_the_op_matches_the_numpy_entry(rng):
    """The op's GPU forward (no host copies) computes what `flash_attention(..., backend="gpu")` does."""
    import torch

    import tilegrid.torch as tgt

    q, k, v = (rng.standard_normal((1, 2, 192, 64)).astype(np.float32) for _ in range(3))
    ref = flash_attention(q, k, v, causal=True, backend="gpu")
    got = tgt.flash_attention(*(torch.tensor(x, device="cuda") for x in (q, k, v)), causal=True)
    assert rel_err(got.cpu().numpy(), reference(q, k, v, causal=True)[0]) < TOL["f32"]
    assert rel_err(got.cpu().numpy(), ref.astype(np.float64)) < TOL["f32"]


@needs_cuda
def test_the_op_and_the_eager_path_agree(rng):
    """Eager calls take `EagerAttention` (less dispatch); the custom ops (what torch.compile traces)
    run the same kernels: the same outputs and gradients, bit for bit; the ops pass opcheck."""
    import torch

    import tilegrid.torch as tgt

    q, k, v = (torch.randn(1, 4, 192, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(1, 4, 192, 64, device="cuda", dtype=torch.bfloat16)
    eager = tgt.flash_attention(q, k, v, causal=True)
    ge = torch.autograd.grad(eager, (q, k, v), dout)
    op = torch.ops.tilegrid.flash_attention_fwd(q, k, v, None, True, 0.125, -1, -1)[0]
    go = torch.autograd.grad(op, (q, k, v), dout)
    assert torch.equal(eager, op) and all(torch.equal(a, b) for a, b in zip(ge, go))
    with torch.no_grad():  # inference skips the autograd Function altogether
        assert torch.equal(tgt.flash_attention(q, k, v, causal=True), eager)
    torch.library.opcheck(torch.ops.tilegrid.flash_attention_fwd.default, (q, k, v, None, True, 0.125, -1, -1))
