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
from .significance import UNTESTED_TASKS, CaseCache, compare_configs, config_of_runs, n_text

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_CHECKABLE = "supported", "refuted", "inconclusive", "not checkable here"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_CHECKABLE)
DIRECTIONS = ("better", "worse")
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
            min_seeds: int = MIN_SEEDS, detectable: float = float("nan")) -> tuple[str, str]:
    """(verdict, reason) of one check; ``advantage`` and its CI ``[low, high]`` are oriented so
    that positive is the claimed direction; ``size`` (>= 0, the metric's units) is the claimed
    minimum advantage or None; ``p_adjusted`` is the Holm-adjusted p of "advantage = size (or 0)";
    ``seeds``: (method, baseline) seeds; ``detectable``: the smallest difference from the claimed
    value the design detects at 80% power. See the module docstring."""
    target = size or 0.0
    what = f"the claimed size {size:.4g}" if size else "0"
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
    if math.isfinite(detectable):
        reasons.append(f"a difference from {'the claim' if size else '0'} smaller than {detectable:.3g} "
                       f"could not have been detected (80% power)")
    return INCONCLUSIVE, "; ".join(reasons) or "undecided"


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its datasets' (every dataset must hold)."""
    if not verdicts:
        return NOT_CHECKABLE
    if REFUTED in verdicts:
        return REFUTED
    if NOT_CHECKABLE in verdicts:
        return NOT_CHECKABLE
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


# --------------------------------------------------------------------------- testing
def _side_runs(frame: pd.DataFrame, keys: list[str], task: str, metric: str) -> pd.DataFrame:
    part = frame[frame["key"].isin(keys) & (frame["task"] == task) & (frame["metric"] == metric)]
    return part.drop_duplicates("seed", keep="last").set_index("seed").sort_index()


def _infer_task(frame: pd.DataFrame, keys: list[str], metric: str) -> tuple[str | None, str]:
    tasks = sorted(set(frame.loc[frame["key"].isin(keys) & (frame["metric"] == metric), "task"])
                   - set(UNTESTED_TASKS))
    if len(tasks) == 1:
        return tasks[0], ""
    if not tasks:
        return None, f"no finished run reports metric {metric!r}"
    return None, f"metric {metric!r} is reported for tasks {', '.join(tasks)}: name one with task:"


def assess(check: Check, frame: pd.DataFrame, cases: CaseCache) -> None:
    """Fill ``check.result`` (method - baseline, tested against 0) and the means, or
    ``check.missing`` when it cannot be tested."""
    if check.missing:
        return
    if check.task is None:
        check.task, why = _infer_task(frame, check.method_keys + check.baseline_keys, check.metric)
        if check.task is None:
            check.missing = why
            return
    a = _side_runs(frame, check.method_keys, check.task, check.metric)
    b = _side_runs(frame, check.baseline_keys, check.task, check.metric)
    a, b = a[a["value"].notna()], b[b["value"].notna()]
    if a.empty or b.empty:
        which = "the method" if a.empty else "the baseline"
        check.missing = f"no finished run of {which} reports {check.task}/{check.metric}"
        return
    check.seeds_method, check.seeds_baseline = len(a), len(b)
    check.seeds = min(len(a), len(b))
    check.mean_method = float(a["value"].mean())
    check.mean_baseline = float(b["value"].mean())
    check.result = compare_configs(config_of_runs(a, cases, check.task, check.metric),
                                   config_of_runs(b, cases, check.task, check.metric))


def evaluate(claims: list[ClaimReport], store, alpha: float = 0.05, frame: pd.DataFrame | None = None) -> int:
    """Test every check of ``claims`` on ``store`` (its ``frame``: ``load_results(store,
    split="test").frame`` of the keys, read here when not given), Holm-correct the p-values of
    the checks that have enough seeds together and set each check's and claim's verdict.
    Returns the number of tests in the Holm family."""
    if frame is None:
        from .frame import load_results

        keys = {k for c in claims for ch in c.checks for k in ch.method_keys + ch.baseline_keys}
        frame = load_results(store, split="test", keys=keys).frame if keys else pd.DataFrame(
            columns=["key", "task", "metric", "seed", "value", "split_seed", "dataset"])
    frame = frame[frame["split"] == "test"] if "split" in frame.columns else frame
    cases = CaseCache(store)
    cases.prefetch(k for c in claims for ch in c.checks for k in ch.method_keys + ch.baseline_keys)
    for c in claims:
        for ch in c.checks:
            assess(ch, frame, cases)
    # the family: distinct hypotheses (comparison, task, metric, claimed value) with enough seeds;
    # two claims on the same hypothesis share one test and count once
    family: dict[tuple, list[tuple[ClaimReport, Check]]] = {}
    for c in claims:
        sign = orient(c.higher, c.direction)
        for ch in c.checks:
            if ch.result is None or min(ch.seeds_method, ch.seeds_baseline) < c.min_seeds:
                continue
            if not math.isfinite(inf.shifted(ch.result, sign * (c.size or 0.0)).pvalue):
                continue
            hyp = (tuple(sorted(ch.method_keys)), tuple(sorted(ch.baseline_keys)), ch.task, ch.metric,
                   round(sign * (c.size or 0.0), 12))
            family.setdefault(hyp, []).append((c, ch))
    groups = list(family.values())
    adjusted = st.holm([inf.shifted(g[0][1].result, hyp[4]).pvalue for hyp, g in family.items()])
    for group, p in zip(groups, adjusted):
        for _, ch in group:
            ch.p_adjusted = float(p)
    m = max(len(groups), 1)
    for c in claims:
        sign = orient(c.higher, c.direction)
        for ch in c.checks:
            if ch.result is None:
                ch.verdict, ch.why = NOT_CHECKABLE, ch.missing
                continue
            r = ch.result
            ch.p_claim = inf.shifted(r, sign * (c.size or 0.0)).pvalue
            lo, hi = sorted((sign * r.ci_low, sign * r.ci_high))
            ch.advantage, ch.adv_low, ch.adv_high = sign * r.effect, lo, hi
            ch.detectable = inf.detectable(r, alpha / m, POWER)
            ch.verdict, ch.why = verdict(ch.advantage, lo, hi, ch.p_adjusted, alpha, c.size,
                                         (ch.seeds_method, ch.seeds_baseline), c.min_seeds, ch.detectable)
        c.verdict = combine([ch.verdict for ch in c.checks])
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


def claimed_text(c: ClaimReport) -> str:
    """The claim's expected ``method - baseline`` in the metric's units: ``>= +0.05``, ``< 0``..."""
    sign = orient(c.higher, c.direction)
    if c.size:
        return f"≥ +{c.size:.4g}" if sign > 0 else f"≤ -{c.size:.4g}"
    return "> 0" if sign > 0 else "< 0"


def check_row(c: ClaimReport, ch: Check) -> dict:
    """One check as a flat dict (json, and the tables' cells): the difference (method -
    baseline) with its CI, the test, ``p`` of the check's null ("advantage = claimed size", 0
    without one), ``p_holm``, the seeds per side, what n counts, and ``detectable``: the
    smallest difference from the claimed value detectable at 80% power (α / number of tests)."""
    r = ch.result
    nan = float("nan")
    rel = (ch.mean_method - ch.mean_baseline) / abs(ch.mean_baseline) if r is not None and ch.mean_baseline else nan
    return {"claim": c.id, "dataset": ch.dataset, "task": ch.task, "metric": ch.metric, "verdict": ch.verdict,
            "why": ch.why, "mean_method": ch.mean_method, "mean_baseline": ch.mean_baseline,
            "difference": r.effect if r else nan, "ci_low": r.ci_low if r else nan,
            "ci_high": r.ci_high if r else nan, "relative": rel, "claimed": claimed_text(c),
            "test": r.test if r else "", "p": ch.p_claim, "p_holm": ch.p_adjusted, "df": r.df if r else nan,
            "seeds_method": ch.seeds_method, "seeds_baseline": ch.seeds_baseline, "min_seeds": c.min_seeds,
            "n_cases": (r.extra.get("cases") or nan) if r else nan, "n_text": n_text(r) if r else "",
            "detectable": ch.detectable, "note": r.note if r else ""}


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
                       "claims": [{"id": c.id, "claim": c.text, "method": c.method, "baseline": c.baseline,
                                   "metric": c.metric, "direction": c.direction, "size": c.size, "source": c.source,
                                   "protocol": c.protocol, "min_seeds": c.min_seeds, "verdict": c.verdict,
                                   "commands": c.commands,
                                   "checks": [{k: _nan_to_none(v) for k, v in check_row(c, ch).items()}
                                              for ch in c.checks]} for c in report.claims]}, indent=1)


_PROSE_SPECIAL = re.compile(r"([\\`*_\[\]|#]|<(?=[A-Za-z/!?]))")


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
            f"here** = data or a method is missing here. A claim over several datasets holds only if it holds on "
            f"every one. *detectable* is the smallest difference from the claimed value the design detects at 80% "
            f"power.")


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
        out += [f"Method `{c.method.replace('`', '')}` vs baseline `{c.baseline.replace('`', '')}`, metric `{c.metric}` "
                f"({'higher' if c.higher else 'lower'} is better), claimed method − baseline "
                f"{claimed_text(c)}" + (f"; protocol: {_md(c.protocol)}" if c.protocol else "") + ".", ""]
        out += ["| dataset | task | method | baseline | difference [95% CI] | relative | claimed | test | p | p (Holm) "
                "| n | detectable | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        whys = []
        for ch in c.checks:
            r = check_row(c, ch)
            if ch.result is None:
                out.append(f"| {_md(ch.dataset)} | {_md(ch.task or '')} | | | | | {r['claimed']} | | | | | | "
                           f"**{ch.verdict}** |")
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
    heads = ["dataset", "task", "method", "baseline", "difference [95% CI]", "relative", "claimed", "test", "p",
             "p (Holm)", "n", "detectable", "verdict", "why"]
    for i, c in enumerate(report.claims, 1):
        body += [f"<h2>{i}. {esc(c.id)}: {v(c.verdict)}</h2>", f"<blockquote>{esc(c.text)}</blockquote>"]
        if c.source:
            body.append(f'<p class="note">Source: {esc(c.source)}</p>')
        body.append(f"<p>Method <code>{esc(c.method)}</code> vs baseline <code>{esc(c.baseline)}</code>, metric "
                    f"<code>{esc(c.metric)}</code> ({'higher' if c.higher else 'lower'} is better), claimed method − "
                    f"baseline {esc(claimed_text(c))}" + (f"; protocol: {esc(c.protocol)}" if c.protocol else "")
                    + ".</p>")
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
            cells += [v(ch.verdict), esc(ch.why + (f" (note: {r['note']})" if r["note"] else ""))]
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
