"""``late``: one unimodal model per modality (its encoder + its heads); outputs averaged.

The fused prediction is the mean of the per-modality logits (or regression values) over the
modalities **present** for each sample (an absent modality is dropped from the mean),
optionally with learned softmax weights (``weights=learned``). Trained end to end on the fused
prediction's loss (MultiBench's late fusion). Per-sample weights are stored as
``aux_modality_weights``.
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS
from .fusion import FusionMethod
from .registry import register_method


@register_method
class LateFusion(FusionMethod):
    name = "late"
    description = "late fusion: per-modality models, outputs averaged over present modalities"
    missing_modality = "dropped from the mean"
    backbone_name = "late"

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS, "match_params": False, "weights": "mean"}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "weights": trial.suggest_categorical("weights", ["mean", "learned"])}
