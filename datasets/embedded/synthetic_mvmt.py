"""``synthetic-mvmt``: multi-view images, multi-task labels, planted view-task dependence.

Generator (deterministic in n, size, data seed): two latent classes a, b in {0, 1, 2}. Each of
three 1xSxS views shows fixed random smooth class templates plus Gaussian noise whose level is
drawn **per sample and per view** (stored in ``extras["noise_<view>"]``):

- ``v1`` shows a's template; ``v2`` shows b's; ``v3`` shows half-amplitude templates of both.

Tasks and the views they truly depend on (``spec.params["task_views"]``):
- ``task_a`` = a (3 classes): views v1, v3
- ``task_b`` = b (3 classes): views v2, v3
- ``same`` = [a == b] (binary): needs a and b together (v1+v2, or v3)

Realism knobs: two samples per patient (splits are patient-level), 15% of ``same`` labels
missing (per-task label masks), and view ``v3`` missing for 5% of samples (modality mask).

Variant ``seg`` (``synthetic-mvmt:seg``) adds a per-sample segmentation (dense) task ``mask``
next to the three tasks: every sample's ``v1`` also shows a bright disc (class 1, ``disc``) of
random centre and radius and, in half of the samples, a dark square (class 2, ``square``); the
target is the (N, S, S) class map of those shapes (0 = background; the square is drawn over the
disc), planted in ``v1`` only (``task_views["mask"] = ["v1"]``), with 10% of masks unlabelled.
Its shapes come from a generator of their own, so the three tasks' labels, the noise, the
masks and ``v2``/``v3`` are exactly the plain dataset's; only ``v1`` gains the shapes. The
plain dataset (``synthetic-mvmt``, no variant) is unchanged, and keeps its name.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ..prepare import build_data
from ..registry import register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec

TASK_VIEWS = {"task_a": ["v1", "v3"], "task_b": ["v2", "v3"], "same": ["v1", "v2", "v3"]}
VARIANTS = ("seg",)   # the plain name is the original dataset
#: the ``seg`` variant's mask classes and the amplitude of its shapes in ``v1`` (disc +, square -)
MASK_LABELS = ("background", "disc", "square")
SHAPE_AMPLITUDE = 6.0


def _templates(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    t = np.stack([gaussian_filter(rng.standard_normal((size, size)), sigma=size / 8) for _ in range(k)])
    t -= t.mean(axis=(1, 2), keepdims=True)
    return t / t.std(axis=(1, 2), keepdims=True)


def generate(n: int = 1200, size: int = 16, seed: int = 0, noise_range: tuple[float, float] = (2.0, 6.0)):
    rng = np.random.default_rng([seed, size])
    a, b = rng.integers(0, 3, n), rng.integers(0, 3, n)
    tpl = {k: _templates(rng, 3, size) for k in ("v1", "v2", "v3a", "v3b")}
    clean = {"v1": tpl["v1"][a], "v2": tpl["v2"][b], "v3": 0.5 * (tpl["v3a"][a] + tpl["v3b"][b])}
    noise = {v: rng.uniform(*noise_range, n).astype(np.float32) for v in clean}
    views = {v: (clean[v] + noise[v][:, None, None] * rng.standard_normal((n, size, size)))[:, None].astype(np.float32)
             for v in clean}
    targets = {"task_a": a, "task_b": b, "same": (a == b).astype(np.int64)}
    label_mask = {"same": rng.random(n) >= 0.15}
    view_mask = {"v3": rng.random(n) >= 0.05}
    groups = np.arange(n) // 2
    return views, targets, label_mask, view_mask, groups, noise


def plant_shapes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``seg`` variant's shapes: (class map (n, S, S) int64, signed image (n, S, S) to add to
    ``v1``, label mask (n,)), from a generator of their own (the default data is untouched)."""
    rng = np.random.default_rng([seed, size, 1])
    yy, xx = np.mgrid[0:size, 0:size]
    radius = rng.uniform(size / 8, size / 4, n)
    cy, cx = rng.uniform(radius, size - radius), rng.uniform(radius, size - radius)
    disc = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 <= radius[:, None, None] ** 2
    side = rng.integers(max(2, size // 8), max(3, size // 4) + 1, n)
    top, left = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
    square = ((yy[None] >= top[:, None, None]) & (yy[None] < (top + side)[:, None, None])
              & (xx[None] >= left[:, None, None]) & (xx[None] < (left + side)[:, None, None]))
    square &= (rng.random(n) < 0.5)[:, None, None]
    classes = np.where(square, 2, np.where(disc, 1, 0)).astype(np.int64)
    image = SHAPE_AMPLITUDE * ((classes == 1).astype(np.float32) - (classes == 2).astype(np.float32))
    labelled = rng.random(n) >= 0.10
    return classes, image, labelled


@register_dataset("synthetic-mvmt", "generated multi-view images, 3 tasks with planted view dependence",
                  variants=VARIANTS, default_variant=None,
                  modalities="3 image2d (v1..v3, 1x16x16), per-sample view noise", tasks="multiclass (3) x2 + binary")
def build(variant: str | None, split_seed: int, n: int = 1200, size: int = 16, seed: int = 0) -> "MultimodalData":  # noqa: F821
    views, targets, label_mask, view_mask, groups, noise = generate(n, size, seed)
    params = {"n": n, "size": size, "seed": seed, "task_views": TASK_VIEWS}
    tasks = (TaskSpec("task_a", "multiclass", 3), TaskSpec("task_b", "multiclass", 3),
             TaskSpec("same", "binary", 2, ("different", "same")))
    if variant == "seg":
        classes, image, labelled = plant_shapes(n, size, seed)
        views["v1"] = views["v1"] + image[:, None]
        targets["mask"], label_mask["mask"] = classes, labelled
        tasks += (TaskSpec("mask", "segmentation", len(MASK_LABELS), MASK_LABELS),)
        params = {**params, "variant": "seg", "task_views": {**TASK_VIEWS, "mask": ["v1"]}}
    spec = DatasetSpec(
        name="synthetic-mvmt" + (f":{variant}" if variant else ""),
        modalities=tuple(ModalitySpec(v, "image2d", (1, size, size)) for v in views),
        tasks=tasks,
        split_rule="patient-level 60/20/20 (2 samples per patient), keyed by split seed",
        source=f"generated by datasets/embedded/synthetic_mvmt.py with {params}",
        params=params,
    )
    return build_data(spec, views, targets, split_seed, ids=[f"mvmt-{i:05d}" for i in range(n)],
                      mask=view_mask, target_mask=label_mask, groups=groups,
                      extras={f"noise_{v}": s for v, s in noise.items()})
