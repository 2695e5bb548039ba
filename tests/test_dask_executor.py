"""``bench sweep --executor dask``: the same jobs, keys, claims and results as the local pool.

The slow quick-suite comparison (dask LocalCluster vs the local pool, leaderboard CSV) lives in
tests/test_quick_suite.py, which already runs the quick suite locally."""
from __future__ import annotations

import builtins
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ctrl_c import interrupt_after_first_run

from bench.cli import main
from bench.store import RunStore, default_url
from bench.store.claims import Owner, _start_time
from bench.sweep import expand, run_sweep

ROOT = Path(__file__).resolve().parents[1]
needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask and distributed are not installed (pip install 'bench[dask]')")
GRID = ["--methods", "early", "late", "--datasets", "wdbc", "--seeds", "0", "1", "--set", "epochs=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _leaderboard_csv(runs: Path) -> str:
    out = _bench("leaderboard", "--format", "csv", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    return out.stdout


def assert_same_leaderboard(a: str, b: str) -> None:
    """Two leaderboard CSVs of the same runs are byte-identical, whatever order the runs were
    stored in: ``load_results`` orders runs by dataset, configuration and seed before summing, so
    which worker finished first changes neither the row order nor a mean's or std's last bit."""
    assert a == b


@pytest.mark.slow  # about a minute of subprocess runs; CI runs the slow tests too
@needs_dask
def test_a_dask_sweep_gives_the_local_pools_results_and_reruns_nothing(tmp_path):
    common = [*GRID, "--workers", "2", "--no-progress", "--no-leaderboard"]
    dask_run = _bench("sweep", *common, "--executor", "dask", "--runs-dir", str(tmp_path / "dask"))
    assert dask_run.returncode == 0, dask_run.stderr
    assert "4 jobs planned, 0 already done, 4 run, 0 run by other workers, 0 failed" in dask_run.stderr
    assert dask_run.stderr.strip().count("\n") == 0, dask_run.stderr   # one summary line, no dask log noise
    local = _bench("sweep", *common, "--executor", "local", "--runs-dir", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr

    # same keys (threads = cores // workers in both), same records, same leaderboard bytes
    a, b = RunStore(default_url(tmp_path / "dask")), RunStore(default_url(tmp_path / "local"))
    assert a.done_keys() == b.done_keys() and len(a.done_keys()) == 4
    for rec in a.records():
        other = b.get(rec.key)
        assert rec.metrics == other.metrics and rec.summary["history"] == other.summary["history"]
        assert rec.env["threads"] == other.env["threads"] == rec.config["threads"]
    assert a.claims() == []
    table = _leaderboard_csv(tmp_path / "dask")
    assert len(table.strip().splitlines()) == 11   # header + 2 configurations x 5 headline metrics
    assert_same_leaderboard(table, _leaderboard_csv(tmp_path / "local"))

    rerun = _bench("sweep", *common, "--executor", "dask", "--runs-dir", str(tmp_path / "dask"))
    assert rerun.returncode == 0 and "4 jobs planned, 4 already done, 0 run" in rerun.stderr, rerun.stderr


@needs_dask
def test_a_job_held_by_a_live_worker_waits_then_runs_on_the_cluster(tmp_path):
    """JobBusy from a dask task goes through the sweep's waiting list, and the job is resubmitted
    once the holder is gone (the claim logic is the local pool's)."""
    store = RunStore(default_url(tmp_path))
    jobs = expand(["early"], ["wdbc"], [0, 1], preset="tiny", train={"epochs": 2, "patience": 0}, threads=1)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(8)"])
    threading.Thread(target=holder.wait, daemon=True).start()   # reaped at exit: a zombie would look alive
    try:
        owner = Owner(Owner.current().host, holder.pid, _start_time(holder.pid), "deadbeef")
        assert store.claim(jobs[0].key(), str(owner)) is None
        report = run_sweep(jobs, store, tmp_path, progress=False, workers=2, executor="dask")
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == 0, "the holder was still alive when the sweep ended"
    assert (report.ran, report.ran_elsewhere, store.count()) == (2, 0, 2)
    assert store.claims() == []


@pytest.mark.slow  # about a minute of subprocess runs; CI runs the slow tests too
@needs_dask
def test_scheduler_address_and_a_sqlite_store_warns_and_runs(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = _bench("sweep", "--methods", "early", "--datasets", "wdbc", "--seeds", "0", "--set", "epochs=2",
                     "--executor", "dask", "--scheduler", cluster.scheduler_address, "--runs-dir", str(tmp_path),
                     "--no-progress", "--no-leaderboard")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("warning: ") and "postgresql://" in lines[0]
    assert "1 jobs planned, 0 already done, 1 run" in lines[1]
    assert RunStore(default_url(tmp_path)).count() == 1


def test_without_dask_the_error_is_one_line(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    code = main(["sweep", *GRID, "--executor", "dask", "--runs-dir", str(tmp_path), "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err == "error: --executor dask needs dask and distributed: pip install 'bench[dask]'\n"
    assert not (tmp_path / "runs.db").exists()


def test_scheduler_needs_the_dask_executor(tmp_path, capsys):
    assert main(["sweep", *GRID, "--scheduler", "tcp://127.0.0.1:8786", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --scheduler needs --executor dask\n"


@needs_dask
@pytest.mark.slow
def test_ctrl_c_on_a_dask_sweep_closes_the_cluster_and_is_resumable(tmp_path):
    args = ["sweep", "--methods", "early", "intermediate", "--datasets", "digits-halves", "--seeds", "0", "1", "2",
            "--preset", "tiny", "--set", "epochs=15", "--set", "patience=0", "--workers", "2", "--executor", "dask",
            "--runs-dir", str(tmp_path), "--no-progress", "--no-leaderboard"]
    proc, err = interrupt_after_first_run(args, tmp_path, _env(), wait_s=300)
    store = RunStore(default_url(tmp_path))
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted: finished jobs are stored; rerun the same command to resume"]
    time.sleep(1)
    left = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    assert all(line.split()[1].startswith("Z") for line in left.splitlines()), f"processes left: {left}"
    done = store.count()
    assert 1 <= done < 6
    plan = _bench(*args, "--dry-run", "--json")
    assert plan.returncode == 0 and plan.stdout.count('"running elsewhere"') == 0, plan.stdout   # no claim left
    rerun = _bench(*args)
    assert rerun.returncode == 0 and f"6 jobs planned, {done} already done, {6 - done} run" in rerun.stderr

