"""Robustness evaluation: the selected model on the test split with one modality removed, and
with one modality corrupted by Gaussian noise at a few levels (docs/protocol.md "Robustness").

Every multimodal per-sample run (classification, multilabel, regression; two or more
modalities) gets it after its one test evaluation, with the same selected weights; nothing here
trains or selects anything. Each condition is stored as an extra evaluation split of the run:

* ``test[-m]``: modality ``m`` removed for every test sample: its mask is False and its input
  zeros, i.e. what the method does for a sample whose ``m`` is missing (its own missing-modality
  path, recorded in the run's summary as ``robustness.missing_path``: attention masks the tokens,
  late fusion drops the modality from the mean, early fusion sees zeros, ...).
* ``test[noise:m@s]``: ``m`` present, plus Gaussian noise of standard deviation ``s`` times the
  modality's standard deviation over the training split's present values (so ``s`` means the
  same for z-scored tables and for images in [0, 1]). Samples whose ``m`` is missing stay missing.
  The noise is drawn from a generator seeded by (run seed, modality, level): reruns and other
  methods with the same seed see the very same noise.

The protocol (conditions and levels) is ``bench.config.ROBUSTNESS_PROTOCOL``, part of every run's
key, so runs stored before it (or under other levels) are stale, never silently incomplete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from .config import ROBUSTNESS_PROTOCOL

# torch is imported inside the functions that need it: results/ reads split names with
# parse_split and must never import torch

#: rows read at a time (memory-mapped image modalities are never loaded whole)
CHUNK = 256
#: ``test[-m1]`` / ``test[noise:m1@0.5]``
_SPLIT = re.compile(r"^(?P<base>\w+)\[(?:-(?P<removed>[^\]@]+)|noise:(?P<noisy>[^\]@]+)@(?P<level>[0-9.eE+-]+))\]$")


@dataclass(frozen=True)
class Condition:
    """One robustness condition: ``modality`` removed (``noise`` None) or corrupted at ``noise``."""

    modality: str
    noise: float | None = None

    @property
    def split(self) -> str:
        return f"test[-{self.modality}]" if self.noise is None else f"test[noise:{self.modality}@{self.noise:g}]"

    @property
    def column(self) -> str:
        """Short column heading: ``-m1`` or ``m1~0.5``."""
        return f"-{self.modality}" if self.noise is None else f"{self.modality}~{self.noise:g}"


def parse_split(name: str) -> Condition | None:
    """The condition of a split name such as ``test[-m1]``; None for a plain split."""
    match = _SPLIT.match(name)
    if match is None:
        return None
    if match["removed"]:
        return Condition(match["removed"])
    return Condition(match["noisy"], float(match["level"]))


def conditions(modalities: list[str], levels: tuple[float, ...] | None = None) -> list[Condition]:
    """Every modality removed, then every modality at every noise level."""
    levels = tuple(ROBUSTNESS_PROTOCOL["noise_levels"] if levels is None else levels)
    return [Condition(m) for m in modalities] + [Condition(m, float(s)) for m in modalities for s in levels]


def applies(data) -> bool:
    """Multimodal per-sample data with at least one non-segmentation task."""
    if getattr(data, "is_segmentation", False):
        return False
    return len(data.spec.modalities) >= 2 and any(t.kind != "segmentation" for t in data.spec.tasks)


def modality_scale(data, modality: str, chunk: int = CHUNK) -> float:
    """Standard deviation of the modality's present training values (all elements pooled),
    accumulated over row chunks so a memory-mapped image modality is never loaded whole."""
    import torch

    train = torch.as_tensor(data.splits["train"], dtype=torch.long)
    rows = train[data.mask[modality][train]]
    count, total, squares = 0, 0.0, 0.0
    mean = None
    for start in range(0, len(rows), chunk):   # shifted sums (by the first chunk's mean) stay accurate
        values = data.inputs[modality][rows[start:start + chunk]].double()
        if mean is None:
            mean = float(values.mean())
        values = values - mean
        count += values.numel()
        total += float(values.sum())
        squares += float((values * values).sum())
    if count < 2:
        return 1.0
    var = (squares - total * total / count) / (count - 1)
    scale = var ** 0.5 if var > 0 else 0.0
    return scale if scale > 0 and scale == scale else 1.0


def noise_seed(seed: int, modality: str, level: float) -> int:
    """A generator seed that depends only on (run seed, modality, level), stable across processes."""
    return int(hashlib.sha256(f"robustness:{seed}:{modality}:{level:g}".encode()).hexdigest()[:12], 16)


def perturbed(data, condition: Condition, seed: int):
    """A copy of ``data`` whose **test** rows of ``condition.modality`` are removed or noisy; the
    other splits and modalities share the original tensors (nothing is written into ``data``)."""
    import torch

    m = condition.modality
    test = torch.as_tensor(data.splits["test"], dtype=torch.long)
    x, mask = data.inputs[m].clone(), data.mask[m].clone()
    if condition.noise is None:
        x[test] = 0.0
        mask[test] = False
    else:
        rows = test[mask[test]]
        gen = torch.Generator().manual_seed(noise_seed(seed, m, condition.noise))
        sd = condition.noise * modality_scale(data, m)
        for start in range(0, len(rows), CHUNK):   # one draw stream, consumed chunk by chunk
            part = rows[start:start + CHUNK]
            noise = torch.randn((len(part), *x.shape[1:]), generator=gen, dtype=torch.float32)
            x[part] = x[part] + noise.to(x.dtype) * sd
    return dataclasses.replace(data, inputs={**data.inputs, m: x}, mask={**data.mask, m: mask})


def evaluate_robustness(model, data, batch_size: int, device, seed: int) -> dict[str, dict]:
    """``{split name: {task: {metric: value}}}`` for every condition (empty when it does not apply)."""
    from .evaluation import _evaluate_samples

    if not applies(data):
        return {}
    out: dict[str, dict] = {}
    for condition in conditions(data.spec.modality_names):
        out[condition.split] = _evaluate_samples(model, perturbed(data, condition, seed), "test", batch_size,
                                                 device).metrics
    return out


def describe(method_cls) -> dict:
    """What the run's summary records about its robustness evaluation."""
    return {"missing_path": getattr(method_cls, "missing_modality", "unspecified"),
            "noise": ROBUSTNESS_PROTOCOL["noise"], "noise_levels": list(ROBUSTNESS_PROTOCOL["noise_levels"])}
