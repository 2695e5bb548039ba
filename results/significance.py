"""Which configurations are significantly worse than the best one of their column, and summary CIs.

A column is one (dataset, task, metric) of the leaderboard. Every pair of its configurations is
compared with the seed-aware test of :mod:`results.inference` (the training seed is the unit of
replication; the test-sample variance comes from the runs' per-case tables through
:mod:`results.influence`), and the column's p-values are Holm-corrected together over **all**
k(k-1)/2 pairs: the best configuration is chosen from the same numbers, so testing only
"best vs each other" would let that choice inflate the error (with four identical
configurations, the max-vs-min comparison alone is falsely significant about 8% of the time at
alpha 0.05). A configuration is marked when its comparison with the column's best has a
Holm-adjusted p below alpha and the difference points its way.

``test="cases"`` is the conditional alternative (seeds fixed: only the test sample is random),
labelled so wherever it is shown. The ``interpretation`` pseudo-task (one number per run, no
per-case rows) is tested over seeds only; its metrics without a direction (mean expert weights)
and segmentation's ``all`` pseudo-task are descriptive and never tested. docs/statistics.md describes the procedure and its
calibration (``python -m bench calibrate``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import inference as inf
from . import stats as st
from .frame import Results
from .influence import UNITS_KEY, CaseInfluence, Units, case_influence
from .leaderboard import summarize, table_footnote  # noqa: F401  (table_footnote: re-exported)

#: tasks whose numbers are descriptive: never tested (segmentation's mean over domains: its
#: domains are the tested tables)
UNTESTED_TASKS = ("all",)
#: tasks without per-case rows, tested over seeds only (the paired / Welch t of the seed means):
#: interpretability numbers (agreement with the planted interactions, gate statistics) are one
#: number per run; ``bench verify`` uses the same rule for interpretability claims
SEED_LEVEL_TASKS = ("interpretation",)
#: ``--test`` choices: seed-aware (default) or conditional on the trained models
TESTS = inf.MODES

Key = tuple[str, str, str, str]   # (dataset, task, metric, config_id)


@dataclass
class Significance:
    """``marks``: (dataset, task, metric, config_id) significantly worse than the best of that
    column; ``tests``: each configuration's comparison with its column's best (``a`` = the best,
    so ``effect`` = best - config), Holm-adjusted over the column's pairs in ``p_adjusted``;
    ``best``: the reference configuration per column; ``pairs``: the Holm family size per
    column; ``footnotes``: per (dataset, task) the sentence for its table (the tests used per
    metric and what n counts); ``footnote``: one sentence for every table."""

    marks: set[Key] = field(default_factory=set)
    tests: dict[Key, st.TestResult] = field(default_factory=dict)
    best: dict[tuple[str, str, str], str] = field(default_factory=dict)
    pairs: dict[tuple[str, str, str], int] = field(default_factory=dict)
    footnotes: dict[tuple[str, str], str] = field(default_factory=dict)
    footnote: str = ""
    alpha: float = 0.05
    test: str = "seeds"


# --------------------------------------------------------------------------- per-case data
class CaseCache:
    """Per-case tables of a store's runs, read in batches once (``RunStore.case_columns_many``),
    and each run's case influence per (task, metric), computed once."""

    def __init__(self, store):
        self.store = store
        self.tables: dict[str, dict | None] = {}
        self.influences: dict[tuple, CaseInfluence | None] = {}
        self.cases: dict[tuple, int] = {}
        self._rows: dict[tuple, dict | None] = {}
        self._units: dict[tuple, np.ndarray] = {}

    def prefetch(self, keys) -> None:
        wanted = sorted({k for k in keys if k not in self.tables})
        if not wanted:
            return
        many = getattr(self.store, "case_columns_many", None)
        if self.store is None or many is None:
            self.tables.update(dict.fromkeys(wanted))
            return
        found = many(wanted)
        for k in wanted:
            self.tables[k] = found.get(k)

    def rows(self, key: str, task: str, split_seed) -> dict | None:
        """The rows of ``task`` in run ``key``'s table (all rows when it has no task column),
        with case ids prefixed by the split seed (runs on different splits share no case)."""
        memo = (key, task)
        if memo in self._rows:
            return self._rows[memo]
        if key not in self.tables:
            self.prefetch([key])
        table = self.tables.get(key)
        rows = None
        if table and "case_id" in table:
            keep = None
            if "task" in table:
                tasks = table["task"]
                keep = (tasks == task) | pd.isna(tasks)
            rows = {k: (v[keep] if keep is not None and not keep.all() else v) for k, v in table.items()}
            rows["case_id"] = np.char.add(f"{split_seed}/", np.asarray(rows["case_id"]).astype(str))
            rows[UNITS_KEY] = units = Units.of(rows["case_id"])
            # one array object per case set, so that runs on the same cases are recognised at once
            units_key = (len(units.uniq), hash(units.uniq.tobytes()))
            shared = self._units.setdefault(units_key, units.uniq)
            if shared is not units.uniq and np.array_equal(shared, units.uniq):
                rows[UNITS_KEY] = Units(units.ids, units.codes, shared) if units.uniq is not units.ids \
                    else Units(shared, units.codes, shared)
        self._rows[memo] = rows
        return rows

    def has_table(self, key: str) -> bool:
        return bool(self.tables.get(key))

    def influence(self, key: str, task: str, metric: str, split_seed) -> CaseInfluence | None:
        memo = (key, task, metric)
        if memo not in self.influences:
            rows = self.rows(key, task, split_seed)
            value = case_influence(metric, rows) if rows is not None and len(rows["case_id"]) else None
            self.influences[memo] = value
            self.cases[memo] = len(np.unique(rows["case_id"])) if rows is not None else 0
        return self.influences[memo]


class _RunIndex:
    """The runs of every (dataset, task, metric, config) of one split, grouped once: a big store
    has thousands of configurations, and filtering the whole frame for each is slow."""

    def __init__(self, frame: pd.DataFrame):
        frame = frame.drop_duplicates(["dataset", "task", "metric", "config_id", "seed"], keep="last")
        frame = frame.sort_values(["dataset", "task", "metric", "config_id", "seed"], kind="stable")
        indices = frame.groupby(["dataset", "task", "metric", "config_id"], sort=False).indices
        self.seeds = frame["seed"].to_numpy()
        self.keys_ = frame["key"].to_numpy()
        self.split = frame["split_seed"].to_numpy()
        self.values = frame["value"].to_numpy(np.float64)
        self.groups = indices

    def keys(self, group) -> list[str]:
        return list(self.keys_[self.groups.get(group, [])])

    def get(self, dataset: str, task: str, metric: str, config: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(seeds, keys, split seeds, values) of one configuration's runs, by seed."""
        idx = self.groups.get((dataset, task, metric, config), np.array([], dtype=np.intp))
        return self.seeds[idx], self.keys_[idx], self.split[idx], self.values[idx]


@dataclass
class _Config:
    """One configuration's runs in a column: seeds, metric values, case influences (one per run,
    None where the run has none), test cases, and whether every run has a per-case table."""

    seeds: np.ndarray
    values: np.ndarray
    influences: list[CaseInfluence | None]
    cases: int = 0
    tables: bool = False

    @property
    def has_cases(self) -> bool:
        return bool(self.influences) and all(c is not None for c in self.influences)


def _config(index: _RunIndex, cases: CaseCache | None, dataset: str, task: str, metric: str, config: str) -> _Config:
    return _make_config(*index.get(dataset, task, metric, config), cases, task, metric)


def config_of_runs(runs: pd.DataFrame, cases: CaseCache | None, task: str, metric: str) -> _Config:
    """A configuration's runs (a frame indexed by seed with ``key``, ``split_seed`` and ``value``,
    e.g. one side of a claim) ready for :func:`compare_configs`."""
    return _make_config(runs.index.to_numpy(), runs["key"].to_numpy(), runs["split_seed"].to_numpy(),
                        runs["value"].to_numpy(np.float64), cases, task, metric)


def _make_config(seeds, keys, splits, values, cases: CaseCache | None, task: str, metric: str) -> _Config:
    ok = np.isfinite(values)
    seeds, keys, splits, values = seeds[ok], keys[ok], splits[ok], values[ok]
    if cases is None:
        return _Config(seeds, values, [None] * len(keys))
    infl = [cases.influence(k, task, metric, s) for k, s in zip(keys, splits)]
    n = max((cases.cases.get((k, task, metric), 0) for k in keys), default=0)
    return _Config(seeds, values, infl, n, bool(len(keys)) and all(cases.has_table(k) for k in keys))


def compare_configs(a: _Config, b: _Config, mode: str = "seeds", level: float = 0.95,
                    cov: np.ndarray | None = None) -> st.TestResult:
    """The seed-aware test of ``a`` - ``b`` (:func:`results.inference.compare`), with the case
    term when both have per-case influences for every run (``cov``: their case covariance, a's
    runs then b's, when the caller has it already)."""
    if cov is None and a.has_cases and b.has_cases:
        cov = inf.case_covariance(a.influences + b.influences)
    res = inf.compare(a.values, b.values, a.seeds, b.seeds, cov, mode=mode, level=level,
                      cases=max(a.cases, b.cases) if cov is not None else None)
    if cov is None and mode == "seeds":
        why = "the per-case tables cannot give this metric" if a.tables and b.tables else "no per-case data"
        res = replace(res, note="; ".join(x for x in (why, res.note) if x))
    return res


# --------------------------------------------------------------------------- the public entry points
def columns_of(summary: pd.DataFrame) -> list[tuple[str, str, str, bool, str, list[str]]]:
    """(dataset, task, metric, higher, best config, configs) of every testable column."""
    out = []
    for (dataset, task, metric), col in summary.groupby(["dataset", "task", "metric"], sort=False):
        higher = col["higher"].iloc[0]
        if task in UNTESTED_TASKS or higher is None or (isinstance(higher, float) and math.isnan(higher)):
            continue
        col = col[col["mean"].notna()]
        if len(col) < 2:
            continue
        higher = bool(higher)
        best = col.loc[col["mean"].idxmax() if higher else col["mean"].idxmin(), "config_id"]
        out.append((dataset, task, metric, higher, best, list(col["config_id"])))
    return out


def column_tests(configs: dict[str, _Config], best: str, higher: bool, alpha: float = 0.05,
                 mode: str = "seeds") -> tuple[dict[str, st.TestResult], set[str], int]:
    """One column: every pair tested, Shaffer's correction over all pairs; returns (each config's comparison with
    ``best``, with the adjusted p; the configs marked worse; the number of pairs)."""
    names = list(configs)
    # one case covariance for the whole column when every run has a case influence: each pair's
    # is a block of it
    gram = inf.case_covariance([c for n in names for c in configs[n].influences]) \
        if all(configs[n].has_cases for n in names) else None
    rows, start = {}, 0
    for n in names:
        rows[n] = np.arange(start, start + len(configs[n].values))
        start += len(configs[n].values)
    pairs, results = [], []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            a, b = (x, y) if x == best or y != best else (y, x)
            pairs.append((a, b))
            idx = np.r_[rows[a], rows[b]]
            results.append(compare_configs(configs[a], configs[b], mode,
                                           cov=gram[np.ix_(idx, idx)] if gram is not None else None))
    adjusted = st.shaffer([r.pvalue for r in results], len(names))
    out, marked = {}, set()
    for (a, b), res, p in zip(pairs, results, adjusted):
        if a != best:
            continue
        res = replace(res, p_adjusted=float(p))
        out[b] = res
        worse = res.effect > 0 if higher else res.effect < 0
        if p == p and p < alpha and worse:
            marked.add(b)
    return out, marked, len(pairs)


def worse_than_best(results: Results, store, summary: pd.DataFrame, split: str = "test",
                    alpha: float = 0.05, test: str = "seeds", case_cache: CaseCache | None = None) -> Significance:
    """Mark configurations significantly worse than the best of their (dataset, task, metric)
    column (see the module docstring); ``summary`` is :func:`results.leaderboard.summarize`'s;
    ``test``: ``"seeds"`` (default) or ``"cases"`` (conditional on the trained models);
    ``case_cache``: a :class:`CaseCache` of ``store`` shared with :func:`summary_ci`."""
    if test not in TESTS:
        raise ValueError(f"test={test!r}; expected one of {TESTS}")
    frame = results.frame
    index = _RunIndex(frame[frame["split"] == split])
    cases = case_cache if case_cache is not None else (CaseCache(store) if store is not None else None)
    columns = columns_of(summary)
    if cases is not None:
        cases.prefetch(k for d, t, m, _, _, configs in columns if t not in SEED_LEVEL_TASKS
                       for c in configs for k in index.keys((d, t, m, c)))
    out = Significance(alpha=alpha, test=test)
    used: dict[tuple[str, str], dict[str, list]] = {}
    for dataset, task, metric, higher, best, names in columns:
        out.best[(dataset, task, metric)] = best
        use = None if task in SEED_LEVEL_TASKS else cases
        configs = {c: _config(index, use, dataset, task, metric, c) for c in names}
        tests, marked, n_pairs = column_tests(configs, best, higher, alpha, test)
        out.pairs[(dataset, task, metric)] = n_pairs
        for config, res in tests.items():
            out.tests[(dataset, task, metric, config)] = res
            if config in marked:
                out.marks.add((dataset, task, metric, config))
        used.setdefault((dataset, task), {})[metric] = [n_pairs, list(tests.values())]
    out.footnotes = {table: footnote(metrics, alpha, test) for table, metrics in used.items()}
    out.footnote = footnote({m: v for metrics in used.values() for m, v in metrics.items()}, alpha, test) if used else ""
    return out


def cell_title(significance, key: Key) -> str:
    """A cell's comparison with its column's best in one line (HTML tooltips)."""
    res = (getattr(significance, "tests", None) or {}).get(key)
    if res is None:
        return "the best of its column" if key[:3] in (getattr(significance, "best", None) or {}) and \
            significance.best[key[:3]] == key[3] else ""
    p = res.p_adjusted
    return (f"vs best: {-res.effect:+.4g} [{-res.ci_high:+.4g}, {-res.ci_low:+.4g}], Holm p = "
            + (f"{p:.2g}" if p == p else "n/a") + f"; {res.test}, n = {n_text(res)}")


def n_text(res: st.TestResult) -> str:
    """What n counts in one comparison: ``3 seeds × 360 cases`` (``3 vs 5 seeds`` unpaired)."""
    a, b = res.extra.get("seeds_a", res.n), res.extra.get("seeds_b", res.n)
    b = a if b == 0 else b   # one-sample (against a quoted number): one side
    seeds = f"{a} seed{'s' if a != 1 else ''}" if a == b else f"{a} vs {b} seeds"
    cases = res.extra.get("cases")
    return seeds + (f" × {cases} cases" if cases else "")


_TEST_PROSE = {
    inf.PAIRED: "paired seeds + cases (per-seed differences; the test-sample variance from the per-case tables)",
    inf.UNPAIRED: "unpaired seeds + cases (the two configurations have different seeds)",
    inf.PAIRED_SEEDS: "paired t over seeds (no per-case term)",
    inf.UNPAIRED_SEEDS: "Welch t over seeds (no per-case term)",
    inf.CASES_ONLY: f"cases only, {inf.CONDITIONAL}",
    inf.ONE_SAMPLE: "one-sample seeds + cases (against a quoted number; the test-sample variance from the per-case tables)",
    inf.ONE_SAMPLE_SEEDS: "one-sample t over seeds (against a quoted number; no per-case term)",
}


def footnote(metrics: dict[str, list], alpha: float, test: str = "seeds") -> str:
    """The table's footnote: marks, correction, α, and per metric the test used and what n counts
    (``metrics``: metric -> [pairs in its column, its comparisons])."""
    if not metrics:
        return ""
    groups: dict[tuple[str, str], list[str]] = {}
    few = set()
    for metric, (_, tests) in metrics.items():
        for res in tests:
            groups.setdefault((res.test, n_text(res)), [])
            if metric not in groups[(res.test, n_text(res))]:
                groups[(res.test, n_text(res))].append(metric)
            if not math.isfinite(res.pvalue):
                few.add(metric)
    pairs = sorted({p for p, _ in metrics.values()})
    family = f"{pairs[0]}" if len(pairs) == 1 else f"{pairs[0]}–{pairs[-1]}"
    parts = [f"{_TEST_PROSE.get(name, name)}: {', '.join(ms)} (n = {n})" for (name, n), ms in groups.items()]
    text = (f"Marked: significantly worse than the best configuration of its column, two-sided, α = {alpha:g}, "
            f"corrected over all pairwise comparisons of the column ({family} pairs; Shaffer's step-down, a sharper "
            f"Holm), so that choosing the best from the same numbers cannot inflate the error. Tests: "
            f"{'; '.join(parts)}. "
            + ("The training seed is the unit of replication: n counts seeds per configuration; the test cases enter "
               "through the case term." if test == "seeds" else
               "These p-values are conditional on these trained models; seed variance ignored."))
    if few:
        text += f" Not tested (fewer than 2 seeds on a side): {', '.join(sorted(few))}."
    return text


def summary_ci(results: Results, store, split: str = "test", summary: pd.DataFrame | None = None,
               level: float = 0.95, case_cache: CaseCache | None = None) -> pd.DataFrame:
    """The leaderboard summary with a ``level`` CI of each mean (:func:`results.inference.mean_interval`):
    ``ci_low``, ``ci_high`` and ``ci_over`` -- ``"seeds+cases"`` (the seed spread and the test-sample
    error from the per-case tables), ``"seeds"`` (t over seeds, no per-case data), ``"cases (1 seed)"``
    or ``""`` (nothing to go on)."""
    if summary is None:
        summary = summarize(results, split)[0]
    frame = results.frame
    index = _RunIndex(frame[frame["split"] == split])
    cases = case_cache if case_cache is not None else (CaseCache(store) if store is not None else None)
    if cases is not None:
        cases.prefetch(k for r in summary.itertuples(index=False) if r.task not in UNTESTED_TASKS + SEED_LEVEL_TASKS
                       for k in index.keys((r.dataset, r.task, r.metric, r.config_id)))
    lows, highs, over = [], [], []
    for r in summary.itertuples(index=False):
        use = cases if r.task not in UNTESTED_TASKS + SEED_LEVEL_TASKS else None
        c = _config(index, use, r.dataset, r.task, r.metric, r.config_id)
        cov = inf.case_covariance(c.influences) if c.has_cases else None
        lo, hi, how = inf.mean_interval(c.values, cov, level)
        lows.append(lo)
        highs.append(hi)
        over.append(how)
    return summary.assign(ci_low=lows, ci_high=highs, ci_over=over)


#: the columns :func:`with_significance` adds to a summary (CSV / JSON)
SIGNIFICANCE_COLUMNS = ["worse_than_best", "test", "diff_vs_best", "diff_ci_low", "diff_ci_high", "p", "p_adjusted",
                        "df", "n_seeds", "n_cases", "pairs", "test_note"]


def with_significance(summary: pd.DataFrame, significance: Significance) -> pd.DataFrame:
    """``summary`` with, per cell, its comparison with the column's best: ``worse_than_best``
    (marked), ``test`` (the test used; ``best`` for the reference), ``diff_vs_best`` (this
    configuration - the best) with its CI ``diff_ci_low``/``diff_ci_high``, ``p`` and the Holm-
    adjusted ``p_adjusted``, the degrees of freedom ``df``, ``n_seeds`` (seeds of this
    configuration), ``n_cases`` (test cases), ``pairs`` (Holm family size) and ``test_note``."""
    keys = list(zip(summary["dataset"], summary["task"], summary["metric"], summary["config_id"]))
    tests = significance.tests
    best = {(*col, c) for col, c in significance.best.items()}
    nan = float("nan")
    rows = []
    for k in keys:
        r = tests.get(k)
        if r is None:
            rows.append({"worse_than_best": False, "test": "best" if k in best else "", "diff_vs_best": nan,
                         "diff_ci_low": nan, "diff_ci_high": nan, "p": nan, "p_adjusted": nan, "df": nan,
                         "n_seeds": nan, "n_cases": nan, "pairs": significance.pairs.get(k[:3], nan), "test_note": ""})
            continue
        rows.append({"worse_than_best": k in significance.marks, "test": r.test, "diff_vs_best": -r.effect,
                     "diff_ci_low": -r.ci_high, "diff_ci_high": -r.ci_low, "p": r.pvalue, "p_adjusted": r.p_adjusted,
                     "df": r.df, "n_seeds": r.extra.get("seeds_b", r.n), "n_cases": r.extra.get("cases") or nan,
                     "pairs": significance.pairs.get(k[:3], nan), "test_note": r.note})
    extra = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS, index=summary.index)
    return pd.concat([summary, extra], axis=1)
