"""bench's methods: the method contract, shared encoders and heads, and a registry by name."""
from .base import Method, Output, task_loss
from .hparam_rules import Rule, check_hparams
from .presets import PRESETS, resolve_hparams
from .registry import UnknownMethod, method_classes, parse_method, register_method

__all__ = ["Method", "Output", "task_loss", "PRESETS", "resolve_hparams", "UnknownMethod", "method_classes",
           "parse_method", "register_method", "Rule", "check_hparams"]
