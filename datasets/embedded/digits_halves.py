"""``digits-halves``: scikit-learn's bundled 8x8 handwritten digits split into two views.

View ``left`` holds pixel columns 0-3 and view ``right`` columns 4-7 (each 1x8x4). Many
digits are ambiguous from one half (3/8/9, 1/7, 5/6), so a fused model must beat either half.
Pixel values (0..16) are scaled to [0, 1] with the fixed dataset maximum, not data statistics.
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from ..prepare import build_data
from ..registry import register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .packaged import sklearn_files


@register_dataset("digits-halves", "8x8 handwritten digits, left and right half as two image views, 10 classes",
                  modalities="2 image2d (left / right half, 1x8x4)", tasks="multiclass (10)",
                  input_files=sklearn_files("digits.csv.gz"))
def build(variant: str | None, split_seed: int) -> "MultimodalData":  # noqa: F821
    raw = load_digits()
    img = (raw.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = raw.target.astype(np.int64)
    spec = DatasetSpec(
        name="digits-halves",
        modalities=(ModalitySpec("left", "image2d", (1, 8, 4)), ModalitySpec("right", "image2d", (1, 8, 4))),
        tasks=(TaskSpec("digit", "multiclass", 10, tuple(str(d) for d in range(10))),),
        split_rule="stratified 60/20/20 on digit, keyed by split seed",
        source="scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits test set; CC BY 4.0)",
    )
    return build_data(spec, {"left": img[..., :4], "right": img[..., 4:]}, {"digit": y}, split_seed,
                      ids=[f"digit-{i:04d}" for i in range(len(y))], stratify=y)
