"""Errors that leave bench as one line (the CLI prints ``error: <message>``)."""
from __future__ import annotations


class StoreError(RuntimeError):
    """A run store problem, as one line naming the store and what to do."""


class StoreIOError(StoreError):
    """The store's disk failed under a command that was right (disk full, an I/O error): not bad
    input, so the CLI exits 1, not 2."""
