"""LaTeX leaderboard: booktabs tables that compile with pdflatex.

``to_latex(summary, commons, split)`` renders the summary of :func:`results.leaderboard.summarize`
as a complete document (``standalone=True``, the default: ``article`` + ``booktabs``) or as bare
``table`` environments to ``\\input`` into a paper (``standalone=False``; the preamble then needs
``booktabs`` and ``graphicx``). Two layouts:

* ``layout="tables"`` (default): one table per (dataset, task), rows = configurations,
  columns = metrics;
* ``layout="grouped"``: one wide table, rows = configuration labels, a column group per dataset
  (and task, when a dataset has several) with one column per metric under it.

Each cell is mean ± std over seeds (ddof 1); per column the best mean is **bold** and the second
best underlined, in the metric's direction (``higher``; a metric with no direction is not
ranked). ``significance`` (any object with ``.marks``, a set of (dataset, task, metric,
config_id), and ``.footnote``, a sentence naming the test and correction) puts a dagger on the
marked cells and its footnote under the table. ``runs_info`` (a frame with ``config_id`` and
cost columns, see :func:`results.costs.cost_frame`) adds parameter and training-time columns.
Every user string (labels, dataset, task and metric names, shared settings, the footnote) goes
through :func:`latex_escape`, so no label can break the document.
"""
from __future__ import annotations

import math

import pandas as pd

from .escape import latex_escape  # noqa: F401  (re-exported)
from .leaderboard import CI_LEVEL, DEFAULTS_BUDGET, _fmt, ci_statement, table_order

#: mark on cells of ``significance.marks``
MARK = r"$^{\dagger}$"
#: decimals shown (and ranked: means equal when printed are tied)
DIGITS = 3


def _num(x: float, digits: int = DIGITS) -> str:
    return f"{x:.{digits}f}" if x == x else "--"


def _cell(mean: float, std: float, rank: int | None, marked: bool, ci: tuple | None = None) -> str:
    if ci is not None:
        text = _num(mean) if ci[0] != ci[0] or ci[1] != ci[1] else f"{_num(mean)} [{_num(ci[0])}, {_num(ci[1])}]"
    else:
        text = _num(mean) if std != std else f"{_num(mean)} $\\pm$ {_num(std)}"
    if rank == 1:
        text = r"\textbf{\boldmath " + text + "}"
    elif rank == 2:
        text = r"\underline{" + text + "}"
    return text + (MARK if marked else "")


def _ranks(values: dict, higher) -> dict:
    """key -> 1 (best) / 2 (second best) by distinct mean, in the metric's direction; none when
    the metric has no direction (``higher`` NaN / None)."""
    if higher is None or (isinstance(higher, float) and math.isnan(higher)):
        return {}
    shown = {k: round(v, DIGITS) for k, v in values.items() if v == v}   # ties as printed
    top = sorted(set(shown.values()), reverse=bool(higher))[:2]
    return {k: top.index(v) + 1 for k, v in shown.items() if v in top}


def _higher(value):
    return None if pd.isna(value) else bool(value)


def _seeds_text(ns) -> str:
    lo, hi = min(ns), max(ns)
    return (f"{hi} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}--{hi} seeds")


def _budget_text(budgets) -> str:
    distinct = sorted(set(budgets))
    if distinct == [DEFAULTS_BUDGET]:
        return "default hyperparameters (no tuning)"
    if len(distinct) == 1:
        return f"tuned, {latex_escape(distinct[0])} per configuration"
    return "tuning budgets: " + ", ".join(latex_escape(b) for b in distinct) + r" (\emph{unequal: not a fair comparison})"


def _shared_text(commons: dict | None, datasets) -> str:
    parts = []
    for d in datasets:
        common = (commons or {}).get(d) or {}
        if common:
            settings = ", ".join(latex_escape(f"{k}={_fmt(v)}") for k, v in sorted(common.items()))
            parts.append(f"{latex_escape(d)}: {settings}" if len(datasets) > 1 else settings)
    return ("Shared by every row: " + "; ".join(parts) + ".") if parts else ""


def _fit(tabular: str) -> str:
    """The tabular, shrunk to the line width only when it is wider."""
    return ("\\sbox\\benchtablebox{%\n" + tabular + "}%\n"
            "\\ifdim\\wd\\benchtablebox>\\linewidth\\resizebox{\\linewidth}{!}{\\usebox\\benchtablebox}%\n"
            "\\else\\usebox\\benchtablebox\\fi\n")


def _cost_columns(runs_info) -> tuple[list[tuple[str, str]], dict]:
    if runs_info is None or len(runs_info) == 0:
        return [], {}
    info = runs_info.set_index("config_id")
    cols = [(c, h) for c, h in (("params_total", "Params"), ("train_time_s", "Train (s)"),
                                ("flops_per_sample", "FLOPs/sample")) if c in info.columns]
    return cols, {c: info[c].to_dict() for c, _ in cols}


def _cost_text(value) -> str:
    if value is None or value != value:
        return "--"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.1f}{unit}"
    return f"{value:.1f}" if value != int(value) else f"{int(value)}"


def _table_env(body: str, caption: str, note: str) -> str:
    return ("\\begin{table}[htbp]\n\\centering\n\\small\n" + body
            + (f"\\par\\smallskip\\parbox{{\\linewidth}}{{\\footnotesize {note}}}\n" if note else "")
            + f"\\caption{{{caption}}}\n\\end{{table}}\n")


def _ci(r, ci: bool):
    return (r.ci_low, r.ci_high) if ci else None


def _spread_text(ci: bool, part, seeds: str, ddof: str) -> str:
    """``mean $\\pm$ std over N seeds (ddof 1...)``, or the CI and what it is over."""
    if not ci:
        return f"mean $\\pm$ std over {seeds} ({ddof})"
    return f"mean [{CI_LEVEL * 100:g}\\% CI] over {seeds} ({latex_escape(ci_statement(part, CI_LEVEL))})"


def _per_task_tables(summary, commons, split, marks, footnote, runs_info, ci=False) -> list[str]:
    """One table per (dataset, task); ``footnote(dataset, task)`` gives its footnote."""
    cost_cols, costs = _cost_columns(runs_info)
    out = []
    for (dataset, task), part in sorted(summary.groupby(["dataset", "task"], sort=True),
                                        key=lambda group: table_order(group[0])):
        metrics = list(dict.fromkeys(part["metric"]))
        higher = {m: _higher(part.loc[part["metric"] == m, "higher"].iloc[0]) for m in metrics}
        rows: dict[tuple, dict] = {}
        budgets: dict[tuple, str] = {}
        for r in part.itertuples(index=False):
            rows.setdefault((r.label, r.config_id), {})[r.metric] = (r.mean, r.std, int(r.n), _ci(r, ci))
            budgets[(r.label, r.config_id)] = r.budget
        ranks = {m: _ranks({k: c[m][0] for k, c in rows.items() if m in c}, higher[m]) for m in metrics}
        with_budget = any(b != DEFAULTS_BUDGET for b in budgets.values())
        arrows = {True: r" $\uparrow$", False: r" $\downarrow$", None: ""}
        head = (["Configuration", "$n$"] + (["Budget"] if with_budget else []) + [h for _, h in cost_cols]
                + [latex_escape(m) + arrows[higher[m]] for m in metrics])
        lines, ns = [], []
        for (label, config), cells in sorted(rows.items()):
            n = max(c[2] for c in cells.values())
            ns.append(n)
            row = [latex_escape(label), str(n)] + ([latex_escape(budgets[(label, config)])] if with_budget else [])
            row += [_cost_text(costs[c].get(config)) for c, _ in cost_cols]
            for m in metrics:
                if m not in cells:
                    row.append("")
                    continue
                marked = (dataset, task, m, config) in marks
                row.append(_cell(cells[m][0], cells[m][1], ranks[m].get((label, config)), marked, cells[m][3]))
            lines.append(" & ".join(row) + r" \\")
        spec = "l" + "r" * (1 + with_budget + len(cost_cols)) + "c" * len(metrics)
        tabular = ("\\begin{tabular}{" + spec + "}\n\\toprule\n" + " & ".join(head) + " \\\\\n\\midrule\n"
                   + "\n".join(lines) + "\n\\bottomrule\n\\end{tabular}%\n")
        spread = _spread_text(ci, part, _seeds_text(ns), "ddof 1; $n$ = distinct seeds")
        caption = (f"{latex_escape(dataset)}, task {latex_escape(task)}: {latex_escape(split)} split, "
                   f"{spread}; best per column in bold, second "
                   f"underlined; {_budget_text(budgets.values())}. {_shared_text(commons, [dataset])}")
        text = footnote(dataset, task)
        note = f"{MARK} {latex_escape(text)}" if text else ""
        out.append(_table_env(_fit(tabular), caption.strip(), note))
    return out


def _grouped_table(summary, commons, split, marks, footnote, ci=False) -> str:
    groups = []   # (dataset, task, [metrics], {metric: higher})
    multi_task = summary.groupby("dataset")["task"].nunique().to_dict()
    for (dataset, task), part in summary.groupby(["dataset", "task"], sort=True):
        metrics = list(dict.fromkeys(part["metric"]))
        groups.append((dataset, task, metrics,
                       {m: _higher(part.loc[part["metric"] == m, "higher"].iloc[0]) for m in metrics}))
    cells: dict[str, dict] = {}   # label -> {(dataset, task, metric): (mean, std, n, config_id)}
    for r in summary.itertuples(index=False):
        cells.setdefault(r.label, {})[(r.dataset, r.task, r.metric)] = (r.mean, r.std, int(r.n), r.config_id, _ci(r, ci))
    ranks = {}
    for dataset, task, metrics, higher in groups:
        for m in metrics:
            col = (dataset, task, m)
            ranks[col] = _ranks({lab: c[col][0] for lab, c in cells.items() if col in c}, higher[m])
    arrows = {True: r" $\uparrow$", False: r" $\downarrow$", None: ""}
    top, rules, sub = ["Configuration"], [], ["" ]
    col = 2
    for dataset, task, metrics, higher in groups:
        name = latex_escape(dataset) + (f" / {latex_escape(task)}" if multi_task[dataset] > 1 else "")
        top.append(f"\\multicolumn{{{len(metrics)}}}{{c}}{{{name}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + len(metrics) - 1}}}")
        sub += [latex_escape(m) + arrows[higher[m]] for m in metrics]
        col += len(metrics)
    lines, ns = [], []
    for label in sorted(cells):
        row = [latex_escape(label)]
        for dataset, task, metrics, _ in groups:
            for m in metrics:
                c = cells[label].get((dataset, task, m))
                if c is None:
                    row.append("--")
                    continue
                ns.append(c[2])
                marked = (dataset, task, m, c[3]) in marks
                row.append(_cell(c[0], c[1], ranks[(dataset, task, m)].get(label), marked, c[4]))
        lines.append(" & ".join(row) + r" \\")
    n_cols = col - 1
    tabular = ("\\begin{tabular}{l" + "c" * (n_cols - 1) + "}\n\\toprule\n" + " & ".join(top) + " \\\\\n"
               + " ".join(rules) + "\n" + " & ".join(sub) + " \\\\\n\\midrule\n" + "\n".join(lines)
               + "\n\\bottomrule\n\\end{tabular}%\n")
    datasets = sorted(set(summary["dataset"]))
    spread = _spread_text(ci, summary, _seeds_text(ns), "ddof 1")
    caption = (f"{latex_escape(split)} split, {spread}; best per column in bold, "
               f"second underlined; {_budget_text(summary['budget'])}. {_shared_text(commons, datasets)}")
    note = f"{MARK} {latex_escape(footnote)}" if footnote else ""
    return _table_env(_fit(tabular), caption.strip(), note)


PREAMBLE = r"""\documentclass[10pt]{article}
\IfFileExists{lmodern.sty}{\usepackage[T1]{fontenc}\usepackage{lmodern}}{}
\usepackage[utf8]{inputenc}
\usepackage{textcomp}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage[margin=2cm]{geometry}
"""


def to_latex(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test", significance=None,
             runs_info: pd.DataFrame | None = None, standalone: bool = True, layout: str = "tables",
             title: str | None = None, ci: bool = False, control=None) -> str:
    """The leaderboard as LaTeX (see the module docstring); ``standalone=False`` gives only the
    table environments (they need ``booktabs`` and ``graphicx``). ``ci``: cells show the summary
    CIs (``summary_ci``'s columns) and the caption says what they are over; ``control``: a
    :class:`results.control.ControlAnalysis`, typeset as a second small table."""
    ci = ci and "ci_low" in summary.columns
    if layout not in ("tables", "grouped"):
        raise ValueError(f"unknown LaTeX layout {layout!r}; choose tables or grouped")
    from .significance import table_footnote

    marks = set(getattr(significance, "marks", None) or ())
    footnote = str(getattr(significance, "footnote", "") or "")
    if summary.empty:
        body = "No completed runs in the store yet.\n"
    elif layout == "grouped":
        body = _grouped_table(summary, commons, split, marks, footnote, ci)
    else:
        body = "\n".join(_per_task_tables(summary, commons, split, marks,
                                           lambda d, t: table_footnote(significance, d, t), runs_info, ci))
    if control is not None:
        from .control import to_latex as control_latex

        body += "\n" + control_latex(control)
    body = "\\ifdefined\\benchtablebox\\else\\newsavebox\\benchtablebox\\fi\n" + body
    if not standalone:
        return "% bench leaderboard: needs \\usepackage{booktabs} and \\usepackage{graphicx}\n" + body
    head = f"\\section*{{{latex_escape(title)}}}\n" if title else ""
    return PREAMBLE + "\\begin{document}\n" + head + body + "\\end{document}\n"
