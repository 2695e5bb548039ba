"""The case-level term of every metric: its value on one run's test cases and each case's influence.

A seed-aware comparison (:mod:`results.inference`) needs, besides the spread over training seeds,
how much each run's metric would move if the test sample were drawn again, and how much of that
movement two runs share because they were scored on the same cases. Both come from the
metric's *influence function* over cases (the infinitesimal jackknife; Jaeckel 1972, Efron
1982): with ``z_r`` one run's scaled influence vector, ``Cov(metric_r, metric_s) = z_r · z_s``
over the cases the two runs share. For a mean this is exactly the sample covariance of the
per-case values over N; for AUROC it is exactly DeLong's structural-component covariance
(DeLong et al. 1988; the placements are the influence function of the Mann-Whitney statistic).
Metrics whose influence has no useful closed form use a case bootstrap whose resamples every
run on the same cases shares: ECE (its linearised influence overstates its sampling variance
1.5-2.5 times, measured against repeated test samples; the bootstrap is within 1.0-1.3) and AUPRC. docs/statistics.md ("The case term") lists the metric families.

Inputs are one run's per-case rows for one task (``bench.metrics`` / ``bench.seg_eval`` columns;
for a 3-D segmentation task one row per case and organ, with ``class``), as a dict of numpy
arrays. No torch, no scikit-learn: numpy and SciPy only (the tests check every value against
scikit-learn and every variance against a bootstrap or DeLong's).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: metrics whose value is the mean of a per-case column over the rows where it is finite
MEAN_COLUMNS = {"accuracy": "correct", "subset_accuracy": "correct", "nll": "loss", "bce": "loss",
                "mae": "abs_error"}
#: per-organ / per-label segmentation metrics: ``<prefix>_<label>``
SEG_PREFIXES = ("dice_", "iou_", "nsd_", "hd95_")
SEG_BASES = ("dice", "iou", "nsd", "hd95")
ECE_BINS = 15
#: resamples of the case bootstrap for metrics whose influence has no useful closed form (ECE, AUPRC)
BOOTSTRAP = 1000


@dataclass(frozen=True)
class CaseInfluence:
    """One run's metric on its test cases: ``value`` (recomputed from the rows) and ``z``, the
    scaled influence of each unit (``units``: case ids, or bootstrap resample names when ``kind``
    is ``"bootstrap"``), so that the case-sampling covariance of two runs is ``z_r · z_s`` over
    their shared units."""

    value: float
    units: np.ndarray
    z: np.ndarray
    kind: str = "influence"

    @property
    def variance(self) -> float:
        return float(self.z @ self.z)


Rows = Mapping[str, np.ndarray]
#: key under which a caller may keep a rows mapping's :class:`Units` (computed once for all metrics)
UNITS_KEY = "__units__"


@dataclass(frozen=True)
class Units:
    """The cases of a run's rows: ``uniq`` (sorted case ids) and, per row, ``codes`` into it."""

    ids: np.ndarray
    codes: np.ndarray
    uniq: np.ndarray

    @classmethod
    def of(cls, ids) -> "Units":
        ids = np.asarray(ids).astype(str)
        if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):   # already sorted and unique: the common case
            return cls(ids, np.arange(ids.size), ids)
        uniq, codes = np.unique(ids, return_inverse=True)
        return cls(ids, codes.ravel(), uniq)

    def subset(self, keep: np.ndarray) -> "Units":
        return Units.of(self.ids[keep])

    def __len__(self) -> int:
        return len(self.ids)


def units_of(rows: Rows) -> Units:
    """The rows' :class:`Units` (kept under :data:`UNITS_KEY` when the caller stored it)."""
    units = rows.get(UNITS_KEY)
    return units if units is not None else Units.of(rows["case_id"])


def _scaled(units: Units, influence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Influence per case (summing a case's rows) scaled by 1/sqrt(N(N-1)) (the unbiased sample
    covariance for a mean)."""
    n = len(units.uniq)
    per = influence if units.uniq is units.ids else np.bincount(units.codes, weights=influence, minlength=n)
    return units.uniq, per / math.sqrt(n * (n - 1)) if n > 1 else np.zeros(n)


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (SciPy's ``rankdata``, without its overhead:
    a leaderboard ranks thousands of score vectors)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0   # positions start+1 .. end, averaged
    ranks = np.empty(xs.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _valid_mean(x: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean over the finite (and ``valid``) entries, and its influence per row: for the ratio
    ``sum(v x) / sum(v)`` it is ``N v (x - mean) / sum(v)``."""
    x = np.asarray(x, dtype=np.float64)
    v = np.isfinite(x) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(x))
    k = int(v.sum())
    if k == 0:
        return float("nan"), np.zeros(len(x))
    m = float(x[v].mean())
    return m, np.where(v, (np.where(v, x, 0.0) - m) * len(x) / k, 0.0)


def _mean_influence(units: Units, x: np.ndarray, valid=None) -> CaseInfluence | None:
    value, infl = _valid_mean(x, valid)
    if not math.isfinite(value):
        return None
    u, z = _scaled(units, infl)
    return CaseInfluence(value, u, z)


# --------------------------------------------------------------------------- classification
def _labels(rows: Rows) -> tuple[np.ndarray, np.ndarray] | None:
    y, p = rows.get("target"), rows.get("pred")
    if y is None or p is None:
        return None
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not (np.isfinite(y).all() and np.isfinite(p).all()) or not len(y):
        return None
    return y.astype(np.int64), p.astype(np.int64)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean recall over the classes present in ``y`` (scikit-learn's ``balanced_accuracy_score``)
    and its influence per case, ``N / (K n_y) (correct - recall_y)``."""
    classes, yi, counts = np.unique(y, return_inverse=True, return_counts=True)
    correct = (pred == y).astype(np.float64)
    recall = np.bincount(yi, weights=correct, minlength=len(classes)) / counts
    value = float(recall.mean())
    return value, len(y) / (len(classes) * counts[yi]) * (correct - recall[yi])


def macro_f1(y: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Unweighted mean F1 over the labels in ``y`` or ``pred`` (scikit-learn's ``f1_score(average=
    "macro", zero_division=0)``) and its influence: per label ``F = 2 tp / (p + t)`` of the
    frequencies tp, p (predicted), t (true) has influence ``2 (a (p + t) - tp (b + c)) / (p + t)^2``
    with a, b, c the case's indicators of tp, predicted and true."""
    labels = np.unique(np.concatenate([y, pred]))
    a = (y[None, :] == labels[:, None]) & (pred[None, :] == labels[:, None])
    b = pred[None, :] == labels[:, None]
    c = y[None, :] == labels[:, None]
    tp, pp, tt = a.mean(axis=1), b.mean(axis=1), c.mean(axis=1)
    s = (pp + tt)[:, None]
    f1 = 2 * tp / (pp + tt)
    infl = (2 * (a * s - tp[:, None] * (b.astype(np.float64) + c)) / s ** 2).mean(axis=0)
    return float(f1.mean()), infl


def _probs(rows: Rows) -> np.ndarray | None:
    p = rows.get("probs")
    if p is None or not len(p):
        return None
    if p.dtype == object:   # a table of several tasks: rows of unequal length until filtered to one task
        if len({len(r) for r in p}) != 1:
            return None
        p = np.stack([np.asarray(r, dtype=np.float64) for r in p])
    p = np.asarray(p, dtype=np.float64)
    return p if p.ndim == 2 and p.shape[1] >= 2 and np.isfinite(p).all() else None


def _placements(pos: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray] | None:
    """AUROC of ``score`` for ``pos`` and DeLong's scaled influence per case (positives:
    ``(V10 - AUC) / sqrt(m (m-1))``, negatives: ``(V01 - AUC) / sqrt(n (n-1))``), so that ``z · z``
    is DeLong's variance ``S10 / m + S01 / n`` (Sun & Xu 2014 mid-ranks)."""
    m = int(pos.sum())
    n = pos.size - m
    if m < 2 or n < 2:
        return None
    ranks = midranks(score)
    rp, rn = midranks(score[pos]), midranks(score[~pos])
    v10 = (ranks[pos] - rp) / n
    v01 = 1.0 - (ranks[~pos] - rn) / m
    auc = float(v10.mean())
    z = np.empty(pos.size)
    z[pos] = (v10 - auc) / math.sqrt(m * (m - 1))
    z[~pos] = (v01 - auc) / math.sqrt(n * (n - 1))
    return auc, z


def _auroc(units: Units, y: np.ndarray, probs: np.ndarray, classes: list[int]) -> CaseInfluence | None:
    """Mean one-vs-rest AUROC over ``classes`` with both positives and negatives (the binary AUROC
    for ``[1]``), with the mean of the classes' DeLong influences."""
    parts = [r for k in classes if (r := _placements(y == k, probs[:, k])) is not None]
    if not parts:
        return None
    value = float(np.mean([v for v, _ in parts]))
    z = np.mean([z for _, z in parts], axis=0)
    return CaseInfluence(value, units.uniq, z if units.uniq is units.ids else
                         np.bincount(units.codes, weights=z, minlength=len(units.uniq)))


# --------------------------------------------------------------------------- regression
def _regression(units: Units, rows: Rows, metric: str) -> CaseInfluence | None:
    if metric == "mse" or metric == "rmse":
        e2 = np.asarray(rows.get("abs_error", []), dtype=np.float64) ** 2
        if not len(e2) or not np.isfinite(e2).all():
            return None
        mse, infl = _valid_mean(e2)
        if metric == "mse":
            return CaseInfluence(mse, *_scaled(units, infl))
        rmse = math.sqrt(mse)
        return None if rmse == 0 else CaseInfluence(rmse, *_scaled(units, infl / (2 * rmse)))
    y, p = rows.get("target"), rows.get("pred")
    if y is None or p is None:
        return None
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not (np.isfinite(y).all() and np.isfinite(p).all()) or len(y) < 3:
        return None
    if metric == "pearson_r":
        if not (np.ptp(y) and np.ptp(p)):
            return None
        xs, ys = (p - p.mean()) / p.std(), (y - y.mean()) / y.std()
        r = float(np.mean(xs * ys))
        return CaseInfluence(r, *_scaled(units, xs * ys - r * (xs ** 2 + ys ** 2) / 2))
    if metric == "sign_accuracy":
        return _mean_influence(units, ((p > 0) == (y > 0)).astype(np.float64), valid=y != 0)
    return None


# --------------------------------------------------------------------------- segmentation
def _segmentation(units: Units, rows: Rows, metric: str) -> CaseInfluence | None:
    base, label = (metric, None) if metric in SEG_BASES else metric.split("_", 1)
    classes = rows.get("class")
    if classes is None:   # 2-D per-sample segmentation: one row per case, dice_<label> as columns
        col = rows.get(metric if label is not None else base)
        return None if col is None else _mean_influence(units, col)
    x = rows.get(base)
    if x is None:
        return None
    classes = np.asarray(classes).astype(str)
    if label is not None:   # one organ: its rows only
        keep = classes == label
        return _mean_influence(units.subset(keep), np.asarray(x, dtype=np.float64)[keep]) if keep.any() else None
    # a domain's metric: the mean over organs of each organ's mean over its cases
    x = np.asarray(x, dtype=np.float64)
    codes, uniq = units.codes, units.uniq
    n = len(uniq)
    values, infl = [], np.zeros(len(x))
    for organ in np.unique(classes):
        keep = classes == organ
        v = keep & np.isfinite(x)
        k = int(v.sum())
        if not k:
            continue
        m = float(x[v].mean())
        values.append(m)
        infl[v] += (x[v] - m) * n / k
    if not values:
        return None
    per = np.bincount(codes, weights=infl / len(values), minlength=n)
    return CaseInfluence(float(np.mean(values)), uniq, per / math.sqrt(n * (n - 1)) if n > 1 else np.zeros(n))


# --------------------------------------------------------------------------- bootstrap fallback
def _weights(uniq: np.ndarray) -> tuple[np.ndarray, str]:
    """``BOOTSTRAP`` resampling weights (counts, B x N) of the sorted cases ``uniq``, drawn from a
    seed derived from the case ids: every run scored on the same cases gets the same resamples
    (which keeps them paired); the tag names the case set in the units, so that runs on other
    cases never share a unit."""
    tag = f"{zlib.crc32(chr(0).join(uniq).encode()):08x}"
    if tag not in _WEIGHTS:
        n = len(uniq)
        idx = np.random.default_rng(int(tag, 16)).integers(0, n, size=(BOOTSTRAP, n))
        flat = (idx + n * np.arange(BOOTSTRAP)[:, None]).ravel()
        if len(_WEIGHTS) > 64:
            _WEIGHTS.clear()
        _WEIGHTS[tag] = np.bincount(flat, minlength=BOOTSTRAP * n).reshape(BOOTSTRAP, n).astype(np.float64)
    return _WEIGHTS[tag], tag


_WEIGHTS: dict[str, np.ndarray] = {}


def weighted_ece(w: np.ndarray, confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """ECE (as :func:`ece`) of each row of case weights ``w`` (B x N)."""
    idx = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence, side="left")
    onehot = np.zeros((confidence.size, bins))
    onehot[np.arange(confidence.size), idx] = correct - confidence
    return np.abs(w @ onehot).sum(axis=1) / w.sum(axis=1)


def weighted_auprc(w: np.ndarray, pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's ``average_precision_score``: the precision at each
    distinct threshold weighted by the recall step) for each row of case weights ``w``; a row
    with no positive weight gives NaN."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]   # the last index of each distinct score
    wo = w[:, order]
    tps = np.cumsum(wo * pos[order], axis=1)[:, last]
    alls = np.cumsum(wo, axis=1)[:, last]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(alls > 0, tps / np.where(alls > 0, alls, 1), 0.0)
        recall = tps / tps[:, -1:]
    step = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    return np.where(tps[:, -1] > 0, np.sum(step * precision, axis=1), np.nan)


def _weighted(metric: str, rows: Rows, w: np.ndarray) -> np.ndarray | None:
    """``metric`` of the (case-sorted) rows under each row of weights ``w``."""
    probs, lab = _probs(rows), _labels(rows)
    if probs is None or lab is None:
        return None
    y, k = lab[0], probs.shape[1]
    if metric == "ece":
        return weighted_ece(w, probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64))
    if metric == "auprc":
        classes = [1] if k == 2 else [c for c in range(k) if (y == c).any()]
    elif metric.startswith("auprc_") and metric[6:].isdigit() and int(metric[6:]) < k:
        classes = [int(metric[6:])]
    else:
        return None
    if not classes:
        return None
    with np.errstate(invalid="ignore"):
        parts = np.array([weighted_auprc(w, y == c, probs[:, c]) for c in classes])
        return np.nanmean(np.where(np.isfinite(parts), parts, np.nan), axis=0) if len(classes) > 1 else parts[0]


def _bootstrap(units: Units, rows: Rows, metric: str) -> CaseInfluence | None:
    """Case bootstrap with weights shared by every run on the same cases (:func:`_weights`):
    ``z_b = (theta_b - mean) / sqrt(B - 1)``, so ``z_r · z_s`` is the bootstrap covariance."""
    codes, uniq = units.codes, units.uniq
    if len(uniq) != len(units) or len(uniq) < 2:
        return None
    if uniq is not units.ids:
        order = np.argsort(codes)
        rows = {k: (np.asarray(v)[order] if k not in ("case_id", UNITS_KEY) and v is not None
                    and len(v) == len(units) else v) for k, v in rows.items()}
    full = _weighted(metric, rows, np.ones((1, len(units))))
    if full is None or not np.isfinite(full).all():
        return None
    w, tag = _weights(uniq)
    boot = _weighted(metric, rows, w)
    ok = np.isfinite(boot)
    if ok.sum() < BOOTSTRAP // 2:
        return None
    b = np.where(ok, boot, np.nanmean(boot))
    if tag not in _BOOT_UNITS:   # one array per case set: runs on the same cases share it
        _BOOT_UNITS[tag] = np.array([f"boot{tag}:{i:04d}" for i in range(BOOTSTRAP)])
    return CaseInfluence(float(full[0]), _BOOT_UNITS[tag], (b - b.mean()) / math.sqrt(BOOTSTRAP - 1), kind="bootstrap")


_BOOT_UNITS: dict[str, np.ndarray] = {}


# --------------------------------------------------------------------------- the entry point
def case_influence(metric: str, rows: Rows) -> CaseInfluence | None:
    """``metric`` recomputed from one run's per-case ``rows`` (one task; for a per-organ metric
    the caller may pass all organs' rows) with its case influence, or None when the rows cannot
    give it (multilabel targets are not stored per case; a class without positives ...)."""
    if rows.get("case_id") is None or not len(rows["case_id"]):
        return None
    units = units_of(rows)
    if metric in SEG_BASES or metric.startswith(SEG_PREFIXES):
        return _segmentation(units, rows, metric)
    if metric in ("mse", "rmse", "pearson_r", "sign_accuracy"):
        return _regression(units, rows, metric)
    if metric in MEAN_COLUMNS:
        col = rows.get(MEAN_COLUMNS[metric])
        return None if col is None else _mean_influence(units, col)
    lab = _labels(rows)
    if metric in ("balanced_accuracy", "macro_f1"):
        if lab is None:
            return None
        value, infl = (balanced_accuracy if metric == "balanced_accuracy" else macro_f1)(*lab)
        return CaseInfluence(value, *_scaled(units, infl))
    probs = _probs(rows)
    if metric == "auroc" or (metric.startswith("auroc_") and metric[6:].isdigit()):
        if probs is None or lab is None:
            return None
        k = probs.shape[1]
        classes = ([1] if k == 2 else list(range(k))) if metric == "auroc" else [int(metric[6:])]
        if any(c >= k for c in classes):
            return None
        return _auroc(units, lab[0], probs, classes)
    if metric == "ece" or metric == "auprc" or metric.startswith("auprc_"):
        return _bootstrap(units, rows, metric)
    return None
