"""Statistical tests for comparing configurations (pure numpy / pandas / SciPy; no torch, no bench).

Paired tests on per-case outcomes of the same test cases (each returns a :class:`TestResult`):

* :func:`wilcoxon_paired` -- Wilcoxon signed-rank (SciPy) for per-case Dice, loss, absolute error.
* :func:`mcnemar_exact` -- McNemar's test, exact conditional binomial test on the discordant pairs.
* :func:`delong` -- DeLong, DeLong & Clarke-Pearson (1988) test of two correlated AUROCs, computed
  with the fast mid-rank algorithm of Sun & Xu (2014).
* :func:`paired_bootstrap` -- paired (optionally cluster) bootstrap of any statistic's difference.
* :func:`seed_paired` -- paired t-test over seeds, when only per-seed means exist.

Many methods over many datasets (Demšar 2006): :func:`friedman_nemenyi`,
:func:`wilcoxon_holm_vs_control`; multiple-comparison corrections :func:`holm` and :func:`shaffer`
(all pairwise comparisons); Bayesian view
:func:`bayesian_signed_rank` (Benavoli et al. 2017); summary interval :func:`bootstrap_ci`.

Conventions: ``a`` and ``b`` are the two configurations' paired outcomes; every effect is
``a - b`` (positive: ``a`` has the larger value, whatever the metric's direction). ``alternative``
is SciPy's: ``"two-sided"``, ``"greater"`` (a > b) or ``"less"`` (a < b). docs/statistics.md
describes the methods.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class TestResult:
    """One comparison: ``effect`` is ``a - b`` with its ``level`` CI; ``p_adjusted`` is set by
    callers that correct for multiple comparisons (NaN otherwise); ``se`` and ``df``: the standard
    error and degrees of freedom of a t-type test (:mod:`results.inference`; NaN for others)."""

    __test__ = False  # not a pytest class

    test: str
    statistic: float
    pvalue: float
    n: int
    effect: float
    effect_name: str
    ci_low: float
    ci_high: float
    alternative: str = "two-sided"
    level: float = 0.95
    extra: dict = field(default_factory=dict)
    note: str = ""
    p_adjusted: float = float("nan")
    se: float = float("nan")
    df: float = float("nan")


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}; expected one of {ALTERNATIVES}")


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _mean_ci(d: np.ndarray, level: float) -> tuple[float, float]:
    """Student-t interval of the mean of ``d``."""
    n = d.size
    if n < 2:
        return float("nan"), float("nan")
    half = float(special.stdtrit(n - 1, 0.5 + level / 2)) * d.std(ddof=1) / math.sqrt(n)
    m = d.mean()
    return float(m - half), float(m + half)


# --------------------------------------------------------------------------- multiple comparisons
def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (same order as given; NaNs stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def shaffer_counts(k: int) -> list[int]:
    """S(k): the possible numbers of true hypotheses among the k(k-1)/2 pairwise equalities of k
    means (Shaffer 1986): ``S(k) = union over j = 1..k of {C(j, 2) + x : x in S(k - j)}``."""
    memo: dict[int, set[int]] = {0: {0}, 1: {0}}
    for n in range(2, k + 1):
        memo[n] = {j * (j - 1) // 2 + x for j in range(1, n + 1) for x in memo[n - j]}
    return sorted(memo[max(k, 0)])


def shaffer(pvalues, k: int) -> np.ndarray:
    """Shaffer's (1986) static procedure for all k(k-1)/2 pairwise comparisons of k means:
    Holm's step-down with the i-th smallest p-value multiplied by ``t_i``, the largest number of
    hypotheses that can still be true given that i - 1 are false (``max {s in S(k) : s <= m - i + 1}``),
    instead of ``m - i + 1``; adjusted p-values are made monotone. Strong FWER control under any
    dependence (García & Herrera 2008 recommend it for comparing classifiers). NaNs stay NaN
    and are never rejected (they keep their place in the count)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = k * (k - 1) // 2
    if p.size != m:
        raise ValueError(f"Shaffer needs the k(k-1)/2 = {m} pairwise p-values of k = {k} means; got {p.size}")
    out = np.full(p.shape, np.nan)
    if m == 0:
        return out
    counts = np.asarray(shaffer_counts(k))
    t = np.array([counts[counts <= m - i].max() for i in range(m)], dtype=np.float64)
    filled = np.where(np.isfinite(p), p, 1.0)
    order = np.argsort(filled, kind="stable")
    adjusted = np.minimum(np.maximum.accumulate(t * filled[order]), 1.0)
    out[order] = adjusted
    out[~np.isfinite(p)] = np.nan
    return out


# --------------------------------------------------------------------------- paired per-case tests
def wilcoxon_paired(a, b, alternative: str = "two-sided", level: float = 0.95) -> TestResult:
    """Wilcoxon signed-rank test of ``a - b`` (SciPy; zero differences dropped, ``zero_method="wilcox"``).

    Effect: mean difference with a t interval; ``extra`` holds the matched-pairs rank-biserial
    correlation ``(R+ - R-) / (R+ + R-)`` over the non-zero differences (Kerby 2014) and the median
    difference."""
    _check_alternative(alternative)
    a, b = _pairs(a, b)
    d = a - b
    lo, hi = _mean_ci(d, level)
    nz = d[d != 0]
    if nz.size:
        ranks = stats.rankdata(np.abs(nz))
        r_plus, r_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
        rbc = float((r_plus - r_minus) / (r_plus + r_minus))
    else:
        rbc = 0.0
    extra = {"rank_biserial": rbc, "median_difference": float(np.median(d)) if d.size else float("nan")}
    if nz.size == 0:
        return TestResult("Wilcoxon signed-rank", 0.0, 1.0, int(d.size), float(d.mean()) if d.size else float("nan"),
                          "mean difference", lo, hi, alternative, level, extra, "all differences are zero")
    res = stats.wilcoxon(a, b, zero_method="wilcox", alternative=alternative)
    return TestResult("Wilcoxon signed-rank", float(res.statistic), float(res.pvalue), int(d.size), float(d.mean()),
                      "mean difference", lo, hi, alternative, level, extra)


def mcnemar_exact(correct_a, correct_b, alternative: str = "two-sided", level: float = 0.95) -> TestResult:
    """McNemar's test as the exact conditional binomial test on the discordant pairs.

    ``n10`` = cases only ``a`` gets right, ``n01`` = cases only ``b`` gets right; under H0
    ``n10 ~ Binomial(n10 + n01, 1/2)``. The two-sided p-value doubles the smaller tail (SciPy's
    ``binomtest``; equal to statsmodels' ``mcnemar(exact=True)``). Effect: accuracy difference
    ``(n10 - n01) / n`` with a Wald interval for paired proportions; ``extra`` holds the counts
    and the conditional odds ratio ``n10 / n01``."""
    _check_alternative(alternative)
    a, b = _pairs(correct_a, correct_b)
    a, b = a.astype(bool), b.astype(bool)
    n = int(a.size)
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    disc = n10 + n01
    effect = (n10 - n01) / n if n else float("nan")
    se = math.sqrt(max(disc - (n10 - n01) ** 2 / n, 0.0)) / n if n else float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    extra = {"n10": n10, "n01": n01, "odds_ratio": n10 / n01 if n01 else float("inf") if n10 else float("nan")}
    p = 1.0 if disc == 0 else float(stats.binomtest(n10, disc, 0.5, alternative=alternative).pvalue)
    return TestResult("McNemar exact", float(n10), p, n, float(effect), "accuracy difference", effect - z * se,
                      effect + z * se, alternative, level, extra, "no discordant pairs" if disc == 0 else "")


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components by mid-ranks (Sun & Xu 2014): for each score row, ``V10`` per positive
    (fraction of negatives it beats, ties 1/2) and ``V01`` per negative (fraction of positives
    that beat it); rows of ``scores`` are the classifiers."""
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tz = np.apply_along_axis(stats.rankdata, 1, np.concatenate([pos, neg], axis=1))
    tx = np.apply_along_axis(stats.rankdata, 1, pos)
    ty = np.apply_along_axis(stats.rankdata, 1, neg)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return v10, v01


def delong_cov(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of the rows of ``scores`` (k × N) and DeLong's k × k covariance matrix
    ``S10 / m + S01 / n`` (m positives, n negatives) from the structural components."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    v10, v01 = _placements(y, s)
    m, n = v10.shape[1], v01.shape[1]
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong(y_true, score_a, score_b, alternative: str = "two-sided", level: float = 0.95, replicate=None,
           unit=None) -> TestResult:
    """DeLong's test of AUROC(a) = AUROC(b) on the same cases (DeLong et al. 1988; Sun & Xu 2014).

    ``z = (AUC_a - AUC_b) / sqrt(V_a + V_b - 2 C_ab)`` with the structural-component (placement)
    covariance. With ``replicate`` (e.g. the training seed) and ``unit`` (the case id) the same
    cases scored in several replicates are handled as clusters: placements are computed within
    each replicate, averaged per case, and the variance is taken over cases, so the statistic is
    the mean over replicates of the AUROC difference and a case counts once in the variance.
    Effect: AUROC difference with a normal interval; ``extra`` holds both AUROCs."""
    _check_alternative(alternative)
    y = np.asarray(y_true).astype(bool).ravel()
    sa, sb = np.asarray(score_a, dtype=np.float64).ravel(), np.asarray(score_b, dtype=np.float64).ravel()
    if not (y.size == sa.size == sb.size):
        raise ValueError("y_true, score_a and score_b differ in length")
    if replicate is None:
        if y.all() or not y.any():
            return _undefined_auc(y.size, alternative, level)
        aucs, cov = delong_cov(y, np.vstack([sa, sb]))
        n_units = y.size
    else:
        rep = np.asarray(replicate).ravel()
        units = np.asarray(unit).ravel() if unit is not None else np.arange(y.size)
        rows = []
        for r in pd.unique(rep):
            idx = np.flatnonzero(rep == r)
            yr = y[idx]
            if yr.all() or not yr.any():
                continue
            v10, v01 = _placements(yr, np.vstack([sa[idx], sb[idx]]))
            comp = np.empty((2, idx.size))
            comp[:, yr], comp[:, ~yr] = v10, v01
            rows.append(pd.DataFrame({"unit": units[idx], "pos": yr, "a": comp[0], "b": comp[1]}))
        if not rows:
            return _undefined_auc(y.size, alternative, level)
        per = pd.concat(rows).groupby(["unit", "pos"], sort=False)[["a", "b"]].mean().reset_index()
        p, q = per[per["pos"]], per[~per["pos"]]
        if len(p) < 2 or len(q) < 2:
            return _undefined_auc(y.size, alternative, level)
        v10, v01 = p[["a", "b"]].to_numpy().T, q[["a", "b"]].to_numpy().T
        aucs = v10.mean(axis=1)
        cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
        n_units = len(per)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    extra = {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "var": var, "units": int(n_units)}
    zc = stats.norm.ppf(0.5 + level / 2)
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        return TestResult("DeLong", float("nan"), p, int(y.size), diff, "AUROC difference", diff, diff, alternative,
                          level, extra, "zero variance")
    z = diff / se
    p = {"two-sided": 2 * stats.norm.sf(abs(z)), "greater": stats.norm.sf(z), "less": stats.norm.cdf(z)}[alternative]
    return TestResult("DeLong", float(z), float(p), int(y.size), diff, "AUROC difference", diff - zc * se,
                      diff + zc * se, alternative, level, extra)


def _undefined_auc(n: int, alternative: str, level: float) -> TestResult:
    nan = float("nan")
    return TestResult("DeLong", nan, nan, n, nan, "AUROC difference", nan, nan, alternative, level, {},
                      "AUROC undefined: a class is missing")


def paired_bootstrap(a, b, statistic: Callable, n_boot: int = 2000, seed: int = 0, alternative: str = "two-sided",
                     level: float = 0.95, groups=None, vectorized: bool = False) -> TestResult:
    """Paired bootstrap of ``statistic(a) - statistic(b)``.

    ``a`` and ``b`` hold one row per case (arrays of equal length; rows may be vectors, e.g.
    ``(target, prediction)`` pairs). The same resampled rows go to both, which keeps the pairing.
    ``groups`` (optional, one label per row) resamples whole groups (a case scored under several
    seeds) instead of rows. ``vectorized``: ``statistic(x)`` takes ``x`` of shape
    ``(n_boot, n, ...)`` and returns ``n_boot`` values (row resampling only).

    p-value: the bootstrap distribution shifted to the null (Efron & Tibshirani 1993, 16.4):
    two-sided ``(1 + #|d* - d| >= |d|) / (B + 1)``; one-sided counts one tail. CI: percentile."""
    _check_alternative(alternative)
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    rng = np.random.default_rng(seed)
    observed = float(statistic(a) - statistic(b))
    if groups is None:
        idx = rng.integers(0, n, size=(n_boot, n))
        if vectorized:
            boot = np.asarray(statistic(a[idx]), dtype=np.float64) - np.asarray(statistic(b[idx]), dtype=np.float64)
        else:
            boot = np.array([statistic(a[i]) - statistic(b[i]) for i in idx], dtype=np.float64)
        units = n
    else:
        codes, uniq = pd.factorize(np.asarray(groups).ravel())
        members = [np.flatnonzero(codes == g) for g in range(len(uniq))]
        units = len(members)
        draws = rng.integers(0, units, size=(n_boot, units))
        boot = np.empty(n_boot)
        for j, d in enumerate(draws):
            i = np.concatenate([members[g] for g in d])
            boot[j] = statistic(a[i]) - statistic(b[i])
    boot = boot[np.isfinite(boot)]
    if not math.isfinite(observed) or boot.size == 0:
        nan = float("nan")
        return TestResult("paired bootstrap", observed, nan, n, observed, "difference", nan, nan, alternative, level,
                          {"n_boot": n_boot, "units": units}, "statistic undefined")
    centred = boot - observed
    tails = {"two-sided": np.abs(centred) >= abs(observed), "greater": centred >= observed,
             "less": centred <= observed}[alternative]
    p = (1 + int(tails.sum())) / (boot.size + 1)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return TestResult("paired bootstrap", observed, float(p), n, observed, "difference", float(lo), float(hi),
                      alternative, level, {"n_boot": int(boot.size), "units": units})


def seed_paired(a_means, b_means, alternative: str = "two-sided", level: float = 0.95) -> TestResult:
    """Paired t-test over seeds (SciPy ``ttest_rel``) of per-seed values; effect: mean difference
    with its t interval. Fewer than two seeds: p-value NaN."""
    _check_alternative(alternative)
    a, b = _pairs(a_means, b_means)
    d = a - b
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        nan = float("nan")
        return TestResult("paired t-test over seeds", nan, nan, n, mean, "mean difference", nan, nan, alternative,
                          level, {}, "fewer than two shared seeds")
    if np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0
        return TestResult("paired t-test over seeds", float("nan"), p, n, mean, "mean difference", mean, mean,
                          alternative, level, {}, "constant differences")
    # SciPy's ttest_rel, computed directly: a leaderboard makes thousands of these, and the
    # distribution objects' overhead dominated (tests/test_stats.py checks it against ttest_rel)
    t = float(d.mean() / math.sqrt(d.var(ddof=1) / n))
    lower, upper = float(special.stdtr(n - 1, t)), float(special.stdtr(n - 1, -t))
    p = min(1.0, 2 * min(lower, upper)) if alternative == "two-sided" else upper if alternative == "greater" else lower
    lo, hi = _mean_ci(d, level)
    return TestResult("paired t-test over seeds", t, p, n, mean, "mean difference", lo, hi, alternative, level)


# --------------------------------------------------------------------------- summary intervals
def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                 method: str = "BCa") -> tuple[float, float]:
    """Bootstrap CI of the mean of ``values`` (SciPy ``stats.bootstrap``; BCa by default, percentile
    where BCa is undefined). Constant values give a zero-width interval; fewer than two values NaN."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    for how in dict.fromkeys((method, "percentile")):
        with np.errstate(all="ignore"):
            try:
                res = stats.bootstrap((v,), np.mean, n_resamples=n_boot, confidence_level=level, method=how,
                                      random_state=np.random.default_rng(seed), vectorized=True)
            except (ValueError, FloatingPointError):
                continue
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return float("nan"), float("nan")


# --------------------------------------------------------------------------- many methods, many datasets
@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over datasets (rows) and methods (columns), Nemenyi critical difference.

    ``statistic``/``pvalue``: Friedman's chi-square with the tie correction (= SciPy's
    ``friedmanchisquare``), k - 1 degrees of freedom. ``chi2_uncorrected``: Demšar's (2006) eq. without
    the tie correction. ``iman_davenport``/``iman_davenport_p``: ``F_F`` on (k-1, (k-1)(N-1)) d.f.
    from the tie-corrected statistic. ``ranks``: average rank per method (1 = best; ties get the
    average rank). ``cd``: Nemenyi critical difference ``q_alpha sqrt(k(k+1)/(6N))`` with
    ``q_alpha`` the studentized range quantile / sqrt(2)."""

    statistic: float
    pvalue: float
    ranks: pd.Series
    cd: float
    n_datasets: int
    k: int
    alpha: float = 0.05
    chi2_uncorrected: float = float("nan")
    iman_davenport: float = float("nan")
    iman_davenport_p: float = float("nan")
    higher_is_better: bool = True
    dropped: tuple = ()

    @property
    def rejected(self) -> bool:
        return bool(self.pvalue < self.alpha)


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman & Davenport (1980) ``F_F = (N-1) chi2 / (N(k-1) - chi2)`` and its p-value."""
    denom = n * (k - 1) - chi2
    if denom <= 0:
        return float("inf"), 0.0
    f = (n - 1) * chi2 / denom
    return float(f), float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference for ``k`` methods over ``n`` datasets (Demšar 2006, Sec. 3.2.2)."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def _row_ranks(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    return scores.rank(axis=1, ascending=not higher_is_better, method="average")


def friedman_nemenyi(scores: pd.DataFrame, higher_is_better: bool = True, alpha: float = 0.05) -> FriedmanResult:
    """Friedman test and Nemenyi CD on ``scores`` (rows: datasets, columns: methods). Datasets where
    a method has no score are dropped (listed in ``dropped``)."""
    complete = scores.dropna(axis=0, how="any")
    dropped = tuple(scores.index[~scores.index.isin(complete.index)])
    n, k = complete.shape
    if k < 2 or n < 2:
        raise ValueError(f"Friedman test needs at least 2 methods and 2 complete datasets; got {k} and {n}")
    ranks = _row_ranks(complete.astype(np.float64), higher_is_better)
    avg = ranks.mean(axis=0)
    r = ranks.to_numpy()
    chi2_plain = 12.0 * n / (k * (k + 1)) * (float(np.sum(avg.to_numpy() ** 2)) - k * (k + 1) ** 2 / 4.0)
    # tie correction (as SciPy): divide by 1 - sum(t^3 - t) / (n k (k^2 - 1))
    ties = sum(float(np.sum(c ** 3 - c)) for c in (np.unique(row, return_counts=True)[1] for row in r))
    c = 1.0 - ties / (n * k * (k * k - 1))
    chi2 = chi2_plain / c if c > 0 else float("nan")
    p = float(stats.chi2.sf(chi2, k - 1)) if math.isfinite(chi2) else 1.0
    f, fp = iman_davenport(chi2, n, k) if math.isfinite(chi2) else (float("nan"), 1.0)
    return FriedmanResult(float(chi2), p, avg.rename("average rank"), nemenyi_cd(k, n, alpha), n, k, alpha,
                          float(chi2_plain), f, fp, higher_is_better, dropped)


def wilcoxon_holm_vs_control(scores: pd.DataFrame, control: str, higher_is_better: bool = True,
                             alpha: float = 0.05) -> pd.DataFrame:
    """Each method against ``control`` over datasets (rows): Wilcoxon signed-rank (SciPy, zero
    differences split between the signs as Demšar 2006 does, ``zero_method="zsplit"``), Holm-adjusted.

    Returns one row per other method: ``method, n, statistic, pvalue, p_holm, significant,
    mean_difference`` (method - control), ``rank_biserial`` (positive: the method is better)."""
    if control not in scores.columns:
        raise KeyError(f"control {control!r} is not a column of scores")
    rows = []
    for m in scores.columns:
        if m == control:
            continue
        pair = scores[[m, control]].dropna()
        d = (pair[m] - pair[control]).to_numpy(np.float64)
        d = d if higher_is_better else -d
        if d.size == 0 or np.all(d == 0):
            stat, p = float("nan"), 1.0 if d.size else float("nan")
        else:
            res = stats.wilcoxon(d, zero_method="zsplit")
            stat, p = float(res.statistic), float(res.pvalue)
        ranks = stats.rankdata(np.abs(d)) if d.size else np.array([])
        total = ranks.sum()
        rbc = float((ranks[d > 0].sum() - ranks[d < 0].sum()) / total) if total else 0.0
        rows.append({"method": m, "n": int(d.size), "statistic": stat, "pvalue": p,
                     "mean_difference": float((pair[m] - pair[control]).mean()) if d.size else float("nan"),
                     "rank_biserial": rbc})
    out = pd.DataFrame(rows, columns=["method", "n", "statistic", "pvalue", "mean_difference", "rank_biserial"])
    out.insert(4, "p_holm", holm(out["pvalue"].to_numpy()) if len(out) else [])
    out.insert(5, "significant", out["p_holm"] < alpha)
    return out


def bayesian_signed_rank(diffs, rope: float = 0.01, n_samples: int = 50000, seed: int = 0,
                         prior: float = 0.5) -> tuple[float, float, float]:
    """Bayesian signed-rank test (Benavoli et al. 2014, 2017) of ``diffs = a - b`` over datasets.

    A Dirichlet process posterior with a prior pseudo-observation at 0 of weight ``prior``:
    each sample ``w ~ Dirichlet(prior, 1, ..., 1)`` over ``(0, d_1, ..., d_n)`` gives
    ``P(d_i + d_j > 2 rope)``, ``P(|d_i + d_j| <= 2 rope)`` and ``P(d_i + d_j < -2 rope)`` as
    ``sum_ij w_i w_j [.]`` (a sum of exactly 2 rope counts half). Returned: the fraction of samples
    in which each region is the most probable -- (P(A better), P(equivalent), P(B better)), where
    "A better" means larger values. Same sampling as the baycomp package (same random stream)."""
    d = np.asarray(diffs, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    z = np.concatenate([[0.0], d])
    s = z[:, None] + z[None, :]
    above = (s > 2 * rope) + 0.5 * (s == 2 * rope)
    below = (-s > 2 * rope) + 0.5 * (-s == 2 * rope)
    weights = np.ones(z.size)
    weights[0] = prior
    w = np.random.RandomState(seed).dirichlet(weights, n_samples)
    p_above = np.einsum("si,ij,sj->s", w, above, w, optimize=True)
    p_below = np.einsum("si,ij,sj->s", w, below, w, optimize=True)
    samples = np.column_stack([p_above, 1.0 - p_above - p_below, p_below])
    if rope <= 0:
        samples = np.column_stack([p_above, np.zeros_like(p_above), 1.0 - p_above])
    wins = np.bincount(samples.argmax(axis=1), minlength=3) / n_samples
    return float(wins[0]), float(wins[1]), float(wins[2])
