"""Turn raw arrays into a split, standardised :class:`MultimodalData` without test leakage.

Vector modalities are z-scored and regression targets' scale recorded using statistics of the
**training split only**, so no information from val/test reaches the model. Image modalities
are left as the adapter scaled them (adapters put them in a fixed, data-independent range).
A non-vector modality given as lazy rows (an object with ``lazy_rows = True``, e.g. the
memory-mapped image stacks of the M4oE-MT adapters) is kept as given, so it stays on disk.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import numpy as np
import torch

from .data import MultimodalData
from .spec import DatasetFormatError, DatasetSpec
from .splits import split_indices


def build_data(spec: DatasetSpec, inputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], split_seed: int,
               ids: list[str] | None = None, mask: dict[str, np.ndarray] | None = None,
               target_mask: dict[str, np.ndarray] | None = None, groups: np.ndarray | None = None,
               stratify: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
               splits: dict[str, np.ndarray] | None = None, meta: dict[str, np.ndarray] | None = None) -> MultimodalData:
    """Split (by ``split_seed``, or the fixed ``splits`` a release or a user's split column gives),
    standardise vector modalities with training-split statistics, and assemble the tensors.

    ``mask[m]`` is False where modality ``m`` is absent for a sample (its values are ignored and
    zeroed); ``splits`` maps train/val/test to row indices and replaces the seeded split (the split
    seed then changes nothing, which the spec's ``split_rule`` should say); ``meta`` holds extra
    per-sample columns kept beside the predictions. Under :func:`keeping_unscaled` the vector
    inputs before standardisation are kept in ``data.unscaled`` for exporters.
    """
    n = len(next(iter(targets.values())))
    ids = ids or [f"{spec.name}-{i:05d}" for i in range(n)]
    mask = {m: np.asarray(mask[m], bool) if mask and m in mask else np.ones(n, bool) for m in spec.modality_names}
    target_mask = {t: np.asarray(target_mask[t], bool) if target_mask and t in target_mask else np.ones(n, bool)
                   for t in spec.task_names}
    if splits is None:
        splits = split_indices(n, split_seed, stratify=stratify, groups=groups)
    else:
        splits = {s: np.sort(np.asarray(splits.get(s, []), dtype=np.int64)) for s in ("train", "val", "test")}
    train = splits["train"]
    unscaled: dict[str, np.ndarray] = {}

    tensors: dict[str, torch.Tensor] = {}
    for m in spec.modalities:
        if m.name not in inputs:
            raise DatasetFormatError(f"{spec.name}: modality {m.name!r} declared in the spec has no data")
        if not m.is_vector and getattr(inputs[m.name], "lazy_rows", False):
            # memory-mapped rows (datasets/adapters/imaging.py) stay on disk: not copied, not zeroed;
            # absent rows are marked by mask[m] and methods never read their values as data
            tensors[m.name] = inputs[m.name]
            if _KEEP_UNSCALED.get():
                unscaled[m.name] = np.asarray(inputs[m.name], dtype=np.float32)
            continue
        x = np.asarray(inputs[m.name], dtype=np.float32).copy()
        if _KEEP_UNSCALED.get():
            unscaled[m.name] = x.copy()
        if m.is_vector:
            rows = train[mask[m.name][train]]
            with np.errstate(invalid="ignore"):
                mu = np.nanmean(x[rows], axis=0) if len(rows) else np.zeros(x.shape[1:], np.float32)
                sd = np.nanstd(x[rows], axis=0) if len(rows) else np.ones(x.shape[1:], np.float32)
            sd = np.where(np.isfinite(sd) & (sd > 1e-8), sd, 1.0)
            x = (x - np.nan_to_num(mu)) / sd
        x[~mask[m.name]] = 0.0  # absent rows carry zeros, and the mask says they are absent
        tensors[m.name] = torch.from_numpy(x.astype(np.float32))

    tasks = []
    ys: dict[str, torch.Tensor] = {}
    for t in spec.tasks:
        y = np.asarray(targets[t.name])
        if t.kind == "regression":
            vals = y[train[target_mask[t.name][train]]].astype(np.float64)
            vals = vals[np.isfinite(vals)]  # NaN targets are reported by validate(), not here
            mean = float(vals.mean()) if len(vals) else 0.0
            std = float(vals.std()) if len(vals) and vals.std() > 0 else 1.0
            t = dataclasses.replace(t, target_mean=mean, target_std=std)
            ys[t.name] = torch.from_numpy(y.astype(np.float32))
        elif t.kind == "multilabel":
            ys[t.name] = torch.from_numpy(y.astype(np.float32))
        else:
            ys[t.name] = torch.from_numpy(y.astype(np.int64))
            if t.kind in ("binary", "multiclass"):  # labelled training rows per class (class-weighted losses)
                labelled = y[train[target_mask[t.name][train]]].astype(np.int64)
                counts = np.bincount(labelled[(labelled >= 0) & (labelled < t.num_classes)], minlength=t.num_classes)
                t = dataclasses.replace(t, class_counts=tuple(int(c) for c in counts))
        tasks.append(t)
    spec = dataclasses.replace(spec, tasks=tuple(tasks))
    return MultimodalData(
        spec=spec, ids=list(ids), inputs=tensors,
        mask={m: torch.from_numpy(v) for m, v in mask.items()}, targets=ys,
        target_mask={t: torch.from_numpy(v) for t, v in target_mask.items()},
        splits=splits, groups=groups, extras=extras or {},
        meta=meta or {}, unscaled=unscaled)


_KEEP_UNSCALED: contextvars.ContextVar[bool] = contextvars.ContextVar("keep_unscaled", default=False)


@contextlib.contextmanager
def keeping_unscaled():
    """Within this block :func:`build_data` keeps each modality's values as given, before
    standardisation (``bench data convert --to folder`` writes those, so the folder rebuilds
    bit-identical tensors)."""
    token = _KEEP_UNSCALED.set(True)
    try:
        yield
    finally:
        _KEEP_UNSCALED.reset(token)
