"""Loss building blocks that run under ``torch.use_deterministic_algorithms`` on every device.

Pixel-wise ``F.cross_entropy`` on a (B, C, *spatial) input dispatches to ``nll_loss2d`` (or
``nll_loss`` on the flattened pixels), whose CUDA kernels have no deterministic implementation:
with determinism on, every segmentation method crashed on a GPU (docs/protocol.md "Seeds and
determinism"). :func:`pixel_cross_entropy` computes the same quantity from ``log_softmax`` and an
element-wise class match, so neither ``nll_loss*`` nor a ``gather`` (whose backward is a
``scatter_add``) ever runs, forward or backward. Classification CE on (B, C) logits with (B,)
targets stays ``F.cross_entropy``: it has a deterministic CUDA path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def pixel_cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = -1,
                        reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy of logits (B, C, *spatial) against class maps (B, *spatial).

    Equals ``F.cross_entropy(logits, label, ignore_index=ignore_index, reduction=reduction)`` (no
    class weights, no label smoothing): ``"none"`` gives the per-pixel loss (B, *spatial), 0 at
    ignored pixels; ``"sum"`` its sum; ``"mean"`` the sum over the labelled pixels divided by their
    count (NaN when every pixel is ignored, like ``F.cross_entropy``). Computed in at least float32
    (float64 stays float64). A label outside ``0..C-1`` that is not ``ignore_index`` raises
    ``ValueError`` (``F.cross_entropy`` raises too). The target class is picked with ``torch.where`` on a comparison with
    ``arange(C)``, so a ``-inf`` logit of another class or at an ignored pixel never turns into NaN
    and the backward is element-wise: ``-log_softmax`` at the label, no ``nll_loss``, ``gather``,
    ``one_hot`` or ``scatter``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: expected one of {REDUCTIONS}")
    if logits.dim() < 2 or label.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and label {tuple(label.shape)}: expected (B, C, *spatial) "
                         "and (B, *spatial)")
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    valid = label != ignore_index
    classes = torch.arange(logits.shape[1], device=label.device).view(1, -1, *([1] * (label.dim() - 1)))
    hit = (label.unsqueeze(1) == classes) & valid.unsqueeze(1)  # (B, C, *spatial), one True per labelled pixel
    if bool((valid & ((label < 0) | (label >= logits.shape[1]))).any()):
        raise ValueError(f"label holds classes outside 0..{logits.shape[1] - 1} (ignore_index={ignore_index})")
    pixel = -torch.where(hit, logp, torch.zeros((), dtype=logp.dtype, device=logp.device)).sum(dim=1)
    if reduction == "none":
        return pixel
    if reduction == "sum":
        return pixel.sum()
    return pixel.sum() / valid.sum()
