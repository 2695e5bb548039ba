"""Robustness tables: each configuration's test metric intact, with each modality removed and with
each modality under Gaussian noise (the extra evaluation splits ``test[-m]`` /
``test[noise:m@s]`` that every multimodal run stores; docs/results.md "Robustness").

``robustness_summary(results)`` gives one row per (dataset, task, configuration, condition):
mean, std (ddof 1) over seeds, n and the drop from intact (``delta``, computed per seed and then
averaged, so it is paired). ``to_markdown`` renders one table per (dataset, task): configurations
× {intact, −m1, −m2, …, m1~0.5, …}, ``to_text`` the same tables as plain text. The metric is the
task's primary one (accuracy, MAE, …) unless ``metric`` names another. No torch here: the store
is read, never a model.
"""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench.robustness import parse_split

from .frame import Results
from .leaderboard import MARKDOWN, PLAIN, STYLES, TextStyle, display_labels

INTACT = "intact"
COLUMNS = ["dataset", "task", "metric", "higher", "config_id", "label", "method", "condition", "modality", "level",
           "mean", "std", "n", "delta", "delta_std"]


def _condition(split: str) -> tuple[str, str | None, float | None] | None:
    """(column name, modality, noise level) of a split; None for a split that is not a test condition.
    Removed modalities have level None; intact is (``intact``, None, 0.0)."""
    if split == "test":
        return INTACT, None, 0.0
    cond = parse_split(split)
    if cond is None:
        return None
    return cond.column, cond.modality, cond.noise


def has_robustness(results: Results) -> bool:
    return bool(results.frame["split"].map(lambda s: parse_split(s) is not None).any()) if len(results.frame) else False


def robustness_summary(results: Results, metric: list[str] | None = None) -> pd.DataFrame:
    """Rows per (dataset, task, configuration, condition) for the tasks' primary metric (or the
    ``metric`` names given); only configurations that have robustness splits are kept."""
    f = results.frame
    if f.empty:
        return pd.DataFrame(columns=COLUMNS)
    conds = {s: _condition(s) for s in f["split"].unique()}
    f = f[f["split"].map(lambda s: conds[s] is not None)]
    if metric:
        f = f[f["metric"].isin(metric)]
    else:
        wanted = f.apply(lambda r: results.primary.get((r["dataset"], r["task"])) == r["metric"], axis=1) \
            if len(f) else pd.Series([], dtype=bool)
        f = f[wanted]
    if f.empty:
        return pd.DataFrame(columns=COLUMNS)
    robust = set(f.loc[f["split"] != "test", "config_id"])
    f = f[f["config_id"].isin(robust)].copy()
    if f.empty:
        return pd.DataFrame(columns=COLUMNS)
    f["condition"] = f["split"].map(lambda s: conds[s][0])
    f["modality"] = f["split"].map(lambda s: conds[s][1])
    f["level"] = f["split"].map(lambda s: conds[s][2])
    intact = f[f["condition"] == INTACT].set_index(["key", "task", "metric"])["value"]
    f["delta"] = f["value"].to_numpy() - intact.reindex(list(zip(f["key"], f["task"], f["metric"]))).to_numpy()
    g = f.groupby(["dataset", "task", "metric", "config_id", "condition"], sort=False, dropna=False)
    out = g.agg(mean=("value", "mean"), std=("value", "std"), n=("seed", "nunique"), delta=("delta", "mean"),
                delta_std=("delta", "std"), higher=("higher", "first"), method=("method", "first"),
                modality=("modality", "first"), level=("level", "first")).reset_index()
    labels: dict[tuple[str, str], str] = {}
    for dataset, part in results.configs.groupby("dataset", sort=True):
        lab, _ = display_labels(part[part["config_id"].isin(robust)])
        labels.update({(dataset, c): t for c, t in lab.items()})
    out["label"] = [labels.get((d, c), c) for d, c in zip(out["dataset"], out["config_id"])]
    # columns in reading order: intact, every removal, then every modality's noise levels
    out["_kind"] = [0 if c == INTACT else (1 if pd.isna(lv) else 2) for c, lv in zip(out["condition"], out["level"])]
    out["_modality"], out["_level"] = out["modality"].fillna(""), out["level"].fillna(0.0)
    out = out.sort_values(["dataset", "task", "label", "_kind", "_modality", "_level"], kind="stable")
    return out.reset_index(drop=True)[COLUMNS]


def _cell(mean: float, std: float) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std == std else "")


def to_markdown(summary: pd.DataFrame, missing_paths: dict[str, str] | None = None) -> str:
    """One Markdown table per (dataset, task): configurations × conditions, mean ± std over seeds."""
    return to_tables(summary, missing_paths, MARKDOWN)


def to_text(summary: pd.DataFrame, missing_paths: dict[str, str] | None = None) -> str:
    """The tables of :func:`to_markdown` as plain text for a terminal (no escapes, no markup)."""
    return to_tables(summary, missing_paths, PLAIN)


def to_tables(summary: pd.DataFrame, missing_paths: dict[str, str] | None = None,
              style: TextStyle = MARKDOWN) -> str:
    """One table per (dataset, task) in ``style`` (results.leaderboard.MARKDOWN or PLAIN)."""
    if summary.empty:
        command = "python -m bench sweep --suite quick"
        run = f"`{command}`" if style.name == "md" else f"'{command}'"
        return ("No robustness results: they are stored by runs of multimodal classification/regression "
                f"datasets (run {run} first).")
    esc = style.esc
    blocks = []
    for (dataset, task, metric), part in summary.groupby(["dataset", "task", "metric"], sort=True):
        columns = list(dict.fromkeys(part["condition"]))
        rows = []
        for label, rows_of in part.groupby("label", sort=True):
            cells = {r.condition: _cell(r.mean, r.std) for r in rows_of.itertuples()}
            rows.append([esc(label), int(rows_of["n"].max())] + [cells.get(c, "") for c in columns])
        higher = part["higher"].iloc[0]
        arrow = "" if pd.isna(higher) else (" ↑" if higher else " ↓")
        n_max = int(part["n"].max())
        text = (f"{style.heading}{esc(dataset)} — task {style.code(task)}: {esc(metric)}{arrow} under "
                f"missing and noisy modalities (test, mean ± std over {n_max} seed{'s' if n_max > 1 else ''})\n\n"
                + tabulate(rows, headers=["configuration", "n", *[esc(c) for c in columns]],
                           tablefmt=style.tablefmt, disable_numparse=True))
        text += ("\n\n−m: modality m removed for every test sample (the method's own missing-modality path); "
                 "m~s: Gaussian noise of s × m's training-split std added to m.")
        if missing_paths:
            shown = {m: p for m, p in sorted(missing_paths.items()) if m in set(part["method"])}
            if shown:
                text += " Missing-modality paths: " + "; ".join(f"{esc(m)}: {esc(p)}"
                                                                for m, p in shown.items()) + "."
        blocks.append(text)
    return "\n\n".join(blocks)


def render(summary: pd.DataFrame, fmt: str, missing_paths: dict[str, str] | None = None) -> str:
    if fmt in STYLES:
        return to_tables(summary, missing_paths, STYLES[fmt])
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return summary.to_json(orient="records")
    raise ValueError(f"--robustness is shown as text, md, csv, json or html, not {fmt!r}")


def missing_paths(store, results: Results) -> dict[str, str]:
    """method -> its missing-modality path, read from one stored run of each method."""
    out: dict[str, str] = {}
    if store is None:
        return out
    for method, part in results.frame.groupby("method", sort=True):
        for key in list(dict.fromkeys(part["key"]))[:5]:   # a run of a multimodal dataset records it
            rec = store.get(key)
            path = ((rec.summary or {}).get("robustness") or {}).get("missing_path") if rec is not None else None
            if path:
                out[method] = path
                break
    return out
