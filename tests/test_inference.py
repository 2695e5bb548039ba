"""The seed-aware tests: results.influence (every metric's value and case influence), results.inference
(the comparison), Shaffer's correction, results.significance (the leaderboard's columns) and
results.calibration -- checked against scikit-learn, SciPy, statsmodels, DeLong (pROC's numbers)
and bootstraps, and by simulation of worlds with a random effect per training seed, where the
pooled per-case tests of earlier versions must fail and the default must hold alpha."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from results import inference as inf
from results import stats as st
from results.calibration import CalibrationRun, calibrate, pooled_test, shift_rows
from results.influence import case_influence, midranks
from results.significance import _Config, column_tests

FIXTURES = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------- simulated runs
def classification_rows(y: np.ndarray, margin: np.ndarray, ids=None) -> dict:
    """Per-case rows of a binary classifier (bench.metrics columns) whose logit for the true class
    is ``margin``."""
    n = len(y)
    p1 = 1 / (1 + np.exp(-np.where(y == 1, margin, -margin)))
    probs = np.c_[1 - p1, p1]
    pred = probs.argmax(axis=1)
    return {"case_id": np.array(ids if ids is not None else [f"c{i:04d}" for i in range(n)]),
            "target": y.astype(float), "pred": pred.astype(float), "correct": (pred == y).astype(float),
            "loss": -np.log(probs[np.arange(n), y]), "probs": probs, "abs_error": np.full(n, np.nan)}


def seed_world(rng, seeds: int, n: int = 300, seed_sd: float = 0.4, noise: float = 0.8, shift: float = 0.0,
               difficulty=None, y=None) -> list[dict]:
    """``seeds`` runs of one configuration on the same ``n`` test cases: per case a difficulty,
    per training seed a random effect (``seed_sd``, shared by all the seed's cases: the structure
    real runs have), per (seed, case) noise."""
    y = rng.integers(0, 2, n) if y is None else y
    difficulty = rng.normal(1.2, 1.2, n) if difficulty is None else difficulty
    return [classification_rows(y, difficulty + shift + rng.normal(0, seed_sd) + rng.normal(0, noise, n))
            for _ in range(seeds)]


def default_test(metric: str, a: list[dict], b: list[dict], mode: str = "seeds") -> st.TestResult:
    infl = [case_influence(metric, r) for r in a + b]
    values = np.array([c.value for c in infl])
    s = len(a)
    return inf.compare(values[:s], values[s:], np.arange(s), np.arange(len(b)), inf.case_covariance(infl), mode=mode)


# --------------------------------------------------------------------------- metric values = scikit-learn
def test_midranks_equal_scipy():
    rng = np.random.default_rng(0)
    for trial in range(20):
        x = np.round(rng.normal(size=int(rng.integers(1, 200))), 1 if trial % 2 else 8)
        np.testing.assert_array_equal(midranks(x), stats.rankdata(x))


def test_classification_values_equal_sklearn():
    from bench.metrics import expected_calibration_error

    rng = np.random.default_rng(7)
    for trial in range(20):
        n, k = int(rng.integers(30, 300)), int(rng.choice([2, 3, 5]))
        y = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), y] += 1.0
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        if trial % 2:
            probs = np.round(probs, 1) + 1e-9   # many ties
        pred = probs.argmax(1)
        rows = {"case_id": np.array([f"c{i}" for i in range(n)]), "target": y.astype(float), "pred": pred.astype(float),
                "correct": (pred == y).astype(float), "loss": -np.log(probs[np.arange(n), y]), "probs": probs}
        cls = [1] if k == 2 else [c for c in range(k) if 0 < (y == c).sum() < n]
        want = {"accuracy": skm.accuracy_score(y, pred), "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
                "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0),
                "auroc": np.mean([skm.roc_auc_score(y == c, probs[:, c]) for c in cls]),
                "auprc": np.mean([skm.average_precision_score(y == c, probs[:, c]) for c in cls if (y == c).any()]),
                "ece": expected_calibration_error(probs.max(1), (pred == y).astype(float)),
                "nll": float(np.mean(-np.log(probs[np.arange(n), y]))), "auroc_1": skm.roc_auc_score(y == 1, probs[:, 1])}
        for metric, value in want.items():
            got = case_influence(metric, rows)
            assert got is not None and got.value == pytest.approx(value, abs=1e-12), (trial, metric)


def test_regression_and_segmentation_values():
    rng = np.random.default_rng(3)
    n = 120
    y = rng.normal(0, 2, n)
    pred = y + rng.normal(0, 1, n)
    rows = {"case_id": np.array([f"c{i}" for i in range(n)]), "target": y, "pred": pred, "abs_error": np.abs(pred - y),
            "loss": ((pred - y) / 2) ** 2}
    want = {"mae": skm.mean_absolute_error(y, pred), "mse": skm.mean_squared_error(y, pred),
            "rmse": math.sqrt(skm.mean_squared_error(y, pred)), "pearson_r": stats.pearsonr(pred, y).statistic,
            "sign_accuracy": np.mean((pred > 0) == (y > 0))}
    for metric, value in want.items():
        assert case_influence(metric, rows).value == pytest.approx(value, rel=1e-12), metric
    # 3-D: one row per case and organ; a domain's dice = mean over organs of each organ's mean over
    # the cases where it is defined (bench.seg_eval); per organ the mean over its cases
    organs = ["liver", "spleen", "kidney"]
    frame = pd.DataFrame([{"case_id": f"c{i}", "class": o, "dice": rng.random() if rng.random() > 0.2 else np.nan,
                           "hd95": rng.random() * 10} for i in range(40) for o in organs])
    seg = {c: frame[c].to_numpy() for c in frame.columns}
    per_organ = frame.groupby("class")["dice"].mean()
    assert case_influence("dice", seg).value == pytest.approx(per_organ.mean(), rel=1e-12)
    assert case_influence("dice_spleen", seg).value == pytest.approx(per_organ["spleen"], rel=1e-12)
    assert case_influence("hd95", seg).value == pytest.approx(frame.groupby("class")["hd95"].mean().mean())
    assert case_influence("dice", seg).units.size == 40            # cases, not case x organ rows
    # 2-D per-sample: one row per case, dice_<label> as columns
    flat = {"case_id": np.array([f"c{i}" for i in range(30)]), "dice": rng.random(30), "dice_tumour": rng.random(30)}
    flat["dice"][3] = np.nan
    assert case_influence("dice", flat).value == pytest.approx(np.nanmean(flat["dice"]))
    assert case_influence("dice_tumour", flat).value == pytest.approx(flat["dice_tumour"].mean())
    # multilabel rows carry no per-case targets: no influence (the comparison has no case term)
    assert case_influence("macro_f1", {"case_id": flat["case_id"], "target": np.full(30, np.nan),
                                       "pred": np.full(30, np.nan)}) is None


# --------------------------------------------------------------------------- case covariances
def test_mean_influence_is_the_sample_covariance_and_auroc_is_delong():
    rng = np.random.default_rng(1)
    x, z = rng.random(50), rng.random(50)
    a = case_influence("accuracy", {"case_id": np.arange(50), "correct": x})
    b = case_influence("accuracy", {"case_id": np.arange(50), "correct": z})
    assert a.z @ b.z == pytest.approx(np.cov(x, z)[0, 1] / 50, rel=1e-12)
    data = pd.read_csv(FIXTURES / "aSAH.csv", comment="#")
    y = data["outcome"].to_numpy().astype(int)
    scores = np.vstack([data["wfns"].to_numpy(float), data["s100b"].to_numpy(float)])
    aucs, cov = st.delong_cov(y, scores)
    infl = [case_influence("auroc", {"case_id": np.arange(len(y)), "target": y.astype(float),
                                     "pred": (s > np.median(s)).astype(float), "probs": np.c_[1 - s / s.max(), s / s.max()]})
            for s in scores]
    np.testing.assert_allclose([c.value for c in infl], aucs, rtol=1e-12)
    np.testing.assert_allclose(inf.case_covariance(infl), cov, rtol=1e-10)   # DeLong = pROC (test_stats)


@pytest.mark.parametrize("metric", ["balanced_accuracy", "macro_f1", "auroc", "ece", "auprc", "rmse", "pearson_r"])
def test_case_variances_match_a_bootstrap(metric):
    """The influence (or shared-bootstrap) variance of a metric and the covariance of two runs on
    the same cases agree with a 1,200-4,000-resample bootstrap computed with scikit-learn / SciPy."""
    from bench.metrics import expected_calibration_error

    rng = np.random.default_rng(11)
    n = 300
    y = rng.integers(0, 3, n)
    shared = rng.normal(size=(n, 3))
    rows = []
    for _ in range(2):
        logits = shared + rng.normal(0, 0.7, (n, 3))
        logits[np.arange(n), y] += 1.3
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        pred = p.argmax(1)
        target = y + rng.normal(0, 0.5, n)
        reg = target + shared[:, 0] + rng.normal(0, 0.5, n)
        rows.append({"case_id": np.array([f"c{i:03d}" for i in range(n)]), "target": y.astype(float),
                     "pred": pred.astype(float), "correct": (pred == y).astype(float), "probs": p,
                     "reg_target": target, "reg_pred": reg})
    if metric in ("rmse", "pearson_r"):
        rows = [{"case_id": r["case_id"], "target": r["reg_target"], "pred": r["reg_pred"],
                 "abs_error": np.abs(r["reg_pred"] - r["reg_target"])} for r in rows]
    fn = {"balanced_accuracy": lambda r, i: skm.balanced_accuracy_score(r["target"][i], r["pred"][i]),
          "macro_f1": lambda r, i: skm.f1_score(r["target"][i], r["pred"][i], average="macro", zero_division=0),
          "auroc": lambda r, i: skm.roc_auc_score(r["target"][i], r["probs"][i], multi_class="ovr"),
          "ece": lambda r, i: expected_calibration_error(r["probs"][i].max(1), r["correct"][i]),
          "auprc": lambda r, i: np.mean([skm.average_precision_score(r["target"][i] == c, r["probs"][i][:, c])
                                         for c in range(3)]),
          "rmse": lambda r, i: math.sqrt(np.mean(r["abs_error"][i] ** 2)),
          "pearson_r": lambda r, i: stats.pearsonr(r["pred"][i], r["target"][i]).statistic}[metric]
    resamples = 1200 if metric in ("auroc", "auprc", "macro_f1", "balanced_accuracy") else 4000   # sklearn is slow
    boot = np.array([[fn(r, i) for r in rows] for i in (rng.integers(0, n, n) for _ in range(resamples))])
    want = np.cov(boot.T)
    got = inf.case_covariance([case_influence(metric, r) for r in rows])
    np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=0.2)
    assert got[0, 1] == pytest.approx(want[0, 1], rel=0.3)


@pytest.mark.parametrize("metric", ["ece", "auprc"])
def test_bootstrap_influence_is_the_same_draw_for_every_run_and_every_process(metric):
    """The resampled metrics use one set of resamples per case set, drawn from the case ids: a run
    and its copy get identical influences (so two identical configurations differ by exactly 0),
    also after the cache is emptied (another process, a later leaderboard)."""
    from results import influence

    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 200)
    rows = classification_rows(y, rng.normal(1, 1, 200))
    first = case_influence(metric, rows)
    influence._WEIGHTS.clear()
    again = case_influence(metric, dict(rows))
    np.testing.assert_array_equal(first.z, again.z)
    cov = inf.case_covariance([first, again])
    assert cov[0, 0] > 0 and cov[0, 0] + cov[1, 1] - 2 * cov[0, 1] == pytest.approx(0, abs=1e-15)


# --------------------------------------------------------------------------- the comparison
def test_without_cases_it_is_scipys_paired_and_welch_t_tests():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.8, 0.02, 5), rng.normal(0.79, 0.02, 5)
    r = inf.compare(a, b, range(5), range(5))
    ref = stats.ttest_rel(a, b)
    assert r.test == inf.PAIRED_SEEDS and r.pvalue == pytest.approx(ref.pvalue) and r.df == 4
    ci = ref.confidence_interval()
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert r.effect == pytest.approx(a.mean() - b.mean())
    r = inf.compare(a, b[:3], range(5), range(10, 13))
    ref = stats.ttest_ind(a, b[:3], equal_var=False)
    assert r.test == inf.UNPAIRED_SEEDS and r.pvalue == pytest.approx(ref.pvalue) and r.df == pytest.approx(ref.df)
    # pairing follows the seed numbers, not the order given
    perm = inf.compare(a[::-1], b[::-1], range(4, -1, -1), range(4, -1, -1))
    assert perm.pvalue == pytest.approx(stats.ttest_rel(a, b).pvalue)
    one = inf.compare(a[:1], b[:1], [0], [0])
    assert math.isnan(one.pvalue) and "at least 2 needed" in one.note


def test_the_case_term_is_the_variance_of_the_per_case_difference():
    """Seeds that shift both configurations alike and agree on every case: the seed term is 0 and
    SE^2 must be the sample variance of the per-case difference / N (the test-sample error alone)."""
    rng = np.random.default_rng(4)
    n, s = 200, 3
    xa, xb = rng.random(n), rng.random(n)
    shifts = rng.normal(0, 0.05, s)
    a = [{"case_id": np.arange(n), "dice": xa * 0.5 + 0.25 + u} for u in shifts]
    b = [{"case_id": np.arange(n), "dice": xb * 0.5 + 0.25 + u} for u in shifts]
    res = default_test("dice", a, b)
    assert res.extra["seed_var"] == pytest.approx(0, abs=1e-20)
    assert res.se ** 2 == pytest.approx(np.var(0.5 * (xa - xb), ddof=1) / n, rel=1e-9)
    assert res.effect == pytest.approx(0.5 * (xa - xb).mean())
    assert res.df > 1e6   # the case term alone: a normal reference


def _dice_world(rng, seeds: int, n: int = 200, seed_sd: float = 0.01, shared=None) -> list[dict]:
    """``seeds`` runs on a fresh test sample of ``n`` cases (population mean Dice 0.5): per-case
    values shared by the runs (``shared``, or drawn here), a small shift per training seed."""
    x = rng.random(n) if shared is None else shared
    return [{"case_id": np.arange(n), "dice": 0.25 + 0.5 * x + rng.normal(0, seed_sd)} for _ in range(seeds)]


def test_mean_interval_and_unpaired_test_cover_the_test_sample_error():
    """Each replicate draws a new test sample, so the error the seeds share (Cov2) dominates: the
    mean interval must cover the population mean 0.5 about 95% of the time, and the test of two
    configurations with different seed sets (unpaired: seeds 0-2 vs 3-5) on the same test sample, each
    finding its own cases hard, must hold alpha; without the case term both collapse (coverage ~ 50%)."""
    rng = np.random.default_rng(11)
    covered, rejected, reps = 0, 0, 300
    for _ in range(reps):
        x = rng.random(200)
        a = _dice_world(rng, 3, shared=x)
        # B finds other cases hard than A does (its per-case values are its own draw), so the
        # test-sample error does not cancel in the difference
        b = _dice_world(rng, 3, shared=rng.random(200))
        infl = [case_influence("dice", r) for r in a]
        lo, hi, how = inf.mean_interval([c.value for c in infl], inf.case_covariance(infl))
        covered += lo <= 0.5 <= hi
        infl = [case_influence("dice", r) for r in a + b]
        v = np.array([c.value for c in infl])
        res = inf.compare(v[:3], v[3:], [0, 1, 2], [3, 4, 5], inf.case_covariance(infl))
        assert res.test == inf.UNPAIRED
        rejected += res.pvalue < 0.05
    assert how == "seeds+cases"
    assert 0.90 <= covered / reps <= 0.99, covered / reps
    assert rejected / reps <= 0.08, rejected / reps


def test_effect_ci_and_p_are_about_the_metric_itself():
    """MSE is tested as squared error: an MSE difference of about +49 is reported as +49, not as a
    difference of absolute errors; the direction of p, effect and CI agree."""
    rng = np.random.default_rng(5)
    n, s = 150, 3
    y = rng.normal(0, 10, n)
    runs = {}
    for name, scale in (("a", 10.0), ("b", 7.0)):
        runs[name] = []
        for _ in range(s):
            pred = y + rng.normal(0, scale, n)
            runs[name].append({"case_id": np.arange(n), "target": y, "pred": pred, "abs_error": np.abs(pred - y)})
    res = default_test("mse", runs["a"], runs["b"])
    mse = [[np.mean(r["abs_error"] ** 2) for r in runs[k]] for k in ("a", "b")]
    assert res.effect == pytest.approx(np.mean(mse[0]) - np.mean(mse[1]))
    assert res.effect > 30 and res.ci_low > 0 and res.pvalue < 0.05
    mae = default_test("mae", runs["a"], runs["b"])
    assert mae.effect < 5 < res.effect


def test_conditional_mode_says_so_and_mean_interval():
    rng = np.random.default_rng(6)
    a, b = seed_world(rng, 3), seed_world(rng, 3)
    cond = default_test("accuracy", a, b, mode="cases")
    assert cond.test == inf.CASES_ONLY and "seed variance ignored" in cond.note and math.isinf(cond.df)
    v = np.array([0.81, 0.84, 0.80, 0.86])
    lo, hi, how = inf.mean_interval(v)
    ref = stats.t.interval(0.95, 3, v.mean(), stats.sem(v))
    assert (lo, hi, how) == (pytest.approx(ref[0]), pytest.approx(ref[1]), "seeds")
    infl = [case_influence("accuracy", r) for r in a]
    lo2, hi2, how2 = inf.mean_interval([c.value for c in infl], inf.case_covariance(infl))
    assert how2 == "seeds+cases"
    one = inf.mean_interval([infl[0].value], inf.case_covariance(infl[:1]))
    assert one[2] == "cases (1 seed)" and one[0] < infl[0].value < one[1]


def test_shifted_and_detectable():
    r = inf.compare([0.9, 0.92, 0.91], [0.85, 0.86, 0.88], [0, 1, 2], [0, 1, 2])
    sh = inf.shifted(r, 0.05)
    d = np.array([0.05, 0.06, 0.03])
    assert sh.pvalue == pytest.approx(stats.ttest_1samp(d, 0.05).pvalue)
    assert (sh.effect, sh.ci_low, sh.ci_high) == (r.effect, r.ci_low, r.ci_high)
    mde = inf.detectable(r, 0.05, 0.8)
    assert mde == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * r.se)


# --------------------------------------------------------------------------- multiplicity
def test_shaffer_counts_and_adjustment():
    # Shaffer (1986): k = 4 -> t_i = 6, 3, 3, 3, 2, 1; k = 5 -> 10, 6, 6, 6, 6, 4, 4, 3, 2, 1
    for k, want in ((4, [6, 3, 3, 3, 2, 1]), (5, [10, 6, 6, 6, 6, 4, 4, 3, 2, 1])):
        p = np.arange(1, k * (k - 1) // 2 + 1) * 1e-4
        np.testing.assert_allclose(st.shaffer(p, k), np.minimum(np.maximum.accumulate(np.array(want) * p), 1))
    assert st.shaffer_counts(5) == [0, 1, 2, 3, 4, 6, 10]
    rng = np.random.default_rng(0)
    for k in (2, 3, 6, 8):
        p = rng.random(k * (k - 1) // 2) ** 3
        sh, ho = st.shaffer(p, k), st.holm(p)
        assert np.all(sh <= ho + 1e-15)
        if k == 2:
            np.testing.assert_allclose(sh, ho)
    assert np.isnan(st.shaffer([0.01, np.nan, 0.02], 3)[1])
    with pytest.raises(ValueError):
        st.shaffer([0.1, 0.2], 3)


# --------------------------------------------------------------------------- calibration by simulation
def test_seed_effect_world_default_holds_alpha_and_pooled_tests_do_not():
    """A/A in a world with a random effect per training seed and shared test cases: the default
    test's false-positive rate is near alpha; the conditional (cases-only) test and the pooled
    per-case tests of earlier versions -- which treat (case, seed) pairs as independent -- reject
    far more often. Each replicate draws a new test set and new seeds."""
    rng = np.random.default_rng(2026)
    reps, s = 300, 3
    hits = dict.fromkeys(["seeds", "cases", "mcnemar", "wilcoxon"], 0)
    for _ in range(reps):
        y, diff = rng.integers(0, 2, 300), rng.normal(1.2, 1.2, 300)
        a, b = seed_world(rng, s, y=y, difficulty=diff), seed_world(rng, s, y=y, difficulty=diff)
        hits["seeds"] += default_test("accuracy", a, b).pvalue < 0.05
        hits["cases"] += default_test("accuracy", a, b, mode="cases").pvalue < 0.05
        hits["mcnemar"] += pooled_test("accuracy", a, b).pvalue < 0.05
        hits["wilcoxon"] += pooled_test("nll", a, b).pvalue < 0.05
    rates = {k: v / reps for k, v in hits.items()}
    assert rates["seeds"] <= 0.075, rates          # alpha + 2 Monte-Carlo errors
    for name in ("cases", "mcnemar", "wilcoxon"):
        assert rates[name] >= 0.3, rates            # seed variance ignored: far above alpha


def test_without_a_seed_effect_the_conditional_tests_are_right_too():
    """The other half of the check: with no seed effect and no per-run noise shared across cases,
    runs differ only by independent per-case noise, and every test holds alpha."""
    rng = np.random.default_rng(7)
    reps, hits = 300, {"seeds": 0, "cases": 0}
    for _ in range(reps):
        y, diff = rng.integers(0, 2, 300), rng.normal(1.2, 1.2, 300)
        a = seed_world(rng, 3, y=y, difficulty=diff, seed_sd=0.0)
        b = seed_world(rng, 3, y=y, difficulty=diff, seed_sd=0.0)
        hits["seeds"] += default_test("accuracy", a, b).pvalue < 0.05
        hits["cases"] += default_test("accuracy", a, b, mode="cases").pvalue < 0.05
    assert hits["seeds"] / reps <= 0.075 and hits["cases"] / reps <= 0.085, hits


def test_power_when_one_side_is_better():
    rng = np.random.default_rng(8)
    hits = 0
    for _ in range(60):
        y, diff = rng.integers(0, 2, 300), rng.normal(1.2, 1.2, 300)
        a = seed_world(rng, 5, y=y, difficulty=diff, shift=1.0)
        b = seed_world(rng, 5, y=y, difficulty=diff)
        r = default_test("accuracy", a, b)
        hits += r.pvalue < 0.05 and r.effect > 0
    assert hits / 60 >= 0.7


def test_family_error_of_a_column_of_four_identical_configurations():
    """The leaderboard's column procedure (best chosen from the data, Shaffer over all pairs):
    with four identical configurations a † appears in at most about alpha of the columns. Testing
    only best-vs-others with Holm would not hold it: the max-vs-min comparison is selected."""
    rng = np.random.default_rng(9)
    reps, marked, naive = 250, 0, 0
    for _ in range(reps):
        y, diff = rng.integers(0, 2, 200), rng.normal(1.2, 1.2, 200)
        configs = {}
        for c in range(4):
            rows = seed_world(rng, 3, n=200, y=y, difficulty=diff, seed_sd=0.05, noise=1.0)
            infl = [case_influence("accuracy", r) for r in rows]
            configs[f"c{c}"] = _Config(np.arange(3), np.array([x.value for x in infl]), infl)
        means = {c: v.values.mean() for c, v in configs.items()}
        best = max(means, key=means.get)
        tests, marks, pairs = column_tests(configs, best, True)
        assert pairs == 6 and set(tests) == set(configs) - {best}
        marked += bool(marks)
        # the naive procedure, with the same tests: Holm over the 3 comparisons with the best, one-sided
        p = st.holm([tests[c].pvalue for c in tests])   # tests[c].pvalue is the unadjusted p
        naive += bool((p < 0.05).any())
    assert marked / reps <= 0.07
    assert naive >= marked


def test_calibrate_on_simulated_runs_measures_every_test():
    rng = np.random.default_rng(10)
    y, diff = rng.integers(0, 2, 200), rng.normal(1.2, 1.2, 200)
    runs = [CalibrationRun(i, {"label": r}) for i, r in enumerate(seed_world(rng, 12, n=200, y=y, difficulty=diff))]
    cal = calibrate(runs, [("label", "accuracy", True), ("label", "nll", False)], sizes=(1, 3), splits=80,
                    pooled_splits=40)
    rows = {(r.metric, r.seeds, r.test): r for r in cal.rows}
    assert rows[("accuracy", 1, "seeds")].false_positive == 0 and math.isnan(rows[("accuracy", 1, "seeds")].coverage)
    assert rows[("accuracy", 3, "pooled")].false_positive > rows[("accuracy", 3, "seeds")].false_positive
    assert all(0 <= r.mc_error < 0.2 for r in cal.rows)
    # the shifted side (B) is better: accuracy A - B < 0, the power grows with the shift
    power, effect = rows[("accuracy", 3, "seeds")].power, rows[("accuracy", 3, "seeds")].effect
    assert all(v < 0 for v in effect.values()) and power[1.0] > power[0.25]
    assert {c["seeds"] for c in cal.claims if c["supported"] or c["refuted"]} <= {3}   # one seed supports nothing
    assert {f["seeds"] for f in cal.family} == {1, 3}
    better = shift_rows(runs[0].rows["label"], 1.0)
    assert better["correct"].mean() > runs[0].rows["label"]["correct"].mean()


# --------------------------------------------------------------------------- the leaderboard's columns
def _store_with_cases(tmp_path, with_cases=True, seeds=3):
    """Three binary configurations over ``seeds`` seeds on 150 shared test cases: good, a twin
    of it (a hair weaker) and a clearly bad one; each seed its own shift and per-case noise."""
    from bench.catalogue import build_catalogue
    from bench.record import RunRecord
    from bench.store import RunStore, default_url

    s = RunStore(default_url(tmp_path))
    rng = np.random.default_rng(8)
    n = 150
    y = (rng.random(n) < 0.5).astype(float)
    ids = [f"c{i:03d}" for i in range(n)]
    skill = {"good": 2.5, "twin": 2.45, "bad": 0.4}
    for config, k in skill.items():
        for seed in range(seeds):
            logit = (2 * y - 1) * (k + rng.normal(0, 0.1)) + rng.normal(0, 1.5, n)
            p1 = 1 / (1 + np.exp(-logit))
            pred = (p1 >= 0.5).astype(float)
            correct = (pred == y).astype(float)
            loss = -np.log(np.where(y == 1, p1, 1 - p1))
            mse = float(np.mean((p1 - y) ** 2))
            metrics = {"test": {"label": {"accuracy": correct.mean(), "auroc": skm.roc_auc_score(y, p1),
                                          "nll": loss.mean(), "macro_f1": skm.f1_score(y, pred, average="macro")},
                                "brier": {"mse": mse},
                                "interpretation": {"agreement": 0.9 if config == "bad" else 0.1}}}
            cases = pd.DataFrame({"case_id": ids * 2, "target": np.r_[y, y], "pred": np.r_[pred, p1],
                                  "correct": np.r_[correct, np.full(n, np.nan)], "loss": np.r_[loss, (p1 - y) ** 2],
                                  "abs_error": np.r_[np.full(n, np.nan), np.abs(p1 - y)],
                                  "probs": [[1 - p, p] for p in p1] + [[] for _ in p1],
                                  "task": ["label"] * n + ["brier"] * n})
            rec = RunRecord(key=f"{config}{seed}", method=config, dataset="toy", seed=seed, split_seed=0,
                            preset="tiny", code_version="x", config={}, status="ok", metrics=metrics,
                            config_id=f"cfg-{config}", request_id=f"req-{config}{seed}", label=config,
                            label_fields={}, created_at="2026-01-01",
                            catalogue=build_catalogue({"label": "binary", "brier": "regression"}, metrics))
            s.put(rec, cases=cases if with_cases else None)
    return s


def test_worse_than_best_marks_the_bad_configuration_and_not_its_twin(tmp_path):
    from results import load_results, summarize
    from results.significance import worse_than_best

    store = _store_with_cases(tmp_path)
    results = load_results(store)
    summary = summarize(results)[0]
    sig = worse_than_best(results, store, summary)
    tests = {(k[2], k[3]): v for k, v in sig.tests.items()}
    assert sig.best[("toy", "label", "accuracy")] == "cfg-good"
    for metric in ("accuracy", "auroc", "nll", "macro_f1"):
        assert tests[(metric, "cfg-bad")].test == inf.PAIRED
        assert tests[(metric, "cfg-bad")].extra["cases"] == 150 and tests[(metric, "cfg-bad")].n == 3
        assert ("toy", "label", metric, "cfg-bad") in sig.marks
        assert ("toy", "label", metric, "cfg-twin") not in sig.marks
    # interpretation numbers (one per run): tested over seeds only, as bench verify tests them
    interp = {k[3]: v for k, v in sig.tests.items() if k[1] == "interpretation"}
    assert sig.best[("toy", "interpretation", "agreement")] == "cfg-bad"
    assert interp["cfg-good"].test == inf.PAIRED_SEEDS and "no per-case data" in interp["cfg-good"].note
    assert ("toy", "interpretation", "agreement", "cfg-good") in sig.marks
    column = [tests[("accuracy", c)] for c in ("cfg-bad", "cfg-twin")]
    assert sig.pairs[("toy", "label", "accuracy")] == 3
    # Shaffer over the column's 3 pairs (k = 3: t = 3, 1, 1); the twin-vs-bad pair is part of it
    raw = [r.pvalue for r in column]
    assert column[0].p_adjusted == pytest.approx(min(1, 3 * min(raw)))
    # the effect is the difference of the leaderboard's means (best - config)
    means = summary.set_index(["metric", "config_id"])["mean"]
    assert column[0].effect == pytest.approx(means[("accuracy", "cfg-good")] - means[("accuracy", "cfg-bad")])
    note = sig.footnotes[("toy", "label")]
    for words in ("paired seeds + cases", "Shaffer", "all pairwise comparisons", "α = 0.05", "3 seeds × 150 cases",
                  "unit of replication"):
        assert words in note
    brier = tests[("mse", "cfg-bad")]   # MSE tested on the squared error, as stored
    assert brier.effect == pytest.approx(means[("mse", "cfg-good")] - means[("mse", "cfg-bad")])


def test_worse_than_best_without_cases_uses_the_seed_t_and_says_so(tmp_path):
    from results import load_results, summarize
    from results.significance import summary_ci, worse_than_best

    store = _store_with_cases(tmp_path, with_cases=False)
    results = load_results(store)
    sig = worse_than_best(results, store, summarize(results)[0])
    assert {t.test for t in sig.tests.values()} == {inf.PAIRED_SEEDS}
    assert all("no per-case data" in t.note for t in sig.tests.values())
    assert "paired t over seeds (no per-case term)" in sig.footnote
    ci = summary_ci(results, store)
    assert set(ci["ci_over"]) <= {"seeds"}


def test_one_seed_per_configuration_marks_nothing(tmp_path):
    from results import load_results, summarize
    from results.significance import worse_than_best

    store = _store_with_cases(tmp_path, seeds=1)
    results = load_results(store)
    sig = worse_than_best(results, store, summarize(results)[0])
    assert not sig.marks and all(math.isnan(t.pvalue) for t in sig.tests.values())
    assert "fewer than 2 seeds" in sig.footnote
    conditional = worse_than_best(results, store, summarize(results)[0], test="cases")
    assert ("toy", "label", "accuracy", "cfg-bad") in conditional.marks   # conditional on these models
    assert "seed variance ignored" in conditional.footnote


def test_summary_ci_includes_the_test_sample_term(tmp_path):
    from results import load_results
    from results.significance import summary_ci

    store = _store_with_cases(tmp_path)
    ci = summary_ci(load_results(store), store).set_index(["task", "metric", "config_id"])
    row = ci.loc[("label", "accuracy", "cfg-good")]
    assert row["ci_over"] == "seeds+cases" and row["ci_low"] < row["mean"] < row["ci_high"]
    seeds_only = summary_ci(load_results(store), None).set_index(["task", "metric", "config_id"])
    assert seeds_only.loc[("label", "accuracy", "cfg-good"), "ci_over"] == "seeds"
    # the seeds share the 150 test cases, so that error does not average out over seeds: the
    # half-width holds at least the shared term (mean covariance of two seeds' correctness / N)
    x = np.vstack([store.cases(f"good{s}").query("task == 'label'")["correct"].to_numpy() for s in range(3)])
    shared = (np.cov(x).sum() - np.trace(np.cov(x))) / 6 / x.shape[1]
    assert (row["ci_high"] - row["ci_low"]) / 2 >= 1.96 * math.sqrt(shared)


def test_shift_rows_by_family():
    """Planted shifts: regression rows (whose probs column is empty, as stored) shrink the errors;
    segmentation rows raise Dice and shrink HD95."""
    from results.calibration import family

    y = np.linspace(-1, 1, 20)
    reg = {"case_id": np.arange(20), "target": y, "pred": y + 0.5, "abs_error": np.full(20, 0.5),
           "loss": np.full(20, 0.25), "probs": np.zeros((20, 0))}
    assert family(reg) == "regression"
    better = shift_rows(reg, 0.1)
    assert case_influence("mae", better).value == pytest.approx(0.45)
    seg = {"case_id": np.arange(4), "class": np.array(["a", "b", "a", "b"]), "dice": np.array([0.5, 0.98, np.nan, 0.2]),
           "hd95": np.array([10.0, 2.0, 4.0, 8.0])}
    assert family(seg) == "segmentation"
    s = shift_rows(seg, 0.05)
    np.testing.assert_allclose(s["dice"], [0.55, 1.0, np.nan, 0.25])
    np.testing.assert_allclose(s["hd95"], [9.5, 1.9, 3.8, 7.6])
