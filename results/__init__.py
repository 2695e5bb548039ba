"""bench's results: tidy frames from the run store, summaries and leaderboards (no torch).

The names below load on first use (they need pandas), so that ``results.options`` can be read
without it."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_LAZY = {"Results": ".frame", "cases_frame": ".frame", "load_results": ".frame", "runs_frame": ".frame",
         "leaderboard": ".leaderboard", "md_escape": ".leaderboard", "render": ".leaderboard",
         "summarize": ".leaderboard", "to_markdown": ".leaderboard"}

__all__ = list(_LAZY)


class _Package(types.ModuleType):
    """``results.leaderboard`` is both a submodule and, as this package exports it, a function. When
    the submodule is first imported the import system binds the package attribute to the module;
    keep the function there, as the eager ``from .leaderboard import leaderboard`` always did."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "leaderboard" and isinstance(value, types.ModuleType) and hasattr(value, "leaderboard"):
            value = value.leaderboard
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
