"""Run store v2: migrations from the v1 store, per-case rows, job claims, one-line errors."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.record import RunRecord
from bench.store import SCHEMA_HEAD, RunStore, StoreError, default_url
from bench.store.claims import Owner, owner_is_dead
from bench.store.migrate import MIGRATIONS, current_revision

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"


def _rec(key: str, status: str = "ok") -> RunRecord:
    return RunRecord(key=key, method="early", dataset="toy", seed=0, split_seed=0, preset="tiny", code_version="x",
                     config={}, status=status, metrics={"test": {"t": {"accuracy": 0.5}}}, config_id="c",
                     request_id="r" + key, label="early")


def _v1_rows(path: Path) -> dict[str, tuple]:
    with sqlite3.connect(path) as conn:
        return {r[0]: r[1:] for r in conn.execute("SELECT key, status, record, cases FROM runs")}


def test_migrations_end_where_the_schema_says():
    from alembic.script import ScriptDirectory

    from bench.store.migrate import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
    assert (MIGRATIONS / "versions").is_dir()


def test_v1_store_upgrades_in_place_with_every_record(tmp_path):
    path = tmp_path / "runs.db"
    shutil.copy(FIXTURE, path)
    before = _v1_rows(path)
    assert len(before) == 8 and {v[0] for v in before.values()} == {"ok", "failed", "skipped"}
    store = RunStore(f"sqlite:///{path}")
    assert current_revision(store.engine) == SCHEMA_HEAD
    records = {r.key: r for r in store.records()}
    assert set(records) == set(before)
    import json

    for key, (status, raw, cases) in before.items():
        old = json.loads(raw)
        rec = records[key]
        assert rec.status == status and rec.metrics == old["metrics"] and rec.cost == old["cost"]
        assert rec.config_id and rec.request_id and rec.label.startswith(old["method"]) and rec.purpose == "eval"
        if cases is not None:   # per-case rows moved to run_cases, byte for byte
            assert store.cases(key).equals(pd.read_parquet(__import__("io").BytesIO(cases)))
        if status == "ok":
            assert rec.catalogue["tasks"] and all(t["headline"] for t in rec.catalogue["tasks"].values())
    labels = sorted(r.label for r in records.values() if r.status == "ok")
    assert "early@tiny[epochs=3,patience=0]" in labels and "early@tiny[epochs=2,patience=0]" in labels
    # the two seeds of early epochs=3 are one configuration; epochs=2 is another
    early3 = {r.config_id for r in records.values() if r.label == "early@tiny[epochs=3,patience=0]"}
    assert len(early3) == 1
    assert RunStore(f"sqlite:///{path}").count() == 8   # reopening does not migrate again


def test_v1_runs_show_as_stale_for_the_same_request(tmp_path):
    """A v1 run and today's run of the same request share the request id; the plan says why it is stale."""
    from bench.runner import build_config
    from bench.sweep import plan

    path = tmp_path / "runs.db"
    shutil.copy(FIXTURE, path)
    store = RunStore(f"sqlite:///{path}")
    old = next(r for r in store.records() if r.label == "early@tiny[epochs=2,patience=0]")
    cfg = build_config("early", "wdbc", seed=0, preset="tiny", train={"epochs": 2, "patience": 0},
                       threads=old.env["threads"])
    assert cfg.request_id() == old.request_id and cfg.key() != old.key
    (p,) = plan([cfg], store)
    assert p.state == "stale" and "code changed (0.1.0 ->" in p.why and "data changed" in p.why


def test_a_store_from_a_newer_bench_is_refused_in_one_line(tmp_path):
    RunStore(default_url(tmp_path))
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        conn.execute("UPDATE bench_store_version SET version_num = '9999'")
    with pytest.raises(StoreError) as err:
        RunStore(default_url(tmp_path))
    assert "9999" in str(err.value) and "\n" not in str(err.value)


def test_restoring_a_record_without_cases_keeps_its_cases(tmp_path):
    store = RunStore(default_url(tmp_path))
    cases = pd.DataFrame({"case_id": ["a", "b"], "correct": [1, 0]})
    store.put(_rec("k"), cases)
    store.put(_rec("k"))   # e.g. a record updated by a later tool
    assert store.cases("k").equals(cases)
    store.put(_rec("k"), cases.iloc[:1])
    assert len(store.cases("k")) == 1
    store.delete("k")
    assert store.get("k") is None and store.cases("k").empty


def test_store_errors_are_one_line_without_sql(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as err:
        RunStore(f"sqlite:///{junk}")
    msg = str(err.value)
    assert "\n" not in msg and "SELECT" not in msg and "file is not a database" in msg and str(junk) in msg
    from bench.cli import main

    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--store", f"sqlite:///{junk}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: run store")
    del main


def test_disk_full_in_the_store_names_the_remedy():
    from bench.store.runstore import _hint

    assert "free disk space" in _hint("database or disk is full")


@pytest.mark.parametrize("message", ["disk I/O error", "database or disk is full"])
def test_a_failing_disk_is_exit_1_naming_the_store_and_what_ran_out(tmp_path, capsys, monkeypatch, message):
    """A full or failing disk under a correct command is not bad input (exit 2): exit 1, naming the
    store and what to do (SQLite says only 'disk I/O error' at a few KB free)."""
    import sqlite3
    import types

    from sqlalchemy.exc import OperationalError

    from bench.cli import main
    from bench.errors import StoreIOError

    store = RunStore(default_url(tmp_path))

    def fail(*_a, **_k):
        raise OperationalError("INSERT INTO runs", {}, sqlite3.OperationalError(message))

    monkeypatch.setattr(store, "_writer", types.SimpleNamespace(dialect=types.SimpleNamespace(name="sqlite"),
                                                                 begin=fail))
    with pytest.raises(StoreIOError, match=rf"run store sqlite:///.*runs\.db: cannot .*{message}; .*disk"):
        store.put(_rec("k1"))
    monkeypatch.setattr(RunStore, "put", lambda self, *a, **k: _raise_in(self, "write run k1", fail))
    rc = main(["run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny", "--set", "epochs=1",
               "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and str(tmp_path) in err[0] and "free disk space" in err[0], err


def _raise_in(store, action, fn):
    with store._errors(action):
        fn()


# ----------------------------------------------------------------------------------- claims

def test_a_claim_is_exclusive_and_released(tmp_path):
    store = RunStore(default_url(tmp_path))
    me, other = str(Owner.current()), f"elsewhere:1:1:{'a' * 8}"
    assert store.claim("job", me) is None
    assert store.claim("job", me) is None            # re-claiming our own claim renews it
    assert store.claim("job", other, ttl=60) == me   # held by a live owner
    assert store.claim_holder("job") == me
    store.release("job", me)
    assert store.claim_holder("job") is None and store.claim("job", other) is None


def test_a_dead_claim_is_taken_over(tmp_path):
    store = RunStore(default_url(tmp_path))
    # a remote owner whose heartbeat stopped
    assert store.claim("remote", "far-host:123:1:deadbeef") is None
    assert store.claim("remote", str(Owner.current()), ttl=3600) == "far-host:123:1:deadbeef"
    time.sleep(1.1)
    assert store.claim("remote", str(Owner.current()), ttl=1.0) is None
    # a local owner whose process is gone: taken over at once, whatever the TTL
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = str(Owner(Owner.current().host, proc.pid, "12345", "cafecafe"))
    assert owner_is_dead(dead) and not owner_is_dead(str(Owner.current()))
    assert store.claim("local", dead) is None
    assert store.claim("local", str(Owner.current()), ttl=3600) is None


def test_racing_claims_have_one_winner(tmp_path):
    url = default_url(tmp_path)
    RunStore(url)
    results, barrier = [], threading.Barrier(6)

    def grab(i):
        store = RunStore(url)
        barrier.wait()
        results.append(store.claim("job", f"host:{i}:1:{i:08d}", ttl=3600))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 1, results


def test_heartbeat_keeps_a_long_job_claimed(tmp_path, monkeypatch):
    from bench.store import Heartbeat

    monkeypatch.setenv("BENCH_CLAIM_TTL", "1")
    store = RunStore(default_url(tmp_path))
    owner = "far-host:9:9:beating1"   # not local, so only the heartbeat keeps it alive
    store.claim("job", owner)
    with Heartbeat(store, "job", owner, interval=0.2):
        time.sleep(2.0)
        assert store.claim_holder("job") == owner
    time.sleep(1.2)
    assert store.claim_holder("job") is None


def test_a_store_that_kept_its_revision_in_alembic_version_has_it_moved(tmp_path):
    """Stores written before bench_store_version existed kept the revision in alembic_version,
    the table Optuna uses for its own; opening moves it and keeps every record."""
    store = RunStore(default_url(tmp_path))
    store.put(_legacy_record())
    store.engine.dispose()
    store._writer.dispose()
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        conn.execute("ALTER TABLE bench_store_version RENAME TO alembic_version")
    again = RunStore(default_url(tmp_path))
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "alembic_version" not in tables
        assert conn.execute("SELECT version_num FROM bench_store_version").fetchall() == [(SCHEMA_HEAD,)]
    assert again.count() == 1


def test_an_optuna_study_can_share_the_run_stores_database(tmp_path):
    import optuna

    from bench.tuning import open_storage

    url = default_url(tmp_path)
    RunStore(url).put(_legacy_record())
    storage = open_storage(url)   # Optuna's tables and its alembic_version beside the runs
    optuna.create_study(study_name="s", storage=storage)
    again = RunStore(url)
    assert again.count() == 1
    assert optuna.load_study(study_name="s", storage=open_storage(url)).study_name == "s"


def _legacy_record():
    from bench.record import RunRecord

    return RunRecord(key="k1", method="early", dataset="wdbc", seed=0, split_seed=0, preset="small",
                     code_version="x", config={}, status="ok", metrics={"test": {"t": {"accuracy": 0.5}}},
                     config_id="c1", request_id="r1", label="early")
