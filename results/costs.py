"""Cost per configuration (parameters, training time, FLOPs) from the run records' ``cost`` dicts.

``cost_frame(store)``: one row per ``config_id`` with the mean over its finished runs of
``params_total``, ``train_time_s`` and ``flops_per_sample`` (NaN where no run recorded it), for
the cost columns of the LaTeX tables and the metric-vs-cost scatter.
"""
from __future__ import annotations

import pandas as pd

from bench.store import RESULT_PURPOSES, RunStore

COST_COLUMNS = ["params_total", "train_time_s", "flops_per_sample"]


def cost_frame(store: RunStore, config_ids=None, purposes: tuple[str, ...] = RESULT_PURPOSES) -> pd.DataFrame:
    """Mean cost over the finished runs of each configuration (``config_ids``: only these)."""
    wanted = set(config_ids) if config_ids is not None else None
    rows = []
    for purpose in purposes:
        for rec in store.records(status="ok", purpose=purpose):
            config = rec.config_id or rec.key
            if wanted is not None and config not in wanted:
                continue
            cost = rec.cost or {}
            rows.append([config, rec.dataset, rec.method] + [_float(cost.get(c)) for c in COST_COLUMNS])
    frame = pd.DataFrame(rows, columns=["config_id", "dataset", "method", *COST_COLUMNS])
    if frame.empty:
        return frame
    return frame.groupby(["config_id", "dataset", "method"], sort=True)[COST_COLUMNS].mean().reset_index()


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
