"""Writes ``datasets/table.py``, the static dataset table, from the registrations themselves.

Why: naming a dataset, listing them and planning a sweep read the table, so they import no
adapter (all of them together took 8 s: pydicom, nibabel, the segmentation track ...); a dataset's
module is imported when it is built. ``python -m bench list --update-tables`` rewrites the table;
``tests/test_registry_tables.py`` fails when a registration and its table line disagree.
"""
from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

HEADER = '''"""The static dataset table (docs/design.md "Registries"): written by ``python -m bench list
--update-tables`` from the registrations; do not edit by hand. Read by ``datasets.registry``.
``module`` registers the dataset; the callables (builder, check, input_files, modality_names) are
taken from that registration when first used, so here only whether each is set."""
# fmt: off
'''


def registered_entries() -> list:
    """The entries the built-in modules register, whatever the table says (the table's source)."""
    from . import builtin  # noqa: F401  (imports register the built-in datasets)
    from .registry import _REGISTRY

    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def dataset_rows() -> dict[str, dict[str, Any]]:
    from .registry import CALLABLE_FIELDS

    rows = {}
    for e in registered_entries():
        row: dict[str, Any] = {"module": e.builder.__module__}
        row.update({f: getattr(e, f) is not None for f in CALLABLE_FIELDS})
        row.update({"description": e.description, "variants": list(e.variants), "default_variant": e.default_variant,
                    "embedded": e.embedded, "modalities": e.modalities, "tasks": e.tasks,
                    "segmentation": e.segmentation, "open_variant": e.open_variant,
                    "takes_cache_dir": e.takes_cache_dir})
        rows[e.name] = row
    return rows


def table_text(header: str, name: str, rows: dict[str, dict[str, Any]]) -> str:
    """A static table's module source: the header, then ``name = {...}`` (shared with methods/table_build.py)."""
    return header + f"{name} = " + pprint.pformat(rows, width=118, sort_dicts=False) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds it; True when it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def table_source() -> str:
    return table_text(HEADER, "DATASETS", dataset_rows())


def write_table(path: Path | None = None) -> bool:
    """Rewrite the table; True when its text changed."""
    return write_if_changed(path or Path(__file__).with_name("table.py"), table_source())
