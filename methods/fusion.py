"""Fusion methods as "shared per-modality encoders + one fusion backbone".

Subclasses only name their backbone (see ``backbones.py``) and declare defaults and a search
space, so ``intermediate``, ``late``, ``attention``, ``moe`` and ``soft-moe`` differ in fusion
alone, never in encoders.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from .backbones import build_backbone, token_counts
from .base import Method, Output
from .encoders import build_encoders


def encode(encoders, names: list[str], batch: dict) -> dict[str, torch.Tensor]:
    return {m: encoders[m](batch["inputs"][m]) for m in names}


class FusionMethod(Method):
    backbone_name: ClassVar[str] = ""

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.encoders = build_encoders(spec.modalities, hparams)
        self.backbone = build_backbone(self.backbone_name, spec, hparams, token_counts(self.encoders, spec))

    def forward(self, batch):
        preds, aux_loss, info = self.backbone(encode(self.encoders, self.spec.modality_names, batch), batch["mask"])
        losses = {"load_balance": aux_loss} if aux_loss.requires_grad else {}
        return Output(preds, aux=info, losses=losses)

    def active_parameters(self) -> int:
        total = sum(p.numel() for p in self.parameters())
        active = getattr(self.backbone, "active_params", None)
        if active is None:
            return total
        return total - sum(p.numel() for p in self.backbone.parameters()) + active()
