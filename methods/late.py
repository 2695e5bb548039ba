"""``late``: one full unimodal model per modality; their outputs are averaged.

Each branch (encoder + heads) produces logits (or regression values); the fused prediction is
their mean over the modalities **present** for each sample (an absent modality is dropped from
the mean), optionally with learned softmax weights (``weights=learned``). The model is trained
end to end on the fused prediction's loss (MultiBench's late fusion).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method, Output
from .encoders import build_encoder, pool
from .heads import TaskHeads
from .registry import register_method


@register_method
class LateFusion(Method):
    name = "late"
    description = "late fusion: per-modality models, outputs averaged over present modalities"
    missing_modality = "dropped from the mean"

    @classmethod
    def defaults(cls):
        return {"hidden": 64, "layers": 1, "dropout": 0.1, "image_encoder": "cnn", "weights": "mean"}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                "weights": trial.suggest_categorical("weights", ["mean", "learned"])}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        if hparams["weights"] not in ("mean", "learned"):
            raise ValueError(f"late: weights must be 'mean' or 'learned', got {hparams['weights']!r}")
        self.encoders = nn.ModuleDict({m.name: build_encoder(m, hparams) for m in spec.modalities})
        self.heads = nn.ModuleDict({m.name: TaskHeads(spec.tasks, int(hparams["hidden"])) for m in spec.modalities})
        self.logit_w = nn.Parameter(torch.zeros(len(spec.modalities))) if hparams["weights"] == "learned" else None

    def forward(self, batch):
        names = self.spec.modality_names
        outs = [self.heads[m](pool(self.encoders[m](batch["inputs"][m]))) for m in names]
        present = torch.stack([batch["mask"][m] for m in names], dim=1).float()  # (B, M)
        w = present if self.logit_w is None else present * torch.softmax(self.logit_w, 0)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-8)
        preds = {}
        for t in self.spec.task_names:
            stacked = torch.stack([o[t] for o in outs], dim=1)  # (B, M, ...)
            ww = w.view(*w.shape, *([1] * (stacked.dim() - 2)))
            preds[t] = (ww * stacked).sum(dim=1)
        return Output(preds, aux={"modality_weights": w})
