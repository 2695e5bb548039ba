"""Read the run store into tidy pandas frames (results/ never trains anything).

``runs_frame``: one row per (run, split, task, metric) with method, dataset, seed, value. The
``method`` column names a configuration, not just a class: hparams set away from the method's
preset defaults (recorded by the runner as ``summary["hparam_overrides"]``) are appended, e.g.
``m4oe[routing=hard]``, so differently configured runs are never averaged together.
``cases_frame``: the stored per-case test predictions of the selected runs, for paired tests.
"""
from __future__ import annotations

import pandas as pd

from bench.store import RunStore

RUN_COLUMNS = ["key", "method", "dataset", "seed", "split_seed", "preset", "split", "task", "metric", "value"]


def method_label(rec) -> str:
    """``method[k=v,...]`` with the run's non-default hparams, or the plain method name."""
    over = (rec.summary or {}).get("hparam_overrides") or {}
    return f"{rec.method}[{','.join(f'{k}={v}' for k, v in sorted(over.items()))}]" if over else rec.method


def runs_frame(store: RunStore, include_cost: bool = False) -> pd.DataFrame:
    rows = []
    for rec in store.records(status="ok"):
        base = {"key": rec.key, "method": method_label(rec), "dataset": rec.dataset, "seed": rec.seed,
                "split_seed": rec.split_seed, "preset": rec.preset}
        for split, tasks in rec.metrics.items():
            for task, metrics in tasks.items():
                for metric, value in metrics.items():
                    rows.append({**base, "split": split, "task": task, "metric": metric, "value": float(value)})
        if include_cost:
            for metric, value in rec.cost.items():
                rows.append({**base, "split": "cost", "task": "-", "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def cases_frame(store: RunStore, keys: list[str]) -> pd.DataFrame:
    frames = []
    for key in keys:
        rec = store.get(key)
        df = store.cases(key)
        if rec is None or df.empty:
            continue
        frames.append(df.assign(key=key, method=method_label(rec), dataset=rec.dataset, seed=rec.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
