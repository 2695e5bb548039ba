"""VinDr-Mammo (M4oE-MT, ICLR 2025): 2 FFDM views per breast; density, BI-RADS.

Expected files, under ``<data root>/vindr-mammo/`` (or ``<data root>/vindr-mammo/1.0.0/``, as
PhysioNet's ``wget -r`` leaves it)::

    breast-level_annotations.csv   columns study_id, image_id, laterality (L/R), view_position
                                   (CC/MLO), breast_birads ("BI-RADS 1".."BI-RADS 5"),
                                   breast_density ("DENSITY A".."DENSITY D"), split
                                   ("training"/"test"); other columns ignored
    images/<study_id>/<image_id>.dicom

``finding_annotations.csv`` (lesion boxes) and ``metadata.csv`` are part of the release but not
read. Where to obtain: PhysioNet, https://physionet.org/content/vindr-mammo/1.0.0/ (credentialed
access; sign the data use agreement).

One sample per **breast** (study_id, laterality); modalities ``cc`` and ``mlo`` (first image by
row order when a view repeats; a missing view is masked). Labels: ``density`` DENSITY A-D -> 0..3;
``birads`` in 3 classes [ours, the paper does not give its grouping; the same map as the other
mammography adapters]: BI-RADS 1 -> negative, 2 and 3 -> benign, 4 and 5 -> recall-or-suspicious.
An empty cell masks that task for the breast; any other value is a problem (file, row, column).

Split: the **official** ``split`` column (training / test); validation is a seeded 20 % of the
training studies (grouped by study_id). VinDr-Mammo has no patient identifier: one study is one
patient's exam, so study_id is the group. A study whose rows are in both splits is a problem.
Images: ``imaging.py`` (VOI LUT / window / min-max, MONOCHROME1 inverted, ``image_size``, default 224;
cached once and memory-mapped).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..problems import Problems
from ..registry import data_root, register_dataset
from .common import read_table
from .imaging import BIRADS3, BIRADS_TO_3, DENSITY, breast_views, class_tasks, locate, mammo_data

NAME = "vindr-mammo"
FOLDERS = ("vindr-mammo", "vindr-mammo/1.0.0")
VIEWS = ("cc", "mlo")
CSV = "breast-level_annotations.csv"
COLUMNS = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "breast_density", "split")
SPLITS = {"training": "train", "test": "test"}
VAL_FRACTION = 0.2
IMAGE_SIZE = 224
OBTAIN = "PhysioNet, https://physionet.org/content/vindr-mammo/1.0.0/ (credentialed access)"


def _locate(root: str | None) -> Path:
    return locate(NAME, data_root(root), FOLDERS, (CSV, "images/"), OBTAIN)


def check(root: str | None, variant: str | None = None) -> Path:
    return _locate(root)


def _label(value: str, prefix: str, allowed: tuple[str, ...]):
    v = value.strip().upper()
    if not v:
        return ""
    if v.startswith(prefix):
        v = v[len(prefix):].strip()
    return v if v in allowed else None


def _breasts(base: Path, problems: Problems):
    path = base / CSV
    df = read_table(path, problems, COLUMNS, dtype=str, keep_default_na=False)
    if df is None:
        return None
    order, files, labels, split_of = [], {}, {}, {}
    study_split: dict[str, tuple[str, int]] = {}
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} row {i + 1} (image_id {r.image_id!r})"
        sid, lat = r.study_id.strip(), r.laterality.strip().upper()
        if lat not in ("L", "R"):
            problems.add(f"{where}, column 'laterality'", f"{r.laterality!r} is not L or R")
            continue
        split = r.split.strip().lower()
        if split not in SPLITS:
            problems.add(f"{where}, column 'split'", f"{r.split!r} is not 'training' or 'test'")
            continue
        if sid in study_split and study_split[sid][0] != split:
            problems.add(f"{where}, column 'split'", f"study_id {sid!r} is in {split!r} here but in "
                         f"{study_split[sid][0]!r} at row {study_split[sid][1]}: a patient in two splits")
            continue
        study_split.setdefault(sid, (split, i + 1))
        dens = _label(r.breast_density, "DENSITY", DENSITY)
        if dens is None:
            problems.add(f"{where}, column 'breast_density'", f"{r.breast_density!r} is not DENSITY A-D")
        bir = _label(r.breast_birads, "BI-RADS", ("1", "2", "3", "4", "5"))
        if bir is None:
            problems.add(f"{where}, column 'breast_birads'", f"{r.breast_birads!r} is not BI-RADS 1-5")
        key = (sid, lat)
        if key not in files:
            order.append(key)
            files[key] = {}
            labels[key] = {"density": DENSITY.index(dens) if dens else None,
                           "birads": BIRADS_TO_3[int(bir)] if bir else None}
            split_of[key] = SPLITS[split]
        v = r.view_position.strip().lower()
        if v in VIEWS and v not in files[key]:
            files[key][v] = base / "images" / sid / f"{r.image_id.strip()}.dicom"
    return order, files, labels, split_of


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    base = _locate(root)
    got = _breasts(base, Problems())
    out = [base / CSV]
    if got:
        out += [f for k in got[0] for f in got[1][k].values() if f.is_file()]
    return out, base


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return list(VIEWS)


def official_splits(split_of: list[str], groups: np.ndarray, split_seed: int) -> dict[str, np.ndarray]:
    """The release's training/test split; val = a seeded ``VAL_FRACTION`` of the training groups."""
    split_of = np.asarray(split_of)
    train_groups = np.unique(groups[split_of == "train"])
    rng = np.random.default_rng(split_seed)
    n_val = int(round(VAL_FRACTION * len(train_groups))) if len(train_groups) > 1 else 0
    val_groups = rng.permutation(train_groups)[:max(1, n_val) if len(train_groups) > 1 else 0]
    is_val = np.isin(groups, val_groups) & (split_of == "train")
    return {"train": np.flatnonzero((split_of == "train") & ~is_val), "val": np.flatnonzero(is_val),
            "test": np.flatnonzero(split_of == "test")}


@register_dataset(NAME, "VinDr-Mammo, per breast (M4oE-MT, ICLR 2025)", embedded=False,
                  modalities="FFDM CC, FFDM MLO images", tasks="density (4 classes), BI-RADS (3 classes)",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, cache_dir: str | None = None,
          image_size: int = IMAGE_SIZE):
    base = _locate(data_root)
    problems = Problems()
    got = _breasts(base, problems)
    if got is None:
        problems.raise_if_any(NAME)
    order, files, labels, split_of = got
    if not order:
        problems.add(str(base / CSV), "lists no image")
    ids = [f"{s}_{lat}" for s, lat in order]
    views, present = breast_views(NAME, base, cache_dir, order, files, VIEWS, ids, image_size, problems, CSV)
    tasks = class_tasks((("density", DENSITY), ("birads", BIRADS3)), lambda t: [labels[k][t] for k in order])
    groups = np.array([s for s, _ in order])
    splits = official_splits([split_of[k] for k in order], groups, split_seed)
    return mammo_data(NAME, "VinDr-Mammo", base, views, present, ids, groups, tasks, split_seed,
                      "the official training/test split; val = a seeded 20% of the training studies",
                      splits, {"image_size": image_size})
