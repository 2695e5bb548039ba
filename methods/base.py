"""The method contract: an ``nn.Module`` built from ``(DatasetSpec, hparams)``.

A method implements ``forward(batch) -> Output``. The default :meth:`Method.loss` sums the
masked per-task losses and every auxiliary loss the forward put in ``Output.losses`` (each with
its gradient, each logged by name), so most methods only write ``__init__`` and ``forward``.
Class methods ``defaults``, ``hparam_rules``, ``search_space`` and ``supports`` describe the method to the
harness; nothing about seeds, splits, optimisers or metrics lives here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from datasets.spec import DatasetSpec, TaskSpec

from .losses import pixel_cross_entropy

if TYPE_CHECKING:
    from .hparam_rules import Rule


@dataclass(frozen=True)
class Stage:
    """One training stage: a name, the hparams its model is built with, and its share of the
    epoch budget. Most methods train in one stage; M4oE trains hard-routed experts first, then
    the gated model initialised from them (``Method.stages`` / ``Method.load_stage``)."""

    name: str
    hparams: dict[str, Any]
    fraction: float = 1.0


@dataclass
class Output:
    """Per-task predictions plus optional interpretation tensors and auxiliary losses.

    ``preds[task]``: logits (B, C) for classification/multilabel, values (B,) in original units
    for regression, logits (B, C, H, W) for a per-sample segmentation (dense) task; only the
    tasks the method supports (:meth:`Method.supports_task`). ``aux``: per-sample tensors with batch dimension first (routing or gate
    weights, expert outputs) that the runner stores with per-case predictions. ``losses``:
    auxiliary losses (e.g. load balancing) already weighted, added to the task loss.
    """

    preds: dict[str, torch.Tensor]
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


#: smoothing of the soft Dice in the segmentation loss (numerator and denominator)
SEG_DICE_SMOOTH = 1.0


def segmentation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft-Dice loss of logits (n, C, H, W) against class maps (n, H, W).

    CE is the mean over all pixels (softmax CE; for C=2 it equals BCE on the logit difference),
    computed by :func:`methods.losses.pixel_cross_entropy` (equal to ``F.cross_entropy``, but
    deterministic on CUDA: no ``nll_loss2d``).
    The soft Dice (``(2 sum(p*g) + s) / (sum(p) + sum(g) + s)``, ``s = SEG_DICE_SMOOTH``) is
    computed **per sample** and per foreground class (1..C-1), averaged over those classes, then
    over the samples, never pooled over the batch (a small structure weighs as much as a big one)."""
    logits = pred.float()
    target = target.long()
    ce = pixel_cross_entropy(logits, target, ignore_index=-100)  # F.cross_entropy's default: dense targets ignore none
    prob = logits.softmax(dim=1)[:, 1:]
    onehot = nn.functional.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    dims = tuple(range(2, logits.dim()))  # spatial dims only: one Dice per (sample, class)
    dice = (2 * (prob * onehot).sum(dims) + SEG_DICE_SMOOTH) / (prob.sum(dims) + onehot.sum(dims) + SEG_DICE_SMOOTH)
    return ce + (1.0 - dice.mean(dim=1)).mean()


def task_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean loss over the labelled rows of one task (0 with a gradient path when none are labelled)."""
    if not bool(mask.any()):
        return pred.sum() * 0.0
    pred, target = pred[mask], target[mask]
    if task.kind in ("binary", "multiclass"):
        return nn.functional.cross_entropy(pred, target.long())
    if task.kind == "multilabel":
        return nn.functional.binary_cross_entropy_with_logits(pred, target.float())
    if task.kind == "regression":
        return (((pred.reshape(-1) - target.float()) / task.target_std) ** 2).mean()
    if task.kind == "segmentation":
        return segmentation_loss(pred, target)
    raise ValueError(f"task {task.name!r}: kind {task.kind!r} has no loss here")


#: hparams of the shared encoders, declared by every method (presets set hidden/layers/dropout)
ENCODER_DEFAULTS: dict[str, Any] = {"hidden": 64, "layers": 1, "dropout": 0.1, "image_encoder": "cnn"}
#: hparams of the transformer fusion backbones (attention, moe, soft-moe, and I2MoE over them)
TRANSFORMER_DEFAULTS: dict[str, Any] = {"heads": 4, "fusion_layers": 1}


class Method(nn.Module):
    """Base class of every method. Subclasses set ``name``/``description`` and build layers."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__()
        self.spec = spec
        self.hparams = dict(hparams)

    # ---- description for the harness
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Paper (or harness) defaults of every hparam the method reads."""
        return {}

    @classmethod
    def hparam_rules(cls) -> dict[str, Rule]:
        """A validation rule per hparam (``methods.hparam_rules``), so that values which cannot work
        are refused before a run starts: the shared rule of each ``defaults()`` key. Override to
        change one (``{**super().hparam_rules(), key: Rule(...)}``) or to add a rule of a new key."""
        from .hparam_rules import rules_for

        return rules_for(cls.defaults())

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """Optuna search space: ``trial.suggest_*`` calls returning an hparams dict. The default is
        the shared encoders' space; methods add their own keys to it."""
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    @classmethod
    def supports_task(cls, task: TaskSpec) -> bool | str:
        """True, or a one-line reason why this method does not predict ``task``. The runner trains
        and evaluates the supported tasks only and records the declined ones with their reason
        (``summary["declined_tasks"]``). Default: every per-sample kind; no segmentation (dense)
        task, which needs a decoder (override to accept one and return (B, C, H, W) logits)."""
        if task.kind == "segmentation":
            return f"{cls.name} has per-sample heads only; it does not do segmentation (dense task {task.name!r})"
        return True

    @classmethod
    def declined_tasks(cls, spec: DatasetSpec) -> dict[str, str]:
        """``{task name: reason}`` for the tasks of ``spec`` this method does not predict."""
        return {t.name: r for t in spec.tasks if (r := cls.supports_task(t)) is not True}

    @classmethod
    def supported_tasks(cls, spec: DatasetSpec) -> tuple[TaskSpec, ...]:
        """The tasks of ``spec`` this method predicts (in spec order)."""
        return tuple(t for t in spec.tasks if cls.supports_task(t) is True)

    @classmethod
    def supports(cls, spec: DatasetSpec) -> bool | str:
        """True, or a one-line reason why this method cannot run on ``spec``: by default it runs when
        it supports at least one task (the declined ones are recorded, not run)."""
        declined = cls.declined_tasks(spec)
        if len(declined) < len(spec.tasks):
            return True
        return "; ".join(dict.fromkeys(declined.values()))

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The tasks this model predicts and is trained on (``supported_tasks`` of its spec)."""
        return type(self).supported_tasks(self.spec)

    @property
    def task_spec(self) -> DatasetSpec:
        """The spec restricted to the supported tasks: what heads and backbones are built from
        (the full spec when every task, or no task, is supported)."""
        tasks = self.tasks
        if not tasks or len(tasks) == len(self.spec.tasks):
            return self.spec
        return dataclasses.replace(self.spec, tasks=tasks)

    @classmethod
    def stages(cls, hparams: dict[str, Any]) -> list[Stage]:
        """The training stages; the runner gives each its share of the epochs and its own
        optimiser and schedule, and selects each stage's weights on validation."""
        return [Stage("main", dict(hparams))]

    # ---- behaviour
    def load_stage(self, state: dict[str, torch.Tensor], stage: Stage) -> dict[str, list[str]]:
        """Initialise this stage's model from the previous stage's selected weights; returns the
        ``restored`` and the ``new`` parameter names (recorded with the run)."""
        self.load_state_dict(state)
        return {"restored": sorted(state), "new": []}

    @classmethod
    def cost_input(cls, preset: str) -> tuple[str, str | None] | None:
        """(dataset, image views "NxCxHxW" or None) that ``bench cost`` measures this method on when no
        ``--dataset`` is given: the paper's input shape for paper methods. Default: none (--dataset needed)."""
        return None

    def data_options(self) -> dict[str, Any]:
        """Keyword options for the dataset's ``batches`` (segmentation: slice size or 3-D patch)."""
        return {}

    def interpret(self, aux: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
        """Dataset-level interpretation numbers from the test split's per-sample ``aux`` outputs
        and the dataset's per-sample ground truth (e.g. planted interaction types). Stored with
        the run as the test metrics of the pseudo-task ``interpretation``. Default: none."""
        return {}

    def loss(self, output: Output, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        for task in self.tasks:   # declined tasks have no prediction and no loss
            parts[f"task/{task.name}"] = task_loss(task, output.preds[task.name], batch["targets"][task.name],
                                                   batch["target_mask"][task.name])
        for name, value in output.losses.items():
            parts[f"aux/{name}"] = value
        total = torch.stack(list(parts.values())).sum()
        return total, parts
