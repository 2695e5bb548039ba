"""The run store: SQLAlchemy, one row per job key, per-case predictions beside it.

Default: an SQLite file ``<runs dir>/runs.db``; any SQLAlchemy URL (e.g. PostgreSQL) works for
many workers. A job's record and its per-case predictions are written in **one transaction**
(the predictions as a Parquet blob in the same row), so a killed job leaves either a complete
record or nothing. Keeping the Parquet bytes in the row rather than in a file beside an SQLite
DB means a PostgreSQL store shared by many machines holds everything too.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, select
from sqlalchemy.engine import Engine

from .record import RunRecord

_meta = MetaData()
runs_table = Table(
    "runs", _meta,
    Column("key", String(64), primary_key=True),
    Column("method", String(200), index=True),
    Column("dataset", String(500), index=True),
    Column("seed", Integer),
    Column("status", String(16), index=True),
    Column("created_at", String(40)),
    Column("record", Text, nullable=False),
    Column("cases", LargeBinary, nullable=True),
)

DONE_STATUSES = ("ok", "skipped", "failed")


class StoreError(RuntimeError):
    pass


def default_url(runs_dir: str | Path) -> str:
    return f"sqlite:///{Path(runs_dir).expanduser().resolve() / 'runs.db'}"


class RunStore:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            # SQLite: wait for a concurrent writer (sweep workers) instead of failing at once
            kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
            self.engine: Engine = create_engine(url, future=True, **kwargs)
            _meta.create_all(self.engine)
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one line
            raise StoreError(f"cannot open run store {url!r}: {exc.__class__.__name__}: {exc}") from exc

    # ---------------------------------------------------------------- writes
    def put(self, record: RunRecord, cases: pd.DataFrame | None = None) -> None:
        """Insert or replace one job atomically (record + per-case predictions together)."""
        blob = None
        if cases is not None and len(cases):
            buf = io.BytesIO()
            cases.to_parquet(buf, index=False)
            blob = buf.getvalue()
        row = {"key": record.key, "method": record.method, "dataset": record.dataset, "seed": record.seed,
               "status": record.status, "created_at": record.created_at, "record": record.to_json(), "cases": blob}
        with self.engine.begin() as conn:
            conn.execute(runs_table.delete().where(runs_table.c.key == record.key))
            conn.execute(runs_table.insert().values(**row))

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs_table.delete().where(runs_table.c.key == key))

    # ---------------------------------------------------------------- reads
    def status(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(runs_table.c.status).where(runs_table.c.key == key)).scalar_one_or_none()

    def done_keys(self, statuses: tuple[str, ...] = DONE_STATUSES) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs_table.c.key).where(runs_table.c.status.in_(statuses)))
            return {r[0] for r in rows}

    def get(self, key: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            raw = conn.execute(select(runs_table.c.record).where(runs_table.c.key == key)).scalar_one_or_none()
        return RunRecord.from_dict(json.loads(raw)) if raw else None

    def records(self, status: str | None = None) -> list[RunRecord]:
        query = select(runs_table.c.record).order_by(runs_table.c.method, runs_table.c.dataset, runs_table.c.seed)
        if status:
            query = query.where(runs_table.c.status == status)
        with self.engine.connect() as conn:
            return [RunRecord.from_dict(json.loads(r[0])) for r in conn.execute(query)]

    def cases(self, key: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            blob = conn.execute(select(runs_table.c.cases).where(runs_table.c.key == key)).scalar_one_or_none()
        return pd.read_parquet(io.BytesIO(blob)) if blob else pd.DataFrame()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(runs_table.c.key)).all())
