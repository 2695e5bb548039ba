"""In-memory multimodal data: tensors per modality and task, masks, ids, groups and splits.

The embedded datasets are small (hundreds to a few thousand samples), so they are held as
tensors and batched by index slicing, which is faster and simpler to make deterministic than a
``DataLoader`` with workers. :meth:`MultimodalData.validate` is the single place where bad data
(NaN/Inf, wrong shapes, out-of-range labels, empty splits, a patient in two splits, a modality
missing for every sample) is caught, before any training starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .spec import DatasetSpec

SPLITS = ("train", "val", "test")
Batch = dict  # {"id": list[str], "index": LongTensor, "inputs": {m: T}, "mask": {m: BoolT}, "targets": {t: T}, "target_mask": {t: BoolT}}


@dataclass
class MultimodalData:
    """A whole dataset in memory.

    ``inputs[m]`` is (N, *shape); ``mask[m]`` is (N,) bool, False where modality ``m`` is absent
    for that sample (its input row is then zeros and must never be read as data);
    ``targets[t]`` is (N,) int64 for binary/multiclass, (N, C) float for multilabel, (N,) float
    for regression, (N, H, W) int64 class maps (0 = background) for a per-sample segmentation
    task; ``target_mask[t]`` is False where the sample has no label for task ``t``.
    ``extras`` carries per-sample ground truth of generated data (e.g. interaction type);
    ``meta`` the columns of a user's table that are neither inputs nor labels (kept, and written
    beside each test case's predictions, so subgroup analyses can use them).
    """

    spec: DatasetSpec
    ids: list[str]
    inputs: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    target_mask: dict[str, torch.Tensor]
    splits: dict[str, np.ndarray]
    groups: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    unscaled: dict[str, np.ndarray] = field(default_factory=dict)  # inputs before standardisation (exporters only)

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "MultimodalData":
        """Raise :class:`DatasetProblems` listing every problem (:meth:`problems`); return self when clean."""
        from .problems import DatasetProblems

        problems = self.problems()
        if problems:
            raise DatasetProblems(self.spec.name, problems)
        return self

    def problems(self) -> list[str]:
        """Every problem of the in-memory data, one line each (empty when clean)."""
        n = len(self.ids)
        out: list[str] = []
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            dup = sorted({i for i in self.ids if i in seen or seen.add(i)})
            out.append(f"sample ids are not unique (repeated: {', '.join(map(repr, dup[:5]))}"
                       f"{', ...' if len(dup) > 5 else ''})")
        for m in self.spec.modalities:
            if m.name not in self.inputs:
                out.append(f"modality {m.name!r} declared in the spec has no data")
                continue
            x = self.inputs[m.name]
            if tuple(x.shape) != (n, *m.shape):
                out.append(f"modality {m.name!r} has shape {tuple(x.shape[1:])} per sample, spec says {m.shape} "
                           f"(and {x.shape[0]} rows for {n} samples)")
                continue
            present = self.mask.get(m.name)
            if present is None or present.shape != (n,) or present.dtype != torch.bool:
                out.append(f"mask of modality {m.name!r} must be a ({n},) bool tensor")
                continue
            if not bool(present.any()):
                out.append(f"modality {m.name!r} is missing for every sample")
            bad = ~torch.isfinite(x.reshape(n, -1)).all(dim=1) & present
            for i in bad.nonzero().flatten().tolist():
                out.append(f"modality {m.name!r} has NaN/Inf values in sample {self.ids[i]!r} (row {i}); "
                           "fix the data or mark the modality missing for that sample")
        for t in self.spec.tasks:
            if t.name not in self.targets:
                out.append(f"task {t.name!r} declared in the spec has no targets")
                continue
            y, tm = self.targets[t.name], self.target_mask.get(t.name)
            if tm is None or y.shape[0] != n or tm.shape != (n,):
                out.append(f"task {t.name!r} targets/mask have {y.shape[0]}/{None if tm is None else tuple(tm.shape)} "
                           f"rows for {n} samples")
                continue
            if not bool(tm.any()):
                out.append(f"task {t.name!r} has no labelled sample")
            yl = y[tm]
            if t.is_classification:
                if yl.numel() and (int(yl.min()) < 0 or int(yl.max()) >= t.num_classes):
                    out.append(f"task {t.name!r} has labels outside 0..{t.num_classes - 1} "
                               f"(found {int(yl.min())}..{int(yl.max())})")
            elif t.kind == "multilabel":
                if y.shape[1:] != (t.num_classes,) or (yl.numel() and not bool(((yl == 0) | (yl == 1)).all())):
                    out.append(f"task {t.name!r} needs (N, {t.num_classes}) 0/1 targets")
            elif t.kind == "regression":
                if yl.numel() and not bool(torch.isfinite(yl).all()):
                    out.append(f"task {t.name!r} has NaN/Inf regression targets; mask them instead")
            elif t.kind == "segmentation":   # per-sample dense task: (N, H, W) int64 class maps
                if t.num_classes < 2:
                    out.append(f"task {t.name!r}: a segmentation task has num_classes >= 2 (background included)")
                elif y.dim() != 3 or y.dtype != torch.int64:
                    out.append(f"task {t.name!r} needs (N, H, W) int64 class maps, got {tuple(y.shape)} {y.dtype}")
                elif yl.numel() and (int(yl.min()) < 0 or int(yl.max()) >= t.num_classes):
                    out.append(f"task {t.name!r} has mask labels outside 0..{t.num_classes - 1} "
                               f"(found {int(yl.min())}..{int(yl.max())})")
        for s in SPLITS:
            if s not in self.splits or len(self.splits[s]) == 0:
                out.append(f"split {s!r} is empty")
        seen_split: dict[int, str] = {}
        for s in SPLITS:
            for i in self.splits.get(s, ()):
                if int(i) in seen_split:
                    out.append(f"sample {self.ids[int(i)]!r} is in both {seen_split[int(i)]!r} and {s!r}")
                seen_split[int(i)] = s
        if self.groups is not None:
            owner: dict[object, str] = {}
            for s in SPLITS:
                for g in sorted(set(self.groups[self.splits.get(s, np.array([], int))].tolist()), key=str):
                    if g in owner and owner[g] != s:
                        out.append(f"patient {g!r} appears in both {owner[g]!r} and {s!r} splits")
                    owner.setdefault(g, s)
        return out

    # ------------------------------------------------------------------ batching
    def batch(self, index: np.ndarray | torch.Tensor) -> Batch:
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return {
            "id": [self.ids[int(i)] for i in idx],
            "index": idx,
            "inputs": {m: x[idx] for m, x in self.inputs.items()},
            "mask": {m: v[idx] for m, v in self.mask.items()},
            "targets": {t: y[idx] for t, y in self.targets.items()},
            "target_mask": {t: v[idx] for t, v in self.target_mask.items()},
        }

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[Batch]:
        """Yield batches of one split; shuffled with ``generator`` when one is given."""
        idx = np.asarray(self.splits[split])
        if generator is not None:
            idx = idx[torch.randperm(len(idx), generator=generator).numpy()]
        stop = len(idx) - (len(idx) % batch_size if drop_last and len(idx) > batch_size else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(idx[start:start + batch_size])

    def epoch_size(self, split: str) -> int:
        """Rows in one pass over a split (the runner sizes its schedule with it)."""
        return len(self.splits[split])

    def example_batch(self, split: str, n: int) -> Batch:
        """The first ``n`` rows of a split (cost measurement)."""
        return self.batch(self.splits[split][:n])

    def sample(self, i: int) -> dict:
        """One sample in the contract's dict form (used by tests and external tools)."""
        return {
            "id": self.ids[i],
            "inputs": {m: x[i] for m, x in self.inputs.items()},
            "targets": {t: y[i] for t, y in self.targets.items()},
            "mask": {m: bool(v[i]) for m, v in self.mask.items()},
            "target_mask": {t: bool(v[i]) for t, v in self.target_mask.items()},
        }
