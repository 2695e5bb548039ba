"""Which configurations are significantly worse than the best one of their column, and summary CIs.

A column is one (dataset, task, metric) of the leaderboard. Its best configuration (best mean over
seeds, in the metric's direction) is compared with every other configuration by a paired test
on the per-case test outcomes the run store keeps (``RunStore.cases``): cases are paired by
(dataset, split seed, training seed, task, case id, class), i.e. within each seed both
configurations ran, and pooled over those seeds. The test follows the metric:

* accuracy, subset accuracy -> McNemar's exact test on per-case correctness;
* AUROC of a binary task -> DeLong's test (cases as clusters over seeds);
* metrics that are means of a per-case value (Dice, IoU, NSD, HD95 and their per-organ versions,
  NLL / BCE / MSE via the per-case loss, MAE via the absolute error) -> Wilcoxon signed-rank;
* any other metric the per-case table can recompute (balanced accuracy, macro-F1, AUPRC, ECE,
  multiclass AUROC, RMSE, Pearson r) -> paired bootstrap resampling whole cases;
* no per-case data (or a metric they cannot give) -> paired t-test over the shared seeds, and
  the footnote says so.

The p-values of a column are Holm-corrected together; a configuration is marked when its adjusted
p-value is below alpha and the difference points its way (worse). The ``interpretation``
pseudo-task and segmentation's ``all`` pseudo-task are descriptive and never tested.
docs/statistics.md describes the procedure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import stats as st
from .frame import Results

#: tasks whose numbers are descriptive: never tested
UNTESTED_TASKS = ("interpretation", "all")
#: metric -> (test, per-case column); the value tested per case
_MCNEMAR = {"accuracy": "correct", "subset_accuracy": "correct"}
_WILCOXON = {"nll": "loss", "bce": "loss", "mse": "abs_error", "mae": "abs_error",
             "dice": "dice", "iou": "iou", "nsd": "nsd", "hd95": "hd95"}
_SEG_PER_CLASS = ("dice_", "iou_", "nsd_", "hd95_")
#: metrics whose value is the mean of a per-case value (CIs over cases); mse squares abs_error
_CASE_MEAN = {"accuracy": "correct", "subset_accuracy": "correct", "nll": "loss", "bce": "loss", "mae": "abs_error",
              "mse": "abs_error", "dice": "dice", "iou": "iou", "nsd": "nsd", "hd95": "hd95"}
N_BOOT = 1000

Key = tuple[str, str, str, str]   # (dataset, task, metric, config_id)


@dataclass
class Significance:
    """``marks``: (dataset, task, metric, config_id) significantly worse than the best of that
    column; ``tests``: every comparison made (the key is the worse-candidate's), with Holm-adjusted
    p-values in ``p_adjusted``; ``best``: the reference configuration per column; ``footnote``:
    the tests, correction, alpha and n, for a table."""

    marks: set[Key] = field(default_factory=set)
    tests: dict[Key, st.TestResult] = field(default_factory=dict)
    best: dict[tuple[str, str, str], str] = field(default_factory=dict)
    footnote: str = ""
    alpha: float = 0.05


class _Cases:
    """Per-case frames of runs, read once per key; :meth:`prefetch` reads many keys in a few
    batched queries (``RunStore.cases_many``) instead of one query per run."""

    def __init__(self, store):
        self.store, self.cache = store, {}
        self.rows_cache: dict[tuple, pd.DataFrame] = {}

    def prefetch(self, keys) -> None:
        wanted = sorted({k for k in keys if k not in self.cache})
        many = getattr(self.store, "cases_many", None)
        if not wanted or many is None:
            return
        try:
            found = many(wanted)
        except Exception:   # an unreadable batch: fall back to one read per key
            return
        for k in wanted:
            self.cache[k] = found.get(k, _EMPTY)

    def get(self, key: str) -> pd.DataFrame:
        if key not in self.cache:
            try:
                df = self.store.cases(key) if self.store is not None else pd.DataFrame()
            except Exception:   # a run without a readable per-case table: fall back to seeds
                df = pd.DataFrame()
            self.cache[key] = df
        return self.cache[key]


_EMPTY = pd.DataFrame()
#: per-case tables of a store, read once per run (share one between worse_than_best and summary_ci)
CaseCache = _Cases


class _RunIndex:
    """``_runs`` for every (dataset, task, metric, config) of one split, grouped once: a big
    store has thousands of configurations, and filtering the whole frame for each is slow."""

    def __init__(self, frame: pd.DataFrame):
        frame = frame.drop_duplicates(["dataset", "task", "metric", "config_id", "seed"], keep="last")
        indices = frame.groupby(["dataset", "task", "metric", "config_id"], sort=False).indices
        order = np.concatenate(list(indices.values())) if indices else np.array([], dtype=np.intp)
        ends = np.cumsum([len(v) for v in indices.values()])
        self.spans = {g: (int(e - len(v)), int(e)) for (g, v), e in zip(indices.items(), ends)}
        # one frame sorted by group: each group's runs are a slice of it (no per-group copy)
        self.slim = frame[["seed", "key", "split_seed", "value"]].iloc[order].set_index("seed")
        self.key_values = self.slim["key"].to_numpy()
        self.cache: dict = {}

    def keys(self, group) -> list[str]:
        a, b = self.spans.get(group, (0, 0))
        return list(self.key_values[a:b])

    def get(self, dataset: str, task: str, metric: str, config: str) -> pd.DataFrame:
        group = (dataset, task, metric, config)
        if group not in self.cache:
            a, b = self.spans.get(group, (0, 0))
            self.cache[group] = self.slim.iloc[a:b]
        return self.cache[group]


def _runs(frame: pd.DataFrame, dataset: str, task: str, metric: str, config: str) -> pd.DataFrame:
    part = frame[(frame["dataset"] == dataset) & (frame["task"] == task) & (frame["metric"] == metric)
                 & (frame["config_id"] == config)]
    return part.drop_duplicates("seed", keep="last").set_index("seed")


def _case_rows(cases: _Cases, runs: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    """The per-case rows of ``task`` over ``runs`` (one per seed), with seed and split_seed; for a
    per-organ segmentation metric only that organ's rows (cached: the metrics of one task share them)."""
    organ = metric.split("_", 1)[1] if metric.startswith(_SEG_PER_CLASS) else None
    memo = (tuple(runs["key"]), tuple(runs.index), task, organ)
    if memo not in cases.rows_cache:
        cases.rows_cache[memo] = _read_case_rows(cases, runs, task, metric)
    return cases.rows_cache[memo]


def _read_case_rows(cases: _Cases, runs: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    frames, seeds, split_seeds = [], [], []
    for seed, key, split_seed in zip(runs.index, runs["key"], runs["split_seed"]):
        df = cases.get(key)
        if df.empty or "case_id" not in df.columns:
            continue
        frames.append(df)
        seeds.append(np.full(len(df), seed))
        split_seeds.append(np.full(len(df), split_seed))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    out = out.assign(seed=np.concatenate(seeds), split_seed=np.concatenate(split_seeds))
    keep = np.ones(len(out), dtype=bool)
    if "task" in out.columns:
        keep &= ((out["task"] == task) | out["task"].isna()).to_numpy()   # a table without the column: all rows
    if metric.startswith(_SEG_PER_CLASS) and "class" in out.columns:
        keep &= ((out["class"].astype(str) == metric.split("_", 1)[1]) | out["class"].isna()).to_numpy()
    return out if keep.all() else out[keep].reset_index(drop=True)


def _probs(col: pd.Series) -> np.ndarray | None:
    try:
        p = np.array([list(v) for v in col], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return p if p.ndim == 2 and p.shape[1] >= 2 else None


def _value_column(metric: str) -> str | None:
    if metric in _WILCOXON:
        return _WILCOXON[metric]
    if metric.startswith(_SEG_PER_CLASS):
        return metric.split("_", 1)[0]
    return None


# --------------------------------------------------------------------------- metrics from per-case rows
def _ece(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    idx = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], conf, side="left")
    acc = np.bincount(idx, weights=correct, minlength=bins)
    cs = np.bincount(idx, weights=conf, minlength=bins)
    return float(np.abs(acc - cs).sum() / conf.size)


def auroc_binary(pos: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one class against the rest, as the Mann-Whitney statistic with mid-ranks for
    ties: the same number as ``sklearn.metrics.roc_auc_score`` (a test checks it), without its
    per-call input validation, which dominated the bootstrap's run time (about 60x slower)."""
    from scipy.stats import rankdata

    pos = np.asarray(pos, dtype=bool)
    n1 = int(pos.sum())
    n0 = pos.size - n1
    if not n1 or not n0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _confusion(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confusion matrix over the labels seen in y or pred, those labels)."""
    labels = np.unique(np.concatenate([y, pred]))
    yi, pi = np.searchsorted(labels, y), np.searchsorted(labels, pred)
    k = labels.size
    return np.bincount(yi * k + pi, minlength=k * k).reshape(k, k).astype(np.float64), labels


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (``sklearn.metrics.balanced_accuracy_score``)."""
    cm, _ = _confusion(y, pred)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted mean F1 over the labels in ``y`` or ``pred``, 0 where undefined
    (``sklearn.metrics.f1_score(average="macro", zero_division=0)``)."""
    cm, _ = _confusion(y, pred)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def auroc_ovr(y: np.ndarray, p: np.ndarray, classes) -> float:
    """Mean one-vs-rest AUROC over ``classes`` (those with both positives and negatives): one
    rank computation for all classes at once (``auroc_binary`` per column, averaged)."""
    from scipy.stats import rankdata

    classes = [k for k in classes if 0 < int((y == k).sum()) < y.size]
    if not classes:
        return float("nan")
    ranks = rankdata(p[:, classes], axis=0)
    pos = y[:, None] == np.asarray(classes)[None, :]
    n1 = pos.sum(axis=0)
    n0 = y.size - n1
    return float(np.mean(((ranks * pos).sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)))


def _per_class(fn, y: np.ndarray, p: np.ndarray, classes) -> float:
    vals = []
    for k in classes:
        pos = y == k
        if pos.any() and (fn.__name__ == "average_precision_score" or not pos.all()):
            vals.append(fn(pos, p[:, k]))
    return float(np.mean(vals)) if vals else float("nan")


def _statistic(metric: str, rows: pd.DataFrame):
    """(statistic on an array of per-case rows, the array) for a metric recomputed from per-case
    data, or None. Rows are ``[target, pred, probs...]`` (or ``[target, pred]``)."""
    from scipy.stats import pearsonr
    from sklearn import metrics as skm

    target = rows["target"].to_numpy(np.float64) if "target" in rows else None
    pred = rows["pred"].to_numpy(np.float64) if "pred" in rows else None
    if target is None or pred is None or not np.isfinite(target).all():
        return None
    p = _probs(rows["probs"]) if "probs" in rows else None
    if metric == "rmse" and "abs_error" in rows:
        return (lambda x: float(np.sqrt(np.mean(x[:, 0] ** 2)))), rows[["abs_error"]].to_numpy(np.float64)
    if metric == "pearson_r":
        return ((lambda x: float(pearsonr(x[:, 1], x[:, 0]).statistic) if np.ptp(x[:, 0]) and np.ptp(x[:, 1])
                 else float("nan")), np.column_stack([target, pred]))
    base = np.column_stack([target, pred])
    if metric == "balanced_accuracy":
        return (lambda x: balanced_accuracy(x[:, 0], x[:, 1])), base
    if metric == "macro_f1":
        return (lambda x: macro_f1(x[:, 0], x[:, 1])), base
    if p is None:
        return None
    data = np.column_stack([target, p])
    k = p.shape[1]
    binary = k == 2
    if metric == "ece":
        return (lambda x: _ece(x[:, 0].astype(int), x[:, 1:])), data
    if metric in ("auroc", "auprc"):
        classes = [1] if binary else list(range(k))
        if metric == "auroc":
            return (lambda x: auroc_ovr(x[:, 0].astype(int), x[:, 1:], classes)), data
        return (lambda x: _per_class(skm.average_precision_score, x[:, 0].astype(int), x[:, 1:], classes)), data
    for prefix, fn in (("auroc_", auroc_binary), ("auprc_", skm.average_precision_score)):
        if metric.startswith(prefix) and metric[len(prefix):].isdigit() and int(metric[len(prefix):]) < k:
            c = int(metric[len(prefix):])
            return (lambda x, c=c, fn=fn: _per_class(fn, x[:, 0].astype(int), x[:, 1:], [c])), data
    return None


# --------------------------------------------------------------------------- one comparison
def compare(best_rows: pd.DataFrame, other_rows: pd.DataFrame, best_runs: pd.DataFrame, other_runs: pd.DataFrame,
            metric: str, n_boot: int = N_BOOT, seed: int = 0) -> st.TestResult:
    """Paired test of the best configuration (``a``) against another (``b``) on one metric: on
    per-case rows when both have them for shared seeds, else over the shared seeds' values."""
    on = ["seed", "split_seed", "case_id"] + (["class"] if "class" in best_rows.columns
                                              and "class" in other_rows.columns else [])
    pairs = (best_rows.merge(other_rows, on=on, suffixes=("_a", "_b"))
             if not best_rows.empty and not other_rows.empty else _EMPTY)
    if not pairs.empty:
        res = _case_test(pairs, metric, n_boot, seed)
        if res is not None:
            return res
    _, ia, ib = np.intersect1d(best_runs.index.to_numpy(), other_runs.index.to_numpy(), return_indices=True)
    res = st.seed_paired(best_runs["value"].to_numpy(np.float64)[ia], other_runs["value"].to_numpy(np.float64)[ib])
    why = "no per-case data" if pairs.empty else "metric not computable from per-case data"
    return replace(res, note=f"{why}; {res.note}".rstrip("; "), extra={**res.extra, "fallback": True})


def _case_test(pairs: pd.DataFrame, metric: str, n_boot: int, seed: int) -> st.TestResult | None:
    def side(name: str) -> pd.DataFrame:
        cols = [c for c in pairs.columns if c.endswith(name)]
        return pairs[cols].rename(columns=lambda c: c[: -len(name)])

    a, b = side("_a"), side("_b")
    if metric in _MCNEMAR and "correct" in a:
        ca, cb = a["correct"].to_numpy(np.float64), b["correct"].to_numpy(np.float64)
        if np.isfinite(ca).any():
            return st.mcnemar_exact(ca, cb)
    col = _value_column(metric)
    if col is not None and col in a:
        va, vb = a[col].to_numpy(np.float64), b[col].to_numpy(np.float64)
        if np.isfinite(va).any():
            return st.wilcoxon_paired(va, vb)
    if metric == "auroc" and "probs" in a and "target" in a:
        pa, pb = _probs(a["probs"]), _probs(b["probs"])
        y = a["target"].to_numpy(np.float64)
        if pa is not None and pb is not None and pa.shape[1] == 2 and np.isfinite(y).all():
            rep = pairs["seed"].astype(str) + "/" + pairs["split_seed"].astype(str)
            unit = pairs["split_seed"].astype(str) + "/" + pairs["case_id"].astype(str)
            return st.delong(y == 1, pa[:, 1], pb[:, 1], replicate=rep.to_numpy(), unit=unit.to_numpy())
    sa, sb = _statistic(metric, a), _statistic(metric, b)
    if sa is None or sb is None:
        return None
    groups = (pairs["split_seed"].astype(str) + "/" + pairs["case_id"].astype(str)).to_numpy()
    return st.paired_bootstrap(sa[1], sb[1], sa[0], n_boot=n_boot, seed=seed, groups=groups)


# --------------------------------------------------------------------------- the public entry points
def worse_than_best(results: Results, store, summary: pd.DataFrame, split: str = "test",
                    alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 0,
                    case_cache: CaseCache | None = None) -> Significance:
    """Mark configurations significantly worse than the best of their (dataset, task, metric)
    column (see the module docstring); ``summary`` is :func:`results.leaderboard.summarize`'s.
    ``case_cache``: a :class:`CaseCache` of ``store`` to share per-case tables with
    :func:`summary_ci` (each is read once)."""
    frame = results.frame
    frame = frame[frame["split"] == split]
    index = _RunIndex(frame)
    cases = case_cache if case_cache is not None else _Cases(store)
    columns = []
    for (dataset, task, metric), col in summary.groupby(["dataset", "task", "metric"], sort=False):
        higher = col["higher"].iloc[0]
        if task in UNTESTED_TASKS or higher is None or (isinstance(higher, float) and math.isnan(higher)):
            continue
        col = col[col["mean"].notna()]
        if len(col) < 2:
            continue
        higher = bool(higher)
        best = col.loc[col["mean"].idxmax() if higher else col["mean"].idxmin(), "config_id"]
        columns.append((dataset, task, metric, higher, best, list(col["config_id"])))
    # per-case tables are read lazily and in batches: first those of each column's best
    # configuration, then the others' only where the best one has per-case rows to pair with
    cases.prefetch(k for d, t, m, _, best, _ in columns for k in index.keys((d, t, m, best)))
    paired = [c for c in columns if not _case_rows(cases, index.get(*c[:3], c[4]), c[1], c[2]).empty]
    cases.prefetch(k for d, t, m, _, best, configs in paired for c in configs if c != best
                   for k in index.keys((d, t, m, c)))
    out = Significance(alpha=alpha)
    used: dict[str, set[str]] = {}
    fallback: set[str] = set()
    ns: list[int] = []
    for dataset, task, metric, higher, best, configs in columns:
        out.best[(dataset, task, metric)] = best
        best_runs = index.get(dataset, task, metric, best)
        best_rows = _case_rows(cases, best_runs, task, metric)
        keys, tests = [], []
        for config in configs:
            if config == best:
                continue
            runs = index.get(dataset, task, metric, config)
            rows = _case_rows(cases, runs, task, metric) if not best_rows.empty else _EMPTY
            res = compare(best_rows, rows, best_runs, runs, metric, n_boot, seed)
            keys.append((dataset, task, metric, config))
            tests.append(res)
        adjusted = st.holm([t.pvalue for t in tests])
        for key, res, p in zip(keys, tests, adjusted):
            res = replace(res, p_adjusted=float(p))
            out.tests[key] = res
            worse = res.effect > 0 if higher else res.effect < 0
            if p == p and p < alpha and worse:
                out.marks.add(key)
            used.setdefault(res.test, set()).add(metric)
            if res.extra.get("fallback"):
                fallback.add(metric)
            if res.n:
                ns.append(res.n)
    out.footnote = _footnote(used, fallback, ns, alpha)
    return out


def _footnote(used: dict[str, set[str]], fallback: set[str], ns: list[int], alpha: float) -> str:
    if not used:
        return ""
    order = ["McNemar exact", "DeLong", "Wilcoxon signed-rank", "paired bootstrap", "paired t-test over seeds"]
    names = {"McNemar exact": "McNemar's exact test", "DeLong": "DeLong's test",
             "Wilcoxon signed-rank": "Wilcoxon signed-rank test", "paired bootstrap": "paired bootstrap",
             "paired t-test over seeds": "paired t-test over shared seeds"}
    parts = [f"{names[t]} ({', '.join(sorted(used[t]))})" for t in order if t in used]
    n_text = f"{min(ns)}" if ns and min(ns) == max(ns) else f"{min(ns)}–{max(ns)}" if ns else "?"
    text = (f"Marked: significantly worse than the best configuration of its column, two-sided, "
            f"Holm-corrected within each column, α = {alpha:g}. Tests: {'; '.join(parts)}. "
            f"Per-case tests pair the same test cases within each shared seed, pooled over seeds; "
            f"n = {n_text} (test cases × seeds, or seeds for the seed-level test).")
    if fallback:
        text += (" Seed-level test where per-case data were absent or could not give the metric: "
                 + ", ".join(sorted(fallback)) + ".")
    return text


def summary_ci(results: Results, store, split: str = "test", summary: pd.DataFrame | None = None,
               n_boot: int = 2000, level: float = 0.95, seed: int = 0,
               case_cache: CaseCache | None = None) -> pd.DataFrame:
    """The leaderboard summary with a ``level`` bootstrap CI of each mean: ``ci_low``, ``ci_high``
    and ``ci_over`` -- ``"cases"`` (BCa over test cases pooled across seeds: each case's value
    averaged over its seeds and organs, for metrics that are a mean of a per-case value) or
    ``"seeds"`` (over the per-seed values, otherwise; ``""`` with fewer than two)."""
    if summary is None:
        from .leaderboard import summarize

        summary = summarize(results, split)[0]
    frame = results.frame
    frame = frame[frame["split"] == split]
    index = _RunIndex(frame)
    cases = case_cache if case_cache is not None else _Cases(store)
    cases.prefetch(k for r in summary.itertuples(index=False) if r.task not in UNTESTED_TASKS
                   and (r.metric in _CASE_MEAN or r.metric.startswith(_SEG_PER_CLASS))
                   for k in index.keys((r.dataset, r.task, r.metric, r.config_id)))
    lows, highs, over = [], [], []
    for r in summary.itertuples(index=False):
        runs = index.get(r.dataset, r.task, r.metric, r.config_id)
        ci, how = (float("nan"), float("nan")), ""
        col = _CASE_MEAN.get(r.metric) or (r.metric.split("_", 1)[0] if r.metric.startswith(_SEG_PER_CLASS) else None)
        if col is not None and r.task not in UNTESTED_TASKS:
            rows = _case_rows(cases, runs, r.task, r.metric)
            if not rows.empty and col in rows:
                v = rows[col].to_numpy(np.float64) ** (2 if r.metric == "mse" else 1)
                ok = np.isfinite(v)
                if ok.sum() >= 2:
                    unit = (rows["split_seed"].astype(str) + "/" + rows["case_id"].astype(str))[ok]
                    per_case = pd.Series(v[ok]).groupby(unit.to_numpy(), sort=False).mean().to_numpy()
                    ci, how = st.bootstrap_ci(per_case, n_boot=n_boot, seed=seed, level=level), "cases"
        if not how:
            values = runs["value"].to_numpy(np.float64)
            if np.isfinite(values).sum() >= 2:
                ci, how = st.bootstrap_ci(values, n_boot=n_boot, seed=seed, level=level), "seeds"
        lows.append(ci[0])
        highs.append(ci[1])
        over.append(how)
    return summary.assign(ci_low=lows, ci_high=highs, ci_over=over)


#: the columns :func:`with_significance` adds to a summary (CSV / JSON)
SIGNIFICANCE_COLUMNS = ["worse_than_best", "p_adjusted", "test"]


def with_significance(summary: pd.DataFrame, significance: Significance) -> pd.DataFrame:
    """``summary`` with ``worse_than_best`` (bool: marked), ``p_adjusted`` (Holm-adjusted p-value
    of the comparison with its column's best; empty for the best and for untested rows) and
    ``test`` (the test used; ``best`` for the column's reference configuration)."""
    keys = list(zip(summary["dataset"], summary["task"], summary["metric"], summary["config_id"]))
    tests = significance.tests
    best = {(*col, c) for col, c in significance.best.items()}
    return summary.assign(
        worse_than_best=[k in significance.marks for k in keys],
        p_adjusted=[tests[k].p_adjusted if k in tests else float("nan") for k in keys],
        test=[tests[k].test if k in tests else "best" if k in best else "" for k in keys])
