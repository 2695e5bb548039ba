"""Locating paper benchmarks that cannot ship (credentialed or large) under the data root.

Each entry states the official layout and how to obtain the data. Nothing is downloaded: when
the files are absent, :func:`locate` raises :class:`DatasetNotFound` naming the folder that was
searched and the files expected there. The data root is ``--data-root`` or ``BENCH_DATA_ROOT``
(default ``./data``).

The readers for these layouts (NIfTI / nnU-Net v2) belong to the segmentation track; until that
lands, a dataset that *is* found stops with a one-line message saying the reader is missing,
rather than pretending to load it.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .registry import register_dataset
from .spec import DatasetError, DatasetNotFound


@dataclass(frozen=True)
class ExternalLayout:
    name: str
    folder: str                   # sub-folder of the data root
    patterns: tuple[tuple[str, ...], ...]  # alternatives; each is a tuple of globs that must all match
    layout: str                   # human description of the expected files
    obtain: str                   # where to get it


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("BENCH_DATA_ROOT") or "data").expanduser()


def locate(layout: ExternalLayout, root: str | os.PathLike | None = None) -> Path:
    base = data_root(root) / layout.folder
    for alternative in layout.patterns:
        if all(glob.glob(str(base / p)) for p in alternative):
            return base
    raise DatasetNotFound(
        f"{layout.name}: data not found at {base} (data root {data_root(root)}, set with --data-root or BENCH_DATA_ROOT); "
        f"expected {layout.layout}; obtain it from {layout.obtain}")


FLARE22 = ExternalLayout(
    "flare22", "FLARE22",
    (("imagesTr/FLARE22_Tr_*_0000.nii.gz", "labelsTr/FLARE22_Tr_*.nii.gz"),
     ("images/FLARE22_Tr_*_0000.nii.gz", "labels/FLARE22_Tr_*.nii.gz")),
    "imagesTr/FLARE22_Tr_XXXX_0000.nii.gz + labelsTr/FLARE22_Tr_XXXX.nii.gz (nnU-Net raw) or the official "
    "images/ + labels/ folders, 50 labelled abdominal CT, 13 organs",
    "the MICCAI FLARE 2022 challenge site (registration required)")
AMOS22 = ExternalLayout(
    "amos22", "amos22",
    (("dataset.json", "imagesTr/amos_*.nii.gz", "labelsTr/amos_*.nii.gz"),),
    "dataset.json + imagesTr/amos_XXXX.nii.gz + labelsTr/amos_XXXX.nii.gz (+ imagesVa/labelsVa), CT ids <= 500, MRI > 500",
    "the AMOS 2022 challenge release (Zenodo record of the AMOS22 organisers)")
ATLAS23 = ExternalLayout(
    "atlas23", "atlas-train-dataset-1.0.1",
    (("train/imagesTr/im*.nii.gz", "train/labelsTr/lb*.nii.gz"),),
    "train/imagesTr/im{N}.nii.gz + train/labelsTr/lb{N}.nii.gz, N = 0..59, CE-T1 liver MRI",
    "the ATLAS 2023 challenge (MICCAI 2023, registration required)")


def _register(layout: ExternalLayout, description: str, modalities: str, tasks: str) -> None:
    @register_dataset(layout.name, description, embedded=False, modalities=modalities, tasks=tasks,
                      check=lambda root: locate(layout, root))
    def build(variant: str | None, split_seed: int, data_root: str | None = None):
        where = locate(layout, data_root)
        raise DatasetError(
            f"{layout.name}: found data at {where}, but the NIfTI segmentation reader is not part of this version yet "
            "(it arrives with the segmentation track)")


_register(FLARE22, "FLARE22 abdominal CT, 13 organs (M4oE, MICCAI 2024)", "CT volume", "segmentation (14 classes)")
_register(AMOS22, "AMOS22 abdominal CT + MRI, 15 organs (M4oE, MICCAI 2024)", "CT or MRI volume", "segmentation (16 classes)")
_register(ATLAS23, "ATLAS23 liver CE-T1 MRI, liver + tumour (M4oE, MICCAI 2024)", "MRI volume", "segmentation (3 classes)")
