"""``m4oe-mt``: M4oE-MT (ICLR 2025), multi-modal multi-task mixture of experts (docs/m4oe-mt.md).

Per-view encoders -> tokens Z_v (B, N_v, d), then two parallel branches on the encoder tokens:

- MSoE (modality-specific): per view ``msoe_layers`` pre-norm blocks whose MLP is a Soft-MoE
  (``msoe_experts`` x 1 slot) -> S_v;
- MToE (modality-task): all views' tokens concatenated, one block whose MLP is a Soft-MoE with
  ``mtoe_experts`` x T slots, slot k of each expert belonging to task k, a task embedding (init 0)
  added to task k's slot inputs, and a separate combine per task -> U_k (B, N, d) per task.

Fusion per task k: the sequence [mean(U_k), mean(S_1), ..., mean(S_V)] (absent views masked)
through ``fusion_layers`` shared blocks with Soft-MoE MLPs (``fusion_experts`` x 1 slot),
LayerNorm, Linear, token 0 -> task k's head. All Soft-MoE layers are the one
:class:`methods.nets.moe_layers.SoftMoE` with ``router=l2`` (the paper's normalised router).

Loss: per task, the focal loss (``gamma``; class weights 1 - class frequency of the labelled
training rows, ``TaskSpec.class_counts``) over the rows whose label exists, summed over tasks,
minus ``alpha`` * I(M; E | T) from the MToE routing (``mi_variant=paper``) or the released code's
per-sample I(token; task slot) (``mi_variant=code``). Regression/multilabel tasks use the
harness's task loss. Ablations: ``msoe``/``mtoe`` off, expert counts, ``router=topk`` (top-k
switch MoE with load balancing in every MoE position), ``alpha=0``.

Interpretation: sample-level contribution of view m to task t = routing mass of m's tokens in
task t's slots (the per-sample joint the MI uses, normalised over views); population level =
its test-set mean; on ``synthetic-mvmt`` agreement with the planted view dependence and the
per-sample view noise (see :meth:`M4oEMT.interpret`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import ENCODER_DEFAULTS, Method, Output, task_loss
from .hparam_rules import flag, integer, number, one_of
from .nets.blocks import Block
from .nets.dense_decoder import PatchGridDecoder
from .nets.encoders import build_encoder, divisible_heads
from .nets.moe_layers import SLOT_INPUTS, TASK_COMBINES, SoftMoE, SwitchMoE
from .registry import register_method

ROUTERS = ("soft", "topk")
MI_VARIANTS = ("paper", "code")
SOFT_ROUTER_FORMS = ("l2", "layernorm")
SEG_SKIPS = ("msoe", "none")
VARIANTS = ("paper", "code")
FUSION_HEADS = ("per-task", "shared")
FOCAL_NORMS = ("samples", "weights")
LABEL_MASKS = ("per-task", "all")
#: epsilon inside the logarithms of the paper's MI estimate
MI_EPS = 1e-8
#: the released code's MI: log(P(m,t) / (P(m) P(t)) + 1e-10) (``MutualInformationLoss`` in models_m4oe.py)
MI_CODE_EPS = 1e-10
#: what ``variant=code`` sets: the authors' released model and loss (github tangzhengxu2001/m4oe,
#: models/models_m4oe.py and main.py) in every item where it differs from ``variant=paper``
#: (docs/m4oe-mt.md "Paper text, released code and the defaults"); it overrides these flags
CODE = {"slot_input": "normalized", "mtoe_combine": "joint", "fusion_head": "per-task", "norm_eps": 1e-6,
        "mi_variant": "code", "focal_norm": "samples", "label_mask": "all", "encoder_cls": True, "dropout": 0.0}
#: whether m4oe-mt predicts per-sample segmentation tasks (the decoder in dense_decoder.py); off until the
#: harness's dense-task plumbing (targets (N, H, W), Dice metrics) is in the committed tree (it is: commits a55a2ae..b4beef5)
DENSE_TASKS = True


# ----------------------------------------------------------------------------------- losses
def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               gamma: float = 2.0, norm: str = "weights") -> torch.Tensor:
    """Softmax focal loss, sum_i w_{y_i} (1 - p_i)^gamma (-log p_i) / Z, p_i = softmax(logits_i)[y_i].

    ``norm="weights"``: Z = sum_i w_{y_i}, so that at gamma = 0 it equals
    ``F.cross_entropy(logits, target, weight=weight)`` exactly; ``"samples"``: Z = the number of
    rows, as the released code's ``FocalLoss`` (``loss.mean()``)."""
    if norm not in FOCAL_NORMS:
        raise ValueError(f"focal_loss: norm must be one of {FOCAL_NORMS}, got {norm!r}")
    logp = F.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
    logp = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
    w = torch.ones_like(logp) if weight is None else weight.to(logp)[target.long()]
    mod = (1 - logp.exp()).clamp_min(0) ** gamma if gamma else torch.ones_like(logp)
    z = w.sum().clamp_min(1e-12) if norm == "weights" else logp.new_tensor(float(max(1, len(logp))))
    return (w * mod * -logp).sum() / z


def class_weights(counts: tuple[int, ...]) -> torch.Tensor | None:
    """1 - class frequency of the training split's labelled rows [code]; None when unknown."""
    if not counts or sum(counts) == 0:
        return None
    c = torch.tensor(counts, dtype=torch.float32)
    return 1.0 - c / c.sum()


def mi_from_joint(p: torch.Tensor, eps: float = MI_EPS) -> torch.Tensor:
    """I(M; E | T) = sum P(m,e,t) log[P(m,e,t) P(t) / (P(m,t) P(e,t))] of a joint P (M, E, T) summing to 1."""
    pt = p.sum(dim=(0, 1))
    pmt = p.sum(dim=1, keepdim=True)
    pet = p.sum(dim=0, keepdim=True)
    return (p * (torch.log(p + eps) + torch.log(pt + eps) - torch.log(pmt + eps) - torch.log(pet + eps))).sum()


def routing_joint(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-sample joint over (token, expert, task): softmax of the MToE routing logits (B, N, E, T)
    over all entries, absent tokens excluded."""
    b = logits.shape[0]
    masked = logits.masked_fill(~keep[:, :, None, None], float("-inf"))
    return torch.softmax(masked.reshape(b, -1), dim=-1).view_as(logits)


def mi_paper(logits: torch.Tensor, keep: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """The paper's I(M; E | T): tokens summed into modalities (``onehot`` (N, M): token -> modality),
    averaged over the batch."""
    p = routing_joint(logits, keep)  # (B, N, E, T)
    onehot = onehot.to(p)
    joint = torch.einsum("bnet,nm->met", p, onehot) / p.shape[0]
    return mi_from_joint(joint)


def mi_code(logits: torch.Tensor, keep: torch.Tensor, eps: float = MI_CODE_EPS) -> torch.Tensor:
    """The released code's estimate (``MutualInformationLoss``): per sample I(token; task slot) with
    experts marginalised, sum_n,t P(n,t) log(P(n,t) / (P(n) P(t)) + 1e-10), **summed** over the
    batch (so it grows with the batch size). Absent tokens carry no mass and add nothing."""
    p = routing_joint(logits, keep).sum(dim=2)  # (B, N, T)
    pn, pt = p.sum(dim=2, keepdim=True), p.sum(dim=1, keepdim=True)
    ratio = p / (pn * pt).clamp_min(torch.finfo(p.dtype).tiny)  # 0 / 0 of an absent token -> 0, not NaN
    return (p * torch.log(ratio + eps)).sum()


# ----------------------------------------------------------------------------------- blocks
class MoEBlock(Block):
    """Pre-norm transformer block whose MLP is a :class:`SoftMoE` (or :class:`SwitchMoE`); returns
    (x, aux loss, routing) where routing is the Soft-MoE's logits/dispatch/combine (None for top-k)."""

    def forward(self, x, keep=None, qkv=None):
        x = x + self.drop(self.attn.attend(self.project(x) if qkv is None else qkv, keep))
        h = self.norm2(x)
        if isinstance(self.ffn, SoftMoE):
            out, routing = self.ffn(h, keep, return_routing=True)
            return x + out, x.new_zeros(()), routing
        out, aux = self.ffn(h)
        return x + out, aux, None


class MToE(nn.Module):
    """The modality-task block: attention over all views' tokens, then a task-slot MoE.

    ``soft``: one Soft-MoE with ``experts`` x T slots (slot k = task k, task embeddings, per-task
    combine). ``topk``: one switch MoE shared by the tasks, run on x + task embedding k for every
    task (balanced per task); its router logits play the routing logits. Returns U (B, T, N, d),
    routing logits (B, N, E, T) and the auxiliary loss."""

    def __init__(self, dim: int, heads: int, experts: int, tasks: int, hidden: int, dropout: float, router: str,
                 top_k: int, aux_weight: float, soft_router: str, slot_input: str = "raw", combine: str = "per-task",
                 norm_eps: float = 1e-5):
        super().__init__()
        self.tasks, self.kind = tasks, router
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=norm_eps), nn.LayerNorm(dim, eps=norm_eps)
        from .nets.blocks import Attention

        self.attn = Attention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        if router == "soft":
            self.moe = SoftMoE(dim, experts, tasks, hidden, dropout, router=soft_router, tasks=tasks,
                               slot_input=slot_input, combine=combine)
        else:
            self.moe = SwitchMoE(dim, experts, top_k, hidden, dropout, aux_weight)
            self.moe.segments = tasks
            self.task_embed = nn.Parameter(torch.zeros(tasks, dim))

    def forward(self, x, keep):
        x = x + self.drop(self.attn(self.norm1(x), keep))
        h = self.norm2(x)
        b, n, d = h.shape
        if self.kind == "soft":
            out, routing = self.moe(h, keep, return_routing=True)  # (B, T, N, d)
            return x.unsqueeze(1) + out, routing["logits"], x.new_zeros(())
        stacked = (h.unsqueeze(0) + self.task_embed[:, None, None, :]).reshape(self.tasks * b, n, d)
        out, aux = self.moe(stacked)
        logits = self.moe.router(stacked).view(self.tasks, b, n, -1).permute(1, 2, 3, 0)  # (B, N, E, T)
        return x.unsqueeze(1) + out.view(self.tasks, b, n, d).transpose(0, 1), logits, aux


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the kept tokens of (..., N, d) with keep (B, N) broadcast over leading task axes."""
    w = keep.to(x.dtype)
    while w.dim() < x.dim() - 1:
        w = w.unsqueeze(1)
    return (x * w.unsqueeze(-1)).sum(-2) / w.sum(-1, keepdim=True).clamp_min(1.0)


def _roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC (ties count one half); NaN without both classes."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ----------------------------------------------------------------------------------- method
@register_method
class M4oEMT(Method):
    name = "m4oe-mt"
    description = "M4oE-MT (ICLR 2025): per-view Soft-MoE (MSoE) + task-slot Soft-MoE (MToE), MI loss, per-task fusion"
    missing_modality = "tokens masked out of attention and Soft-MoE dispatch; absent view dropped from fusion"

    @classmethod
    def cost_input(cls, preset: str) -> tuple[str, str | None]:
        """``bench cost --method m4oe-mt``: the stand-in's tasks; at ``paper`` the paper's input, four
        mammography views of 3 x 224 x 224 (EMBED's FFDM + C-View CC/MLO)."""
        return "synthetic-mvmt", ("4x3x224x224" if preset == "paper" else None)

    @classmethod
    def defaults(cls):
        return {**ENCODER_DEFAULTS, "image_encoder": "vit", "sizes": "m4oe-mt", "heads": 8, "encoder_heads": 0,
                "patch_size": 0, "msoe": True, "mtoe": True, "msoe_layers": 2, "fusion_layers": 2,
                "msoe_experts": 32, "mtoe_experts": 128, "fusion_experts": 16, "mlp_ratio": 4.0, "router": "soft",
                "soft_router": "l2", "top_k": 1, "aux_weight": 0.01, "alpha": 0.05, "mi_variant": "paper",
                "gamma": 2.0, "class_weighting": True, "seg_skip": "msoe", "variant": "paper",
                "slot_input": "normalized", "mtoe_combine": "per-task", "fusion_head": "per-task", "norm_eps": 1e-6,
                "focal_norm": "samples", "label_mask": "per-task", "encoder_cls": True}

    @classmethod
    def hparam_rules(cls):
        return {**super().hparam_rules(), "sizes": one_of("m4oe-mt"),
                "encoder_heads": integer(0, note="0 = heads"), "patch_size": integer(0, note="0 = the shared ViT rule"),
                "msoe": flag(), "mtoe": flag(), "msoe_layers": integer(1), "msoe_experts": integer(1),
                "mtoe_experts": integer(1), "fusion_experts": integer(1), "router": one_of(*ROUTERS),
                "soft_router": one_of(*SOFT_ROUTER_FORMS), "alpha": number(0), "mi_variant": one_of(*MI_VARIANTS),
                "gamma": number(0), "class_weighting": flag(), "seg_skip": one_of(*SEG_SKIPS),
                "variant": one_of(*VARIANTS), "slot_input": one_of(*SLOT_INPUTS), "mtoe_combine": one_of(*TASK_COMBINES),
                "fusion_head": one_of(*FUSION_HEADS), "norm_eps": number(0, lo_open=True),
                "focal_norm": one_of(*FOCAL_NORMS), "label_mask": one_of(*LABEL_MASKS), "encoder_cls": flag()}

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial), "alpha": trial.suggest_categorical("alpha", [0.0, 0.005, 0.05, 0.5])}

    @classmethod
    def supports_task(cls, task) -> bool | str:
        if task.kind == "segmentation" and not DENSE_TASKS:
            return ("m4oe-mt declines segmentation tasks until the harness passes dense targets "
                    f"(task {task.name!r}); its decoder is methods/nets/dense_decoder.py")
        return True

    @classmethod
    def supports(cls, spec):
        declined = {t.name: r for t in spec.tasks if (r := cls.supports_task(t)) is not True}
        if not declined:
            return True
        reason = "; ".join(dict.fromkeys(declined.values()))
        # without the harness's declined-task mechanism every task must be predicted
        if len(declined) == len(spec.tasks) or not hasattr(Method, "declined_tasks"):
            return reason
        return True

    def __init__(self, spec, hparams):
        hp = dict(hparams)
        for key, allowed in (("router", ROUTERS), ("mi_variant", MI_VARIANTS), ("soft_router", SOFT_ROUTER_FORMS),
                             ("variant", VARIANTS), ("slot_input", SLOT_INPUTS), ("mtoe_combine", TASK_COMBINES),
                             ("fusion_head", FUSION_HEADS), ("focal_norm", FOCAL_NORMS), ("label_mask", LABEL_MASKS)):
            if hp[key] not in allowed:
                raise ValueError(f"m4oe-mt: {key}={hp[key]!r} is not one of: {', '.join(allowed)}")
        if hp["variant"] == "code":
            hp.update(CODE)
        if not (hp["msoe"] or hp["mtoe"]):
            raise ValueError("m4oe-mt: msoe and mtoe cannot both be off")
        if hp["slot_input"] == "normalized" and hp["soft_router"] != "l2":
            raise ValueError("m4oe-mt: slot_input=normalized dispatches the tokens the l2 router normalised; "
                             "with soft_router=layernorm add --set slot_input=raw")
        super().__init__(spec, hp)
        self.my_tasks = tuple(t for t in spec.tasks if type(self).supports_task(t) is True)
        self.views = spec.modality_names
        d, heads = int(hp["hidden"]), divisible_heads(int(hp["hidden"]), int(hp["heads"]))
        drop, ffn_hidden = float(hp["dropout"]), max(1, int(round(float(hp["mlp_ratio"]) * d)))
        self.encoders = nn.ModuleDict({m.name: self._encoder(m, hp) for m in spec.modalities})
        self.token_counts = {m.name: self._tokens(self.encoders[m.name], m) for m in spec.modalities}
        onehot = torch.zeros(sum(self.token_counts.values()), len(self.views))
        start = 0
        for i, v in enumerate(self.views):
            onehot[start:start + self.token_counts[v], i] = 1.0
            start += self.token_counts[v]
        self.register_buffer("token_onehot", onehot, persistent=False)  # (N, V): token -> view

        eps = float(hp["norm_eps"])

        def moe(experts):
            if hp["router"] == "soft":
                return SoftMoE(d, int(experts), 1, ffn_hidden, drop, router=hp["soft_router"], slot_input=hp["slot_input"])
            return SwitchMoE(d, int(experts), min(int(hp["top_k"]), int(experts)), ffn_hidden, drop, float(hp["aux_weight"]))

        def block(experts):
            return MoEBlock(d, heads, drop, moe(experts), norm_eps=eps)

        if hp["msoe"]:
            self.msoe = nn.ModuleDict({v: nn.ModuleList([block(hp["msoe_experts"]) for _ in range(int(hp["msoe_layers"]))])
                                       for v in self.views})
        t = len(self.my_tasks)
        if hp["mtoe"]:
            self.mtoe = MToE(d, heads, int(hp["mtoe_experts"]), t, ffn_hidden, drop, hp["router"],
                             min(int(hp["top_k"]), int(hp["mtoe_experts"])), float(hp["aux_weight"]), hp["soft_router"],
                             slot_input=hp["slot_input"] if hp["router"] == "soft" else "raw",
                             combine=hp["mtoe_combine"], norm_eps=eps)
        else:
            self.task_tokens = nn.Parameter(0.02 * torch.randn(t, d))
        self.fusion = nn.ModuleList([block(hp["fusion_experts"]) for _ in range(int(hp["fusion_layers"]))])
        if hp["fusion_head"] == "shared":
            self.fusion_norm = nn.LayerNorm(d, eps=eps)
            self.fusion_proj = nn.Linear(d, d)
        else:  # one LayerNorm + Linear per task, as the code's norm1..3 / proj1, proj2, proj7
            self.fusion_norms = nn.ModuleDict({task.name: nn.LayerNorm(d, eps=eps) for task in self.my_tasks})
            self.fusion_projs = nn.ModuleDict({task.name: nn.Linear(d, d) for task in self.my_tasks})
        self.heads = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for task in self.my_tasks:
            if task.kind == "segmentation":
                self.decoders[task.name] = self._decoder(task, d)
            else:
                self.heads[task.name] = nn.Linear(d, task.num_classes)
        for task in self.my_tasks:
            w = class_weights(task.class_counts) if hp["class_weighting"] else None
            self.register_buffer(f"cw_{task.name}", w if w is not None else torch.ones(max(1, task.num_classes)),
                                 persistent=False)

    # ---- construction helpers
    def _encoder(self, modality, hp):
        ehp = {**hp, "heads": int(hp["encoder_heads"]) or int(hp["heads"])}
        patch = int(hp["patch_size"])
        if modality.kind == "image2d" and hp["image_encoder"] == "vit" and patch:
            from timm.models.vision_transformer import VisionTransformer

            size = tuple(modality.shape[1:])
            if any(s % patch for s in size):
                raise ValueError(f"image size {size} is not divisible by patch_size {patch}")
            d = int(hp["hidden"])
            net = VisionTransformer(img_size=size, patch_size=patch, in_chans=modality.shape[0], num_classes=0,
                                    embed_dim=d, depth=max(1, int(hp["layers"])), num_heads=divisible_heads(d, ehp["heads"]),
                                    class_token=bool(hp["encoder_cls"]), global_pool="", drop_rate=float(hp["dropout"]))
            return _ViT(net)
        return build_encoder(modality, ehp)

    @staticmethod
    def _tokens(encoder, modality) -> int:
        net = getattr(encoder, "net", None)
        patch_embed = getattr(net, "patch_embed", None)
        if patch_embed is not None:  # a timm ViT (ours or the shared ViTEncoder): one token per patch (+ class token)
            return int(patch_embed.num_patches) + int(getattr(net, "num_prefix_tokens", 0))
        if getattr(encoder, "num_tokens", None):
            return int(encoder.num_tokens)
        if modality.kind == "sequence":
            return int(modality.shape[0])
        return 1

    def _decoder(self, task, d):
        view = self._seg_view(task)
        n = self.token_counts[view] - self._prefix(view)
        shape = self.spec.modality(view).shape
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"m4oe-mt: view {view!r} has {n} tokens, not a square patch grid")
        return PatchGridDecoder(d, (side, side), tuple(shape[-2:]), task.num_classes)

    def _prefix(self, view: str) -> int:
        """Leading non-patch tokens of a view (a ViT's class token), left out of the patch grid."""
        return int(getattr(getattr(self.encoders[view], "net", None), "num_prefix_tokens", 0))

    def _seg_view(self, task) -> str:
        view = self.spec.params.get("seg_views", {}).get(task.name) if isinstance(self.spec.params, dict) else None
        return view or next(m.name for m in self.spec.modalities if m.kind == "image2d")

    # ---- forward
    def forward(self, batch):
        hp = self.hparams
        x = {v: self.encoders[v](batch["inputs"][v]) for v in self.views}
        b = x[self.views[0]].shape[0]
        present = torch.stack([batch["mask"][v].bool() for v in self.views], dim=1)  # (B, V)
        keeps = {v: present[:, i:i + 1].expand(-1, self.token_counts[v]) for i, v in enumerate(self.views)}
        aux_loss = x[self.views[0]].new_zeros(())
        t = len(self.my_tasks)
        seq, seq_keep, s_tokens = [], [], {}
        if hp["mtoe"]:
            z, keep = torch.cat([x[v] for v in self.views], dim=1), torch.cat([keeps[v] for v in self.views], dim=1)
            keep = keep | ~keep.any(dim=1, keepdim=True)  # a sample with no view at all dispatches every token
            u, logits, a = self.mtoe(z, keep)  # (B, T, N, d), (B, N, E, T)
            aux_loss = aux_loss + a
            seq.append(_masked_mean(u, keep).reshape(b * t, 1, -1))  # task-major inside each sample
        else:
            seq.append(self.task_tokens.unsqueeze(0).expand(b, -1, -1).reshape(b * t, 1, -1))
        seq_keep.append(present.new_ones(b * t, 1))
        if hp["msoe"]:
            for i, v in enumerate(self.views):
                s = x[v]
                for blk in self.msoe[v]:  # an absent view is all-or-nothing: computed, then masked in fusion
                    s, a, _ = blk(s)
                    aux_loss = aux_loss + a
                s_tokens[v] = s
                pooled = s.mean(dim=1) * present[:, i:i + 1].to(s.dtype)
                seq.append(pooled.repeat_interleave(t, dim=0).unsqueeze(1))
                seq_keep.append(present[:, i:i + 1].repeat_interleave(t, dim=0))
        f, fkeep = torch.cat(seq, dim=1), torch.cat(seq_keep, dim=1)  # (B*T, 1+V, d)
        for blk in self.fusion:
            f, a, _ = blk(f, fkeep)
            aux_loss = aux_loss + a
        if hp["fusion_head"] == "shared":
            h = self.fusion_proj(self.fusion_norm(f[:, 0])).view(b, t, -1)
        else:
            f0 = f[:, 0].view(b, t, -1)
            h = torch.stack([self.fusion_projs[task.name](self.fusion_norms[task.name](f0[:, k]))
                             for k, task in enumerate(self.my_tasks)], dim=1)
        preds, out_aux, losses = {}, {}, {}
        for k, task in enumerate(self.my_tasks):
            if task.kind == "segmentation":
                preds[task.name] = self._dense(task, k, u if hp["mtoe"] else None, s_tokens, x)
                continue
            z = self.heads[task.name](h[:, k])
            preds[task.name] = z.squeeze(-1) * task.target_std + task.target_mean if task.kind == "regression" else z
        out_aux["view_present"] = present.float()
        if hp["mtoe"]:
            joint = routing_joint(logits, keep)  # (B, N, E, T)
            mass = torch.einsum("bnet,nm->btm", joint, self.token_onehot.to(joint))  # (B, T, V)
            contrib = mass / mass.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            for k, task in enumerate(self.my_tasks):
                out_aux[f"contrib_{task.name}"] = contrib[:, k]
            alpha = float(hp["alpha"])
            if alpha > 0 and self.training:
                mi = (mi_paper(logits, keep, self.token_onehot)
                      if hp["mi_variant"] == "paper" else mi_code(logits, keep))
                losses["mutual_information"] = -alpha * mi
        if aux_loss.requires_grad:
            losses["load_balance"] = aux_loss
        return Output(preds, aux=out_aux, losses=losses)

    def _dense(self, task, k, u, s_tokens, x):
        view = self._seg_view(task)
        first = sum(self.token_counts[v] for v in self.views[:self.views.index(view)])  # the view's tokens in u
        prefix = self._prefix(view)   # a class token is not part of the patch grid
        tokens = u[:, k, first + prefix:first + self.token_counts[view]] if u is not None else x[view][:, prefix:]
        if self.hparams["seg_skip"] == "msoe" and view in s_tokens:
            tokens = tokens + s_tokens[view][:, prefix:]
        return self.decoders[task.name](tokens)

    # ---- loss
    def loss(self, output, batch):
        parts: dict[str, torch.Tensor] = {}
        hp = self.hparams
        every = None
        if hp["label_mask"] == "all" and any(t.kind in ("binary", "multiclass") for t in self.my_tasks):
            # the code's valid_idx: a row counts for the classification tasks only where all their labels exist
            every = torch.stack([batch["target_mask"][t.name].bool() for t in self.my_tasks
                                 if t.kind in ("binary", "multiclass")]).all(dim=0)
        for task in self.my_tasks:
            pred, target, mask = output.preds[task.name], batch["targets"][task.name], batch["target_mask"][task.name]
            if task.kind in ("binary", "multiclass"):
                mask = mask if every is None else mask & every
                parts[f"task/{task.name}"] = (focal_loss(pred[mask], target[mask], getattr(self, f"cw_{task.name}"),
                                                         float(hp["gamma"]), hp["focal_norm"])
                                              if bool(mask.any()) else pred.sum() * 0.0)
            else:
                parts[f"task/{task.name}"] = task_loss(task, pred, target, mask)
        for name, value in output.losses.items():
            parts[f"aux/{name}"] = value
        return torch.stack(list(parts.values())).sum(), parts

    # ---- interpretation
    def interpret(self, aux, truth):
        """Population contributions and their agreement with planted truth (docs/m4oe-mt.md).

        ``contrib_<task>_<view>``: test-set mean of the sample-level contribution (routing mass of
        the view's tokens in the task's slots, normalised over views; absent views get 0).
        With ``spec.params["task_views"]`` (synthetic-mvmt): ``planted_auc`` = AUROC of the
        population contributions over all (task, view) pairs, relevant (view in task_views[task])
        vs irrelevant; ``planted_auc_sample`` the same per sample, averaged; ``planted_agreement`` =
        planted_auc - 0.5 (chance 0). With per-sample view noise (``noise_<view>``):
        ``noise_spearman`` = mean over tasks and their relevant views of Spearman(contribution,
        noise) across samples where the view is present (should be < 0; chance 0);
        ``noise_pair_agreement`` = share of (sample, task, pair of present relevant views) where the
        less noisy view gets more mass (ties one half), minus 0.5 (chance 0)."""
        names = [t.name for t in self.my_tasks if f"contrib_{t.name}" in aux]
        if not names:
            return {}
        present = np.asarray(aux.get("view_present", np.ones((len(aux[f"contrib_{names[0]}"]), len(self.views)))), bool)
        contrib = {t: np.asarray(aux[f"contrib_{t}"], dtype=np.float64) for t in names}
        out = {f"contrib_{t}_{v}": float(contrib[t][:, i].mean()) for t in names for i, v in enumerate(self.views)}
        out["chance_contrib"] = 1.0 / len(self.views)
        task_views = self.spec.params.get("task_views") if isinstance(self.spec.params, dict) else None
        if task_views:
            pairs = [(t, i) for t in names if t in task_views for i, _ in enumerate(self.views)]
            labels = np.array([self.views[i] in task_views[t] for t, i in pairs])
            pop = np.array([contrib[t][:, i].mean() for t, i in pairs])
            out["planted_auc"] = _roc_auc(pop, labels)
            per_sample = np.stack([contrib[t][:, i] for t, i in pairs], axis=1)
            aucs = [_roc_auc(row, labels) for row in per_sample]
            out["planted_auc_sample"] = float(np.nanmean(aucs)) if len(aucs) else float("nan")
            out["planted_agreement"] = out["planted_auc"] - 0.5
            out["planted_agreement_sample"] = out["planted_auc_sample"] - 0.5
        noise = {i: np.asarray(truth[f"noise_{v}"], dtype=np.float64) for i, v in enumerate(self.views)
                 if f"noise_{v}" in truth}
        if noise:
            rhos, hits = [], []
            for t in names:
                rel = [i for i, v in enumerate(self.views) if i in noise and (not task_views or v in task_views.get(t, []))]
                for i in rel:
                    rows = present[:, i]
                    rho = _spearman(contrib[t][rows, i], noise[i][rows])
                    out[f"noise_spearman_{t}_{self.views[i]}"] = rho
                    rhos.append(rho)
                for a in rel:
                    for c in rel:
                        if a >= c:
                            continue
                        rows = present[:, a] & present[:, c] & (noise[a] != noise[c])
                        sign = np.sign(noise[c][rows] - noise[a][rows])  # +1 where view a is the less noisy
                        mass = np.sign(contrib[t][rows, a] - contrib[t][rows, c])
                        hits.append(np.where(mass == 0, 0.5, (sign == mass).astype(float)))  # a tie counts one half
            out["noise_spearman"] = float(np.nanmean(rhos)) if rhos else float("nan")
            if hits:
                out["noise_pair_agreement"] = float(np.concatenate(hits).mean()) - 0.5
        return out


class _ViT(nn.Module):
    """A timm ViT (no class token, no pooling) whose patch size M4oE-MT sets: (B, h*w, d) tokens."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)


