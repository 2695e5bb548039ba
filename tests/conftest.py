"""Shared fixtures: a cached loader for the (small, embedded) datasets."""
from __future__ import annotations

import functools

import pytest

from datasets import load_dataset


@functools.lru_cache(maxsize=None)
def _load(name: str, split_seed: int = 0):
    return load_dataset(name, split_seed)


@pytest.fixture(scope="session")
def load_data():
    """``load_data(name, split_seed=0)``: a session-cached dataset. Tests must not mutate what it returns."""
    return _load
