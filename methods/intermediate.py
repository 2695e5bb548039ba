"""``intermediate``: per-modality embeddings concatenated, an MLP, then heads (feature-level fusion).

Absent modalities contribute a zero embedding (zero-fill).
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS
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
        return {**ENCODER_DEFAULTS, "match_params": False}

