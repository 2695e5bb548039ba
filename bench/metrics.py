"""Per-task evaluation: aggregate metrics plus a per-case table, for every per-sample task kind
(binary, multiclass, multilabel, regression, and 2-D per-sample segmentation; the 3-D
segmentation track is scored per volume by ``bench.seg_eval``).

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
* Segmentation (per-sample, dense): predictions are logits (N, C, H, W), targets (N, H, W) class maps
  with 0 = background; the predicted map is the argmax over C. Per case and per foreground class k
  (1..C-1): ``dice_k = 2|P_k & G_k| / (|P_k| + |G_k|)`` and ``iou_k = |P_k & G_k| / |P_k | G_k|``.
  **Empty-mask convention** (the same as ``bench.seg_metrics`` and nnU-Net v2): a class absent from both
  prediction and truth is NaN for that case and excluded from the means; absent from exactly one it is 0.
  (MONAI's ``compute_dice(ignore_empty=False)`` scores both-empty as 1; otherwise the values are equal.)
  The case's ``dice``/``iou`` is the mean over its non-NaN foreground classes (NaN when every class is
  empty in both); the aggregate ``dice``/``iou`` is the mean over cases of the per-case value (NaN cases
  excluded), ``dice_<label>``/``iou_<label>`` the mean over cases of that class. Per-case rows carry
  ``dice``, ``iou``, ``dice_<label>``, ``target``/``pred`` = foreground pixel counts, and ``loss`` = the
  case's training loss (pixel CE + 1 - soft Dice, ``methods.base.segmentation_loss``).
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
    if task.kind == "segmentation":
        names = _class_names(task)[1:]
        return ["dice"] + [f"dice_{c}" for c in names] + ["iou"] + [f"iou_{c}" for c in names]
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
    from scipy.stats import pearsonr  # scipy.stats takes 1.3 s to import: only regression tasks pay it

    mse = float(np.mean(err**2))
    constant = n < 2 or np.ptp(pred) == 0 or np.ptp(y) == 0
    out = {"mae": np.abs(err).mean(), "rmse": np.sqrt(mse),
           "pearson_r": NAN if constant else pearsonr(pred, y).statistic, "mse": mse}
    if task.sign_metric:
        nz = y != 0
        out["sign_accuracy"] = np.mean((pred[nz] > 0) == (y[nz] > 0)) if nz.any() else NAN
    return out, cols


def dice_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-case, per-foreground-class Dice and IoU of class maps (N, *spatial): two (N, C-1)
    arrays; NaN where the class is absent from both prediction and truth, 0 where from one."""
    n = len(pred)
    p, g = pred.reshape(n, -1), target.reshape(n, -1)
    dice, iou = np.full((n, num_classes - 1), NAN), np.full((n, num_classes - 1), NAN)
    for k in range(1, num_classes):
        pk, gk = p == k, g == k
        inter = (pk & gk).sum(axis=1).astype(np.float64)
        total = pk.sum(axis=1) + gk.sum(axis=1)
        union = (pk | gk).sum(axis=1)
        ok = total > 0
        dice[ok, k - 1] = 2.0 * inter[ok] / total[ok]
        iou[ok, k - 1] = inter[ok] / union[ok]
    return dice, iou


def _row_nanmean(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1) if x.shape[1] else np.full(len(x), NAN)


def _segmentation(task: TaskSpec, logits: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    n, c = len(logits), task.num_classes
    if logits.ndim != 4 or logits.shape[1] != c or y.shape != (n, *logits.shape[2:]):
        raise ValueError(f"task {task.name!r} (segmentation): expected logits (N, {c}, H, W) and class maps (N, H, W), "
                         f"got {logits.shape} and {y.shape}")
    if n and (y.min() < 0 or y.max() >= c or np.any(y != np.round(y))):
        raise ValueError(f"task {task.name!r}: mask labels must be class indices in [0, {c})")
    y = y.astype(np.int64)
    pred = logits.argmax(axis=1)
    dice, iou = dice_per_class(pred, y, c)
    case_dice, case_iou = _row_nanmean(dice), _row_nanmean(iou)
    # the case's training loss: mean pixel CE + (1 - soft Dice over the foreground classes)
    logp = log_softmax(logits, axis=1)
    ce = -np.take_along_axis(logp, y[:, None], axis=1).reshape(n, -1).mean(axis=1)
    from methods.base import SEG_DICE_SMOOTH

    prob, onehot = np.exp(logp)[:, 1:], (y[:, None] == np.arange(1, c).reshape(1, -1, *([1] * (y.ndim - 1))))
    axes = tuple(range(2, logits.ndim))
    soft = (2 * (prob * onehot).sum(axes) + SEG_DICE_SMOOTH) / (prob.sum(axes) + onehot.sum(axes) + SEG_DICE_SMOOTH)
    names = _class_names(task)[1:]
    cols = {"target": (y > 0).reshape(n, -1).sum(axis=1).astype(np.float64),
            "pred": (pred > 0).reshape(n, -1).sum(axis=1).astype(np.float64),
            "correct": np.full(n, NAN), "loss": ce + 1.0 - soft.mean(axis=1), "abs_error": np.full(n, NAN),
            "probs": [[] for _ in range(n)], "dice": case_dice, "iou": case_iou,
            **{f"dice_{name}": dice[:, k] for k, name in enumerate(names)}}
    if n == 0:
        return dict.fromkeys(_metric_names(task), NAN), cols
    out = {"dice": _nanmean(case_dice.tolist())}
    out.update({f"dice_{name}": _nanmean(dice[:, k].tolist()) for k, name in enumerate(names)})
    out["iou"] = _nanmean(case_iou.tolist())
    out.update({f"iou_{name}": _nanmean(iou[:, k].tolist()) for k, name in enumerate(names)})
    return out, cols


_EVALUATORS = {"binary": _classification, "multiclass": _classification, "multilabel": _multilabel,
               "regression": _regression, "segmentation": _segmentation}


def evaluate_task(task: TaskSpec, preds: torch.Tensor | np.ndarray, targets: Any, mask: Any = None,
                  ids: list[str] | None = None) -> TaskEval:
    """Evaluate ``preds`` (logits, or values for regression; (N, C, H, W) logits for a per-sample
    segmentation task) against ``targets`` on the rows where ``mask``."""
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
