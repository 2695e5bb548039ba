"""Content hashes of data files, cached so that unchanged data costs one ``stat`` per file.

Job keys (``bench.identity.data_fingerprint``) and the preprocessing caches of the image and
segmentation readers name their input files by the SHA-256 of their bytes, not by size and
modification time: an edit that keeps both (``cp -p``, ``rsync -a``, an archive restore,
``touch -r``) must still be seen (docs/identity.md). The cache is keyed by absolute path, size,
modification time, change time and inode; the change time is set by the kernel on every write
and cannot be set by a user, so any edit re-reads the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: file of the persistent content-hash cache (under $BENCH_CACHE_DIR, else ~/.cache/bench)
HASH_CACHE_NAME = "file-hashes.json"
_HASHES: dict[str, dict] | None = None
_DIRTY = False   # hashes computed since the cache file was last written


def _hash_cache_path() -> Path:
    base = os.environ.get("BENCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "bench")
    return Path(base) / HASH_CACHE_NAME


def _load_hashes() -> dict[str, dict]:
    global _HASHES
    if _HASHES is None:
        try:
            _HASHES = json.loads(_hash_cache_path().read_text(encoding="utf-8"))
            if not isinstance(_HASHES, dict):
                _HASHES = {}
        except (OSError, ValueError):
            _HASHES = {}
    return _HASHES


def save_hashes() -> None:
    """Write the cache atomically (a temporary file renamed) if a hash was computed since the last
    write; a cache that cannot be written only costs a re-read next time."""
    global _DIRTY
    if not _DIRTY:
        return
    _DIRTY = False
    path = _hash_cache_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(_HASHES), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def file_sha256(path: os.PathLike | str) -> tuple[str, bool]:
    """(sha256 of the file's bytes, whether it was read now). The hash is cached by absolute
    path, size, modification time, *change* time and inode: ``cp -p``, ``rsync -a``, an archive
    restore or an edit followed by ``touch -r`` keep the size and modification time but not the
    change time (which no user can set), so any of them re-reads the file."""
    global _DIRTY
    p = Path(path).resolve()
    st = p.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    cache = _load_hashes()
    hit = cache.get(str(p))
    if isinstance(hit, dict) and hit.get("stat") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"], False
    digest = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    cache[str(p)] = {"stat": stamp, "sha256": digest.hexdigest()}
    _DIRTY = True
    return digest.hexdigest(), True


def files_sha256(files) -> list[str]:
    """The content hashes of ``files`` in order (cached). The cache file is not written: a caller
    hashing many groups calls :func:`save_hashes` once, at the end."""
    return [file_sha256(f)[0] for f in files]


def forget(paths) -> None:
    """Drop the cached hashes of ``paths`` (the next call reads them again; ``bench perf``)."""
    cache = _load_hashes()
    for f in paths:
        cache.pop(str(Path(f).resolve()), None)
