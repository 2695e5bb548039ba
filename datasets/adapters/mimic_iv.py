"""MIMIC-IV (I2MoE, ICML 2025): lab, clinical-note embedding and diagnosis-code features; mortality.

Expected files, under ``<data root>/mimic-iv/`` (or ``<data root>/mimic4 Dataset/``, the reference's
folder name ``data/mimic4 Dataset/``)::

    labels.csv                 index column subject_id, column one_year_mortality (0 or 1)
    lab_x.pt                   (patients, lab features)  torch tensor or NumPy array, rows in labels.csv order
    note_x.pt                  (patients, note-embedding dims), rows in labels.csv order
    code_x.pt                  (patients, diagnosis-code features), rows in labels.csv order
    PTID_splits_mimic.json     optional: {"training": [subject_id...], "validation": [...], "testing": [...]}

Where to obtain: MIMIC-IV v3.1 (and MIMIC-IV-Note for the notes) from PhysioNet
(https://physionet.org/, credentialed access), processed as described in Appendix E.4 of the I2MoE
paper (arXiv 2505.19190); the reference repository (https://github.com/Raina-Xin/I2MoE) ships no
preprocessing script for it, only the loader ``src/common/datasets/mimic.py`` that reads the files
above. ``PTID_splits_mimic.json`` is not public, so it is optional here.

Label map: ``one_year_mortality`` 0 -> ``survived``, 1 -> ``died`` (binary, two logits). The paper
and the reference predict one-year mortality (the column above), not in-hospital mortality.
Any other value (including an empty cell) is a problem.

Rows: the reference puts row i of every ``*_x.pt`` at row i of ``labels.csv`` (positional), so each
array must have exactly as many rows as ``labels.csv``. A row that is entirely NaN means the
modality is absent for that patient: mask False, zeros (the reference zero-fills NaN). Variants:
``common`` (default; the reference scripts' ``--use_common_ids True``: patients with all three
modalities -- every patient when no row is all-NaN, the paper's 9,003) and ``all`` (every patient
with at least one modality, absent ones masked).

Split: with ``PTID_splits_mimic.json`` its lists are used as they are (split seed unused; patients
in no list are left out, as in the reference). Without it: a seeded 60/20/20 split stratified on
the label, one row per patient.

Departures from the reference, and why:

* NaN cells inside a present row (e.g. a lab not measured) are filled with the training split's
  column mean (the reference replaces them with 0 on unscaled values); all vector modalities are
  z-scored with training-split statistics (``build_data``; the reference does not scale them).
* +-Inf, a wrong array shape or row count, an unreadable file, labels outside {0, 1} and a patient
  in two splits stop the build with every problem listed (``DatasetProblems``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .common import duplicate_ids, fill_from_train, make_splits, not_found, read_split_json, read_table

NAME = "mimic-iv"
FOLDERS = ("mimic-iv", "mimic4 Dataset")
MODALITIES = ("lab", "note", "code")
FILES = {"lab": "lab_x.pt", "note": "note_x.pt", "code": "code_x.pt"}
REQUIRED = ("labels.csv", *FILES.values())
SPLIT_FILE = "PTID_splits_mimic.json"
LABEL_COL, ID_COL = "one_year_mortality", "subject_id"
LABELS = ("survived", "died")
VARIANTS = ("common", "all")
OBTAIN = ("MIMIC-IV v3.1 on PhysioNet (https://physionet.org/, credentialed) processed as in Appendix E.4 of "
          "the I2MoE paper (arXiv 2505.19190)")


def _locate(root: str | None) -> tuple[Path, Path]:
    r = data_root(root)
    for folder in FOLDERS:
        if (r / folder).is_dir():
            base = r / folder
            break
    else:
        base = r / FOLDERS[0]
    missing = [f for f in REQUIRED if not (base / f).is_file()]
    if missing:
        where = base if base.is_dir() else f"{r / FOLDERS[0]} (or {r / FOLDERS[1]})"
        raise not_found(NAME, where, r, missing, OBTAIN)
    return r, base


def check(root: str | None, variant: str | None = "common") -> Path:
    return _locate(root)[1]


def input_files(root: str | None, variant: str | None = "common") -> tuple[list[Path], Path]:
    _, base = _locate(root)
    files = [base / f for f in REQUIRED] + ([base / SPLIT_FILE] if (base / SPLIT_FILE).is_file() else [])
    return sorted(files), base


def modality_names(root: str | None = None, variant: str | None = "common") -> list[str]:
    return list(MODALITIES)


#: NumPy's numeric dtypes: the only classes besides tensors a feature file may name
_NUMERIC = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
            np.float16, np.float32, np.float64)


def load_array_file(path: Path):
    """A tensor or NumPy array saved with ``torch.save``, read with ``weights_only=True``: tensors, plain
    containers and NumPy arrays of numeric dtypes only, so a planted file cannot run code (a pickle
    naming any other class is refused by torch's restricted unpickler)."""
    import torch
    from numpy._core.multiarray import _reconstruct

    allowed = [np.ndarray, _reconstruct, np.dtype, *(type(np.dtype(t)) for t in _NUMERIC)]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_array(path: Path, n: int, ids: list[str], problems: Problems) -> tuple[np.ndarray, np.ndarray] | None:
    import torch

    try:
        obj = load_array_file(path)
    except Exception as e:  # noqa: BLE001
        first = str(e).splitlines()[0] if str(e) else ""
        blocked = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported global" in line]
        if blocked:   # torch's restricted unpickler met a class it does not allow
            problems.add(str(path), f"holds Python objects other than tensors / numeric arrays ({blocked[0]}): "
                         "refused, not run (save the features with torch.save(tensor) or as a NumPy array)")
        else:
            problems.add(str(path), f"cannot be read as a tensor/array ({type(e).__name__}: {first})")
        return None
    try:
        arr = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
        arr = arr.astype(np.float64)
    except Exception as e:  # noqa: BLE001
        problems.add(str(path), f"cannot be read as a tensor/array ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        return None
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        problems.add(str(path), f"has shape {arr.shape}; expected ({n}, features), one row per row of labels.csv")
        return None
    for i in np.flatnonzero(np.isinf(arr).any(axis=1))[:20]:
        problems.add(f"{path} row {i + 1} ({ID_COL} {ids[i]!r}), column {int(np.flatnonzero(np.isinf(arr[i]))[0])}",
                     "is +-Inf")
    present = ~np.isnan(arr).all(axis=1)
    return arr, present


def _spec(variant: str, dims: dict[str, int], source: str) -> DatasetSpec:
    kinds = {"lab": "tabular", "note": "embedding", "code": "tabular"}
    rule = ("the reference's PTID_splits_mimic.json when present (split seed unused), else seeded 60/20/20 "
            "stratified on the label; one row per patient")
    return DatasetSpec(f"{NAME}:{variant}", tuple(ModalitySpec(m, kinds[m], (dims[m],)) for m in MODALITIES),
                       (TaskSpec("mortality", "binary", 2, LABELS),), rule, source, params={"variant": variant})


@register_dataset(NAME, "MIMIC-IV one-year mortality from lab, notes and codes (I2MoE, ICML 2025)", variants=VARIANTS,
                  default_variant="common", embedded=False, modalities="lab, note embedding, diagnosis codes",
                  tasks="binary", check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None):
    from ..prepare import build_data

    variant = variant or "common"
    _, base = _locate(data_root)
    problems = Problems()
    label_path = base / "labels.csv"
    df = read_table(label_path, problems, (ID_COL, LABEL_COL), dtype={ID_COL: str})
    if df is None:
        problems.raise_if_any(NAME)  # without labels.csv the arrays cannot be checked (rows are positional)
    ids = df[ID_COL].astype(str).tolist()
    duplicate_ids(ids, str(label_path), ID_COL, problems)
    y = np.zeros(len(ids), np.int64)
    for i, v in enumerate(df[LABEL_COL].tolist()):
        code = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
        if pd.isna(code) or float(code) not in (0.0, 1.0):
            problems.add(f"{label_path} row {i + 1} ({ID_COL} {ids[i]!r}), column {LABEL_COL!r}", f"{v!r} is not 0 or 1")
        else:
            y[i] = int(code)
    arrays = {m: _load_array(base / FILES[m], len(ids), ids, problems) for m in MODALITIES}
    index = {k: i for i, k in enumerate(ids)}
    fixed = read_split_json(base / SPLIT_FILE, index, problems, ID_COL) if (base / SPLIT_FILE).is_file() else None
    problems.raise_if_any(NAME)

    stack = np.stack([arrays[m][1] for m in MODALITIES], axis=1)
    keep = stack.all(axis=1) if variant == "common" else stack.any(axis=1)
    rows, splits = make_splits(len(ids), y, split_seed, fixed, keep)
    if not len(rows):
        problems.add(str(base), f"no patient has {'all three modalities' if variant == 'common' else 'any modality'}")
        problems.raise_if_any(NAME)
    mask = {m: arrays[m][1][rows] for m in MODALITIES}
    inputs = {}
    for m in MODALITIES:
        x = fill_from_train(arrays[m][0][rows], mask[m], splits["train"])
        x[~mask[m]] = 0.0
        inputs[m] = x
    spec = _spec(variant, {m: inputs[m].shape[1] for m in MODALITIES}, f"MIMIC-IV (I2MoE processing) read from {base}")
    kept = [ids[r] for r in rows]
    return build_data(spec, inputs, {"mortality": y[rows]}, split_seed, ids=kept, mask=mask, splits=splits,
                      groups=np.asarray(kept, dtype=object))
