"""``moe``: a sparse top-k (switch-gate) MoE transformer over modality tokens.

The "vanilla MoE" control for I2MoE and M4oE-MT: the ``attention`` transformer with every
feed-forward layer replaced by a router over ``num_experts`` expert MLPs, ``top_k`` experts per
token (1 = Switch Transformer), and the Switch load-balancing loss (weight ``aux_weight``),
which is added to the task loss **with its gradient** (the I2MoE reference drops it inside
I2MoE but not in its vanilla baseline; we keep it in both). Logged as ``aux/load_balance``.
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS, TRANSFORMER_DEFAULTS
from .fusion import FusionMethod
from .nets.backbones import MOE_DEFAULTS
from .registry import register_method


@register_method
class SwitchMoEFusion(FusionMethod):
    name = "moe"
    description = "sparse top-k switch-gate MoE transformer over modality tokens, load balancing"
    missing_modality = "tokens masked out of attention"
    backbone_name = "moe"

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS, **TRANSFORMER_DEFAULTS, "match_params": False,
                "num_experts": MOE_DEFAULTS["num_experts"], "top_k": MOE_DEFAULTS["top_k"],
                "aux_weight": MOE_DEFAULTS["aux_weight"]}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "num_experts": trial.suggest_categorical("num_experts", [2, 4, 8]),
                "top_k": trial.suggest_categorical("top_k", [1, 2])}
