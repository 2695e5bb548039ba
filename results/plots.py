"""Plots of the results (matplotlib, no display: every function builds a bare ``Figure``, no pyplot).

* :func:`cd_diagram`: critical-difference diagram (Demšar 2006) from average ranks, the CD and
  the Nemenyi cliques (groups whose ranks differ by less than the CD, drawn as thick bars);
  :func:`cd_diagram_from_scores` gets the ranks and CD from ``results.stats.friedman_nemenyi``.
* :func:`seed_plot`: per dataset, the distribution over seeds of each configuration (box + the
  individual seeds), one panel per (task, metric) (in the HTML page: per task, its ranking metric).
* :func:`cost_scatter`: a metric's mean ± std against a cost (parameters, training time or FLOPs,
  see :func:`results.costs.cost_frame`), one panel per (dataset, task).
* :func:`routing_plot`: the routing / expert-weight summaries of mixture-of-experts runs (the
  ``weight_*`` / ``gate_*`` numbers of the ``interpretation`` task), a heatmap per dataset.
* :func:`figure_to_svg` / :func:`figure_data_uri`: a figure as SVG text or a ``data:`` URI for a
  self-contained HTML page; :func:`report_plots` builds all of the above for a leaderboard.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib import __version__ as mpl_version
from matplotlib import rc_context
from matplotlib.figure import Figure

#: the pseudo-task holding interpretation numbers (bench.catalogue.INTERPRETATION)
INTERPRETATION = "interpretation"
ROUTING_PREFIXES = ("weight_", "gate_")
#: horizontal boxes (``vert`` is deprecated from matplotlib 3.10 on, ``orientation`` new in it)
_HORIZONTAL = {"orientation": "horizontal"} if tuple(int(x) for x in mpl_version.split(".")[:2]) >= (3, 10) \
    else {"vert": False}
COST_LABELS = {"params_total": "parameters", "train_time_s": "training time (s)", "flops_per_sample": "FLOPs / sample"}


def _bbox(fig: Figure) -> str | None:
    """``"tight"`` unless the figure lays itself out (constrained layout keeps every label inside
    the canvas already; a tight bounding box would cost one more full draw of the figure)."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    return None if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine) else "tight"


def figure_to_svg(fig: Figure) -> str:
    """The figure as SVG text (text kept as text, no timestamp, stable ids)."""
    buf = io.StringIO()
    with rc_context({"svg.hashsalt": "bench", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches=_bbox(fig))
    return buf.getvalue()


def figure_data_uri(fig: Figure, fmt: str = "svg") -> str:
    """The figure as a ``data:`` URI (``svg`` or ``png``) for an ``<img>`` that needs no request."""
    if fmt == "svg":
        data, mime = figure_to_svg(fig).encode(), "image/svg+xml"
    elif fmt == "png":
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches=_bbox(fig), metadata={"Software": None})
        data, mime = buf.getvalue(), "image/png"
    else:
        raise ValueError(f"unknown figure format {fmt!r}; choose svg or png")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- critical-difference diagram ---------------------------------------------------------------

def nemenyi_cliques(ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal groups (≥ 2 methods, consecutive in rank order) whose average ranks span at most
    ``cd``: methods not significantly different under the Nemenyi test."""
    order = ranks.sort_values(kind="stable")
    names, values = list(order.index), order.to_numpy(dtype=float)
    cliques, last_end = [], -1
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and values[j + 1] - values[i] <= cd:
            j += 1
        if j > i and j > last_end:
            cliques.append(names[i:j + 1])
            last_end = j
    return cliques


def cd_diagram(ranks: pd.Series, cd: float, cliques: list[list[str]] | None = None, title: str | None = None) -> Figure:
    """Demšar-style CD diagram: a rank axis (1 = best, on the left), each method joined to its
    average rank by an elbow line with its name at the side (the better half left), the CD as a
    bar above the axis, and one thick bar per clique of methods not significantly different."""
    ranks = ranks.astype(float).sort_values(kind="stable")
    k = len(ranks)
    if cliques is None:
        cliques = nemenyi_cliques(ranks, cd)
    lo, hi = 1, max(k, 2)
    half = (k + 1) // 2
    height = 1.6 + 0.28 * max(half, k - half) + 0.18 * len(cliques)
    title_in = 0.22 * (title.count("\n") + 1) + 0.15 if title else 0.0   # inches kept free above for the title
    fig = Figure(figsize=(7.0, height + title_in))
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.96 * height / (height + title_in)])
    ax.set_xlim(lo - 1.6, hi + 1.6)
    rows = max(half, k - half)
    ax.set_ylim(-(rows + 1) * 1.0 - 0.6 * len(cliques), 2.2)
    ax.axis("off")
    ax.plot([lo, hi], [0, 0], color="black", lw=1.2)
    for t in range(lo, hi + 1):
        ax.plot([t, t], [0, 0.18], color="black", lw=1)
        ax.text(t, 0.3, str(t), ha="center", va="bottom", fontsize=9, gid="tick")
    for t in np.arange(lo + 0.5, hi, 1.0):
        ax.plot([t, t], [0, 0.09], color="black", lw=0.8)
    if cd == cd and cd > 0:
        ax.plot([lo, lo + cd], [1.3, 1.3], color="black", lw=1.5)
        for x in (lo, lo + cd):
            ax.plot([x, x], [1.2, 1.4], color="black", lw=1.5)
        ax.text(lo + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9, gid="cd")
    clique_y0 = -0.35
    for c, members in enumerate(cliques):
        xs = [float(ranks[m]) for m in members]
        y = clique_y0 - 0.3 * c
        ax.plot([min(xs) - 0.03, max(xs) + 0.03], [y, y], color="black", lw=3.5, solid_capstyle="round")
    base = clique_y0 - 0.3 * len(cliques) - 0.4
    for i, (name, r) in enumerate(ranks.items()):
        left = i < half
        row = i if left else k - 1 - i
        y = base - row * 1.0
        x_end = lo - 0.3 if left else hi + 0.3
        ax.plot([r, r, x_end], [0, y, y], color="black", lw=0.9)
        ax.text(x_end - 0.05 if left else x_end + 0.05, y, str(name),
                ha="right" if left else "left", va="center", fontsize=9, gid="method")
        ax.text(x_end + 0.05 if left else x_end - 0.05, y + 0.12, f"{r:.2f}", ha="left" if left else "right",
                va="bottom", fontsize=7, color="0.35", gid="rank")
    if title:
        fig.suptitle(title, fontsize=9, y=0.99, va="top")
    return fig


def cd_diagram_from_scores(scores: pd.DataFrame, higher_is_better: bool = True, alpha: float = 0.05,
                           title: str | None = None) -> Figure:
    """Friedman + Nemenyi (``results.stats.friedman_nemenyi``) on ``scores`` (rows = datasets,
    columns = methods), drawn as a CD diagram; the title gets the Friedman p-value."""
    from .stats import friedman_nemenyi  # written alongside; imported when needed

    test = friedman_nemenyi(scores, higher_is_better=higher_is_better, alpha=alpha)
    note = f"Friedman p = {test.pvalue:.3g}, Nemenyi CD at alpha = {alpha} over {len(scores)} datasets"
    return cd_diagram(test.ranks, float(test.cd), title=f"{title}\n{note}" if title else note)


def cd_score_tables(summary: pd.DataFrame) -> dict[tuple[str, str, bool], pd.DataFrame]:
    """Per (task, metric) with a direction, the datasets x configuration-labels table of means,
    keeping only labels present on every dataset, where ≥ 2 datasets and ≥ 2 labels remain:
    the inputs of a CD diagram. Keys are (task, metric, higher)."""
    out = {}
    ranked = summary[summary["higher"].notna() & (summary["task"] != INTERPRETATION)]
    for (task, metric), part in ranked.groupby(["task", "metric"], sort=True):
        table = part.pivot_table(index="dataset", columns="label", values="mean", aggfunc="mean").dropna(axis=1)
        if table.shape[0] >= 2 and table.shape[1] >= 2:
            out[(task, metric, bool(part["higher"].iloc[0]))] = table
    return out


# --- seeds, cost, routing ----------------------------------------------------------------------

def _grid(n: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def seed_plot(frame: pd.DataFrame, dataset: str, split: str = "test", labels: dict[str, str] | None = None,
              metrics: list[str] | None = None, primary: dict | None = None) -> Figure:
    """Box plot over seeds per configuration, with each seed as a dot, one panel per (task,
    metric) of ``dataset`` (``frame``: :func:`results.frame.runs_frame`; ``labels``: config_id ->
    display label, else the runs' labels; ``metrics``: only these; ``primary``: (dataset, task) ->
    metric, one panel per task with its ranking metric)."""
    df = frame[(frame["dataset"] == dataset) & (frame["split"] == split) & (frame["task"] != INTERPRETATION)]
    if metrics:
        df = df[df["metric"].isin(metrics)]
    panels = list(dict.fromkeys(zip(df["task"], df["metric"])))
    if primary:
        ranked = [p for p in panels if primary.get((dataset, p[0])) == p[1]]
        panels = ranked or panels
    fig, axes = _grid(max(len(panels), 1))
    rng = np.random.default_rng(0)
    for ax, (task, metric) in zip(axes, panels):
        part = df[(df["task"] == task) & (df["metric"] == metric)]
        configs = sorted(dict.fromkeys(part["config_id"]), key=lambda c: (labels or {}).get(c, c))
        data = [part.loc[part["config_id"] == c, "value"].to_numpy(dtype=float) for c in configs]
        names = [(labels or {}).get(c) or part.loc[part["config_id"] == c, "label"].iloc[0] for c in configs]
        ax.boxplot(data, widths=0.5, showfliers=False, **_HORIZONTAL)
        for i, values in enumerate(data, start=1):
            ax.scatter(values, i + rng.uniform(-0.12, 0.12, len(values)), s=14, alpha=0.8, zorder=3, gid="seed")
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        higher = part["higher"].iloc[0]
        arrow = "" if pd.isna(higher) else (" (higher is better)" if higher else " (lower is better)")
        ax.set_xlabel(f"{metric}{arrow}", fontsize=8)
        ax.set_title(f"{task}: {metric} over seeds", fontsize=9)
    if not panels:
        axes[0].text(0.5, 0.5, "no runs", ha="center", va="center")
        axes[0].axis("off")
    fig.suptitle(f"{dataset} ({split})", fontsize=10)
    return fig


def cost_scatter(summary: pd.DataFrame, costs: pd.DataFrame, metric: str | None = None,
                 x: str = "params_total") -> Figure:
    """Mean ± std of ``metric`` (default: each table's first ranked metric) against the cost
    column ``x`` per configuration, one panel per (dataset, task); log x when costs span ≥ 100x."""
    if x not in costs.columns:
        raise ValueError(f"no cost column {x!r}; have {', '.join(c for c in costs.columns if c != 'config_id')}")
    cost = costs.set_index("config_id")[x].to_dict()
    df = summary[summary["task"] != INTERPRETATION]
    panels = []
    for (dataset, task), part in df.groupby(["dataset", "task"], sort=True):
        m = metric if metric is not None else next(
            (mm for mm, h in zip(part["metric"], part["higher"]) if not pd.isna(h)), None)
        rows = part[(part["metric"] == m) & part["config_id"].map(lambda c: cost.get(c, np.nan) == cost.get(c, np.nan))]
        if m is not None and len(rows):
            panels.append((dataset, task, m, rows))
    fig, axes = _grid(max(len(panels), 1))
    for ax, (dataset, task, m, rows) in zip(axes, panels):
        xs = np.array([cost[c] for c in rows["config_id"]], dtype=float)
        ys, es = rows["mean"].to_numpy(dtype=float), np.nan_to_num(rows["std"].to_numpy(dtype=float))
        ax.errorbar(xs, ys, yerr=es, fmt="o", ms=5, capsize=3, gid="config")
        for xi, yi, label in zip(xs, ys, rows["label"]):
            ax.annotate(str(label), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if xs.min() > 0 and xs.max() / xs.min() >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(COST_LABELS.get(x, x), fontsize=8)
        ax.set_ylabel(m, fontsize=8)
        ax.set_title(f"{dataset} / {task}: {m} vs {COST_LABELS.get(x, x)}", fontsize=9)
    if not panels:
        axes[0].text(0.5, 0.5, f"no configuration with {x}", ha="center", va="center")
        axes[0].axis("off")
    return fig


def routing_table(frame: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean over seeds of the routing numbers (``weight_*`` / ``gate_*`` of the interpretation
    task): rows (dataset, config_id, label), columns the metric names."""
    df = frame[(frame["split"] == split) & (frame["task"] == INTERPRETATION)
               & frame["metric"].str.startswith(ROUTING_PREFIXES)]
    if df.empty:
        return pd.DataFrame()
    return df.pivot_table(index=["dataset", "config_id", "label"], columns="metric", values="value", aggfunc="mean")


def routing_plot(frame: pd.DataFrame, split: str = "test", labels: dict[str, str] | None = None) -> Figure | None:
    """Heatmap per dataset of the mean expert weights / gate numbers of each MoE configuration
    (None when no run has them)."""
    table = routing_table(frame, split)
    if table.empty:
        return None
    datasets = list(dict.fromkeys(table.index.get_level_values("dataset")))
    fig, axes = _grid(len(datasets), width=5.5, height=2.6)
    for ax, dataset in zip(axes, datasets):
        part = table.xs(dataset, level="dataset").dropna(axis=1, how="all")
        cols = sorted(part.columns, key=lambda c: (not c.startswith("weight_"), c))
        values = part[cols].to_numpy(dtype=float)
        ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(values)))
        for (i, j), v in np.ndenumerate(values):
            if v == v:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        names = [(labels or {}).get(c) or lab for c, lab in part.index]
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=45, ha="right")
        ax.set_title(f"{dataset}: routing / expert weights ({split}, mean over seeds)", fontsize=9)
    return fig


def report_plots(results, summary: pd.DataFrame, costs: pd.DataFrame | None = None, split: str = "test",
                 notes: list[str] | None = None) -> list[tuple[str, Figure]]:
    """The plots of the HTML leaderboard, as (title, figure): a CD diagram per ranked (task,
    metric) shared by ≥ 2 datasets and ≥ 2 configurations, each dataset's seed plot, the cost
    scatter and the routing summary. Plots that cannot be made are explained in ``notes``."""
    notes = notes if notes is not None else []
    labels = {c: lab for c, lab in zip(summary["config_id"], summary["label"])}
    out = []
    tables = cd_score_tables(summary)
    if not tables:
        notes.append("No critical-difference diagram: it needs ≥ 2 datasets sharing ≥ 2 configurations.")
    for (task, metric, higher), scores in tables.items():
        try:
            fig = cd_diagram_from_scores(scores, higher_is_better=higher, title=f"{task}: {metric}")
        except Exception as e:   # stats module missing or a degenerate table: the page still renders
            notes.append(f"No critical-difference diagram for {task}: {metric} ({type(e).__name__}: {e}).")
            continue
        out.append((f"Critical difference: {task} / {metric}", fig))
    for dataset in sorted(set(summary["dataset"])):   # each task's ranking metric (the tables give every metric)
        out.append((f"Seeds: {dataset}", seed_plot(results.frame, dataset, split, labels,
                                                   metrics=list(dict.fromkeys(summary["metric"])),
                                                   primary=results.primary)))
    if costs is not None and len(costs):
        for x in ("params_total", "train_time_s"):
            if x in costs.columns and costs[x].notna().any():
                out.append((f"Cost: {COST_LABELS[x]}", cost_scatter(summary, costs, x=x)))
    routing = routing_plot(results.frame, split, labels)
    if routing is not None:
        out.append(("Routing / expert weights", routing))
    return out


# --- robustness ---------------------------------------------------------------------------------

def robustness_plot(rsum: pd.DataFrame, dataset: str, task: str) -> Figure | None:
    """One panel per modality: each configuration's test metric intact, under noise of growing
    level and with the modality removed (mean ± std over seeds); ``rsum`` is
    :func:`results.robustness.robustness_summary`'s frame. None when the dataset has none."""
    part = rsum[(rsum["dataset"] == dataset) & (rsum["task"] == task)]
    if part.empty:
        return None
    modalities = sorted(m for m in part["modality"].dropna().unique())
    levels = sorted(float(v) for v in part.loc[part["modality"].notna() & part["level"].notna(), "level"].unique())
    ticks = ["intact", *[f"noise {v:g}" for v in levels], "removed"]
    metric = part["metric"].iloc[0]
    fig = Figure(figsize=(3.2 * max(1, len(modalities)) + 1.5, 3.0))
    axes = fig.subplots(1, max(1, len(modalities)), sharey=True, squeeze=False)[0]
    for ax, modality in zip(axes, modalities):
        for label, rows in part.groupby("label", sort=True):
            intact = rows[rows["modality"].isna()]
            mine = rows[rows["modality"] == modality]
            ys, es = [], []
            for x, tick in enumerate(ticks):
                if tick == "intact":
                    r = intact
                elif tick == "removed":
                    r = mine[mine["level"].isna()]
                else:
                    r = mine[np.isclose(mine["level"].astype(float), levels[x - 1])]
                ys.append(float(r["mean"].iloc[0]) if len(r) else np.nan)
                es.append(float(r["std"].iloc[0]) if len(r) and r["std"].iloc[0] == r["std"].iloc[0] else 0.0)
            ax.errorbar(range(len(ticks)), ys, yerr=es, marker="o", ms=3, lw=1, capsize=2, label=label)
        ax.set_xticks(range(len(ticks)), ticks, fontsize=7, rotation=30, ha="right")
        ax.set_title(f"{modality}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric, fontsize=8)
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{dataset} / {task}: {metric} with one modality noisy or removed (test)", fontsize=9)
    return fig
