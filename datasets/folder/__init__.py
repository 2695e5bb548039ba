"""``folder:PATH``: a user's own multimodal dataset as a folder (dataset.yaml + table + files).

``dataset.yaml`` declares the modalities (table columns or a column of file paths), the tasks
(label columns), the id column and optional patient and split columns (``schema.py``);
``reader.py`` reads and checks the folder, listing every problem with its file, row and column;
``writer.py`` writes any registered per-sample dataset as such a folder (``bench data convert
NAME --to folder``). The format is documented in docs/folder-format.md.
"""
from __future__ import annotations

from pathlib import Path

from ..inspect import summarize_data
from ..problems import DatasetProblems
from ..registry import register_dataset
from .reader import build_folder, check_present, read_folder
from .schema import YAML_NAME, parse_schema

__all__ = ["build_folder", "check_folder", "summary_lines", "folder_files", "folder_modality_names", "read_folder"]


def folder_modality_names(data_root: str | None, variant: str) -> list[str]:
    """The modality names declared in ``dataset.yaml`` (only that file is read; ``single`` expansion)."""
    folder = check_present(variant)
    schema, problems = parse_schema(folder)
    if problems:
        raise DatasetProblems(f"folder:{variant}", problems, hint=f"bench data check folder:{variant} lists them all")
    return [m.name for m in schema.modalities]


def folder_files(data_root: str | None, variant: str) -> tuple[list[Path], Path]:
    """dataset.yaml, the table and every file the table references (those that exist; a missing
    one is the builder's problem to report), for the data fingerprint of the job key."""
    from .reader import _Report, is_missing, read_table, table_path

    folder = check_present(variant)
    schema, problems = parse_schema(folder)
    if schema is None:
        raise DatasetProblems(f"folder:{variant}", problems, hint=f"bench data check folder:{variant} lists them all")
    files = [folder / YAML_NAME]
    table = table_path(folder, schema)
    if table is None or not table.is_file():
        return files, folder
    files.append(table)
    read = read_table(table, _Report(table.name))
    if read is not None:
        cells = read[1]
        for m in schema.modalities:
            for cell in cells.get(m.path, []) if m.path else []:
                if not is_missing(cell):
                    p = Path(cell) if Path(cell).is_absolute() else folder / cell
                    if p.is_file():
                        files.append(p)
    return list(dict.fromkeys(files)), folder


def check_folder(path: str | Path, split_seed: int = 0) -> tuple[list[str], dict | None]:
    """Every problem of the folder dataset at ``path`` (one line each), and when there is none a
    summary: samples, modalities with their missing counts, tasks, split sizes (at ``split_seed``)."""
    try:
        data = build_folder(path, split_seed)
    except DatasetProblems as exc:
        return exc.problems, None
    except Exception as exc:  # DatasetNotFound and the like: one line
        return [str(exc)], None
    summary = summarize_data(data)
    from ..fingerprints import cached_content_fingerprint

    files, root = folder_files(None, str(path))
    summary.update(files=len(files), fingerprint=cached_content_fingerprint(files, root)[0])
    return [], summary


def summary_lines(summary: dict, split_seed: int = 0) -> list[str]:
    """The clean-folder summary of ``bench data check folder:PATH``, one fact a line."""
    lines = [f"{summary['name']}: {summary['samples']} samples"]
    for m in summary["modalities"]:
        lines.append(f"modality {m['name']} ({m['kind']}, shape {tuple(m['shape'])}): "
                     f"missing for {m['missing']} sample(s)")
    for t in summary["tasks"]:
        classes = f": {', '.join(t['classes'])}" if t["classes"] else ""
        lines.append(f"task {t['name']} ({t['kind']}{classes}): {t['labelled']} labelled")
    sizes = ", ".join(f"{s} {k}" for s, k in summary["splits"].items())
    lines.append(f"split (split seed {split_seed}): {sizes}; {summary['split_rule']}")
    if summary.get("meta"):
        lines.append(f"meta columns (kept beside test predictions as meta_<column>): {', '.join(summary['meta'])}")
    if "files" in summary:
        lines.append(f"files: {summary['files']}, fingerprint (job key): {summary['fingerprint']}")
    return lines


@register_dataset("folder", "your own data: folder:/path/to/folder holding dataset.yaml and table.csv "
                  "(docs/folder-format.md)", embedded=False, modalities="declared in dataset.yaml",
                  tasks="binary / multiclass / multilabel / regression (dataset.yaml)",
                  open_variant="the folder path (the folder holding dataset.yaml)",
                  check=lambda root, variant=None: check_present(variant),
                  input_files=folder_files, modality_names=folder_modality_names)
def build(variant: str, split_seed: int, data_root: str | None = None):
    return build_folder(variant, split_seed)
