"""Calibration of the tests the leaderboard and ``bench verify`` use, measured on real runs.

One configuration trained with N seeds is split at random into two pseudo-methods of S seeds each
(an A/A comparison: the truth is "no difference"). Every test is run on each split; the fraction
flagged is its false-positive rate, the fraction of intervals containing 0 its coverage. Shifting
one side's predictions by known amounts (:func:`shift_rows`) gives the power. Four identical
pseudo-configurations run through the leaderboard's column procedure give the column-wise family
error, and the claims rule (:func:`results.claims.verdict`) the rate of A/A claims supported or
refuted. ``python -m bench calibrate`` (bench/calibrate.py) trains or reuses the runs and prints
:func:`report` of :func:`calibrate`; a unit test feeds it simulated runs with a random effect per
seed. docs/statistics.md ("Calibration") shows the tables.

The pooled per-case tests of earlier versions (McNemar, Wilcoxon, DeLong over (case, seed) pairs)
are run as a reference only: they are not what the leaderboard uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import inference as inf
from . import stats as st
from .influence import SEG_BASES, SEG_PREFIXES, case_influence

#: the tests measured: key -> what the table calls it
TESTS = {"seeds": "default: seeds + cases (paired)", "seeds-unpaired": "default: seeds + cases (unpaired seeds)",
         "cases": "cases only (seeds fixed)", "pooled": "pooled per-case test (earlier versions; reference)"}
#: default planted shifts per metric family (classification: logit of the true class; regression:
#: errors shrunk by this fraction; segmentation: per-case Dice/IoU/NSD raised by it, HD95 shrunk)
SHIFTS = {"classification": (0.25, 0.5, 1.0), "regression": (0.02, 0.05, 0.1), "segmentation": (0.01, 0.02, 0.05)}
_POOLED_MEAN = {"nll": "loss", "bce": "loss", "mae": "abs_error", "mse": "abs_error", "dice": "dice", "iou": "iou",
                "nsd": "nsd", "hd95": "hd95"}


@dataclass
class CalibrationRun:
    """One seed of the configuration: its per-case rows per task (``results.influence`` columns)
    and its stored metric values per (task, metric)."""

    seed: int
    rows: dict[str, dict]
    values: dict[tuple[str, str], float] = field(default_factory=dict)


def family(rows: dict) -> str:
    """The metric family of a task's rows: what a planted shift changes."""
    probs = rows.get("probs")
    if probs is not None and np.ndim(probs) == 2 and np.shape(probs)[1] >= 2:
        return "classification"
    if any(k in rows for k in SEG_BASES):
        return "segmentation"
    return "regression"


def shift_rows(rows: dict, amount: float) -> dict:
    """``rows`` with the predictions made better by ``amount`` (see :data:`SHIFTS`)."""
    out = dict(rows)
    kind = family(rows)
    if kind == "classification":
        y = np.asarray(rows["target"]).astype(np.int64)
        logp = np.log(np.clip(np.asarray(rows["probs"], dtype=np.float64), 1e-300, None))
        logp[np.arange(len(y)), y] += amount
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(axis=1, keepdims=True)
        pred = p.argmax(axis=1)
        out.update(probs=p, pred=pred.astype(np.float64), correct=(pred == y).astype(np.float64),
                   loss=-np.log(p[np.arange(len(y)), y]))
    elif kind == "regression":
        y, pred = np.asarray(rows["target"], dtype=np.float64), np.asarray(rows["pred"], dtype=np.float64)
        new = y + (1 - amount) * (pred - y)
        out.update(pred=new, abs_error=np.abs(new - y), loss=np.asarray(rows["loss"]) * (1 - amount) ** 2)
    else:
        for name in list(rows):
            base = name.split("_", 1)[0] if name.startswith(SEG_PREFIXES) else name
            if base in ("dice", "iou", "nsd"):
                out[name] = np.minimum(np.asarray(rows[name], dtype=np.float64) + amount, 1.0)
            elif base == "hd95":
                out[name] = np.asarray(rows[name], dtype=np.float64) * (1 - amount)
    return out


def pooled_test(metric: str, a_rows: list[dict], b_rows: list[dict]) -> st.TestResult | None:
    """The pooled per-case test of earlier versions: (case, seed) pairs of every seed pooled as
    independent (McNemar exact for accuracy, Wilcoxon signed-rank for per-case values, with MSE on
    the absolute error as it was, DeLong with cases as clusters for a binary AUROC), or None."""
    def cat(rows, col):
        return np.concatenate([np.asarray(r[col], dtype=np.float64) for r in rows]) if all(col in r for r in rows) \
            else None

    if metric in ("accuracy", "subset_accuracy"):
        a, b = cat(a_rows, "correct"), cat(b_rows, "correct")
        return st.mcnemar_exact(a, b) if a is not None and np.isfinite(a).all() else None
    col = _POOLED_MEAN.get(metric) or (metric.split("_", 1)[0] if metric.startswith(SEG_PREFIXES) else None)
    if col is not None:
        if metric.startswith(SEG_PREFIXES) and "class" in a_rows[0]:
            label = metric.split("_", 1)[1]
            a_rows = [{col: np.asarray(r[col])[np.asarray(r["class"]).astype(str) == label]} for r in a_rows]
            b_rows = [{col: np.asarray(r[col])[np.asarray(r["class"]).astype(str) == label]} for r in b_rows]
        a, b = cat(a_rows, col), cat(b_rows, col)
        if a is None or b is None or len(a) != len(b):
            return None
        return st.wilcoxon_paired(a, b)
    if metric == "auroc" and family(a_rows[0]) == "classification" and np.shape(a_rows[0]["probs"])[1] == 2:
        y = cat(a_rows, "target") == 1
        sa = np.concatenate([np.asarray(r["probs"])[:, 1] for r in a_rows])
        sb = np.concatenate([np.asarray(r["probs"])[:, 1] for r in b_rows])
        rep = np.concatenate([np.full(len(r["target"]), i) for i, r in enumerate(a_rows)])
        unit = np.concatenate([np.asarray(r["case_id"]).astype(str) for r in a_rows])
        return st.delong(y, sa, sb, replicate=rep, unit=unit)
    return None


@dataclass
class _Metric:
    """One (task, metric) over the N runs: values per run, the N x N case covariance, the rows."""

    task: str
    metric: str
    higher: bool
    values: np.ndarray
    cov: np.ndarray | None
    rows: list[dict]
    infl: list


def _prepare(runs: list[CalibrationRun], task: str, metric: str, higher: bool, shift: float = 0.0) -> _Metric | None:
    rows = [shift_rows(r.rows[task], shift) if shift else r.rows[task] for r in runs]
    infl = [case_influence(metric, x) for x in rows]
    if shift or any(c is None for c in infl):
        values = np.array([c.value if c is not None else np.nan for c in infl])
        if not shift:   # no per-case influence: the stored values, no case term
            values = np.array([r.values.get((task, metric), np.nan) for r in runs])
    else:
        values = np.array([r.values.get((task, metric), c.value) for r, c in zip(runs, infl)])
    if not np.isfinite(values).all():
        return None
    cov = inf.case_covariance(infl)
    return _Metric(task, metric, higher, values, cov, rows, infl)


def _split_test(m: _Metric, a: np.ndarray, b: np.ndarray, test: str, other: _Metric | None = None,
                alpha: float = 0.05) -> st.TestResult | None:
    """One A/A (or A vs shifted B, ``other``) comparison of runs ``a`` vs ``b`` (indices)."""
    mb = other or m
    if test == "pooled":
        return pooled_test(m.metric, [m.rows[i] for i in a], [mb.rows[i] for i in b])
    va, vb = m.values[a], mb.values[b]
    cov = None
    if m.cov is not None and mb.cov is not None:
        if other is None:
            idx = np.r_[a, b]
            cov = m.cov[np.ix_(idx, idx)]
        else:   # shifted B: its influences against A's
            cov = inf.case_covariance([m.infl[i] for i in a] + [mb.infl[i] for i in b])
    s = len(a)
    seeds_a, seeds_b = (np.arange(s), np.arange(s)) if test != "seeds-unpaired" else (np.arange(s), np.arange(s) + s)
    return inf.compare(va, vb, seeds_a, seeds_b, cov, mode="cases" if test == "cases" else "seeds")


@dataclass
class Row:
    """One line of the calibration table."""

    task: str
    metric: str
    seeds: int
    test: str
    splits: int
    false_positive: float
    coverage: float
    power: dict[float, float] = field(default_factory=dict)
    effect: dict[float, float] = field(default_factory=dict)
    #: simulation error of the false-positive rate (:func:`simulation_error`)
    mc_error: float = float("nan")


def simulation_error(flags: list[bool], members: list[np.ndarray], n: int) -> float:
    """Error of a rate over A/A splits that share runs: the binomial error over the splits in
    quadrature with the finite-population error of using these ``n`` runs, estimated by a
    delete-one-run jackknife whose leave-one-out rates (over the splits without that run) have
    their own Monte-Carlo noise subtracted (uncorrected, the jackknife multiplies it by n - 1)."""
    f = np.asarray(flags, dtype=np.float64)
    if not f.size:
        return float("nan")
    p = f.mean()
    binomial2 = p * (1 - p) / f.size
    used = np.zeros((f.size, n), dtype=bool)
    for i, m in enumerate(members):
        used[i, m] = True
    loo, noise = [], []
    for j in range(n):
        keep = ~used[:, j]
        if keep.sum() >= 2:
            q = f[keep].mean()
            loo.append(q)
            noise.append(q * (1 - q) / keep.sum())
    if len(loo) < 2:
        return math.sqrt(binomial2)
    loo, noise = np.asarray(loo), np.asarray(noise)
    k = len(loo)
    jack = (k - 1) / k * (np.sum((loo - loo.mean()) ** 2) - (1 - 1 / k) * noise.sum())
    return math.sqrt(binomial2 + max(jack, 0.0))


@dataclass
class Calibration:
    rows: list[Row]
    family: list[dict]
    claims: list[dict]
    runs: int
    alpha: float


def calibrate(runs: list[CalibrationRun], metrics: list[tuple[str, str, bool]], sizes=(1, 3, 5), splits: int = 1000,
              shifts: dict[str, tuple[float, ...]] | None = None, alpha: float = 0.05, seed: int = 0,
              pooled_splits: int = 300, tests=tuple(TESTS), progress=None) -> Calibration:
    """Error rates, coverage and power of every test on A/A splits of ``runs`` (see the module
    docstring). ``metrics``: (task, metric, higher is better); ``sizes``: seeds per side;
    ``pooled_splits``: splits for the (slower) pooled reference tests."""
    from .claims import orient, verdict
    from .significance import _Config, column_tests

    rng = np.random.default_rng(seed)
    n = len(runs)
    rows, fam, claims = [], [], []
    shifts = shifts or SHIFTS
    for task, metric, higher in metrics:
        base = _prepare(runs, task, metric, higher)
        if base is None:
            continue
        amounts = shifts.get(family(runs[0].rows[task]), ())
        shifted = {d: _prepare(runs, task, metric, higher, d) for d in amounts}
        for s in sizes:
            if 2 * s > n:
                continue
            draws = [rng.permutation(n)[: 2 * s] for _ in range(splits)]
            for test in tests:
                reps = min(splits, pooled_splits) if test == "pooled" else splits
                flags, members, covered, intervals, done = [], [], 0, 0, 0
                supported = refuted = 0
                for d in draws[:reps]:
                    res = _split_test(base, d[:s], d[s:], test)
                    if res is None:
                        break
                    done += 1
                    flags.append(bool(res.pvalue < alpha))
                    members.append(d)
                    if math.isfinite(res.ci_low) and math.isfinite(res.ci_high):
                        intervals += 1
                        covered += bool(res.ci_low <= 0 <= res.ci_high)
                    if test == "seeds":
                        sign = orient(higher, "better")
                        lo, hi = sorted((sign * res.ci_low, sign * res.ci_high))
                        v = verdict(sign * res.effect, lo, hi, res.pvalue, alpha, None, (s, s))[0]
                        supported += v == "supported"
                        refuted += v == "refuted"
                if not done:
                    continue
                row = Row(task, metric, s, test, done, float(np.mean(flags)),
                          covered / intervals if intervals else float("nan"), mc_error=simulation_error(flags, members, n))
                for amount, sh in shifted.items():
                    if sh is None:
                        continue
                    hits, eff, m = 0, [], min(done, max(splits // 4, 50))
                    for d in draws[:m]:
                        res = _split_test(base, d[:s], d[s:], test, other=sh)
                        if res is None or not math.isfinite(res.effect):
                            continue
                        truth = float(base.values.mean() - sh.values.mean())
                        eff.append(truth)
                        hits += bool(res.pvalue < alpha and np.sign(res.effect) == np.sign(truth))
                    if eff:
                        row.power[amount], row.effect[amount] = hits / len(eff), float(np.mean(eff))
                rows.append(row)
                if test == "seeds":
                    claims.append({"task": task, "metric": metric, "seeds": s, "splits": done,
                                   "supported": supported, "refuted": refuted})
                if progress:
                    progress(f"{task}/{metric} S={s} {test}")
            # the leaderboard's column with four identical configurations
            if 4 * s <= n:
                flags, members = [], []
                for _ in range(splits // 2):
                    perm = rng.permutation(n)[: 4 * s].reshape(4, s)
                    members.append(perm.ravel())
                    configs = {f"c{i}": _Config(np.arange(s), base.values[g], [base.infl[j] for j in g]
                                                if base.cov is not None else [None] * s)
                               for i, g in enumerate(perm)}
                    means = {c: v.values.mean() for c, v in configs.items()}
                    best = max(means, key=means.get) if higher else min(means, key=means.get)
                    flags.append(bool(column_tests(configs, best, higher, alpha)[1]))
                fam.append({"task": task, "metric": metric, "seeds": s, "columns": len(flags),
                            "family_error": float(np.mean(flags)), "error": simulation_error(flags, members, n)})
    return Calibration(rows, fam, claims, n, alpha)


def report(cal: Calibration) -> str:
    """The calibration as Markdown tables (docs/statistics.md shows them)."""
    lines = [f"A/A calibration over {cal.runs} seeds of one configuration, α = {cal.alpha:g}. False positives: "
             "the share of A/A splits flagged, ± its simulation error (the binomial error over the splits and a "
             "jackknife over the seeds for using these runs only). Coverage: the share of 95% CIs containing 0 "
             "(— where no interval exists: one seed per side). Power: the share of splits flagged the right way when "
             "one side's predictions are shifted (the realised difference of the means in brackets).", "",
             "| task | metric | seeds/side | test | splits | false positives | coverage | power (shift: difference) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in cal.rows:
        power = "; ".join(f"{d:g}: {p:.2f} ({r.effect[d]:+.3g})" for d, p in r.power.items()) or "—"
        fp = f"{100 * r.false_positive:.1f}% ± {100 * r.mc_error:.1f}"
        cov = f"{100 * r.coverage:.1f}%" if math.isfinite(r.coverage) else "—"
        lines.append(f"| {r.task} | {r.metric} | {r.seeds} | {TESTS[r.test]} | {r.splits} | {fp} | {cov} | {power} |")
    if cal.family:
        lines += ["", "Leaderboard column with 4 identical configurations (best chosen from the data, Shaffer over all "
                  "6 pairs): share of columns with any †.", "", "| task | metric | seeds/config | columns | family error |",
                  "|---|---|---|---|---|"]
        for f in cal.family:
            lines.append(f"| {f['task']} | {f['metric']} | {f['seeds']} | {f['columns']} | "
                         f"{100 * f['family_error']:.1f}% ± {100 * f['error']:.1f} |")
    if cal.claims:
        lines += ["", "Claims (`bench verify`'s rule, min_seeds 3) on A/A splits: \"A beats B\" supported or refuted.", "",
                  "| task | metric | seeds/side | splits | supported | refuted |", "|---|---|---|---|---|---|"]
        for c in cal.claims:
            lines.append(f"| {c['task']} | {c['metric']} | {c['seeds']} | {c['splits']} | {c['supported']} | "
                         f"{c['refuted']} |")
    return "\n".join(lines)
