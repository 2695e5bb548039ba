"""Shared fixtures: a cached loader for the (small, embedded) datasets; a PostgreSQL server."""
from __future__ import annotations

import functools
import os
import sys
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


# ------------------------------------------------------------------ PostgreSQL (tests/pg_server.py)

@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the session (:class:`tests.pg_server.PgServer`: ``.url(db)``,
    ``.create_database()``), stopped at the end; skips, saying what failed, when none can be started."""
    from pg_server import PgUnavailable, start_server

    try:
        server = start_server()
    except PgUnavailable as exc:
        reason = f"no PostgreSQL server: {exc}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """The URL (``postgresql://...``) of a fresh, empty database on ``postgres_server``."""
    return postgres_server.create_database()
