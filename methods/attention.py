"""``attention``: a small transformer encoder over all modalities' tokens.

Each modality's encoder tokens get a learned per-modality, per-position embedding; a learned
CLS token is prepended; a pre-norm ``nn.TransformerEncoder`` (standard residuals around
attention and MLP) mixes them; the final-normed CLS token feeds the heads. Tokens of an absent
modality are masked out of attention (key padding), so missing modalities are handled natively.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method, Output
from .encoders import build_encoders, divisible_heads
from .heads import TaskHeads
from .registry import register_method


class TokenFusion(nn.Module):
    """Modality tokens -> CLS embedding. Shared by ``attention`` and the MoE controls."""

    def __init__(self, spec, hparams, block_factory=None):
        super().__init__()
        h = int(hparams["hidden"])
        self.names = spec.modality_names
        self.encoders = build_encoders(spec.modalities, hparams)
        with torch.no_grad():
            counts = {m.name: self._count_tokens(m) for m in spec.modalities}
        self.pos = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(1, counts[m], h)) for m in self.names})
        self.counts = counts
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, h))
        layer = nn.TransformerEncoderLayer(h, divisible_heads(h, int(hparams["heads"])), dim_feedforward=2 * h,
                                           dropout=float(hparams["dropout"]), activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, int(hparams["fusion_layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)

    def _count_tokens(self, m) -> int:
        return int(self.encoders[m.name](torch.zeros(1, *m.shape)).shape[1])

    def forward(self, batch) -> torch.Tensor:
        tokens, pad = [self.cls.expand(len(batch["index"]), -1, -1)], [torch.zeros(len(batch["index"]), 1, dtype=torch.bool)]
        for m in self.names:
            t = self.encoders[m](batch["inputs"][m]) + self.pos[m]
            tokens.append(t)
            pad.append((~batch["mask"][m]).unsqueeze(1).expand(-1, t.shape[1]))
        x = self.transformer(torch.cat(tokens, dim=1), src_key_padding_mask=torch.cat(pad, dim=1).to(tokens[0].device))
        return self.norm(x[:, 0])


@register_method
class AttentionFusion(Method):
    name = "attention"
    description = "attention fusion: pre-norm transformer over modality tokens, CLS -> heads"
    missing_modality = "tokens masked out of attention"

    @classmethod
    def defaults(cls):
        return {"hidden": 64, "layers": 1, "heads": 4, "fusion_layers": 1, "dropout": 0.1, "image_encoder": "cnn"}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "fusion_layers": trial.suggest_int("fusion_layers", 1, 3),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.fusion = TokenFusion(spec, hparams)
        self.heads = TaskHeads(spec.tasks, int(hparams["hidden"]))

    def forward(self, batch):
        return Output(self.heads(self.fusion(batch)))

