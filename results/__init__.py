"""bench's results: tidy frames from the run store, summaries and leaderboards (no torch).

The names below load on first use (they need pandas), so that ``results.options`` can be read
without it."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Results": ".frame", "cases_frame": ".frame", "load_results": ".frame", "runs_frame": ".frame",
         "leaderboard": ".leaderboard", "md_escape": ".leaderboard", "render": ".leaderboard",
         "summarize": ".leaderboard", "to_markdown": ".leaderboard"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
