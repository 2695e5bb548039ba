"""``unet3d``: a small 3-D U-Net, the from-scratch nnU-Net-style proxy (docs/segmentation.md "Models").

MONAI's ``BasicUNet`` (4 down/up-sampling levels, instance norm, LeakyReLU, as nnU-Net's
default 3-D U-Net), trained on random 3-D patches (a third centred on foreground, as nnU-Net
samples) and evaluated with MONAI's Gaussian-weighted ``sliding_window_inference``. One network
per dataset. It stands in for STU-Net-L / MED3D, which need pretrained weights: a report that
compares against those papers' numbers must say that this is a proxy.
Knobs: ``unet3d_features`` (six widths, MONAI's convention), ``patch`` (z,y,x; each divisible
by 16).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from datasets.spec import DatasetSpec

from .registry import register_method
from .seg_base import SegMethod, parse_ints


@register_method
class UNet3D(SegMethod):
    name = "unet3d"
    description = "small 3-D U-Net (MONAI BasicUNet) on 3-D patches, sliding-window inference: nnU-Net-style proxy"
    dims: ClassVar[int] = 3

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        features = parse_ints(hparams["unet3d_features"], "unet3d_features")
        if len(features) != 6:
            raise ValueError(f"unet3d_features needs 6 widths (MONAI BasicUNet), got {len(features)}")
        patch = parse_ints(hparams["patch"], "patch")
        if len(patch) != 3 or any(p % 16 for p in patch):
            raise ValueError(f"patch={hparams['patch']!r}: give three sizes (z,y,x), each divisible by 16")
        self.nets = nn.ModuleList(BasicUNet(spatial_dims=3, in_channels=self.in_chans, out_channels=c, features=features)
                                  for c in self.classes)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "unet3d_features": "32,32,64,128,256,32", "patch": "32,128,128"}

    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.nets[domain](x), {}
