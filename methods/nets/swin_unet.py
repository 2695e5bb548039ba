"""2-D Swin-UNet with M4oE's mixture-of-experts FFN (Jiang & Shen, MICCAI 2024, arXiv 2405.09446).

A pure ``torch.nn.Module``; the harness wraps it in a ``Method`` elsewhere. The backbone follows
Swin-Unet (Cao et al., ``networks/swin_transformer_unet_skip_expand_decoder_sys.py``) as modified in
the M4oE release (``JefferyJiang-YF/M4oE``, ``networks/swin_transformer_moe_decoder_encoder.py``).
Source tags: [paper] = M4oE abstract, [code] = the released code, [ours] = our choice/fix.

Architecture [code] (Swin-Unet, "expand_first"):
  patch embed (Conv k=s=patch_size, LN) -> 4 encoder stages of Swin blocks (W-MSA / SW-MSA
  alternating, relative position bias, pre-norm, FFN) with PatchMerging between stages; the 4th
  stage is the bottleneck -> LN -> PatchExpand -> 3 decoder stages (skip concat + Linear(2C, C),
  Swin blocks, PatchExpand) -> LN -> FinalPatchExpand_X4 (Linear(C, 16C, no bias), 4x4 pixel
  shuffle, LN) -> per-domain bias-free 1x1 conv heads (``heads[d]``).
  * Decoder depths mirror the encoder: decoder stage i uses ``depths[L-1-i]`` and the encoder's
    drop-path rates for that stage [code]. Both repos declare ``depths_decoder`` ([1,2,2,2] in
    Swin-Unet, [2,2,2,1] in M4oE's yaml) but never use it, so there is no such field here.
  * Window clipping [code]: when ``min(resolution) <= window_size`` a block uses
    window = resolution and no shift. Otherwise the resolution must be divisible by the window
    (``validate`` raises instead of the code's crash).
  * Stochastic depth: linear 0..``drop_path`` over the encoder blocks [code]. Dropout and
    attention dropout are 0 in the code and are not exposed [ours].
  * Init [code]: trunc_normal(std .02) for every Linear weight (bias 0), LayerNorm 1/0,
    trunc_normal(.02) for the relative-position tables, PyTorch default for the convs. Each
    expert slice gets its own trunc_normal draw.

FFN per block (``routing``):
  * ``"dense"``: timm-style ``Mlp`` (fc1-GELU-fc2), the plain Swin-UNet baseline [code].
  * ``"hard"``: sample of domain d uses expert ``expert_map[d]`` only (stage 1 / "w/o gating",
    ``MoEFFN_dataset``) [code]. The code loops over samples; we sort the batch by domain once
    per forward and run one matmul per contiguous domain run (at most ``len(head_classes)`` runs)
    [ours; same maths].
  * ``"gated"``: g = softmax(W_g LN(x)) in R^E per token; out = sum_e g_e f_e(x); soft, no top-k,
    no noise, no auxiliary loss [paper idea; exact form ours]. Gate = ``gate.norm`` (LN(C)) +
    ``gate.proj`` (Linear(C, E), bias).
  * ``"gated-code"``: the released ``MoEFFN_Gating``: a *channel* gate g = softmax(W x) in R^C
    (``gate.proj`` = Linear(C, C), bias) and out = g * sum_e f_e(x); it never weights experts
    differently [code]. Kept as a fidelity option.
  Experts are stacked parameters ``w1 (E, C, 4C)``, ``b1 (E, 4C)``, ``w2 (E, 4C, C)``,
  ``b2 (E, C)`` (input-major, so ``x @ w``); the gated modes evaluate all experts on every token
  as two GEMMs over the stacked weights (an einsum over e, h; no Python loop over experts).

Deviations from the reference code, as config fields:
  * ``in_chans`` = 1 [ours]; the code repeats the slice to 3 channels and uses in_chans=3 (the same
    function class: the summed filters of a 3-channel conv). 3072 params fewer at paper size.
  * ``routing`` = "gated" [ours] by default vs the code's channel gate ("gated-code").
  * ``moe_where``: "both" = every block, bottleneck included [code]; "enc" = the encoder stages
    including the bottleneck get MoE, decoder blocks are dense; "dec" = decoder blocks only. This
    is what the released bytecode ablations do (``swin_transformer_moe_encoder_only`` puts
    ``MoEFFN_Gating`` in ``SwinTransformerBlockEncoder``, used by all 4 encoder stages including
    the bottleneck, and ``Mlp`` in ``SwinTransformerBlockDecoder``; ``..._decoder_only`` is the
    mirror image; ``..._wo_MoE`` is dense everywhere) [code, read from the .pyc disassembly].
  * ``expert_map`` (domain -> expert for "hard"); None = identity, which then requires
    ``num_experts == len(head_classes)`` [code: expert = dataset id; mapping ours].
  * Heads: a batch is grouped by domain and each group goes through its own head; logits are
    returned per domain (``domain_logits[d]``: that domain's rows in batch order) and per sample
    with that domain's class count [ours]. The code zero-pads every sample to the max class count.
    Heads live in ``heads`` (ModuleList), not the code's ``outputs`` dict. A mixed-domain batch is
    one pass with one host sync (the per-domain counts) [ours].
  * ``relative_position_index`` / ``attn_mask`` are non-persistent buffers (not in state_dict)
    [ours]; the expert weights are stacked tensors instead of ``experts.{e}.{0,2}`` Linears, so
    reference checkpoints do not load directly (none are released).
  * Attention uses ``F.scaled_dot_product_attention`` with the same additive bias/mask (-100) as
    the code [ours; same maths].

Parameter counts at paper size (224, patch 4, C 96, depths 2-2-2-2, heads 3-6-12-24, window 7),
measured on the reference classes (``REFERENCE_PARAM_COUNTS``):
  * 60,432,132 = the released M4oE (``gated-code``, 3 experts, heads 14+3+16, in_chans 3): the
    paper's "60.4 M". With our in_chans=1: 60,429,060.
  * 27,168,900 = Swin-Unet (dense, in_chans 3, one 9-class head, the Synapse setup): "27.17 M".
  * Our ``"gated"`` gate (LN + Linear(C, E)) is 1,936,854 params smaller than the code's
    Linear(C, C) channel gate over the 14 MoE blocks, so ``paper_config()`` (gated, in_chans 1)
    has 58,492,206 params: 3.2 % under 60.4 M. The 60.4 M figure is only reached by the channel
    gate (``routing="gated-code"``, either in_chans).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn

from ..choices import MOE_WHERE, ROUTINGS

# Exact counts of the reference classes (built on CPU from the released code) [code].
REFERENCE_PARAM_COUNTS = {
    "m4oe_gated_code_in3": 60_432_132,  # MoEFFN_Gating everywhere, heads 14+3+16, in_chans 3
    "m4oe_gated_code_in1": 60_429_060,  # same with in_chans 1
    "m4oe_gate_params": 1_958_016,  # the 14 Linear(C, C) channel gates
    "swinunet_in3_nc9": 27_168_900,  # Swin-Unet Synapse setup
}

# (expert, start, end): samples [start, end) of the batch use this expert.
Runs = list[tuple[int, int, int]]


@dataclass
class SwinUNetConfig:
    img_size: int = 224
    patch_size: int = 4
    in_chans: int = 1
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    qkv_bias: bool = True
    ape: bool = False
    patch_norm: bool = True
    num_experts: int = 3
    routing: str = "gated"
    moe_where: str = "both"
    head_classes: tuple[int, ...] = (14, 3, 16)
    expert_map: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("depths", "num_heads", "head_classes", "expert_map"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)):
                setattr(self, name, tuple(v))

    # ------------------------------------------------------------------ helpers
    @property
    def num_layers(self) -> int:
        return len(self.depths)

    @property
    def num_domains(self) -> int:
        return len(self.head_classes)

    @property
    def patches_resolution(self) -> int:
        return self.img_size // self.patch_size

    def stage_resolution(self, i: int) -> int:
        return self.patches_resolution // (2 ** i)

    def experts_of_domains(self) -> tuple[int, ...]:
        return self.expert_map if self.expert_map is not None else tuple(range(self.num_domains))

    def validate(self) -> SwinUNetConfig:
        def bad(field: str, msg: str):
            raise ValueError(f"SwinUNetConfig.{field}: {msg}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "window_size", "num_experts"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                bad(name, f"must be a positive int, got {v!r}")
        if self.routing not in ROUTINGS:
            bad("routing", f"must be one of {ROUTINGS}, got {self.routing!r}")
        if self.moe_where not in MOE_WHERE:
            bad("moe_where", f"must be one of {MOE_WHERE}, got {self.moe_where!r}")
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0 or int(self.embed_dim * self.mlp_ratio) < 1:
            bad("mlp_ratio", f"must be > 0, got {self.mlp_ratio!r}")
        if not isinstance(self.drop_path, (int, float)) or not 0.0 <= self.drop_path < 1.0:
            bad("drop_path", f"must be in [0, 1), got {self.drop_path!r}")
        if not self.depths or not all(is_int(d) and d >= 1 for d in self.depths):
            bad("depths", f"must be a non-empty tuple of positive ints, got {self.depths!r}")
        if len(self.num_heads) != len(self.depths) or not all(is_int(h) and h >= 1 for h in self.num_heads):
            bad("num_heads", f"must be {len(self.depths)} positive ints (one per stage), got {self.num_heads!r}")
        for i, h in enumerate(self.num_heads):
            dim = self.embed_dim * 2 ** i
            if dim % h:
                bad("num_heads", f"stage {i} dim {dim} is not divisible by num_heads[{i}]={h}")
        if not self.head_classes or not all(is_int(c) and c >= 1 for c in self.head_classes):
            bad("head_classes", f"must be a non-empty tuple of positive ints, got {self.head_classes!r}")
        if self.img_size % self.patch_size:
            bad("img_size", f"{self.img_size} is not divisible by patch_size={self.patch_size}")
        res = self.patches_resolution
        down = 2 ** (self.num_layers - 1)
        if res % down or res // down < 1:
            bad("img_size", f"img_size/patch_size = {res} must be a positive multiple of 2^(stages-1) = {down}")
        for i in range(self.num_layers):
            r = self.stage_resolution(i)
            if r > self.window_size and r % self.window_size:
                bad("window_size", f"stage {i} resolution {r} is not divisible by window_size={self.window_size}")
        if self.expert_map is not None:
            if len(self.expert_map) != self.num_domains:
                bad("expert_map", f"needs one expert per domain ({self.num_domains}), got {self.expert_map!r}")
            if not all(is_int(e) and 0 <= e < self.num_experts for e in self.expert_map):
                bad("expert_map", f"entries must be in [0, num_experts={self.num_experts}), got {self.expert_map!r}")
        elif self.routing == "hard" and self.num_experts != self.num_domains:
            bad("num_experts", f"hard routing with no expert_map needs num_experts == len(head_classes) "
                f"({self.num_domains}), got {self.num_experts}")
        return self


@dataclass
class SwinUNetOutput:
    """``domain_logits[d]``: (n_d, C_d, H, W) from head d, the rows of domain d in batch order, for
    each domain in the batch; ``logits``: the same per sample in batch order, (C_{domain[i]}, H, W)
    (built from ``domain_logits`` on first use). ``gates`` in batch order."""
    domain_logits: dict[int, Tensor]
    gates: Tensor | None  # gated: (B, L, E) mean expert weight; gated-code: (B, L) mean channel-gate entropy (nats)
    domain: Tensor | None = None  # (B,) the batch's domains, for ``logits``

    @cached_property
    def logits(self) -> list[Tensor]:
        if self.domain is None:
            raise ValueError("SwinUNetOutput.logits needs the batch's domain")
        taken = dict.fromkeys(self.domain_logits, 0)
        out = []
        for d in self.domain.tolist():
            out.append(self.domain_logits[d][taken[d]])
            taken[d] += 1
        return out


def preset_config(preset: str, **overrides) -> SwinUNetConfig:
    """The backbone at a harness preset (``methods.presets``, the one place sizes are defined):
    ``paper`` is the reference's 224 px, patch 4, C 96, depths 2-2-2-2, heads 3-6-12-24, window 7,
    drop_path 0.2 [code]; ``tiny`` and ``small`` are CPU sizes [ours]."""
    from ..presets import PRESETS

    p = PRESETS[preset]
    base = SwinUNetConfig(img_size=int(p["img_size"]), patch_size=4, embed_dim=int(p["embed_dim"]),
                          depths=tuple(int(v) for v in str(p["depths"]).split(",")),
                          num_heads=tuple(int(v) for v in str(p["num_heads"]).split(",")),
                          window_size=int(p["window_size"]), drop_path=float(p["drop_path"]))
    return replace(base, **overrides).validate()


def paper_config(**overrides) -> SwinUNetConfig:
    """Paper size [code] (``preset_config("paper")``)."""
    return preset_config("paper", **overrides)


def tiny_config(**overrides) -> SwinUNetConfig:
    """The ``tiny`` preset (``preset_config("tiny")``): depths 1-1-1-1, so pass ``depths=(2, 2, 2, 2)``
    to exercise shifted windows."""
    return preset_config("tiny", **overrides)


def small_config(**overrides) -> SwinUNetConfig:
    """The ``small`` preset (``preset_config("small")``)."""
    return preset_config("small", **overrides)


def config_from_dict(d: dict) -> SwinUNetConfig:
    """Build a config from a plain dict (e.g. a checkpoint's), ignoring unknown keys."""
    names = {f.name for f in fields(SwinUNetConfig)}
    return SwinUNetConfig(**{k: v for k, v in d.items() if k in names}).validate()


# ---------------------------------------------------------------------------- building blocks

def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C), windows in row-major order inside each sample."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_reverse(windows: Tensor, ws: int, H: int, W: int) -> Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def pixel_shuffle_tokens(x: Tensor, H: int, W: int, p: int) -> Tensor:
    """rearrange 'b (h w) (p1 p2 c) -> b ((h p1) (w p2)) c' with p1 = p2 = p."""
    B, _, C = x.shape
    c = C // (p * p)
    x = x.view(B, H, W, p, p, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H * p * W * p, c)


class Mlp(nn.Module):
    """timm-style dense FFN: fc1 - GELU - fc2 (dropout 0 as in the code)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, runs: Runs | None = None) -> tuple[Tensor, Tensor | None]:
        return self.fc2(self.act(self.fc1(x))), None


class _ExpertGate(nn.Module):
    """``gated``: softmax(proj(LN(x))) over experts."""

    def __init__(self, dim: int, experts: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, experts)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(x))


class _ChannelGate(nn.Module):
    """``gated-code``: the released ``gating_network = nn.Linear(dim, dim)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class MoEFFN(nn.Module):
    """E expert FFNs (Linear(C,4C)-GELU-Linear(4C,C), with biases) stacked as parameters (E, ...) and
    applied as einsum-style GEMMs over the stacked weights (no Python loop over experts).

    routing "hard": ``runs`` [(expert, start, end), ...] tells which expert each contiguous slice of
    the batch uses (one matmul per run). "gated": per-token softmax over experts of
    ``gate.proj(gate.norm(x))``; out = sum_e g_e f_e(x). "gated-code": per-token softmax over
    channels of ``gate.proj(x)``; out = g * sum_e f_e(x).

    ``forward(x (B, N, C), runs)`` -> (out (B, N, C), stat): stat is the detached per-sample mean gate
    (B, E) for "gated", the mean channel-gate entropy in nats (B,) for "gated-code", else None.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, routing: str):
        super().__init__()
        if routing not in ("hard", "gated", "gated-code"):
            raise ValueError(f"MoEFFN.routing: must be hard, gated or gated-code, got {routing!r}")
        self.dim, self.hidden, self.num_experts, self.routing = dim, hidden, num_experts, routing
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        if routing == "gated":
            self.gate = _ExpertGate(dim, num_experts)
        elif routing == "gated-code":
            self.gate = _ChannelGate(dim)
        else:
            self.gate = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for e in range(self.num_experts):  # independent draw per expert [code: separate nn.Linear]
                trunc_normal_(self.w1[e], std=0.02)
                trunc_normal_(self.w2[e], std=0.02)
            self.b1.zero_()
            self.b2.zero_()
        if self.gate is not None:
            for m in self.gate.modules():
                _init_weights(m)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, experts={self.num_experts}, routing={self.routing}"

    def _expert(self, x: Tensor, e: int) -> Tensor:
        h = F.gelu(torch.matmul(x, self.w1[e]) + self.b1[e])
        return torch.matmul(h, self.w2[e]) + self.b2[e]

    def forward(self, x: Tensor, runs: Runs | None = None) -> tuple[Tensor, Tensor | None]:
        if self.routing == "hard":
            if runs is None:
                raise ValueError("MoEFFN: hard routing needs runs [(expert, start, end), ...]")
            parts = [self._expert(x[s:t], e) for e, s, t in runs]
            out = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
            if out.shape[0] != x.shape[0]:
                raise ValueError(f"MoEFFN: runs cover {out.shape[0]} samples, batch has {x.shape[0]}")
            return out, None
        B = x.shape[0]
        E, C, H = self.w1.shape
        # all experts on every token, as two GEMMs over the stacked weights; equals
        # einsum("...c,ech->...eh") and einsum("...eh,ehc->...c") but ~25% faster on CPU
        h = torch.matmul(x, self.w1.transpose(0, 1).reshape(C, E * H)).unflatten(-1, (E, H))
        h = F.gelu(h + self.b1)  # (..., E, H)
        logits = self.gate(x)
        if self.routing == "gated":
            g = logits.softmax(-1)  # (..., E)
            out = torch.matmul((h * g.unsqueeze(-1)).flatten(-2), self.w2.reshape(E * H, C)) + g @ self.b2
            stat = g.detach().reshape(B, -1, E).mean(1)
        else:  # gated-code: channel gate times the plain sum of the experts
            out = torch.matmul(h.flatten(-2), self.w2.reshape(E * H, C)) + self.b2.sum(0)
            logp = logits.log_softmax(-1)
            p = logp.exp()
            out = p * out
            stat = -(p * logp).sum(-1).detach().reshape(B, -1).mean(1)
        return out, stat


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class WindowAttention(nn.Module):
    """W-MSA with relative position bias [code]; shifted-window mask passed in by the block."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        ws = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (rel[..., 0] + ws - 1) * (2 * ws - 1) + (rel[..., 1] + ws - 1)
        self.register_buffer("relative_position_index", index, persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"

    def forward(self, x: Tensor, n_windows: int, mask: Tensor | None) -> Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) additive or None."""
        BW, N, C = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).view(BW // n_windows, n_windows, N, 3, nh, C // nh).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # (B, nW, nh, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, nh).permute(2, 0, 1)  # (nh, N, N)
        if mask is not None:
            bias = bias.unsqueeze(0) + mask.unsqueeze(1)  # (nW, nh, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(-3, -2).reshape(BW, N, C))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop_path: float, ffn: nn.Module):
        super().__init__()
        self.dim, self.resolution = dim, resolution
        if resolution <= window_size:  # [code] no partition, no shift
            window_size, shift_size = resolution, 0
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ffn
        self.register_buffer("attn_mask", self._mask() if shift_size > 0 else None, persistent=False)

    def _mask(self) -> Tensor:
        H = W = self.resolution
        ws, s = self.window_size, self.shift_size
        img = torch.zeros(1, H, W, 1)
        cnt = 0
        for h in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for w in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img[:, h, w, :] = cnt
                cnt += 1
        mw = window_partition(img, ws).squeeze(-1)  # (nW, N)
        m = mw.unsqueeze(1) - mw.unsqueeze(2)
        return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, resolution={self.resolution}, window={self.window_size}, shift={self.shift_size}"

    def forward(self, x: Tensor, runs: Runs | None, stats: list) -> Tensor:
        B, L, C = x.shape
        H = W = self.resolution
        ws, s = self.window_size, self.shift_size
        h = self.norm1(x).view(B, H, W, C)
        if s > 0:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        h = self.attn(window_partition(h, ws), (H // ws) * (W // ws), self.attn_mask)
        h = window_reverse(h, ws, H, W)
        if s > 0:
            h = torch.roll(h, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(h.reshape(B, L, C))
        f, stat = self.mlp(self.norm2(x), runs)
        if stat is not None:
            stats.append(stat)
        return x + self.drop_path(f)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class PatchMerging(nn.Module):
    def __init__(self, resolution: int, dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        B, _, C = x.shape
        r = self.resolution
        x = x.view(B, r, r, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class PatchExpand(nn.Module):
    """Linear(C, 2C, no bias), 2x2 pixel shuffle -> C/2 channels at 2x resolution, LN [code]."""

    def __init__(self, resolution: int, dim: int):
        super().__init__()
        self.resolution = resolution
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        r = self.resolution
        return self.norm(pixel_shuffle_tokens(self.expand(x), r, r, 2))


class FinalPatchExpand_X4(nn.Module):  # noqa: N801 (reference name)
    """Linear(C, 16C, no bias), 4x4 pixel shuffle -> C channels at 4x resolution, LN [code]."""

    def __init__(self, resolution: int, dim: int, scale: int = 4):
        super().__init__()
        self.resolution, self.scale = resolution, scale
        self.expand = nn.Linear(dim, scale * scale * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        r = self.resolution
        return self.norm(pixel_shuffle_tokens(self.expand(x), r, r, self.scale))


class BasicLayer(nn.Module):
    """A stage of Swin blocks followed by an optional down/up-sampling module."""

    def __init__(self, blocks: list[SwinBlock], resample: nn.Module | None, kind: str):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self._resample_name = "downsample" if kind == "down" else "upsample"  # reference names
        setattr(self, self._resample_name, resample)

    def forward(self, x: Tensor, runs: Runs | None, stats: list) -> Tensor:
        for blk in self.blocks:
            x = blk(x, runs, stats)
        resample = getattr(self, self._resample_name)
        return resample(x) if resample is not None else x


# ---------------------------------------------------------------------------- the model

class SwinUNet(nn.Module):
    """Swin-UNet (+ M4oE MoE FFN). ``forward(x (B, in_chans, S, S), domain (B,) long) -> SwinUNetOutput``.

    ``moe_layer_names``: one name per MoE layer, in the order of ``SwinUNetOutput.gates``' L axis.
    """

    def __init__(self, cfg: SwinUNetConfig):
        super().__init__()
        cfg = replace(cfg).validate()
        self.cfg = cfg
        C, L = cfg.embed_dim, cfg.num_layers
        res0 = cfg.patches_resolution
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, C, cfg.patch_norm)
        if cfg.ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, res0 * res0, C))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        n = sum(cfg.depths)
        dpr = [cfg.drop_path * i / (n - 1) if n > 1 else 0.0 for i in range(n)]  # = torch.linspace [code]
        self.moe_layer_names: list[str] = []

        def ffn(dim: int, part: str, name: str) -> nn.Module:
            hidden = int(dim * cfg.mlp_ratio)
            if cfg.routing == "dense" or (cfg.moe_where != "both" and cfg.moe_where != part):
                return Mlp(dim, hidden)
            self.moe_layer_names.append(name)
            return MoEFFN(dim, hidden, cfg.num_experts, cfg.routing)

        def stage(i: int, part: str, prefix: str) -> list[SwinBlock]:
            dim, res = C * 2 ** i, cfg.stage_resolution(i)
            rates = dpr[sum(cfg.depths[:i]):sum(cfg.depths[:i + 1])]
            return [SwinBlock(dim, res, cfg.num_heads[i], cfg.window_size, 0 if j % 2 == 0 else cfg.window_size // 2,
                              cfg.mlp_ratio, cfg.qkv_bias, rates[j], ffn(dim, part, f"{prefix}.blocks.{j}.mlp"))
                    for j in range(cfg.depths[i])]

        self.layers = nn.ModuleList()
        for i in range(L):
            down = PatchMerging(cfg.stage_resolution(i), C * 2 ** i) if i < L - 1 else None
            self.layers.append(BasicLayer(stage(i, "enc", f"layers.{i}"), down, "down"))
        self.layers_up = nn.ModuleList()
        self.concat_back_dim = nn.ModuleList()
        for k in range(L):
            i = L - 1 - k  # encoder stage mirrored by decoder stage k
            dim = C * 2 ** i
            if k == 0:
                self.layers_up.append(PatchExpand(cfg.stage_resolution(i), dim))
                self.concat_back_dim.append(nn.Identity())
            else:
                up = PatchExpand(cfg.stage_resolution(i), dim) if k < L - 1 else None
                self.layers_up.append(BasicLayer(stage(i, "dec", f"layers_up.{k}"), up, "up"))
                self.concat_back_dim.append(nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(C * 2 ** (L - 1))
        self.norm_up = nn.LayerNorm(C)
        # x4 for patch_size 4 [code]; x patch_size in general [ours]
        self.up = FinalPatchExpand_X4(res0, C, cfg.patch_size)
        self.heads = nn.ModuleList(nn.Conv2d(C, n_cls, 1, bias=False) for n_cls in cfg.head_classes)
        self.apply(_init_weights)
        for m in self.modules():  # apply() re-drew the gate Linears; experts keep their own init
            if isinstance(m, MoEFFN):
                m.reset_parameters()

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_names)

    def _runs(self, domain_sorted_counts: list[int]) -> tuple[Runs, Runs]:
        """Domain runs and expert runs (merged) over a domain-sorted batch."""
        experts = self.cfg.experts_of_domains()
        dom_runs: Runs = []
        start = 0
        for d, c in enumerate(domain_sorted_counts):
            if c:
                dom_runs.append((d, start, start + c))
                start += c
        exp_runs: Runs = []
        for d, s, t in dom_runs:
            e = experts[d]
            if exp_runs and exp_runs[-1][0] == e:
                exp_runs[-1] = (e, exp_runs[-1][1], t)
            else:
                exp_runs.append((e, s, t))
        return dom_runs, exp_runs

    def forward(self, x: Tensor, domain: Tensor) -> SwinUNetOutput:
        cfg = self.cfg
        S = cfg.img_size
        if x.dim() != 4 or x.shape[1:] != (cfg.in_chans, S, S):
            raise ValueError(f"SwinUNet: x must be (B, {cfg.in_chans}, {S}, {S}), got {tuple(x.shape)}")
        domain = torch.as_tensor(domain, device=x.device).long().reshape(-1)
        B = x.shape[0]
        if domain.numel() != B:
            raise ValueError(f"SwinUNet: domain must have {B} entries, got {domain.numel()}")
        D = cfg.num_domains
        # the one host sync of a forward: per-domain counts (out-of-range values land in bins 0 and D + 1)
        counts = torch.bincount(domain.clamp(-1, D) + 1, minlength=D + 2).tolist()
        if counts[0] or counts[D + 1]:
            raise ValueError(f"SwinUNet: domain values must be in [0, {D})")
        counts = counts[1:D + 1]
        dom_runs, exp_runs = self._runs(counts)
        # a one-domain batch is already domain-sorted: no permutation there
        order = torch.argsort(domain, stable=True) if len(dom_runs) > 1 else None
        if order is not None:
            x = x.index_select(0, order)

        # encoder + bottleneck
        h = self.patch_embed(x)
        if cfg.ape:
            h = h + self.absolute_pos_embed
        skips, stats = [], []
        for layer in self.layers:
            skips.append(h)
            h = layer(h, exp_runs, stats)
        h = self.norm(h)
        # decoder
        L = cfg.num_layers
        for k, layer_up in enumerate(self.layers_up):
            if k == 0:
                h = layer_up(h)
            else:
                h = self.concat_back_dim[k](torch.cat([h, skips[L - 1 - k]], -1))
                h = layer_up(h, exp_runs, stats)
        h = self.norm_up(h)
        h = self.up(h)  # (B, S*S, C)
        feat = h.transpose(1, 2).reshape(B, cfg.embed_dim, S, S)

        # the stable sort keeps each domain's rows in batch order, so head d on its run is final
        domain_logits = {d: self.heads[d](feat[s:t]) for d, s, t in dom_runs}

        gates = None
        if stats:
            gates = torch.stack(stats, 1)  # (B, L, E) or (B, L), domain-sorted
            if order is not None:
                gates = torch.empty_like(gates).index_copy_(0, order, gates)
        return SwinUNetOutput(domain_logits=domain_logits, gates=gates, domain=domain)


# ---------------------------------------------------------------------------- utilities

def count_parameters(cfg: SwinUNetConfig, active: bool = False) -> int:
    """Parameter count, built on the meta device (cheap at paper size).

    ``active=True``: the parameters one sample of one domain uses: other domains' heads are excluded,
    and for ``routing="hard"`` so are the unused experts (gated modes run all experts) [ours]."""
    with torch.device("meta"):
        model = SwinUNet(cfg)
    total = sum(p.numel() for p in model.parameters())
    if not active:
        return total
    heads = [sum(p.numel() for p in h.parameters()) for h in model.heads]
    total -= sum(heads) - max(heads)
    if cfg.routing == "hard":
        for m in model.modules():
            if isinstance(m, MoEFFN):
                per_expert = sum(p[0].numel() for p in (m.w1, m.b1, m.w2, m.b2))
                total -= (m.num_experts - 1) * per_expert
    return total


def gate_keys(model: nn.Module) -> list[str]:
    """state_dict keys that belong to a MoE gate (``...mlp.gate.*``)."""
    keys = []
    for name, m in model.named_modules():
        if isinstance(m, MoEFFN) and m.gate is not None:
            keys.extend(f"{name}.gate.{k}" for k in m.gate.state_dict())
    return sorted(keys)


def load_stage1(model: nn.Module, state_dict: dict[str, Tensor]) -> list[str]:
    """Load a stage-1 (``routing="hard"``) state_dict into a gated model; return the keys not restored.

    Only gate keys may be missing; any other missing key, any unexpected key or any shape mismatch
    raises ValueError (nothing is loaded then)."""
    own = model.state_dict()
    gates = set(gate_keys(model))
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own)
    mismatched = sorted(f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
                        for k, v in own.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape))
    bad_missing = [k for k in missing if k not in gates]
    if bad_missing or unexpected or mismatched:
        parts = []
        if bad_missing:
            parts.append(f"missing non-gate keys {bad_missing[:5]}{'...' if len(bad_missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:5]}{'...' if len(mismatched) > 5 else ''}")
        raise ValueError("load_stage1: " + "; ".join(parts))
    result = model.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == missing
    return missing


__all__ = [
    "MOE_WHERE", "REFERENCE_PARAM_COUNTS", "ROUTINGS", "MoEFFN", "Mlp", "SwinUNet", "SwinUNetConfig",
    "SwinUNetOutput", "config_from_dict", "count_parameters", "gate_keys", "load_stage1", "paper_config",
    "small_config", "tiny_config", "preset_config",
]
