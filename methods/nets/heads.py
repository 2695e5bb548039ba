"""Prediction heads: one linear head per task on a shared representation.

Regression heads predict in standardised units and rescale with the task's training-split
mean/std, so losses are scale-free while predictions and metrics are in original units.
"""
from __future__ import annotations

import torch
from torch import nn

from datasets.spec import TaskSpec


class TaskHeads(nn.Module):
    """Linear heads for per-sample tasks. A segmentation (dense) task needs a decoder, not a
    linear head: pass ``Method.tasks`` (the supported tasks), never a declined dense task."""

    def __init__(self, tasks: tuple[TaskSpec, ...], in_dim: int):
        super().__init__()
        dense = [t.name for t in tasks if t.kind == "segmentation"]
        if dense:
            raise ValueError(f"TaskHeads are per-sample linear heads; segmentation tasks {dense} need a dense "
                             "decoder (declare them unsupported with Method.supports_task, or build a decoder)")
        self.tasks = tasks
        self.heads = nn.ModuleDict({t.name: nn.Linear(in_dim, t.num_classes) for t in tasks})

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            z = self.heads[t.name](h)
            out[t.name] = z.squeeze(-1) * t.target_std + t.target_mean if t.kind == "regression" else z
        return out
