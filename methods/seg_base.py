"""What every segmentation method shares: the loss, per-domain heads, and the harness hooks.

A segmentation dataset has one ``segmentation`` task per *domain* (source dataset), each with its
own label map (``datasets.segmentation.data``). A batch mixes domains: ``batch["domain"]`` (B,) says which,
``batch["label"]`` holds the labels (``-1`` = ignore). A method implements
:meth:`SegMethod.predict_logits` ``(x, domain) -> (logits, aux)`` for a batch of one domain; the
shared :meth:`forward` groups a mixed batch by domain, so every sample is scored with its own
head and its own class count and no argmax ever runs over padded channels (docs/segmentation.md "Models").

Loss (docs/segmentation.md "Training"), identical for every segmentation method so the comparison is
fair: ``ce_weight * CE + dice_weight * Dice``, CE with ``ignore_index=-1`` and uniform class
weights, Dice = 1 - soft Dice on softmax outputs with a squared-sum denominator, smooth 1e-5,
averaged over all classes including background. Like the reference, which loops over the samples
of a batch and scores each with its own class count, both terms are computed **per sample** and
averaged over the batch [code] (``loss_granularity=sample``, default); ``loss_granularity=group``
pools the sums over each domain group of the batch instead (what this harness did before; a
smaller loss whenever a sample lacks some organs, since the pooled sums hide its empty classes).
Ignored pixels are excluded from both terms [ours]. Defaults: ``ce_weight`` 0.4, ``dice_weight`` 0.6
(= Swin-UNet and the reference's validation loss); the reference's training loss uses 0.7
(``--set dice_weight=0.7``).

Harness hooks: :meth:`data_options` tells the runner how to sample (2-D slices resized to
``img_size``, or 3-D patches); :meth:`stages` lets a method train in several stages (M4oE's
hard-routed experts, then gated fine-tuning); :meth:`load_stage` carries weights between stages.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from datasets.spec import DatasetSpec

from .base import Method, Output
from .hparam_rules import LOSS_GRANULARITIES, parse_ints  # noqa: F401  (re-exported: unet, swinunet, unet3d)
from .losses import pixel_cross_entropy

DICE_SMOOTH = 1e-5


#: how the loss is reduced: per sample then averaged over the batch [code], or pooled per domain group


def dice_loss(logits: torch.Tensor, label: torch.Tensor, smooth: float = DICE_SMOOTH,
              per_sample: bool = True) -> torch.Tensor:
    """1 - soft Dice (squared-sum denominator), mean over classes; per sample and then averaged over
    the samples (the reference's per-sample ``DiceLoss`` calls [code]) or over the pooled group."""
    num_classes = logits.shape[1]
    prob = logits.float().softmax(dim=1)
    valid = (label >= 0).unsqueeze(1)
    onehot = F.one_hot(label.clamp(min=0), num_classes).movedim(-1, 1).float() * valid
    prob = prob * valid
    dims = tuple(range(2, logits.dim())) if per_sample else (0, *range(2, logits.dim()))
    inter = (prob * onehot).sum(dims)
    denom = (prob * prob).sum(dims) + (onehot * onehot).sum(dims)
    return 1.0 - ((2 * inter + smooth) / (denom + smooth)).mean()


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, per_sample: bool = True) -> torch.Tensor:
    """Mean CE over the labelled pixels; per sample then over the samples that have any (the
    reference averages per-sample means [code]), or pooled over the group. 0 with a gradient path
    when every pixel is ignored. Computed by :func:`methods.losses.pixel_cross_entropy` (equal to
    ``F.cross_entropy(..., ignore_index=-1)``, but deterministic on CUDA: no ``nll_loss2d``)."""
    valid = label >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if not per_sample:
        return pixel_cross_entropy(logits.float(), label, ignore_index=-1)
    pixel = pixel_cross_entropy(logits.float(), label, ignore_index=-1, reduction="none").flatten(1)
    count = valid.flatten(1).sum(1)
    has = count > 0
    # a sample without labelled pixels has pixel sum 0: dividing by max(count, 1) and averaging over
    # the samples that have some equals the mean over those samples, with no boolean indexing
    return (pixel.sum(1) / count.clamp(min=1)).sum() / has.sum()


def seg_loss(logits: torch.Tensor, label: torch.Tensor, ce_weight: float, dice_weight: float,
             per_sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted CE, weighted Dice) of one domain group."""
    return (ce_weight * cross_entropy(logits, label, per_sample),
            dice_weight * dice_loss(logits, label, per_sample=per_sample))


class SegMethod(Method):
    """Base class of segmentation methods (2-D slice-wise unless ``dims == 3``)."""

    dims: ClassVar[int] = 2
    missing_modality: ClassVar[str] = "n/a (segmentation: every case has all its channels)"

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        self.num_domains = len(spec.tasks)
        self.classes = tuple(t.num_classes for t in spec.tasks)
        self.in_chans = int(spec.modalities[0].shape[0])

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"ce_weight": 0.4, "dice_weight": 0.6, "loss_granularity": "sample"}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {"dice_weight": trial.suggest_float("dice_weight", 0.3, 0.9)}

    @classmethod
    def supports(cls, spec: DatasetSpec) -> bool | str:
        bad = [t.name for t in spec.tasks if t.kind != "segmentation"]
        if bad:
            return f"{cls.name} is a segmentation method; tasks {bad} are not segmentation"
        if len(spec.modalities) != 1 or spec.modalities[0].kind != "volume3d":
            return f"{cls.name} needs one volume3d image modality"
        return True

    def data_options(self) -> dict[str, Any]:
        if self.dims == 3:
            return {"dims": 3, "patch": parse_ints(self.hparams["patch"], "patch")}
        return {"dims": 2, "slice_size": int(self.hparams["img_size"])}

    # ---- the one thing a method writes
    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, C_domain, *spatial) for a batch of one domain, and per-sample aux tensors."""
        raise NotImplementedError

    #: True when :meth:`predict_batch` scores a mixed-domain batch in one network call; :meth:`forward`
    #: then uses it instead of one :meth:`predict_logits` call per domain (same ``Output``)
    single_pass: ClassVar[bool] = False

    def predict_batch(self, x: torch.Tensor, domain: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
        """Optional (with ``single_pass = True``): a mixed batch in one pass. Returns
        ``{task name: logits (n_d, C_d, *spatial) of domain d's rows in batch order}`` for the
        domains present, and per-sample aux tensors (B, ...) in batch order."""
        raise NotImplementedError

    def forward(self, batch: dict) -> Output:
        x, domain = batch["inputs"]["image"], batch["domain"]
        if self.single_pass:
            return Output(*self.predict_batch(x, domain))
        return self.forward_per_domain(x, domain)

    def forward_per_domain(self, x: torch.Tensor, domain: torch.Tensor) -> Output:
        """One :meth:`predict_logits` call per domain in the batch, aux put back in batch order."""
        preds: dict[str, torch.Tensor] = {}
        aux_parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for d in torch.unique(domain).tolist():
            rows = (domain == d).nonzero(as_tuple=True)[0]
            logits, aux = self.predict_logits(x[rows], int(d))
            preds[self.spec.tasks[d].name] = logits
            for k, v in aux.items():
                aux_parts.setdefault(k, []).append((rows, v))
        aux = {}
        for k, parts in aux_parts.items():  # back to batch order
            out = parts[0][1].new_zeros((len(domain), *parts[0][1].shape[1:]))
            for rows, v in parts:
                out[rows] = v
            aux[k] = out
        return Output(preds, aux)

    def loss(self, output: Output, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        domain, label = batch["domain"], batch["label"]
        ce_w, dice_w = float(self.hparams["ce_weight"]), float(self.hparams["dice_weight"])
        per_sample = self.hparams.get("loss_granularity", "sample") == "sample"
        ce_sum = dice_sum = 0.0
        n = len(domain)
        # one host sync for every domain's rows: a stable sort puts domain d's rows, in batch order,
        # at [start_d, start_d + count_d) (= (domain == d).nonzero())
        counts = torch.bincount(domain, minlength=len(self.spec.tasks)).tolist()
        order = torch.argsort(domain, stable=True)
        start = 0
        for d, task in enumerate(self.spec.tasks):
            rows = order[start:start + counts[d]]
            start += counts[d]
            if task.name not in output.preds:
                continue
            ce, dl = seg_loss(output.preds[task.name], label.index_select(0, rows), ce_w, dice_w, per_sample)
            ce_sum = ce_sum + ce * len(rows) / n
            dice_sum = dice_sum + dl * len(rows) / n
        parts = {"ce": ce_sum, "dice": dice_sum}
        return parts["ce"] + parts["dice"], parts
