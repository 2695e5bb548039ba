"""The run store on a real PostgreSQL server (``postgres_server``/``pg_url`` fixtures, tests/pg_server.py):
URLs, migrations, records and cases, claims under races, and two sweeps sharing one store.

Every test here skips, with the reason, when no server can be started (no PostgreSQL binaries,
no psycopg); ``.ci/run`` installs both.
"""
from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.record import RunRecord
from bench.store import SCHEMA_HEAD, RunStore, StoreError, normalize_url
from bench.store.migrate import current_revision

ROOT = Path(__file__).resolve().parent.parent
V1_FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"


def _rec(key: str, status: str = "ok", seed: int = 0, acc: float = 0.5) -> RunRecord:
    return RunRecord(key=key, method="early", dataset="toy", seed=seed, split_seed=0, preset="tiny", code_version="x",
                     config={}, status=status, metrics={"test": {"t": {"accuracy": acc}}}, config_id="c",
                     request_id="r" + key, label="early")


def _together(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads released at the same moment; returns the results in order
    (an exception is returned in its slot)."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def body(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def run_together(commands: list[list[str]], timeout: float = 600, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Start every command at once (``python -m bench ...`` argument lists, run from the repository
    root) and wait for all of them; returns their completed processes (stdout, stderr as text)."""
    env = {**os.environ, **(env or {})}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    done = []
    try:
        for cmd, proc in zip(commands, procs):
            out, err = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


# ------------------------------------------------------------------------------------- URLs

def test_postgres_urls_get_the_psycopg3_driver():
    assert normalize_url("postgresql://u:pw@db:5432/bench") == "postgresql+psycopg://u:pw@db:5432/bench"
    assert normalize_url("postgres://u@db/bench") == "postgresql+psycopg://u@db/bench"
    assert normalize_url("postgresql+psycopg://u@db/bench") == "postgresql+psycopg://u@db/bench"
    assert normalize_url("sqlite:////tmp/x/runs.db") == "sqlite:////tmp/x/runs.db"
    assert normalize_url("sqlite:///:memory:") == "sqlite:///:memory:"


def test_a_missing_driver_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(StoreError) as err:
        normalize_url("postgresql://me:secret@db/bench")
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'bench[postgres]'" in msg and "psycopg" in msg and "secret" not in msg
    with pytest.raises(StoreError):
        RunStore("postgres://me@db/bench")


def test_normalize_url_does_not_import_torch():
    code = "import sys; from bench.store.urls import normalize_url; normalize_url('postgresql://x/y'); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------------------- migrations

OPEN_AT = """import sys, time
from bench.store import RunStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
RunStore(sys.argv[1])
print("opened")
"""


def test_an_empty_database_migrates_once_under_concurrent_opens(pg_url):
    """Four processes open an empty database at the same moment: the advisory lock lets one
    migrate; the others wait, see the schema at head and use it."""
    at = str(time.time() + 4)
    outs = run_together([[sys.executable, "-c", OPEN_AT, pg_url, at] for _ in range(4)], timeout=120)
    assert all(o.returncode == 0 and o.stdout.strip() == "opened" for o in outs), [o.stderr[-500:] for o in outs]
    store = RunStore(pg_url)
    assert current_revision(store.engine) == SCHEMA_HEAD
    from sqlalchemy import inspect, text

    assert {"bench_store_version", "runs", "run_cases", "job_claims"} <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bench_store_version")).scalar_one() == 1
    assert store.url.startswith("postgresql+psycopg://") and store.count() == 0


def test_a_v1_store_upgrades_in_place_on_postgres(pg_url):
    """Revision 0001 built by alembic on the server, filled with the v1 fixture's rows, then opened."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from bench.store.migrate import alembic_config

    engine = create_engine(normalize_url(pg_url))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    with sqlite3.connect(V1_FIXTURE) as src:
        rows = src.execute("SELECT key, method, dataset, seed, status, created_at, record, cases FROM runs").fetchall()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (key, method, dataset, seed, status, created_at, record, cases) "
                          "VALUES (:k, :m, :d, :s, :st, :c, :r, :cs)"),
                     [dict(zip(("k", "m", "d", "s", "st", "c", "r", "cs"), row)) for row in rows])
    engine.dispose()
    store = RunStore(pg_url)
    assert current_revision(store.engine) == SCHEMA_HEAD
    records = {r.key: r for r in store.records()}
    assert set(records) == {row[0] for row in rows}
    for key, *_, raw, cases in rows:
        rec = records[key]
        assert rec.metrics == json.loads(raw)["metrics"] and rec.config_id and rec.label.startswith(rec.method)
        if cases is not None:   # bytea holds the Parquet bytes exactly
            assert store.cases(key).equals(pd.read_parquet(io.BytesIO(cases)))


# -------------------------------------------------------------------------- records, cases

def test_records_and_cases_round_trip(pg_url):
    store = RunStore(pg_url)
    cases = pd.DataFrame({"case_id": ["a", "b", "c"], "correct": [1, 0, 1], "prob": [0.9, 0.2, 0.7]})
    store.put(_rec("k1"), cases)
    store.put(_rec("k1", acc=0.75))           # again without cases: the cases stay
    assert store.cases("k1").equals(cases) and store.get("k1").metrics["test"]["t"]["accuracy"] == 0.75
    store.put_many([(_rec(f"m{i}", seed=i), cases.iloc[: i + 1]) for i in range(3)] + [(_rec("bad", "failed"), None)])
    store.put_many([(_rec("m0", seed=0, acc=0.1), None), (_rec("m0", seed=0, acc=0.2), None)])   # last one wins
    assert store.count() == 5 and len(store.cases("m2")) == 3 and store.get("m0").metrics["test"]["t"]["accuracy"] == 0.2
    assert store.done_keys(("ok",)) == {"k1", "m0", "m1", "m2"} and store.status("bad") == "failed"
    rows = store.result_rows()
    assert {r[0] for r in rows} == {"k1", "m0", "m1", "m2"} and json.loads(rows[0][13])["test"]["t"]["accuracy"] > 0
    assert set(store.by_request(["rk1", "rm1"])) == {"rk1", "rm1"}
    store.delete("m1")
    assert store.get("m1") is None and store.cases("m1").empty and store.count() == 4


def test_concurrent_writers_of_the_same_keys_do_not_collide(pg_url):
    RunStore(pg_url)
    cases = pd.DataFrame({"case_id": ["a"], "correct": [1]})
    keys = [f"k{i}" for i in range(20)]

    def write(i):
        store = RunStore(pg_url)
        order = keys if i % 2 else keys[::-1]   # opposite orders: the store must not deadlock
        for _ in range(5):
            store.put_many([(_rec(k, acc=i / 10), cases) for k in order])
        return "ok"

    assert _together(4, write) == ["ok"] * 4
    assert RunStore(pg_url).count() == 20


# --------------------------------------------------------------------------------- claims

def test_a_claim_is_exclusive_renewed_and_released(pg_url):
    store = RunStore(pg_url)
    me, other = "here:1:1:aaaaaaaa", "there:2:2:bbbbbbbb"
    assert store.claim("job", me) is None
    assert store.claim("job", me) is None               # ours: renewed
    assert store.claim("job", other, ttl=60) == me
    assert store.claim_holder("job") == me and [c[:2] for c in store.claims()] == [("job", me)]
    store.release("job", me)
    assert store.claim_holder("job") is None and store.claim("job", other) is None


def test_racing_claims_have_exactly_one_winner(pg_url):
    """Every worker sees no claim, inserts, and all but one hit the primary key; on PostgreSQL the
    failed insert aborts that transaction, and the claim is retried in a new one."""
    RunStore(pg_url)
    for round_ in range(3):
        key = f"job{round_}"
        owners = [f"host{i}:{i}:1:{i:08d}" for i in range(8)]
        results = _together(8, lambda i: RunStore(pg_url).claim(key, owners[i], ttl=3600))
        assert not any(isinstance(r, Exception) for r in results), results
        winners = [owners[i] for i, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(r == winners[0] for r in results if r is not None)
        assert RunStore(pg_url).claim_holder(key) == winners[0]


def test_a_claim_that_loses_the_insert_race_reports_the_winner(pg_url):
    """Deterministic lost race: another worker's claim is committed between our look and our
    insert. The insert fails on the primary key, which aborts the transaction on PostgreSQL; the
    claim starts a new one, finds the winner and reports it."""
    from sqlalchemy import event, text

    store = RunStore(pg_url)
    other = RunStore(pg_url)
    planted = []

    @event.listens_for(store._writer, "before_cursor_execute")
    def _sneak_in(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO JOB_CLAIMS") and not planted:
            planted.append(True)
            with other._writer.begin() as c:
                c.execute(text("INSERT INTO job_claims (key, owner, claimed_at, heartbeat_at) "
                               "VALUES ('job', 'winner:1:1:11111111', :t, :t)"), {"t": time.time()})

    assert store.claim("job", "loser:2:2:22222222", ttl=3600) == "winner:1:1:11111111"
    assert planted and store.claim_holder("job") == "winner:1:1:11111111"
    assert store.claim("next", "loser:2:2:22222222") is None   # the store's connections are usable after the abort


def test_a_dead_claim_is_taken_over_exactly_once(pg_url):
    store = RunStore(pg_url)
    assert store.claim("job", "far-host:123:1:deadbeef") is None
    time.sleep(1.2)                                       # its heartbeat is now older than a 1 s TTL
    owners = [f"taker{i}:{i}:1:{i:08d}" for i in range(6)]
    results = _together(6, lambda i: RunStore(pg_url).claim("job", owners[i], ttl=1.0))
    winners = [owners[i] for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert store.claims()[0][1] == winners[0]


def test_a_heartbeat_keeps_a_claim_alive(pg_url, monkeypatch):
    from bench.store import Heartbeat

    monkeypatch.setenv("BENCH_CLAIM_TTL", "1")
    store = RunStore(pg_url)
    owner = "far-host:9:9:beating1"
    store.claim("job", owner)
    with Heartbeat(store, "job", owner, interval=0.2):
        time.sleep(1.8)
        assert store.claim_holder("job") == owner
        assert store.claim("job", "other:1:1:cccccccc") == owner
    time.sleep(1.2)
    assert store.claim_holder("job") is None


# --------------------------------------------------------------------------------- errors

def test_server_errors_are_one_line_with_a_hint(postgres_server):
    from pg_server import free_port

    with pytest.raises(StoreError) as err:
        RunStore(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/bench")
    msg = str(err.value)
    assert "\n" not in msg and "reachable" in msg and "secret" not in msg
    with pytest.raises(StoreError) as err:
        RunStore(postgres_server.url("no_such_db"))
    assert "\n" not in str(err.value) and "createdb" in str(err.value)


# ------------------------------------------------------------------- two sweeps, one store

SWEEP_GRID = ["--methods", "early", "late", "--datasets", "wdbc", "--seeds", "0", "1", "2",
              "--preset", "tiny", "--set", "epochs=2", "--workers", "1", "--threads", "1"]
SWEEP_JOBS = 6
_REPORT = re.compile(r"sweep: (\d+) jobs planned, (\d+) already done, (\d+) run, (\d+) run by other workers")


def sweep_report(stderr: str) -> tuple[int, int, int, int]:
    """(planned, already done, run here, run by other workers) from a sweep's report line."""
    found = _REPORT.search(stderr)
    assert found, stderr[-2000:]
    return tuple(int(x) for x in found.groups())


def test_two_sweeps_share_one_postgres_store(pg_url, tmp_path):
    """Two `bench sweep` processes started together on one PostgreSQL store: every job is stored
    once, none is lost, each ran exactly once (the two reports' run counts add up to the jobs)."""
    cmds = [bench_cmd("sweep", *SWEEP_GRID, "--store", pg_url, "--runs-dir", str(tmp_path / f"w{i}"),
                      "--no-progress", "--no-leaderboard")
            for i in range(2)]
    outs = run_together(cmds, timeout=600)
    for out in outs:
        assert out.returncode == 0, out.stderr[-3000:]
    reports = [sweep_report(out.stderr) for out in outs]
    for planned, already, ran, elsewhere in reports:
        assert planned == SWEEP_JOBS and already + ran + elsewhere == SWEEP_JOBS, reports
    assert sum(r[2] for r in reports) == SWEEP_JOBS, reports
    print("sweep reports (planned, already done, run, run elsewhere):", reports)

    store = RunStore(pg_url)
    records = store.records()
    assert len(records) == SWEEP_JOBS and {r.status for r in records} == {"ok"}
    assert sorted((r.method, r.seed) for r in records) == sorted((m, s) for m in ("early", "late") for s in (0, 1, 2))
    assert len({r.key for r in records}) == SWEEP_JOBS and store.claims() == []
    assert all(not store.cases(r.key).empty for r in records)

    board = subprocess.run(bench_cmd("leaderboard", "--store", pg_url, "--format", "json"), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert board.returncode == 0, board.stderr
    assert "early" in board.stdout and "late" in board.stdout


def test_two_tuning_workers_share_one_study_and_store_on_postgres(pg_url, tmp_path):
    """Two `bench tune` processes started together on one PostgreSQL study and run store: the
    budget's slots are split between them, every slot runs once, none is lost."""
    import optuna

    trials = 4
    cmds = [bench_cmd("tune", "--method", "early", "--dataset", "wdbc", "--trials", str(trials), "--preset", "tiny",
                      "--set", "epochs=3", "--threads", "1", "--storage", pg_url, "--store", pg_url,
                      "--runs-dir", str(tmp_path / f"w{i}"), "--no-progress", "--json")
            for i in range(2)]
    outs = run_together(cmds, timeout=600)
    for out in outs:
        assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(out.stdout) for out in outs]
    print("tuning workers (ran here, held elsewhere):", [(r["ran_here"], r["held_elsewhere"]) for r in results])
    assert sum(r["ran_here"] for r in results) == trials, results
    assert results[0]["study"] == results[1]["study"]

    study = optuna.load_study(study_name=results[0]["study"], storage=normalize_url(pg_url))
    slotted = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("slot") is not None]
    assert sorted(t.user_attrs["slot"] for t in slotted) == list(range(trials)), "each slot exactly once"
    assert {t.state.name for t in slotted} <= {"COMPLETE", "PRUNED"}
    store = RunStore(pg_url)
    runs = store.records(purpose="trial")
    assert {r.key for r in runs} == {t.user_attrs["key"] for t in slotted}
    assert store.claims() == [] and store.records(purpose="eval") == []
