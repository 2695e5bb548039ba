"""Leaderboard: mean ± std over seeds per configuration / dataset / task / metric.

Rows are configurations (``config_id``: everything but the seed), never bare method names, so two
runs that differ in any setting are never averaged together, and ``n`` counts distinct seeds.
Each row is labelled by its method and the settings that tell it apart from the other rows of its
table (``early[epochs=2]``, ``attention@tiny``); settings shared by every row are stated once
under the table. Standard deviation uses ddof = 1 (the sample standard deviation over seeds).
Markdown is rendered with tabulate, one table per dataset and task (a dataset's task tables before
its interpretation table), the best mean per column in bold; every label is escaped, so no user
string can change the table. ``text`` (:func:`to_text`, the terminal default of ``bench
leaderboard``) gives the same tables as plain text: column-aligned with a header rule, no escapes,
the best cell ending in ``*``. ``csv``/``json`` give the full long-form summary for machines. The
whole board (marks, CIs, control, formats) is built by :mod:`results.pipeline`.

``significance`` (:func:`results.significance.worse_than_best`) puts a † on configurations
significantly worse than the best of their column and its footnote under each table; ``ci=True``
shows ``mean [ci_low, ci_high]`` (the summary needs :func:`results.significance.summary_ci`'s
columns) and states under the table what the interval is over. "Best single modality" is one row
per dataset, chosen on validation (:func:`keep_best_singles`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~$])")   # $: math in GitHub / KaTeX renderers


def md_escape(text: str) -> str:
    """Markdown-escape a user string (labels, hparam values) so it renders literally in a table cell."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def plain_text(text: str) -> str:
    """A user string for a plain-text table cell: whitespace runs (newlines too) become one space, so
    a string cannot break a row; nothing else changes (plain text has no markup to escape)."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class TextStyle:
    """How a board's tables are written: Markdown (``MARKDOWN``) or plain text for a terminal
    (``PLAIN``: column-aligned tables with a header rule, no escapes, no markup)."""

    name: str
    esc: Callable[[str], str]
    tablefmt: str
    heading: str                    # before a table's title line
    code: Callable[[str], str]      # a task name in a title
    bold: Callable[[str], str]      # the best cell of a column
    best: str                       # how the title says which cell is the best
    strong: Callable[[str], str]    # an emphasised phrase
    star: str                       # a literal *


MARKDOWN = TextStyle("md", md_escape, "github", "### ", lambda t: f"`{t.replace('`', '')}`", lambda t: f"**{t}**",
                     "best in bold", lambda t: f"**{t}**", "\\*")
PLAIN = TextStyle("text", plain_text, "simple", "", plain_text, lambda t: f"{t}*", "best marked *", lambda t: t, "*")
STYLES = {"md": MARKDOWN, "text": PLAIN}


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
        shown = [_differs_text(getattr(r, "differs", None)) for r in group]
        codes = {r.code_version for r in group}
        for r, extra in zip(group, shown):
            if extra and len(set(shown)) == len(group):          # late[threads=2], late[data=1:3fa0c2d1]
                labels[r.config_id] = _with_fields(text, extra)
            else:
                suffix = f"code {r.code_version}" if len(codes) == len(group) else f"config {r.config_id[:8]}"
                labels[r.config_id] = f"{text} ({suffix})"
    return labels, common


def _differs_text(differs) -> str:
    """``threads=2,data=1:3fa0c2d1``: the key fields (from ``results.frame``) that tell apart
    configurations whose labels are otherwise the same; a data fingerprint is cut to 12 characters."""
    if not isinstance(differs, dict) or not differs:
        return ""
    parts = []
    for k, v in sorted(differs.items()):
        name = k.removeprefix("train.").removeprefix("hparams.").removesuffix("_fingerprint")
        text = "none" if v is None else _fmt(v)
        if k == "data_fingerprint" and len(text) > 12:
            text = text[:12]
        parts.append(f"{name}={text}")
    return ",".join(parts)


def _with_fields(text: str, extra: str) -> str:
    """Add ``extra`` inside the label's brackets (``late[epochs=2]`` -> ``late[epochs=2,threads=2]``)."""
    tuned = text.endswith(" (tuned)")
    base = text.removesuffix(" (tuned)")
    base = base[:-1] + "," + extra + "]" if base.endswith("]") else f"{base}[{extra}]"
    return base + (" (tuned)" if tuned else "")


_MISSING = object()
#: level of the summary CIs shown with ``ci=True``
CI_LEVEL = 0.95


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


#: method-name prefix of the single-modality baselines (``single:<modality>``)
SINGLE_PREFIX = "single:"
#: label of the single-modality configuration chosen on validation: ``best single (<modality>)``
BEST_SINGLE = "best single"
#: pseudo-tasks that hold no ranked metric
_UNRANKED_TASKS = ("interpretation",)


def main_task(tasks, primary: dict, dataset: str) -> str | None:
    """The task that ranks a dataset: segmentation's ``all`` (the mean over domains) when present,
    else the first task (by name) whose catalogue names a primary metric."""
    tasks = sorted(t for t in set(tasks) if t not in _UNRANKED_TASKS)
    if "all" in tasks and (dataset, "all") in primary:
        return "all"
    return next((t for t in tasks if (dataset, t) in primary), None)


def choose_best_singles(results: Results, split: str = "val") -> dict[str, str]:
    """dataset -> config_id of its best ``single:*`` configuration on ``split`` (validation): the
    best mean over seeds of the main task's primary metric (:func:`main_task`), in the metric's
    direction; ties go to the first config id. Datasets without such numbers are left out."""
    f = results.frame
    f = f[(f["split"] == split) & f["method"].str.startswith(SINGLE_PREFIX)]
    chosen = {}
    for dataset, part in f.groupby("dataset", sort=True):
        task = main_task(part["task"], results.primary, dataset)
        if task is None:
            continue
        metric = results.primary[(dataset, task)]
        rows = part[(part["task"] == task) & (part["metric"] == metric)]
        higher = rows["higher"].dropna()
        if rows.empty or higher.empty:
            continue
        means = rows.groupby("config_id", sort=True)["value"].mean().dropna()
        if means.empty:
            continue
        chosen[dataset] = str(means.idxmax() if bool(higher.iloc[0]) else means.idxmin())
    return chosen


def keep_best_singles(results: Results, split: str = "val") -> tuple[Results, dict[str, str]]:
    """``results`` without the ``single:*`` configurations that were not chosen on ``split`` (see
    :func:`choose_best_singles`), and the choice. A dataset with singles but no ``split`` numbers
    keeps all of them."""
    chosen = choose_best_singles(results, split)
    if not chosen:
        return results, chosen
    f = results.frame
    single = f["method"].str.startswith(SINGLE_PREFIX) & f["dataset"].isin(set(chosen))
    keep = ~single | f["config_id"].isin(set(chosen.values()))
    return Results(f[keep], results.configs, results.primary), chosen


def label_best_singles(summary: pd.DataFrame, chosen: dict[str, str]) -> pd.DataFrame:
    """Relabel each chosen single-modality row ``best single (<modality>)`` (its label without
    the ``single:`` prefix, so settings that tell configurations apart stay visible)."""
    if not chosen or summary.empty:
        return summary
    picked = {(d, c) for d, c in chosen.items()}
    labels = [f"{BEST_SINGLE} ({lab[len(SINGLE_PREFIX):] if lab.startswith(SINGLE_PREFIX) else lab})"
              if (d, c) in picked else lab
              for d, c, lab in zip(summary["dataset"], summary["config_id"], summary["label"])]
    return summary.assign(label=labels)


#: what a summary CI is over (``ci_over`` of results.significance.summary_ci), in words
CI_KINDS = {"seeds+cases": "t over seeds with the test-sample term from the per-case tables",
            "seeds": "t over seeds (no per-case data)",
            "cases (1 seed)": "over test cases only (one seed: seed variance not included)",
            "": "none (nothing to estimate it from)"}


def ci_statement(part: pd.DataFrame, level: float = 0.95) -> str:
    """What the CIs of ``part`` (rows with ``ci_over``) are over, e.g. ``95% CI: t over seeds
    with the test-sample term from the per-case tables``; per metric when the metrics differ."""
    if "ci_over" not in part.columns or part.empty:
        return ""
    pct = f"{level * 100:g}% CI"
    kinds: dict[str, set] = {}
    for m, how in zip(part["metric"], part["ci_over"]):
        kinds.setdefault(m, set()).add(how if isinstance(how, str) else "")
    uniform = {how for hows in kinds.values() for how in hows}
    if len(uniform) == 1:
        return f"{pct}: {CI_KINDS.get(next(iter(uniform)), next(iter(uniform)))}"
    groups: dict[str, list[str]] = {}
    for m, hows in kinds.items():
        text = " / ".join(CI_KINDS.get(h, h) for h in ("seeds+cases", "seeds", "cases (1 seed)", "") if h in hows)
        groups.setdefault(text, []).append(m)
    return f"{pct}: " + "; ".join(f"{text} ({', '.join(ms)})" for text, ms in groups.items())


def _cell(mean: float, std: float, bold: bool, ci: tuple | None = None, mark: bool = False,
          style: TextStyle = MARKDOWN) -> str:
    if ci is not None:
        lo, hi = ci
        text = f"{mean:.3f}" if lo != lo or hi != hi else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    else:
        text = f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"
    return (style.bold(text) if bold else text) + ("†" if mark else "")


def table_order(key: tuple[str, str]) -> tuple:
    """Sort key of a (dataset, task) table: by dataset, a dataset's task tables before its
    interpretation table (the pseudo-tasks that hold no ranked metric), then by task name."""
    dataset, task = key
    return dataset, task in _UNRANKED_TASKS, task


from .options import EMPTY  # noqa: E402  (what an empty board says, per style)


def table_footnote(significance, dataset: str, task: str) -> str:
    """The footnote of one (dataset, task) table: its own when ``significance`` has per-table
    footnotes (tested tables only), else the one sentence for every table."""
    if significance is None:
        return ""
    notes = getattr(significance, "footnotes", None)
    if notes is not None:
        return notes.get((dataset, task), "")
    return str(getattr(significance, "footnote", "") or "")


def to_markdown(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test",
                significance=None, ci: bool = False) -> str:
    """One Markdown table per (dataset, task); ``significance``: † marks and the footnote under
    each tested table; ``ci``: ``mean [ci_low, ci_high]`` cells (needs the summary_ci columns)."""
    return to_tables(summary, commons, split, significance, ci, MARKDOWN)


def to_text(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test",
            significance=None, ci: bool = False) -> str:
    """The same tables as :func:`to_markdown` as plain text for a terminal: column-aligned, a
    header rule, no Markdown escapes; the best cell of a column ends in ``*``."""
    return to_tables(summary, commons, split, significance, ci, PLAIN)


def to_tables(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test",
              significance=None, ci: bool = False, style: TextStyle = MARKDOWN) -> str:
    """One table per (dataset, task) in ``style`` (:data:`MARKDOWN` or :data:`PLAIN`); a dataset's
    task tables come before its interpretation table."""
    if summary.empty:
        return EMPTY[style.name]
    esc = style.esc
    ci = ci and "ci_low" in summary.columns
    marks = set(getattr(significance, "marks", None) or ())
    tested = set(getattr(significance, "tests", None) or ()) | {
        (*col, c) for col, c in (getattr(significance, "best", None) or {}).items()}
    tables: dict[tuple[str, str], dict] = {}
    lows = summary["ci_low"].to_numpy() if ci else None
    highs = summary["ci_high"].to_numpy() if ci else None
    for i, r in enumerate(summary.itertuples(index=False)):   # plain dicts: a pandas lookup per cell is slow
        t = tables.setdefault((r.dataset, r.task), {"metrics": {}, "rows": {}, "tested": False, "idx": []})
        t["metrics"].setdefault(r.metric, None if pd.isna(r.higher) else bool(r.higher))
        key = (r.dataset, r.task, r.metric, r.config_id)
        t["rows"].setdefault((r.label, r.config_id), {})[r.metric] = (
            r.mean, r.std, int(r.n), (lows[i], highs[i]) if ci else None, key in marks)
        t["tested"] |= key in tested
        t["idx"].append(i)
        t.setdefault("budgets", {})[(r.label, r.config_id)] = r.budget
    blocks = []
    for (dataset, task), t in sorted(tables.items(), key=lambda item: table_order(item[0])):
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
            rows.append([esc(label), n] + ([budgets[(label, config)]] if with_budget else [])
                        + [_cell(cells[m][0], cells[m][1], m in best and cells[m][0] == best[m], cells[m][3],
                                 cells[m][4], style) if m in cells else "" for m in shown])
        arrows = {True: " ↑", False: " ↓"}
        head = [f"{esc(m)}{arrows.get(higher.get(m), '')}" for m in shown]
        n_min, n_max = min(ns), max(ns)
        seeds = f"{n_max} seed{'s' if n_max > 1 else ''}" if n_min == n_max else f"{n_min}-{n_max} seeds"
        what = (f"mean [{CI_LEVEL * 100:g}% CI] over {seeds}" if ci else f"mean ± std over {seeds}, ddof=1")
        text = (f"{style.heading}{esc(dataset)} — task {style.code(task)} ({split}, {what}; "
                f"{style.best}; n = distinct seeds)\n\n"
                + tabulate(rows, headers=["configuration", "n", *(["budget"] if with_budget else []), *head],
                           tablefmt=style.tablefmt, disable_numparse=True))
        if with_budget and len(set(budgets.values())) > 1:
            by_budget: dict[str, list[str]] = {}
            for (label, config), budget in sorted(budgets.items()):
                by_budget.setdefault(budget, []).append(label)
            text += ("\n\n" + style.strong("Unequal tuning budgets") + " (not a fair comparison): " + "; ".join(
                f"{esc(b)}: {', '.join(esc(x) for x in labels)}" for b, labels in sorted(by_budget.items())))
        if ci:
            text += "\n\n" + esc(ci_statement(summary.iloc[t["idx"]], CI_LEVEL)) + "."
        footnote = table_footnote(significance, dataset, task) if t["tested"] else ""
        if footnote:
            text += "\n\n† " + esc(footnote)
        common = (commons or {}).get(dataset) or {}
        if common:
            text += "\n\nShared by every row: " + ", ".join(esc(f"{k}={_fmt(v)}") for k, v in sorted(common.items()))
        blocks.append(text)
    return "\n\n".join(blocks)


def render(summary: pd.DataFrame, fmt: str, commons: dict[str, dict] | None = None, split: str = "test",
           significance=None, ci: bool = False) -> str:
    """``md`` (see :func:`to_markdown`), ``text`` (:func:`to_text`), or every column of ``summary``
    as ``csv``/``json`` (with the significance and CI columns when the caller added them)."""
    if fmt in STYLES:
        return to_tables(summary, commons, split, significance, ci, STYLES[fmt])
    if fmt == "csv":
        return summary.to_csv(index=False)
    if fmt == "json":
        return summary.to_json(orient="records")
    raise ValueError(f"unknown leaderboard format {fmt!r}; choose one of: text, md, csv, json")


def leaderboard(results: Results, fmt: str = "md", split: str = "test", all_singles: bool = False) -> str:
    """The rendered leaderboard of ``results`` (see :func:`summarize`); without ``all_singles``
    only the single-modality configuration that is best on validation (when ``results`` holds
    validation numbers) is kept per dataset, labelled ``best single (<modality>)``."""
    chosen: dict[str, str] = {}
    if not all_singles:
        results, chosen = keep_best_singles(results, "val")
    summary, commons = summarize(results, split)
    return render(label_best_singles(summary, chosen), fmt, commons, split)
