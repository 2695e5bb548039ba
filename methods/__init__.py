"""bench's methods: the method contract, shared encoders and heads, and a registry by name.

Layout: one file per registered method at the top (``early``, ``late``, ``attention``, ``moe``,
``soft-moe``, ``mmoe``, ``i2moe``, ``m4oe``, ``m4oe-mt``, ``unet``, ...), beside the contract
(``base``, ``fusion``, ``seg_base``), the registry, presets and hparam rules; the networks they
are built from (encoders, blocks, heads, fusion backbones, MoE layers, Swin-UNet) in ``nets/``.
"""
from .base import Method, Output, task_loss
from .hparam_rules import Rule, check_hparams
from .presets import PRESETS, resolve_hparams
from .registry import UnknownMethod, method_classes, parse_method, register_method

__all__ = ["Method", "Output", "task_loss", "PRESETS", "resolve_hparams", "UnknownMethod", "method_classes",
           "parse_method", "register_method", "Rule", "check_hparams"]
