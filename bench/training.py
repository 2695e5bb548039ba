"""The one training loop: optimiser, schedule, the training step, and a stage loop with
per-validation callbacks.

The stage loop trains epoch by epoch, validates every ``val_every`` epochs on the validation
split, keeps the best weights, calls each callback after every validation and stops when one
says so (:class:`EarlyStopping` now; an Optuna pruner is the same kind of callback), and hands
its state to ``save`` after every epoch so that a killed run resumes exactly. The decision to
stop is part of that state (``stopped``), so a run resumed after its last epoch does not train
on. :func:`train_step` is shared with ``bench cost``, which times the same step.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .evaluation import to_device, validation_score

#: step times kept for the median step time (the most recent ones; bounded so checkpoints stay small)
STEP_TIMES_KEPT = 256


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, parts: dict[str, float]):
        self.step, self.parts = step, parts
        super().__init__(f"non-finite loss at step {step}: {parts}")


@dataclass
class StageState:
    """Where a stage is; saved in every epoch checkpoint (plain values only)."""

    epoch: int = 0
    step: int = 0
    best_score: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0          # validations since the last improvement
    stopped: bool = False        # a callback ended the stage
    history: list[dict[str, float]] = field(default_factory=list)
    train_time: float = 0.0
    data_wait: float = 0.0       # seconds the training steps waited for their batches (in train_time)
    step_times: list[float] = field(default_factory=list)
    loaded: dict[str, list[str]] | None = None   # what load_stage restored / created (multi-stage methods)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: called after every validation with the stage state; returns True to stop the stage
ValidationCallback = Callable[[StageState], bool]


class Pruned(Exception):
    """Raised by a validation callback (a tuning pruner) to end the run as ``pruned``: the run
    is unpromising, which is an outcome of the trial, not a failure of the job."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"pruned after epoch {epoch} (validation score {value:.6g})")
        self.epoch, self.value = epoch, value


class EarlyStopping:
    """Stop when the validation score has not improved for ``patience`` validations (0: never)."""

    def __init__(self, patience: int):
        self.patience = patience

    def __call__(self, state: StageState) -> bool:
        return bool(self.patience) and state.bad_epochs >= self.patience


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    return torch.optim.SGD(params, lr=tc.lr, weight_decay=tc.weight_decay, momentum=0.9)


def make_schedule(opt, tc: TrainConfig, total_steps: int, steps_per_epoch: int = 1):
    """The learning-rate multiplier per optimisation step. ``step``: torch's ``StepLR`` stepped once
    an epoch, as M4oE-MT's released code does (x ``step_gamma`` every ``step_epochs`` epochs)."""
    total_steps = max(1, total_steps)
    if tc.schedule == "step":
        per = max(1, steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: tc.step_gamma ** ((step // per) // tc.step_epochs))
    if tc.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if tc.schedule == "poly":  # (1 - it / max_it)^0.9 per iteration, no warm-up (M4oE / Swin-UNet)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (1 - min(step, total_steps) / total_steps) ** 0.9)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


def train_step(model, batch: dict, opt: torch.optim.Optimizer, grad_clip: float, step: int, sched=None,
               scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimisation step on one batch (already on the device); returns the loss. A NaN/Inf
    loss raises :class:`NonFiniteLoss` with the loss parts before any weight changes.

    ``scaler`` (fp16 training, ``bench.execution.make_scaler``) scales the loss before backward
    and unscales the gradients before clipping; a step whose gradients overflow is skipped and
    the scale lowered, as ``torch.amp`` prescribes. The loss itself is computed in float32 (the
    model's outputs are cast back by ``bench.execution.prepare_model``)."""
    out = model(batch)
    total, parts = model.loss(out, batch)
    if not bool(torch.isfinite(total)):
        raise NonFiniteLoss(step, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()})
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        total.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
    else:
        scaler.scale(total).backward()
        if grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
    if sched is not None:
        sched.step()
    return total.detach().item()


@dataclass
class StageRun:
    """Everything one stage's loop needs besides the model and the data."""

    tc: TrainConfig
    device: torch.device
    epochs: int
    opts: dict[str, Any]        # batch options for training (sampling, augmentation)
    eval_opts: dict[str, Any]   # batch options for validation
    generator: torch.Generator
    callbacks: Sequence[ValidationCallback]
    save: Callable[[StageState, dict | None], None]   # (state, best weights) after every epoch
    desc: str = ""
    progress: bool = True
    scaler: torch.amp.GradScaler | None = None   # fp16 loss scaling (bench.execution)


def train_stage(model, data, run: StageRun, opt, sched, state: StageState,
                best_weights: dict | None) -> tuple[StageState, dict]:
    """Train one stage to its end (epochs, step cap, or a callback's stop); returns the final
    state and the selected (best validation) weights."""
    tc = run.tc

    def finished() -> bool:
        return state.stopped or state.epoch >= run.epochs or bool(tc.max_steps and state.step >= tc.max_steps)

    bar = tqdm(total=run.epochs, initial=state.epoch, desc=run.desc, disable=True if not run.progress else None,
               leave=False, unit="ep", dynamic_ncols=True)
    try:
        while not finished():
            model.train()
            epoch_start, losses = time.perf_counter(), []
            ready = epoch_start
            for batch in data.batches("train", tc.batch_size, run.generator, **run.opts):
                t0 = time.perf_counter()
                state.data_wait += t0 - ready   # the step waited this long for its batch
                losses.append(train_step(model, to_device(batch, run.device), opt, tc.grad_clip, state.step, sched,
                                         run.scaler))
                state.step += 1
                ready = time.perf_counter()
                state.step_times = state.step_times[-(STEP_TIMES_KEPT - 1):] + [ready - t0]
                if tc.max_steps and state.step >= tc.max_steps:
                    break
            state.train_time += time.perf_counter() - epoch_start
            state.epoch += 1
            entry = {"epoch": state.epoch - 1, "train_loss": float(np.mean(losses)) if losses else float("nan")}
            if state.epoch % tc.val_every == 0 or finished() or best_weights is None:
                val_loss, score = validation_score(model, data, tc, run.device, run.eval_opts)
                if not math.isfinite(score):
                    raise NonFiniteLoss(state.step, {"val_selection_score": score})
                if score < state.best_score:
                    state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch - 1, 0
                    best_weights = copy.deepcopy(model.state_dict())
                else:
                    state.bad_epochs += 1
                entry.update(val_loss=val_loss, val_score=score)
                state.history.append(entry)
                # every callback sees every validation (no short-circuit), e.g. to report to a pruner
                stops = [bool(cb(state)) for cb in run.callbacks]
                state.stopped = any(stops)
                bar.set_postfix(train=f"{entry['train_loss']:.3f}", val=f"{score:.3f}", best=state.best_epoch)
            else:
                state.history.append(entry)
            run.save(state, best_weights)
            bar.update(1)
    finally:
        bar.close()
    return state, best_weights
