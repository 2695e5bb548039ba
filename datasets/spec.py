"""The dataset contract: what a dataset is, independent of where its bytes come from.

Every adapter (embedded, generic on-disk, paper benchmark) describes itself with a
:class:`DatasetSpec`. Methods see only the spec and batches, never an adapter module, which is
what lets a method run on any dataset whose modality and task kinds it supports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODALITY_KINDS = ("tabular", "image2d", "volume3d", "sequence", "embedding")
TASK_KINDS = ("binary", "multiclass", "multilabel", "regression", "segmentation")


class DatasetError(Exception):
    """Base class of every dataset problem; its message is a complete one-line explanation."""


class DatasetNotFound(DatasetError):
    """Data that cannot ship is absent under the data root (says what was expected, where)."""


class DatasetFormatError(DatasetError):
    """Data is present but malformed: names the file/row/field and what is wrong."""


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality. ``shape`` is the per-sample shape (no batch dimension)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modality {self.name!r}: kind {self.kind!r} is not one of {MODALITY_KINDS}")
        if not self.shape or any(int(s) <= 0 for s in self.shape):
            raise ValueError(f"modality {self.name!r}: shape {self.shape} must be non-empty and positive")
        if self.kind in ("tabular", "embedding") and len(self.shape) != 1:
            raise ValueError(f"modality {self.name!r}: a {self.kind} modality has shape (features,), got {self.shape}")
        if self.kind == "sequence" and len(self.shape) != 2:
            raise ValueError(f"modality {self.name!r}: a sequence modality has shape (tokens, features), got {self.shape}")
        if self.kind == "image2d" and len(self.shape) != 3:
            raise ValueError(f"modality {self.name!r}: an image2d modality has shape (channels, H, W), got {self.shape}")

    @property
    def is_vector(self) -> bool:
        return self.kind in ("tabular", "embedding")


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task.

    ``num_classes`` is the number of logits the head emits: 2 for binary (we use a two-logit
    softmax head for binary tasks so binary and multiclass share one loss and one metric path,
    and so logit-space losses such as I2MoE's cosine terms are meaningful), C for multiclass and
    multilabel, 1 for regression. ``target_mean``/``target_std`` (regression only) are computed
    on the training split by the adapter; heads predict in standardised units internally and
    report predictions in the original units. ``sign_metric`` marks sentiment-like regression.
    ``class_counts`` (binary/multiclass): labelled training-split rows per class, filled by
    ``build_data`` (class-weighted losses such as M4oE-MT's focal loss use them); empty otherwise.
    """

    name: str
    kind: str
    num_classes: int
    labels: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0
    sign_metric: bool = False
    class_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {TASK_KINDS}")
        if self.kind == "binary" and self.num_classes != 2:
            raise ValueError(f"task {self.name!r}: binary tasks have num_classes=2, got {self.num_classes}")
        if self.kind == "regression" and self.num_classes != 1:
            raise ValueError(f"task {self.name!r}: regression tasks have num_classes=1, got {self.num_classes}")
        if self.kind in ("multiclass", "multilabel") and self.num_classes < 2:
            raise ValueError(f"task {self.name!r}: {self.kind} needs num_classes >= 2")
        if self.labels and len(self.labels) != self.num_classes and self.kind != "regression":
            raise ValueError(f"task {self.name!r}: {len(self.labels)} labels for {self.num_classes} classes")
        if not self.target_std > 0:
            raise ValueError(f"task {self.name!r}: target_std must be > 0, got {self.target_std}")

    @property
    def is_classification(self) -> bool:
        return self.kind in ("binary", "multiclass")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's self-description: modalities, tasks, split rule and provenance."""

    name: str
    modalities: tuple[ModalitySpec, ...]
    tasks: tuple[TaskSpec, ...]
    split_rule: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError(f"dataset {self.name!r}: needs at least one modality")
        if not self.tasks:
            raise ValueError(f"dataset {self.name!r}: needs at least one task")
        for kind, names in (("modality", [m.name for m in self.modalities]), ("task", [t.name for t in self.tasks])):
            if len(set(names)) != len(names):
                raise ValueError(f"dataset {self.name!r}: duplicate {kind} names {names}")

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"dataset {self.name!r} has no modality {name!r}; it has {self.modality_names}")

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"dataset {self.name!r} has no task {name!r}; it has {self.task_names}")
