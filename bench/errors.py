"""Errors that leave bench as one line (the CLI prints ``error: <message>``)."""
from __future__ import annotations


class StoreError(RuntimeError):
    """A run store problem, as one line naming the store and what to do."""
