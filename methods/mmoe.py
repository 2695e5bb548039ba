"""``mmoe``: multi-gate mixture of experts (Ma et al., KDD 2018) over the shared encoders.

The multi-gate MoE baseline of M4oE-MT (one softmax gate per task over shared experts): the
modalities' mean-pooled, masked embeddings are concatenated (M*H, as ``intermediate``), passed
through ``num_experts`` expert MLPs with stacked weights, and each task mixes the expert
outputs with its own softmax gate before its head (the task's tower). ``num_experts=1`` is
the shared-bottom multi-task model. See :class:`~methods.nets.backbones.MMoEBackbone`; I2MoE can
wrap the same backbone (``--set backbone=mmoe``).

Interpretation (``interpret``): per task, the mean gate weight of every expert
(``gate_<task>_e<e>``) and the mean normalised gate entropy (``gate_entropy_<task>``, 1 =
uniform); with two or more tasks, ``gate_task_tv``, the mean over samples and task pairs of the
total-variation distance between the two tasks' gates (0 = every task routes alike).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from .base import ENCODER_DEFAULTS
from .fusion import FusionMethod
from .nets.backbones import MOE_DEFAULTS
from .registry import register_method


@register_method
class MMoEFusion(FusionMethod):
    name = "mmoe"
    description = "multi-gate MoE (KDD 2018): shared expert MLPs on pooled embeddings, one softmax gate per task"
    missing_modality = "zero embedding (its pooled block of the expert and gate input is zero)"
    backbone_name = "mmoe"

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS, "match_params": False, "num_experts": MOE_DEFAULTS["num_experts"]}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "num_experts": trial.suggest_categorical("num_experts", [2, 4, 8])}

    def interpret(self, aux, truth):
        tasks = self.spec.task_names
        gates = {t: np.asarray(aux[f"gate_{t}"], dtype=np.float64) for t in tasks if f"gate_{t}" in aux}
        out: dict[str, float] = {}
        for t, g in gates.items():
            if not len(g):
                continue
            for e, w in enumerate(g.mean(axis=0)):
                out[f"gate_{t}_e{e}"] = float(w)
            if g.shape[1] > 1:
                plogp = np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0)), 0.0)
                out[f"gate_entropy_{t}"] = float(np.mean(-plogp.sum(axis=1) / np.log(g.shape[1])))
        pairs = [(a, b) for a, b in combinations(gates, 2) if len(gates[a])]
        if pairs:
            out["gate_task_tv"] = float(np.mean([0.5 * np.abs(gates[a] - gates[b]).sum(axis=1).mean() for a, b in pairs]))
        return out
