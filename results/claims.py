"""Claims verification: test each claim of a claims file on the run store and give a verdict.

A claim says that a *method* beats a *baseline* on one or more datasets in one metric, maybe by at
least a claimed size (``bench.verify`` reads the YAML file, finds or runs the jobs and hands this
module one :class:`Check` per claim and dataset). Per check:

* the two sides' test-split runs are compared with the seed-aware test the leaderboard uses
  (:func:`results.significance.compare_configs`: the training seed is the unit of replication,
  the test-sample variance comes from the per-case tables), two-sided, with its 95% CI; the
  effect is ``method - baseline``, the difference of the seed means;
* the *advantage* is the effect turned so that positive means "in the claimed direction"; the
  null hypothesis of a check is "advantage = claimed size" (0 without a size), and the p-values of
  every check of the file are Holm-corrected together (:func:`results.stats.holm`);
* :func:`verdict` decides, with at least ``min_seeds`` seeds per side (default 3):

  - **supported**: Holm-adjusted p < alpha and the CI of the advantage lies wholly above the
    claimed size (above 0 without one);
  - **refuted**: Holm-adjusted p < alpha and the CI lies wholly below it;
  - **inconclusive**: anything else, with the smallest difference from the claimed value the
    design could have detected at 80% power (:func:`results.inference.detectable`); and always
    with fewer than ``min_seeds`` seeds on a side ("inconclusive: 1 seed per side (at least 3
    needed)"): one seed cannot show that another seed would agree.

A claim over several datasets ("on every dataset") is **refuted** when any dataset is refuted,
else **not checkable here** when any dataset could not be checked, else **supported** when every
dataset is supported, else **inconclusive**. A dataset whose data (or a method) is missing here is
**not checkable here**, with what is missing. docs/claims.md describes the rules.

No torch here: results/ reads the store only.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from . import inference as inf
from . import stats as st
from .significance import SEED_LEVEL_TASKS, UNTESTED_TASKS, CaseCache, compare_configs, config_of_runs, n_text

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_CHECKABLE = "supported", "refuted", "inconclusive", "not checkable here"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_CHECKABLE)
DIRECTIONS = ("better", "worse", "noninferior", "equivalent")
#: claim kinds (docs/claims.md "Claim kinds"): what is compared and how
KINDS = ("difference", "relative", "ratio", "noninferior", "equivalent", "value", "all_of")
#: cost fields of a run record a claim can name, with their direction (True: higher is better)
#: and unit; they are read from the records (``bench run`` measures them), not from the metrics
COST_METRICS = {"params_total": (False, "parameters"), "params_active": (False, "parameters"),
                "params_trainable": (False, "parameters"), "flops_per_sample": (False, "FLOPs"),
                "train_time_s": (False, "s"), "step_time_s": (False, "s"), "peak_memory_bytes": (False, "bytes"),
                "inference_s_per_sample": (False, "s"), "throughput_samples_s": (True, "samples/s")}
#: the pseudo-task of cost claims
COST_TASK = "cost"
#: seeds each side needs before a check can be supported or refuted (a claims file may change it)
MIN_SEEDS = 3
#: power at which the smallest detectable difference is reported
POWER = 0.8


@dataclass
class Check:
    """One claim on one dataset: the job keys of both sides (``missing``: why it cannot be
    checked here; then no keys), and after :func:`evaluate` the test and the verdict."""

    claim_id: str
    dataset: str
    metric: str
    task: str | None = None
    method_keys: list[str] = field(default_factory=list)
    baseline_keys: list[str] = field(default_factory=list)
    missing: str = ""
    split: str = "test"            # the evaluation split of the method's runs (test[-m], test[noise:m@s])
    baseline_split: str = "test"   # ... and of the baseline's
    in_mean: bool = False          # one dataset of a claim over the mean of datasets: shown, not tested alone
    # filled by evaluate
    result: st.TestResult | None = None
    p_claim: float = float("nan")   # p of "advantage = claimed size (or 0)", the check's null
    p_adjusted: float = float("nan")
    mean_method: float = float("nan")
    mean_baseline: float = float("nan")
    seeds: int = 0
    seeds_method: int = 0
    seeds_baseline: int = 0
    advantage: float = float("nan")
    adv_low: float = float("nan")
    adv_high: float = float("nan")
    detectable: float = float("nan")
    verdict: str = ""
    why: str = ""


@dataclass
class ClaimReport:
    """A claim's text, sides, claimed direction and size, its checks (one per dataset) and the
    combined verdict; ``commands`` reproduce its runs."""

    id: str
    text: str
    method: str
    baseline: str
    metric: str
    higher: bool
    direction: str = "better"
    size: float | None = None
    source: str = ""
    protocol: str = ""
    checks: list[Check] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    verdict: str = ""
    min_seeds: int = MIN_SEEDS
    kind: str = "difference"
    relative: bool = False         # size / margin relative to the baseline (a fraction: 0.0345 = 3.45%)
    ratio: float | None = None     # kind ratio: method / baseline claimed at most (fewer) or at least this
    margin: float | None = None    # kinds noninferior / equivalent
    value: float | None = None     # kind value: the number quoted from the paper (the baseline side)
    split: str = "test"
    baseline_split: str = "test"
    over: str | int = "every"      # "every" dataset, the "mean" over datasets, or at least k datasets
    parts: list[str] = field(default_factory=list)   # kind all_of: the ids of the claims that must all hold
    verdict_why: str = ""

    @property
    def sign(self) -> int:
        return orient(self.higher, self.direction if self.direction in ("better", "worse") else "better")

    @property
    def scale(self) -> float:
        """c in the tested contrast ``method - c * baseline`` (1 for absolute claims): the claimed
        ratio, or 1 + the relative size (1 - the relative margin) in the claimed direction."""
        if self.kind == "ratio":
            return float(self.ratio)
        if self.relative:
            amount = -(self.margin or 0.0) if self.kind == "noninferior" else (self.size or 0.0)
            return 1.0 + self.sign * amount
        return 1.0

    @property
    def target(self) -> float:
        """The claimed advantage of the contrast in the claimed direction (0 when the claim is in
        the scale): the size, or minus the non-inferiority margin."""
        if self.relative or self.kind in ("ratio", "equivalent"):
            return 0.0
        if self.kind == "noninferior":
            return -(self.margin or 0.0)
        return self.size or 0.0


@dataclass
class Report:
    path: str
    title: str
    alpha: float
    claims: list[ClaimReport]
    tests: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- verdict rules
def orient(higher: bool, direction: str) -> int:
    """+1 when the claim's "method beats baseline" means a larger metric value, else -1."""
    return (1 if higher else -1) * (1 if direction == "better" else -1)


def seeds_text(method: int, baseline: int) -> str:
    """``3 seeds per side`` or ``1 seed for the method, 3 for the baseline``."""
    if method == baseline:
        return f"{method} seed{'s' if method != 1 else ''} per side"
    return f"{method} seed{'s' if method != 1 else ''} for the method, {baseline} for the baseline"


def verdict(advantage: float, low: float, high: float, p_adjusted: float, alpha: float,
            size: float | None = None, seeds: tuple[int, int] = (MIN_SEEDS, MIN_SEEDS),
            min_seeds: int = MIN_SEEDS, detectable: float = float("nan"), what: str = "") -> tuple[str, str]:
    """(verdict, reason) of one check; ``advantage`` and its CI ``[low, high]`` are oriented so
    that positive is the claimed direction; ``size`` (>= 0, the metric's units) is the claimed
    minimum advantage or None; ``p_adjusted`` is the Holm-adjusted p of "advantage = size (or 0)";
    ``seeds``: (method, baseline) seeds; ``detectable``: the smallest difference from the claimed
    value the design detects at 80% power. See the module docstring."""
    target = size or 0.0
    what = what or (f"the claimed size {size:.4g}" if size else "0")
    if min(seeds) < min_seeds:
        return INCONCLUSIVE, f"inconclusive: {seeds_text(*seeds)} (at least {min_seeds} needed)"
    if not (math.isfinite(advantage) and math.isfinite(low) and math.isfinite(high) and math.isfinite(p_adjusted)):
        return INCONCLUSIVE, "the test could not be computed (too few seeds or no variance estimate)"
    significant = p_adjusted < alpha
    if significant and low > target:
        return SUPPORTED, (f"the CI [{low:.4g}, {high:.4g}] of the advantage lies above {what}, "
                           f"Holm p = {_p(p_adjusted)} < {alpha:g}")
    if significant and high < target:
        return REFUTED, (f"the CI [{low:.4g}, {high:.4g}] of the advantage lies below {what}, "
                         f"Holm p = {_p(p_adjusted)} < {alpha:g}")
    reasons = []
    if low <= target <= high:
        reasons.append(f"the CI [{low:.4g}, {high:.4g}] includes {what}")
    if not significant:
        reasons.append(f"Holm p = {_p(p_adjusted)} >= {alpha:g}")
    if math.isfinite(detectable) and detectable > 0:
        reasons.append(f"a difference from {'the claim' if size else '0'} smaller than {detectable:.3g} "
                       f"could not have been detected (80% power)")
    return INCONCLUSIVE, "; ".join(reasons) or "undecided"


def equivalence_verdict(effect: float, low: float, high: float, p_adjusted: float, alpha: float, margin: float,
                        seeds: tuple[int, int] = (MIN_SEEDS, MIN_SEEDS), min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, reason) of an equivalence check by two one-sided tests (Schuirmann 1987):
    ``[low, high]`` is the 1 - 2 alpha CI of ``effect``; ``p_adjusted`` the Holm-adjusted p of
    "the difference lies outside ±margin" (TOST: the larger one-sided p) when the estimate is
    inside the margin, else of "the difference lies inside ±margin". **supported**: significant and
    the CI inside ±margin; **refuted**: significant and the CI wholly outside it."""
    if min(seeds) < min_seeds:
        return INCONCLUSIVE, f"inconclusive: {seeds_text(*seeds)} (at least {min_seeds} needed)"
    if not all(math.isfinite(x) for x in (effect, low, high, p_adjusted)):
        return INCONCLUSIVE, "the test could not be computed (too few seeds or no variance estimate)"
    ci = f"the {100 * (1 - 2 * alpha):g}% CI [{low:.4g}, {high:.4g}]"
    if p_adjusted < alpha and -margin < low and high < margin:
        return SUPPORTED, f"{ci} lies within ±{margin:.4g} (TOST), Holm p = {_p(p_adjusted)} < {alpha:g}"
    if p_adjusted < alpha and (low >= margin or high <= -margin):
        return REFUTED, f"{ci} lies outside ±{margin:.4g}, Holm p = {_p(p_adjusted)} < {alpha:g}"
    return INCONCLUSIVE, f"{ci} crosses ±{margin:.4g} (Holm p = {_p(p_adjusted)})"


def combine(verdicts: list[str], at_least: int | None = None) -> str:
    """A claim's verdict from its datasets': every dataset must hold, or (``at_least`` = k) at
    least k of them: supported when k are supported, refuted when more than n - k are refuted,
    not checkable when the checkable ones cannot reach k, else inconclusive."""
    if not verdicts:
        return NOT_CHECKABLE
    if at_least is None:
        if REFUTED in verdicts:
            return REFUTED
        if NOT_CHECKABLE in verdicts:
            return NOT_CHECKABLE
        if all(v == SUPPORTED for v in verdicts):
            return SUPPORTED
        return INCONCLUSIVE
    n = len(verdicts)
    if verdicts.count(SUPPORTED) >= at_least:
        return SUPPORTED
    if verdicts.count(REFUTED) > n - at_least:
        return REFUTED
    if n - verdicts.count(NOT_CHECKABLE) < at_least:
        return NOT_CHECKABLE
    return INCONCLUSIVE


# --------------------------------------------------------------------------- testing
def _side_runs(frame: pd.DataFrame, keys: list[str], task: str, metric: str, split: str = "test") -> pd.DataFrame:
    part = frame[frame["key"].isin(keys) & (frame["task"] == task) & (frame["metric"] == metric)
                 & (frame["split"] == split)]
    return part.drop_duplicates("seed", keep="last").set_index("seed").sort_index()


def _infer_task(frame: pd.DataFrame, keys: list[str], metric: str) -> tuple[str | None, str]:
    if metric in COST_METRICS:
        return COST_TASK, ""
    tasks = sorted(set(frame.loc[frame["key"].isin(keys) & (frame["metric"] == metric), "task"])
                   - set(UNTESTED_TASKS))
    if len(tasks) == 1:
        return tasks[0], ""
    if not tasks:
        return None, f"no finished run reports metric {metric!r}"
    return None, f"metric {metric!r} is reported for tasks {', '.join(tasks)}: name one with task:"


def cost_frame(store, keys, metrics) -> pd.DataFrame:
    """The cost fields ``metrics`` of the runs ``keys`` as result rows (task ``cost``, split
    ``test``): a run's cost is a property of its configuration and its training, not of a split."""
    rows = []
    for key in sorted(set(keys)):
        rec = store.get(key)
        if rec is None or rec.status != "ok":
            continue
        for m in metrics:
            v = rec.cost.get(m)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.append({"key": key, "task": COST_TASK, "metric": m, "seed": rec.seed, "value": float(v),
                             "split_seed": rec.split_seed, "split": "test", "dataset": rec.dataset})
    return pd.DataFrame(rows, columns=["key", "task", "metric", "seed", "value", "split_seed", "split", "dataset"])


def _split_text(split: str) -> str:
    return "" if split == "test" else f" on split {split}"


def assess(check: Check, frame: pd.DataFrame, cases: CaseCache, claim: ClaimReport | None = None) -> None:
    """Fill ``check.result`` (method - c * baseline, or method - the quoted value, tested against
    0) and the means, or ``check.missing`` when it cannot be tested. Per-case tables are stored
    for the plain test split only: robustness splits and cost fields are tested over seeds."""
    if check.missing:
        return
    scale = claim.scale if claim is not None else 1.0
    value = claim.value if claim is not None else None
    if check.task is None:
        check.task, why = _infer_task(frame, check.method_keys + check.baseline_keys, check.metric)
        if check.task is None:
            check.missing = why
            return
    with_cases = check.task != COST_TASK and check.task not in SEED_LEVEL_TASKS
    a = _side_runs(frame, check.method_keys, check.task, check.metric, check.split)
    a = a[a["value"].notna()]
    if value is None:
        b = _side_runs(frame, check.baseline_keys, check.task, check.metric, check.baseline_split)
        b = b[b["value"].notna()]
    else:
        b = None
    if a.empty or (b is not None and b.empty):
        which, split = ("the method", check.split) if a.empty else ("the baseline", check.baseline_split)
        what = f"cost field {check.metric}" if check.task == COST_TASK else f"{check.task}/{check.metric}"
        check.missing = f"no finished run of {which} reports {what}{_split_text(split)}"
        return
    ca = config_of_runs(a, cases if with_cases and check.split == "test" else None, check.task, check.metric)
    check.seeds_method = len(a)
    check.mean_method = float(a["value"].mean())
    if b is None:
        target = value * scale
        cov = inf.case_covariance(ca.influences) if ca.has_cases else None
        check.seeds_baseline, check.seeds = len(a), len(a)
        check.mean_baseline = float(value)
        check.result = inf.versus_value(ca.values, target, cov, cases=ca.cases if cov is not None else None)
        return
    if scale != 1.0 and not float(b["value"].mean()) > 0:
        check.missing = (f"a relative or ratio claim needs a positive baseline mean; the baseline's "
                         f"{check.metric} is {float(b['value'].mean()):.4g}")
        return
    cb = config_of_runs(b, cases if with_cases and check.baseline_split == "test" else None, check.task, check.metric)
    check.seeds_baseline = len(b)
    check.seeds = min(len(a), len(b))
    check.mean_baseline = float(b["value"].mean())
    if scale != 1.0:
        cov = inf.case_covariance(ca.influences + cb.influences) if ca.has_cases and cb.has_cases else None
        check.result = inf.compare(ca.values, cb.values, ca.seeds, cb.seeds, cov, scale=scale,
                                   cases=max(ca.cases, cb.cases) if cov is not None else None)
    else:
        check.result = compare_configs(ca, cb)


def claim_p(c: ClaimReport, r: st.TestResult) -> float:
    """p of the check's null: "advantage = claimed size" (two-sided); for equivalence the TOST p
    (larger one-sided p of "outside ±margin") when the estimate is inside the margin, else the
    one-sided p of "inside it"."""
    if c.kind != "equivalent":
        return inf.shifted(r, c.sign * c.target).pvalue
    m = c.margin or 0.0
    if abs(r.effect) < m:
        return max(inf.one_sided_p(r, -m, above=True), inf.one_sided_p(r, m, above=False))
    return inf.one_sided_p(r, m, above=True) if r.effect >= m else inf.one_sided_p(r, -m, above=False)


def _aggregate(c: ClaimReport) -> None:
    """A claim over the mean of its datasets: the datasets' checks stay (shown, marked in_mean)
    and one check of their mean is added, the only one tested."""
    parts = [ch for ch in c.checks if not ch.in_mean]
    for ch in parts:
        ch.in_mean = True
    agg = Check(c.id, f"mean of {len(parts)} datasets", c.metric, parts[0].task if parts else None)
    missing = [f"{ch.dataset}: {ch.missing}" for ch in parts if ch.result is None]
    if missing or not parts:
        agg.missing = "; ".join(missing) or "no datasets"
    else:
        agg.result = inf.mean_of([ch.result for ch in parts])
        agg.mean_method = float(sum(ch.mean_method for ch in parts) / len(parts))
        agg.mean_baseline = float(sum(ch.mean_baseline for ch in parts) / len(parts))
        agg.seeds_method = min(ch.seeds_method for ch in parts)
        agg.seeds_baseline = min(ch.seeds_baseline for ch in parts)
        agg.seeds = min(agg.seeds_method, agg.seeds_baseline)
    c.checks.append(agg)


def evaluate(claims: list[ClaimReport], store, alpha: float = 0.05, frame: pd.DataFrame | None = None) -> int:
    """Test every check of ``claims`` on ``store`` (its ``frame``: ``load_results(store).frame``
    of the keys, every split, read here when not given), Holm-correct the p-values of the checks
    that have enough seeds together and set each check's and claim's verdict. Returns the number
    of tests in the Holm family."""
    keys = {k for c in claims for ch in c.checks for k in ch.method_keys + ch.baseline_keys}
    if frame is None:
        from .frame import load_results

        frame = load_results(store, keys=keys).frame if keys else None
    if frame is None or frame.empty:
        frame = pd.DataFrame(columns=["key", "task", "metric", "seed", "value", "split_seed", "split", "dataset"])
    if "split" not in frame.columns:
        frame = frame.assign(split="test")
    cost_metrics = {c.metric for c in claims if c.metric in COST_METRICS}
    if cost_metrics and keys:
        frame = pd.concat([frame, cost_frame(store, keys, cost_metrics)], ignore_index=True)
    cases = CaseCache(store)
    cases.prefetch(k for c in claims for ch in c.checks for k in ch.method_keys + ch.baseline_keys)
    for c in claims:
        for ch in c.checks:
            assess(ch, frame, cases, c)
        if c.over == "mean" and c.kind != "all_of":
            _aggregate(c)
    # the family: distinct hypotheses (comparison, splits, task, metric, contrast, claimed value)
    # with enough seeds; two claims on the same hypothesis share one test and count once
    family: dict[tuple, list[tuple[ClaimReport, Check]]] = {}
    for c in claims:
        for ch in c.checks:
            if ch.in_mean or ch.result is None or min(ch.seeds_method, ch.seeds_baseline) < c.min_seeds:
                continue
            if not math.isfinite(claim_p(c, ch.result)):
                continue
            hyp = (tuple(sorted(ch.method_keys)), tuple(sorted(ch.baseline_keys)), ch.dataset, ch.split,
                   ch.baseline_split, ch.task, ch.metric, c.kind == "equivalent", round(c.scale, 12),
                   round(c.sign * c.target, 12), c.value, c.margin if c.kind == "equivalent" else None)
            family.setdefault(hyp, []).append((c, ch))
    groups = list(family.values())
    adjusted = st.holm([claim_p(g[0][0], g[0][1].result) for g in groups])
    for group, p in zip(groups, adjusted):
        for _, ch in group:
            ch.p_adjusted = float(p)
    m = max(len(groups), 1)
    for c in claims:
        if c.kind == "all_of":
            continue
        sign = c.sign
        for ch in c.checks:
            if ch.result is None:
                ch.verdict, ch.why = NOT_CHECKABLE, ch.missing
                continue
            r = ch.result
            ch.p_claim = claim_p(c, r)
            if c.kind == "equivalent":
                half = inf.t_quantile(1 - alpha, r.df) * r.se if math.isfinite(r.se) and r.df == r.df else math.nan
                lo, hi = r.effect - half, r.effect + half
                ch.advantage, ch.adv_low, ch.adv_high = r.effect, lo, hi
            else:
                lo, hi = sorted((sign * r.ci_low, sign * r.ci_high))
                ch.advantage, ch.adv_low, ch.adv_high = sign * r.effect, lo, hi
            ch.detectable = inf.detectable(r, alpha / m, POWER)
            if ch.in_mean:
                ch.verdict, ch.why = "", "one part of the mean over datasets (the mean is tested, not each dataset)"
            elif c.kind == "equivalent":
                ch.verdict, ch.why = equivalence_verdict(r.effect, lo, hi, ch.p_adjusted, alpha, c.margin or 0.0,
                                                         (ch.seeds_method, ch.seeds_baseline), c.min_seeds)
            else:
                what = ("the margin" if c.kind == "noninferior" else "the claimed size") + f" {c.target:.4g}" \
                    if c.target else "0"
                ch.verdict, ch.why = verdict(ch.advantage, lo, hi, ch.p_adjusted, alpha, c.target,
                                             (ch.seeds_method, ch.seeds_baseline), c.min_seeds, ch.detectable, what)
        tested = [ch.verdict for ch in c.checks if not ch.in_mean]
        c.verdict = combine(tested, c.over if isinstance(c.over, int) else None)
    by_id = {c.id: c for c in claims}
    for c in claims:
        if c.kind == "all_of":
            c.verdict = combine([by_id[p].verdict for p in c.parts])
            c.verdict_why = "; ".join(f"{p}: {by_id[p].verdict}" for p in c.parts)
    return len(groups)


# --------------------------------------------------------------------------- rendering
def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _detectable(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"±{x:.3g}"


def _min_seeds(report: Report) -> int:
    seeds = {c.min_seeds for c in report.claims}
    return min(seeds) if seeds else MIN_SEEDS


def _num(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _g(x: float) -> str:
    return f"{x:.4g}"


def contrast_text(c: ClaimReport) -> str:
    """What each check's difference is: ``method − baseline``, ``method − 1.0345 × baseline``,
    ``method − 0.9`` (a quoted number), with the splits when they are not the plain test split."""
    m = "method" + (f"[{c.split}]" if c.split != "test" else "")
    if c.kind == "value":
        v = (c.value or 0.0) * c.scale
        return f"{m} − {_g(v)}" + (f" ({_g(c.scale)} × the quoted {_g(c.value)})" if c.scale != 1 else "")
    b = "baseline" + (f"[{c.baseline_split}]" if c.baseline_split != "test" else "")
    return f"{m} − {_g(c.scale)} × {b}" if c.scale != 1.0 else f"{m} − {b}"


def claimed_text(c: ClaimReport) -> str:
    """The claim as a condition on the tested difference (:func:`contrast_text`): ``≥ +0.05``,
    ``< 0``, ``within ±0.01``; for relative and ratio claims the size is in the contrast's scale."""
    if c.kind == "all_of":
        return "all of: " + ", ".join(c.parts)
    if c.kind == "equivalent":
        return f"within ±{_g(c.margin or 0.0)}"
    sign, target = c.sign, c.target
    if target:
        value = sign * target
        return f"≥ {value:+.4g}" if sign > 0 else f"≤ {value:+.4g}"
    return "> 0" if sign > 0 else "< 0"


def kind_text(c: ClaimReport) -> str:
    """The claim's kind in words, for the reports."""
    rel = " (relative to the baseline)" if c.relative else ""
    return {"difference": "difference" + (f" of at least {_g(c.size)}" if c.size else ""),
            "relative": f"relative difference of at least {100 * (c.size or 0):.4g}%",
            "ratio": f"ratio method / baseline {'at most' if c.sign < 0 else 'at least'} {_g(c.ratio or 0)}",
            "noninferior": f"non-inferiority with margin {100 * (c.margin or 0):.4g}%" if c.relative else
            f"non-inferiority with margin {_g(c.margin or 0)}",
            "equivalent": f"equivalence within ±{_g(c.margin or 0)} (TOST)",
            "value": f"against the quoted number {_g(c.value or 0)}" + (f", by at least {_g(c.size)}{rel}" if c.size else ""),
            "all_of": "all of " + ", ".join(c.parts)}[c.kind] + \
        (f"; over the mean of {len([ch for ch in c.checks if ch.in_mean])} datasets" if c.over == "mean" else
         f"; on at least {c.over} of {len(c.checks)} datasets" if isinstance(c.over, int) else "")


def check_row(c: ClaimReport, ch: Check) -> dict:
    """One check as a flat dict (json, and the tables' cells): the difference (the claim's
    contrast, :func:`contrast_text`) with its CI (95%; 1 - 2 alpha for equivalence), the test,
    ``p`` of the check's null ("advantage = claimed size", 0 without one; TOST for equivalence),
    ``p_holm``, the seeds per side, what n counts, ``relative`` (method / baseline - 1) and
    ``detectable``: the smallest difference from the claimed value detectable at 80% power."""
    r = ch.result
    nan = float("nan")
    rel = (ch.mean_method - ch.mean_baseline) / abs(ch.mean_baseline) if r is not None and ch.mean_baseline else nan
    equiv = c.kind == "equivalent" and r is not None
    return {"claim": c.id, "kind": c.kind, "dataset": ch.dataset, "task": ch.task, "metric": ch.metric,
            "split": ch.split, "baseline_split": ch.baseline_split, "verdict": ch.verdict,
            "why": ch.why, "mean_method": ch.mean_method, "mean_baseline": ch.mean_baseline,
            "compared": contrast_text(c), "scale": c.scale,
            "difference": r.effect if r else nan, "ci_low": (ch.adv_low if equiv else r.ci_low) if r else nan,
            "ci_high": (ch.adv_high if equiv else r.ci_high) if r else nan, "relative": rel,
            "ratio": ch.mean_method / ch.mean_baseline if r is not None and ch.mean_baseline else nan,
            "claimed": claimed_text(c),
            "test": r.test if r else "", "p": ch.p_claim, "p_holm": ch.p_adjusted, "df": r.df if r else nan,
            "seeds_method": ch.seeds_method, "seeds_baseline": ch.seeds_baseline, "min_seeds": c.min_seeds,
            "n_cases": (r.extra.get("cases") or nan) if r else nan, "n_text": n_text(r) if r else "",
            "detectable": ch.detectable, "note": r.note if r else "", "in_mean": ch.in_mean}


def describe_sides(c: ClaimReport, code, esc=lambda x: x) -> str:
    """"Method `a` vs baseline `b`, metric `m` (higher is better), tested: method − b ≥ +0.05"
    (``code`` formats a name, ``esc`` escapes prose)."""
    def split(x: str) -> str:
        return esc(" on split ") + code(x) if x != "test" else ""

    base = (esc(f"the quoted number {_g(c.value or 0)}") if c.kind == "value"
            else esc("baseline ") + code(c.baseline) + split(c.baseline_split))
    unit = f"; a cost field, in {COST_METRICS[c.metric][1]}" if c.metric in COST_METRICS else ""
    return esc("Method ") + code(c.method) + split(c.split) + esc(" vs ") + base \
        + esc(", metric ") + code(c.metric) + esc(f" ({'higher' if c.higher else 'lower'} is better{unit}), tested: "
                                               f"{contrast_text(c)} {claimed_text(c)}")


def _grouped(items: list[tuple]) -> list[tuple]:
    """(key, [values]) in first-seen order: one reason line for the checks that share it."""
    out: dict = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return list(out.items())


def where(c: ClaimReport) -> str:
    """The datasets of a claim (dataset/task where a dataset is checked on several tasks)."""
    seen: dict[str, list] = {}
    for ch in c.checks:
        seen.setdefault(ch.dataset, []).append(ch.task)
    return ", ".join(d if len(t) < 2 else ", ".join(f"{d}/{x}" for x in t) for d, t in seen.items())


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def to_json(report: Report) -> str:
    return json.dumps({"file": report.path, "title": report.title, "alpha": report.alpha, "tests": report.tests,
                       "claims": [{"id": c.id, "claim": c.text, "kind": c.kind, "kind_text": kind_text(c),
                                   "method": c.method, "baseline": c.baseline,
                                   "metric": c.metric, "direction": c.direction, "size": c.size,
                                   "relative": c.relative, "ratio": c.ratio, "margin": c.margin, "value": c.value,
                                   "split": c.split, "baseline_split": c.baseline_split, "over": c.over,
                                   "parts": c.parts, "compared": contrast_text(c), "claimed": claimed_text(c),
                                   "source": c.source,
                                   "protocol": c.protocol, "min_seeds": c.min_seeds, "verdict": c.verdict,
                                   "verdict_why": c.verdict_why, "commands": c.commands,
                                   "checks": [{k: _nan_to_none(v) for k, v in check_row(c, ch).items()}
                                              for ch in c.checks]} for c in report.claims]}, indent=1)


_PROSE_SPECIAL = re.compile(r"([\\`*_\[\]|#$]|<(?=[A-Za-z/!?]))")   # $: math in GitHub / KaTeX


def _md(text) -> str:
    """Markdown-escape a user string for prose and table cells: every character that could make
    markup (emphasis, code, links, tables, raw HTML tags), but not harmless ones such as ( ) or < 0.05."""
    return _PROSE_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def rules_text(alpha: float, min_seeds: int = MIN_SEEDS) -> str:
    return (f"Each check tests \"the advantage equals the claimed size\" (0 without one) with the seed-aware test "
            f"(the training seed is the unit of replication; the test-sample variance from the per-case tables). "
            f"Verdicts: **supported** = significant after Holm (α = {alpha:g}) with the 95% CI of the advantage "
            f"wholly above the claimed size (above 0 without one); **refuted** = significant with the CI wholly "
            f"below it; **inconclusive** = neither, or fewer than {min_seeds} seeds on a side; **not checkable "
            f"here** = data or a method is missing here. Equivalence claims are two one-sided tests (TOST) with "
            f"the {100 * (1 - 2 * alpha):g}% CI inside (supported) or wholly outside (refuted) ±margin; relative and "
            f"ratio claims test the contrast method − c × baseline; robustness splits, cost fields and "
            f"interpretability numbers have no per-case tables and are tested over seeds. A claim over several "
            f"datasets holds only if it holds on every one (or on the mean, or on at least k, when it says so). "
            f"*detectable* is the smallest difference from the claimed value the design detects at 80% power.")


def to_markdown(report: Report) -> str:
    out = [f"# Claims verification: {_md(report.title)}", "",
           f"File `{report.path}`; {report.tests} test{'s' if report.tests != 1 else ''}, two-sided, "
           f"Holm-corrected together, α = {report.alpha:g}. Differences are method − baseline on the test split.",
           "", rules_text(report.alpha, _min_seeds(report)), "", "| # | claim | verdict | datasets |",
           "|---|---|---|---|"]
    for i, c in enumerate(report.claims, 1):
        out.append(f"| {i} | {_md(c.id)} | **{c.verdict}** | {_md(where(c))} |")
    for i, c in enumerate(report.claims, 1):
        out += ["", f"## {i}. {_md(c.id)}: {c.verdict}", "", f"> {_md(c.text)}", ""]
        if c.source:
            out += [f"Source: {_md(c.source)}", ""]
        out += [f"Kind: {_md(kind_text(c))}.", ""]
        if c.kind == "all_of":
            out += [f"- {_md(p)}: **{v}**" for p, v in (x.split(": ", 1) for x in c.verdict_why.split("; ") if x)]
            continue
        out += [describe_sides(c, lambda x: f"`{x.replace('`', '')}`") + (f"; protocol: {_md(c.protocol)}"
                                                                          if c.protocol else "") + ".", ""]
        out += ["| dataset | task | method | baseline | difference [CI] | relative | claimed | test | p | p (Holm) "
                "| n | detectable | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        whys = []
        for ch in c.checks:
            r = check_row(c, ch)
            if ch.result is None:
                out.append(f"| {_md(ch.dataset)} | {_md(ch.task or '')} | | | | | {r['claimed']} | | | | | | "
                           f"**{ch.verdict}** |")
            elif ch.in_mean:
                out.append(f"| {_md(ch.dataset)} | {_md(ch.task)} | {_num(r['mean_method'])} | {_num(r['mean_baseline'])} "
                           f"| {_num(r['difference'], True)} [{_num(r['ci_low'], True)}, {_num(r['ci_high'], True)}] "
                           f"| | | {_md(r['test'])} | | | {r['n_text']} | | (in the mean) |")
                continue
            else:
                rel = "n/a" if not math.isfinite(r["relative"]) else f"{100 * r['relative']:+.1f}%"
                out.append(f"| {_md(ch.dataset)} | {_md(ch.task)} | {_num(r['mean_method'])} | {_num(r['mean_baseline'])} "
                           f"| {_num(r['difference'], True)} [{_num(r['ci_low'], True)}, {_num(r['ci_high'], True)}] "
                           f"| {rel} "
                           f"| {r['claimed']} | {_md(r['test'])} | {_p(r['p'])} | {_p(r['p_holm'])} | {r['n_text']} "
                           f"| {_detectable(r['detectable'])} | **{ch.verdict}** |")
            whys.append(((ch.verdict, ch.why + (f" (note: {r['note']})" if r["note"] else "")),
                         ch.dataset + (f"/{ch.task}" if ch.task and len(c.checks) > 1 else "")))
        out += [""] + [f"- {_md(', '.join(on))}: {v}: {_md(why)}" for (v, why), on in _grouped(whys)]
        if c.commands:
            out += ["", "Reproduce:", "", "```bash", *c.commands, "```"]
    for note in report.notes:
        out += ["", note]
    return "\n".join(out)


_VERDICT_CSS = {SUPPORTED: "ok", REFUTED: "bad", INCONCLUSIVE: "meh", NOT_CHECKABLE: "na"}


def to_html(report: Report) -> str:
    """One self-contained page (no network; the leaderboard page's CSP and style)."""
    from .html import CSP, STYLE, esc

    style = STYLE + (".v { font-weight: bold; } .v.ok { color: #070; } .v.bad { color: #b00; } .v.meh { color: #a60; } "
                     ".v.na { color: #666; } pre { background: #f5f5f5; padding: .6em; overflow-x: auto; } "
                     "blockquote { margin: .5em 0; padding-left: 1em; border-left: 3px solid #ccc; }")

    def v(text: str) -> str:
        return f'<span class="v {_VERDICT_CSS.get(text, "na")}">{esc(text)}</span>'

    body = [f"<h1>Claims verification: {esc(report.title)}</h1>",
            f'<p class="caption">File {esc(report.path)}; {report.tests} tests, two-sided, Holm-corrected together, '
            f"α = {report.alpha:g}. Differences are method − baseline on the test split.</p>",
            f'<p class="note">{esc(rules_text(report.alpha, _min_seeds(report)).replace("**", "").replace("*", ""))}</p>',
            "<table><thead><tr><th>#</th><th>claim</th><th>verdict</th><th>datasets</th></tr></thead><tbody>"]
    for i, c in enumerate(report.claims, 1):
        body.append(f"<tr><td>{i}</td><td>{esc(c.id)}</td><td>{v(c.verdict)}</td>"
                    f"<td>{esc(where(c))}</td></tr>")
    body.append("</tbody></table>")
    heads = ["dataset", "task", "method", "baseline", "difference [CI]", "relative", "claimed", "test", "p",
             "p (Holm)", "n", "detectable", "verdict", "why"]
    for i, c in enumerate(report.claims, 1):
        body += [f"<h2>{i}. {esc(c.id)}: {v(c.verdict)}</h2>", f"<blockquote>{esc(c.text)}</blockquote>"]
        if c.source:
            body.append(f'<p class="note">Source: {esc(c.source)}</p>')
        body.append(f"<p>Kind: {esc(kind_text(c))}.</p>")
        if c.kind == "all_of":
            body.append("<ul>" + "".join(f"<li>{esc(p)}: {v(x)}</li>" for p, x in
                                         (y.split(": ", 1) for y in c.verdict_why.split("; ") if y)) + "</ul>")
            continue
        body.append("<p>" + describe_sides(c, lambda x: f"<code>{esc(x)}</code>", esc)
                    + (f"; protocol: {esc(c.protocol)}" if c.protocol else "") + ".</p>")
        body.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody>")
        for ch in c.checks:
            r = check_row(c, ch)
            cells = [esc(ch.dataset), esc(ch.task or "")]
            if ch.result is None:
                cells += [""] * 4 + [esc(r["claimed"])] + [""] * 5
            else:
                rel = "n/a" if not math.isfinite(r["relative"]) else f"{100 * r['relative']:+.1f}%"
                cells += [_num(r["mean_method"]), _num(r["mean_baseline"]),
                          f"{_num(r['difference'], True)} [{_num(r['ci_low'], True)}, {_num(r['ci_high'], True)}]",
                          rel, esc(r["claimed"]), esc(r["test"]), _p(r["p"]), _p(r["p_holm"]), esc(r["n_text"]),
                          _detectable(r["detectable"])]
            cells += [v(ch.verdict) if ch.verdict else "(in the mean)",
                      esc(ch.why + (f" (note: {r['note']})" if r["note"] else ""))]
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
        body.append("</tbody></table>")
        if c.commands:
            body.append("<p>Reproduce:</p><pre>" + "\n".join(esc(x) for x in c.commands) + "</pre>")
    for note in report.notes:
        body.append(f'<p class="note">{esc(note)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f"<title>{esc('Claims: ' + report.title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render(report: Report, fmt: str = "md") -> str:
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html(report)
    if fmt == "json":
        return to_json(report)
    raise ValueError(f"unknown format {fmt!r}; choose md, html or json")


__all__ = ["Check", "ClaimReport", "Report", "VERDICTS", "SUPPORTED", "REFUTED", "INCONCLUSIVE", "NOT_CHECKABLE",
           "verdict", "combine", "orient", "evaluate", "render"]
