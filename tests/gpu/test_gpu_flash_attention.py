"""The generated kernels on a real GPU (skipped without CUDA) and in Triton's CPU interpreter
(skipped without torch and Triton): FlashAttention's parameter matrix against torch SDPA in
float32 and against the simulator; the matmul against NumPy."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import NP, TOL, rel_err

from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_TRITON = importlib.util.find_spec("triton") is not None


def cuda_available() -> bool:
    if not (HAVE_TORCH and HAVE_TRITON):
        return False
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU with torch and triton")

# The parameter matrix of tests/kernels/test_flash_attention.py (b, h, hk, sq, skv, d, causal, grid)
CASES = [
    (1, 1, 1, 64, 64, 32, False, (1, 1)),
    (1, 2, 2, 128, 128, 64, True, (2, 2)),
    (2, 4, 4, 256, 256, 64, True, (2, 4)),
    (1, 2, 1, 96, 160, 64, True, (2, 2)),
    (1, 4, 2, 160, 96, 128, True, (1, 3)),
    (1, 1, 1, 100, 77, 80, False, (2, 2)),
    (1, 1, 1, 333, 333, 32, True, (3, 3)),
    (1, 2, 2, 64, 64, 256, False, (1, 2)),
    (1, 3, 1, 224, 224, 96, True, (8, 10)),
]


def sdpa(q, k, v, causal):
    """torch SDPA in float32 on the GPU, FlashAttention's bottom-right causal alignment."""
    import torch
    import torch.nn.functional as tf

    qt, kt, vt = (torch.from_numpy(np.asarray(x, np.float32)).cuda() for x in (q, k, v))
    rep = qt.shape[1] // kt.shape[1]
    kt, vt = kt.repeat_interleave(rep, 1), vt.repeat_interleave(rep, 1)
    mask = None
    if causal:
        sq, skv = qt.shape[2], kt.shape[2]
        i = torch.arange(sq, device="cuda")[:, None] + (skv - sq)
        mask = torch.arange(skv, device="cuda")[None, :] <= i
    out = tf.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
    return torch.nan_to_num(out).double().cpu().numpy()


@needs_cuda
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("b,h,hk,sq,skv,d,causal,grid", CASES)
def test_matrix_on_gpu(b, h, hk, sq, skv, d, causal, grid, dtype, rng):
    q, k, v = (rng.standard_normal(s).astype(NP[dtype]) for s in
               [(b, h, sq, d), (b, hk, skv, d), (b, hk, skv, d)])
    cfg = AttentionConfig(grid=grid)
    out, lse = flash_attention(q, k, v, causal=causal, config=cfg, return_lse=True, backend="gpu")
    assert out.shape == q.shape and out.dtype == q.dtype
    ref, ref_lse = reference(q, k, v, causal=causal)
    err = rel_err(out, ref)
    assert err < TOL[dtype], f"GPU vs float64: {err:.3e}"
    live = np.isfinite(ref_lse)
    assert np.all(np.asarray(out, np.float64)[~live] == 0)
    assert np.allclose(lse[live], ref_lse[live], atol=5e-2 if dtype == "bf16" else 1e-4)
    ref_t = sdpa(q, k, v, causal)
    assert rel_err(out, ref_t) < TOL[dtype], "GPU vs torch SDPA (float32)"
    if b * h * sq * skv <= 2 * 4 * 256 * 256:  # the simulator on the same inputs, bf16 tolerance
        sim = flash_attention(q, k, v, causal=causal, config=cfg)
        assert rel_err(out, np.asarray(sim, np.float64)) < TOL["bf16"]


@needs_cuda
@pytest.mark.parametrize("window,causal", [((48, 16), False), ((40, None), True)])
def test_window_and_mcast_on_gpu(window, causal, rng):
    q, k, v = (rng.standard_normal((1, 2, 256, 64)).astype(NP["bf16"]) for _ in range(3))
    out = flash_attention(q, k, v, causal=causal, window=window, config=AttentionConfig(grid=(2, 2)), backend="gpu")
    ref, _ = reference(q, k, v, causal=causal, window=window)
    assert rel_err(out, ref) < TOL["bf16"]
    out = flash_attention(q, k, v, config=AttentionConfig(grid=(2, 2), mcast=True), backend="gpu")
    ref, _ = reference(q, k, v)
    assert rel_err(out, ref) < TOL["bf16"]


@needs_cuda
@pytest.mark.parametrize("mcast", [False, True])
def test_matmul_on_gpu(mcast, rng):
    import torch
    from gpu_cases import matmul_program

    prog, _ = matmul_program(m=256, k=512, n=256, grid=(4, 4), mcast=mcast)
    a = torch.randn(256, 512, device="cuda").bfloat16()
    b = torch.randn(512, 256, device="cuda").bfloat16()
    out = torch.full((256, 256), float("nan"), device="cuda").bfloat16()
    prog(a, b, out)
    ref = a.double() @ b.double()
    assert (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item() < 1e-2


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_TRITON), reason="needs torch and triton (the gpu extra)")
def test_interpreter_runs_generated_flash_attention():
    """TRITON_INTERPRET=1: the generated kernel runs on the CPU on a small shape."""
    code = """
import numpy as np
from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 2, 96, 32)).astype(np.float32) for _ in range(3))
out = flash_attention(q, k, v, causal=True, config=AttentionConfig(grid=(1, 2)), backend="gpu")
ref, _ = reference(q, k, v, causal=True)
err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
assert err < 1e-5, err
"""
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)


@pytest.mark.skipif(HAVE_TORCH, reason="torch is installed")
def test_missing_torch_is_a_clear_error(rng):
    from tilegrid import TilegridError

    q = rng.standard_normal((1, 1, 64, 32)).astype(np.float32)
    with pytest.raises(TilegridError, match="needs torch"):
        flash_attention(q, q, q, config=AttentionConfig(grid=(1, 1)), backend="gpu")


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_TRITON), reason="needs torch and triton (the gpu extra)")
def test_interpreter_runs_one_line_loads():
    """TRITON_INTERPRET=1: one row / column of a loaded block picked by a masked reduction (loaded alone)
    gives what the simulator gives."""
    code = f"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_codegen import line_pick_kernel
x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
sim, gpu = np.zeros_like(x), np.zeros_like(x)
line_pick_kernel()(x, sim)
line_pick_kernel()(x, gpu, backend="gpu")
ref = x[3][None, :] + 2.0 * x[:, 5][:, None] + 4.0 * x[:2].max(axis=0)[None, :]
assert np.abs(sim - ref).max() < 1e-5 and np.abs(gpu - ref).max() < 1e-5, (np.abs(sim - ref).max(), np.abs(gpu - ref).max())
"""
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)
