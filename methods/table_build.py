"""Writes ``methods/table.py``, the static method table, from the method classes themselves.

Why: listing methods, validating a ``--set`` and planning a sweep must not import every method
(``m4oe`` pulls in timm and torchvision, ``unet3d`` MONAI: 14 s and 1 GB before anything runs).
The table holds what those need (module, class, description, defaults, validation rules) as
plain data; running a job imports only its method's module. ``python -m bench list
--update-tables`` rewrites the table; ``tests/test_registry_tables.py`` fails when a class and
its table line disagree (a method added, renamed or given a new hparam without rewriting it).
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from datasets.table_build import table_text, write_if_changed

from .hparam_rules import Rule

HEADER = '''"""The static method table (docs/design.md "Registries"): written by ``python -m bench list
--update-tables`` from the method classes; do not edit by hand. Read by ``methods.registry``."""
# fmt: off
'''


def rule_data(rule: Rule) -> dict[str, Any]:
    """A rule as plain data: only the fields that differ from a Rule's defaults; ``also`` (a
    callable accepting more strings) by its ``module:function`` name."""
    default = Rule(rule.kind)
    out: dict[str, Any] = {}
    for f in fields(Rule):
        value = getattr(rule, f.name)
        if f.name == "kind" or value != getattr(default, f.name):
            if f.name == "also":
                value = f"{value.__module__}:{value.__qualname__}"
            elif f.name in ("applies_to", "choices"):
                value = sorted(value) if f.name == "applies_to" else list(value)
            out[f.name] = value
    return out


def registered_classes() -> list:
    """The classes the built-in modules register, whatever the table says (the table's source)."""
    from . import builtin  # noqa: F401  (imports register the built-in methods)
    from .registry import _REGISTRY

    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def method_rows() -> dict[str, dict[str, Any]]:
    """Every built-in method's table row, from its class."""
    rows = {}
    for cls in registered_classes():
        defaults = cls.defaults()
        rules = cls.hparam_rules()
        rows[cls.name] = {
            "module": cls.__module__, "class": cls.__qualname__, "description": cls.description,
            "missing_modality": getattr(cls, "missing_modality", "-"), "name_arg": getattr(cls, "name_arg", None),
            "defaults": defaults, "rules": {k: rule_data(rules[k]) for k in defaults if k in rules},
        }
    return rows


def table_source() -> str:
    return table_text(HEADER, "METHODS", method_rows())


def write_table(path: Path | None = None) -> bool:
    """Rewrite the table; True when its text changed."""
    return write_if_changed(path or Path(__file__).with_name("table.py"), table_source())
