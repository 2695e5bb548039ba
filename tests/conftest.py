"""Shared fixtures: a cached loader for the (small, embedded) datasets."""
from __future__ import annotations

import functools
import os
import tempfile

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # before torch loads OpenMP (see bench/__init__.py)
# generated and preprocessed segmentation data goes to one temporary cache for the whole session,
# never into the working tree (subprocesses inherit it)
os.environ.setdefault("BENCH_CACHE_DIR", tempfile.mkdtemp(prefix="bench-cache-"))

import pytest

from datasets import load_dataset


@functools.lru_cache(maxsize=None)
def _load(name: str, split_seed: int = 0):
    return load_dataset(name, split_seed)


@pytest.fixture(scope="session")
def load_data():
    """``load_data(name, split_seed=0)``: a session-cached dataset. Tests must not mutate what it returns."""
    return _load
