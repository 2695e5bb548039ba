"""Leaderboard (first cut): mean ± std over seeds per method / dataset / task / metric.

Standard deviation uses ddof = 1 (the sample standard deviation over seeds), stated in the
table caption; n is the number of seeds. Markdown tables are rendered with tabulate, one per
dataset, methods as rows and the headline test metrics as columns, the best mean per column in
bold. ``csv``/``json`` give the full long-form summary for machines.
"""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench.metrics import higher_is_better

HEADLINE = {
    "binary": ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"),
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"),
    "multilabel": ("micro_f1", "macro_f1", "mean_ap", "subset_accuracy"),
    "regression": ("mae", "rmse", "pearson_r"),
    "segmentation": ("dice", "hd95", "nsd", "iou"),  # per dataset: mean over organs of the per-case means
}
ALL_HEADLINE = tuple(dict.fromkeys(m for ms in HEADLINE.values() for m in ms))


def summarize(frame: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean, std (ddof 1) and n over seeds for each (dataset, task, metric, method)."""
    cols = ["dataset", "task", "metric", "method", "mean", "std", "n"]
    df = frame[frame["split"] == split]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(["dataset", "task", "metric", "method"], sort=True)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"), n="count").reset_index()
    return out[cols]


def _direction(metric: str) -> bool | None:
    """Higher-is-better, or None for descriptive numbers (e.g. mean expert weights): no bold, no arrow."""
    try:
        return higher_is_better(metric)
    except KeyError:
        return None


def _cell(mean: float, std: float, bold: bool) -> str:
    text = f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"
    return f"**{text}**" if bold else text


def to_markdown(summary: pd.DataFrame, metrics: tuple[str, ...] = ALL_HEADLINE) -> str:
    if summary.empty:
        return "No completed runs in the store yet: run `python -m bench sweep --suite quick` first."
    blocks = []
    for (dataset, task), part in summary.groupby(["dataset", "task"], sort=True):
        present = set(part["metric"])
        shown = sorted(present) if task == "interpretation" else [m for m in metrics if m in present]
        table = part[part["metric"].isin(shown)]
        n = int(table["n"].max()) if len(table) else 0
        best = {m: (table[table.metric == m]["mean"].max() if _direction(m) else table[table.metric == m]["mean"].min())
                for m in shown if _direction(m) is not None}
        rows = []
        for method, mpart in table.groupby("method", sort=True):
            by = mpart.set_index("metric")
            rows.append([method] + [_cell(by.at[m, "mean"], by.at[m, "std"], m in best and by.at[m, "mean"] == best[m])
                                    if m in by.index else "" for m in shown])
        arrows = {True: " ↑", False: " ↓", None: ""}
        head = [f"{m}{arrows[_direction(m)]}" for m in shown]
        blocks.append(f"### {dataset} — task `{task}` (test, mean ± std over {n} seeds, ddof=1; best in bold)\n\n"
                      + tabulate(rows, headers=["method", *head], tablefmt="github"))
    return "\n\n".join(blocks)


def render(summary: pd.DataFrame, fmt: str) -> str:
    if fmt == "md":
        return to_markdown(summary)
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return summary.to_json(orient="records")
    raise ValueError(f"unknown leaderboard format {fmt!r}; choose one of: md, csv, json")
