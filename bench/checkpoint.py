"""Atomic checkpoints for resuming a killed run exactly where it stopped.

``last.pt`` (written after every epoch, one file so one write) holds model, the best weights so
far, optimiser, scheduler, RNG and batch-order generator states plus the selection history;
``best.pt`` (written once, at the end) holds the weights selected on validation. Files are written to a temporary name and renamed, so a kill mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class Checkpointer:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @property
    def last_path(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.dir / "best.pt"

    def save(self, path: Path, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint means: start this job afresh
            return None

    def discard_last(self) -> None:
        if self.last_path.exists():
            self.last_path.unlink()
