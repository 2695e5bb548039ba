"""Seed-aware comparison of two configurations: the training seed is the unit of replication.

A reader of "A is significantly better than B" means: with new training seeds *and* a new test
sample, A would again come out ahead. Each configuration's runs give one metric value per seed
(the leaderboard's numbers) and, from their per-case tables, the case-sampling covariance of
those values (:mod:`results.influence`). The test of A - B is the Obuchowski-Rockette (1995)
analysis of multi-reader multi-case studies, with training seeds in the place of readers and
test cases in the place of cases, and Hillis's (2007) degrees of freedom:

* seeds shared by A and B (the usual sweep): ``D_s = A_s - B_s``,
  ``SE^2 = s_D^2 / J + 2 max(Cov2 - Cov3, 0)`` where Cov2 is the case covariance of two runs of
  the same configuration with different seeds and Cov3 that of runs of different configurations
  with different seeds; ``df = (J - 1) (1 + J * case / s_D^2)^2``. Without per-case data the case
  term is 0 and this is the paired t-test over seeds (SciPy's ``ttest_rel``). With the case term,
  the degrees of freedom take the seed variance at its one-sided 80% upper confidence limit
  (:data:`SEED_VARIANCE_BOUND`): Hillis's df uses the observed ``s_D^2``, which with 2-4 seeds is
  small by chance often enough to inflate the df exactly when the statistic is large (6-13%
  false positives at 2-3 seeds in simulation; 3.5-5.3% with the bound; docs/statistics.md).
* different seed sets: ``SE^2 = s_A^2/J_A + s_B^2/J_B + max(Cov2_A + Cov2_B - 2 Cov3, 0)`` with
  Welch-Satterthwaite degrees of freedom (SciPy's ``ttest_ind(equal_var=False)`` without cases).
* ``mode="cases"``: conditional on the trained models (seeds fixed, only the test sample random):
  ``SE^2`` = the case variance of the mean difference, a normal reference. It answers another
  question, and its output says "conditional on these trained models; seed variance ignored".

Effect, CI and p are all about the metric itself (the difference of the seed means, the number the
leaderboard shows), so a verdict's direction, interval and p-value cannot disagree.
docs/statistics.md gives the derivation, the literature and the calibration.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import special

from .influence import CaseInfluence
from .stats import TestResult

#: test names (``TestResult.test``); the footnote and docs/statistics.md explain each
PAIRED = "paired seeds + cases"
UNPAIRED = "unpaired seeds + cases"
PAIRED_SEEDS = "paired t over seeds"
UNPAIRED_SEEDS = "Welch t over seeds"
CASES_ONLY = "cases only (seeds fixed)"
ONE_SAMPLE = "one-sample, seeds + cases"
ONE_SAMPLE_SEEDS = "one-sample t over seeds"
CONDITIONAL = "conditional on these trained models; seed variance ignored"
MODES = ("seeds", "cases")
#: confidence of the upper limit of the seed variance used in the degrees of freedom (not in the SE)
SEED_VARIANCE_BOUND = 0.8


def _upper(var: float, df: int) -> float:
    """One-sided SEED_VARIANCE_BOUND upper confidence limit of a variance estimated with ``df``
    degrees of freedom: ``var * df / chi2_{df}(1 - bound)``."""
    return var * df / float(special.chdtri(df, SEED_VARIANCE_BOUND))


def case_covariance(influences: list[CaseInfluence | None]) -> np.ndarray | None:
    """The R x R case-sampling covariance of R runs' metrics (``z_r · z_s`` over the units they
    share), or None when a run has no case influence or the runs' kinds differ."""
    if not influences or any(c is None for c in influences) or len({c.kind for c in influences}) != 1:
        return None
    first = influences[0].units
    if all(c.units is first for c in influences) or \
            all(c.units.shape == first.shape and np.array_equal(c.units, first) for c in influences):
        z = np.vstack([c.z for c in influences])
    else:
        units = np.unique(np.concatenate([c.units for c in influences]))
        z = np.zeros((len(influences), len(units)))
        for i, c in enumerate(influences):
            z[i, np.searchsorted(units, c.units)] = c.z
    return z @ z.T


def _t_p(t: float, df: float) -> float:
    """Two-sided p of a t statistic (normal when df is infinite)."""
    if math.isinf(df):
        return float(special.erfc(abs(t) / math.sqrt(2)))
    return float(min(1.0, 2 * special.stdtr(df, -abs(t))))


def t_quantile(q: float, df: float) -> float:
    return float(special.ndtri(q)) if math.isinf(df) else float(special.stdtrit(df, q))


def _result(test: str, effect: float, se: float, df: float, level: float, n: int, extra: dict,
            note: str = "") -> TestResult:
    if not math.isfinite(effect) or not math.isfinite(se):
        nan = float("nan")
        return TestResult(test, nan, nan, n, effect, "mean difference", nan, nan, level=level, extra=extra,
                          note=note or "not computable", se=se, df=df)
    if se == 0:
        return TestResult(test, float("nan"), 1.0 if effect == 0 else 0.0, n, effect, "mean difference", effect,
                          effect, level=level, extra=extra, note=(note + "; " if note else "") + "zero variance",
                          se=0.0, df=df)
    t = effect / se
    half = t_quantile(0.5 + level / 2, df) * se
    return TestResult(test, float(t), _t_p(t, df), n, effect, "mean difference", effect - half, effect + half,
                      level=level, extra=extra, note=note, se=float(se), df=float(df))


def _offdiag_mean(block: np.ndarray) -> float:
    j = block.shape[0]
    return float((block.sum() - np.trace(block)) / (j * (j - 1))) if j > 1 else float("nan")


def compare(a_values, b_values, a_seeds, b_seeds, cov: np.ndarray | None = None, mode: str = "seeds",
            level: float = 0.95, cases: int | None = None, scale: float = 1.0) -> TestResult:
    """Test of mean(A) - scale * mean(B) over seeds (``a``/``b``: one metric value per seed;
    ``cov``: the case covariance of the runs, A's then B's in the given order, or None). See the
    module docstring. ``cases``: the number of test cases, for what ``n`` counts. ``scale`` turns a
    relative claim into a linear contrast ("A is 3% above B": A - 1.03 B > 0; "A uses at most 30%
    of B": A - 0.3 B <= 0): B's values and case influences are multiplied by it, which is exact.
    Fewer than two seeds on a side gives no p-value under ``mode="seeds"``."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {MODES}")
    a, b = np.asarray(a_values, dtype=np.float64), np.asarray(b_values, dtype=np.float64) * scale
    if cov is not None and scale != 1.0:
        w = np.r_[np.ones(a.size), np.full(b.size, scale)]
        cov = cov * np.outer(w, w)
    sa, sb = np.asarray(a_seeds), np.asarray(b_seeds)
    ja, jb = a.size, b.size
    effect = float(a.mean() - b.mean()) if ja and jb else float("nan")
    extra = {"seeds_a": int(ja), "seeds_b": int(jb), "cases": cases}
    n = int(min(ja, jb))
    if mode == "cases":
        if cov is None:
            return _result(CASES_ONLY, effect, float("nan"), math.inf, level, n, extra, "no per-case data")
        w = np.r_[np.full(ja, 1.0 / ja), np.full(jb, -1.0 / jb)]
        return _result(CASES_ONLY, effect, math.sqrt(max(float(w @ cov @ w), 0.0)), math.inf, level, n, extra,
                       CONDITIONAL)
    paired = ja == jb and ja > 0 and np.array_equal(np.sort(sa), np.sort(sb))
    name = (PAIRED if paired else UNPAIRED) if cov is not None else (PAIRED_SEEDS if paired else UNPAIRED_SEEDS)
    extra["paired"] = bool(paired)
    if min(ja, jb) < 2:
        return _result(name, effect, float("nan"), math.nan, level, n, extra,
                       f"{min(ja, jb)} seed on a side: the seed variance cannot be estimated (at least 2 needed)")
    if paired:
        oa, ob = np.argsort(sa, kind="stable"), np.argsort(sb, kind="stable")
        d = a[oa] - b[ob]
        s2 = float(d.var(ddof=1))
        case = 0.0
        if cov is not None:
            order = np.r_[oa, ja + ob]
            c = cov[np.ix_(order, order)]
            cov2 = (_offdiag_mean(c[:ja, :ja]) + _offdiag_mean(c[ja:, ja:])) / 2
            cab = c[:ja, ja:]
            cov3 = _offdiag_mean(cab)
            case = 2 * max(cov2 - cov3, 0.0)
            extra["case_var"] = case
        seed_var = s2 / ja
        se2 = seed_var + case
        df = (ja - 1) * (1 + ja * case / _upper(s2, ja - 1)) ** 2 if s2 > 0 else math.inf
    else:
        va, vb = float(a.var(ddof=1)) / ja, float(b.var(ddof=1)) / jb
        case = 0.0
        if cov is not None:
            cov3 = float(cov[:ja, ja:].mean())
            case = max(_offdiag_mean(cov[:ja, :ja]) + _offdiag_mean(cov[ja:, ja:]) - 2 * cov3, 0.0)
            extra["case_var"] = case
        seed_var = va + vb
        se2 = seed_var + case
        if case > 0:   # Welch-Satterthwaite with the seed variances at their upper limits (as paired)
            va, vb = _upper(va, ja - 1), _upper(vb, jb - 1)
        denom = (va ** 2 / (ja - 1) if va else 0.0) + (vb ** 2 / (jb - 1) if vb else 0.0)
        df = (va + vb + case) ** 2 / denom if denom > 0 else math.inf
    extra["seed_var"] = seed_var
    return _result(name, effect, math.sqrt(se2), df, level, n, extra)


def mean_interval(values, cov: np.ndarray | None = None, level: float = 0.95) -> tuple[float, float, str]:
    """``level`` CI of one configuration's mean over seeds: ``s^2 / J + max(Cov2, 0)`` (the
    seed spread and the test-sample error its seeds share), degrees of freedom as :func:`compare`'s; with one
    seed the case variance alone (``"cases (1 seed)"``); without per-case data the t interval over
    seeds (``"seeds"``). Returns (low, high, what it is over)."""
    v = np.asarray(values, dtype=np.float64)
    j = v.size
    nan = float("nan")
    if j == 0 or not np.isfinite(v).all():
        return nan, nan, ""
    m = float(v.mean())
    if j == 1:
        if cov is None:
            return nan, nan, ""
        half = t_quantile(0.5 + level / 2, math.inf) * math.sqrt(max(float(cov[0, 0]), 0.0))
        return m - half, m + half, "cases (1 seed)"
    s2 = float(v.var(ddof=1)) / j
    case = max(_offdiag_mean(cov), 0.0) if cov is not None else 0.0
    se2 = s2 + case
    df = (j - 1) * (1 + case / _upper(s2, j - 1)) ** 2 if s2 > 0 else math.inf
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
    return m - half, m + half, "seeds+cases" if cov is not None else "seeds"


def versus_value(values, value: float, cov: np.ndarray | None = None, level: float = 0.95,
                 cases: int | None = None) -> TestResult:
    """One-sample test of mean(A) - ``value`` (a number quoted from a paper): the standard error of
    :func:`mean_interval` (the seed spread and the test-sample error the seeds share), its degrees
    of freedom; with one seed and per-case data the case variance alone (conditional, a normal
    reference); fewer seeds and no case data gives no p-value."""
    v = np.asarray(values, dtype=np.float64)
    j = v.size
    effect = float(v.mean() - value) if j else float("nan")
    extra = {"seeds_a": int(j), "seeds_b": 0, "cases": cases, "value": float(value)}
    name = ONE_SAMPLE if cov is not None else ONE_SAMPLE_SEEDS
    if j < 2:
        if cov is None or j == 0:
            return _result(name, effect, float("nan"), math.nan, level, j, extra,
                           f"{j} seed: the seed variance cannot be estimated (at least 2 needed)")
        return _result(name, effect, math.sqrt(max(float(cov[0, 0]), 0.0)), math.inf, level, j, extra, CONDITIONAL)
    s2 = float(v.var(ddof=1)) / j
    case = max(_offdiag_mean(cov), 0.0) if cov is not None else 0.0
    df = (j - 1) * (1 + case / _upper(s2, j - 1)) ** 2 if s2 > 0 else math.inf
    extra.update(seed_var=s2, case_var=case)
    return _result(name, effect, math.sqrt(s2 + case), df, level, j, extra)


def mean_of(results: list[TestResult], level: float = 0.95) -> TestResult:
    """The mean of independent comparisons (one per dataset: other test cases, other training
    runs): effect = mean of the effects, SE^2 = sum SE_i^2 / D^2, Welch-Satterthwaite degrees of
    freedom; NaN when any part is not computable."""
    d = len(results)
    effect = float(np.mean([r.effect for r in results])) if d else float("nan")
    var = [r.se ** 2 for r in results]
    extra = {"parts": d, "seeds_a": min((r.extra.get("seeds_a", 0) for r in results), default=0),
             "seeds_b": min((r.extra.get("seeds_b", 0) for r in results), default=0),
             "cases": sum((r.extra.get("cases") or 0) for r in results) or None}
    name = "mean over datasets of: " + ", ".join(sorted({r.test for r in results}))
    if not d or not all(math.isfinite(v) for v in var) or not all(r.df == r.df for r in results):
        return _result(name, effect, float("nan"), math.nan, level, d, extra, "a dataset's test is not computable")
    denom = sum(v * v / r.df for v, r in zip(var, results) if math.isfinite(r.df) and r.df > 0)
    df = sum(var) ** 2 / denom if denom > 0 else math.inf
    return _result(name, effect, math.sqrt(sum(var)) / d, df, level, min(r.n for r in results), extra)


def one_sided_p(result: TestResult, bound: float, above: bool) -> float:
    """p of the one-sided test "the difference is at most ``bound``" (``above=True``: evidence
    that it is above) or "at least ``bound``" (``above=False``), e.g. the two halves of TOST."""
    se, df = result.se, result.df
    if not (math.isfinite(result.effect) and se == se):
        return float("nan")
    if se == 0:
        return 0.0 if (result.effect > bound if above else result.effect < bound) else 1.0
    t = (result.effect - bound) / se
    return float(special.ndtr(-t) if math.isinf(df) else special.stdtr(df, -t)) if above else \
        float(special.ndtr(t) if math.isinf(df) else special.stdtr(df, t))


def detectable(result: TestResult, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference this comparison's design would detect with probability
    ``power`` by a two-sided test at level ``alpha``: ``(t_{1-alpha/2} + t_{power}) * SE`` with the
    comparison's SE and degrees of freedom (NaN when they could not be estimated)."""
    se, df = result.se, result.df
    if not (math.isfinite(se) and df == df and df > 0):
        return float("nan")
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


def shifted(result: TestResult, size: float) -> TestResult:
    """The same comparison tested against ``effect = size`` instead of 0 (a claimed size):
    same estimate, CI and degrees of freedom; statistic and p of ``(effect - size) / SE``."""
    if not size or not math.isfinite(result.se):
        return result
    if result.se == 0:   # a quantity without variance (a parameter count): exact
        return replace(result, pvalue=1.0 if result.effect == size else 0.0)
    t = (result.effect - size) / result.se
    return replace(result, statistic=float(t), pvalue=_t_p(t, result.df))
