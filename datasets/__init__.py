"""bench's dataset adapters: the :class:`DatasetSpec` contract, a registry and the datasets.

This package is named ``datasets`` by the product layout, which shadows Hugging Face's
``datasets`` package if both are installed in one environment; ``BENCH_DATASETS_PACKAGE`` lets
``bench`` detect that case and fail with a clear message (see ``bench/_imports.py``).

Layout: the contract and the shared machinery at the top (``spec``, ``data``, ``registry``,
``prepare``, ``splits``, ``problems``, ``inspect``); the datasets by where their bytes come from:
``embedded/`` (ship with installed packages or are generated), ``adapters/`` (paper benchmarks
read from the data root), ``folder/`` (a user's own table and files), ``segmentation/`` (the 3-D
segmentation track: nnU-Net folders, official layouts, preprocessing).
"""
from __future__ import annotations

import importlib
from typing import Any

from .registry import UnknownDataset, canonical_name, dataset_entries, load_dataset, parse_name, register_dataset
from .spec import (
                   MODALITY_KINDS,
                   TASK_KINDS,
                   DatasetError,
                   DatasetFormatError,
                   DatasetNotFound,
                   DatasetSpec,
                   ModalitySpec,
                   TaskSpec,
)

BENCH_DATASETS_PACKAGE = True

__all__ = [
    "MultimodalData", "SPLITS", "canonical_name", "dataset_entries", "load_dataset", "parse_name",
    "register_dataset", "UnknownDataset", "DatasetError", "DatasetFormatError", "DatasetNotFound", "DatasetSpec",
    "ModalitySpec", "TaskSpec", "MODALITY_KINDS", "TASK_KINDS",
]

#: names that need torch (``data``), imported on first use so that naming and listing import no torch
_LAZY = {"MultimodalData": ".data", "SPLITS": ".data"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
