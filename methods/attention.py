"""``attention``: a small transformer encoder over all modalities' tokens.

Each modality's encoder tokens get a learned per-modality, per-position embedding; a learned
CLS token is prepended; pre-norm transformer blocks (standard residuals around attention and
MLP) mix them; the final-normed CLS token feeds the heads. Tokens of an absent modality are
masked out of attention (key padding), so missing modalities are handled natively.
"""
from __future__ import annotations

from .fusion import FusionMethod
from .registry import register_method


@register_method
class AttentionFusion(FusionMethod):
    name = "attention"
    description = "attention fusion: pre-norm transformer over modality tokens, CLS -> heads"
    missing_modality = "tokens masked out of attention"
    backbone_name = "attention"

    @classmethod
    def defaults(cls):
        return {"hidden": 64, "layers": 1, "heads": 4, "fusion_layers": 1, "dropout": 0.1, "image_encoder": "cnn", "match_params": False}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "fusion_layers": trial.suggest_int("fusion_layers", 1, 3),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}
