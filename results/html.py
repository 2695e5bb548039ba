"""HTML leaderboard: one self-contained page (no network), sortable tables and the plots.

``to_html(summary, commons, split, significance=None, plots=None)`` renders one table per
(dataset, task): configuration, n, tuning budget, one column per metric (mean ± std, the best per
column bold, a dagger on the cells of ``significance.marks`` with ``significance.footnote``
under the table), the settings shared by every row, then the plots (``plots``: (title, matplotlib
Figure or SVG text) pairs, see :func:`results.plots.report_plots`) as ``data:`` URI images. CSS and
the sorting script are inline and a Content-Security-Policy forbids every request that is not
``data:``, so the page opens from disk, offline, and nothing in it can phone home. Clicking a
column header sorts the rows by it (numbers numerically, text alphabetically; click again to
reverse). Every user string goes through ``html.escape``.
"""
from __future__ import annotations

import base64

import pandas as pd

from .escape import esc  # noqa: F401  (re-exported)
from .leaderboard import CI_LEVEL, DEFAULTS_BUDGET, _fmt, ci_statement, table_order

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { padding: .3em .8em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #333; cursor: pointer; user-select: none; white-space: nowrap; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
td.best { font-weight: bold; }
.mark { color: #b00; }
.note, .shared, .caption { font-size: .85em; color: #555; }
.warn { color: #a40; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-size: .9em; color: #444; }
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col], v = cell.getAttribute('data-sort');
        if (v === null) v = cell.textContent.trim();
        var x = parseFloat(v);
        return (v !== '' && !isNaN(x) && isFinite(v)) ? [0, x] : [v === '' ? 2 : 1, v.toLowerCase()];
      };
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) return ka[0] - kb[0];
        var c = ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _img(figure) -> str:
    if isinstance(figure, str):   # SVG text
        uri = "data:image/svg+xml;base64," + base64.b64encode(figure.encode()).decode()
    else:
        from .plots import figure_data_uri

        uri = figure_data_uri(figure, "svg")
    return uri


def _table(dataset, task, part: pd.DataFrame, commons, split, significance, ci=False) -> str:
    from .significance import cell_title, table_footnote

    marks = set(getattr(significance, "marks", None) or ())
    footnote = table_footnote(significance, dataset, task)
    metrics = list(dict.fromkeys(part["metric"]))
    higher = {m: (None if pd.isna(h) else bool(h)) for m, h in zip(part["metric"], part["higher"])}
    rows: dict[tuple, dict] = {}
    budgets: dict[tuple, str] = {}
    for r in part.itertuples(index=False):
        rows.setdefault((r.label, r.config_id), {})[r.metric] = (r.mean, r.std, int(r.n),
                                                                 (r.ci_low, r.ci_high) if ci else None)
        budgets[(r.label, r.config_id)] = r.budget
    best = {}
    for m in metrics:
        means = [round(c[m][0], 3) for c in rows.values() if m in c and c[m][0] == c[m][0]]
        if higher[m] is not None and means:
            best[m] = max(means) if higher[m] else min(means)
    arrows = {True: " ↑", False: " ↓", None: ""}
    head = ["configuration", "n", "budget"] + [f"{m}{arrows[higher[m]]}" for m in metrics]
    lines, ns = [], []
    for (label, config), cells in sorted(rows.items()):
        n = max(c[2] for c in cells.values())
        ns.append(n)
        tds = [f"<td>{esc(label)}</td>", f'<td data-sort="{n}">{n}</td>', f"<td>{esc(budgets[(label, config)])}</td>"]
        for m in metrics:
            if m not in cells:
                tds.append('<td data-sort=""></td>')
                continue
            mean, std, _, interval = cells[m]
            if interval is not None:
                lo, hi = interval
                text = f"{mean:.3f}" if lo != lo or hi != hi else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
            else:
                text = f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"
            marked = (dataset, task, m, config) in marks
            cls = ' class="best"' if m in best and round(mean, 3) == best[m] else ""
            mark = '<sup class="mark" title="significant">†</sup>' if marked else ""
            title = cell_title(significance, (dataset, task, m, config)) if significance is not None else ""
            tip = f' title="{esc(title)}"' if title else ""
            tds.append(f'<td{cls}{tip} data-sort="{float(mean)!r}">{esc(text)}{mark}</td>')
        lines.append("<tr>" + "".join(tds) + "</tr>")
    lo, hi = min(ns), max(ns)
    seeds = f"{hi} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"
    out = [f"<h2>{esc(dataset)} — task {esc(task)}</h2>",
           f'<p class="caption">{esc(split)} split, '
           + (f"mean [{CI_LEVEL * 100:g}% CI] over {seeds} (n = distinct seeds); " if ci else
              f"mean ± std over {seeds} (ddof 1; n = distinct seeds); ")
           + "best per column in bold; click a column header to sort.</p>",
           '<table class="sortable"><thead><tr>' + "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
           + "</tr></thead><tbody>" + "".join(lines) + "</tbody></table>"]
    if ci:
        out.append(f'<p class="note ci">{esc(ci_statement(part, CI_LEVEL))}.</p>')
    if footnote:
        out.append(f'<p class="note"><span class="mark">†</span> {esc(footnote)}</p>')
    distinct = sorted(set(budgets.values()))
    if len(distinct) > 1:
        out.append(f'<p class="note warn">Unequal tuning budgets ({esc(", ".join(distinct))}): not a fair comparison.</p>')
    common = (commons or {}).get(dataset) or {}
    if common:
        out.append('<p class="shared">Shared by every row: '
                   + esc(", ".join(f"{k}={_fmt(v)}" for k, v in sorted(common.items()))) + "</p>")
    return "\n".join(out)


def to_html(summary: pd.DataFrame, commons: dict[str, dict] | None = None, split: str = "test", significance=None,
            plots=None, notes: list[str] | None = None, title: str = "bench leaderboard", ci: bool = False,
            control=None, sections: list[str] | None = None) -> str:
    """The leaderboard as one self-contained HTML page (see the module docstring); ``ci``: cells
    show the summary CIs and each table says what they are over; ``control``: a
    :class:`results.control.ControlAnalysis` (its table and CD diagram after the leaderboard)."""
    ci = ci and "ci_low" in summary.columns
    body = [f"<h1>{esc(title)}</h1>"]
    if sections and summary.empty:   # a page of extra sections only (leaderboard --robustness)
        pass
    elif summary.empty:
        body.append("<p>No completed runs in the store yet: run <code>python -m bench sweep --suite quick</code> first.</p>")
    else:
        budgets = sorted(set(summary["budget"]))
        body.append(f'<p class="caption">Tuning budget: {esc(", ".join(budgets))}'
                    + (" (no tuning)" if budgets == [DEFAULTS_BUDGET] else "") + ".</p>")
        for (dataset, task), part in sorted(summary.groupby(["dataset", "task"], sort=True),
                                            key=lambda group: table_order(group[0])):
            body.append(_table(dataset, task, part, commons, split, significance, ci))
    body += [s for s in sections or () if s]   # pre-rendered HTML (robustness tables), escaped by their makers
    if control is not None:
        from .control import to_html as control_html

        body.append(control_html(control))
    if plots:
        body.append("<h2>Plots</h2>")
        for caption, figure in plots:
            body.append(f'<figure><img alt="{esc(caption)}" src="{_img(figure)}"><figcaption>{esc(caption)}'
                        "</figcaption></figure>")
    for note in notes or ():
        body.append(f'<p class="note">{esc(note)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


def robustness_section(rsum: pd.DataFrame, missing_paths: dict[str, str] | None = None) -> tuple[str, list]:
    """HTML tables of :func:`results.robustness.robustness_summary` (configurations × conditions)
    and their plots, as (html, [(caption, figure)])."""
    from .plots import robustness_plot

    if rsum is None or rsum.empty:
        return "", []
    out, plots = ["<h2>Robustness: missing and noisy modalities</h2>",
                  '<p class="caption">Test metric with one modality removed for every test sample (−m, through the '
                  "method's own missing-modality path) or with Gaussian noise of s × the modality's training-split "
                  "std (m~s); mean ± std over seeds.</p>"], []
    for (dataset, task, metric), part in rsum.groupby(["dataset", "task", "metric"], sort=True):
        columns = list(dict.fromkeys(part["condition"]))
        lines = []
        for label, rows in part.groupby("label", sort=True):
            cells = {r.condition: r for r in rows.itertuples()}
            tds = [f"<td>{esc(label)}</td>", f"<td>{int(rows['n'].max())}</td>"]
            for c in columns:
                r = cells.get(c)
                if r is None or r.mean != r.mean:
                    tds.append('<td data-sort=""></td>')
                    continue
                text = f"{r.mean:.3f}" + (f" ± {r.std:.3f}" if r.std == r.std else "")
                tds.append(f'<td data-sort="{float(r.mean)!r}">{esc(text)}</td>')
            lines.append("<tr>" + "".join(tds) + "</tr>")
        head = ["configuration", "n", *columns]
        out.append(f"<h3>{esc(dataset)} — task {esc(task)}: {esc(metric)}</h3>")
        out.append('<table class="sortable"><thead><tr>' + "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
                   + "</tr></thead><tbody>" + "".join(lines) + "</tbody></table>")
        fig = robustness_plot(rsum, dataset, task)
        if fig is not None:
            plots.append((f"Robustness: {dataset} / {task}", fig))
    if missing_paths:
        out.append('<p class="note">Missing-modality paths: '
                   + esc("; ".join(f"{m}: {p}" for m, p in sorted(missing_paths.items()))) + ".</p>")
    return "\n".join(out), plots


def robustness_page(rsum: pd.DataFrame, missing_paths: dict[str, str] | None = None,
                    title: str = "bench robustness") -> str:
    """``leaderboard --robustness --format html``: the robustness tables and plots alone."""
    section, plots = robustness_section(rsum, missing_paths)
    return to_html(pd.DataFrame(columns=["budget"]), None, "test", plots=plots, title=title,
                   sections=[section or "<p>No robustness results in the store.</p>"])


def html_report(results, store=None, split: str = "test", significance=None, title: str = "bench leaderboard",
                summary: pd.DataFrame | None = None, commons: dict | None = None, ci: bool = False,
                control=None, robustness: pd.DataFrame | None = None) -> str:
    """Summary (``summarize``'s, unless given), plots (with costs from ``store`` when given) and
    page in one call; ``robustness`` (a robustness summary) adds its tables and plots."""
    from .costs import cost_frame
    from .leaderboard import summarize
    from .plots import report_plots

    if summary is None:
        summary, commons = summarize(results, split)
    costs = cost_frame(store, set(summary["config_id"])) if store is not None and not summary.empty else None
    notes: list[str] = []
    plots = report_plots(results, summary, costs, split, notes) if not summary.empty else []
    sections = []
    if robustness is not None and not robustness.empty:
        from .robustness import missing_paths

        section, more = robustness_section(robustness, missing_paths(store, results))
        sections.append(section)
        plots += more
    return to_html(summary, commons, split, significance, plots, notes, title, ci, control, sections)
