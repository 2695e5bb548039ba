"""M4oE (Jiang & Shen, MICCAI 2024): one Swin-UNet over several datasets, with dataset-specific
FFN experts in every transformer block, a gate, and one head per dataset (docs/segmentation.md).

Registered as ``m4oe``. The network is ``methods.nets.swin_unet.SwinUNet``; this class adds the
harness side: hparams, the two training stages and the gate interpretation.

Two stages [paper; procedure ours]. With ``two_stage=true`` (default) and a gated routing:
  1. ``stage1``: ``routing=hard`` (a sample of dataset d uses expert d only), all datasets
     jointly, for ``stage1_fraction`` of the epochs (default 0.5 [ours: the split is unknown]).
  2. ``stage2``: the ``routing`` model (``gated`` by default) is initialised from stage 1's
     weights selected on validation; only the gate is new. Heads are re-initialised as the code
     does (``reinit_heads=true`` [code]); ``freeze_experts=false`` by default (the code freezes
     nothing; the paper does not say).
Each stage has its own optimiser and poly schedule, and its own validation-based selection.
Stage 1 starts from random weights: the authors' Swin-MAE encoder is not released.

Routing (``--set routing=...``): ``gated`` = per-token softmax gate over experts [paper text;
exact form ours]; ``gated-code`` = the released channel gate, which never weights experts
differently [code, kept for fidelity checks]; ``hard`` = the "w/o gating" ablation; ``dense`` =
the plain Swin-UNet FFN. ``moe_where`` = ``both`` (every block [code]), ``enc`` or ``dec``.
``num_experts`` 0 = one expert per dataset (the reference: 3 for FLARE22/ATLAS23/AMOS22);
dataset d maps to expert d in the dataset's domain order.

Deviations from the reference, each a named switch with the reference one step away:
the slice is fed as one channel (``repeat_channels=3`` repeats it to 3 channels as the code does);
``dice_weight=0.6`` (the code's training loss uses 0.7: ``--set dice_weight=0.7``); the
validation loss is the mean over all batches in eval mode (the code: last batch, train mode;
not switchable, it is a bug); evaluation in the original image geometry and HD95 in mm
(``--set eval_space=preprocessed``; ``--set metric_compat=m4oe`` for the code's empty-mask rules and
its medpy HD95 in voxels).

Interpretation (stored as the ``interpretation`` pseudo-task): per dataset, the mean gate weight
of each expert over test cases, layers and tokens (``gate_<dataset>_e<k>``), and ``gate_match``,
the fraction of test cases whose highest-weighted expert (mean over layers) is their own
dataset's expert (chance 1/E). Per-case, per-layer gate weights are stored with the per-case
metrics. For ``gated-code`` the channel-gate entropy (nats) is reported instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datasets.spec import DatasetSpec

from .base import Stage
from .hparam_rules import Rule, integer
from .nets.swin_unet import ROUTINGS, SwinUNet, load_stage1
from .registry import register_method
from .swinunet import SwinMethod, swin_config

#: the stacked expert weights of an MoE FFN (``methods.nets.swin_unet.MoEFFN``), frozen by freeze_experts
EXPERT_PARAMS = ("w1", "b1", "w2", "b2")


@register_method
class M4oE(SwinMethod):
    name = "m4oe"
    description = "M4oE (MICCAI 2024): Swin-UNet with per-dataset FFN experts + gate, per-dataset heads, 2 stages"
    single_pass = True  # a mixed-domain batch is one network call (SwinMethod.predict_batch)

    def __init__(self, spec: DatasetSpec, hparams: dict[str, Any]):
        super().__init__(spec, hparams)
        experts = int(hparams["num_experts"]) or self.num_domains
        routing = str(hparams["routing"])
        if routing not in ROUTINGS:
            raise ValueError(f"routing={routing!r} is not one of: {', '.join(ROUTINGS)}")
        if routing == "hard" and experts != self.num_domains:
            raise ValueError(f"routing=hard needs num_experts == number of datasets ({self.num_domains}), got {experts}")
        if not 0.0 < float(hparams["stage1_fraction"]) < 1.0:
            raise ValueError(f"stage1_fraction must be in (0, 1), got {hparams['stage1_fraction']}")
        self.net = SwinUNet(swin_config(hparams, self.net_chans, self.classes, routing, experts,
                                        str(hparams["moe_where"])))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "routing": "gated", "moe_where": "both", "num_experts": 0,
                "two_stage": True, "stage1_fraction": 0.5, "reinit_heads": True, "freeze_experts": False}

    @classmethod
    def hparam_rules(cls) -> dict[str, Rule]:
        """``num_experts`` 0 means one expert per dataset here."""
        return {**super().hparam_rules(), "num_experts": integer(0, note="0 = one expert per dataset")}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {**super().search_space(trial), "stage1_fraction": trial.suggest_float("stage1_fraction", 0.2, 0.8)}

    @classmethod
    def stages(cls, hparams: dict[str, Any]) -> list[Stage]:
        if not hparams["two_stage"] or hparams["routing"] not in ("gated", "gated-code"):
            return [Stage("main", dict(hparams))]
        frac = float(hparams["stage1_fraction"])
        return [Stage("stage1", {**hparams, "routing": "hard"}, frac), Stage("stage2", dict(hparams), 1.0 - frac)]

    def load_stage(self, state: dict[str, torch.Tensor], stage: Stage) -> dict[str, list[str]]:
        """Stage 1 (hard) -> stage 2 (gated): every weight but the gate is restored."""
        prefix = "net."
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        new = [prefix + k for k in load_stage1(self.net, inner)]
        reinit = []
        if self.hparams["reinit_heads"]:
            for i, head in enumerate(self.net.heads):
                head.reset_parameters()
                reinit.append(f"{prefix}heads.{i}.weight")
        if self.hparams["freeze_experts"]:
            for name, p in self.net.named_parameters():
                if name.rsplit(".", 1)[-1] in EXPERT_PARAMS and ".mlp." in name:
                    p.requires_grad_(False)
        restored = sorted(k for k in self.state_dict() if k not in new)
        return {"restored": restored, "new": sorted(new), "reinitialised": reinit}

    def predict_logits(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.run_net(self.net, x, domain)
        return self.logits_of(out, domain), ({"gates": out.gates} if out.gates is not None else {})

    def interpret(self, aux: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
        gates = aux.get("gates")
        if gates is None or "domain" not in truth:
            return {}
        domain, names = np.asarray(truth["domain"]), [str(n) for n in truth["domain_names"]]
        out: dict[str, float] = {}
        if gates.ndim == 2:  # gated-code: (cases, layers) channel-gate entropy
            out["gate_entropy"] = float(gates.mean())
            for d, name in enumerate(names):
                if np.any(domain == d):
                    out[f"gate_entropy_{name}"] = float(gates[domain == d].mean())
            return out
        per_case = gates.mean(axis=1)                     # (cases, experts), mean over layers
        out["gate_match"] = float(np.mean(per_case.argmax(axis=1) == domain))
        for d, name in enumerate(names):
            if np.any(domain == d):
                for e, w in enumerate(per_case[domain == d].mean(axis=0)):
                    out[f"gate_{name}_e{e}"] = float(w)
        return out
