"""``bench perf leaderboard``: how long ``bench leaderboard`` takes over a large store.

It writes a synthetic store of ``runs`` records shaped like real ones (a 40-epoch history, a
binary task's metrics with per-class values, cost, environment, per-case rows for some runs),
spread over 8 datasets, 10 methods and a few configurations, then times the real command
(``python -m bench leaderboard --store URL``, a fresh interpreter each time, so imports count)
``reps`` times, plus the same command on an empty store. The shared machine is noisy, so it
reports the minimum, median and maximum of the repetitions, the ratio to the empty store, and the
peak resident memory of the leaderboard processes.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .catalogue import build_catalogue
from .record import RunRecord
from .store import RunStore, default_url

DATASETS = ("wdbc", "digits-halves", "diabetes-views", "synthetic-pid:unique-m1", "synthetic-pid:redundant",
            "synthetic-pid:synergy", "synthetic-pid:mixed", "synthetic-mvmt")
METHODS = ("early", "late", "intermediate", "attention", "moe", "soft-moe", "i2moe", "single:a", "single:b",
           "single:c")


def synthetic_records(n: int, seed: int = 0) -> list[tuple[RunRecord, pd.DataFrame | None]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dataset, method = DATASETS[i % len(DATASETS)], METHODS[(i // len(DATASETS)) % len(METHODS)]
        config = (i // (len(DATASETS) * len(METHODS))) % 5
        seed_i = i // (len(DATASETS) * len(METHODS) * 5)
        acc = float(rng.uniform(0.6, 0.95))
        task = {"accuracy": acc, "balanced_accuracy": acc - 0.01, "macro_f1": acc - 0.02, "auroc": acc + 0.03,
                "auprc": acc + 0.02, "ece": float(rng.uniform(0, 0.1)), "nll": float(rng.uniform(0.2, 0.6)),
                "auroc_benign": acc, "auroc_malignant": acc, "auprc_benign": acc, "auprc_malignant": acc}
        metrics = {"val": {"label": dict(task)}, "test": {"label": task}}
        fields = {"epochs": 20 + config} if config else {}
        rec = RunRecord(key=f"k{i:08d}", method=method, dataset=dataset, seed=seed_i, split_seed=0, preset="small",
                        code_version="0.1.0+synthetic", config={"train": {"epochs": 20 + config}}, status="ok",
                        metrics=metrics, cost={"params_total": 10000, "train_time_s": 3.0},
                        env={"torch": "x", "threads": 1},
                        summary={"history": [{"epoch": e, "train_loss": 0.5, "val_loss": 0.4, "val_score": 0.4}
                                             for e in range(40)]},
                        created_at=f"2026-01-01T00:00:{i % 60:02d}", config_id=f"c{dataset}{method}{config}",
                        request_id=f"r{i:08d}", label=method, label_fields=fields,
                        catalogue=build_catalogue({"label": "binary"}, metrics))
        cases = pd.DataFrame({"case_id": [f"c{j}" for j in range(100)], "correct": rng.integers(0, 2, 100)}) \
            if i % 10 == 0 else None
        out.append((rec, cases))
    return out


#: runs ``python -m bench ARGS`` and, at exit, prints the process's peak resident memory (VmHWM,
#: KiB; per address space, so the parent's pages before exec do not count) as the last stderr line
_RUN_AND_MEASURE = ("import atexit, runpy, sys\n"
                    "def _hwm():\n"
                    "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
                    "    print('VmHWM', line.split()[1], file=sys.stderr)\n"
                    "atexit.register(_hwm)\n"
                    "sys.argv = ['bench', *sys.argv[1:]]\n"
                    "runpy.run_module('bench', run_name='__main__')\n")


def _time_command(args: list[str], reps: int) -> tuple[list[float], float]:
    """Wall times of ``reps`` runs of ``python -m bench ARGS`` and their peak memory (MiB, or NaN)."""
    times, peak = [], float("nan")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    measure = Path("/proc/self/status").exists()
    for _ in range(reps):
        cmd = [sys.executable, "-c", _RUN_AND_MEASURE, *args] if measure else [sys.executable, "-m", "bench", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"bench {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
        last = proc.stderr.strip().splitlines()[-1:] if measure else []
        if last and last[0].startswith("VmHWM"):
            kib = float(last[0].split()[1])
            peak = kib / 1024 if peak != peak else max(peak, kib / 1024)
    return times, peak


def run_leaderboard_perf(runs: int = 10_000, reps: int = 5, store_dir: str | None = None,
                         progress=None) -> dict:
    """Figures for ``bench leaderboard`` over ``runs`` synthetic runs and over an empty store."""
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        root = Path(store_dir or tmp)
        big, empty = default_url(root / "big"), default_url(root / "empty")
        RunStore(empty)
        t0 = time.perf_counter()
        store = RunStore(big)
        if store.count() != runs:
            store.put_many(synthetic_records(runs))
        write_s = time.perf_counter() - t0
        if progress:
            progress("store written")
        full, peak_rss_mb = _time_command(["leaderboard", "--store", big], reps)
        if progress:
            progress("full store timed")
        none, _ = _time_command(["leaderboard", "--store", empty], reps)
        db_bytes = (root / "big" / "runs.db").stat().st_size
    return {"runs": runs, "reps": reps, "write_s": write_s, "store_mb": db_bytes / 2 ** 20, "peak_rss_mb": peak_rss_mb,
            "leaderboard_s": {"min": min(full), "median": statistics.median(full), "max": max(full)},
            "empty_store_s": {"min": min(none), "median": statistics.median(none), "max": max(none)},
            "ratio_full_over_empty": statistics.median(full) / statistics.median(none)}
