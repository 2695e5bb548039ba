"""Dataset registry: name -> builder, with ``name:variant`` addressing.

A dataset is one module that decorates a builder with :func:`register_dataset`. Builders take
``(variant, split_seed, **options)`` and return validated :class:`MultimodalData`. A name such
as ``synthetic-pid:synergy`` selects a variant; a bare name uses the builder's default variant.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data import MultimodalData
from .spec import DatasetError


class UnknownDataset(DatasetError):
    pass


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    builder: Callable[..., MultimodalData]
    description: str
    variants: tuple[str, ...] = ()
    default_variant: str | None = None
    embedded: bool = True  # runs with no data root (ships with the package or is generated)
    modalities: str = ""   # one-line summary for the README table
    tasks: str = ""
    check: Callable[..., object] | None = None  # check(data_root, variant) raises DatasetNotFound when data is absent
    segmentation: bool = False  # segmentation tasks: the builder takes cache_dir; the seg protocol defaults apply
    open_variant: str = ""      # the variant is free text (e.g. a path for nnunet:PATH); describes it
    #: input_files(data_root, variant) -> (files, root): the files the builder reads, for the data
    #: fingerprint in the job key (None: generated from code, which the code fingerprint covers)
    input_files: Callable[..., tuple[list[Path], Path | None]] | None = None
    #: modality_names(data_root, variant) -> names, without building the dataset (``single`` expansion)
    modality_names: Callable[..., list[str]] | None = None


_REGISTRY: dict[str, DatasetEntry] = {}


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where data that cannot ship is read from: ``--data-root``, else ``$BENCH_DATA_ROOT``, else ``./data``."""
    return Path(explicit or os.environ.get("BENCH_DATA_ROOT") or "data").expanduser()


def register_dataset(name: str, description: str, variants: tuple[str, ...] = (), default_variant: str | None = None,
                     embedded: bool = True, modalities: str = "", tasks: str = "",
                     check: Callable[[str | None], object] | None = None, segmentation: bool = False,
                     open_variant: str = "", input_files: Callable[..., tuple[list[Path], Path | None]] | None = None,
                     modality_names: Callable[..., list[str]] | None = None):
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        _REGISTRY[name] = DatasetEntry(name, fn, description, tuple(variants), default_variant, embedded, modalities,
                                       tasks, check, segmentation, open_variant, input_files, modality_names)
        return fn
    return deco


def dataset_entries() -> list[DatasetEntry]:
    _load_builtin()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def parse_name(full: str) -> tuple[DatasetEntry, str | None]:
    """Split ``name[:variant]`` and check both; raise a one-line error listing valid choices."""
    _load_builtin()
    base, _, variant = full.partition(":")
    if base not in _REGISTRY:
        raise UnknownDataset(f"unknown dataset {full!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    entry = _REGISTRY[base]
    if variant and entry.variants and variant not in entry.variants:
        raise UnknownDataset(f"dataset {base!r} has no variant {variant!r}; choose one of: {', '.join(entry.variants)}")
    if entry.open_variant and not variant:
        raise UnknownDataset(f"dataset {base!r} needs {entry.open_variant} after a colon ({base}:PATH)")
    if variant and not entry.variants and not entry.open_variant:
        raise UnknownDataset(f"dataset {base!r} has no variants (got {full!r})")
    return entry, (variant or entry.default_variant)


def canonical_name(full: str) -> str:
    entry, variant = parse_name(full)
    return f"{entry.name}:{variant}" if variant else entry.name


def load_dataset(full: str, split_seed: int = 0, **options) -> MultimodalData:
    entry, variant = parse_name(full)
    data = entry.builder(variant=variant, split_seed=split_seed, **options)
    return data.validate()


def _load_builtin() -> None:
    from . import builtin  # noqa: F401  (imports register the built-in datasets)
