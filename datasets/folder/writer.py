"""``bench data convert NAME --to folder --out DIR``: any registered per-sample dataset as a folder dataset.

What is written (docs/folder-format.md "What convert writes"):

* ``table.csv``: one row per sample in the dataset's order; ``id`` (the dataset's ids), ``patient``
  when the dataset has patient groups, ``split`` only when needed (below); each vector modality
  as columns ``<modality>_<j>``; each image / sequence / volume modality as a path column
  ``<modality>_file`` pointing to ``files/<id>__<modality>.npy`` (float32, as built); each task as
  a column of class names (multilabel: one 0/1 column per class, ``<task>__<class>``); then the
  dataset's per-sample ``extras`` and ``meta`` columns (they come back as meta columns).
* Values are the raw inputs before standardisation (:func:`datasets.prepare.keeping_unscaled`),
  floats written with ``%.9g``, which round-trips float32 exactly. A modality absent for a
  sample is an empty cell (or an empty path); a missing label is an empty cell.
* The split: the folder's default rule (seeded split, stratified on the first classification task,
  grouped by patient) is compared with the dataset's split at ``split_seed``; when they differ
  (e.g. ``diabetes-views`` stratifies on target quartiles) a ``split`` column fixes the dataset's
  split at that seed. Without it the folder keeps following ``--split-seed`` like the original.
* Before the folder is renamed into place it is read back and its tensors (inputs, masks,
  targets, label masks, splits) are compared with the original; any difference is an error.

An existing non-empty output folder is refused; the folder is assembled in a hidden temporary
sibling and renamed into place, so an interrupted conversion leaves nothing half-written.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..data import SPLITS, MultimodalData
from ..spec import DatasetFormatError
from .reader import build_folder, seeded_splits, stratify_labels
from .schema import YAML_NAME


def _num(x: float, double: bool = False) -> str:
    return repr(float(x)) if double else "%.9g" % x


def _unique(name: str, taken: set[str]) -> str:
    out = name
    while out in taken:
        out += "_"
    taken.add(out)
    return out


def _file_stem(ids: list[str]) -> list[str]:
    stems, seen = [], set()
    for i, sid in enumerate(ids):
        s = re.sub(r"[^A-Za-z0-9._-]", "_", sid) or f"sample{i}"
        if s in seen:
            s = f"{s}-{i}"
        seen.add(s)
        stems.append(s)
    return stems


def _same_splits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(np.sort(np.asarray(a[s])), np.sort(np.asarray(b[s]))) for s in SPLITS)


def write_folder(data: MultimodalData, out: Path, split_seed: int, source: str) -> dict:
    """Write ``data`` (built under keeping_unscaled) into the empty folder ``out``; returns what was decided."""
    import pandas as pd
    import yaml

    n = len(data)
    taken: set[str] = set()
    table: dict[str, list[str]] = {}
    doc: dict = {"name": data.spec.name.replace(":", "-"),
                 "description": f"written by bench data convert from {source} (split seed {split_seed}); "
                                f"original split rule: {data.spec.split_rule}",
                 "table": "table.csv", "id": _unique("id", taken)}
    table[doc["id"]] = list(data.ids)
    groups = data.groups
    if groups is not None:
        doc["patient"] = _unique("patient", taken)
        table[doc["patient"]] = [str(g) for g in groups]
    # the split column: only when the folder's default rule would not reproduce the dataset's split
    targets = {t: data.targets[t].numpy() for t in data.spec.task_names}
    tmask = {t: data.target_mask[t].numpy() for t in data.spec.task_names}
    strat = stratify_labels(list(data.spec.tasks), targets, tmask)
    try:
        default = seeded_splits(n, split_seed, strat, None if groups is None else np.asarray(groups).astype(str))
        need_split = not _same_splits(default, data.splits)
    except ValueError:
        need_split = True
    if need_split:
        doc["split"] = _unique("split", taken)
        col = [""] * n
        for s in SPLITS:
            for i in data.splits[s]:
                col[int(i)] = s
        table[doc["split"]] = col
    stems = _file_stem(data.ids)
    modalities = []
    for m in data.spec.modalities:
        raw = data.unscaled.get(m.name)
        if raw is None:
            raise DatasetFormatError(f"{source}: no unscaled values of modality {m.name!r} (build it under "
                                     "datasets.prepare.keeping_unscaled())")
        present = data.mask[m.name].numpy()
        if m.is_vector:
            names = [_unique(f"{m.name}_{j}", taken) for j in range(m.shape[0])]
            for j, c in enumerate(names):
                table[c] = [_num(v) if p else "" for v, p in zip(raw[:, j], present)]
            modalities.append({"name": m.name, "kind": m.kind, "columns": names})
        else:
            c = _unique(f"{m.name}_file", taken)
            (out / "files").mkdir(exist_ok=True)
            cells = []
            for i in range(n):
                if present[i]:
                    rel = f"files/{stems[i]}__{m.name}.npy"
                    np.save(out / rel, np.ascontiguousarray(raw[i], dtype=np.float32))
                    cells.append(rel)
                else:
                    cells.append("")
            table[c] = cells
            modalities.append({"name": m.name, "kind": m.kind, "path": c, "file": "npy", "shape": list(m.shape)})
    tasks = []
    for t in data.spec.tasks:
        y, lab = targets[t.name], tmask[t.name]
        classes = list(t.labels) if t.labels else [str(k) for k in range(t.num_classes)]
        if t.kind == "multilabel":
            names = [_unique(f"{t.name}__{re.sub(r'[^A-Za-z0-9._-]', '_', c)}", taken) for c in classes]
            for j, c in enumerate(names):
                table[c] = [str(int(v)) if ok else "" for v, ok in zip(y[:, j], lab)]
            tasks.append({"name": t.name, "kind": t.kind, "columns": names, "classes": classes})
            continue
        c = _unique(t.name, taken)
        if t.kind == "regression":
            table[c] = [_num(v) if ok else "" for v, ok in zip(y, lab)]
            task = {"name": t.name, "kind": t.kind, "label": c}
            if t.sign_metric:
                task["sign_metric"] = True
        else:
            table[c] = [classes[int(v)] if ok else "" for v, ok in zip(y, lab)]
            task = {"name": t.name, "kind": t.kind, "label": c, "classes": classes}
        tasks.append(task)
    for kind, cols in (("extras", data.extras), ("meta", data.meta)):
        for name, values in cols.items():
            values = np.asarray(values)
            c = _unique(name, taken)
            table[c] = [_num(v, values.dtype == np.float64) if np.issubdtype(values.dtype, np.floating) else str(v)
                        for v in values.reshape(n, -1)[:, 0]] if values.ndim <= 1 or values.shape[1:] == (1,) else \
                       [" ".join(map(str, row)) for row in values.reshape(n, -1)]
    doc["modalities"], doc["tasks"] = modalities, tasks
    pd.DataFrame(table, dtype=object).to_csv(out / "table.csv", index=False)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
    (out / YAML_NAME).write_text(f"# {YAML_NAME} of a folder dataset (docs/folder-format.md)\n{text}")
    return {"split_column": need_split, "files": sum(1 for _ in (out / "files").glob("*.npy"))
            if (out / "files").is_dir() else 0}


def _check_out(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DatasetFormatError(f"{folder}: output folder already exists and is not empty; "
                                 "choose another --out or remove it first (conversion never overwrites)")


def _compare(a: MultimodalData, b: MultimodalData) -> list[str]:
    import torch

    out = []
    if list(a.ids) != list(b.ids):
        out.append("ids")
    for m in a.spec.modality_names:
        if not torch.equal(a.inputs[m], b.inputs.get(m, torch.empty(0))):
            out.append(f"inputs of {m!r}")
        if not torch.equal(a.mask[m], b.mask.get(m, torch.empty(0))):
            out.append(f"mask of {m!r}")
    for t in a.spec.task_names:
        ta, tb = a.targets[t], b.targets.get(t)
        if tb is None or not torch.equal(ta[a.target_mask[t]], tb[a.target_mask[t]]):
            out.append(f"targets of {t!r}")
        if not torch.equal(a.target_mask[t], b.target_mask.get(t, torch.empty(0))):
            out.append(f"label mask of {t!r}")
    if not _same_splits(a.splits, b.splits):
        out.append("splits")
    return out


def convert_to_folder(name: str, out: str | os.PathLike, split_seed: int = 0, data_root: str | None = None) -> dict:
    """Write the registered per-sample dataset ``name`` as a folder dataset at ``out``.

    Returns ``{"folder", "samples", "split_column", "files"}``. Raises ValueError for a name that
    cannot be converted (segmentation datasets: ``--to nnunet``) and :class:`DatasetFormatError`
    for an existing non-empty ``out`` or a read-back that differs from the original."""
    from ..prepare import keeping_unscaled
    from ..registry import load_dataset, parse_name

    entry, _ = parse_name(name)
    if entry.segmentation:
        raise ValueError(f"{name} is a segmentation dataset; --to folder writes per-sample datasets "
                         "(segmentation data converts with --to nnunet)")
    out = Path(out).expanduser()
    _check_out(out)
    with keeping_unscaled():
        data = load_dataset(name, split_seed, **({} if entry.embedded else {"data_root": data_root}))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        info = write_folder(data, tmp, split_seed, name)
        back = build_folder(tmp, split_seed, name=f"folder:{out}").validate()
        diff = _compare(data, back)
        if diff:
            raise DatasetFormatError(f"converting {name}: the folder does not read back identically "
                                     f"({', '.join(diff)}); nothing was written")
        if out.exists():  # an empty folder may be replaced
            out.rmdir()
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(out), "samples": len(data), **info}
