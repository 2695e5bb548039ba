"""The paper benchmarks that cannot ship (credentialed or large): FLARE22, AMOS22, ATLAS23.

Each reads the official release layout (or its nnU-Net v2 conversion) from the data root
(``--data-root`` or ``BENCH_DATA_ROOT``, default ``./data``); ``datasets.segmentation.sources`` knows the
layouts and label maps (docs/segmentation.md "Dataset adapters"). Nothing is downloaded: when the files
are absent, the dataset's ``check`` (and its builder) raises :class:`DatasetNotFound` naming the
folder searched, the files expected there, and where to obtain the data. Found data goes
through the common segmentation path (``datasets.segmentation.build.build_segmentation``): split per
patient, preprocess (cached), serve slices.
"""
from __future__ import annotations

from pathlib import Path

from ..registry import register_dataset
from .sources import SegSource, amos22_source, atlas23_source, flare22_source, source_files  # noqa: F401


def _register(name: str, description: str, modalities: str, tasks: str, sources, variants: tuple[str, ...] = (),
              default_variant: str | None = None) -> None:
    """``sources(data_root, variant) -> SegSource`` raises DatasetNotFound when the data is absent."""

    def check(root: str | None, variant: str | None = default_variant) -> Path:
        return sources(root, variant).root

    @register_dataset(name, description, variants=variants, default_variant=default_variant, embedded=False,
                      modalities=modalities, tasks=tasks, check=check, segmentation=True,
                      input_files=lambda root, variant=default_variant: source_files([sources(root, variant)]),
                      modality_names=lambda root, variant=default_variant: list(sources(root, variant).channels))
    def build(variant: str | None, split_seed: int, data_root: str | None = None, cache_dir: str | None = None):
        from .build import build_segmentation

        source: SegSource = sources(data_root, variant)
        full = f"{name}:{variant}" if variant else name
        return build_segmentation(full, [source], split_seed, cache_dir, f"{description}; read from {source.root}")


_register("flare22", "FLARE22 abdominal CT, 13 organs (M4oE, MICCAI 2024)", "CT volume", "segmentation (14 classes)",
          lambda root, variant: flare22_source(root))
_register("amos22", "AMOS22 abdominal CT (ids <= 500) or MRI (> 500), 15 organs (M4oE, MICCAI 2024)",
          "CT or MRI volume", "segmentation (16 classes)", lambda root, variant: amos22_source(root, variant or "ct"),
          variants=("ct", "mr"), default_variant="ct")
_register("atlas23", "ATLAS23 liver CE-T1 MRI, liver + tumour (M4oE, MICCAI 2024)", "MRI volume",
          "segmentation (3 classes)", lambda root, variant: atlas23_source(root))
