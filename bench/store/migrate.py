"""Bring a run store to the current schema, in place, keeping every record (docs/store.md).

Opening a store checks its alembic revision with one query; only a store that is behind is
migrated (alembic is imported then, not on every open). A store written before revisions
existed (a ``runs`` table and no version table) is stamped ``0001`` first. The revision lives in
``bench_store_version`` (``alembic_version`` is left to Optuna, whose studies may share the
database); a store that kept it in ``alembic_version`` has it moved on open. Migrations
hold a lock so that two processes opening an old store at once do not both migrate it: a file
lock beside an SQLite file, an advisory lock on PostgreSQL.
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from .schema import LEGACY_VERSION_TABLE, SCHEMA_HEAD, VERSION_TABLE

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x62656E6368  # "bench"


class SchemaTooNew(RuntimeError):
    pass


def current_revision(engine: Engine) -> str | None:
    """The store's revision: None for an empty database, ``"0001"`` for an unversioned v1 store."""
    with engine.connect() as conn:
        return _revision(conn)[0]


def _revision(conn) -> tuple[str | None, bool]:
    """(revision, kept in the legacy ``alembic_version`` table)."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one_or_none(), False
    if LEGACY_VERSION_TABLE in tables:
        rev = conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar_one_or_none()
        if rev in _known_revisions():   # ours, from before the store had its own version table
            return rev, True
        # another tool's revision (Optuna's tables in the same database): not the store's
    return ("0001" if "runs" in tables else None), False


def _known_revisions() -> list[str]:
    return sorted(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))


@contextlib.contextmanager
def schema_lock(engine: Engine):
    """Hold the database's schema lock (a file lock beside an SQLite file, an advisory lock on
    PostgreSQL) while creating or migrating tables: the run store's and Optuna's."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with open(f"{url.database}.migrate.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif url.get_backend_name() == "postgresql":
        # a session-level lock (scoped to this database) held by a connection of its own, outside
        # any transaction (AUTOCOMMIT), so it is not left "idle in transaction" while alembic works
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            try:
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                except Exception:  # noqa: BLE001 - closing the session releases the lock instead
                    conn.invalidate()
    else:
        yield


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def ensure_schema(engine: Engine) -> str | None:
    """Upgrade the store to ``SCHEMA_HEAD`` if it is behind; returns the revision it had. A store
    whose revision is still in ``alembic_version`` gets it moved to its own table first."""
    with engine.connect() as conn:
        before, legacy = _revision(conn)
    if before == SCHEMA_HEAD and not legacy:
        return before
    if before is not None and before not in _known_revisions():
        raise SchemaTooNew(f"the run store has schema revision {before}, newer than this bench understands "
                           f"(head {SCHEMA_HEAD}); upgrade bench or use another --store")
    with schema_lock(engine):
        with engine.begin() as conn:   # another process may have migrated while we waited
            before, legacy = _revision(conn)
            if legacy:
                conn.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
                conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": before})
                conn.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
        if before == SCHEMA_HEAD:
            return before
        from alembic import command

        with engine.begin() as conn:
            cfg = alembic_config(conn)
            if before is not None and VERSION_TABLE not in inspect(conn).get_table_names():
                command.stamp(cfg, before)
            command.upgrade(cfg, SCHEMA_HEAD)
    return before
