"""``dataset.yaml`` of a folder dataset: parsed into declarations, every problem collected.

The schema (docs/folder-format.md has every field and a worked example)::

    name: my-study              # optional; default: the folder's name
    description: ...            # optional free text (kept in the spec's source line)
    table: table.csv            # optional; default table.csv, else table.parquet
    id: sample_id               # required: the id column (unique, non-empty)
    patient: patient_id         # optional: whole patients go to one split
    split: split                # optional: fixed split column (train / val / test)
    modalities:                 # required, at least one
      - {name: clinical, kind: tabular, columns: [age, bmi, "lab_*"]}
      - {name: scan, kind: image2d, path: scan_file, file: png, shape: [1, 64, 64]}
    tasks:                      # required, at least one
      - {name: diagnosis, kind: multiclass, label: dx, classes: [CN, MCI, AD]}
      - {name: genres, kind: multilabel, columns: [g_drama, g_comedy]}
      - {name: score, kind: regression, label: score, sign_metric: true}

:func:`parse_schema` never stops at the first problem: it returns the declarations it could read
and one line per problem, each naming ``dataset.yaml``, the line and the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec import MODALITY_KINDS, ModalitySpec

YAML_NAME = "dataset.yaml"
TOP_KEYS = ("name", "description", "table", "id", "patient", "split", "modalities", "tasks")
MODALITY_KEYS = ("name", "kind", "columns", "path", "file", "shape")
TASK_KEYS = ("name", "kind", "label", "columns", "classes", "separator", "sign_metric")
FOLDER_TASK_KINDS = ("binary", "multiclass", "multilabel", "regression")
FILE_KINDS = ("png", "jpg", "npy", "nifti")
#: which file kinds each modality kind may read
FILE_KINDS_BY_MODALITY = {"tabular": ("npy",), "embedding": ("npy",), "sequence": ("npy",),
                          "image2d": ("png", "jpg", "npy", "nifti"), "volume3d": ("npy", "nifti")}
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ModalityDecl:
    name: str
    kind: str
    columns: tuple[str, ...] = ()      # tabular / embedding read from table columns (patterns)
    path: str | None = None            # or: a column holding a file path per sample
    file: str | None = None            # png | jpg | npy | nifti; None: from each file's extension
    shape: tuple[int, ...] | None = None
    where: str = ""                    # "dataset.yaml line 7, modalities[0]"


@dataclass(frozen=True)
class TaskDecl:
    name: str
    kind: str
    label: str | None = None
    columns: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    separator: str | None = None
    sign_metric: bool = False
    where: str = ""


@dataclass
class FolderSchema:
    name: str
    table: str | None
    id: str | None
    patient: str | None = None
    split: str | None = None
    description: str = ""
    modalities: list[ModalityDecl] = field(default_factory=list)
    tasks: list[TaskDecl] = field(default_factory=list)


def _line_map(text: str) -> dict[str, int]:
    """Field path (``modalities[1].kind``) -> 1-based line of its value in the YAML text."""
    import yaml

    out: dict[str, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out

    def walk(node, prefix: str) -> None:
        out.setdefault(prefix, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}.{k.value}" if prefix else str(k.value)
                out[key] = k.start_mark.line + 1
                walk(v, key)
                out[key] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{prefix}[{i}]")

    if root is not None:
        walk(root, "")
    return out


class _Collector:
    """Problem lines for dataset.yaml: ``dataset.yaml line N, <field>: <problem>; <what to do>``."""

    def __init__(self, lines: dict[str, int]):
        self.lines, self.problems = lines, []

    def where(self, fieldname: str) -> str:
        probe = fieldname
        while probe and probe not in self.lines:
            probe = probe.rpartition(".")[0] if "." in probe else probe.rpartition("[")[0]
        line = self.lines.get(probe)
        return f"{YAML_NAME} line {line}" if line else YAML_NAME

    def add(self, fieldname: str, problem: str, todo: str) -> None:
        from ..config_files import field_error

        # field_error's ConfigError text is "<kind> file <where>: <field>: <problem>; <todo>"
        self.problems.append(str(field_error("dataset", self.where(fieldname), fieldname, problem, todo))
                             .removeprefix("dataset file "))

    def keys(self, raw: dict, allowed: tuple[str, ...], prefix: str) -> None:
        for key in raw:
            if key not in allowed:
                self.add(f"{prefix}.{key}" if prefix else str(key), "unknown key", f"use only: {', '.join(allowed)}")


def _text(c: _Collector, raw: dict, key: str, prefix: str, required: bool = False) -> str | None:
    from ..config_files import describe

    fieldname = f"{prefix}.{key}" if prefix else key
    value = raw.get(key)
    if value is None:
        if required:
            c.add(fieldname, "missing", "add it")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value).strip() == "":
        c.add(fieldname, f"must be a non-empty text, got {describe(value)}", "write a column or file name")
        return None
    return str(value)


def _names(c: _Collector, raw: dict, key: str, prefix: str) -> tuple[str, ...] | None:
    from ..config_files import describe

    value = raw.get(key)
    fieldname = f"{prefix}.{key}"
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or any(isinstance(v, (bool, dict, list)) or v is None for v in value):
        c.add(fieldname, f"must be a non-empty list of names, got {describe(value)}", "write e.g. [a, b, \"lab_*\"]")
        return None
    return tuple(str(v) for v in value)


def _name(c: _Collector, raw: dict, prefix: str, seen: set[str], what: str) -> str | None:
    name = _text(c, raw, "name", prefix, required=True)
    if name is None:
        return None
    if not NAME_RE.match(name):
        c.add(f"{prefix}.name", f"{name!r} may only hold letters, digits, '_', '.' and '-'", f"rename the {what}")
        return None
    if name in seen:
        c.add(f"{prefix}.name", f"{what} {name!r} is declared twice", "give each a unique name")
        return None
    seen.add(name)
    return name


def _entry(c: _Collector, raw: Any, prefix: str, seen: set[str], what: str, keys, kinds,
           example: str) -> tuple[str | None, str | None] | None:
    """The part every modality / task entry shares: a mapping with known keys, a unique name and a
    known kind. Returns (name, kind), each None when bad (reported), or None when not a mapping."""
    from ..config_files import describe

    if not isinstance(raw, dict):
        c.add(prefix, f"must be a mapping, got {describe(raw)}", f"write {example}")
        return None
    c.keys(raw, keys, prefix)
    name = _name(c, raw, prefix, seen, what)
    kind = _text(c, raw, "kind", prefix, required=True)
    if kind is not None and kind not in kinds:
        c.add(f"{prefix}.kind", f"{kind!r} is not a {what} kind", f"use one of: {', '.join(kinds)}")
        kind = None
    return name, kind


def _modality(c: _Collector, raw: Any, i: int, seen: set[str]) -> ModalityDecl | None:
    from ..config_files import describe

    prefix = f"modalities[{i}]"
    head = _entry(c, raw, prefix, seen, "modality", MODALITY_KEYS, MODALITY_KINDS,
                  "{name: ..., kind: ..., columns: [...]} ")
    if head is None:
        return None
    name, kind = head
    ok = True
    columns = _names(c, raw, "columns", prefix)
    path = _text(c, raw, "path", prefix)
    file = _text(c, raw, "file", prefix)
    if "columns" in raw and columns is None or "path" in raw and path is None:
        ok = False
    if columns is not None and path is not None:
        c.add(prefix, "has both columns and path", "use columns (values in the table) or path (a file per sample)")
        ok = False
    elif columns is None and path is None and ok:
        c.add(prefix, "needs columns (values in the table) or path (a column of file paths)", "add one of them")
        ok = False
    if columns is not None and kind is not None and kind not in ("tabular", "embedding"):
        c.add(f"{prefix}.columns", f"a {kind} modality cannot be read from table columns",
              "use path: <column of file paths>, or kind tabular/embedding")
        ok = False
    if file is not None:
        if path is None and ok:
            c.add(f"{prefix}.file", "only applies with path", "remove it or add path")
            ok = False
        if file not in FILE_KINDS:
            c.add(f"{prefix}.file", f"{file!r} is not a file kind", f"use one of: {', '.join(FILE_KINDS)}")
            ok = False
        elif kind is not None and file not in FILE_KINDS_BY_MODALITY[kind]:
            c.add(f"{prefix}.file", f"a {kind} modality cannot be read from {file} files",
                  f"use one of: {', '.join(FILE_KINDS_BY_MODALITY[kind])}")
            ok = False
    shape = None
    if "shape" in raw:
        value = raw["shape"]
        if (not isinstance(value, list) or not value
                or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in value)):
            c.add(f"{prefix}.shape", f"must be a list of positive integers, got {describe(value)}",
                  "write e.g. [1, 64, 64] (channels first)")
            ok = False
        elif path is None:
            c.add(f"{prefix}.shape", "only applies with path (columns give the shape)", "remove it")
            ok = False
        else:
            shape = tuple(value)
            if name and kind:
                try:
                    ModalitySpec(name, kind, shape)
                except ValueError as exc:
                    c.add(f"{prefix}.shape", str(exc).split(": ", 1)[-1], "declare the per-sample shape, channels first")
                    ok = False
    if not (ok and name and kind):
        return None
    return ModalityDecl(name, kind, columns or (), path, file, shape, c.where(prefix))


def _task(c: _Collector, raw: Any, i: int, seen: set[str]) -> TaskDecl | None:
    from ..config_files import describe

    prefix = f"tasks[{i}]"
    head = _entry(c, raw, prefix, seen, "task", TASK_KEYS, FOLDER_TASK_KINDS, "{name: ..., kind: ..., label: ...}")
    if head is None:
        return None
    name, kind = head
    ok = True
    label = _text(c, raw, "label", prefix)
    columns = _names(c, raw, "columns", prefix)
    classes = _names(c, raw, "classes", prefix)
    separator = raw.get("separator")
    for key, got in (("label", label), ("columns", columns), ("classes", classes)):
        if key in raw and got is None:
            ok = False
    if separator is not None and (not isinstance(separator, str) or not separator):
        c.add(f"{prefix}.separator", f"must be a non-empty text, got {describe(separator)}", "write e.g. \"|\"")
        ok, separator = False, None
    sign = raw.get("sign_metric", False)
    if not isinstance(sign, bool):
        c.add(f"{prefix}.sign_metric", f"must be true or false, got {describe(sign)}", "write true or false")
        ok, sign = False, False
    if kind is not None:
        if kind == "multilabel":
            if label is not None and columns is not None:
                c.add(prefix, "has both label and columns", "use columns (one 0/1 column per class) "
                      "or label with separator")
                ok = False
            elif columns is None and label is None and ok:
                c.add(prefix, "a multilabel task needs columns (one 0/1 column per class) or label with separator",
                      "add one of them")
                ok = False
            elif label is not None and separator is None:
                c.add(f"{prefix}.separator", "missing (a multilabel label column lists classes separated by it)",
                      "add e.g. separator: \"|\", or use columns")
                ok = False
            if columns is not None and separator is not None:
                c.add(f"{prefix}.separator", "only applies with label", "remove it")
                ok = False
        else:
            if label is None and "label" not in raw:
                c.add(f"{prefix}.label", "missing", f"name the table column holding the {kind} label")
                ok = False
            for key in ("columns", "separator"):
                if key in raw:
                    c.add(f"{prefix}.{key}", "only applies to multilabel tasks", "use label: <column>")
                    ok = False
        if kind == "regression" and "classes" in raw:
            c.add(f"{prefix}.classes", "a regression task has no classes", "remove it")
            ok = False
        if sign and kind != "regression":
            c.add(f"{prefix}.sign_metric", "only applies to regression tasks", "remove it")
            ok = False
        if classes is not None:
            if len(set(classes)) != len(classes):
                c.add(f"{prefix}.classes", f"repeats a class ({', '.join(classes)})", "list each class once")
                ok = False
            elif kind == "binary" and len(classes) != 2:
                c.add(f"{prefix}.classes", f"a binary task has 2 classes (negative, positive), got {len(classes)}",
                      "list the negative class, then the positive one")
                ok = False
            elif kind in ("multiclass", "multilabel") and len(classes) < 2:
                c.add(f"{prefix}.classes", f"a {kind} task needs at least 2 classes", "list them all")
                ok = False
    if not (ok and name and kind):
        return None
    return TaskDecl(name, kind, label, columns or (), classes, separator, sign, c.where(prefix))


def parse_schema(folder: str | Path) -> tuple[FolderSchema | None, list[str]]:
    """Read ``folder/dataset.yaml``: the declarations that are valid, and every problem found.

    The schema is None only when nothing can be read (no file, a YAML syntax error, not a mapping)."""
    from ..config_files import ConfigError, describe, load_yaml_file

    path = Path(folder) / YAML_NAME
    if not path.is_file():
        return None, [f"{YAML_NAME}: not found in {folder}; write one (docs/folder-format.md)"]
    try:
        raw = load_yaml_file(path, "dataset", "fix dataset.yaml")
    except ConfigError as exc:
        return None, [str(exc).replace(f"dataset file {path}", YAML_NAME)]
    c = _Collector(_line_map(path.read_text()))
    if not isinstance(raw, dict):
        return None, [f"{YAML_NAME}: must be a mapping (name, id, modalities, tasks, ...), got {describe(raw)}"]
    c.keys(raw, TOP_KEYS, "")
    name = _text(c, raw, "name", "") or Path(folder).resolve().name
    schema = FolderSchema(name=name, table=_text(c, raw, "table", ""), id=_text(c, raw, "id", "", required=True),
                          patient=_text(c, raw, "patient", ""), split=_text(c, raw, "split", ""),
                          description=str(raw.get("description") or ""))
    if schema.table is not None and not schema.table.endswith((".csv", ".tsv", ".parquet")):
        c.add("table", f"{schema.table!r} is not a .csv, .tsv or .parquet file", "convert the table to CSV or Parquet")
        schema.table = None
    for key, what in (("modalities", "modality"), ("tasks", "task")):
        items = raw.get(key)
        if not isinstance(items, list) or not items:
            c.add(key, f"must be a non-empty list, got {describe(items)}" if items is not None else "missing",
                  f"declare at least one {what}")
            continue
        seen: set[str] = set()
        parse = _modality if key == "modalities" else _task
        target = schema.modalities if key == "modalities" else schema.tasks
        for i, item in enumerate(items):
            decl = parse(c, item, i, seen)
            if decl is not None:
                target.append(decl)
    roles = [(k, getattr(schema, k)) for k in ("id", "patient", "split") if getattr(schema, k)]
    for i, (k, col) in enumerate(roles):
        for k2, col2 in roles[:i]:
            if col == col2:
                c.add(k, f"column {col!r} is also the {k2} column", "use a separate column for each role")
    return schema, c.problems
