"""Fusion methods as "shared per-modality encoders + one fusion backbone".

Subclasses only name their backbone (see ``backbones.py``) and declare defaults and a search
space, so ``intermediate``, ``late``, ``attention``, ``moe`` and ``soft-moe`` differ in fusion
alone, never in encoders.
"""
from __future__ import annotations

from typing import ClassVar

from .base import Method, Output
from .nets.backbones import build_backbone, token_counts
from .nets.encoders import build_encoders, encode  # noqa: F401  (encode: re-exported)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_hidden(method_cls, spec, hparams: dict) -> int:
    """Width at which ``method_cls`` has about as many parameters as I2MoE wrapping its backbone
    with the same hparams (the "is the gain just K x capacity?" control)."""
    from .i2moe import I2MoE

    i2 = {**I2MoE.defaults(), **{k: v for k, v in hparams.items() if k in I2MoE.defaults()},
          "backbone": method_cls.backbone_name}
    target = _count(I2MoE(spec, i2))
    step = max(1, int(hparams.get("heads", 1)))
    lo, hi = int(hparams["hidden"]), int(hparams["hidden"])
    size = lambda h: _count(method_cls(spec, {**hparams, "hidden": h, "match_params": False}))  # noqa: E731
    while size(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > step:  # parameter count grows with width: bisect on multiples of the head count
        mid = (lo + hi) // 2 // step * step
        lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(size(h) - target))


class FusionMethod(Method):
    """``match_params=true`` widens ``hidden`` (encoders and backbone) until the model has about
    the parameter count of I2MoE wrapping the same backbone; the width used is recorded in the
    run's ``model_hparams``."""

    backbone_name: ClassVar[str] = ""

    def __init__(self, spec, hparams):
        if hparams.get("match_params"):
            hparams = {**hparams, "hidden": matched_hidden(type(self), spec, hparams), "match_params": False,
                       "matched_params": True}
        super().__init__(spec, hparams)
        self.encoders = build_encoders(spec.modalities, hparams)
        # heads for the supported tasks only (a declined dense task gets no head, no loss)
        self.backbone = build_backbone(self.backbone_name, self.task_spec, hparams, token_counts(self.encoders, spec))

    def forward(self, batch):
        preds, aux_loss, info = self.backbone(encode(self.encoders, self.spec.modality_names, batch), batch["mask"])
        losses = {"load_balance": aux_loss} if aux_loss.requires_grad else {}
        return Output(preds, aux={k: v for k, v in info.items() if k != "latent"}, losses=losses)

    def active_parameters(self) -> int:
        total = sum(p.numel() for p in self.parameters())
        active = getattr(self.backbone, "active_params", None)
        if active is None:
            return total
        return total - sum(p.numel() for p in self.backbone.parameters()) + active()
