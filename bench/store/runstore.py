"""The run store: SQLAlchemy, one row per job key, per-case predictions beside it (docs/store.md).

Default: an SQLite file ``<runs dir>/runs.db`` (write-ahead log, so readers never wait for a
running sweep); any SQLAlchemy URL (e.g. PostgreSQL) works for many workers on many machines.
A job's record and its per-case predictions are written in **one transaction**, so a killed job
leaves either a complete record or nothing. Storing a record again without cases keeps the
cases already stored. Every database error leaves this module as one line (:class:`StoreError`)
naming the store and what to do, never an SQL dump.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import StoreError, StoreIOError
from ..record import RunRecord, dumps
from .claims import claim_ttl, now, owner_is_dead
from .migrate import SchemaTooNew, ensure_schema
from .schema import job_claims, run_cases, runs
from .urls import hide_password, normalize_url

DONE_STATUSES = ("ok", "skipped", "failed")
RESULT_PURPOSES = ("eval", "imported")
#: SQLite: seconds a writer waits for another writer's lock before giving up
SQLITE_BUSY_TIMEOUT_S = 300
#: PostgreSQL: seconds to wait for a connection (unless the URL sets ``connect_timeout``)
PG_CONNECT_TIMEOUT_S = 30

_HINTS = (
    ("database or disk is full", "the disk is full: free disk space or point --runs-dir/--store elsewhere"),
    ("no space left", "the disk is full: free disk space or point --runs-dir/--store elsewhere"),
    ("disk i/o error", "the disk failed or is full (SQLite reports both as an I/O error): free disk space, or "
                       "check the disk, or point --runs-dir/--store elsewhere"),
    ("database is locked", "another process held the store's write lock too long; rerun the command"),
    ("unable to open database file", "check that the folder exists and is writable"),
    ("readonly database", "the store file is read-only; check its permissions"),
    ("file is not a database", "the file is not an SQLite database; point --store at a run store"),
    ("database disk image is malformed", "the SQLite file is corrupt; restore it or start a new --runs-dir"),
    ("connection refused", "is the database server running and reachable?"),
    ("could not connect", "is the database server running and reachable?"),
    ("timeout expired", "is the database server running and reachable?"),
    ("password authentication failed", "check the user and password in the --store URL"),
    ('role ".*" does not exist', "check the user name in the --store URL"),
    ('database ".*" does not exist', "create it first (createdb NAME) or fix the database name in the --store URL"),
)


def _column_array(column):
    """A pyarrow column as numpy: numbers as float64 (nulls NaN), lists as a 2-D float array when
    rectangular (else an object array of arrays), anything else as an object array."""
    import numpy as np
    import pyarrow as pa

    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if len(lengths) and (lengths == lengths[0]).all() and column.null_count == 0:
            return flat.reshape(len(lengths), int(lengths[0]))
        ends = np.cumsum(np.nan_to_num(lengths).astype(np.int64))
        return np.array(np.split(flat, ends[:-1]) if len(ends) else [], dtype=object)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return column.to_numpy(zero_copy_only=False)


def default_url(runs_dir: str | Path) -> str:
    return f"sqlite:///{Path(runs_dir).expanduser().resolve() / 'runs.db'}"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


#: messages of a disk that failed under a correct command (exit 1, not 2)
_IO_FAILURE = re.compile(r"database or disk is full|no space left|disk i/o error|disk quota|input/output error")


def _hint(message: str) -> str:
    low = message.lower()
    return next((hint for needle, hint in _HINTS if re.search(needle, low)), "")


class RunStore:
    def __init__(self, url: str):
        self.shown_url = hide_password(url)
        self.url = url = normalize_url(url)   # postgresql:// -> psycopg 3; one line if the driver is missing
        with self._errors("open"):
            sqlite_file = url.startswith("sqlite:///") and url != "sqlite:///:memory:"
            if sqlite_file:
                Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
            if url.startswith("sqlite"):
                args = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
                self.engine: Engine = create_engine(url, **args)
                self._writer: Engine = create_engine(url, **args)
                self._sqlite_setup(self.engine, write=False, wal=sqlite_file)
                self._sqlite_setup(self._writer, write=True, wal=sqlite_file)
            else:
                args = {}
                if url.startswith("postgresql+psycopg") and "connect_timeout" not in url:
                    args["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
                try:
                    self.engine = self._writer = create_engine(url, pool_pre_ping=True, **args)
                except ImportError as exc:   # e.g. psycopg installed without its libpq
                    raise StoreError(f"run store {self.shown_url}: cannot load the database driver: {exc}; "
                                     "pip install 'bench[postgres]'") from None
            self.shown_url = self.engine.url.render_as_string(hide_password=True)
            # SQLite migrates through a plain engine: alembic manages its own transactions
            migrator = create_engine(url, **args) if url.startswith("sqlite") else self._writer
            try:
                ensure_schema(migrator)
            except SchemaTooNew as exc:
                raise StoreError(f"run store {self.shown_url}: {exc}") from None
            finally:
                if migrator is not self._writer:
                    migrator.dispose()

    @staticmethod
    def _sqlite_setup(engine: Engine, write: bool, wal: bool) -> None:
        """pysqlite starts transactions lazily, which lets two writers both read and then fail on the
        write; the writer engine takes the write lock up front (``BEGIN IMMEDIATE``) and waits for it."""

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None
            if wal:
                with contextlib.suppress(Exception):
                    dbapi_conn.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextlib.contextmanager
    def _errors(self, action: str):
        try:
            yield
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            line = _first_line(exc)
            hint = _hint(line)
            kind = StoreIOError if _IO_FAILURE.search(line.lower()) else StoreError
            raise kind(f"run store {self.shown_url}: cannot {action}: {line}" + (f"; {hint}" if hint else "")) \
                from None

    # ---------------------------------------------------------------- writes
    def put(self, record: RunRecord, cases: Any = None) -> None:
        """Insert or replace one job atomically (record and per-case predictions together).
        ``cases`` None keeps the cases already stored for the key."""
        self.put_many([(record, cases)])

    def put_many(self, items: Iterable[tuple[RunRecord, Any]]) -> None:
        """Insert or replace many jobs in one transaction (imports, benchmarks)."""
        rows = [(self._row(rec), self._blob(cases)) for rec, cases in items]
        if not rows:
            return
        what = f"store run {rows[0][0]['key']}" if len(rows) == 1 else f"store {len(rows)} runs"
        if self._writer.dialect.name == "postgresql":
            self._upsert(rows, what)
            return
        with self._errors(what), self._writer.begin() as conn:
            keys = [row["key"] for row, _ in rows]
            for start in range(0, len(keys), 500):
                conn.execute(delete(runs).where(runs.c.key.in_(keys[start:start + 500])))
            conn.execute(insert(runs), [row for row, _ in rows])
            blobs = [{"key": row["key"], "cases": blob} for row, blob in rows if blob is not None]
            for start in range(0, len(blobs), 500):
                conn.execute(delete(run_cases).where(run_cases.c.key.in_([b["key"] for b in blobs[start:start + 500]])))
            if blobs:
                conn.execute(insert(run_cases), blobs)

    def _upsert(self, rows: list[tuple[dict[str, Any], bytes | None]], what: str) -> None:
        """PostgreSQL: ``INSERT ... ON CONFLICT DO UPDATE``. Delete-then-insert (as on SQLite, whose
        writers queue for one lock) would let two transactions storing one key both delete and then
        collide on the insert; the upsert takes the row lock instead. Keys go in sorted order (one
        lock order, so concurrent writers cannot deadlock), the last record of a repeated key wins."""
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        latest = {row["key"]: (row, blob) for row, blob in rows}
        ordered = [latest[key] for key in sorted(latest)]
        with self._errors(what), self._writer.begin() as conn:
            stmt = pg_insert(runs)
            conn.execute(stmt.on_conflict_do_update(index_elements=[runs.c.key],
                                                    set_={c.name: stmt.excluded[c.name] for c in runs.c if c.name != "key"}),
                         [row for row, _ in ordered])
            blobs = [{"key": row["key"], "cases": blob} for row, blob in ordered if blob is not None]
            if blobs:
                stmt = pg_insert(run_cases)
                conn.execute(stmt.on_conflict_do_update(index_elements=[run_cases.c.key],
                                                        set_={"cases": stmt.excluded.cases}), blobs)

    @staticmethod
    def _blob(cases: Any) -> bytes | None:
        if cases is None or not len(cases):
            return None
        buf = io.BytesIO()
        cases.to_parquet(buf, index=False)
        return buf.getvalue()

    @staticmethod
    def _row(record: RunRecord) -> dict[str, Any]:
        return {"key": record.key, "config_id": record.config_id, "request_id": record.request_id,
               "label": record.label, "label_fields": dumps(record.label_fields), "method": record.method,
               "dataset": record.dataset, "seed": record.seed, "split_seed": record.split_seed,
               "preset": record.preset, "status": record.status, "purpose": record.purpose, "suite": record.suite,
               "code_version": record.code_version, "created_at": record.created_at,
               "metrics": dumps(record.metrics), "catalogue": dumps(record.catalogue), "record": record.to_json()}

    def delete(self, key: str) -> None:
        with self._errors(f"delete run {key}"), self._writer.begin() as conn:
            conn.execute(delete(runs).where(runs.c.key == key))
            conn.execute(delete(run_cases).where(run_cases.c.key == key))

    # ---------------------------------------------------------------- reads
    def _scalar(self, query, action: str):
        with self._errors(action), self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def status(self, key: str) -> str | None:
        return self._scalar(select(runs.c.status).where(runs.c.key == key), f"read run {key}")

    def done_keys(self, statuses: tuple[str, ...] = DONE_STATUSES) -> set[str]:
        with self._errors("list runs"), self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(runs.c.key).where(runs.c.status.in_(statuses)))}

    def get(self, key: str) -> RunRecord | None:
        raw = self._scalar(select(runs.c.record).where(runs.c.key == key), f"read run {key}")
        return RunRecord.from_dict(json.loads(raw)) if raw else None

    def records(self, status: str | None = None, purpose: str | None = None) -> list[RunRecord]:
        query = select(runs.c.record).order_by(runs.c.method, runs.c.dataset, runs.c.seed)
        if status:
            query = query.where(runs.c.status == status)
        if purpose:
            query = query.where(runs.c.purpose == purpose)
        with self._errors("read runs"), self.engine.connect() as conn:
            return [RunRecord.from_dict(json.loads(r[0])) for r in conn.execute(query)]

    def cases(self, key: str):
        import pandas as pd

        blob = self._scalar(select(run_cases.c.cases).where(run_cases.c.key == key), f"read cases of run {key}")
        return pd.read_parquet(io.BytesIO(blob)) if blob else pd.DataFrame()

    def cases_many(self, keys: Iterable[str]) -> dict:
        """The per-case tables of many runs in a few queries (500 keys each): key -> DataFrame;
        runs without per-case data are absent from the result."""
        import pandas as pd

        wanted = sorted(set(keys))
        out = {}
        with self._errors("read cases of runs"), self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                for key, blob in conn.execute(select(run_cases.c.key, run_cases.c.cases)
                                              .where(run_cases.c.key.in_(chunk))):
                    if blob:
                        out[key] = pd.read_parquet(io.BytesIO(blob))
        return out

    def case_columns_many(self, keys: Iterable[str], skip_prefixes: tuple[str, ...] = ("aux_", "meta_")) -> dict:
        """The per-case tables of many runs as numpy columns, for statistics: key -> {column:
        array}; list columns (``probs``) become 2-D arrays when every row has the same length.
        Columns whose names start with ``skip_prefixes`` (interpretation tensors, extra data
        columns) are not decoded. Read with pyarrow directly, about four times faster than
        :meth:`cases_many` (the leaderboard reads thousands)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = sorted(set(keys))
        out = {}
        with self._errors("read cases of runs"), self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                for key, blob in conn.execute(select(run_cases.c.key, run_cases.c.cases)
                                              .where(run_cases.c.key.in_(chunk))):
                    if not blob:
                        continue
                    parquet = pq.ParquetFile(pa.BufferReader(blob))
                    names = [n for n in parquet.schema_arrow.names if not n.startswith(skip_prefixes)]
                    table = parquet.read(columns=names)
                    out[key] = {n: _column_array(table.column(n)) for n in names}
        return out

    def count(self) -> int:
        return int(self._scalar(select(func.count()).select_from(runs), "count runs") or 0)

    def by_request(self, request_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored runs per request id (newest first): key, status, code version, created_at and
        the identity fields of their config, for telling stale runs from missing ones."""
        ids = sorted(set(request_ids))
        out: dict[str, list[dict[str, Any]]] = {}
        with self._errors("read runs"), self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(runs.c.request_id, runs.c.key, runs.c.status, runs.c.code_version,
                                           runs.c.created_at, runs.c.record)
                                    .where(runs.c.request_id.in_(ids[start:start + 500])))
                for rid, key, status, code, created, raw in rows:
                    cfg = json.loads(raw).get("config") or {}
                    out.setdefault(rid, []).append({"key": key, "status": status, "code_version": code,
                                                    "created_at": created, "data": cfg.get("data_fingerprint"),
                                                    "evaluation": cfg.get("evaluation")})
        for rows in out.values():
            rows.sort(key=lambda r: r["created_at"] or "", reverse=True)
        return out

    def result_rows(self, purposes: tuple[str, ...] = RESULT_PURPOSES, datasets: list[str] | None = None,
                    keys: Iterable[str] | None = None, suite: str | None = None) -> list[tuple]:
        """The columns results need for finished runs, without decoding whole records:
        (key, config_id, request_id, label, label_fields, method, dataset, seed, split_seed, preset,
        code_version, created_at, purpose, metrics, catalogue)."""
        cols = (runs.c.key, runs.c.config_id, runs.c.request_id, runs.c.label, runs.c.label_fields, runs.c.method,
                runs.c.dataset, runs.c.seed, runs.c.split_seed, runs.c.preset, runs.c.code_version,
                runs.c.created_at, runs.c.purpose, runs.c.metrics, runs.c.catalogue)
        query = select(*cols).where(runs.c.status == "ok", runs.c.purpose.in_(purposes))
        if datasets:
            query = query.where(runs.c.dataset.in_(datasets))
        if suite:
            query = query.where(runs.c.suite == suite)
        with self._errors("read runs"), self.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r[0] in wanted]
        return rows

    # ---------------------------------------------------------------- claims
    def claim(self, key: str, owner: str, ttl: float | None = None) -> str | None:
        """Claim a job for ``owner``. Returns None when claimed (or already ours), else the
        holder's owner string. A dead claim (stale heartbeat, or a gone local process) is taken over."""
        ttl = claim_ttl() if ttl is None else ttl
        for _ in range(3):
            t = now()
            try:
                with self._errors(f"claim job {key}"), self._writer.begin() as conn:
                    row = conn.execute(select(job_claims.c.owner, job_claims.c.heartbeat_at)
                                       .where(job_claims.c.key == key)).first()
                    if row is None:
                        conn.execute(insert(job_claims).values(key=key, owner=owner, claimed_at=t, heartbeat_at=t))
                        return None
                    holder, beat = row
                    if holder == owner:
                        conn.execute(update(job_claims).where(job_claims.c.key == key).values(heartbeat_at=t))
                        return None
                    if t - beat <= ttl and not owner_is_dead(holder):
                        return holder
                    done = conn.execute(update(job_claims).where(job_claims.c.key == key, job_claims.c.owner == holder,
                                                                 job_claims.c.heartbeat_at == beat)
                                        .values(owner=owner, claimed_at=t, heartbeat_at=t))
                    if done.rowcount == 1:
                        return None
            except StoreError as exc:
                if not isinstance(exc.__context__, IntegrityError):
                    raise
            # lost a race for the row: look again
        return self.claim_holder(key) or owner

    def claim_holder(self, key: str) -> str | None:
        """The live holder of a job's claim, or None."""
        row = None
        with self._errors(f"read claim {key}"), self.engine.connect() as conn:
            row = conn.execute(select(job_claims.c.owner, job_claims.c.heartbeat_at)
                               .where(job_claims.c.key == key)).first()
        if row is None or now() - row[1] > claim_ttl() or owner_is_dead(row[0]):
            return None
        return row[0]

    def heartbeat(self, key: str, owner: str) -> None:
        with self._errors(f"renew claim {key}"), self._writer.begin() as conn:
            conn.execute(update(job_claims).where(job_claims.c.key == key, job_claims.c.owner == owner)
                         .values(heartbeat_at=now()))

    def release(self, key: str, owner: str) -> None:
        with self._errors(f"release claim {key}"), self._writer.begin() as conn:
            conn.execute(delete(job_claims).where(job_claims.c.key == key, job_claims.c.owner == owner))

    def claims(self) -> list[tuple[str, str, float]]:
        with self._errors("read claims"), self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(job_claims.c.key, job_claims.c.owner,
                                                          job_claims.c.heartbeat_at))]
