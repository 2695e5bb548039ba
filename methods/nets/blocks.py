"""Small building blocks shared by fusion backbones.

The transformer block is written out (pre-norm, standard residuals around attention and MLP,
explicit softmax attention) rather than taken from ``nn.TransformerEncoderLayer`` so that it
runs unchanged and fast under ``torch.func.vmap`` (I2MoE stacks its experts that way; the fused
SDPA kernels have no CPU batching rule) and has no inference fast path that computes
differently from training. Fusion models attend over tens of tokens, where the explicit form
costs nothing.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head softmax attention; ``qkv_bias=False`` drops the bias of the query/key/value
    projection (the I2MoE reference's layer has none; the output projection keeps its bias)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, qkv_bias: bool = True):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(self.qkv(x), keep)

    def attend(self, qkv: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Attention from already projected (B, N, 3D) queries/keys/values."""
        b, n, d = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = None
        if keep is not None:  # keep: (B, N) bool, False = padded key
            bias = torch.zeros(b, 1, 1, n, dtype=qkv.dtype, device=qkv.device).masked_fill(~keep[:, None, None, :],
                                                                                             float("-inf"))
        scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        if bias is not None:
            scores = scores + bias
        attn = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + ffn(norm(x)). ``ffn`` may be an MoE layer
    returning ``(out, aux_loss)``.

    ``attn_residual=False`` reproduces the I2MoE reference layer (``TransformerEncoderLayer`` in
    its ``src/common/modules/transformer.py``), which has no residual around attention and instead
    adds the attention branch to itself through a second dropout: with a = dropout(attn(norm(x))),
    x = a + dropout(a), i.e. 2a at evaluation. The block's input reaches the output only through
    attention. ``qkv_bias=False``: no bias on the query/key/value projection (reference).
    ``norm_eps``: the LayerNorms' epsilon (torch's 1e-5 by default; timm's and M4oE-MT's code use 1e-6)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, ffn: nn.Module | None = None,
                 attn_residual: bool = True, qkv_bias: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        self.attn_residual = attn_residual
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=norm_eps), nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, dropout, qkv_bias=qkv_bias)
        self.ffn = ffn if ffn is not None else Mlp(dim, 2 * dim, dropout)
        self.drop = nn.Dropout(dropout)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The per-token part before attention: qkv(norm1(x)), (B, N, 3D)."""
        return self.attn.qkv(self.norm1(x))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None,
                qkv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``qkv``: ``project(x)`` when the caller already has it (computed once for tokens shared by
        several stacked passes)."""
        a = self.drop(self.attn.attend(self.project(x) if qkv is None else qkv, keep))
        x = x + a if self.attn_residual else a + self.drop(a)
        h = self.norm2(x)
        out = self.ffn(h, keep) if getattr(self.ffn, "uses_mask", False) else self.ffn(h)
        aux = x.new_zeros(())
        if isinstance(out, tuple):
            out, aux = out
        return x + out, aux
