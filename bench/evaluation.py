"""One evaluation entry point for every task kind: predict a split, score it, and (for the test
split) keep the per-case rows that paired statistics need.

Classification, multilabel, regression and 2-D per-sample segmentation tasks are scored per
sample (``bench.metrics``), only the tasks the method supports (``Method.supports_task``);
segmentation datasets of the 3-D track per case (``bench.seg_eval``). :func:`evaluate` does both, and
:func:`validation_score` is the number the training loop selects on. Only the validation split is
ever seen during training; the runner evaluates the test split once, at the end (docs/protocol.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from datasets import MultimodalData
from methods import task_loss

from .config import TrainConfig
from .execution import to_device  # noqa: F401  (re-exported: runner, training)
from .metrics import evaluate_task, primary_metric


@dataclass
class SplitEval:
    loss: float
    metrics: dict[str, dict[str, float]]
    cases: pd.DataFrame | None
    aux: dict[str, np.ndarray]      # per-sample interpretation tensors, in split order (per_case only)
    extras: dict[str, np.ndarray]   # the dataset's per-sample ground truth for the split (per_case only)


def is_segmentation(data) -> bool:
    return bool(getattr(data, "is_segmentation", False))


def model_tasks(model, spec) -> tuple:
    """The tasks of ``spec`` that ``model`` predicts: its class's ``supported_tasks`` (a method may
    decline some, e.g. a dense task it has no decoder for), every task for any other module."""
    supported = getattr(type(model), "supported_tasks", None)
    return tuple(supported(spec)) if supported is not None else tuple(spec.tasks)


def evaluate(model, data, split: str, tc: TrainConfig, device: torch.device, opts: dict[str, Any],
             per_case: bool = False) -> SplitEval:
    """Metrics of ``split`` for every task; with ``per_case`` also the per-case frame, the
    per-sample ``aux`` outputs and the dataset's ground truth (interpretation)."""
    if not is_segmentation(data):
        return _evaluate_samples(model, data, split, tc.batch_size, device, per_case=per_case)
    from .seg_eval import evaluate_cases

    metrics, cases, aux = evaluate_cases(model, data, split, tc.batch_size, device, opts, tc.eval_space,
                                         tc.metric_compat)
    if not per_case:
        return SplitEval(float("nan"), metrics, None, {}, {})
    truth = {"domain": data.case_domain[data.splits[split]], "domain_names": np.array([d.name for d in data.domains])}
    return SplitEval(float("nan"), metrics, cases, aux, truth)


def validation_score(model, data, tc: TrainConfig, device: torch.device, opts: dict[str, Any]) -> tuple[float, float]:
    """(validation loss, selection score; lower is better) on the validation split only.
    ``select=loss``: the sum of the task losses of the tasks the model predicts (a dense task's
    CE + Dice included when the method supports it, absent when it declines it); ``primary``: the
    mean of those tasks' primary metrics, direction-aware."""
    if is_segmentation(data):
        from .seg_eval import seg_val_loss

        loss = seg_val_loss(model, data, "val", tc.batch_size, device, opts)
        if tc.select == "loss":
            return loss, loss
        metrics = evaluate(model, data, "val", tc, device, opts).metrics
        return loss, -float(np.nanmean([metrics[t.name]["dice"] for t in data.spec.tasks]))
    val = _evaluate_samples(model, data, "val", tc.batch_size, device, with_metrics=tc.select != "loss")
    if tc.select == "loss":
        return val.loss, val.loss
    values = []
    for task in model_tasks(model, data.spec):
        name, higher = primary_metric(task)
        v = val.metrics[task.name][name]
        values.append(-v if higher else v)
    return val.loss, float(np.mean(values))


@torch.no_grad()
def _evaluate_samples(model, data: MultimodalData, split: str, batch_size: int, device: torch.device,
                      per_case: bool = False, with_metrics: bool = True) -> SplitEval:
    """Predict a whole split of a per-sample dataset in eval mode: loss, metrics per task (unless
    ``with_metrics`` is False: validation under ``select=loss`` needs only the loss)."""
    model.eval()
    tasks = model_tasks(model, data.spec)   # declined tasks: no prediction, no loss, no metric, no rows
    preds: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    aux: dict[str, list[torch.Tensor]] = {}
    for batch in data.batches(split, batch_size):
        out = model(to_device(batch, device))
        for t in preds:
            preds[t].append(out.preds[t].float().cpu())
        for name, value in (out.aux.items() if per_case else ()):
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == len(batch["index"]):
                aux.setdefault(name, []).append(value.float().cpu())
    idx = data.splits[split]
    ids = [data.ids[i] for i in idx]
    loss, metrics, frames = 0.0, {}, []
    for task in tasks:
        p = torch.cat(preds[task.name])
        y, m = data.targets[task.name][idx], data.target_mask[task.name][idx]
        loss += float(task_loss(task, p, y, m))
        if not (with_metrics or per_case):
            continue
        ev = evaluate_task(task, p, y, m, ids)
        metrics[task.name] = ev.metrics
        if per_case:
            frames.append(ev.per_case.assign(task=task.name))
    aux_arrays = {name: torch.cat(parts).numpy() for name, parts in aux.items()}
    extras = {name: np.asarray(values)[idx] for name, values in data.extras.items()} if per_case else {}
    cases = None
    if per_case:
        cases = pd.concat(frames, ignore_index=True)
        extra = pd.DataFrame({"case_id": ids})
        for name, v in aux_arrays.items():
            extra[f"aux_{name}"] = v.reshape(len(v), -1).tolist() if v.ndim > 1 else v
        for name, values in extras.items():
            extra[f"truth_{name}"] = values
        for name, values in getattr(data, "meta", {}).items():   # a user's extra table columns, kept
            extra[f"meta_{name}"] = np.asarray(values)[idx]
        cases = cases.merge(extra, on="case_id", how="left")
    return SplitEval(loss, metrics, cases, aux_arrays, extras)
