"""Training on the simulator: a tiny 2-layer causal transformer trained with tilegrid's attention
(forward and backward kernels on the simulator, through the torch op) follows the loss curve of the
same model trained with torch SDPA from the same initial weights, in float32: every step's loss
within 1e-4 relative (the two differ only by float32 rounding inside attention)."""

import pytest

torch = pytest.importorskip("torch")

from attention_model import TinyLM, sdpa_attention, tilegrid_attention, train  # noqa: E402


def test_tiny_model_trains_like_sdpa(rng):
    torch.manual_seed(int(rng.integers(1 << 31)))
    seq, vocab = 32, 16
    data = torch.randint(0, vocab, (4, seq + 1))
    base = TinyLM(vocab, dim=64, heads=2, layers=2, seq=seq, attention=sdpa_attention)
    ours = train(base.with_attention(tilegrid_attention), data, steps=5, lr=3e-3)
    ref = train(base.with_attention(sdpa_attention), data, steps=5, lr=3e-3)
    assert ref[-1] < ref[0]  # it learns
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= 1e-4 * abs(b), f"step {step}: loss {a} vs SDPA {b}"
