"""``early``: fuse the raw inputs, then one shared encoder + heads.

Images of one spatial size are stacked as channels (one CNN sees all views); anything else is
flattened and concatenated into one vector for one MLP. Absent modalities are zero-filled
(their rows are zeros by the data contract), the usual early-fusion convention.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from datasets.spec import ModalitySpec

from .base import ENCODER_DEFAULTS, Method, Output
from .nets.encoders import build_encoder, pool
from .nets.heads import TaskHeads
from .registry import register_method


@register_method
class EarlyFusion(Method):
    name = "early"
    description = "early fusion: inputs concatenated (channels for same-size images), one encoder + heads"
    missing_modality = "zero-fill"

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS}

    @classmethod
    def hparam_rules(cls):
        """``image_encoder`` acts only when every modality is an image (stacked as channels);
        with any other modality all inputs are flattened into one MLP."""
        rules = super().hparam_rules()
        return {**rules, "image_encoder": replace(rules["image_encoder"], applies_to_all=True)}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        mods = spec.modalities
        self.as_channels = all(m.kind == "image2d" for m in mods) and len({m.shape[1:] for m in mods}) == 1
        if self.as_channels:
            fused = ModalitySpec("early", "image2d", (sum(m.shape[0] for m in mods), *mods[0].shape[1:]))
        else:
            fused = ModalitySpec("early", "tabular", (sum(int(torch.Size(m.shape).numel()) for m in mods),))
        self.encoder = build_encoder(fused, hparams)
        self.heads = TaskHeads(self.tasks, int(hparams["hidden"]))  # supported tasks only

    def forward(self, batch):
        xs = [batch["inputs"][m] for m in self.spec.modality_names]
        x = torch.cat(xs, dim=1) if self.as_channels else torch.cat([x.flatten(1) for x in xs], dim=1)
        return Output(self.heads(pool(self.encoder(x))))
