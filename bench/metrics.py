"""Per-task evaluation: aggregate metrics plus a per-case table, for every non-segmentation task kind.

Conventions
-----------
* Only rows whose ``mask`` is True are evaluated (False = no label); ``ids`` default to ``str(row index)``
  and are masked along with the rows.
* Binary and multiclass heads emit ``num_classes`` logits (2 for binary); probabilities are
  ``softmax(logits)`` and the prediction is their argmax. For binary tasks class 1 is the positive class.
* Undefined values are NaN, never an exception: AUROC of a class with no positive or no negative among
  the evaluated targets, AUPRC of a class with no positive, Pearson r with a constant input, sign accuracy
  with no non-zero target, and every metric when no row is evaluated.
* Multiclass ``auroc``/``auprc`` are the macro (unweighted) mean of the one-vs-rest per-class values over
  the classes for which they are defined, i.e. classes present in the evaluated targets (with every class
  present this equals scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")``); absent classes
  get NaN ``auroc_<label>``/``auprc_<label>``. ``<label>`` is ``task.labels[i]``, else the class index.
* ``balanced_accuracy`` is scikit-learn's (mean recall over classes present in the targets); ``macro_f1``
  uses scikit-learn's default label set (classes in targets or predictions) with ``zero_division=0``, so
  predicting an absent class is penalised while classes absent from both are ignored.
* ``ece``: top-label expected calibration error (Guo et al. 2017) with 15 equal-width bins
  ``(k/15, (k+1)/15]``: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``. ``nll``: mean cross-entropy (nats).
* Multilabel: probabilities are ``sigmoid(logits)``, a label is predicted when its probability is >= 0.5;
  ``macro_f1`` averages over all labels (``zero_division=0``); ``mean_ap`` averages average precision over
  labels with at least one positive; ``bce`` is the mean binary cross-entropy over all case-label pairs.
* Regression: predictions and targets are in original units; ``sign_accuracy`` (only when
  ``task.sign_metric``) follows the CMU-MOSI Acc-2 "non-zero" reference code: cases with target 0 are
  excluded and ``(pred > 0) == (target > 0)`` is scored, so a prediction of exactly 0 counts as negative.
  The per-case ``loss`` is the squared error in standardised units, ``((pred - target) / target_std)^2``.
* Every aggregate metric value is a plain python ``float``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, log_softmax
from scipy.stats import pearsonr
from sklearn import metrics as skm

from datasets.spec import TaskSpec

from .catalogue import METRIC_DIRECTION, PRIMARY, higher_is_better  # noqa: F401  (re-exported)

ECE_BINS = 15
NAN = float("nan")

def primary_metric(task: TaskSpec) -> tuple[str, bool]:
    """The metric used to rank methods on ``task``: (name, higher_is_better)."""
    if task.kind not in PRIMARY:
        raise ValueError(f"task {task.name!r}: no primary metric for kind {task.kind!r} in bench.metrics")
    return PRIMARY[task.kind], METRIC_DIRECTION[PRIMARY[task.kind]]


@dataclass
class TaskEval:
    metrics: dict[str, float]
    per_case: pd.DataFrame


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def _class_names(task: TaskSpec) -> list[str]:
    return list(task.labels) if task.labels else [str(i) for i in range(task.num_classes)]


def _metric_names(task: TaskSpec) -> list[str]:
    if task.kind == "binary":
        return ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "auprc", "ece", "nll"]
    if task.kind == "multiclass":
        names = _class_names(task)
        return (["accuracy", "balanced_accuracy", "macro_f1", "auroc"] + [f"auroc_{c}" for c in names]
                + ["auprc"] + [f"auprc_{c}" for c in names] + ["ece", "nll"])
    if task.kind == "multilabel":
        return ["micro_f1", "macro_f1", "mean_ap", "subset_accuracy", "bce"]
    return ["mae", "rmse", "pearson_r", "mse"] + (["sign_accuracy"] if task.sign_metric else [])


def _auroc(positive: np.ndarray, score: np.ndarray) -> float:
    return NAN if positive.all() or not positive.any() else float(skm.roc_auc_score(positive, score))


def _ap(positive: np.ndarray, score: np.ndarray) -> float:
    return NAN if not positive.any() else float(skm.average_precision_score(positive, score))


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins ``(lo, hi]`` (Guo et al. 2017)."""
    if confidence.size == 0:
        return NAN
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    idx = np.searchsorted(inner_edges, confidence, side="left")  # bin b holds edge_b < conf <= edge_{b+1}
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / confidence.size)


def _classification(task: TaskSpec, logits: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    n, c = len(logits), task.num_classes
    if logits.ndim != 2 or logits.shape[1] != c:
        raise ValueError(f"task {task.name!r}: expected logits of shape (N, {c}), got {logits.shape}")
    y = y.reshape(n, -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or (n and (not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or y.min() < 0 or y.max() >= c)):
        raise ValueError(f"task {task.name!r}: targets must be class indices in [0, {c}) of shape (N,)")
    y = y.astype(np.int64)
    logp = log_softmax(logits, axis=1)
    probs = np.exp(logp)
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    loss = -logp[np.arange(n), y]
    cols = {"target": y.astype(np.float64), "pred": pred.astype(np.float64), "correct": correct, "loss": loss,
            "abs_error": np.full(n, NAN), "probs": [row.tolist() for row in probs]}
    if n == 0:
        return dict.fromkeys(_metric_names(task), NAN), cols
    auroc = [_auroc(y == k, probs[:, k]) for k in range(c)]
    auprc = [_ap(y == k, probs[:, k]) for k in range(c)]
    out = {"accuracy": correct.mean(), "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
           "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0)}
    if task.kind == "binary":
        out.update(auroc=auroc[1], auprc=auprc[1])
    else:
        names = _class_names(task)
        out["auroc"] = _nanmean(auroc)
        out.update({f"auroc_{name}": v for name, v in zip(names, auroc)})
        out["auprc"] = _nanmean(auprc)
        out.update({f"auprc_{name}": v for name, v in zip(names, auprc)})
    out["ece"] = expected_calibration_error(probs.max(axis=1), correct)
    out["nll"] = loss.mean()
    return out, cols


def _multilabel(task: TaskSpec, logits: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    n, c = len(logits), task.num_classes
    if logits.shape != (n, c) or y.shape != (n, c):
        raise ValueError(f"task {task.name!r}: expected logits and targets of shape (N, {c}), "
                         f"got {logits.shape} and {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"task {task.name!r}: multilabel targets must be 0/1")
    y = y.astype(np.int64)
    probs = expit(logits)
    hard = (logits >= 0).astype(np.int64)  # sigmoid(logit) >= 0.5
    bce = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    correct = np.all(hard == y, axis=1).astype(np.float64)
    cols = {"target": np.full(n, NAN), "pred": np.full(n, NAN), "correct": correct, "loss": bce.mean(axis=1),
            "abs_error": np.full(n, NAN), "probs": [row.tolist() for row in probs]}
    if n == 0:
        return dict.fromkeys(_metric_names(task), NAN), cols
    out = {"micro_f1": skm.f1_score(y, hard, average="micro", zero_division=0),
           "macro_f1": skm.f1_score(y, hard, average="macro", zero_division=0),
           "mean_ap": _nanmean([_ap(y[:, k] == 1, probs[:, k]) for k in range(c)]),
           "subset_accuracy": correct.mean(), "bce": bce.mean()}
    return out, cols


def _regression(task: TaskSpec, pred: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    n = len(pred)
    pred = pred.reshape(n) if pred.ndim == 2 and pred.shape[1] == 1 else pred
    y = y.reshape(n).astype(np.float64) if y.ndim == 2 and y.shape[1] == 1 else y.astype(np.float64)
    if pred.shape != (n,) or y.shape != (n,) or not np.all(np.isfinite(y)):
        raise ValueError(f"task {task.name!r}: expected finite predictions and targets of shape (N,) or (N, 1)")
    err = pred - y
    cols = {"target": y, "pred": pred, "correct": np.full(n, NAN), "loss": (err / task.target_std) ** 2,
            "abs_error": np.abs(err), "probs": [[] for _ in range(n)]}
    if n == 0:
        return dict.fromkeys(_metric_names(task), NAN), cols
    mse = float(np.mean(err**2))
    constant = n < 2 or np.ptp(pred) == 0 or np.ptp(y) == 0
    out = {"mae": np.abs(err).mean(), "rmse": np.sqrt(mse),
           "pearson_r": NAN if constant else pearsonr(pred, y).statistic, "mse": mse}
    if task.sign_metric:
        nz = y != 0
        out["sign_accuracy"] = np.mean((pred[nz] > 0) == (y[nz] > 0)) if nz.any() else NAN
    return out, cols


_EVALUATORS = {"binary": _classification, "multiclass": _classification, "multilabel": _multilabel,
               "regression": _regression}


def evaluate_task(task: TaskSpec, preds: torch.Tensor | np.ndarray, targets: Any, mask: Any = None,
                  ids: list[str] | None = None) -> TaskEval:
    """Evaluate ``preds`` (logits, or values for regression) against ``targets`` on the rows where ``mask``."""
    if task.kind == "segmentation":
        raise ValueError(f"task {task.name!r}: segmentation metrics live elsewhere; bench.metrics covers "
                         "binary, multiclass, multilabel and regression tasks only")
    p, y = _to_numpy(preds).astype(np.float64), _to_numpy(targets)
    n = p.shape[0] if p.ndim else -1
    keep = np.ones(n, dtype=bool) if mask is None else _to_numpy(mask).astype(bool).reshape(-1)
    case_ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    if n < 0 or y.ndim == 0 or len(y) != n or keep.shape != (n,) or len(case_ids) != n:
        raise ValueError(f"task {task.name!r}: preds, targets, mask and ids must share their first dimension "
                         f"(got {p.shape}, {y.shape}, {keep.shape}, {len(case_ids)})")
    p, y = p[keep], y[keep]
    if not np.all(np.isfinite(p)):
        raise ValueError(f"task {task.name!r}: predictions contain NaN or inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metrics, cols = _EVALUATORS[task.kind](task, p, y)
    per_case = pd.DataFrame({"case_id": [cid for cid, k in zip(case_ids, keep) if k], **cols})
    return TaskEval({k: float(v) for k, v in metrics.items()}, per_case)
