"""2-D U-Net segmentation baselines on segmentation-models-pytorch (docs/segmentation.md "Models"), no pretrained
weights (nothing is downloaded; ``encoder_weights=None``).

* ``unet``: smp ``Unet`` with the dataset's channels stacked as input channels (early fusion
  for segmentation).
* ``unet-late``: one smp ``Unet`` per input channel (modality), logits averaged (late fusion
  for segmentation); with a single channel it is ``unet``.

Both are trained *per dataset* like ``swinunet``: one independent network (or set of networks)
per domain, each with its own classes [ours, so that a single job covers the same test cases
as M4oE]. Knobs: ``unet_encoder`` (an smp encoder name; ResNet-34 at paper size),
``unet_depth`` and ``unet_decoder`` (decoder channels, one per depth), ``img_size`` (slices are
resized to it; must be divisible by 2**unet_depth).
"""
from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from datasets.spec import DatasetSpec

from .registry import register_method
from .seg_base import SegMethod, parse_ints

UNET_DEFAULTS: dict[str, Any] = {"img_size": 224, "unet_encoder": "resnet34", "unet_depth": 5,
                                 "unet_decoder": "256,128,64,32,16"}


def make_unet(hparams: dict[str, Any], in_channels: int, classes: int) -> nn.Module:
    depth = int(hparams["unet_depth"])
    decoder = parse_ints(hparams["unet_decoder"], "unet_decoder")
    if len(decoder) != depth:
        raise ValueError(f"unet_decoder has {len(decoder)} channel counts for unet_depth={depth}; give one per level")
    if int(hparams["img_size"]) % (2 ** depth):
        raise ValueError(f"img_size={hparams['img_size']} must be divisible by 2**unet_depth = {2 ** depth}")
    try:
        return smp.Unet(encoder_name=str(hparams["unet_encoder"]), encoder_weights=None, encoder_depth=depth,
                        decoder_channels=decoder, in_channels=in_channels, classes=classes)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unet_encoder={hparams['unet_encoder']!r}: {exc}") from None


class _UNetBase(SegMethod):
    late = False

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        if self.late:
            self.nets = nn.ModuleList(nn.ModuleList(make_unet(hparams, 1, c) for _ in range(self.in_chans))
                                      for c in self.classes)
        else:
            self.nets = nn.ModuleList(make_unet(hparams, self.in_chans, c) for c in self.classes)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), **UNET_DEFAULTS}

    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.late:
            return self.nets[domain](x), {}
        members = self.nets[domain]
        return torch.stack([m(x[:, i:i + 1]) for i, m in enumerate(members)]).mean(0), {}


@register_method
class UNet(_UNetBase):
    name = "unet"
    description = "2-D U-Net (segmentation-models-pytorch, no pretrained weights), channels stacked, per dataset"


@register_method
class UNetLate(_UNetBase):
    name = "unet-late"
    description = "one 2-D U-Net per input channel, averaged logits (late fusion), per dataset"
    late = True
