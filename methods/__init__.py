"""bench's methods: the method contract, shared encoders and heads, and a registry by name.

Layout: one file per registered method at the top (``early``, ``late``, ``attention``, ``moe``,
``soft-moe``, ``mmoe``, ``i2moe``, ``m4oe``, ``m4oe-mt``, ``unet``, ...), beside the contract
(``base``, ``fusion``, ``seg_base``), the registry, presets and hparam rules; the networks they
are built from (encoders, blocks, heads, fusion backbones, MoE layers, Swin-UNet) in ``nets/``.
"""
from __future__ import annotations

import importlib
from typing import Any

from .hparam_rules import Rule, check_hparams
from .presets import PRESETS, resolve_hparams
from .registry import (
    MethodInfo,
    UnknownMethod,
    method_classes,
    method_info,
    method_infos,
    method_names,
    parse_method,
    register_method,
)

#: names that need torch, imported on first use so that listing and validating import no torch
_LAZY = {"Method": ".base", "Output": ".base", "task_loss": ".base"}

__all__ = ["Method", "Output", "task_loss", "PRESETS", "resolve_hparams", "UnknownMethod", "MethodInfo", "method_classes",
           "method_info", "method_infos", "method_names", "parse_method", "register_method", "Rule", "check_hparams"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
