"""``single``: one modality's encoder + task heads (the unimodal baseline).

Sweeps run it once per modality (``single:<modality>``) so the best single-modality model is
always in the table. A sample whose modality is absent is seen as its zero-filled input.
"""
from __future__ import annotations

from .base import Method, Output
from .encoders import build_encoder, pool
from .heads import TaskHeads
from .registry import register_method


@register_method
class Single(Method):
    name = "single"
    description = "unimodal baseline: one modality's encoder + heads (single:<modality>)"
    name_arg = "modality"
    missing_modality = "zero-fill (the model sees the absent modality's zeros)"

    @classmethod
    def defaults(cls):
        return {"modality": "", "hidden": 64, "layers": 1, "dropout": 0.1, "image_encoder": "cnn"}

    @classmethod
    def search_space(cls, trial):
        return {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.modality = hparams["modality"]
        if self.modality not in spec.modality_names:
            raise ValueError(f"single: modality {self.modality!r} is not in {spec.name}; use single:<modality> with one "
                             f"of: {', '.join(spec.modality_names)}")
        self.encoder = build_encoder(spec.modality(self.modality), hparams)
        self.heads = TaskHeads(spec.tasks, int(hparams["hidden"]))

    def forward(self, batch):
        return Output(self.heads(pool(self.encoder(batch["inputs"][self.modality]))))
