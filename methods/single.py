"""``single``: one modality's encoder + task heads (the unimodal baseline).

Sweeps run it once per modality (``single:<modality>``) so the best single-modality model is
always in the table. A sample whose modality is absent is seen as its zero-filled input.
"""
from __future__ import annotations

from .base import ENCODER_DEFAULTS, Method, Output
from .hparam_rules import Rule
from .nets.encoders import build_encoder, pool
from .nets.heads import TaskHeads
from .registry import register_method


@register_method
class Single(Method):
    name = "single"
    description = "unimodal baseline: one modality's encoder + heads (single:<modality>)"
    name_arg = "modality"
    missing_modality = "zero-fill (the model sees the absent modality's zeros)"

    @classmethod
    def defaults(cls):
        return {"modality": "", **ENCODER_DEFAULTS}

    @classmethod
    def hparam_rules(cls):
        """Any string: the constructor checks ``modality`` against the dataset's modality names."""
        return {**super().hparam_rules(), "modality": Rule("str", doc="a modality name of the dataset (single:<modality>)")}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.modality = hparams["modality"]
        if self.modality not in spec.modality_names:
            raise ValueError(f"single: modality {self.modality!r} is not in {spec.name}; use single:<modality> with one "
                             f"of: {', '.join(spec.modality_names)}")
        self.encoder = build_encoder(spec.modality(self.modality), hparams)
        self.heads = TaskHeads(self.tasks, int(hparams["hidden"]))  # supported tasks only

    def forward(self, batch):
        return Output(self.heads(pool(self.encoder(batch["inputs"][self.modality]))))
