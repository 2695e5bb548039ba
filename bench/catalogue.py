"""The metric catalogue: direction, primary metric and headline metrics of every task kind.

It lives apart from ``bench.metrics`` (which needs torch, scikit-learn and SciPy) because a copy
of it is stored with every run (``RunRecord.catalogue``): ``results/`` ranks and formats runs from
the store alone, without importing the code that computed them (docs/store.md).
"""
from __future__ import annotations

from collections.abc import Mapping

METRIC_DIRECTION: dict[str, bool] = {
    "accuracy": True, "balanced_accuracy": True, "macro_f1": True, "auroc": True, "auprc": True,
    "ece": False, "nll": False,
    "micro_f1": True, "mean_ap": True, "subset_accuracy": True, "bce": False,
    "mae": False, "rmse": False, "mse": False, "pearson_r": True, "sign_accuracy": True,
    "agreement": True,  # interpretation: dominant expert == planted interaction type (I2MoE on synthetic-pid)
    "agreement_kappa": True,  # the same, chance-corrected (Cohen's kappa)
    # segmentation: 3-D per volume (bench.seg_eval, per class as <name>_<organ>) and 2-D per sample
    # (bench.metrics: dice, iou, dice_<label>, iou_<label>); infer_kind reads "dice" as segmentation
    "dice": True, "iou": True, "nsd": True, "hd95": False,
    "gate_match": True,  # M4oE: own dataset's expert dominates (gate weights / entropies are descriptive)
}
_PER_CLASS_PREFIXES = ("auroc_", "auprc_", "agreement_", "dice_", "iou_", "nsd_")
_LOWER_PREFIXES = ("hd95_",)

#: the metric that ranks methods on a task of each kind
PRIMARY: dict[str, str] = {"binary": "accuracy", "multiclass": "accuracy", "multilabel": "macro_f1",
                           "regression": "mae", "segmentation": "dice"}
#: the metrics a leaderboard shows for a task of each kind, in order
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"),
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"),
    "multilabel": ("micro_f1", "macro_f1", "mean_ap", "subset_accuracy"),
    "regression": ("mae", "rmse", "pearson_r"),
    # 3-D: mean over organs of the per-case means; 2-D per-sample: mean over cases (no hd95/nsd)
    "segmentation": ("dice", "hd95", "nsd", "iou"),
}
#: the pseudo-task holding a method's interpretation numbers (all of them are shown)
INTERPRETATION = "interpretation"


def higher_is_better(metric_name: str) -> bool:
    """Direction of a metric name, including per-class names such as ``auroc_<label>``."""
    if metric_name in METRIC_DIRECTION:
        return METRIC_DIRECTION[metric_name]
    if metric_name.startswith(_PER_CLASS_PREFIXES):
        return True
    if metric_name.startswith(_LOWER_PREFIXES):
        return False
    raise KeyError(f"unknown metric {metric_name!r}; known: {sorted(METRIC_DIRECTION)} and auroc_*/auprc_*")


def direction(metric_name: str) -> bool | None:
    """Higher-is-better, or None for descriptive numbers (e.g. mean expert weights)."""
    try:
        return higher_is_better(metric_name)
    except KeyError:
        return None


def build_catalogue(task_kinds: Mapping[str, str], metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict:
    """The catalogue stored with a run: per task its kind, primary and headline metrics; per
    metric name its direction (True: higher is better, False: lower, None: descriptive).

    ``task_kinds`` maps task name -> kind; tasks only in ``metrics`` (the interpretation
    pseudo-task, a segmentation dataset's ``all``) get their kind from their metric names."""
    names = {m for split in metrics.values() for task in split.values() for m in task}
    tasks: dict[str, dict] = {}
    for split in metrics.values():
        for task, values in split.items():
            if task in tasks:
                continue
            kind = task_kinds.get(task) or infer_kind(task, values)
            headline = sorted(values) if kind == INTERPRETATION else [m for m in HEADLINE.get(kind, ()) if m in values]
            tasks[task] = {"kind": kind, "primary": PRIMARY.get(kind), "headline": headline}
    return {"tasks": tasks, "higher": {m: direction(m) for m in sorted(names)}}


def infer_kind(task: str, values: Mapping[str, float]) -> str:
    """A task's kind from its metric names (runs stored before the catalogue existed)."""
    if task == INTERPRETATION:
        return INTERPRETATION
    for kind, marker in (("segmentation", "dice"), ("regression", "mae"), ("multilabel", "micro_f1"),
                         ("multiclass", "accuracy")):
        if marker in values:
            return kind
    return "unknown"
