"""A small causal transformer language model whose attention is a plug-in, for training tests:
the same initial weights trained with tilegrid's attention and with torch SDPA must give the
same loss curve (within the tolerance of the data format)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def tilegrid_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    import tilegrid.torch as tgt

    return tgt.flash_attention(q, k, v, causal=True)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, attention: Attention) -> None:
        super().__init__()
        self.heads, self.attention = heads, attention
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(self.attention(q, k, v).transpose(1, 2).reshape(b, s, dim))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, dim: int, heads: int, layers: int, seq: int, attention: Attention) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, attention) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))

    def with_attention(self, attention: Attention) -> TinyLM:
        """A copy with the same weights and another attention."""
        other = copy.deepcopy(self)
        for blk in other.blocks:
            blk.attention = attention
        return other


def train(model: TinyLM, data: torch.Tensor, steps: int, lr: float, autocast: torch.dtype | None = None) -> list[float]:
    """Next-token training on `data` [n, seq + 1] (batches cycle through it); the loss of each step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    batch = max(1, data.shape[0] // 4)
    for step in range(steps):
        rows = data[(step * batch) % data.shape[0]:][:batch]
        with torch.autocast(data.device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(rows[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
