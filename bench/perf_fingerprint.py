"""``bench perf fingerprint``: what the content fingerprint of a job's data costs.

A job key holds the SHA-256 of every input file (``datasets.fingerprints.cached_content_fingerprint``, re-exported by ``bench.identity``),
cached by path, size, modification and change time and inode. This measures, per dataset: the
first (cold) hash, which reads every byte; the warm call (the cache hit every later job and sweep
pays: one ``stat`` per file); and the stat-only fingerprint used before, for comparison. Two
datasets: the largest embedded file-backed dataset, and a generated folder of ``size_mb`` MiB of
``.npy`` files (default 1 GiB) in a temporary directory. Repetitions give min / median / max
(the shared machine is noisy); the cold hash is repeated on fresh cache entries (the page cache
stays warm, so it is the hashing cost, not the disk's).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from datasets import file_hashes

from . import identity

#: per-sample file of the generated folder (MiB)
FILE_MB = 16


def _span(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def measure(files: list[Path], root: Path | None, reps: int) -> dict:
    cold, warm, stat = [], [], []
    for _ in range(reps):
        file_hashes.forget(files)   # the next call reads every byte
        t = time.perf_counter()
        identity.cached_content_fingerprint(files, root)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        identity.cached_content_fingerprint(files, root)
        warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        identity.files_fingerprint(files, root)
        stat.append(time.perf_counter() - t)
    size = sum(Path(f).stat().st_size for f in files)
    return {"files": len(files), "mib": size / 2 ** 20, "cold_s": _span(cold), "warm_s": _span(warm),
            "stat_only_s": _span(stat), "cold_mib_per_s": size / 2 ** 20 / statistics.median(cold)}


def run_fingerprint_perf(size_mb: int = 1024, reps: int = 3, dataset: str | None = None) -> dict:
    """Figures for the largest embedded file-backed dataset (or ``dataset``) and a ``size_mb``
    folder of .npy files."""
    from datasets import dataset_entries, parse_name

    out = {}
    if dataset is None:
        sizes = {}
        for entry in dataset_entries():
            if entry.embedded and entry.input_files is not None:
                files, _ = entry.input_files(None, entry.default_variant)
                sizes[entry.name] = sum(Path(f).stat().st_size for f in files)
        dataset = max(sizes, key=sizes.get)
    entry, variant = parse_name(dataset)
    files, root = entry.input_files(None, variant)
    out[dataset] = measure(list(files), root, reps)
    with tempfile.TemporaryDirectory(prefix="bench-perf-fp-") as tmp:
        rng = np.random.default_rng(0)
        n = max(1, size_mb // FILE_MB)
        paths = []
        for i in range(n):
            p = Path(tmp) / f"s{i:04d}.npy"
            np.save(p, rng.random(FILE_MB * 2 ** 20 // 8))
            paths.append(p)
        out[f"folder of {size_mb} MiB ({n} .npy files)"] = measure(paths, Path(tmp), reps)
        file_hashes.forget(paths)
    file_hashes.save_hashes()
    out["cpu_count"] = os.cpu_count()
    return out
