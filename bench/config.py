"""Run configuration: what one job is, resolved from defaults, preset and ``--set`` overrides.

Three identities are derived from a :class:`RunConfig` (docs/identity.md):

* ``key``: everything that can change a result: method, dataset, seeds, preset, resolved hparams,
  training budget, device, determinism, CPU thread count, the execution options that can change
  a number (precision, TF32, channels-last, compile; ``bench.execution``), the code fingerprint
  and the data fingerprint. A key already complete in the store is skipped, which makes sweeps idempotent.
* ``config_id``: the key without the training seed. Runs that share it are the same
  configuration run with different seeds; results group by it and count distinct seeds.
* ``request_id``: the key without the code and data fingerprints: what the user asked for. A
  stored run with the same request but another key is *stale* (the code or data changed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

# ConfigError: one error class for a bad value in a command, a suite, a claims file or a folder's
# dataset.yaml, defined with the lowest reader of such files (datasets/config_files.py)
from datasets.config_files import ConfigError  # noqa: F401

from .execution import Execution


@dataclass
class TrainConfig:
    """Uniform training protocol; the same defaults for every method (docs/protocol.md "Training and selection").

    Selection and early stopping use ``select`` on the **validation** split only: ``loss``
    (mean validation task loss, lower is better; the default because it is defined for every
    task kind and less noisy than accuracy on small validation sets) or ``primary`` (the mean of
    each task's primary metric, e.g. accuracy / MAE, direction-aware).
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"     # cosine | constant | poly | step (StepLR once an epoch: M4oE-MT's code)
    patience: int = 10
    grad_clip: float = 1.0
    select: str = "loss"
    max_steps: int = 0  # 0 = no step cap
    val_every: int = 1  # validate every N epochs; patience counts validations
    step_epochs: int = 5      # schedule=step: multiply the lr by step_gamma every step_epochs epochs
    step_gamma: float = 0.1
    # segmentation only (ignored elsewhere): sampling, augmentation and evaluation, the same for every method
    augment: bool = True          # the reference's rot90/flip/rotate augmentation on training slices
    fg_oversample: float = 0.0    # probability of swapping a drawn slice for a foreground slice
    balance: str = "slices"       # slices: proportional to slice counts [code]; datasets: equal per domain
    eval_space: str = "original"  # original: undo resampling/cropping [ours]; preprocessed: the reference's grid
    metric_compat: str = "nnunet"  # empty-mask convention: nnunet [ours] or m4oe (the reference's rules)

    def validate(self) -> "TrainConfig":
        choices = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "constant", "poly", "step"),
                   "select": ("loss", "primary"), "balance": ("slices", "datasets"),
                   "eval_space": ("original", "preprocessed"), "metric_compat": ("nnunet", "m4oe")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of: {', '.join(allowed)}")
        if not 0.0 <= self.fg_oversample <= 1.0:
            raise ConfigError(f"fg_oversample must be in [0, 1], got {self.fg_oversample}")
        if not 0.0 < self.step_gamma <= 1.0 or not math.isfinite(self.step_gamma):
            raise ConfigError(f"step_gamma must be in (0, 1], got {self.step_gamma}")
        for name in ("epochs", "batch_size", "val_every", "step_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "fg_oversample"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "patience", "max_steps"):
            if getattr(self, name) < 0 or (name == "lr" and self.lr == 0):
                raise ConfigError(f"{name} must be {'> 0' if name == 'lr' else '>= 0'}, got {getattr(self, name)}")
        return self


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))
#: training fields that only exist for one schedule: in the key only when it is chosen, so adding
#: them kept the keys of every run that does not use it
SCHEDULE_FIELDS = {"step": ("step_epochs", "step_gamma")}


def train_key_fields(tc: TrainConfig) -> dict[str, Any]:
    """The training protocol as it enters a run's key (docs/identity.md)."""
    fields = dataclasses.asdict(tc)
    for schedule, names in SCHEDULE_FIELDS.items():
        if tc.schedule != schedule:
            for name in names:
                fields.pop(name)
    return fields

#: Segmentation protocol defaults, shared by every segmentation method so the comparison is fair.
#: They are M4oE's released training setup [code]: SGD (momentum 0.9, wd 1e-4), poly LR
#: (1 - it/max_it)^0.9 per iteration without warm-up, batch 36, base LR 0.01 * 36 / 24 = 0.015,
#: validation every 2 epochs with patience 7 validations, no gradient clipping. The epoch budget
#: depends on the preset: 100 at ``paper`` size [code] (the README says 150); fewer at the CPU
#: presets so that ``tiny`` runs in minutes [ours].
SEG_TRAIN_DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "lr": 0.015, "weight_decay": 1e-4, "schedule": "poly",
                                      "batch_size": 36, "patience": 7, "val_every": 2, "grad_clip": 0.0}
SEG_EPOCHS_BY_PRESET: dict[str, int] = {"tiny": 24, "small": 40, "paper": 100}


#: The evaluation every multimodal per-sample run gets besides the intact test split
#: (``bench.robustness``): each modality removed, and each modality with Gaussian noise at these
#: levels. It is part of the key, as provenance: changing it makes stored runs stale.
ROBUSTNESS_PROTOCOL: dict[str, Any] = {
    "version": 1,
    "removed": "each modality, through the method's missing-modality path",
    "noise": "gaussian, std = level x the modality's training-split std, test rows only, seeded by (seed, modality, level)",
    "noise_levels": (0.5, 1.0, 2.0),
}

#: fields of the key that say which code, data and evaluation protocol computed a result (not
#: part of the request: a run that differs only in these is *stale*)
PROVENANCE_FIELDS = ("code_version", "data", "evaluation")


@dataclass
class RunConfig:
    """One job. ``hparams`` holds the method's fully resolved hyper-parameters; ``threads`` the
    CPU threads the job runs with (floating-point sums depend on it); ``code_version`` and
    ``data_fingerprint`` say which code and input files compute it (``bench.identity``).
    ``label_fields`` are the settings that differ from the protocol defaults (for labels only)."""

    method: str
    dataset: str
    seed: int = 0
    split_seed: int = 0
    preset: str = "small"
    hparams: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"
    deterministic: bool = True
    data_root: str | None = None
    threads: int | None = None
    code_version: str = ""
    data_fingerprint: str | None = None
    purpose: str = "eval"
    evaluation: dict[str, Any] = field(default_factory=lambda: dict(ROBUSTNESS_PROTOCOL))
    execution: Execution = field(default_factory=Execution)
    label_fields: dict[str, Any] = field(default_factory=dict, compare=False)

    def key_fields(self) -> dict[str, Any]:
        device = self.device.split(":")[0]
        fields = {"method": self.method, "dataset": self.dataset, "seed": self.seed, "split_seed": self.split_seed,
                  "preset": self.preset, "hparams": self.hparams, "train": train_key_fields(self.train),
                  "device": device, "deterministic": self.deterministic,
                  "threads": self.threads if device == "cpu" else None,
                  "code_version": self.code_version, "data": self.data_fingerprint, "evaluation": self.evaluation}
        if execution := self.execution.key_fields():   # only what differs from the defaults (bench.execution)
            fields["execution"] = execution
        if self.purpose != "eval":   # a tuning trial never evaluates test: it must not share a benchmark run's key
            fields["purpose"] = self.purpose
        return fields

    def key(self) -> str:
        return _digest(self.key_fields())

    def config_id(self) -> str:
        """The key without the training seed: one configuration, any seed."""
        return _digest({k: v for k, v in self.key_fields().items() if k != "seed"})

    def request_id(self) -> str:
        """The key without the code and data fingerprints: what was asked for."""
        return _digest({k: v for k, v in self.key_fields().items() if k not in PROVENANCE_FIELDS})

    def label(self) -> str:
        """Readable name of the configuration: ``early[epochs=2]``, ``attention@tiny``."""
        return config_label(self.method, self.label_fields)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(key=self.key(), config_id=self.config_id(), request_id=self.request_id())
        return d


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: label field of a configuration chosen by tuning: the study's trial budget (bench.tuning)
TUNED_FIELD = "tuned_trials"


def config_label(method: str, fields: dict[str, Any]) -> str:
    """``method@preset[k=v,...]``: the preset when not ``small``, then the other label fields; a
    tuned configuration is ``method@preset (tuned)`` (its budget is a leaderboard column)."""
    preset = fields.get("preset")
    rest = {k: v for k, v in fields.items() if k not in ("preset", TUNED_FIELD)}
    text = method + (f"@{preset}" if preset else "")
    if rest:
        text += "[" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(rest.items())) + "]"
    return text + (" (tuned)" if TUNED_FIELD in fields else "")


def coerce(key: str, raw: str, default: Any) -> Any:
    """Parse a ``--set key=value`` string to the type of the key's default value."""
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise OverflowError
            return value
        return raw
    except OverflowError:
        raise ConfigError(f"--set {key}={raw}: expected a finite number") from None
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"--set {key}={raw}: expected a {kind} value") from None


def parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def split_overrides(raw: dict[str, str], method_defaults: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split raw ``--set`` values into (training overrides, method hparam overrides), typed."""
    train, hp = {}, {}
    base = dataclasses.asdict(TrainConfig())
    for key, value in raw.items():
        if key in base:
            train[key] = coerce(key, value, base[key])
        elif key in method_defaults:
            hp[key] = coerce(key, value, method_defaults[key])
        else:
            valid = sorted(set(base) | set(method_defaults))
            raise ConfigError(f"unknown --set key {key!r}; valid keys: {', '.join(valid)}")
    return train, hp
