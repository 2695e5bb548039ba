"""``bench perf leaderboard``: how long ``bench leaderboard`` takes over a large store.

It writes a synthetic store of ``runs`` records shaped like real ones (a 40-epoch history, a
binary task's metrics with per-class values, cost, environment, and every run's per-case table of
200 test cases, from which its metrics are computed), spread over 8 datasets, 10 methods and a few
configurations, then times the real command (with its statistics: the per-case tables are read
and every column's pairs are tested)
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


#: test cases per dataset in the synthetic store (the embedded datasets have 89-675)
CASES = 200


def _case_table(y: np.ndarray, p1: np.ndarray, ids: list[str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """A binary task's per-case table as ``bench.metrics`` writes it, and the metrics it gives."""
    from results.influence import balanced_accuracy, macro_f1, weighted_ece

    pred = (p1 >= 0.5).astype(np.int64)
    correct = (pred == y).astype(np.float64)
    probs = np.c_[1 - p1, p1]
    loss = -np.log(np.where(y == 1, p1, 1 - p1))
    ranks = pd.Series(p1).rank().to_numpy()
    n1 = int(y.sum())
    auroc = float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))
    metrics = {"accuracy": float(correct.mean()), "balanced_accuracy": balanced_accuracy(y, pred)[0],
               "macro_f1": macro_f1(y, pred)[0], "auroc": auroc, "auprc": auroc,
               "ece": float(weighted_ece(np.ones((1, len(y))), probs.max(axis=1), correct)[0]),
               "nll": float(loss.mean()), "auroc_benign": auroc, "auroc_malignant": auroc,
               "auprc_benign": auroc, "auprc_malignant": auroc}
    table = pd.DataFrame({"case_id": ids, "target": y.astype(np.float64), "pred": pred.astype(np.float64),
                          "correct": correct, "loss": loss, "abs_error": np.nan, "probs": list(probs),
                          "task": "label"})
    return table, metrics


def synthetic_records(n: int, seed: int = 0) -> list[tuple[RunRecord, pd.DataFrame | None]]:
    """``n`` runs shaped like real ones: 8 datasets x 10 methods x 5 configurations, seeds
    filling up the rest, each with a per-case table of ``CASES`` test cases (targets shared by a
    dataset's runs; each configuration its own skill, each seed its own shift and per-case noise)
    and the metrics that table gives."""
    rng = np.random.default_rng(seed)
    truth = {d: (rng.random(CASES) < 0.4).astype(np.int64) for d in DATASETS}
    difficulty = {d: rng.normal(1.6, 1.2, CASES) for d in DATASETS}
    ids = [f"case{j:04d}" for j in range(CASES)]
    skill = {}
    out = []
    for i in range(n):
        dataset, method = DATASETS[i % len(DATASETS)], METHODS[(i // len(DATASETS)) % len(METHODS)]
        config = (i // (len(DATASETS) * len(METHODS))) % 5
        seed_i = i // (len(DATASETS) * len(METHODS) * 5)
        k = skill.setdefault((dataset, method, config), rng.normal(0.0, 0.4))
        y = truth[dataset]
        margin = difficulty[dataset] + k + rng.normal(0, 0.3) + rng.normal(0, 0.8, CASES)
        p1 = 1 / (1 + np.exp(-np.where(y == 1, margin, -margin)))
        cases, task = _case_table(y, np.clip(p1, 1e-6, 1 - 1e-6), ids)
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
