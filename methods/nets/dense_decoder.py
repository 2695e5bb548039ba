"""A light decoder from transformer tokens on a patch grid to dense (B, C, H, W) logits.

For token-based multimodal models that need a segmentation output (M4oE-MT's GAMMA optic-cup
task; docs/m4oe-mt.md): the tokens of one view, (B, h*w, d) in row-major patch order, are
reshaped to a (B, d, h, w) map and decoded by progressive upsampling: each stage is
3x3 conv -> GroupNorm -> GELU -> bilinear x2, halving the width (not below ``min_channels``),
until the map is at least the output size; a final bilinear resize to exactly (H, W) and a 1x1
conv give the class logits. Neither the M4oE-MT paper nor its code describe a decoder: this form
is ours (a SETR-PUP-like "progressive upsampling" head, kept light).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _groups(ch: int) -> int:
    return next(g for g in (8, 4, 2, 1) if ch % g == 0)


class PatchGridDecoder(nn.Module):
    """(B, h*w, dim) tokens -> (B, classes, H, W) logits."""

    def __init__(self, dim: int, grid: tuple[int, int], out_size: tuple[int, int], classes: int,
                 min_channels: int = 16):
        super().__init__()
        self.grid, self.out_size = tuple(grid), tuple(out_size)
        ups = max(0, math.ceil(math.log2(max(o / g for o, g in zip(self.out_size, self.grid)))))
        stages, ch = [], dim
        for _ in range(ups):
            nxt = max(min_channels, ch // 2)
            stages.append(nn.Sequential(nn.Conv2d(ch, nxt, 3, padding=1), nn.GroupNorm(_groups(nxt), nxt), nn.GELU()))
            ch = nxt
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(ch, classes, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        h, w = self.grid
        if n != h * w:
            raise ValueError(f"PatchGridDecoder: {n} tokens do not fill the {h}x{w} grid")
        x = tokens.transpose(1, 2).reshape(b, d, h, w)
        for stage in self.stages:
            x = F.interpolate(stage(x), scale_factor=2, mode="bilinear", align_corners=False)
        if tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return self.head(x)
