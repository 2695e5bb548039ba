"""``intermediate``: per-modality embeddings concatenated, an MLP, then heads (feature-level fusion).

Absent modalities contribute a zero embedding (zero-fill).
"""
from __future__ import annotations

from .fusion import FusionMethod
from .registry import register_method


@register_method
class IntermediateFusion(FusionMethod):
    name = "intermediate"
    description = "intermediate fusion: concatenated modality embeddings -> MLP -> heads"
    missing_modality = "zero embedding"
    backbone_name = "intermediate"

    @classmethod
    def defaults(cls):
        return {"hidden": 64, "layers": 1, "dropout": 0.1, "image_encoder": "cnn", "match_params": False}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}
