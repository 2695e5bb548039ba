"""Swin-UNet segmentation baselines: the M4oE backbone without experts (docs/segmentation.md "Models").

* ``swinunet``: the dense-FFN Swin-UNet *trained per dataset*: one independent network per
  domain (its own weights, its own head); a sample only ever touches its domain's network, so
  each network learns only its dataset, as separate per-dataset runs would. They share one
  optimiser, schedule and early-stopping decision, and their training time is summed, which
  is what claim 4 ("7 hours less") compares against [ours: one job instead of D jobs so the
  test cases and the record are the same as M4oE's].
* ``swinunet-joint``: one dense Swin-UNet shared by every domain, one bias-free 1x1 head per
  domain [ours]. A mixed-domain batch is one network call (``single_pass``), as for ``m4oe``.

The network is ``methods.nets.swin_unet.SwinUNet``; the knobs come from the presets (tiny / small /
paper) and ``--set``: ``img_size, patch_size, embed_dim, depths, num_heads, window_size,
mlp_ratio, drop_path``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from datasets.spec import DatasetSpec

from .nets.swin_unet import SwinUNet, SwinUNetConfig, SwinUNetOutput
from .registry import register_method
from .seg_base import SegMethod, parse_ints

#: paper-size defaults [code]; the presets shrink them for CPU
SWIN_DEFAULTS: dict[str, Any] = {"img_size": 224, "patch_size": 4, "embed_dim": 96, "depths": "2,2,2,2",
                                 "num_heads": "3,6,12,24", "window_size": 7, "mlp_ratio": 4.0, "drop_path": 0.2,
                                 "repeat_channels": 1}


def swin_config(hparams: dict[str, Any], in_chans: int, head_classes: tuple[int, ...], routing: str,
                num_experts: int = 1, moe_where: str = "both") -> SwinUNetConfig:
    """The network config from harness hparams (raises ValueError naming a bad field)."""
    cfg = SwinUNetConfig(img_size=int(hparams["img_size"]), patch_size=int(hparams["patch_size"]), in_chans=in_chans,
                         embed_dim=int(hparams["embed_dim"]), depths=parse_ints(hparams["depths"], "depths"),
                         num_heads=parse_ints(hparams["num_heads"], "num_heads"),
                         window_size=int(hparams["window_size"]), mlp_ratio=float(hparams["mlp_ratio"]),
                         drop_path=float(hparams["drop_path"]), num_experts=num_experts, routing=routing,
                         moe_where=moe_where, head_classes=tuple(head_classes))
    return cfg.validate()


class SwinMethod(SegMethod):
    """Base of the Swin-UNet methods: the backbone knobs as hparams. ``repeat_channels=3``
    repeats each input channel three times, as the reference code feeds a CT slice to a
    3-channel patch embedding; the default 1 feeds the slice as it is [ours]."""

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        self.repeat = int(hparams["repeat_channels"])
        if self.repeat < 1:
            raise ValueError(f"repeat_channels must be >= 1, got {self.repeat}")
        self.net_chans = self.in_chans * self.repeat

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), **SWIN_DEFAULTS}

    def run_net(self, net: SwinUNet, x: torch.Tensor, domain: int | torch.Tensor) -> SwinUNetOutput:
        """``net`` on a batch of one dataset (``domain`` = that dataset's index in ``net``) or on a
        mixed batch (``domain`` = (B,) indices), with the input channels repeated
        ``repeat_channels`` times."""
        if not isinstance(domain, torch.Tensor):
            domain = torch.full((len(x),), domain, dtype=torch.long, device=x.device)
        return net(x.repeat_interleave(self.repeat, dim=1) if self.repeat > 1 else x, domain)

    def logits_of(self, out: SwinUNetOutput, domain: int) -> torch.Tensor:
        """The logits of a one-domain batch."""
        return out.domain_logits.get(domain, torch.empty(0))

    def predict_batch(self, x: torch.Tensor, domain: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
        """A mixed-domain batch through the shared ``self.net`` in one call (methods that set
        ``single_pass``): the stable domain sort inside ``SwinUNet`` keeps each domain's rows in
        batch order, and the gates come back in batch order."""
        out = self.run_net(self.net, x, domain)
        preds = {self.spec.tasks[d].name: logits for d, logits in out.domain_logits.items()}
        return preds, ({"gates": out.gates} if out.gates is not None else {})


@register_method
class SwinUNetPerDataset(SwinMethod):
    name = "swinunet"
    description = "Swin-UNet (dense FFN), one network per dataset: the direct ablation of M4oE"

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        self.nets = nn.ModuleList(SwinUNet(swin_config(hparams, self.net_chans, (c,), "dense")) for c in self.classes)

    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.logits_of(self.run_net(self.nets[domain], x, 0), 0), {}


@register_method
class SwinUNetJoint(SwinMethod):
    name = "swinunet-joint"
    description = "Swin-UNet (dense FFN) shared by all datasets, one head per dataset"

    single_pass = True

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        self.net = SwinUNet(swin_config(hparams, self.net_chans, self.classes, "dense"))

    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.logits_of(self.run_net(self.net, x, domain), domain), {}
