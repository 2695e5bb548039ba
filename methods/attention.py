"""``attention``: a small transformer encoder over all modalities' tokens.

Each modality's encoder tokens get a learned per-modality, per-position embedding; a learned
CLS token is prepended; pre-norm transformer blocks (standard residuals around attention and
MLP) mix them; the final-normed CLS token feeds the heads. Tokens of an absent modality are
masked out of attention (key padding), so missing modalities are handled natively.
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS, TRANSFORMER_DEFAULTS
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
        return {**ENCODER_DEFAULTS, **TRANSFORMER_DEFAULTS, "match_params": False}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "fusion_layers": trial.suggest_int("fusion_layers", 1, 3)}
