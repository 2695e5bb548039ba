"""Method registry: name -> :class:`Method` subclass, with ``name:arg`` addressing.

A method is one module whose class is decorated with :func:`register_method`. A name with an
argument, such as ``single:left``, maps the argument onto the hparam the class names in
``name_arg`` (``single:left`` == ``single --set modality=left``).
"""
from __future__ import annotations

from typing import Any

from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


class UnknownMethod(ValueError):
    pass


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"method class {cls.__name__} has an empty or duplicate name {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def method_classes() -> list[type[Method]]:
    _load_builtin()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def parse_method(full: str) -> tuple[type[Method], dict[str, Any]]:
    """Return the class and the hparams implied by the name (e.g. ``single:left``)."""
    _load_builtin()
    base, _, arg = full.partition(":")
    if base not in _REGISTRY:
        raise UnknownMethod(f"unknown method {full!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[base]
    if not arg:
        return cls, {}
    key = getattr(cls, "name_arg", None)
    if key is None:
        raise UnknownMethod(f"method {base!r} takes no ':' argument (got {full!r})")
    return cls, {key: arg}


def _load_builtin() -> None:
    from . import builtin  # noqa: F401  (imports register the built-in methods)
