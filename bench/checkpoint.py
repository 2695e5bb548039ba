"""Checkpoints for resuming a killed run exactly where it stopped, loaded safely.

``last.pt`` (written after every epoch) holds the model, the best weights so far, optimiser,
scheduler, RNG and batch-order generator states and the selection history; when training has
finished it is rewritten with ``finished=True`` and the selected weights, which closes the window
in which a kill after the last epoch but before the record is stored would train again.
``stage<N>.pt`` holds a multi-stage method's selected weights of stage N, ``best.pt`` the final
selected weights.

Safety (docs/design.md, "Checkpoints"):

* Files load with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
  planted pickle never runs code. Everything saved is made of those (RNG states included:
  :mod:`bench.seeding` stores NumPy's state as a tensor).
* Every file records the job key and a format version; an unreadable file, a foreign one (another
  job's key, another format) or one that does not load safely is renamed to
  ``<name>.rejected-<time>`` with a one-line warning, and the job starts afresh.
* Files are written to a temporary name unique to the process and renamed, so a kill mid-write
  leaves the previous file intact and two processes never write one temporary file.
* A full disk or another I/O error raises :class:`CheckpointWriteError`, one line naming the file.
* A file that loads safely and is this job's but whose weights do not fit the model (other
  tensor names or shapes: the code changed under the same key) is set aside the same way
  (:func:`state_mismatch`); a temporary file a kill during a write left behind is removed by
  the next run of the job (:meth:`Checkpointer.clean_temporaries`).
"""
from __future__ import annotations

import errno
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import torch

FORMAT = 2


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions, I/O error), as one line."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Checkpointer:
    def __init__(self, directory: str | Path, key: str = ""):
        self.dir = Path(directory)
        self.key = key

    @property
    def last_path(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.dir / "best.pt"

    def stage_path(self, index: int) -> Path:
        return self.dir / f"stage{index}.pt"

    def save(self, path: Path, state: dict[str, Any]) -> None:
        """Write ``state`` (plus key and format) atomically; raises CheckpointWriteError."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:  # a Python file object, so a full disk surfaces as OSError(ENOSPC)
                torch.save({**state, "_key": self.key, "_format": FORMAT}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            why = "disk full: free space or point --runs-dir elsewhere" if exc.errno in (errno.ENOSPC, errno.EDQUOT) \
                else (exc.strerror or str(exc))
            raise CheckpointWriteError(exc.errno, f"cannot write checkpoint {path}: {why}") from None

    def load(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint's state, or None when absent. A file that is unreadable, unsafe or
        another job's is set aside with a warning and None is returned (the job starts afresh)."""
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, do not trust it
            self._reject(path, f"it does not load as a safe checkpoint ({_one_line(exc)})")
            return None
        if not isinstance(state, dict) or state.get("_format") != FORMAT:
            self._reject(path, f"it is not a bench checkpoint of format {FORMAT}")
            return None
        if self.key and state.get("_key") != self.key:
            self._reject(path, f"it belongs to job {state.get('_key')!r}, not {self.key!r}")
            return None
        return state

    def clean_temporaries(self) -> list[Path]:
        """Remove the temporary files a kill during ``save`` left behind (``<name>.<pid>-<id>.tmp``
        of a process that no longer runs); returns what was removed."""
        removed = []
        for tmp in self.dir.glob("*.tmp") if self.dir.is_dir() else ():
            pid = tmp.name.rsplit(".", 2)[-2].split("-")[0] if tmp.name.count(".") >= 2 else ""
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    def reject(self, path: Path, why: str) -> None:
        """Set ``path`` aside (``<name>.rejected-<time>``) with a one-line warning: the job starts afresh."""
        self._reject(path, why)

    def _reject(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            os.replace(path, aside)
            warn(f"set aside {path} as {aside.name}: {why}; the job starts afresh")
        except OSError:
            warn(f"ignoring {path}: {why}; the job starts afresh")

    def discard_last(self) -> None:
        self.last_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def state_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """Why the tensors ``found`` (a checkpoint's state dict) do not fit a model whose state dict
    is ``expected`` (missing / unexpected keys, other shapes), or "" when they fit."""
    if not isinstance(found, dict):
        return "its model state is not a mapping of tensors"
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and hasattr(found[k], "shape")
              and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", extra), ("other shapes for", shapes)):
        if keys:
            parts.append(f"{len(keys)} {what} tensor{'s' if len(keys) != 1 else ''} ({', '.join(keys[:3])}"
                         + (", ..." if len(keys) > 3 else "") + ")")
    return "its weights do not fit this model: " + "; ".join(parts) if parts else ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text
