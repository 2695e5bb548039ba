"""The shared per-modality encoder factory.

Every fusion and MoE method builds its encoders here, from the modality kind and the same
width, so a leaderboard difference is a difference in fusion, not in encoder capacity.
Encoders return **tokens** (B, P, hidden): P = 1 for vectors, P = spatial positions for images.
``pool`` (mean over tokens) gives the (B, hidden) embedding.

- tabular / embedding: MLP (Linear-GELU-Dropout blocks), one token.
- image2d: ``cnn`` (default): a small conv net (3x3 conv, GroupNorm, GELU; stride-2 stages
  until the grid is at most 2x2), each grid cell a token. GroupNorm rather than BatchNorm
  because it is batch-size independent (missing-modality zero rows and small batches do not
  shift its statistics). ``vit``: timm's ``VisionTransformer`` at the same width (patch 2 for
  images up to 16 px, else 4), no class token, every patch a token, never pretrained.
- sequence: (P, F) token features (e.g. precomputed per-frame or per-word features): the MLP
  applied per token, P tokens.
- volume3d: the same conv net in 3-D.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from datasets.spec import ModalitySpec


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        blocks: list[nn.Module] = []
        d = in_dim
        for _ in range(max(1, layers)):
            blocks += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).unsqueeze(1)


class TokenMLPEncoder(MLPEncoder):
    """The MLP applied to every token of a (B, P, F) sequence: (B, P, hidden)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


#: stride-2 stages continue until the feature grid is at most this many cells per side; each cell
#: is a token. Small grids keep token counts (and attention / I2MoE cost) low on small images.
MAX_GRID = 2


class ConvEncoder(nn.Module):
    def __init__(self, in_ch: int, spatial: tuple[int, ...], hidden: int, dropout: float = 0.0):
        super().__init__()
        conv = nn.Conv2d if len(spatial) == 2 else nn.Conv3d
        width = max(8, hidden // 2)
        layers: list[nn.Module] = [conv(in_ch, width, 3, padding=1), nn.GroupNorm(_groups(width), width), nn.GELU()]
        size, ch = list(spatial), width
        while max(size) > MAX_GRID:
            stride = tuple(2 if s > MAX_GRID else 1 for s in size)
            layers += [conv(ch, hidden, 3, stride=stride, padding=1), nn.GroupNorm(_groups(hidden), hidden), nn.GELU()]
            size = [math.ceil(s / st) for s, st in zip(size, stride)]
            ch = hidden
        layers += [conv(ch, hidden, 3, padding=1), nn.GroupNorm(_groups(hidden), hidden), nn.GELU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers)
        self.num_tokens = int(math.prod(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    def __init__(self, in_ch: int, spatial: tuple[int, int], hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        patch = 2 if max(spatial) <= 16 else 4
        if any(s % patch for s in spatial):
            raise ValueError(f"ViT encoder: image size {spatial} is not divisible by patch {patch}; use image_encoder=cnn")
        self.net = VisionTransformer(img_size=spatial, patch_size=patch, in_chans=in_ch, num_classes=0,
                                     embed_dim=hidden, depth=max(1, layers), num_heads=divisible_heads(hidden, heads),
                                     class_token=False, global_pool="", drop_rate=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def build_encoder(modality: ModalitySpec, hparams: dict) -> nn.Module:
    hidden, layers, dropout = int(hparams["hidden"]), int(hparams.get("layers", 1)), float(hparams.get("dropout", 0.0))
    if modality.is_vector:
        return MLPEncoder(modality.shape[0], hidden, layers, dropout)
    if modality.kind == "image2d":
        kind = hparams.get("image_encoder", "cnn")
        if kind == "vit":
            return ViTEncoder(modality.shape[0], tuple(modality.shape[1:]), hidden, layers,
                              int(hparams.get("heads", 4)), dropout)
        if kind != "cnn":
            raise ValueError(f"image_encoder must be 'cnn' or 'vit', got {kind!r}")
        return ConvEncoder(modality.shape[0], tuple(modality.shape[1:]), hidden, dropout)
    if modality.kind == "sequence":
        return TokenMLPEncoder(modality.shape[-1], hidden, layers, dropout)
    if modality.kind == "volume3d":
        return ConvEncoder(modality.shape[0], tuple(modality.shape[1:]), hidden, dropout)
    raise ValueError(f"no encoder for modality {modality.name!r} of kind {modality.kind!r}")


def build_encoders(modalities, hparams: dict) -> nn.ModuleDict:
    return nn.ModuleDict({m.name: build_encoder(m, hparams) for m in modalities})


def encode(encoders, names: list[str], batch: dict) -> dict[str, torch.Tensor]:
    """Each modality's tokens from its encoder (fusion methods and I2MoE)."""
    return {m: encoders[m](batch["inputs"][m]) for m in names}


def pool(tokens: torch.Tensor) -> torch.Tensor:
    return tokens.mean(dim=1)


def _groups(ch: int) -> int:
    return next(g for g in (8, 4, 2, 1) if ch % g == 0)


def divisible_heads(hidden: int, heads: int) -> int:
    """The largest head count <= ``heads`` that divides ``hidden``."""
    return next(h for h in range(min(heads, hidden), 0, -1) if hidden % h == 0)
