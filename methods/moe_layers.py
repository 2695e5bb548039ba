"""Mixture-of-experts feed-forward layers for transformer blocks.

``SwitchMoE``: a top-k router over E expert MLPs with the Switch Transformer load-balancing loss
``E * sum_e f_e * P_e`` (f_e: fraction of tokens whose top-1 expert is e; P_e: mean router
probability of e), scaled by ``aux_weight``; the loss keeps its gradient (through P_e). Expert
MLPs are held as stacked weights and evaluated densely, then combined with the top-k gates: on
the small token counts of fusion models this is faster than gather/scatter dispatch, is
deterministic, and runs under ``torch.func.vmap``. ``active_params`` reports the parameters a
token actually uses (router + k experts).

``segments``: when a caller stacks several independent passes along the batch (I2MoE's batched
variants), it sets this to their number so the loss is computed per pass and averaged, exactly
as separate calls would.

``SoftMoE``: Soft MoE (Puigcerver et al., ICLR 2024): each expert has ``slots`` slots; slot
inputs are softmax-over-tokens mixtures of the tokens (padded tokens excluded), expert outputs
are recombined per token with a softmax over slots. No auxiliary loss, no token dropping.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class _ExpertMLPs(nn.Module):
    """E independent 2-layer MLPs as stacked weights: (..., E, D) -> (..., E, D)."""

    def __init__(self, experts: int, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(experts, hidden))
        self.w2 = nn.Parameter(torch.empty(experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(experts, dim))
        for w in (self.w1, self.w2):
            bound = 1 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.gelu(torch.einsum("...ed,edh->...eh", x, self.w1) + self.b1))
        return self.drop(torch.einsum("...eh,ehd->...ed", h, self.w2) + self.b2)


class SwitchMoE(nn.Module):
    uses_mask = False

    def __init__(self, dim: int, experts: int = 4, top_k: int = 1, hidden: int | None = None, dropout: float = 0.0,
                 aux_weight: float = 0.01):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"moe: top_k must be in 1..{experts}, got {top_k}")
        self.experts, self.top_k, self.aux_weight = experts, top_k, aux_weight
        self.segments = 1
        self.router = nn.Linear(dim, experts, bias=False)
        self.mlps = _ExpertMLPs(experts, dim, hidden or 2 * dim, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.router(x), dim=-1)  # (B, N, E)
        top, idx = probs.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(probs).scatter(-1, idx, top)
        out = self.mlps(x.unsqueeze(-2).expand(*x.shape[:-1], self.experts, x.shape[-1]))  # (B, N, E, D)
        y = (gates.unsqueeze(-1) * out).sum(dim=-2)
        # rows may hold ``segments`` stacked passes (I2MoE's batched variants): balance per pass, then average
        seg = probs.reshape(self.segments, -1, *probs.shape[1:])
        frac = F.one_hot(idx[..., 0], self.experts).float().reshape(seg.shape).mean(dim=(1, 2))
        aux = self.aux_weight * self.experts * (frac * seg.mean(dim=(1, 2))).sum(dim=-1).mean()
        return y, aux

    def active_params(self) -> int:
        per_expert = sum(p[0].numel() for p in self.mlps.parameters())
        return self.router.weight.numel() + self.top_k * per_expert


class SoftMoE(nn.Module):
    uses_mask = True

    def __init__(self, dim: int, experts: int = 4, slots: int = 1, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.experts, self.slots = experts, slots
        self.phi = nn.Parameter(torch.randn(dim, experts * slots) / math.sqrt(dim))
        self.norm = nn.LayerNorm(dim)
        self.mlps = _ExpertMLPs(experts, dim, hidden or 2 * dim, dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        logits = self.norm(x) @ self.phi  # (B, N, E*S)
        if keep is not None:
            dispatch_logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf"))
        else:
            dispatch_logits = logits
        dispatch = torch.softmax(dispatch_logits, dim=1)  # over tokens
        combine = torch.softmax(logits, dim=-1)  # over slots
        slots = torch.einsum("bns,bnd->bsd", dispatch, x).view(b, self.experts, self.slots, d)
        out = self.mlps(slots.transpose(1, 2)).transpose(1, 2).reshape(b, self.experts * self.slots, d)
        return torch.einsum("bns,bsd->bnd", combine, out)
