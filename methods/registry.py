"""Method registry: name -> :class:`Method` subclass, with ``name:arg`` addressing, loaded on demand.

The names and what listing, validation and planning need of each method (module, class,
description, defaults, validation rules) come from the static table ``methods/table.py``
(written by ``python -m bench list --update-tables``, checked against the classes by
``tests/test_registry_tables.py``), so none of that imports a method module or torch: a method's
module is imported when its class is asked for (:func:`parse_method`), e.g. to run a job.

A method is one module whose class is decorated with :func:`register_method`, plus its table
row. A name with an argument, such as ``single:left``, maps the argument onto the hparam the
class names in ``name_arg`` (``single:left`` == ``single --set modality=left``).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Method
    from .hparam_rules import Rule

_REGISTRY: dict[str, type[Method]] = {}


class UnknownMethod(ValueError):
    pass


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"method class {cls.__name__} has an empty or duplicate name {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True)
class MethodInfo:
    """A method as the static table describes it: enough to list it, validate its hparams and
    plan its jobs without importing it. ``defaults()`` / ``hparam_rules()`` answer as the class's
    classmethods do; :meth:`load` imports the module and returns the class."""

    name: str
    module: str
    class_name: str
    description: str
    missing_modality: str = "-"
    name_arg: str | None = None
    default_values: dict[str, Any] = field(default_factory=dict)
    rule_data: dict[str, dict[str, Any]] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return dict(self.default_values)

    def hparam_rules(self) -> dict[str, Rule]:
        return _rules(self.name)

    def load(self) -> type[Method]:
        if self.name not in _REGISTRY:
            importlib.import_module(self.module)
        if self.name not in _REGISTRY:
            raise UnknownMethod(f"methods/table.py names {self.module}.{self.class_name} for {self.name!r}, but that "
                                f"module registers no such method; run `python -m bench list --update-tables`")
        return _REGISTRY[self.name]


class _LazyCallable:
    """``module:function`` imported on first call (a rule's ``also``, e.g. timm model names)."""

    def __init__(self, target: str):
        self.target = target

    def __call__(self, *args):
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(*args)


@functools.cache
def _table() -> dict[str, MethodInfo]:
    from .table import METHODS

    return {name: MethodInfo(name, row["module"], row["class"], row["description"], row["missing_modality"],
                             row["name_arg"], row["defaults"], row["rules"]) for name, row in METHODS.items()}


@functools.cache
def _rules(name: str) -> dict[str, Rule]:
    from .hparam_rules import Rule

    out = {}
    for key, data in _table()[name].rule_data.items():
        data = dict(data)
        if "also" in data:
            data["also"] = _LazyCallable(data["also"])
        out[key] = Rule(**data)
    return out


class _ClassInfo(MethodInfo):
    """A method registered at run time by code outside the package (no table row): its class answers."""

    def hparam_rules(self) -> dict[str, Rule]:
        return _REGISTRY[self.name].hparam_rules()


def _class_info(cls: type[Method]) -> MethodInfo:
    return _ClassInfo(cls.name, cls.__module__, cls.__qualname__, cls.description,
                      getattr(cls, "missing_modality", "-"), getattr(cls, "name_arg", None), cls.defaults())


def _infos() -> dict[str, MethodInfo]:
    """The static table, plus methods registered at run time that it does not name."""
    table = _table()
    extra = {k: _class_info(c) for k, c in _REGISTRY.items() if k not in table}
    return {**table, **extra} if extra else table


def method_names() -> list[str]:
    return sorted(_infos())


def method_infos() -> list[MethodInfo]:
    """Every method's table row, by name (imports no method)."""
    table = _infos()
    return [table[k] for k in sorted(table)]


def method_info(full: str) -> tuple[MethodInfo, dict[str, Any]]:
    """The table row and the hparams implied by the name (``single:left``), without importing the method."""
    base, _, arg = full.partition(":")
    table = _infos()
    if base not in table:
        raise UnknownMethod(f"unknown method {full!r}; choose one of: {', '.join(sorted(table))}")
    info = table[base]
    if not arg:
        return info, {}
    if info.name_arg is None:
        raise UnknownMethod(f"method {base!r} takes no ':' argument (got {full!r})")
    return info, {info.name_arg: arg}


def parse_method(full: str) -> tuple[type[Method], dict[str, Any]]:
    """Return the class (its module imported now) and the hparams implied by the name (e.g. ``single:left``)."""
    info, implied = method_info(full)
    return info.load(), implied


def method_classes() -> list[type[Method]]:
    """Every method's class: imports every method module (tests, the README tables)."""
    return [info.load() for info in method_infos()]
