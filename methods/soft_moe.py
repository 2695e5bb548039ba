"""``soft-moe``: the ``attention`` transformer with Soft-MoE feed-forward layers.

The plain control for M4oE-MT: every token is softly dispatched to ``num_experts`` x ``slots``
slots and recombined (Puigcerver et al., 2024); absent modalities' tokens are not dispatched.
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS, TRANSFORMER_DEFAULTS
from .fusion import FusionMethod
from .nets.backbones import MOE_DEFAULTS
from .registry import register_method


@register_method
class SoftMoEFusion(FusionMethod):
    name = "soft-moe"
    description = "Soft-MoE transformer over modality tokens (soft slot dispatch, no token dropping)"
    missing_modality = "tokens masked out of attention and dispatch"
    backbone_name = "soft-moe"

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS, **TRANSFORMER_DEFAULTS, "match_params": False,
                "num_experts": MOE_DEFAULTS["num_experts"], "slots": MOE_DEFAULTS["slots"]}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "num_experts": trial.suggest_categorical("num_experts", [2, 4, 8])}
