"""Leaderboard: mean ± std over seeds per configuration / dataset / task / metric.

Rows are configurations (``config_id``: everything but the seed), never bare method names, so two
runs that differ in any setting are never averaged together, and ``n`` counts distinct seeds.
Each row is labelled by its method and the settings that tell it apart from the other rows of its
table (``early[epochs=2]``, ``attention@tiny``); settings shared by every row are stated once
under the table. Standard deviation uses ddof = 1 (the sample standard deviation over seeds).
Markdown is rendered with tabulate, one table per dataset and task, the best mean per column in
bold; every label is escaped, so no user string can change the table. ``csv``/``json`` give the
full long-form summary for machines.
"""
from __future__ import annotations

import re

import pandas as pd
from tabulate import tabulate

from .frame import Results

SUMMARY_COLUMNS = ["dataset", "task", "metric", "config_id", "label", "method", "mean", "std", "n", "higher", "budget"]
#: label field of a tuned configuration: its study's trial budget (bench.config.TUNED_FIELD)
TUNED_FIELD = "tuned_trials"
#: budget of a configuration that was not tuned
DEFAULTS_BUDGET = "defaults"


def budget_text(fields: dict) -> str:
    """A configuration's tuning budget: ``8 trials`` when tuned, else ``defaults``."""
    trials = (fields or {}).get(TUNED_FIELD)
    return f"{trials} trials" if trials is not None else DEFAULTS_BUDGET
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def md_escape(text: str) -> str:
    """Markdown-escape a user string (labels, hparam values) so it renders literally in a table cell."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def display_labels(configs: pd.DataFrame) -> tuple[dict[str, str], dict[str, object]]:
    """(config_id -> label, settings shared by all): each label is the method plus the label
    fields that are not shared by every configuration given; configurations still alike (they
    differ only in code, data or threads) get their code version, else a config id prefix."""
    fields = {r.config_id: {k: v for k, v in (r.label_fields or {}).items() if k != TUNED_FIELD}
              for r in configs.itertuples()}
    tuned = {r.config_id for r in configs.itertuples() if TUNED_FIELD in (r.label_fields or {})}
    keys = sorted({k for f in fields.values() for k in f})
    common = {}
    for k in keys:
        values = [f.get(k, _MISSING) for f in fields.values()]
        if values[0] is not _MISSING and all(v == values[0] for v in values):
            common[k] = values[0]
    labels = {}
    for r in configs.itertuples():
        own = {k: v for k, v in fields[r.config_id].items() if k not in common}
        preset = own.pop("preset", None)
        text = r.method + (f"@{preset}" if preset else "")
        if own:
            text += "[" + ",".join(f"{k}={_fmt(v)}" for k, v in sorted(own.items())) + "]"
        labels[r.config_id] = text + (" (tuned)" if r.config_id in tuned else "")
    by_text: dict[str, list] = {}
    for r in configs.itertuples():
        by_text.setdefault(labels[r.config_id], []).append(r)
    for text, group in by_text.items():
        if len(group) < 2:
            continue
        codes = {r.code_version for r in group}
        for r in group:
            suffix = f"code {r.code_version}" if len(codes) == len(group) else f"config {r.config_id[:8]}"
            labels[r.config_id] = f"{text} ({suffix})"
    return labels, common


_MISSING = object()


def summarize(results: Results, split: str = "test") -> tuple[pd.DataFrame, dict[str, dict]]:
    """Mean, std (ddof 1) and n distinct seeds per (dataset, task, metric, configuration); and
    per dataset the settings shared by all its configurations."""
    frame = results.frame
    df = frame[frame["split"] == split]
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), {}
    g = df.groupby(["dataset", "task", "metric", "config_id"], sort=False)   # keeps the catalogue's metric order
    out = g["value"].agg(["mean", "std"]).reset_index()   # pandas' std is the sample std (ddof 1); NaN for one seed
    out["n"] = g["seed"].nunique().to_numpy()
    first = g[["method", "higher"]].first().reset_index(drop=True)
    out["method"], out["higher"] = first["method"].to_numpy(), first["higher"].to_numpy()
    budgets = {r.config_id: budget_text(r.label_fields) for r in results.configs.itertuples()}
    out["budget"] = [budgets.get(c, DEFAULTS_BUDGET) for c in out["config_id"]]
    labels, commons = {}, {}
    for dataset, part in results.configs.groupby("dataset", sort=True):
        shown = part[part["config_id"].isin(set(out.loc[out["dataset"] == dataset, "config_id"]))]
        lab, common = display_labels(shown)
        labels.update({(dataset, c): t for c, t in lab.items()})
        commons[dataset] = common
    out["label"] = [labels.get((d, c), c) for d, c in zip(out["dataset"], out["config_id"])]
    out = out.sort_values(["dataset", "task"], kind="stable").reset_index(drop=True)
    return out[SUMMARY_COLUMNS], commons


def _cell(mean: float, std: float, bold: bool) -> str:
    text = f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"
    return f"**{text}**" if bold else text


def to_markdown(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test") -> str:
    if summary.empty:
        return "No completed runs in the store yet: run `python -m bench sweep --suite quick` first."
    tables: dict[tuple[str, str], dict] = {}
    for r in summary.itertuples(index=False):   # plain dicts: a pandas lookup per cell is slow on big stores
        t = tables.setdefault((r.dataset, r.task), {"metrics": {}, "rows": {}})
        t["metrics"].setdefault(r.metric, None if pd.isna(r.higher) else bool(r.higher))
        t["rows"].setdefault((r.label, r.config_id), {})[r.metric] = (r.mean, r.std, int(r.n))
        t.setdefault("budgets", {})[(r.label, r.config_id)] = r.budget
    blocks = []
    for (dataset, task), t in sorted(tables.items()):
        shown, higher = list(t["metrics"]), t["metrics"]
        best = {}
        for m in shown:
            means = [cells[m][0] for cells in t["rows"].values() if m in cells and cells[m][0] == cells[m][0]]
            if higher[m] is not None and means:
                best[m] = max(means) if higher[m] else min(means)
        rows, ns = [], []
        budgets = t["budgets"]
        with_budget = any(b != DEFAULTS_BUDGET for b in budgets.values())
        for (label, config), cells in sorted(t["rows"].items()):
            n = max(c[2] for c in cells.values())
            ns.append(n)
            rows.append([md_escape(label), n] + ([budgets[(label, config)]] if with_budget else [])
                        + [_cell(cells[m][0], cells[m][1], m in best and cells[m][0] == best[m])
                           if m in cells else "" for m in shown])
        arrows = {True: " ↑", False: " ↓"}
        head = [f"{md_escape(m)}{arrows.get(higher.get(m), '')}" for m in shown]
        n_min, n_max = min(ns), max(ns)
        seeds = f"{n_max} seed{'s' if n_max > 1 else ''}" if n_min == n_max else f"{n_min}-{n_max} seeds"
        text = (f"### {md_escape(dataset)} — task `{task.replace('`', '')}` ({split}, mean ± std over {seeds}, ddof=1; "
                "best in bold; n = distinct seeds)\n\n"
                + tabulate(rows, headers=["configuration", "n", *(["budget"] if with_budget else []), *head],
                           tablefmt="github", disable_numparse=True))
        if with_budget and len(set(budgets.values())) > 1:
            by_budget: dict[str, list[str]] = {}
            for (label, config), budget in sorted(budgets.items()):
                by_budget.setdefault(budget, []).append(label)
            text += ("\n\n**Unequal tuning budgets** (not a fair comparison): " + "; ".join(
                f"{md_escape(b)}: {', '.join(md_escape(x) for x in labels)}" for b, labels in sorted(by_budget.items())))
        common = (commons or {}).get(dataset) or {}
        if common:
            text += "\n\nShared by every row: " + ", ".join(md_escape(f"{k}={_fmt(v)}") for k, v in sorted(common.items()))
        blocks.append(text)
    return "\n\n".join(blocks)


def render(summary: pd.DataFrame, fmt: str, commons: dict[str, dict] | None = None, split: str = "test") -> str:
    if fmt == "md":
        return to_markdown(summary, commons, split)
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return summary.to_json(orient="records")
    raise ValueError(f"unknown leaderboard format {fmt!r}; choose one of: md, csv, json")


def leaderboard(results: Results, fmt: str = "md", split: str = "test") -> str:
    """The rendered leaderboard of ``results`` (see :func:`summarize`)."""
    summary, commons = summarize(results, split)
    return render(summary, fmt, commons, split)
