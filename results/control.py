"""Many configurations over many datasets against a control (``bench leaderboard --control``).

Following Demšar (2006): per metric, a datasets × configurations table of the leaderboard's
means over seeds (one task per dataset: :func:`results.leaderboard.main_task`, and its primary
metric unless a metric is named), the Friedman test on the ranks within each dataset with the
Nemenyi critical difference (:func:`results.stats.friedman_nemenyi`), and the Wilcoxon
signed-rank test of every configuration against the control over the datasets, Holm-corrected
(:func:`results.stats.wilcoxon_holm_vs_control`). Only configurations present on every dataset
of the table take part (the others are named); the "best single (<modality>)" rows of each
dataset form one column, ``best single``. Rendered as a small table after the leaderboard:
configuration, mean rank, p vs control, Holm-adjusted p, effect (rank-biserial r and the mean
difference, configuration − control).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

from . import stats as st
from .leaderboard import BEST_SINGLE, MARKDOWN, PLAIN, TextStyle, main_task


@dataclass
class ControlTable:
    """One metric's analysis: ``scores`` (datasets × configurations), the Friedman/Nemenyi result
    and the Wilcoxon–Holm rows vs ``control`` (``results.stats.wilcoxon_holm_vs_control``)."""

    metric: str
    higher: bool
    control: str
    scores: pd.DataFrame
    friedman: st.FriedmanResult
    vs_control: pd.DataFrame
    tasks: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Configuration, mean rank, p, adjusted p, effect: the control first, then by mean rank."""
        ranks = self.friedman.ranks
        by = self.vs_control.set_index("method")
        out = []
        for label in sorted(ranks.index, key=lambda x: (x != self.control, float(ranks[x]), x)):
            if label == self.control:
                out.append({"configuration": label, "mean_rank": float(ranks[label]), "control": True})
                continue
            r = by.loc[label]
            out.append({"configuration": label, "mean_rank": float(ranks[label]), "control": False,
                        "pvalue": float(r["pvalue"]), "p_holm": float(r["p_holm"]),
                        "significant": bool(r["significant"]), "rank_biserial": float(r["rank_biserial"]),
                        "mean_difference": float(r["mean_difference"]), "n": int(r["n"])})
        return out

    def summary_line(self) -> str:
        f = self.friedman
        arrow = "higher is better" if self.higher else "lower is better"
        verdict = ("rejects equal ranks" if f.rejected else
                   "does not reject equal ranks: read the comparisons with caution")
        return (f"Friedman test on {self.metric} ({arrow}) over {f.n_datasets} datasets, {f.k} configurations: "
                f"χ²_F = {f.statistic:.3f}, p = {_p(f.pvalue)} ({verdict}); Nemenyi CD = {f.cd:.3f} at "
                f"α = {f.alpha:g}. Each configuration vs the control {self.control} by the Wilcoxon signed-rank test "
                f"over datasets, Holm-corrected; effect = rank-biserial r (positive: better than the control) and "
                f"the mean difference (configuration − control).")

    def notes(self) -> list[str]:
        out = []
        if self.friedman.dropped:
            out.append("Datasets left out (a configuration has no value there): " + ", ".join(self.friedman.dropped))
        if self.dropped:
            out.append("Not on every dataset, so not ranked: " + ", ".join(self.dropped))
        return out


@dataclass
class ControlAnalysis:
    """The tables (one per metric) and one-line explanations of what could not be tested."""

    control: str
    tables: list[ControlTable] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _p(p: float) -> str:
    return "nan" if p != p else f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _ascii(text: str) -> str:
    """Symbols ``latex_escape`` has no command for, spelled out."""
    return text.replace("χ²_F", "chi2_F").replace("−", "-").replace("Δ", "Delta")


def _column(label: str) -> str:
    return BEST_SINGLE if label.startswith(BEST_SINGLE + " (") else label


def control_analysis(summary: pd.DataFrame, primary: dict, control: str, metrics: list[str] | None = None,
                     alpha: float = 0.05) -> ControlAnalysis:
    """Friedman + Wilcoxon–Holm vs ``control`` (a configuration label, or a method name that one
    label column has) on the leaderboard ``summary`` (see the module docstring). ``metrics``: the
    metrics to rank by; default each dataset's main task's primary metric (``primary``:
    :attr:`results.frame.Results.primary`)."""
    out = ControlAnalysis(control)
    ranked = summary[summary["higher"].notna() & (summary["task"] != "interpretation")]
    picks: dict[str, list[tuple[str, str, str]]] = {}   # metric -> [(dataset, task)]
    for dataset, part in ranked.groupby("dataset", sort=True):
        if metrics:
            for m in metrics:
                tasks = sorted(set(part.loc[part["metric"] == m, "task"]))
                task = "all" if "all" in tasks else tasks[0] if tasks else None
                if task is not None:
                    picks.setdefault(m, []).append((dataset, task))
        else:
            task = main_task(part["task"], primary, dataset)
            if task is None:
                continue
            m = primary[(dataset, task)]
            if (part["metric"] == m).any():
                picks.setdefault(m, []).append((dataset, task))
    if not picks:
        out.messages.append(f"--control {control}: no ranked metric{' ' + ', '.join(metrics) if metrics else ''} "
                            "in the leaderboard, nothing to test.")
    for metric, chosen in picks.items():
        if len(chosen) < 2:
            out.messages.append(f"--control {control} on {metric}: the Friedman and Wilcoxon tests over datasets "
                                f"need ≥ 2 datasets; only {chosen[0][0]} has it.")
            continue
        rows = pd.concat([ranked[(ranked["dataset"] == d) & (ranked["task"] == t) & (ranked["metric"] == metric)]
                          for d, t in chosen])
        higher = bool(rows["higher"].iloc[0])
        table = rows.assign(column=[_column(lab) for lab in rows["label"]]).pivot_table(
            index="dataset", columns="column", values="mean", aggfunc="mean")
        full = table.dropna(axis=1)
        dropped = sorted(set(table.columns) - set(full.columns))
        methods = {_column(lab): meth for lab, meth in zip(rows["label"], rows["method"])}
        ctrl = control if control in full.columns else None
        if ctrl is None:
            named = [c for c in full.columns if methods.get(c) == control]
            if len(named) == 1:
                ctrl = named[0]
            elif len(named) > 1:
                out.messages.append(f"--control {control} on {metric}: several configurations of {control} "
                                    f"({', '.join(named)}); name one of them.")
                continue
        if ctrl is None:
            where = "is not on every dataset" if control in table.columns or control in set(methods.values()) \
                else "is no configuration of the leaderboard"
            out.messages.append(f"--control {control} on {metric}: it {where}; configurations on every dataset: "
                                f"{', '.join(map(str, full.columns)) or 'none'}.")
            continue
        if full.shape[1] < 2:
            out.messages.append(f"--control {control} on {metric}: no other configuration on every dataset.")
            continue
        try:
            fried = st.friedman_nemenyi(full, higher_is_better=higher, alpha=alpha)
        except ValueError as e:
            out.messages.append(f"--control {control} on {metric}: {e}.")
            continue
        vs = st.wilcoxon_holm_vs_control(full, ctrl, higher_is_better=higher, alpha=alpha)
        out.tables.append(ControlTable(metric, higher, ctrl, full, fried, vs, dict(chosen), dropped))
    return out


def _effect(r: dict) -> str:
    return f"r = {r['rank_biserial']:+.2f}, Δ = {r['mean_difference']:+.3f}"


def to_markdown(analysis: ControlAnalysis) -> str:
    return to_tables(analysis, MARKDOWN)


def to_text(analysis: ControlAnalysis) -> str:
    """:func:`to_markdown`'s tables as plain text for a terminal (no escapes, no markup)."""
    return to_tables(analysis, PLAIN)


def to_tables(analysis: ControlAnalysis, style: TextStyle = MARKDOWN) -> str:
    """One table per metric in ``style`` (results.leaderboard.MARKDOWN or PLAIN)."""
    esc = style.esc
    blocks = []
    for t in analysis.tables:
        rows = [[esc(r["configuration"]) + (" (control)" if r["control"] else ""), f"{r['mean_rank']:.2f}",
                 "—" if r["control"] else _p(r["pvalue"]), "—" if r["control"] else _p(r["p_holm"])
                 + (" *" if r["significant"] else ""), "—" if r["control"] else _effect(r)] for r in t.rows()]
        text = (f"{style.heading}Against the control {esc(t.control)} — {esc(t.metric)} over "
                f"{t.friedman.n_datasets} datasets\n\n"
                + tabulate(rows, headers=["configuration", "mean rank", "p vs control", "adjusted p (Holm)", "effect"],
                           tablefmt=style.tablefmt, disable_numparse=True)
                + "\n\n" + esc(t.summary_line()) + f" {style.star} adjusted p < α.")
        for note in t.notes():
            text += "\n\n" + esc(note)
        blocks.append(text)
    blocks += [esc(m) for m in analysis.messages]
    return "\n\n".join(blocks)


def to_latex(analysis: ControlAnalysis) -> str:
    from .escape import latex_escape

    out = []
    for t in analysis.tables:
        lines = []
        for r in t.rows():
            name = latex_escape(r["configuration"]) + (" (control)" if r["control"] else "")
            if r["control"]:
                cells = [name, f"{r['mean_rank']:.2f}", "--", "--", "--", "--"]
            else:
                cells = [name, f"{r['mean_rank']:.2f}", _p(r["pvalue"]),
                         _p(r["p_holm"]) + (r"$^{*}$" if r["significant"] else ""),
                         f"{r['rank_biserial']:+.2f}", f"{r['mean_difference']:+.3f}"]
            lines.append(" & ".join(cells) + r" \\")
        body = ("\\begin{tabular}{lrrrrr}\n\\toprule\nConfiguration & Mean rank & $p$ vs control & "
                "Holm-adjusted $p$ & $r$ & $\\Delta$ \\\\\n\\midrule\n" + "\n".join(lines)
                + "\n\\bottomrule\n\\end{tabular}\n")
        note = " ".join(latex_escape(x) for x in t.notes())
        caption = latex_escape(_ascii(t.summary_line()) + " * adjusted p < alpha; r = rank-biserial, Delta = mean "
                               "difference.")
        out.append("\\begin{table}[htbp]\n\\centering\n\\small\n" + body
                   + (f"\\par\\smallskip\\parbox{{\\linewidth}}{{\\footnotesize {note}}}\n" if note else "")
                   + f"\\caption{{{caption}}}\n\\end{{table}}\n")
    out += [latex_escape(m) + "\n\n" for m in analysis.messages]
    return "\n".join(out)


def to_html(analysis: ControlAnalysis) -> str:
    from .escape import esc
    from .plots import cd_diagram, figure_data_uri

    out = []
    for t in analysis.tables:
        out.append(f"<h2>Against the control {esc(t.control)} — {esc(t.metric)} over {t.friedman.n_datasets} datasets</h2>")
        head = ["configuration", "mean rank", "p vs control", "adjusted p (Holm)", "effect"]
        trs = []
        for r in t.rows():
            name = esc(r["configuration"]) + (" (control)" if r["control"] else "")
            if r["control"]:
                cells = [name, f"{r['mean_rank']:.2f}", "—", "—", "—"]
            else:
                cells = [name, f"{r['mean_rank']:.2f}", _p(r["pvalue"]),
                         _p(r["p_holm"]) + (" *" if r["significant"] else ""), esc(_effect(r))]
            trs.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append('<table class="sortable control"><thead><tr>' + "".join(f'<th scope="col">{h}</th>' for h in head)
                   + "</tr></thead><tbody>" + "".join(trs) + "</tbody></table>")
        out.append(f'<p class="note">{esc(t.summary_line())} * adjusted p &lt; α.</p>')
        for note in t.notes():
            out.append(f'<p class="note">{esc(note)}</p>')
        fig = cd_diagram(t.friedman.ranks, float(t.friedman.cd),
                         title=f"{t.metric}: Friedman p = {_p(t.friedman.pvalue)}, Nemenyi CD at α = {t.friedman.alpha:g}")
        out.append(f'<figure><img alt="{esc("Critical difference: " + t.metric)}" src="{figure_data_uri(fig, "svg")}">'
                   f"<figcaption>{esc('Critical difference diagram: ' + t.metric)}</figcaption></figure>")
    out += [f'<p class="note">{esc(m)}</p>' for m in analysis.messages]
    return "\n".join(out)
