"""Dataset registry: name -> builder, with ``name:variant`` addressing.

A dataset is one module that decorates a builder with :func:`register_dataset`, plus its line
in the static table ``datasets/table.py`` (written by ``python -m bench list --update-tables``,
checked against the registrations by ``tests/test_registry_tables.py``): naming, listing and
planning read the table, and a builder's module is imported when the dataset is built. Builders take
``(variant, split_seed, **options)`` and return validated :class:`MultimodalData`. A name such
as ``synthetic-pid:synergy`` selects a variant; a bare name uses the builder's default variant.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .spec import DatasetError

if TYPE_CHECKING:
    from .data import MultimodalData


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
    takes_cache_dir: bool = False  # the builder accepts cache_dir (image and segmentation preprocessing caches)


_REGISTRY: dict[str, DatasetEntry] = {}


class _LazyField:
    """A callable of a table entry (builder, check, input_files, modality_names), taken from the
    registration its module makes when first called, so that naming, listing and planning import
    no dataset module. ``__module__`` is that module (a job's code fingerprint lists it)."""

    def __init__(self, module: str, name: str, field_name: str):
        self.name, self.field_name = name, field_name
        self.__module__ = module

    def resolve(self) -> Callable[..., Any]:
        if self.name not in _REGISTRY:
            importlib.import_module(self.__module__)
        if self.name not in _REGISTRY:
            raise UnknownDataset(f"datasets/table.py says {self.__module__} registers dataset {self.name!r}, but it "
                                 "does not; run `python -m bench list --update-tables`")
        return getattr(_REGISTRY[self.name], self.field_name)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.field_name} of {self.name!r} in {self.__module__}>"


#: DatasetEntry fields that hold callables (the static table says only whether each is set)
CALLABLE_FIELDS = ("builder", "check", "input_files", "modality_names")


@functools.cache
def _table() -> dict[str, DatasetEntry]:
    from .table import DATASETS

    out = {}
    for name, row in DATASETS.items():
        row = dict(row)
        module = row.pop("module")
        calls = {f: _LazyField(module, name, f) if row.pop(f) else None for f in CALLABLE_FIELDS}
        out[name] = DatasetEntry(name=name, **calls, **{k: tuple(v) if k == "variants" else v for k, v in row.items()})
    return out


def _entries() -> dict[str, DatasetEntry]:
    """The static table, plus datasets registered at run time by code outside the package."""
    return {**{k: v for k, v in _REGISTRY.items() if k not in _table()}, **_table()}


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
        import inspect

        _REGISTRY[name] = DatasetEntry(name, fn, description, tuple(variants), default_variant, embedded, modalities,
                                       tasks, check, segmentation, open_variant, input_files, modality_names,
                                       "cache_dir" in inspect.signature(fn).parameters)
        return fn
    return deco


def dataset_entries() -> list[DatasetEntry]:
    """Every dataset's entry, from the static table (imports no dataset module)."""
    entries = _entries()
    return [entries[k] for k in sorted(entries)]


def parse_name(full: str) -> tuple[DatasetEntry, str | None]:
    """Split ``name[:variant]`` and check both; raise a one-line error listing valid choices."""
    base, _, variant = full.partition(":")
    entries = _entries()
    if base not in entries:
        raise UnknownDataset(f"unknown dataset {full!r}; choose one of: {', '.join(sorted(entries))}")
    entry = entries[base]
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
