"""`tilegrid.torch.flash_attention` on CPU tensors (the simulator behind the same custom op).

Gradients through the op against float64 analytic gradients (fp32 inputs: the simulator has no
float64, so not `gradcheck`; tolerance 1e-5 relative, bf16 1e-2), the op's registration (fake
implementation, autograd) through `torch.library.opcheck` and `torch.compile(fullgraph=True)`,
and every mistake a caller can make, named by argument.
"""

import numpy as np
import pytest
from helpers import TOL, rel_err

torch = pytest.importorskip("torch")

import tilegrid.torch as tgt  # noqa: E402
from tilegrid import TilegridError  # noqa: E402
from tilegrid.kernels import reference, reference_backward  # noqa: E402


def inputs(rng, b, h, hk, sq, skv, d, dtype=torch.float32):
    def t(*shape):
        return torch.tensor(rng.standard_normal(shape), dtype=torch.float32).to(dtype).requires_grad_()
    return t(b, h, sq, d), t(b, hk, skv, d), t(b, hk, skv, d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,window,masked", [
    (1, 2, 1, 64, 96, 32, True, None, False),      # causal, seq_q != seq_kv, MQA
    (2, 2, 2, 80, 80, 48, False, (20, 5), False),  # window, lengths / head_dim not whole tiles
    (1, 2, 2, 64, 64, 32, False, None, True),      # boolean mask with a fully masked row
])
def test_gradients_match_float64(b, h, hk, sq, skv, d, causal, window, masked, dtype, rng):
    q, k, v = inputs(rng, b, h, hk, sq, skv, d, dtype)
    mask = None
    if masked:
        keep = rng.random((sq, skv)) > 0.3
        keep[3] = False
        mask = torch.tensor(keep)
    out, lse = tgt.flash_attention(q, k, v, causal=causal, window=window, mask=mask, return_lse=True)
    dout = torch.tensor(rng.standard_normal(out.shape), dtype=torch.float32).to(dtype)
    out.backward(dout)
    args = [x.detach().float().numpy() for x in (q, k, v)]
    m = None if mask is None else mask.numpy()
    ref, ref_lse = reference(*args, causal=causal, window=window, mask=m)
    tol = TOL["f32" if dtype == torch.float32 else "bf16"]
    assert out.dtype == dtype and rel_err(out.detach().float().numpy(), ref) < tol
    live = np.isfinite(ref_lse)
    assert lse.dtype == torch.float32 and not lse.requires_grad
    assert np.allclose(lse.numpy()[live], ref_lse[live], atol=5e-2 if dtype == torch.bfloat16 else 1e-4)
    assert np.all(np.isneginf(lse.numpy()[~live]))
    grads = reference_backward(*args, dout.float().numpy(), causal=causal, window=window, mask=m)
    for name, x, g in zip("qkv", (q, k, v), grads):
        assert x.grad.dtype == dtype, name
        err = rel_err(x.grad.float().numpy(), g)
        assert err < tol, f"d{name}: relative error {err:.2e}"


def test_opcheck(rng):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of both ops."""
    q, k, v = inputs(rng, 1, 2, 1, 64, 64, 32)
    torch.library.opcheck(torch.ops.tilegrid.flash_attention_fwd.default, (q, k, v, None, True, 0.2, -1, -1))
    out, lse = torch.ops.tilegrid.flash_attention_fwd(q, k, v, None, True, 0.2, -1, -1)
    dout = torch.randn_like(out)
    torch.library.opcheck(torch.ops.tilegrid.flash_attention_bwd.default,
                          (dout, q.detach(), k.detach(), v.detach(), out.detach(), lse, None, True, 0.2, -1, -1),
                          test_utils=("test_schema", "test_faketensor"))


def test_compile_fullgraph(rng):
    """A block that calls the op compiles as one graph (the op is opaque to Dynamo; its fake
    implementation gives the shapes) and computes what eager mode does, gradients included."""
    q, k, v = inputs(rng, 1, 2, 2, 64, 64, 32)
    w = torch.tensor(rng.standard_normal((32, 32)), dtype=torch.float32, requires_grad=True)

    def block(q, k, v):
        return (tgt.flash_attention(q @ w, k, v, causal=True) * 2).sum()

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    eager = block(q, k, v)
    eager.backward()
    expected = [x.grad.clone() for x in (q, k, v, w)]
    for x in (q, k, v, w):
        x.grad = None
    got = compiled(q, k, v)
    got.backward()
    assert torch.allclose(got, eager)
    for e, x in zip(expected, (q, k, v, w)):
        assert torch.allclose(x.grad, e)


@pytest.mark.parametrize("change,match", [
    (lambda q, k, v, m: (q[0], k, v, m), "q must be 4-D"),
    (lambda q, k, v, m: (q, k.bfloat16(), v, m), "k is torch.bfloat16 but q is torch.float32"),
    (lambda q, k, v, m: (q.double(), k.double(), v.double(), m), "float64"),
    (lambda q, k, v, m: (q.half(), k.half(), v.half(), m), "float16"),
    (lambda q, k, v, m: (q.int(), k.int(), v.int(), m), "torch.int32"),
    (lambda q, k, v, m: (q, k.to("meta"), v, m), "k is on meta but q is on cpu"),
    (lambda q, k, v, m: (q, k, v[:, :, :10], m), r"k \(1, 1, 48, 32\) and v \(1, 1, 10, 32\)"),
    (lambda q, k, v, m: (q, k[:, :, :, :16], v[:, :, :, :16], m), "must both be"),
    (lambda q, k, v, m: (q, torch.cat([k] * 3, 1), torch.cat([v] * 3, 1), m), r"multiple of k's heads \(3\)"),
    (lambda q, k, v, m: (q, k, v, m[:, :5]), r"mask must be \[seq_q, seq_kv\] = \[64, 48\]"),
    (lambda q, k, v, m: (q, k, v, m.int()), "mask must be boolean"),
    (lambda q, k, v, m: (q, k, v, m.numpy()), "mask must be a torch.Tensor"),
    (lambda q, k, v, m: (q, k, v, m.to("meta")), "mask is on meta"),
])
def test_bad_input_names_the_argument(change, match, rng):
    q, k, v = inputs(rng, 1, 2, 1, 64, 48, 32)
    args = change(q.detach(), k.detach(), v.detach(), torch.ones(64, 48, dtype=torch.bool))
    with pytest.raises(TilegridError, match=match):
        tgt.flash_attention(args[0], args[1], args[2], mask=args[3])


@pytest.mark.parametrize("window", [(1, 2, 3), (-1, 0), (1.5, None), "left"])
def test_bad_window(window, rng):
    q, k, v = inputs(rng, 1, 1, 1, 32, 32, 32)
    with pytest.raises(TilegridError, match="window must be"):
        tgt.flash_attention(q, k, v, window=window)
