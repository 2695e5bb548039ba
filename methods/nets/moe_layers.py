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
Constructor switches (defaults = the harness's original layer, bit-for-bit, so ``soft-moe`` and
I2MoE's ``soft-moe`` backbone are unchanged):

- ``router="layernorm"`` (default): logits = LayerNorm(x) @ Φ, Φ ~ N(0, 1/d) unnormalised;
  ``router="l2"`` (the paper's form, Puigcerver et al. Sec. 2.3): x and Φ L2-normalised along d,
  Φ scaled by a learnable scalar initialised at 1: logits = scale * <x/|x|, Φ/|Φ|>.
- ``hidden`` or ``mlp_ratio``: expert MLP width (d -> hidden -> d); default 2 * d.
- ``tasks=T`` (T >= 1): task slots for M4oE-MT's MToE. ``slots`` must be a multiple of T; slot j
  of every expert belongs to task j // (slots / T) (slots == T: slot k is task k's). A learnable
  task embedding (T, d), initialised at 0, is added to the inputs of task k's slots, and the
  combine softmax runs over task k's (expert, slot) pairs only, giving one output per task:
  (B, T, N, d). Dispatch is unchanged (softmax over tokens for every slot).
- ``slot_input="normalized"`` (with ``router="l2"``): the experts receive mixtures of the
  L2-normalised tokens, the ones the router saw, as in M4oE-MT's released code and the
  Soft-MoE port it adapts (``x = F.normalize(x)`` before the dispatch einsum); ``"raw"``
  (default) mixes the tokens as they came.
- ``combine="joint"`` (task mode): one softmax over all (expert, slot) pairs of every task, each
  task summing its own slots' share (about 1/T of the mass at init), as M4oE-MT's released
  MToE layer does; ``"per-task"`` (default) normalises within each task.
- ``forward(..., return_routing=True)`` also returns ``{"logits", "dispatch", "combine"}`` with the
  slot axis split as (B, N, E, S) (task mode, ``combine="per-task"``: each task's slots are
  normalised on their own; ``"joint"``: all slots together).
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


#: Soft-MoE router forms: ``layernorm`` (the harness's original layer) and ``l2`` (the paper's)
SOFT_ROUTERS = ("layernorm", "l2")
#: what the experts' slots mix: the tokens as given, or the L2-normalised ones (M4oE-MT's code)
SLOT_INPUTS = ("raw", "normalized")
#: task mode's combine: a softmax per task, or one over every task's slots (M4oE-MT's code)
TASK_COMBINES = ("per-task", "joint")


class SoftMoE(nn.Module):
    uses_mask = True

    def __init__(self, dim: int, experts: int = 4, slots: int = 1, hidden: int | None = None, dropout: float = 0.0,
                 router: str = "layernorm", mlp_ratio: float | None = None, tasks: int = 0,
                 slot_input: str = "raw", combine: str = "per-task"):
        super().__init__()
        if router not in SOFT_ROUTERS:
            raise ValueError(f"SoftMoE: router must be one of {SOFT_ROUTERS}, got {router!r}")
        if slot_input not in SLOT_INPUTS or combine not in TASK_COMBINES:
            raise ValueError(f"SoftMoE: slot_input must be one of {SLOT_INPUTS} and combine one of {TASK_COMBINES}, "
                             f"got {slot_input!r}, {combine!r}")
        if slot_input == "normalized" and router != "l2":
            raise ValueError("SoftMoE: slot_input='normalized' needs router='l2' (the router that normalises the tokens)")
        if tasks < 0 or (tasks and slots % tasks):
            raise ValueError(f"SoftMoE: slots ({slots}) must be a multiple of tasks ({tasks})")
        self.experts, self.slots, self.router, self.tasks = experts, slots, router, tasks
        self.slot_input, self.combine = slot_input, combine
        self.phi = nn.Parameter(torch.randn(dim, experts * slots) / math.sqrt(dim))
        if router == "layernorm":
            self.norm = nn.LayerNorm(dim)
        else:
            self.scale = nn.Parameter(torch.ones(()))
        if tasks:
            self.task_embed = nn.Parameter(torch.zeros(tasks, dim))
        width = hidden or (int(round(mlp_ratio * dim)) if mlp_ratio else 2 * dim)
        self.mlps = _ExpertMLPs(experts, dim, width, dropout)

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, E*S) routing logits; slot index = expert * slots + slot."""
        if self.router == "layernorm":
            return self.norm(x) @ self.phi
        return F.normalize(x, dim=-1) @ (self.scale * F.normalize(self.phi, dim=0))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, return_routing: bool = False):
        b, n, d = x.shape
        e, s = self.experts, self.slots
        if self.slot_input == "normalized":
            x = F.normalize(x, dim=-1)  # the slots below mix these unit tokens, not the raw ones
            logits = x @ (self.scale * F.normalize(self.phi, dim=0))
        else:
            logits = self.router_logits(x)  # (B, N, E*S)
        if keep is not None:
            dispatch_logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf"))
        else:
            dispatch_logits = logits
        dispatch = torch.softmax(dispatch_logits, dim=1)  # over tokens
        slots = torch.einsum("bns,bnd->bsd", dispatch, x).view(b, e, s, d)
        if self.tasks:
            per = s // self.tasks  # slot j belongs to task j // per
            slots = slots + self.task_embed.repeat_interleave(per, dim=0)
        out = self.mlps(slots.transpose(1, 2)).transpose(1, 2)  # (B, E, S, D)
        if not self.tasks:
            combine = torch.softmax(logits, dim=-1)  # over all (expert, slot) pairs
            y = torch.einsum("bns,bsd->bnd", combine, out.reshape(b, e * s, d))
        elif self.combine == "joint":  # one softmax over every task's slots; task k sums its own
            t, per = self.tasks, s // self.tasks
            combine = torch.softmax(logits, dim=-1).view(b, n, e, t, per)
        else:
            t, per = self.tasks, s // self.tasks
            grouped = logits.view(b, n, e, t, per)  # each task's (expert, slot) pairs on their own
            combine = torch.softmax(grouped.transpose(2, 3).reshape(b, n, t, e * per), dim=-1)
            combine = combine.view(b, n, t, e, per).transpose(2, 3)  # back to (B, N, E, T, per)
        if self.tasks:
            y = torch.einsum("bnetp,betpd->btnd", combine, out.view(b, e, t, per, d))
        if not return_routing:
            return y
        return y, {"logits": logits.view(b, n, e, s), "dispatch": dispatch.view(b, n, e, s),
                   "combine": combine.reshape(b, n, e, s)}
