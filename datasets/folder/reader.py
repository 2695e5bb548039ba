"""Read a folder dataset (``dataset.yaml`` + a table + optional files) into validated :class:`MultimodalData`.

Every problem is collected before anything is refused (:class:`datasets.problems.Problems`),
each naming the file, the row and the column: ``table.csv row 12 (id 'p012'), column 'dx':
label 'XX' is not one of the declared classes CN, MCI, AD``. A *row* is the 1-based data row of
the table: row 1 is the first sample, the header is not counted (in a CSV file, row N is on
line N + 1). docs/folder-format.md describes the format.
"""
from __future__ import annotations

import csv
import fnmatch
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import SPLITS
from ..prepare import build_data
from ..problems import DatasetProblems, Problems
from ..spec import DatasetNotFound, DatasetSpec, ModalitySpec, TaskSpec
from ..splits import split_indices
from .schema import YAML_NAME, FolderSchema, ModalityDecl, TaskDecl, parse_schema

#: cells that mean "no value" (compared after stripping spaces, case-insensitively)
MISSING = ("", "na", "n/a", "nan")
#: at most this many lines per (column, kind of problem); the rest are counted in one more line
PER_CHECK = 3
EXTENSIONS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".npy": "npy", ".nii": "nifti", ".nii.gz": "nifti"}


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


# --------------------------------------------------------------------------------------------- problems
class _Report:
    """Problems with a cap per check, and the row description of the table."""

    def __init__(self, table_name: str = "table.csv") -> None:
        self.problems = Problems()
        self.table = table_name
        self.ids: list[str] = []
        self._counts: dict[tuple, int] = {}
        self._rows: dict[tuple, list[int]] = {}

    def row(self, r: int, column: str | None = None) -> str:
        rid = self.ids[r] if r < len(self.ids) and not is_missing(self.ids[r]) else None
        where = f"{self.table} row {r + 1}" + (f" (id {rid!r})" if rid is not None else "")
        return where + (f", column {column!r}" if column else "")

    def add(self, where: str, what: str) -> None:
        self.problems.add(where, what)

    def add_row(self, key: tuple, r: int, column: str | None, what: str) -> None:
        """A row-level problem; beyond PER_CHECK of one ``key`` only the row numbers are kept."""
        n = self._counts.get(key, 0)
        self._counts[key] = n + 1
        if n < PER_CHECK:
            self.add(self.row(r, column), what)
        else:
            self._rows.setdefault(key, []).append(r + 1)

    def finish(self) -> None:
        for key, rows in self._rows.items():
            shown = ", ".join(map(str, rows[:20])) + (", ..." if len(rows) > 20 else "")
            self.add(f"{self.table}, column {key[0]!r}", f"{len(rows)} more rows with this problem ({key[1]}): "
                     f"rows {shown}")
        self._rows.clear()


# --------------------------------------------------------------------------------------------- table
def table_path(folder: Path, schema: FolderSchema) -> Path | None:
    if schema.table:
        return folder / schema.table
    for name in ("table.csv", "table.parquet"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_table(path: Path, rep: _Report) -> tuple[list[str], dict[str, list[str]]] | None:
    """The table's column names and its cells as stripped text (a missing Parquet value is '')."""
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            cols = [str(c) for c in df.columns]
            cells = {str(c): [_text_cell(v) for v in df[c].tolist()] for c in df.columns}
        else:
            sep = "\t" if path.suffix == ".tsv" else ","
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh, delimiter=sep))
            if not rows:
                rep.add(path.name, "the table is empty (no header row)")
                return None
            cols = [c.strip() for c in rows[0]]
            blank = [i for i, r in enumerate(rows[1:], start=1) if not r]
            if blank:  # skipping them would shift every later row number: refuse them instead
                rep.add(path.name, f"blank line(s) where data row(s) {', '.join(map(str, blank[:10]))} would be; remove them")
                return None
            for i, r in enumerate(rows[1:]):
                if len(r) != len(cols):
                    rep.add(f"{path.name} row {i + 1}", f"has {len(r)} cells, the header has {len(cols)}")
            if any(len(r) != len(cols) for r in rows[1:]):
                return None
            cells = {c: [r[j].strip() for r in rows[1:]] for j, c in enumerate(cols)}
    except Exception as exc:  # noqa: BLE001  (any unreadable table is a problem line)
        rep.add(path.name, f"cannot read the table ({type(exc).__name__}: {exc})")
        return None
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        rep.add(path.name, f"repeated column name(s) {', '.join(map(repr, dup))}; every column needs a unique name")
    if any(not c for c in cols):
        rep.add(path.name, "a column has no name in the header row")
    return cols, cells


def _text_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
    if isinstance(v, (np.floating,)):
        return _text_cell(float(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").strip()
    return str(v).strip()


def expand_columns(patterns: tuple[str, ...], cols: list[str], reserved: frozenset[str] | set[str] = frozenset()
                   ) -> tuple[list[str], list[str]]:
    """Columns matching ``patterns`` (fnmatch; expanded in table order, each once) and the patterns
    matching nothing. A glob never matches a ``reserved`` column (the id, patient and split
    columns and every task's label columns): ``s*`` must not swallow ``sample_id`` or ``split``."""
    out, unmatched = [], []
    for p in patterns:
        hits = [c for c in cols if fnmatch.fnmatchcase(c, p) and c not in reserved] \
            if any(ch in p for ch in "*?[") else ([p] if p in cols else [])
        if not hits:
            unmatched.append(p)
        out += [c for c in hits if c not in out]
    return out, unmatched


def _parse_floats(values: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(float64 values, missing mask, indices of non-numeric cells) of one column."""
    missing = np.array([is_missing(v) for v in values], bool)
    out = np.zeros(len(values), np.float64)
    bad: list[int] = []
    idx = np.flatnonzero(~missing)
    try:
        out[idx] = np.asarray([values[i] for i in idx], dtype=str).astype(np.float64)
    except ValueError:
        for i in idx:
            try:
                out[i] = float(values[i])
            except ValueError:
                bad.append(int(i))
    return out, missing, bad


# --------------------------------------------------------------------------------------------- files
def file_kind(decl: ModalityDecl, path: Path) -> str | None:
    if decl.file:
        return decl.file
    name = path.name.lower()
    for ext, kind in EXTENSIONS.items():
        if name.endswith(ext):
            return kind
    return None


def load_file(path: Path, kind: str, modality_kind: str) -> np.ndarray:
    """One sample's array, channels first; raises with a short reason when the file cannot be read."""
    if kind == "npy":
        arr = np.load(path, allow_pickle=False)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"holds {arr.dtype} values, not numbers")
        return arr.astype(np.float32)
    if kind in ("png", "jpg"):
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
            if im.mode.startswith("I;16"):
                scale = 65535.0
            elif im.mode in ("L", "LA", "RGB", "RGBA"):
                scale = 255.0
            else:
                raise ValueError(f"image mode {im.mode} is not supported (use 8- or 16-bit grey, RGB or RGBA)")
        arr = arr.astype(np.float32) / scale
        return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    if kind == "nifti":
        try:
            import nibabel
        except ImportError:
            raise ValueError("reading NIfTI needs nibabel (an optional dependency): pip install nibabel") from None
        arr = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
        spatial = 2 if modality_kind == "image2d" else 3
        if arr.ndim == spatial:
            return arr[None]
        if arr.ndim == spatial + 1:
            return np.moveaxis(arr, -1, 0)
        return arr
    raise ValueError(f"unknown file kind {kind!r}")


# --------------------------------------------------------------------------------------------- reading
@dataclass
class FolderContents:
    """What the folder holds, checked: everything build_data needs, and the summary `data check` prints."""

    schema: FolderSchema
    table: Path
    ids: list[str]
    inputs: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    target_mask: dict[str, np.ndarray]
    modalities: list[ModalitySpec]
    tasks: list[TaskSpec]
    patients: np.ndarray | None
    fixed_splits: dict[str, np.ndarray] | None
    meta: dict[str, np.ndarray]
    files: list[Path]


def _read_modality(decl: ModalityDecl, folder: Path, cols: list[str], cells: dict[str, list[str]], n: int,
                   rep: _Report, files: list[Path], reserved: frozenset[str] = frozenset()
                   ) -> tuple[ModalitySpec, np.ndarray, np.ndarray] | None:
    if decl.columns:
        names, unmatched = expand_columns(decl.columns, cols, reserved)
        for p in unmatched:
            rep.add(decl.where, f"column {p!r} of modality {decl.name!r} is not in {rep.table}"
                    if not any(ch in p for ch in "*?[") else
                    f"pattern {p!r} of modality {decl.name!r} matches no column of {rep.table}")
        if unmatched or not names:
            return None
        x = np.zeros((n, len(names)), np.float64)
        present = np.ones(n, bool)
        for j, c in enumerate(names):
            vals, missing, bad = _parse_floats(cells[c])
            for r in bad:
                rep.add_row((c, "not a number"), r, c, f"{cells[c][r]!r} is not a number "
                            f"(modality {decl.name!r}; leave the cell empty when the value is missing)")
            for r in np.flatnonzero(~missing & ~np.isfinite(vals)):
                rep.add_row((c, "infinite"), int(r), c, f"{cells[c][r]!r} is infinite (modality {decl.name!r}); "
                            "leave the cell empty when the value is missing")
            x[:, j] = np.where(missing, 0.0, vals)
            present &= ~missing
        spec = ModalitySpec(decl.name, decl.kind, (len(names),))
        return spec, x.astype(np.float32), present
    col = decl.path
    if col not in cells:
        rep.add(decl.where, f"path column {col!r} of modality {decl.name!r} is not in {rep.table}")
        return None
    present = np.array([not is_missing(v) for v in cells[col]], bool)
    arrays: dict[int, np.ndarray] = {}
    shape, shape_from = decl.shape, "declared in dataset.yaml"
    for r in np.flatnonzero(present):
        r = int(r)
        rel = cells[col][r]
        path = Path(rel) if Path(rel).is_absolute() else folder / rel
        where = rep.row(r, col)
        kind = file_kind(decl, path)
        if not path.is_file():
            rep.add_row((col, "missing file"), r, col, f"file {rel!r} does not exist")
            continue
        files.append(path)
        if kind is None:
            rep.add(where, f"cannot tell the file kind of {rel!r} from its extension; "
                    f"declare file: png|jpg|npy|nifti for modality {decl.name!r}")
            continue
        try:
            arr = load_file(path, kind, decl.kind)
        except Exception as exc:  # noqa: BLE001  (every unreadable file is a problem line)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rep.add_row((col, "unreadable"), r, col, f"cannot read {kind} file {rel!r} (corrupted or truncated?): {reason}")
            continue
        if shape is None:
            try:
                ModalitySpec(decl.name, decl.kind, tuple(arr.shape))
            except ValueError as exc:
                rep.add(where, f"{rel!r} has shape {tuple(arr.shape)}, which a {decl.kind} modality cannot have "
                        f"({str(exc).split(': ', 1)[-1]}); save it with that shape or change the kind")
                return None
            shape, shape_from = tuple(arr.shape), f"the shape of {rel!r}, {rep.row(r)}"
        if tuple(arr.shape) != tuple(shape):
            rep.add_row((col, "shape"), r, col, f"{rel!r} has shape {tuple(arr.shape)}, expected {tuple(shape)} "
                        f"({shape_from}); files are never resized")
            continue
        if not np.isfinite(arr).all():
            rep.add_row((col, "nan"), r, col, f"{rel!r} holds NaN or Inf values; fix the file, or leave the path "
                        "empty to mark the modality missing for this sample")
            continue
        arrays[r] = arr
    if shape is None:
        return None  # no readable file: reported per row, or as "missing for every sample" by the caller
    x = np.zeros((n, *shape), np.float32)
    for r, arr in arrays.items():
        x[r] = arr
    return ModalitySpec(decl.name, decl.kind, tuple(shape)), x, present


def _match_class(cell: str, classes: tuple[str, ...]) -> int | None:
    if cell in classes:
        return classes.index(cell)
    try:
        v = float(cell)
    except ValueError:
        return None
    for k, c in enumerate(classes):
        try:
            if float(c) == v:
                return k
        except ValueError:
            continue
    return None


def _sorted_classes(values) -> tuple[str, ...]:
    values = sorted(set(values))
    try:
        return tuple(sorted(values, key=float))
    except ValueError:
        return tuple(values)


def _read_task(decl: TaskDecl, cols: list[str], cells: dict[str, list[str]], n: int,
               rep: _Report) -> tuple[TaskSpec, np.ndarray, np.ndarray, list[str]] | None:
    """(spec, targets, target mask, the columns it reads)."""
    if decl.kind == "multilabel" and decl.columns:
        names, unmatched = expand_columns(decl.columns, cols)
        for p in unmatched:
            rep.add(decl.where, f"column {p!r} of task {decl.name!r} is not in {rep.table}"
                    if not any(ch in p for ch in "*?[") else
                    f"pattern {p!r} of task {decl.name!r} matches no column of {rep.table}")
        if unmatched or not names:
            return None
        classes = decl.classes or tuple(names)
        if len(classes) != len(names) or len(names) < 2:
            rep.add(decl.where, f"task {decl.name!r} lists {len(decl.classes or ())} classes for {len(names)} "
                    f"columns ({', '.join(names)})" if decl.classes else
                    f"multilabel task {decl.name!r} needs at least 2 columns, got {', '.join(names)}")
            return None
        y = np.zeros((n, len(names)), np.float32)
        empty = np.zeros((n, len(names)), bool)
        for j, c in enumerate(names):
            for r, v in enumerate(cells[c]):
                if is_missing(v):
                    empty[r, j] = True
                elif v.lower() in ("1", "1.0", "true"):
                    y[r, j] = 1.0
                elif v.lower() not in ("0", "0.0", "false"):
                    rep.add_row((c, "not 0/1"), r, c, f"{v!r} is not 0 or 1 (multilabel task {decl.name!r})")
        partial = empty.any(axis=1) & ~empty.all(axis=1)
        for r in np.flatnonzero(partial):
            blank = [names[j] for j in np.flatnonzero(empty[r])]
            rep.add_row((names[0], "partial"), int(r), None, f"task {decl.name!r} has empty cells in "
                        f"{', '.join(map(repr, blank))} but not in its other columns; fill them (0/1) or empty them all")
        return TaskSpec(decl.name, "multilabel", len(names), tuple(classes)), y, ~empty.any(axis=1), names
    col = decl.label
    if col not in cells:
        rep.add(decl.where, f"label column {col!r} of task {decl.name!r} is not in {rep.table}")
        return None
    values = cells[col]
    labelled = np.array([not is_missing(v) for v in values], bool)
    if decl.kind == "regression":
        y, missing, bad = _parse_floats(values)
        for r in bad:
            rep.add_row((col, "not a number"), r, col, f"{values[r]!r} is not a number (regression task {decl.name!r})")
        for r in np.flatnonzero(~missing & ~np.isfinite(y)):
            rep.add_row((col, "infinite"), int(r), col, f"{values[r]!r} is infinite (regression task {decl.name!r})")
        y = np.where(missing | ~np.isfinite(y), 0.0, y).astype(np.float32)
        return TaskSpec(decl.name, "regression", 1, sign_metric=decl.sign_metric), y, labelled, [col]
    if decl.kind == "multilabel":  # label + separator
        lists = [[t.strip() for t in v.split(decl.separator) if t.strip()] if lab else []
                 for v, lab in zip(values, labelled)]
        classes = decl.classes or _sorted_classes(t for ts in lists for t in ts)
        if len(classes) < 2:
            rep.add(decl.where, f"multilabel task {decl.name!r} has fewer than 2 classes in column {col!r}")
            return None
        y = np.zeros((n, len(classes)), np.float32)
        for r, ts in enumerate(lists):
            for t in ts:
                k = _match_class(t, classes)
                if k is None:
                    rep.add_row((col, "class"), r, col, f"label {t!r} is not one of the declared classes "
                                f"{', '.join(classes)}")
                else:
                    y[r, k] = 1.0
        return TaskSpec(decl.name, "multilabel", len(classes), tuple(classes)), y, labelled, [col]
    declared = decl.classes is not None
    if declared:
        classes = decl.classes
    elif decl.kind == "binary":
        classes = ("0", "1")
    else:
        classes = _sorted_classes(v for v, lab in zip(values, labelled) if lab)
        if len(classes) < 2:
            rep.add(decl.where, f"multiclass task {decl.name!r} has fewer than 2 distinct labels in column {col!r}")
            return None
    y = np.zeros(n, np.int64)
    for r in np.flatnonzero(labelled):
        k = _match_class(values[r], classes)
        if k is None:
            what = (f"label {values[r]!r} is not one of the declared classes {', '.join(classes)}" if declared else
                    f"label {values[r]!r} is not 0 or 1 (declare classes: [negative, positive] for other labels)")
            rep.add_row((col, "class"), int(r), col, what)
        else:
            y[r] = k
    return TaskSpec(decl.name, decl.kind, len(classes), tuple(classes)), y, labelled, [col]


def _rows_text(rows) -> str:
    rows = [r + 1 for r in rows]
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")


def read_folder(folder: str | Path) -> tuple[FolderContents | None, list[str]]:
    """Read and check a folder dataset: its contents (None when any problem was found) and every problem."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None, [f"{folder}: no such folder"]
    schema, yaml_problems = parse_schema(folder)
    if schema is None:
        return None, yaml_problems
    tpath = table_path(folder, schema)
    rep = _Report(tpath.name if tpath else "table.csv")
    rep.problems.extend(yaml_problems)
    if tpath is None or not tpath.is_file():
        rep.add(YAML_NAME, f"table {schema.table or 'table.csv (or table.parquet)'} not found in {folder}")
        return None, rep.problems.lines
    read = read_table(tpath, rep)
    if read is None:
        return None, rep.problems.lines
    cols, cells = read
    n = len(next(iter(cells.values()))) if cells else 0
    if n == 0:
        rep.add(tpath.name, "the table has no data rows")
        return None, rep.problems.lines
    for role in ("id", "patient", "split"):
        col = getattr(schema, role)
        if col and col not in cells:
            rep.add(YAML_NAME, f"{role} column {col!r} is not in {tpath.name} (its columns: "
                    f"{', '.join(cols[:12])}{', ...' if len(cols) > 12 else ''})")
    ids = cells.get(schema.id) if schema.id else None
    if ids is not None:
        rep.ids = ids
        for r, v in enumerate(ids):
            if is_missing(v):
                rep.add_row((schema.id, "empty id"), r, schema.id, "the id is empty; every sample needs a unique id")
        where: dict[str, list[int]] = {}
        for r, v in enumerate(ids):
            where.setdefault(v, []).append(r)
        for v, rows in where.items():
            if len(rows) > 1 and not is_missing(v):
                rep.add(f"{tpath.name}, column {schema.id!r}", f"id {v!r} is repeated ({_rows_text(rows)})")

    used: set[str] = {c for c in (schema.id, schema.patient, schema.split) if c}
    roles = {c: f"the {role} column" for role in ("id", "patient", "split") if (c := getattr(schema, role))}
    for t in schema.tasks:
        for c in ([t.label] if t.label else []) + (expand_columns(t.columns, cols)[0] if t.columns else []):
            roles.setdefault(c, f"a label column of task {t.name!r}")
    hint = ""
    if not schema.split and "split" in cells and cells["split"] and "split" not in roles and \
            {v.strip().lower() for v in cells["split"] if not is_missing(v)} <= set(SPLITS):
        roles["split"] = "an undeclared split column"   # never a feature: a glob skips it, a meta column keeps it
        hint = ("the table has a column 'split' with train/val/test values that dataset.yaml does not use; "
                "add `split: split` to use it (now it is kept as a meta column and a seeded split is drawn)")
    reserved = frozenset(roles)
    owner: dict[str, str] = {}
    for decl in schema.modalities:
        for c in expand_columns(decl.columns, cols, reserved)[0] if decl.columns else []:
            if c in roles:
                rep.add(decl.where, f"column {c!r} of modality {decl.name!r} is {roles[c]}; it cannot be a feature")
            elif c in owner:
                rep.add(decl.where, f"column {c!r} is claimed by modalities {owner[c]!r} and {decl.name!r}; "
                        "a column belongs to one modality (narrow a pattern or list the columns)")
            owner.setdefault(c, decl.name)
    files: list[Path] = []
    modalities, inputs, mask = [], {}, {}
    for decl in schema.modalities:
        got = _read_modality(decl, folder, cols, cells, n, rep, files, reserved)
        used.update(expand_columns(decl.columns, cols, reserved)[0] if decl.columns else [decl.path])
        if got is None:
            if decl.path and decl.path in cells and not any(not is_missing(v) for v in cells[decl.path]):
                rep.add(f"{tpath.name}, column {decl.path!r}", f"modality {decl.name!r} is missing for every sample "
                        "(every path is empty)")
            continue
        spec, x, present = got
        if not present.any():
            cols_of = ", ".join(map(repr, expand_columns(decl.columns, cols, reserved)[0] if decl.columns else [decl.path]))
            rep.add(f"{tpath.name}, column(s) {cols_of}", f"modality {decl.name!r} is missing for every sample "
                    "(an empty cell marks it missing for that sample)")
        modalities.append(spec)
        inputs[decl.name], mask[decl.name] = x, present
    tasks, targets, target_mask = [], {}, {}
    for decl in schema.tasks:
        got = _read_task(decl, cols, cells, n, rep)
        if decl.label:
            used.add(decl.label)
        if decl.columns:
            used.update(expand_columns(decl.columns, cols)[0])
        if got is None:
            continue
        spec, y, labelled, _ = got
        if not labelled.any():
            rep.add(decl.where, f"task {decl.name!r} has no labelled sample (every label cell is empty)")
        tasks.append(spec)
        targets[decl.name], target_mask[decl.name] = y, labelled

    patients = None
    if schema.patient and schema.patient in cells:
        patients = np.array(cells[schema.patient], dtype=object)
        for r, v in enumerate(patients):
            if is_missing(v):
                rep.add_row((schema.patient, "empty"), r, schema.patient, "the patient is empty; every sample needs one")
    fixed = None
    if schema.split and schema.split in cells:
        fixed = {s: [] for s in SPLITS}
        for r, v in enumerate(cells[schema.split]):
            s = v.strip().lower()
            if s in fixed:
                fixed[s].append(r)
            else:
                rep.add_row((schema.split, "value"), r, schema.split, f"split {v!r} is not one of train, val, test")
        for s in SPLITS:
            if not fixed[s]:
                rep.add(f"{tpath.name}, column {schema.split!r}", f"no sample is in split {s!r}; "
                        "train, val and test each need at least one")
        if patients is not None:
            split_of: dict[str, dict[str, list[int]]] = {}
            for s in SPLITS:
                for r in fixed[s]:
                    split_of.setdefault(patients[r], {}).setdefault(s, []).append(r)
            for p, by in split_of.items():
                if len(by) > 1 and not is_missing(p):
                    parts = " and ".join(f"{s!r} ({_rows_text(rows)})" for s, rows in by.items())
                    rep.add(f"{tpath.name}, columns {schema.patient!r} and {schema.split!r}",
                            f"patient {p!r} is in two splits: {parts}; a patient's samples must share one split")
        fixed = {s: np.asarray(v, np.int64) for s, v in fixed.items()}
    meta = {c: np.array(cells[c], dtype=object) for c in cols if c not in used and c}
    rep.finish()
    if hint:
        warnings.warn(f"{folder}: {hint}", stacklevel=2)
    if rep.problems or not modalities or not tasks:
        return None, rep.problems.lines or ["no modality or task could be read"]
    return FolderContents(schema, tpath, list(ids), inputs, mask, targets, target_mask, modalities, tasks,
                          patients, fixed, meta, files), []


def seeded_splits(n: int, split_seed: int, stratify: np.ndarray | None, patients: np.ndarray | None
                  ) -> dict[str, np.ndarray]:
    """The folder's default split: :func:`datasets.splits.split_indices` keyed by the split seed,
    stratified on ``stratify`` (class indices, -1 for unlabelled), grouped by patient (patients
    numbered in order of first appearance in the table) when there is a patient column."""
    groups = None
    if patients is not None:
        _, first, inverse = np.unique(patients.astype(str), return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        groups = rank[inverse.ravel()]
    return split_indices(n, split_seed, stratify=stratify, groups=groups)


def stratify_labels(tasks: list[TaskSpec], targets: dict[str, np.ndarray], target_mask: dict[str, np.ndarray]):
    """Class indices of the first binary/multiclass task (-1 where unlabelled), or None without one."""
    for t in tasks:
        if t.is_classification:
            return np.where(target_mask[t.name], targets[t.name], -1)
    return None


def build_folder(folder: str | Path, split_seed: int, name: str | None = None):
    """Read ``folder`` into :class:`MultimodalData` (not yet validated); raises :class:`DatasetProblems`
    listing every problem, or :class:`DatasetNotFound` when the folder or its dataset.yaml is absent."""
    folder = Path(folder).expanduser()
    check_present(folder)
    contents, problems = read_folder(folder)
    label = name or f"folder:{folder}"
    if problems:
        raise DatasetProblems(label, problems, hint=f"bench data check {label} lists them all")
    c = contents
    n = len(c.ids)
    strat = stratify_labels(c.tasks, c.targets, c.target_mask)
    s = c.schema
    if c.fixed_splits is not None:
        splits = c.fixed_splits
        rule = f"fixed by the split column {s.split!r} of {c.table.name} (the split seed changes nothing)"
    else:
        try:
            splits = seeded_splits(n, split_seed, strat, c.patients)
        except ValueError as exc:
            raise DatasetProblems(label, [f"{c.table.name}: cannot split {n} samples 60/20/20 ({exc}); "
                                          "add rows or a split column"]) from None
        how = f"stratified on {next(t.name for t in c.tasks if t.is_classification)}, " if strat is not None else ""
        rule = (f"patient-level 60/20/20 (patient column {s.patient!r}), keyed by split seed" if c.patients is not None
                else f"{how or 'random '}60/20/20, keyed by split seed")
    spec = DatasetSpec(name=s.name, modalities=tuple(c.modalities), tasks=tuple(c.tasks), split_rule=rule,
                       source=f"folder dataset {folder} ({YAML_NAME}, {c.table.name}, {len(c.files)} files)"
                       + (f": {s.description}" if s.description else ""))
    data = build_data(spec, c.inputs, c.targets, split_seed, ids=c.ids, mask=c.mask, target_mask=c.target_mask,
                      groups=c.patients, splits=splits, meta=c.meta)
    problems = data.problems()
    if problems:
        raise DatasetProblems(label, problems, hint=f"bench data check {label} lists them all")
    return data


def check_present(folder: str | Path) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetNotFound(f"folder dataset {folder}: no such folder (expected a folder holding {YAML_NAME} "
                              "and table.csv; docs/folder-format.md)")
    if not (folder / YAML_NAME).is_file():
        raise DatasetNotFound(f"folder dataset {folder}: no {YAML_NAME} in it (docs/folder-format.md describes it)")
    return folder
