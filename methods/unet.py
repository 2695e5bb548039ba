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

Only what runs is built: smp keeps every stage of its encoder whatever ``encoder_depth`` is
(a ResNet-18 U-Net of depth 3 runs 0.7 M of the encoder's 11.2 M parameters), so the parameter
count and the memory of a shallow U-Net were those of a full one. :func:`drop_unused` replaces
every parameterised module that a forward pass never calls with ``nn.Identity`` after the
network is initialised, which leaves the initialisation and the outputs unchanged.
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
        net = smp.Unet(encoder_name=str(hparams["unet_encoder"]), encoder_weights=None, encoder_depth=depth,
                       decoder_channels=decoder, in_channels=in_channels, classes=classes)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unet_encoder={hparams['unet_encoder']!r}: {exc}") from None
    return drop_unused(net, in_channels, max(64, 2 ** (depth + 1)))


def drop_unused(net: nn.Module, in_channels: int, size: int) -> nn.Module:
    """Replace the parameterised submodules that one forward pass (eval mode, zeros of
    ``size`` x ``size``) never calls with ``nn.Identity``; returns ``net``."""
    called: set[int] = set()
    hooks = [m.register_forward_hook(lambda mod, args, out: called.add(id(mod))) for m in net.modules()]
    training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, in_channels, size, size))
    finally:
        for h in hooks:
            h.remove()
        net.train(training)

    def prune(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            used = any(id(m) in called for m in child.modules())   # containers (ModuleList) are never called
            if not used and any(True for _ in child.parameters()):
                setattr(module, name, nn.Identity())
            elif used:
                prune(child)

    prune(net)
    return net


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
