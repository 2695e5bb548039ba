"""The run store's tables at the current schema version (docs/store.md has the column reference).

``runs``: one row per job key. The whole :class:`RunRecord` is the JSON in ``record``; the columns
beside it are copies of what queries filter and group on (identity, status, purpose, suite) and
of what results need (``metrics``, ``catalogue``, ``label_fields``), so that a leaderboard reads
a few small columns instead of decoding every record.
``run_cases``: the per-case test predictions of a run (Parquet bytes), kept apart so that
reading runs never touches them and storing a run again without cases keeps them.
``job_claims``: which worker is running which job, with a heartbeat; see ``bench.store.claims``.

Changing these tables needs a migration in ``bench/store/migrations/versions`` and a new
``SCHEMA_HEAD`` (a test checks that the two agree).
"""
from __future__ import annotations

from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, String, Table, Text

#: the alembic revision this code reads and writes
SCHEMA_HEAD = "0002"
#: where the store's revision is kept (not ``alembic_version``, which Optuna uses for its own
#: tables when a study shares the database); stores before 0.2 kept it in ``alembic_version``
VERSION_TABLE = "bench_store_version"
LEGACY_VERSION_TABLE = "alembic_version"

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("key", String(64), primary_key=True),
    Column("config_id", String(64), index=True),
    Column("request_id", String(64), index=True),
    Column("label", Text),
    Column("label_fields", Text),
    Column("method", String(200), index=True),
    Column("dataset", String(500), index=True),
    Column("seed", Integer),
    Column("split_seed", Integer),
    Column("preset", String(16)),
    Column("status", String(16), index=True),
    Column("purpose", String(16), index=True),
    Column("suite", String(200), index=True),
    Column("code_version", String(100)),
    Column("created_at", String(40)),
    Column("metrics", Text),
    Column("catalogue", Text),
    Column("record", Text, nullable=False),
)

run_cases = Table(
    "run_cases", metadata,
    Column("key", String(64), primary_key=True),
    Column("cases", LargeBinary, nullable=False),
)

job_claims = Table(
    "job_claims", metadata,
    Column("key", String(64), primary_key=True),
    Column("owner", String(300), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)
