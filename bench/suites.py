"""Named sweeps. A suite is datasets x methods x seeds at a preset and training budget.

``single`` in a suite's method list expands to ``single:<modality>`` for every modality of each
dataset, so the best single-modality model is always in the table.

``quick``: every method on every embedded dataset, 3 seeds, ``small`` preset and a short
budget (20 epochs, patience 5): a few minutes on a 2-core CPU, and a leaderboard that still
separates methods.

``seg-quick``: the segmentation track on the embedded ``synthetic-organs`` (3 domains): M4oE and
its baselines (per-dataset and joint Swin-UNet, 2-D U-Net, the 3-D U-Net proxy), 3 seeds, the
``tiny`` preset with its segmentation budget (24 epochs); about 30 minutes on a 2-core CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EMBEDDED_DATASETS = ("wdbc", "digits-halves", "diabetes-views", "synthetic-pid:unique-m1", "synthetic-pid:redundant",
                     "synthetic-pid:synergy", "synthetic-pid:mixed", "synthetic-mvmt")
BASELINES = ("single", "early", "late", "intermediate", "attention", "moe", "soft-moe")
QUICK_METHODS = (*BASELINES, "i2moe")
SEGMENTATION_METHODS = ("m4oe", "swinunet", "swinunet-joint", "unet", "unet3d")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    preset: str = "small"
    train: dict[str, Any] = field(default_factory=dict)


SUITES: dict[str, Suite] = {
    "quick": Suite("quick", "every method on every embedded dataset, 3 seeds, small preset (minutes on a CPU)",
                   EMBEDDED_DATASETS, QUICK_METHODS, (0, 1, 2), "small", {"epochs": 20, "patience": 5}),
    "full-offline": Suite("full-offline", "every method on every embedded dataset, 5 seeds, small preset, full budget",
                          EMBEDDED_DATASETS, QUICK_METHODS, (0, 1, 2, 3, 4), "small", {"epochs": 100, "patience": 15}),
    "seg-quick": Suite("seg-quick", "M4oE and the segmentation baselines on synthetic-organs, 3 seeds, tiny preset",
                       ("synthetic-organs",), SEGMENTATION_METHODS, (0, 1, 2), "tiny", {}),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; choose one of: {', '.join(SUITES)}")
    return SUITES[name]
