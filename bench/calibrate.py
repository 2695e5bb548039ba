"""``bench calibrate``: measure the false-positive rate, coverage and power of the leaderboard's and
``bench verify``'s tests on real runs of one configuration (results/calibration.py does the
statistics; this module finds or trains the runs and reads their per-case tables).

The runs are the jobs ``bench sweep --methods M --datasets D --seeds 0..N-1`` would build, with
the same keys, so a calibration reuses a sweep's runs and vice versa.
"""
from __future__ import annotations

import numpy as np

from .config import ConfigError

#: tasks whose numbers are descriptive (never tested, never calibrated)
_UNTESTED = ("interpretation", "all")


def calibration_jobs(method: str, dataset: str, seeds: int, preset: str, sets: dict, split_seed: int, device: str,
                     data_root: str | None, threads: int | None, execution=None):
    from .sweep import expand

    if seeds < 4:
        raise ConfigError(f"--seeds {seeds}: a calibration needs at least 4 seeds (10 or more for useful rates)")
    if method == "single":
        raise ConfigError("calibrate one configuration: name a concrete method, e.g. single:left, not single")
    return expand([method], [dataset], list(range(seeds)), preset=preset, sets=sets, split_seed=split_seed,
                  device=device, data_root=data_root, threads=threads, execution=execution)


def load_runs(store, keys: list[str], metric_names: list[str] | None = None):
    """(CalibrationRun per key, [(task, metric, higher)]) from the store: the test split's stored
    values and per-case rows, for the catalogue's headline metrics of every tested task (or
    ``metric_names``)."""
    from results.calibration import CalibrationRun

    records = [store.get(k) for k in keys]
    missing = [k for k, r in zip(keys, records) if r is None or r.status != "ok"]
    if missing:
        raise ConfigError(f"{len(missing)} of the {len(keys)} runs have no result (e.g. {missing[0]}); "
                          "see `bench sweep --dry-run` with the same options")
    tables = store.case_columns_many(keys)
    if len(tables) != len(keys):
        raise ConfigError("some runs have no per-case table; calibration needs them (rerun those jobs)")
    catalogue = records[0].catalogue or {}
    tasks = [t for t in records[0].metrics.get("test", {}) if t not in _UNTESTED]
    metrics: list[tuple[str, str, bool]] = []
    for task in tasks:
        names = metric_names or (catalogue.get("tasks", {}).get(task, {}).get("headline") or
                                 list(records[0].metrics["test"][task]))
        for m in names:
            higher = (catalogue.get("higher") or {}).get(m)
            if higher is not None and m in records[0].metrics["test"][task]:
                metrics.append((task, m, bool(higher)))
    if not metrics:
        raise ConfigError("no tested metric in these runs" + (f" among {', '.join(metric_names)}" if metric_names else ""))
    runs = []
    for key, rec in zip(keys, records):
        table = tables[key]
        rows = {}
        for task in tasks:
            if "task" in table:
                keep = (table["task"] == task) | _isna(table["task"])
                rows[task] = {c: v[keep] for c, v in table.items()}
            else:
                rows[task] = dict(table)
            probs = rows[task].get("probs")
            if probs is not None and probs.dtype == object and len({len(p) for p in probs}) == 1:
                rows[task]["probs"] = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
        values = {(t, m): float(rec.metrics["test"][t][m]) for t, m, _ in metrics}
        runs.append(CalibrationRun(rec.seed, rows, values))
    return runs, metrics


def _isna(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(values)
