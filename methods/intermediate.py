"""``intermediate``: per-modality embeddings concatenated, an MLP, then heads (feature-level fusion).

Absent modalities contribute a zero embedding (zero-fill).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method, Output
from .encoders import build_encoders, pool
from .heads import TaskHeads
from .registry import register_method


@register_method
class IntermediateFusion(Method):
    name = "intermediate"
    description = "intermediate fusion: concatenated modality embeddings -> MLP -> heads"
    missing_modality = "zero embedding"

    @classmethod
    def defaults(cls):
        return {"hidden": 64, "layers": 1, "dropout": 0.1, "image_encoder": "cnn"}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        h = int(hparams["hidden"])
        self.encoders = build_encoders(spec.modalities, hparams)
        self.fusion = nn.Sequential(nn.Linear(h * len(spec.modalities), h), nn.GELU(), nn.Dropout(float(hparams["dropout"])))
        self.heads = TaskHeads(spec.tasks, h)

    def forward(self, batch):
        embs = [pool(self.encoders[m](batch["inputs"][m])) * batch["mask"][m].unsqueeze(1).float()
                for m in self.spec.modality_names]
        return Output(self.heads(self.fusion(torch.cat(embs, dim=1))))
