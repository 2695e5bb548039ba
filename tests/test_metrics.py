"""Tests for bench.metrics: every metric checked against scikit-learn / numpy / scipy / torch or by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from bench.metrics import (
    METRIC_DIRECTION,
    TaskEval,
    evaluate_task,
    higher_is_better,
    primary_metric,
)
from datasets.spec import TaskSpec

PER_CASE_COLUMNS = {"case_id", "target", "pred", "correct", "loss", "abs_error", "probs"}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _multiclass_example(n: int = 80, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0  # some signal, but far from perfect
    return logits, y


def _assert_plain_floats(metrics: dict[str, float]) -> None:
    assert all(type(v) is float for v in metrics.values()), {k: type(v) for k, v in metrics.items()}
    json.dumps(metrics)


# ---------------------------------------------------------------------------------------- multiclass


def test_multiclass_matches_sklearn() -> None:
    task = TaskSpec("t", "multiclass", 4, labels=("a", "b", "c", "d"))
    logits, y = _multiclass_example()
    res = evaluate_task(task, torch.tensor(logits, dtype=torch.float32), torch.tensor(y))
    assert isinstance(res, TaskEval)
    m = res.metrics
    _assert_plain_floats(m)
    expected_keys = {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "auprc", "ece", "nll"}
    expected_keys |= {f"{p}_{c}" for p in ("auroc", "auprc") for c in "abcd"}
    assert set(m) == expected_keys

    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    pred = logits.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-6)
    y_onehot = label_binarize(y, classes=[0, 1, 2, 3])
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y_onehot, probs, average="macro"), abs=1e-6)
    for k, name in enumerate("abcd"):
        assert m[f"auroc_{name}"] == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]), abs=1e-6)
        assert m[f"auprc_{name}"] == pytest.approx(skm.average_precision_score(y == k, probs[:, k]), abs=1e-6)
    ce = F.cross_entropy(torch.tensor(logits), torch.tensor(y)).item()
    assert m["nll"] == pytest.approx(ce, rel=1e-6)
    # the example is not degenerate: metrics differ from each other and from trivial values
    assert 0.3 < m["accuracy"] < 0.95 and m["balanced_accuracy"] != m["macro_f1"]


def test_absent_class_gives_nan_per_class_and_macro_over_present() -> None:
    task = TaskSpec("t", "multiclass", 3)  # no labels -> class indices as suffixes
    logits = np.array([[2.0, 0.0, 0.5], [0.1, 1.0, 0.0], [0.3, 0.2, 0.9], [0.0, 0.4, 0.1], [1.0, 1.5, 0.0]])
    y = np.array([0, 1, 0, 1, 0])  # class 2 absent
    m = evaluate_task(task, logits, y).metrics
    assert math.isnan(m["auroc_2"]) and math.isnan(m["auprc_2"])
    probs = torch.softmax(torch.tensor(logits), 1).numpy()
    a0 = skm.roc_auc_score(y == 0, probs[:, 0])
    a1 = skm.roc_auc_score(y == 1, probs[:, 1])
    assert m["auroc_0"] == pytest.approx(a0) and m["auroc_1"] == pytest.approx(a1)
    assert m["auroc"] == pytest.approx((a0 + a1) / 2)
    p0 = skm.average_precision_score(y == 0, probs[:, 0])
    p1 = skm.average_precision_score(y == 1, probs[:, 1])
    assert m["auprc"] == pytest.approx((p0 + p1) / 2)
    _assert_plain_floats(m)


# -------------------------------------------------------------------------------------------- binary


def test_binary_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=50)
    logits = rng.normal(size=(50, 2))
    logits[:, 1] += 0.8 * (2 * y - 1)
    m = evaluate_task(TaskSpec("b", "binary", 2, labels=("neg", "pos")), logits, y.astype(float)).metrics
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "auprc", "ece", "nll"}
    p1 = torch.softmax(torch.tensor(logits), 1).numpy()[:, 1]
    pred = logits.argmax(1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, p1))
    assert m["nll"] == pytest.approx(F.cross_entropy(torch.tensor(logits), torch.tensor(y)).item())


def test_binary_single_class_auroc_nan() -> None:
    m = evaluate_task(TaskSpec("b", "binary", 2), np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, 1])).metrics
    assert math.isnan(m["auroc"])
    assert m["auprc"] == pytest.approx(1.0)  # positive is ranked first: AP = 1
    assert m["accuracy"] == pytest.approx(0.5)


def test_ece_hand_computed() -> None:
    # top-label confidences / correctness:
    #   A: p1=.90, y=1 -> conf .90 correct     } both in bin (13/15, 14/15] = (.8667, .9333]
    #   B: p1=.91, y=0 -> conf .91 wrong       }   acc .5, conf .905 -> 2/4 * .405 = .2025
    #   C: p1=.30, y=0 -> conf .70 correct       bin (.6667, .7333]: 1/4 * .30 = .075
    #   D: p1=.45, y=1 -> conf .55 wrong         bin (.5333, .6000]: 1/4 * .55 = .1375
    # ECE = .415   (10 bins would give .465, per-sample |acc-conf| also .465)
    logits = np.array([[0.0, _logit(p)] for p in (0.90, 0.91, 0.30, 0.45)])
    y = np.array([1, 0, 0, 1])
    m = evaluate_task(TaskSpec("b", "binary", 2), logits, y).metrics
    assert m["ece"] == pytest.approx(0.415, abs=1e-9)
    assert m["accuracy"] == pytest.approx(0.5)


def test_ece_matches_reference_loop_multiclass() -> None:
    logits, y = _multiclass_example(n=200, c=5, seed=3)
    probs = torch.softmax(torch.tensor(logits), 1).numpy()
    conf, pred = probs.max(1), probs.argmax(1)
    ece = 0.0
    bounds = np.linspace(0, 1, 16)
    for lo, hi in zip(bounds[:-1], bounds[1:]):  # Guo et al. reference implementation
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean())
    m = evaluate_task(TaskSpec("t", "multiclass", 5), logits, y).metrics
    assert m["ece"] == pytest.approx(ece, abs=1e-9)


# ---------------------------------------------------------------------------------------- multilabel


def test_multilabel_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    n, c = 40, 5
    y = (rng.random((n, c)) < 0.4).astype(np.float32)
    y[:, 4] = 0  # a label with no positive: excluded from mean_ap
    logits = rng.normal(size=(n, c)) + 1.2 * (2 * y - 1)
    res = evaluate_task(TaskSpec("ml", "multilabel", c), torch.tensor(logits), torch.tensor(y))
    m = res.metrics
    assert set(m) == {"micro_f1", "macro_f1", "mean_ap", "subset_accuracy", "bce"}
    _assert_plain_floats(m)
    hard = (1 / (1 + np.exp(-logits)) >= 0.5).astype(int)
    yi = y.astype(int)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(yi, hard, average="micro"))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(yi, hard, average="macro", zero_division=0))
    assert m["subset_accuracy"] == pytest.approx(skm.accuracy_score(yi, hard))
    probs = torch.sigmoid(torch.tensor(logits)).numpy()
    aps = [skm.average_precision_score(yi[:, k], probs[:, k]) for k in range(4)]
    assert m["mean_ap"] == pytest.approx(np.mean(aps))
    bce_t = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(y, dtype=torch.float64),
                                               reduction="none")
    assert m["bce"] == pytest.approx(bce_t.mean().item())
    pc = res.per_case
    np.testing.assert_allclose(pc["loss"].to_numpy(), bce_t.mean(1).numpy(), rtol=1e-9)
    np.testing.assert_array_equal(pc["correct"].to_numpy(), (hard == yi).all(1).astype(float))
    assert pc["target"].isna().all() and pc["pred"].isna().all() and pc["abs_error"].isna().all()
    np.testing.assert_allclose(np.array(pc["probs"].tolist()), probs, rtol=1e-9)


# ---------------------------------------------------------------------------------------- regression


def test_regression_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(3.0, 2.0, size=30)
    pred = y + rng.normal(0, 1.0, size=30)
    task = TaskSpec("r", "regression", 1, target_mean=3.0, target_std=2.0)
    res = evaluate_task(task, torch.tensor(pred).unsqueeze(1), y)  # (N, 1) predictions accepted
    m = res.metrics
    assert set(m) == {"mae", "rmse", "pearson_r", "mse"}  # no sign_accuracy without sign_metric
    _assert_plain_floats(m)
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    assert m["mse"] == pytest.approx(np.mean((pred - y) ** 2))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(pred, y)[0, 1])
    pc = res.per_case
    np.testing.assert_allclose(pc["loss"].to_numpy(), ((pred - y) / 2.0) ** 2)
    np.testing.assert_allclose(pc["abs_error"].to_numpy(), np.abs(pred - y))
    np.testing.assert_allclose(pc["pred"].to_numpy(), pred)
    np.testing.assert_allclose(pc["target"].to_numpy(), y)
    assert pc["correct"].isna().all() and all(p == [] for p in pc["probs"])


def test_regression_constant_prediction_pearson_nan() -> None:
    m = evaluate_task(TaskSpec("r", "regression", 1), np.full(4, 2.0), np.array([1.0, 2.0, 3.0, 5.0])).metrics
    assert math.isnan(m["pearson_r"])
    assert m["mae"] == pytest.approx((1 + 0 + 1 + 3) / 4)


def test_sign_accuracy_hand_example() -> None:
    task = TaskSpec("sent", "regression", 1, sign_metric=True)
    y = np.array([1.0, -2.0, 0.0, 0.5, -0.3, 2.0, -1.0])
    pred = np.array([0.4, 1.0, -1.0, -0.2, -0.1, 0.0, 0.0])
    # target 0 (idx 2) excluded; right: idx 0, 4, 6; wrong: idx 1, 3, 5.
    # A prediction of exactly 0 counts as negative (MOSI reference code: pred > 0 vs target > 0).
    m = evaluate_task(task, pred, y).metrics
    assert m["sign_accuracy"] == pytest.approx(3 / 6)
    assert math.isnan(evaluate_task(task, pred[:3], np.zeros(3)).metrics["sign_accuracy"])


# --------------------------------------------------------------------------------- masks and per-case


def test_masked_rows_excluded() -> None:
    task = TaskSpec("t", "multiclass", 4)
    logits, y = _multiclass_example(n=40, seed=5)
    mask = np.random.default_rng(6).random(40) < 0.6
    y_with_missing = np.where(mask, y, -1)  # unlabelled rows carry an invalid label that must be ignored
    ids = [f"case{i}" for i in range(40)]
    res = evaluate_task(task, logits, y_with_missing, mask=torch.tensor(mask), ids=ids)
    sub = evaluate_task(task, logits[mask], y[mask])
    assert len(res.per_case) == mask.sum()
    assert list(res.per_case["case_id"]) == [ids[i] for i in np.flatnonzero(mask)]
    for k, v in sub.metrics.items():
        assert res.metrics[k] == pytest.approx(v, nan_ok=True), k
    assert res.metrics["accuracy"] == pytest.approx(np.mean(logits[mask].argmax(1) == y[mask]))
    # regression with NaN targets on unlabelled rows
    r = evaluate_task(TaskSpec("r", "regression", 1), np.array([1.0, 5.0, 2.0]), np.array([0.0, np.nan, 4.0]),
                      mask=np.array([True, False, True]))
    assert r.metrics["mae"] == pytest.approx(1.5) and list(r.per_case["case_id"]) == ["0", "2"]


def test_per_case_classification_columns() -> None:
    task = TaskSpec("t", "multiclass", 3)
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 4.0]])
    y = np.array([0, 2, 2])
    pc = evaluate_task(task, logits, y).per_case
    assert set(pc.columns) == PER_CASE_COLUMNS
    assert list(pc["case_id"]) == ["0", "1", "2"]
    assert list(pc["target"]) == [0.0, 2.0, 2.0]
    assert list(pc["pred"]) == [0.0, 1.0, 2.0]
    assert list(pc["correct"]) == [1.0, 0.0, 1.0]
    expected_loss = [
        math.log(1 + 2 * math.exp(-2)),  # -log(e^2 / (e^2 + 1 + 1))
        -(1 - math.log(1 + math.exp(3) + math.exp(1))),  # -log(e^1 / (1 + e^3 + e^1))
        math.log(1 + 2 * math.exp(-3)),
    ]
    np.testing.assert_allclose(pc["loss"].to_numpy(), expected_loss, rtol=1e-12)
    assert pc["abs_error"].isna().all()
    first = pc["probs"].iloc[0]
    assert isinstance(first, list) and len(first) == 3
    np.testing.assert_allclose(first, np.array([math.exp(2), 1, 1]) / (math.exp(2) + 2))
    m = evaluate_task(task, logits, y).metrics
    assert m["nll"] == pytest.approx(np.mean(expected_loss))


def test_all_rows_masked_gives_nan_metrics() -> None:
    task = TaskSpec("t", "binary", 2)
    res = evaluate_task(task, np.zeros((3, 2)), np.zeros(3), mask=np.zeros(3, dtype=bool))
    assert len(res.per_case) == 0 and set(res.per_case.columns) == PER_CASE_COLUMNS
    assert set(res.metrics) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "auprc", "ece", "nll"}
    assert all(math.isnan(v) for v in res.metrics.values())


# ---------------------------------------------------------------------------------------- errors, API


def test_segmentation_rejected() -> None:
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_task(TaskSpec("seg", "segmentation", 2), np.zeros((2, 2)), np.zeros(2))


def test_bad_shapes_and_labels_rejected() -> None:
    task = TaskSpec("t", "multiclass", 3)
    with pytest.raises(ValueError):
        evaluate_task(task, np.zeros((4, 2)), np.zeros(4))  # wrong number of logits
    with pytest.raises(ValueError):
        evaluate_task(task, np.zeros((4, 3)), np.array([0, 1, 3, 0]))  # class index out of range
    with pytest.raises(ValueError):
        evaluate_task(task, np.zeros((4, 3)), np.zeros(5))  # length mismatch


def test_primary_metric_and_directions() -> None:
    assert primary_metric(TaskSpec("b", "binary", 2)) == ("accuracy", True)
    assert primary_metric(TaskSpec("m", "multiclass", 3)) == ("accuracy", True)
    assert primary_metric(TaskSpec("ml", "multilabel", 3)) == ("macro_f1", True)
    assert primary_metric(TaskSpec("r", "regression", 1)) == ("mae", False)
    for name in ("ece", "nll", "bce", "mae", "rmse", "mse"):
        assert METRIC_DIRECTION[name] is False and higher_is_better(name) is False
    for name in ("accuracy", "auroc", "auprc", "pearson_r", "sign_accuracy", "mean_ap", "auroc_cat", "auprc_3"):
        assert higher_is_better(name) is True
    with pytest.raises(KeyError):
        higher_is_better("not_a_metric")
