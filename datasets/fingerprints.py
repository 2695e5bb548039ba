"""Fingerprints of a dataset's input files: by name, size and mtime (cheap) or by content (the job
key's data part, docs/identity.md). They live with the data readers, which report them (``bench
data check``, folder summaries), and are re-exported by ``bench.identity``, which puts them into
the job key; content hashes come from :mod:`datasets.file_hashes`, so each file is read once."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .file_hashes import file_sha256, save_hashes


def files_fingerprint(files: Iterable[os.PathLike | str], root: os.PathLike | str | None = None) -> str:
    """``<n>:<hash>`` of the names (relative to ``root``), sizes and modification times of ``files``.

    Cheap (one ``stat`` per file), and any rewrite of a file changes it; a missing file is an
    error for the caller to report, so it raises ``FileNotFoundError`` naming the file."""
    rows = []
    base = Path(root) if root is not None else None
    for f in files:
        p = Path(f)
        st = p.stat()
        name = str(p.relative_to(base)) if base is not None and p.is_relative_to(base) else p.name
        rows.append((name, st.st_size, st.st_mtime_ns))
    rows.sort()
    return f"{len(rows)}:{hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]}"


def _content_rows(files: Iterable[os.PathLike | str], root: os.PathLike | str | None) -> tuple[list, int]:
    """(sorted (relative name, sha256) rows of ``files``, bytes read now): the content hashes come
    from ``datasets.file_hashes``, so a file is read once, whichever fingerprint asks."""
    base = Path(root) if root is not None else None
    rows, read = [], 0
    for f in files:
        p = Path(f)
        digest, fresh = file_sha256(p)
        read += p.stat().st_size if fresh else 0
        name = str(p.relative_to(base)) if base is not None and p.is_relative_to(base) else p.name
        rows.append((name, digest))
    save_hashes()
    rows.sort()
    return rows, read


def content_fingerprint(files: Iterable[os.PathLike | str], root: os.PathLike | str | None = None) -> str:
    """``sha256:<hash>`` over the relative names and full contents of ``files`` (the whole hash,
    to compare copies of a dataset across machines)."""
    rows, _ = _content_rows(files, root)
    return "sha256:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def cached_content_fingerprint(files: Iterable[os.PathLike | str], root: os.PathLike | str | None = None
                               ) -> tuple[str, int]:
    """(``<n>:<hash>`` over the relative names and content hashes of ``files``, bytes read now):
    the data part of a job key. Unchanged files cost a ``stat`` (their hash is cached); a missing
    file raises ``FileNotFoundError`` naming it."""
    rows, read = _content_rows(files, root)
    return f"{len(rows)}:{hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]}", read
