"""RSNA Screening Mammography Breast Cancer Detection (M4oE-MT, ICLR 2025): 2 FFDM views; density, BI-RADS.

Expected files, under ``<data root>/rsna-mammo/`` (or ``<data root>/rsna-breast-cancer-detection/``,
the Kaggle download's folder name)::

    train.csv                                  columns patient_id, image_id, laterality (L/R),
                                               view (CC/MLO/...), BIRADS (0/1/2, may be empty),
                                               density (A-D, may be empty); other columns ignored
    train_images/<patient_id>/<image_id>.dcm

Where to obtain: Kaggle, competition "RSNA Screening Mammography Breast Cancer Detection"
(https://www.kaggle.com/competitions/rsna-breast-cancer-detection/data; ``kaggle competitions
download -c rsna-breast-cancer-detection``). The competition's test set has no labels and is not read.

One sample per **breast** (patient_id, laterality); modalities ``cc`` and ``mlo`` (the first
image by ``train.csv`` row order when a view was taken more than once; views other than CC and
MLO are not used; a breast without one of the two has that view masked).

Labels (the same maps in every M4oE-MT mammography adapter, ``imaging.py``):
``density`` A/B/C/D -> 0..3; ``birads`` in 3 classes [ours; the paper does not give its grouping]:
BI-RADS 1 -> negative, 2 (and 3) -> benign, 0 (recall), 4, 5, 6 -> recall-or-suspicious. RSNA's
``BIRADS`` is 0 (follow-up needed), 1 (negative) or 2 (normal/benign), so here the three classes are
exactly RSNA's three values. An empty cell masks that task for the breast (only some sites report
density/BI-RADS); any other value is a problem (file, row, column). The breast's label is that of
its first row.

Split: no official labelled split exists, so a seeded 60/20/20 split **grouped by patient_id**
(both breasts of a patient in one split). Images: see ``imaging.py`` (VOI LUT / window / min-max,
MONOCHROME1 inverted, resized to ``image_size`` x ``image_size``, default 224 as the paper;
cached once and memory-mapped). Note: the Kaggle DICOMs are JPEG 2000 / JPEG-LS compressed;
pydicom needs a decoder plugin for them (``pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..problems import Problems
from ..registry import data_root, register_dataset
from .common import read_table
from .imaging import BIRADS3, BIRADS_TO_3, DENSITY, breast_views, class_tasks, locate, mammo_data

NAME = "rsna-mammo"
FOLDERS = ("rsna-mammo", "rsna-breast-cancer-detection")
VIEWS = ("cc", "mlo")
COLUMNS = ("patient_id", "image_id", "laterality", "view", "BIRADS", "density")
RSNA_BIRADS = (0, 1, 2)
IMAGE_SIZE = 224
OBTAIN = ("Kaggle, RSNA Screening Mammography Breast Cancer Detection "
          "(https://www.kaggle.com/competitions/rsna-breast-cancer-detection/data: train.csv, train_images/)")


def _locate(root: str | None) -> Path:
    return locate(NAME, data_root(root), FOLDERS, ("train.csv", "train_images/"), OBTAIN)


def check(root: str | None, variant: str | None = None) -> Path:
    return _locate(root)


def _rows(base: Path, problems: Problems):
    path = base / "train.csv"
    df = read_table(path, problems, COLUMNS, dtype=str, keep_default_na=False)
    return None if df is None else (path, df)


def _parse_birads(v: str):
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f.is_integer() and int(f) in RSNA_BIRADS else None


def _breasts(base: Path, problems: Problems):
    got = _rows(base, problems)
    if got is None:
        return None
    path, df = got
    order: list[tuple[str, str]] = []
    files: dict[tuple[str, str], dict[str, Path]] = {}
    labels: dict[tuple[str, str], dict[str, int | None]] = {}
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} row {i + 1} (image_id {r.image_id!r})"
        pid, lat, view = r.patient_id.strip(), r.laterality.strip().upper(), r.view.strip().upper()
        if not pid or not r.image_id.strip():
            problems.add(where, "empty patient_id or image_id")
            continue
        if lat not in ("L", "R"):
            problems.add(f"{where}, column 'laterality'", f"{r.laterality!r} is not L or R")
            continue
        dens = r.density.strip().upper()
        if dens and dens not in DENSITY:
            problems.add(f"{where}, column 'density'", f"{r.density!r} is not one of A, B, C, D")
        bir = r.BIRADS.strip()
        if bir and _parse_birads(bir) is None:
            problems.add(f"{where}, column 'BIRADS'", f"{r.BIRADS!r} is not one of 0, 1, 2")
        key = (pid, lat)
        if key not in files:
            order.append(key)
            files[key] = {}
            labels[key] = {"density": DENSITY.index(dens) if dens in DENSITY else None,
                           "birads": BIRADS_TO_3[_parse_birads(bir)] if bir and _parse_birads(bir) is not None else None}
        v = view.lower()
        if v in VIEWS and v not in files[key]:
            files[key][v] = base / "train_images" / pid / f"{r.image_id.strip()}.dcm"
    return order, files, labels


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    base = _locate(root)
    got = _breasts(base, Problems())
    out = [base / "train.csv"]
    if got:
        out += [f for k in got[0] for f in got[1][k].values() if f.is_file()]
    return out, base


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return list(VIEWS)


@register_dataset(NAME, "RSNA Screening Mammography, per breast (M4oE-MT, ICLR 2025)", embedded=False,
                  modalities="FFDM CC, FFDM MLO images", tasks="density (4 classes), BI-RADS (3 classes)",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, cache_dir: str | None = None,
          image_size: int = IMAGE_SIZE):
    base = _locate(data_root)
    problems = Problems()
    got = _breasts(base, problems)
    if got is None:
        problems.raise_if_any(NAME)
    order, files, labels = got
    if not order:
        problems.add(str(base / "train.csv"), "lists no image")
        problems.raise_if_any(NAME)
    ids = [f"{p}_{lat}" for p, lat in order]
    views, present = breast_views(NAME, base, cache_dir, order, files, VIEWS, ids, image_size, problems, "train.csv")
    tasks = class_tasks((("density", DENSITY), ("birads", BIRADS3)), lambda t: [labels[k][t] for k in order])
    groups = np.array([p for p, _ in order])
    return mammo_data(NAME, "RSNA Screening Mammography train set", base, views, present, ids, groups, tasks,
                      split_seed, "seeded 60/20/20 split grouped by patient_id", None,
                      {"image_size": image_size})
