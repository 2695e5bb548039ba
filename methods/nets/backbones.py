"""Fusion backbones: modality tokens -> per-task predictions, shared by baselines and I2MoE.

A backbone sees the **encoded** tokens ``{modality: (B, P, H)}`` and the modality masks, and
returns ``(preds, aux_loss, info)``: per-task predictions, a scalar auxiliary loss (zero when
the backbone has none; MoE load balancing otherwise, with its gradient) and per-sample
tensors: ``info["latent"]`` is the pre-head representation (I2MoE's latent-space ablation uses
it), other entries are interpretation outputs (e.g. late fusion's modality weights). Because encoders live outside, I2MoE can wrap any backbone as an
expert over shared encoders, and the fusion baselines are "shared encoders + one backbone".

| name | fusion | absent modality |
|---|---|---|
| ``intermediate`` | pooled embeddings concatenated -> MLP -> heads | zero embedding |
| ``early`` | all tokens flattened and concatenated -> MLP -> heads | zero tokens |
| ``late`` | one head per modality on its pooled embedding, outputs averaged | dropped from the mean |
| ``attention`` | pre-norm transformer over all tokens + CLS (or per-modality mean pooling) -> heads | keys masked |
| ``moe`` | the same transformer with top-k switch MoE feed-forward layers | keys masked |
| ``soft-moe`` | the same transformer with Soft-MoE feed-forward layers | keys masked, not dispatched |
| ``mmoe`` | pooled embeddings concatenated -> shared expert MLPs, one softmax gate + head per task | zero embedding |
"""
from __future__ import annotations

import torch
from torch import nn

from ..choices import BACKBONE_NAMES, POS_INITS, READOUTS
from .blocks import Block
from .encoders import divisible_heads
from .heads import TaskHeads
from .moe_layers import SoftMoE, SwitchMoE, _ExpertMLPs

BackboneOut = tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]


class Backbone(nn.Module):
    def __init__(self, spec, hparams: dict, token_counts: dict[str, int]):
        super().__init__()
        self.names = spec.modality_names
        self.hidden = int(hparams["hidden"])
        self.dropout = float(hparams.get("dropout", 0.0))

    def pooled(self, tokens, mask) -> list[torch.Tensor]:
        return [tokens[m].mean(dim=1) * mask[m].unsqueeze(1).to(tokens[m].dtype) for m in self.names]


class IntermediateBackbone(Backbone):
    def __init__(self, spec, hparams, token_counts):
        super().__init__(spec, hparams, token_counts)
        h = self.hidden
        self.fusion = nn.Sequential(nn.Linear(h * len(self.names), h), nn.GELU(), nn.Dropout(self.dropout))
        self.heads = TaskHeads(spec.tasks, h)

    def forward(self, tokens, mask) -> BackboneOut:
        z = self.fusion(torch.cat(self.pooled(tokens, mask), dim=-1))
        return self.heads(z), z.new_zeros(()), {"latent": z}


class EarlyTokenBackbone(Backbone):
    def __init__(self, spec, hparams, token_counts):
        super().__init__(spec, hparams, token_counts)
        h = self.hidden
        self.fusion = nn.Sequential(nn.Linear(h * sum(token_counts[m] for m in self.names), h), nn.GELU(),
                                    nn.Dropout(self.dropout))
        self.heads = TaskHeads(spec.tasks, h)

    def forward(self, tokens, mask) -> BackboneOut:
        flat = [tokens[m].flatten(1) * mask[m].unsqueeze(1).to(tokens[m].dtype) for m in self.names]
        z = self.fusion(torch.cat(flat, dim=-1))
        return self.heads(z), z.new_zeros(()), {"latent": z}


class LateBackbone(Backbone):
    def __init__(self, spec, hparams, token_counts):
        super().__init__(spec, hparams, token_counts)
        weights = hparams.get("weights", "mean")
        if weights not in ("mean", "learned"):
            raise ValueError(f"late: weights must be 'mean' or 'learned', got {weights!r}")
        self.tasks = spec.task_names
        self.heads = nn.ModuleDict({m: TaskHeads(spec.tasks, self.hidden) for m in self.names})
        self.logit_w = nn.Parameter(torch.zeros(len(self.names))) if weights == "learned" else None

    def forward(self, tokens, mask) -> BackboneOut:
        outs = [self.heads[m](tokens[m].mean(dim=1)) for m in self.names]
        present = torch.stack([mask[m] for m in self.names], dim=1).float()  # (B, M)
        w = present if self.logit_w is None else present * torch.softmax(self.logit_w, 0)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-8)
        preds = {}
        for t in self.tasks:
            stacked = torch.stack([o[t] for o in outs], dim=1)  # (B, M, ...)
            preds[t] = (w.view(*w.shape, *([1] * (stacked.dim() - 2))) * stacked).sum(dim=1)
        latent = torch.cat(self.pooled(tokens, mask), dim=-1)
        return preds, w.new_zeros(()), {"modality_weights": w, "latent": latent}


#: transformer readouts: ``cls`` (a CLS token, final LayerNorm) or ``mean`` (each modality's tokens
#: mean-pooled, concatenated, heads on M*H: the I2MoE reference's ``Transformer``)
#: initialisation of the learned position embeddings: ``normal`` (N(0, 0.02^2)) or ``zero`` (reference)


class TransformerBackbone(Backbone):
    """Tokens + learned per-modality/position embeddings (+ CLS) -> pre-norm blocks -> readout -> heads.

    Readout (``readout``): ``cls`` (default) prepends a CLS token and reads the final-LayerNorm'd
    CLS state; ``mean`` has no CLS token and no final norm, mean-pools each modality's output
    tokens (an absent modality pools to zeros), concatenates them (M*H) and applies the heads
    (one Linear per task), as the I2MoE reference's ``Transformer`` does. ``pos_init=zero`` starts
    the position embeddings at zero (reference), ``normal`` at N(0, 0.02^2); ``qkv_bias`` and
    ``attn_residual`` are passed to every :class:`~methods.nets.blocks.Block`.

    ``forward(..., variants=(replacements, order))`` runs several passes that differ only in
    which modality's tokens are replaced (I2MoE's perturbed passes) as one stacked batch: the
    first block's norm and qkv projection are per-token, so they are computed once for the
    clean tokens and once per replacement rather than once per pass.
    """

    supports_variants = True

    def __init__(self, spec, hparams, token_counts):
        super().__init__(spec, hparams, token_counts)
        h = self.hidden
        self.readout = str(hparams.get("readout", "cls"))
        pos_init = str(hparams.get("pos_init", "normal"))
        if self.readout not in READOUTS or pos_init not in POS_INITS:
            raise ValueError(f"transformer: readout must be one of {READOUTS} and pos_init one of {POS_INITS}, "
                             f"got {self.readout!r} and {pos_init!r}")
        scale = 0.02 if pos_init == "normal" else 0.0
        self.pos = nn.ParameterDict({m: nn.Parameter(scale * torch.randn(1, token_counts[m], h)) for m in self.names})
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, h)) if self.readout == "cls" else None
        heads = divisible_heads(h, int(hparams.get("heads", 4)))
        residual, qkv_bias = bool(hparams.get("attn_residual", True)), bool(hparams.get("qkv_bias", True))
        self.blocks = nn.ModuleList([Block(h, heads, self.dropout, self.make_ffn(h, hparams), attn_residual=residual,
                                           qkv_bias=qkv_bias)
                                     for _ in range(int(hparams.get("fusion_layers", 1)))])
        self.norm = nn.LayerNorm(h) if self.readout == "cls" else None
        self.heads = TaskHeads(spec.tasks, h if self.readout == "cls" else h * len(self.names))

    def make_ffn(self, dim: int, hparams: dict) -> nn.Module | None:
        return None

    def forward(self, tokens, mask, variants=None) -> BackboneOut:
        first = tokens[self.names[0]]
        b = first.shape[0]
        parts = [tokens[m] + self.pos[m] for m in self.names]
        keep = [mask[m].unsqueeze(1).expand(-1, tokens[m].shape[1]) for m in self.names]
        if self.cls is not None:
            parts = [self.cls.expand(b, -1, -1)] + parts
            keep = [torch.ones(b, 1, dtype=torch.bool, device=first.device)] + keep
        x, keep, aux, qkv = torch.cat(parts, dim=1), torch.cat(keep, dim=1), first.new_zeros(()), None
        if variants is not None:
            x, qkv = self._stack_variants(x, *variants)
            keep = keep.repeat(len(variants[1]), 1)
        for i, block in enumerate(self.blocks):
            x, a = block(x, keep, qkv if i == 0 else None)
            aux = aux + a
        if self.cls is not None:
            latent = self.norm(x[:, 0])
        else:
            rows = x.shape[0]
            present = [mask[m].repeat(rows // b).unsqueeze(1).to(x.dtype) for m in self.names]
            latent = torch.cat([x[:, s:e].mean(dim=1) * p for (s, e), p in zip(self._spans().values(), present)], dim=-1)
        return self.heads(latent), aux, {"latent": latent}

    def _spans(self) -> dict[str, tuple[int, int]]:
        """Each modality's token positions in the sequence (after the CLS token, if any)."""
        start, spans = (1 if self.cls is not None else 0), {}
        for m in self.names:
            spans[m] = (start, start + self.pos[m].shape[1])
            start = spans[m][1]
        return spans

    def _stack_variants(self, x_clean, replacements: dict, order: list):
        """(V*B, N, H) inputs and first-block qkv for the passes in ``order`` (None = clean)."""
        qkv_clean = self.blocks[0].project(x_clean)
        spans = self._spans()
        xs, qkvs = [], []
        for which in order:
            if which is None:
                xs.append(x_clean)
                qkvs.append(qkv_clean)
                continue
            s, e = spans[which]
            xr = replacements[which] + self.pos[which]
            xs.append(torch.cat([x_clean[:, :s], xr, x_clean[:, e:]], dim=1))
            qkvs.append(torch.cat([qkv_clean[:, :s], self.blocks[0].project(xr), qkv_clean[:, e:]], dim=1))
        return torch.cat(xs), torch.cat(qkvs)


class SwitchMoEBackbone(TransformerBackbone):
    def make_ffn(self, dim, hparams):
        return SwitchMoE(dim, int(hparams["num_experts"]), int(hparams["top_k"]), 2 * dim, float(hparams.get("dropout", 0.0)),
                         float(hparams["aux_weight"]))

    def active_params(self) -> int:
        """Parameters one token uses: everything but the experts it is not routed to."""
        total = sum(p.numel() for p in self.parameters())
        for block in self.blocks:
            total += block.ffn.active_params() - sum(p.numel() for p in block.ffn.parameters())
        return total


class SoftMoEBackbone(TransformerBackbone):
    def make_ffn(self, dim, hparams):
        return SoftMoE(dim, int(hparams["num_experts"]), int(hparams["slots"]), 2 * dim, float(hparams.get("dropout", 0.0)))



class MMoEBackbone(Backbone):
    """Multi-gate mixture of experts (Ma et al., KDD 2018): shared experts, one gate per task.

    Expert input x (B, M*H): each modality's tokens mean-pooled, multiplied by its mask and
    concatenated, as ``intermediate`` fusion does. Pooled embeddings (rather than all tokens
    flattened, as ``early``) keep the input width independent of token counts, make an absent
    modality a zero block of x (so its tokens cannot leak in), and make ``num_experts=1`` exactly
    the shared-bottom multi-task model MMoE is compared with. Experts: ``num_experts`` 2-layer
    MLPs M*H -> H -> M*H (GELU, dropout) held as stacked weights (one einsum, no loop). Gates: one
    Linear(M*H, E) per task, softmax over the E experts; task t's representation is
    sum_e g_t,e(x) * expert_e(x) and its tower is the task's head (one Linear, regression
    rescaled as in :class:`~methods.nets.heads.TaskHeads`). No auxiliary loss. ``info``:
    ``gate_<task>`` (B, E) per task and ``latent``, the task representations concatenated
    (B, T*M*H). Rows are independent (no batch statistics), so I2MoE's stacked variants need no
    ``segments``.
    """

    def __init__(self, spec, hparams, token_counts):
        super().__init__(spec, hparams, token_counts)
        self.experts = int(hparams["num_experts"])
        if self.experts < 1:
            raise ValueError(f"mmoe: num_experts must be >= 1, got {self.experts}")
        dim = self.hidden * len(self.names)
        self.tasks = spec.task_names
        self.mlps = _ExpertMLPs(self.experts, dim, self.hidden, self.dropout)
        self.gates = nn.ModuleDict({t: nn.Linear(dim, self.experts) for t in self.tasks})
        self.towers = nn.ModuleDict({t.name: TaskHeads((t,), dim) for t in spec.tasks})

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, E): each task's softmax over the experts."""
        return torch.stack([torch.softmax(self.gates[t](x), dim=-1) for t in self.tasks], dim=1)

    def forward(self, tokens, mask) -> BackboneOut:
        x = torch.cat(self.pooled(tokens, mask), dim=-1)  # (B, M*H)
        out = self.mlps(x.unsqueeze(1).expand(-1, self.experts, -1))  # (B, E, M*H)
        g = self.gate_weights(x)
        reps = torch.einsum("bte,bed->btd", g, out)  # (B, T, M*H)
        preds = {}
        for i, t in enumerate(self.tasks):
            preds.update(self.towers[t](reps[:, i]))
        info = {f"gate_{t}": g[:, i] for i, t in enumerate(self.tasks)}
        return preds, x.new_zeros(()), {**info, "latent": reps.flatten(1)}

BACKBONES: dict[str, type[Backbone]] = {
    "intermediate": IntermediateBackbone, "early": EarlyTokenBackbone, "late": LateBackbone,
    "attention": TransformerBackbone, "moe": SwitchMoEBackbone, "soft-moe": SoftMoEBackbone,
    "mmoe": MMoEBackbone,
}
assert tuple(BACKBONES) == BACKBONE_NAMES, "methods/choices.py BACKBONE_NAMES must list BACKBONES in order"
MOE_DEFAULTS = {"num_experts": 4, "top_k": 1, "aux_weight": 0.01, "slots": 1}


def build_backbone(name: str, spec, hparams: dict, token_counts: dict[str, int]) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name](spec, hparams, token_counts)


def token_counts(encoders: nn.ModuleDict, spec) -> dict[str, int]:
    with torch.no_grad():
        return {m.name: int(encoders[m.name](torch.zeros(1, *m.shape)).shape[1]) for m in spec.modalities}
