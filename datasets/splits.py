"""Deterministic, patient-safe train/val/test splits keyed by the split seed.

The split seed is separate from the training seed (docs/protocol.md "Splits"): every method and every
training seed sees the same split. Where patient (group) ids exist, whole groups are assigned to
one split so no patient leaks across splits; otherwise the split is stratified on the primary
label when there is one. Fractions default to 60/20/20.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_indices(n: int, split_seed: int, stratify: np.ndarray | None = None,
                  groups: np.ndarray | None = None,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, np.ndarray]:
    """Return sorted index arrays for ``train``/``val``/``test``."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(split_seed)
    idx = np.arange(n)
    if groups is not None:
        uniq = np.unique(groups)
        order = uniq[rng.permutation(len(uniq))]
        sizes = np.array([np.sum(groups == g) for g in order])
        cum = np.cumsum(sizes) / n
        # first group index past each cumulative fraction (nearest cut), keeping every split non-empty
        cut1 = int(np.clip(np.argmin(np.abs(cum - fractions[0])) + 1, 1, max(1, len(order) - 2)))
        cut2 = int(np.clip(np.argmin(np.abs(cum - fractions[0] - fractions[1])) + 1, cut1 + 1, max(cut1 + 1, len(order) - 1)))
        parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
        return {s: np.sort(idx[np.isin(groups, g)]) for s, g in parts.items()}
    strat = stratify if stratify is not None and _stratifiable(stratify) else None
    rest, test = train_test_split(idx, test_size=fractions[2], random_state=split_seed, stratify=strat)
    strat_rest = strat[rest] if strat is not None else None
    train, val = train_test_split(rest, test_size=fractions[1] / (fractions[0] + fractions[1]),
                                  random_state=split_seed + 1, stratify=strat_rest)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _stratifiable(labels: np.ndarray) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    return labels.ndim == 1 and counts.min() >= 5
