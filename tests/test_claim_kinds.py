"""Claim kinds (docs/claims.md "Claim kinds"): cost, relative size, ratio, non-inferiority,
equivalence (TOST), robustness splits, a number quoted from the paper, the mean over datasets,
"on at least k of n datasets", all-of, interpretability. Each is checked against SciPy /
statsmodels on planted runs whose per-seed numbers are known, and through the claims-file parser."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from bench.catalogue import build_catalogue
from bench.config import ConfigError
from bench.record import RunRecord
from bench.store import RunStore, default_url
from bench.verify import load_claims
from results.claims import (
    INCONCLUSIVE,
    NOT_CHECKABLE,
    REFUTED,
    SUPPORTED,
    Check,
    ClaimReport,
    Report,
    combine,
    evaluate,
    render,
)

SEEDS = 4
#: per seed: accuracy on test and with modality m removed, agreement, train time; params fixed
RUNS = {
    "A": {"acc": [0.90, 0.88, 0.91, 0.89], "acc-m": [0.87, 0.86, 0.885, 0.87], "agree": [0.80, 0.78, 0.83, 0.81],
          "time": [10.0, 11.5, 12.0, 10.5], "params": 300},
    "B": {"acc": [0.85, 0.84, 0.87, 0.86], "acc-m": [0.70, 0.72, 0.69, 0.71], "agree": [0.50, 0.55, 0.52, 0.49],
          "time": [30.0, 31.0, 33.5, 29.0], "params": 1000},
    "C": {"acc": [0.851, 0.845, 0.866, 0.862], "acc-m": [0.70, 0.70, 0.70, 0.70], "agree": [0.5] * 4,
          "time": [30.0] * 4, "params": 1000},
}


def _put(store, method: str, dataset: str, seed: int, shift: float = 0.0) -> None:
    r = RUNS[method]
    metrics = {"test": {"label": {"accuracy": r["acc"][seed] + shift},
                        "interpretation": {"agreement": r["agree"][seed]}},
               "test[-m]": {"label": {"accuracy": r["acc-m"][seed] + shift}}}
    store.put(RunRecord(key=f"{method}-{dataset}-{seed}", method=method, dataset=dataset, seed=seed, split_seed=0,
                        preset="tiny", code_version="x", config={}, status="ok", metrics=metrics,
                        config_id=f"cfg-{method}-{dataset}", request_id=f"req-{method}-{dataset}-{seed}", label=method,
                        label_fields={}, created_at="2026-01-01",
                        cost={"params_total": r["params"], "train_time_s": r["time"][seed]},
                        catalogue=build_catalogue({"label": "binary"}, metrics)))


@pytest.fixture
def store(tmp_path):
    s = RunStore(default_url(tmp_path))
    for ds, shift in (("d1", 0.0), ("d2", -0.02), ("d3", 0.01)):
        for m in RUNS:
            for seed in range(SEEDS):
                _put(s, m, ds, seed, shift if m == "A" else 0.0)
    return s


def claim(cid, metric="accuracy", method="A", baseline="B", datasets=("d1",), higher=True, **kw) -> ClaimReport:
    split, bsplit, task = kw.pop("split", "test"), kw.pop("baseline_split", None), kw.pop("task", None)
    bsplit = bsplit or split
    c = ClaimReport(cid, cid, method, baseline or "", metric, higher, kw.pop("direction", "better"), kw.pop("size", None),
                    split=split, baseline_split=bsplit, **kw)
    c.checks = [Check(cid, d, metric, task, [f"{method}-{d}-{s}" for s in range(SEEDS)],
                      [f"{baseline}-{d}-{s}" for s in range(SEEDS)] if baseline else [], split=split,
                      baseline_split=bsplit) for d in datasets]
    return c


def arr(method, what, shift=0.0):
    return np.array(RUNS[method][what]) + shift


# ------------------------------------------------------------------------------- cost
def test_parameter_ratio_is_exact_and_train_time_is_a_paired_t(store):
    fewer = claim("30pct", "params_total", higher=False, kind="ratio", ratio=0.35)      # A = 0.3 B <= 0.35 B
    too_few = claim("25pct", "params_total", higher=False, kind="ratio", ratio=0.25)    # 0.3 > 0.25: false
    faster = claim("15s", "train_time_s", higher=False, size=15.0)                      # B - A >= 15 s?
    evaluate([fewer, too_few, faster], store)
    assert (fewer.verdict, too_few.verdict) == (SUPPORTED, REFUTED)
    ch = fewer.checks[0]
    assert ch.task == "cost" and ch.result.effect == pytest.approx(300 - 0.35 * 1000) and ch.result.se == 0
    assert "zero variance" in ch.result.note
    ft = faster.checks[0]
    a, b = arr("A", "time"), arr("B", "time")
    assert ft.result.effect == pytest.approx((a - b).mean())
    assert ft.p_claim == pytest.approx(stats.ttest_1samp(a - b, -15.0).pvalue)   # H0: A - B = -15 s
    assert faster.verdict == SUPPORTED and ft.advantage == pytest.approx((b - a).mean())


# ------------------------------------------------------------------------------- relative, value
def test_relative_size_is_the_contrast_method_minus_scaled_baseline(store):
    small = claim("3pct", size=0.03, relative=True, kind="relative")    # A >= 1.03 B ?
    big = claim("10pct", size=0.10, relative=True, kind="relative")
    evaluate([small, big], store)
    a, b = arr("A", "acc"), arr("B", "acc")
    for c, s in ((small, 0.03), (big, 0.10)):
        ch = c.checks[0]
        assert c.scale == pytest.approx(1 + s)
        assert ch.result.effect == pytest.approx((a - (1 + s) * b).mean())
        assert ch.p_claim == pytest.approx(stats.ttest_1samp(a - (1 + s) * b, 0).pvalue)
    assert (small.verdict, big.verdict) == (SUPPORTED, REFUTED)
    # lower-is-better: "cuts the training time by 60%" is A <= 0.4 B
    cut = claim("cut", "train_time_s", higher=False, size=0.6, relative=True, kind="relative")
    evaluate([cut], store)
    assert cut.scale == pytest.approx(0.4)
    assert cut.checks[0].result.effect == pytest.approx((arr("A", "time") - 0.4 * arr("B", "time")).mean())


def test_a_quoted_number_is_a_one_sample_test(store):
    reaches = claim("reaches", baseline=None, kind="value", value=0.86)
    above = claim("above", baseline=None, kind="value", value=0.93)
    evaluate([reaches, above], store)
    a = arr("A", "acc")
    ch = reaches.checks[0]
    assert ch.result.test == "one-sample t over seeds" and ch.mean_baseline == 0.86
    assert ch.p_claim == pytest.approx(stats.ttest_1samp(a, 0.86).pvalue)
    lo, hi = stats.t.interval(0.95, SEEDS - 1, a.mean() - 0.86, stats.sem(a))
    assert (ch.result.ci_low, ch.result.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert (reaches.verdict, above.verdict) == (SUPPORTED, REFUTED)
    # "4% above the reported 0.86": A - 1.04 * 0.86
    rel = claim("rel", baseline=None, kind="value", value=0.86, size=0.04, relative=True)
    evaluate([rel], store)
    assert rel.checks[0].p_claim == pytest.approx(stats.ttest_1samp(a, 1.04 * 0.86).pvalue)


# ------------------------------------------------------------------------------- non-inferiority, equivalence, robustness
def test_robustness_loses_at_most_a_margin_when_a_modality_is_missing(store):
    holds = claim("A-holds", baseline="A", split="test[-m]", baseline_split="test", kind="noninferior",
                  direction="noninferior", margin=0.05)
    b_holds = claim("B-holds", method="B", baseline="B", split="test[-m]", baseline_split="test",
                    kind="noninferior", direction="noninferior", margin=0.05)
    beats = claim("A-beats-B-missing", split="test[-m]")
    evaluate([holds, b_holds, beats], store)
    d = arr("A", "acc-m") - arr("A", "acc")
    ch = holds.checks[0]
    assert ch.result.test == "paired t over seeds" and ch.result.effect == pytest.approx(d.mean())
    assert ch.p_claim == pytest.approx(stats.ttest_1samp(d, -0.05).pvalue)
    assert (holds.verdict, b_holds.verdict, beats.verdict) == (SUPPORTED, REFUTED, SUPPORTED)
    assert beats.checks[0].result.effect == pytest.approx((arr("A", "acc-m") - arr("B", "acc-m")).mean())


def test_equivalence_is_statsmodels_tost(store):
    same = claim("B-eq-C", method="B", baseline="C", kind="equivalent", direction="equivalent", margin=0.01)
    tight = claim("B-eq-C-tight", method="B", baseline="C", kind="equivalent", direction="equivalent", margin=0.0005)
    far = claim("A-eq-B", kind="equivalent", direction="equivalent", margin=0.01)
    evaluate([same, tight, far], store)
    b, c = arr("B", "acc"), arr("C", "acc")
    p, _, _ = ttost_paired(b, c, -0.01, 0.01)
    ch = same.checks[0]
    assert ch.p_claim == pytest.approx(p)
    half = stats.t.ppf(0.95, SEEDS - 1) * stats.sem(b - c)
    assert (ch.adv_low, ch.adv_high) == (pytest.approx((b - c).mean() - half), pytest.approx((b - c).mean() + half))
    assert (same.verdict, tight.verdict, far.verdict) == (SUPPORTED, INCONCLUSIVE, REFUTED)
    assert "TOST" in same.checks[0].why and "90% CI" in same.checks[0].why


# ------------------------------------------------------------------------------- several datasets
def test_mean_over_datasets_and_at_least_k(store):
    mean = claim("mean", datasets=("d1", "d2", "d3"), size=0.04, over="mean")
    evaluate([mean], store)
    agg = mean.checks[-1]
    assert [ch.in_mean for ch in mean.checks] == [True, True, True, False] and agg.dataset == "mean of 3 datasets"
    diffs = [arr("A", "acc", s) - arr("B", "acc") for s in (0.0, -0.02, 0.01)]
    se2 = [stats.sem(d) ** 2 for d in diffs]
    effect, se = np.mean([d.mean() for d in diffs]), math.sqrt(sum(se2)) / 3
    df = sum(se2) ** 2 / sum(v * v / (SEEDS - 1) for v in se2)
    assert agg.result.effect == pytest.approx(effect) and agg.result.se == pytest.approx(se)
    assert agg.result.df == pytest.approx(df)
    assert agg.p_claim == pytest.approx(2 * stats.t.sf(abs(effect - 0.04) / se, df))
    # A beats B by 4 points on d1, 5 on d3, exactly the claimed 2 on d2
    k2 = claim("k2", datasets=("d1", "d2", "d3"), size=0.02, over=2)
    k3 = claim("k3", datasets=("d1", "d2", "d3"), size=0.02)
    evaluate([k2, k3], store)
    assert k2.verdict == SUPPORTED and k3.verdict != SUPPORTED
    assert combine([SUPPORTED, REFUTED, REFUTED], 2) == REFUTED
    assert combine([SUPPORTED, NOT_CHECKABLE, NOT_CHECKABLE], 2) == NOT_CHECKABLE
    assert combine([SUPPORTED, INCONCLUSIVE, NOT_CHECKABLE], 2) == INCONCLUSIVE


def test_all_of_and_interpretability(store):
    comparable = claim("comparable", method="C", baseline="B", kind="equivalent", direction="equivalent",
                       margin=0.01)
    fewer = claim("fewer", "params_total", method="C", baseline="B", higher=False, kind="ratio", ratio=0.5)
    both = ClaimReport("both", "comparable accuracy with fewer parameters", "", "", "", True, kind="all_of",
                       parts=["comparable", "fewer"])
    interp = claim("interp", "agreement", task="interpretation")
    evaluate([comparable, fewer, both, interp], store)
    assert (comparable.verdict, fewer.verdict, both.verdict) == (SUPPORTED, REFUTED, REFUTED)
    ch = interp.checks[0]
    a, b = arr("A", "agree"), arr("B", "agree")
    assert ch.task == "interpretation" and ch.result.test == "paired t over seeds"
    assert ch.p_claim == pytest.approx(stats.ttest_rel(a, b).pvalue) and interp.verdict == SUPPORTED


def test_reports_name_kind_numbers_and_test(store):
    cs = [claim("30pct", "params_total", higher=False, kind="ratio", ratio=0.35),
          claim("A-holds", baseline="A", split="test[-m]", baseline_split="test", kind="noninferior",
                direction="noninferior", margin=0.05),
          claim("reaches", baseline=None, kind="value", value=0.88),
          claim("mean", datasets=("d1", "d2"), over="mean")]
    rep = Report("claims/k.yaml", "kinds", 0.05, cs)
    rep.tests = evaluate(cs, store)
    md = render(rep, "md")
    assert "ratio method / baseline at most 0.35" in md and "method − 0.35 × baseline" in md
    assert "non-inferiority with margin 0.05" in md and "method[test[-m]] − baseline" in md
    assert "the quoted number 0.88" in md and "(in the mean)" in md and "mean of 2 datasets" in md
    data = json.loads(render(rep, "json"))
    kinds = {c["id"]: (c["kind"], c["checks"][-1]["test"], c["checks"][-1]["compared"]) for c in data["claims"]}
    assert kinds["30pct"][0] == "ratio" and kinds["reaches"] == ("value", "one-sample t over seeds", "method − 0.88")
    assert "<td>" in render(rep, "html")


# ------------------------------------------------------------------------------- the claims file
def test_claims_file_kinds_parse(tmp_path):
    p = tmp_path / "k.yaml"
    p.write_text("""
protocol: {preset: tiny, seeds: [0, 1, 2]}
claims:
  - {id: params, claim: c, method: attention, baseline: early, dataset: digits-halves, metric: params_total,
     ratio: 0.3, direction: fewer}
  - {id: rel, claim: c, method: attention, baseline: early, dataset: digits-halves, metric: accuracy,
     size: 0.0345, relative: true}
  - {id: eq, claim: c, method: attention, baseline: early, dataset: digits-halves, metric: accuracy,
     direction: equivalent, margin: 0.01}
  - {id: robust, claim: c, method: late, baseline: late, dataset: "synthetic-pid:unique-m1", metric: accuracy,
     split: "test[-m2]", baseline_split: test, direction: noninferior, margin: 0.02}
  - {id: quoted, claim: c, method: early, baseline: {value: 0.9}, dataset: digits-halves, metric: accuracy}
  - {id: k, claim: c, method: i2moe, baseline: early, datasets: ["synthetic-pid:unique-m1", "synthetic-pid:synergy"],
     metric: auroc, at_least: 1}
  - {id: both, claim: comparable accuracy with fewer parameters, all_of: [eq, params]}
""")
    cf = load_claims(p)
    k = {c.id: c for c in cf.claims}
    assert (k["params"].kind, k["params"].direction, k["params"].higher) == ("ratio", "better", False)
    assert (k["rel"].kind, k["eq"].kind, k["robust"].kind, k["quoted"].kind) == \
        ("relative", "equivalent", "noninferior", "value")
    assert k["robust"].split == "test[-m2]" and k["robust"].baseline_split == "test" and k["quoted"].value == 0.9
    assert k["k"].over == 1 and k["both"].parts == ("eq", "params")


@pytest.mark.parametrize("edit, field", [
    ("{metric: params_total, direction: equivalent}", "margin"),
    ("{ratio: 0}", "ratio"),
    ("{ratio: 0.3, size: 0.1}", "ratio"),
    ("{relative: yes-please}", "relative"),
    ("{relative: true}", "relative"),
    ("{split: 'test[nope'}", "split"),
    ("{metric: params_total, split: 'test[-left]'}", "split"),
    ("{margin: 0.01}", "margin"),
    ("{over: median}", "over"),
    ("{at_least: 3}", "at_least"),
    ("{baseline: {value: nan}}", "baseline.value"),
    ("{baseline: attention}", "claims[0] (x)"),
])
def test_bad_kind_fields_fail_with_one_line(tmp_path, edit, field):
    import yaml

    base = {"id": "x", "claim": "c", "method": "attention", "baseline": "early", "dataset": "digits-halves",
            "metric": "accuracy"}
    base.update(yaml.safe_load(edit))
    p = tmp_path / "k.yaml"
    p.write_text(yaml.safe_dump({"claims": [base]}))
    with pytest.raises(ConfigError) as exc:
        load_claims(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and field in msg, msg


def test_all_of_names_claims_of_the_file(tmp_path):
    p = tmp_path / "k.yaml"
    p.write_text("claims:\n  - {id: a, claim: c, method: attention, baseline: early, dataset: digits-halves, "
                 "metric: accuracy}\n  - {id: b, claim: c, all_of: [a, nope]}\n")
    with pytest.raises(ConfigError, match="nope"):
        load_claims(p)


def test_shipped_files_use_the_kinds():
    root = Path(__file__).resolve().parents[1] / "claims"
    kinds = {c.kind for f in root.glob("*.yaml") for c in load_claims(f).claims}
    assert {"ratio", "relative", "noninferior", "equivalent", "value", "all_of", "difference"} <= kinds
    demo = {c.kind for c in load_claims(root / "demo.yaml").claims}
    assert {"ratio", "noninferior", "equivalent", "value", "relative", "all_of"} <= demo


def test_kinds_the_runs_cannot_give_are_not_checkable_and_say_why(store):
    noisy = claim("noisy", split="test[noise:m@0.5]")                      # robustness split not stored
    flops = claim("flops", "flops_per_sample", higher=False, kind="ratio", ratio=0.5)   # cost field not recorded
    evaluate([noisy, flops], store)
    assert noisy.verdict == NOT_CHECKABLE and "on split test[noise:m@0.5]" in noisy.checks[0].why
    assert flops.verdict == NOT_CHECKABLE and "cost field flops_per_sample" in flops.checks[0].why
    page = render(Report("k.yaml", "k", 0.05, [noisy, flops]), "html")
    assert "Kind: ratio method / baseline at most 0.5" in page and "not checkable here" in page
