"""``i2moe``: interpretable multimodal interaction-aware mixture of experts (Xin et al., ICML 2025).

K = M + 2 interaction experts over M modalities (one uniqueness expert per modality, one
synergy, one redundancy), each a full copy of a fusion backbone from ``backbones.py``
(``backbone=attention|early|intermediate|late|moe|soft-moe|mmoe``) over **shared** encoders. During
training every expert also runs on M perturbed inputs (modality j's tokens replaced by fresh
standard normal noise, a new draw per expert and per j), and weakly supervised interaction
losses on the outputs push each expert toward its interaction type:

- uniqueness expert i: triplet margin loss (margin 1, L2, eps 1e-7), anchor o_i^0, positives
  o_i^j (j != i), negative o_i^i, averaged over j;
- synergy: mean_j of the batch-mean cosine(o^0, o^j), minimised;
- redundancy: mean_j of the batch-mean (1 - cosine(o^0, o^j)), minimised;
- L_int = mean over experts. Outputs are the logits of all tasks concatenated.

A reweighting MLP on the concatenated mean-pooled clean embeddings (ReLU + dropout 0.5 between
layers) gives w = softmax(z / T) over experts; ŷ = sum_k w_k o_k^0; L = L_task(ŷ) + λ_int L_int
(+ the backbone's load-balancing loss, with its gradient). Evaluation runs the K clean passes
only and returns ŷ, the weights (``aux_expert_weights``) and the expert logits.

Implementations (``impl``): ``vmap`` runs the M+1 variants of every expert as one batch and all K
experts in one ``torch.func.vmap`` call over stacked weights; ``per-expert`` runs the M+1
variants as one batch per expert (K calls); ``batched`` (default) runs what
:func:`batched_impl` picks (a rule taken from ``bench perf i2moe``: ``vmap`` on GPU and for small
activations, ``per-expert`` for large ones on CPU); ``loop`` is the reference's nested loop
(K x (M+1) backbone calls), kept as the oracle. All read the same stacked weights and the same
noise draws (one ``randn(K, B, P, H)`` per perturbed modality, in order; expert k gets slice k),
and tests assert they agree.

Regression (all tasks regression): cosine of scalars is always ±1, so the default
(``regression_int_loss=bounded``) uses distances d = |o^0 - o^j| in standardised units: synergy
exp(-d), redundancy 1 - exp(-d), uniqueness the hinged triplet loss.

Deviations from the reference code (Raina-Xin/I2MoE), each a flag with the reference one switch
away; ``reference_compat=true`` sets all of them (``REFERENCE``), and tests check the result
against numbers computed with the authors' code on identical weights and inputs:

| flag | ours (default) | reference (``reference_compat``) |
|---|---|---|
| ``expert_init`` | ``independent`` (each expert its own init) | ``shared`` (deep copies: identical at step 0) |
| ``attn_residual`` | ``true``: x + attn(norm(x)) | ``false``: a + dropout(a), a = attn(norm(x)) (2a at eval) |
| ``readout`` | ``cls``: CLS token, final LayerNorm | ``mean``: per-modality mean pool, concat, Linear |
| ``pos_init`` | ``normal``: N(0, 0.02^2) | ``zero`` |
| ``qkv_bias`` | ``true`` | ``false`` (no bias on the q/kv projections) |
| ``regression_int_loss`` | ``bounded`` (above) | ``mse``: uniqueness MSE(a,p) - MSE(a,n); synergy and redundancy both mean_j MSE(o^0, o^j); raw units |
| ``regression_task_loss`` | ``mse`` in standardised units (the harness's) | ``smooth-l1`` (beta 1) in original units |
| ``latent_grad`` | ``true``: ``loss_space=latent`` losses have gradients | ``false``: latents detached (the ablation is a no-op) |
| ``load_balance_grad`` | ``true``: a ``moe`` backbone's balancing loss has its gradient | ``false``: detached |

Ablation flags: ``interaction_loss=false`` (same experts and gate, no L_int),
``uniform_weights=true`` (no reweighting), ``perturb=zero|mean`` (replace by zeros or by the
batch-mean embedding instead of noise), ``loss_space=latent``, ``num_perturb`` (perturb a random
subset of that many modalities per step; 0 = all M), ``expert_init``. The parameter-matched
vanilla control is ``--set match_params=true`` on a fusion baseline.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import ENCODER_DEFAULTS, TRANSFORMER_DEFAULTS, Method, Output
from .choices import I2MOE_CHOICES, REGRESSION_INT_LOSSES, REGRESSION_TASK_LOSSES  # noqa: F401
from .nets.backbones import MOE_DEFAULTS, build_backbone, token_counts
from .nets.encoders import build_encoders, encode
from .nets.expert_group import ExpertGroup
from .registry import register_method

#: regression interaction-loss forms (see :func:`interaction_losses`) and regression task losses
CHOICES = I2MOE_CHOICES
#: what ``reference_compat=true`` sets: every behaviour of the authors' released code that differs from ours
REFERENCE = {"expert_init": "shared", "attn_residual": False, "readout": "mean", "pos_init": "zero", "qkv_bias": False,
             "regression_int_loss": "mse", "regression_task_loss": "smooth-l1", "latent_grad": False,
             "load_balance_grad": False}
#: above this many token elements per expert call (V*B*P*H), ``impl=batched`` runs one call per
#: expert on CPU, below it one vmapped call over all experts (see :func:`batched_impl`)
VMAP_MAX_ELEMENTS = 2 ** 18


def batched_impl(cuda: bool, elements: int) -> str:
    """What ``impl=batched`` runs for an expert call of ``elements`` = V*B*P*H token elements.

    A rule taken from ``python -m bench perf i2moe`` (per-expert/vmap measured within each
    repetition; min / median / max over repetitions; 2-core CPU; table in docs/methods.md): at
    the quick size (V*B*P*H = 6,144-10,240) vmap was faster in every repetition (per-expert/vmap
    1.11-2.10); at the paper size (393,216-655,360) per-expert was faster in every repetition of
    two runs at M = 3 and 4 (0.68-0.96) and in the median at M = 2 (0.91 and 0.99, spread
    0.72-1.28). Hence ``per-expert`` above ``VMAP_MAX_ELEMENTS`` on CPU and ``vmap`` below. The
    ratio depends on the machine's load: with other processes saturating the same CPU, vmap won
    at the paper size too. On CUDA ``vmap`` (one launch sequence for all experts instead of K),
    not measured here (``bench perf i2moe --device cuda`` measures it)."""
    return "vmap" if cuda or elements <= VMAP_MAX_ELEMENTS else "per-expert"


#: planted interaction type (synthetic-pid's ``interaction`` truth) -> the expert meant to carry it
PLANTED_TO_EXPERT = {"synergy": "synergy", "redundant": "redundancy"}


def expert_names(modalities: list[str]) -> list[str]:
    return [f"unique-{m}" for m in modalities] + ["synergy", "redundancy"]


def triplet(anchor, positive, negative, margin: float) -> torch.Tensor:
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=2, eps=1e-7)


def interaction_losses(out: torch.Tensor, perturbed: list[int], m: int, regression: bool, margin: float = 1.0,
                       regression_form: str = "bounded") -> torch.Tensor:
    """Per-expert interaction losses (K,) from expert outputs ``out`` (K, V, B, D).

    Variant 0 is clean; variant v >= 1 perturbs modality ``perturbed[v - 1]``. Experts 0..m-1
    are the uniqueness experts, m the synergy and m+1 the redundancy expert. A uniqueness
    expert whose modality was not perturbed this step (``num_perturb`` < M) contributes 0.

    ``regression`` (every task a regression) selects ``regression_form``: ``bounded`` (ours:
    d = |o^0 - o^j|, synergy exp(-d), redundancy 1 - exp(-d), hinged triplet) or ``mse`` (the
    reference's ``InteractionMoERegression``: uniqueness MSE(a, p) - MSE(a, n) with no margin or
    hinge; synergy and redundancy both the mean over j of MSE(o^0, o^j), minimised).
    """
    if regression_form not in REGRESSION_INT_LOSSES:
        raise ValueError(f"regression_form must be one of {REGRESSION_INT_LOSSES}, got {regression_form!r}")
    mse = regression and regression_form == "mse"
    k = out.shape[0]
    losses = [out.new_zeros(()) for _ in range(k)]
    for i in range(m):
        if i in perturbed and len(perturbed) > 1:
            anchor, neg = out[i, 0], out[i, 1 + perturbed.index(i)]
            pos = [out[i, 1 + v] for v, j in enumerate(perturbed) if j != i]
            if mse:
                terms = [F.mse_loss(anchor, p) - F.mse_loss(anchor, neg) for p in pos]
            else:
                terms = [triplet(anchor, p, neg, margin) for p in pos]
            losses[i] = torch.stack(terms).mean()
    clean_s, clean_r = out[m, 0], out[m + 1, 0]
    variants = range(1, out.shape[1])
    if mse:
        losses[m] = torch.stack([F.mse_loss(clean_s, out[m, v]) for v in variants]).mean()
        losses[m + 1] = torch.stack([F.mse_loss(clean_r, out[m + 1, v]) for v in variants]).mean()
    elif regression:
        d_s = torch.stack([(clean_s - out[m, v]).norm(dim=-1) for v in variants])
        d_r = torch.stack([(clean_r - out[m + 1, v]).norm(dim=-1) for v in variants])
        losses[m] = torch.exp(-d_s).mean()
        losses[m + 1] = (1 - torch.exp(-d_r)).mean()
    else:
        cos_s = torch.stack([F.cosine_similarity(clean_s, out[m, v], dim=-1).mean() for v in variants])
        cos_r = torch.stack([F.cosine_similarity(clean_r, out[m + 1, v], dim=-1).mean() for v in variants])
        losses[m] = cos_s.mean()
        losses[m + 1] = (1 - cos_r).mean()
    return torch.stack(losses)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Cohen's kappa of two label sequences and the chance agreement it corrects for.

    p_o = share of equal pairs, p_e = sum over labels c of P(a = c) * P(b = c) (each sequence's
    own label frequencies), kappa = (p_o - p_e) / (1 - p_e): 0 when the agreement is what two
    independent labellers with these frequencies would reach, 1 when perfect. When p_e = 1 (both
    sequences constant and equal) agreement carries no information beyond chance: kappa = 0.
    Returns (kappa, p_e)."""
    a, b = np.asarray(a), np.asarray(b)
    labels = np.union1d(a, b)
    p_o = float(np.mean(a == b))
    p_e = float(sum(np.mean(a == c) * np.mean(b == c) for c in labels))
    return (0.0 if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)), p_e


@register_method
class I2MoE(Method):
    name = "i2moe"
    description = "I2MoE (ICML 2025): M+2 interaction experts over any fusion backbone, reweighted per sample"
    missing_modality = "as the wrapped backbone"

    @classmethod
    def defaults(cls):
        return {"backbone": "attention", **ENCODER_DEFAULTS, **TRANSFORMER_DEFAULTS, "weights": "mean", **MOE_DEFAULTS,
                "lambda_int": 0.1, "temperature": 1.0, "gate_layers": 2, "gate_dropout": 0.5, "margin": 1.0,
                "interaction_loss": True, "uniform_weights": False, "perturb": "noise", "loss_space": "logits",
                "num_perturb": 0, "expert_init": "independent", "attn_residual": True, "readout": "cls",
                "pos_init": "normal", "qkv_bias": True, "regression_int_loss": "bounded", "regression_task_loss": "mse",
                "latent_grad": True, "load_balance_grad": True, "reference_compat": False, "impl": "batched"}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "lambda_int": trial.suggest_float("lambda_int", 0.01, 0.5, log=True),
                "temperature": trial.suggest_categorical("temperature", [1.0, 1.5, 2.0])}

    @classmethod
    def supports(cls, spec):
        base = super().supports(spec)
        if base is not True:
            return base
        return True if len(spec.modalities) >= 2 else "i2moe needs at least 2 modalities"

    def __init__(self, spec, hparams):
        hp = dict(hparams)
        for key, allowed in CHOICES.items():
            if hp[key] not in allowed:
                raise ValueError(f"i2moe: {key}={hp[key]!r} is not one of: {', '.join(allowed)}")
        if hp["reference_compat"]:
            hp.update(REFERENCE)
        if not hp["temperature"] > 0 or hp["lambda_int"] < 0 or hp["gate_layers"] < 1:
            raise ValueError("i2moe: temperature must be > 0, lambda_int >= 0 and gate_layers >= 1")
        super().__init__(spec, hp)
        self.m = len(spec.modalities)
        if not 0 <= hp["num_perturb"] <= self.m:
            raise ValueError(f"i2moe: num_perturb must be in 0..{self.m}, got {hp['num_perturb']}")
        self.k = self.m + 2
        self.expert_names = expert_names(spec.modality_names)
        self.regression = all(t.kind == "regression" for t in self.tasks)
        self.encoders = build_encoders(spec.modalities, hp)
        counts = token_counts(self.encoders, spec)
        task_spec = self.task_spec   # experts predict the supported tasks only
        self.experts = ExpertGroup(lambda: build_backbone(hp["backbone"], task_spec, hp, counts), self.k, hp["expert_init"])
        h = int(hp["hidden"])
        layers: list[nn.Module] = []
        width = self.m * h
        for _ in range(int(hp["gate_layers"]) - 1):
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(float(hp["gate_dropout"]))]
            width = h
        self.gate = nn.Sequential(*layers, nn.Linear(width, self.k))
        self.task_names = [t.name for t in self.tasks]

    # ------------------------------------------------------------------ pieces
    def gate_weights(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([tokens[m].mean(dim=1) for m in self.spec.modality_names], dim=-1)
        if self.hparams["uniform_weights"]:
            return pooled.new_full((pooled.shape[0], self.k), 1.0 / self.k)
        return torch.softmax(self.gate(pooled) / float(self.hparams["temperature"]), dim=-1)

    def perturbed_modalities(self) -> list[int]:
        n = int(self.hparams["num_perturb"]) or self.m
        if n == self.m:
            return list(range(self.m))
        return sorted(torch.randperm(self.m)[:n].tolist())

    def replacements(self, tokens: dict[str, torch.Tensor], perturbed: list[int]) -> dict[str, torch.Tensor]:
        """Replacement tokens per perturbed modality, one draw per expert: (K, B, P, H)."""
        out = {}
        for j in perturbed:
            t = tokens[self.spec.modality_names[j]]
            kind = self.hparams["perturb"]
            if kind == "noise":
                out[self.spec.modality_names[j]] = torch.randn(self.k, *t.shape, dtype=t.dtype, device=t.device)
            elif kind == "zero":
                out[self.spec.modality_names[j]] = t.new_zeros(self.k, *t.shape)
            else:
                out[self.spec.modality_names[j]] = t.detach().mean(dim=0, keepdim=True).expand(self.k, *t.shape)
        return out

    def _vector(self, preds: dict[str, torch.Tensor], info: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the interaction losses compare: concatenated task logits or latents. Regression
        predictions are standardised, except for ``regression_int_loss=mse``, which (as the
        reference) compares them in the task's original units."""
        if self.hparams["loss_space"] == "latent":
            z = info["latent"]
            return z if self.hparams["latent_grad"] else z.detach()
        raw = self.regression and self.hparams["regression_int_loss"] == "mse"
        parts = []
        for t in self.tasks:
            p = preds[t.name]
            if t.kind == "regression":
                parts.append((p if raw else (p - t.target_mean) / t.target_std).unsqueeze(-1))
            else:
                parts.append(p)
        return torch.cat(parts, dim=-1)

    def run_experts(self, tokens, mask, perturbed: list[int] | None):
        """Expert outputs: task preds (K, V, B, ...), vectors (K, V, B, D), aux loss (K,).

        Variant 0 is the clean pass; variant v perturbs modality ``perturbed[v - 1]``;
        ``perturbed=None`` runs only the clean pass (V = 1)."""
        names = self.spec.modality_names
        repl = self.replacements(tokens, perturbed) if perturbed is not None else {}
        order = [None] + [names[j] for j in (perturbed or [])]
        impl = self.hparams["impl"]
        if impl == "batched":
            first = tokens[names[0]]
            elements = len(order) * first.shape[0] * max(t.shape[1] for t in tokens.values()) * first.shape[-1]
            impl = batched_impl(first.is_cuda, elements)
        run = {"loop": self._run_loop, "per-expert": self._run_per_expert, "vmap": self._run_vmap}[impl]
        with self.experts.segments(1 if impl == "loop" else len(order)):
            return run(tokens, mask, repl, order)

    def _variant(self, tokens, repl, which, k):
        return {m: (repl[m][k] if m == which else t) for m, t in tokens.items()}

    def _stack_outputs(self, outs, v: int, b: int):
        preds = {t: torch.stack([p[t].reshape(v, b, *p[t].shape[1:]) for p, _, _ in outs]) for t in self.task_names}
        vecs = torch.stack([self._vector(p, info).reshape(v, b, -1) for p, _, info in outs])
        return preds, vecs, torch.stack([a for _, a, _ in outs])

    def _run_loop(self, tokens, mask, repl, order):
        """The reference's nested loop: K x V backbone calls of B rows (the oracle)."""
        outs = []
        for k in range(self.k):
            calls = [self.experts.one(k, self._variant(tokens, repl, which, k), mask) for which in order]
            preds = {t: torch.cat([p[t] for p, _, _ in calls]) for t in self.task_names}
            info = {"latent": torch.cat([i["latent"] for _, _, i in calls])}
            outs.append((preds, torch.stack([a for _, a, _ in calls]).mean(), info))
        return self._stack_outputs(outs, len(order), mask[self.spec.modality_names[0]].shape[0])

    def _run_per_expert(self, tokens, mask, repl, order):
        """The V variants of an expert as one batch of V*B rows: K backbone calls."""
        v, b = len(order), mask[self.spec.modality_names[0]].shape[0]
        outs = []
        if getattr(self.experts.template, "supports_variants", False):  # shares per-token work across passes
            for k in range(self.k):
                outs.append(self.experts.one(k, tokens, mask, variants=({m: r[k] for m, r in repl.items()}, order)))
            return self._stack_outputs(outs, v, b)
        vmask = {m: x.repeat(v) for m, x in mask.items()}
        for k in range(self.k):
            variants = [self._variant(tokens, repl, which, k) for which in order]
            outs.append(self.experts.one(k, {m: torch.cat([x[m] for x in variants]) for m in tokens}, vmask))
        return self._stack_outputs(outs, v, b)

    def _run_vmap(self, tokens, mask, repl, order):
        """All K experts in one vmapped call over stacked weights, each on its V*B rows."""
        v, b = len(order), mask[self.spec.modality_names[0]].shape[0]
        if v == 1:
            p, a, info = self.experts.all(tokens, mask, in_dims=(None, None))
        else:
            stacked = {m: torch.cat([repl[m] if m == which else t.unsqueeze(0).expand(self.k, *t.shape) for which in order],
                                    dim=1) for m, t in tokens.items()}  # (K, V*B, P, H)
            p, a, info = self.experts.all(stacked, {m: x.repeat(v) for m, x in mask.items()}, in_dims=(0, None))
        preds = {t: x.reshape(self.k, v, b, *x.shape[2:]) for t, x in p.items()}
        return preds, self._vector(p, info).reshape(self.k, v, b, -1), a

    def interpret(self, aux, truth):
        """Dataset-level numbers from the test split's gate weights (and planted truth, if any).

        Always: the mean weight per expert (``weight_<expert>``) and how decisive the gate is, so
        that an argmax of near-uniform weights is not read as a choice: ``gate_spread``, the mean
        over samples of max_k w_k - min_k w_k (0 = uniform), and ``gate_entropy``, the mean
        normalised entropy -sum_k w_k log w_k / log K (1 = uniform, 0 = one expert).

        With planted truth (``synthetic-pid``'s ``interaction``): ``agreement``, the share of
        samples whose dominant (highest-weight) expert is the one meant for their interaction
        type, overall and per planted type (``agreement_<type>``); ``chance_agreement``, the
        agreement expected from the two label frequencies alone (sum over experts of P(dominant =
        e) * P(meant = e)); and ``agreement_kappa``, Cohen's kappa (agreement - chance) / (1 -
        chance), 0 for a gate whose argmax is unrelated to the planted type (e.g. one that always
        picks the same expert), 1 for perfect agreement (:func:`cohen_kappa`). On a dataset with a
        single planted type the meant expert is constant, so chance equals agreement and kappa is
        0 whatever the gate does: there, read ``gate_spread`` and ``gate_entropy``."""
        w = np.asarray(aux.get("expert_weights", np.zeros((0, self.k))), dtype=np.float64)
        if not len(w):
            return {}
        out = {f"weight_{n}": float(w[:, k].mean()) for k, n in enumerate(self.expert_names)}
        out["gate_spread"] = float(np.mean(w.max(axis=1) - w.min(axis=1)))
        plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
        out["gate_entropy"] = float(np.mean(-plogp.sum(axis=1) / np.log(self.k)))
        if "interaction" in truth:
            dominant = np.array(self.expert_names)[w.argmax(axis=1)]
            meant = np.array([PLANTED_TO_EXPERT.get(t, t) for t in truth["interaction"]])
            out["agreement"] = float(np.mean(dominant == meant))
            out["agreement_kappa"], out["chance_agreement"] = cohen_kappa(dominant, meant)
            for t in sorted(set(truth["interaction"])):
                rows = truth["interaction"] == t
                out[f"agreement_{t}"] = float(np.mean(dominant[rows] == meant[rows]))
        return out

    def loss(self, output, batch):
        """The base loss, except that ``regression_task_loss=smooth-l1`` replaces each regression
        task's loss by the reference's ``SmoothL1Loss`` (beta 1, mean over labelled rows) in the
        task's original units."""
        total, parts = super().loss(output, batch)
        if self.hparams["regression_task_loss"] != "smooth-l1":
            return total, parts
        for t in self.tasks:
            if t.kind != "regression":
                continue
            pred, target, mask = output.preds[t.name], batch["targets"][t.name], batch["target_mask"][t.name]
            parts[f"task/{t.name}"] = (F.smooth_l1_loss(pred[mask].reshape(-1), target[mask].float(), beta=1.0)
                                       if bool(mask.any()) else pred.sum() * 0.0)
        return torch.stack(list(parts.values())).sum(), parts

    # ------------------------------------------------------------------ forward
    def forward(self, batch):
        names = self.spec.modality_names
        tokens = encode(self.encoders, names, batch)
        mask = batch["mask"]
        weights = self.gate_weights(tokens)  # (B, K)
        needs_perturbed = self.training and self.hparams["interaction_loss"]
        perturbed = self.perturbed_modalities() if needs_perturbed else None
        preds_kv, vecs, aux = self.run_experts(tokens, mask, perturbed)
        preds = {}
        for t, x in preds_kv.items():
            clean = x[:, 0]  # (K, B, ...)
            w = weights.t().reshape(self.k, -1, *([1] * (clean.dim() - 2)))
            preds[t] = (w * clean).sum(dim=0)
        losses = {}
        if needs_perturbed:
            per_expert = interaction_losses(vecs, perturbed, self.m, self.regression and self.hparams["loss_space"] == "logits",
                                            float(self.hparams["margin"]), str(self.hparams["regression_int_loss"]))
            losses["interaction"] = float(self.hparams["lambda_int"]) * per_expert.mean()
        if aux.requires_grad:
            lb = aux.mean()
            losses["load_balance"] = lb if self.hparams["load_balance_grad"] else lb.detach()
        out_aux = {"expert_weights": weights}
        for t, x in preds_kv.items():
            if x.dim() == 4:  # (K, V, B, C): per-expert clean logits for interpretation
                out_aux[f"expert_logits_{t}"] = x[:, 0].transpose(0, 1).reshape(x.shape[2], -1)
        return Output(preds, aux=out_aux, losses=losses)
