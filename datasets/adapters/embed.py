"""EMBED, the Emory Breast Imaging Dataset (M4oE-MT, ICLR 2025): 4 views; density, 1-year risk, BI-RADS.

Expected files, under ``<data root>/embed/`` (the EMBED Open Data release)::

    tables/EMBED_OpenData_metadata.csv   (or directly in embed/) one row per DICOM; columns
        empi_anon, acc_anon, anon_dicom_path, ViewPosition (CC/MLO/...), ImageLateralityFinal (L/R),
        FinalImageType ("2D" = FFDM, "cview" = synthetic 2-D from tomosynthesis; others ignored)
    tables/EMBED_OpenData_clinical.csv   (or directly in embed/) one row per exam finding; columns
        empi_anon, acc_anon, study_date_anon, side (L/R/B/empty), asses (BI-RADS letter),
        tissueden (1-4, 5 = male), path_severity (0-6, empty)
    images/...                           the DICOMs: ``anon_dicom_path`` is resolved as the part after
                                         ``anon_dicom/`` under ``images/`` (the release's
                                         ``/mnt/NAS2/mammo/anon_dicom/cohort_1/...``), or, when relative,
                                         under ``embed/``

Where to obtain: EMBED Open Data (Emory HITI lab), https://github.com/Emory-HITI/EMBED_Open_Data
(access request, then the AWS Open Data bucket).

One sample per **exam breast** (empi_anon, acc_anon, laterality) with at least one of the four
views ``ffdm_cc``, ``ffdm_mlo``, ``cview_cc``, ``cview_mlo`` (first DICOM by row order per view;
absent views masked). Labels [ours where noted; the paper gives no code for them]:

* ``density``: the exam's ``tissueden`` 1-4 -> A-D (0..3); 5 (male) and empty mask the task.
* ``birads`` (3 classes, the map of every mammography adapter): from ``asses`` of the clinical row of
  this exam and side (else side B or empty): N (BI-RADS 1) -> negative; B (2), P (3) -> benign;
  A (0), S (4), M (5), K (6) -> recall-or-suspicious; X (unknown) or empty masks the task.
* ``risk_1y`` (binary) [ours]: 1 when a clinical row of the same patient, same side (or side B/empty),
  dated 0-365 days after this exam has ``path_severity`` 0 (invasive) or 1 (non-invasive cancer);
  0 when there is no such row and the patient has an exam dated more than 365 days later (one year
  of cancer-free follow-up); otherwise unknown (masked).

Values outside these sets are problems (file, row, column). Split: no official split, so a seeded
60/20/20 split **grouped by empi_anon**. Images: ``imaging.py`` (VOI LUT / window / min-max,
MONOCHROME1 inverted, ``image_size``, default 224; cached once and memory-mapped).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..problems import Problems
from ..registry import data_root, register_dataset
from .common import not_found, read_table
from .imaging import BIRADS3, BIRADS_TO_3, DENSITY, breast_views, class_tasks, mammo_data

NAME = "embed"
FOLDER = "embed"
META, CLIN = "EMBED_OpenData_metadata.csv", "EMBED_OpenData_clinical.csv"
VIEWS = ("ffdm_cc", "ffdm_mlo", "cview_cc", "cview_mlo")
IMAGE_TYPES = {"2D": "ffdm", "CVIEW": "cview"}
META_COLUMNS = ("empi_anon", "acc_anon", "anon_dicom_path", "ViewPosition", "ImageLateralityFinal", "FinalImageType")
CLIN_COLUMNS = ("empi_anon", "acc_anon", "study_date_anon", "side", "asses", "tissueden", "path_severity")
ASSES = {"A": 0, "N": 1, "B": 2, "P": 3, "S": 4, "M": 5, "K": 6, "X": None}
RISK = ("no-cancer-1y", "cancer-1y")
IMAGE_SIZE = 224
OBTAIN = "EMBED Open Data, https://github.com/Emory-HITI/EMBED_Open_Data (access request; AWS Open Data)"


def _tables(base: Path) -> tuple[Path, Path]:
    sub = base / "tables"
    return tuple(sub / f if (sub / f).is_file() else base / f for f in (META, CLIN))


def _locate(root: str | None) -> Path:
    r = data_root(root)
    base = r / FOLDER
    missing = [f"tables/{f}" for f, p in zip((META, CLIN), _tables(base)) if not p.is_file()]
    missing += [] if (base / "images").is_dir() else ["images/"]
    if missing:
        raise not_found(NAME, base, r, missing, OBTAIN)
    return base


def check(root: str | None, variant: str | None = None) -> Path:
    return _locate(root)


def dicom_path(base: Path, value: str) -> Path:
    v = value.strip().replace("\\", "/")
    if "anon_dicom/" in v:
        return base / "images" / v.split("anon_dicom/", 1)[1]
    return base / v.lstrip("/") if not Path(v).is_absolute() else base / "images" / v.lstrip("/")


def _table(path: Path, columns, problems: Problems):
    return read_table(path, problems, columns, dtype=str, keep_default_na=False)


def _breasts(base: Path, problems: Problems):
    meta_path, clin_path = _tables(base)
    meta = _table(meta_path, META_COLUMNS, problems)
    clin = _table(clin_path, CLIN_COLUMNS, problems)
    if meta is None or clin is None:
        return None
    order, files = [], {}
    for i, r in enumerate(meta.itertuples(index=False)):
        kind = IMAGE_TYPES.get(r.FinalImageType.strip().upper())
        view, lat = r.ViewPosition.strip().upper(), r.ImageLateralityFinal.strip().upper()
        if kind is None or view not in ("CC", "MLO"):
            continue
        if lat not in ("L", "R"):
            problems.add(f"{meta_path} row {i + 1}, column 'ImageLateralityFinal'", f"{r.ImageLateralityFinal!r} is not L or R")
            continue
        key = (r.empi_anon.strip(), r.acc_anon.strip(), lat)
        if key not in files:
            order.append(key)
            files[key] = {}
        files[key].setdefault(f"{kind}_{view.lower()}", dicom_path(base, r.anon_dicom_path))
    # clinical rows: parse and check every value
    rows = []
    for i, r in enumerate(clin.itertuples(index=False)):
        where = f"{clin_path} row {i + 1} (acc_anon {r.acc_anon!r})"
        date = pd.to_datetime(r.study_date_anon.strip(), errors="coerce") if r.study_date_anon.strip() else pd.NaT
        if r.study_date_anon.strip() and pd.isna(date):
            problems.add(f"{where}, column 'study_date_anon'", f"{r.study_date_anon!r} is not a date")
        a = r.asses.strip().upper()
        if a and a not in ASSES:
            problems.add(f"{where}, column 'asses'", f"{r.asses!r} is not a BI-RADS letter ({', '.join(ASSES)})")
        d = r.tissueden.strip()
        dens = None
        if d:
            try:
                dens = int(float(d))
                assert float(d) == dens and 1 <= dens <= 5
            except (ValueError, AssertionError):
                problems.add(f"{where}, column 'tissueden'", f"{r.tissueden!r} is not 1-5")
                dens = None
        p = r.path_severity.strip()
        sev = None
        if p:
            try:
                sev = int(float(p))
                assert float(p) == sev and 0 <= sev <= 6
            except (ValueError, AssertionError):
                problems.add(f"{where}, column 'path_severity'", f"{r.path_severity!r} is not 0-6")
                sev = None
        side = r.side.strip().upper()
        rows.append((r.empi_anon.strip(), r.acc_anon.strip(), date, side, a, dens, sev))
    return order, files, rows


def labels_for(order, rows) -> dict[str, list[int | None]]:
    by_acc: dict[str, list] = {}
    by_patient: dict[str, list] = {}
    for row in rows:
        by_acc.setdefault(row[1], []).append(row)
        by_patient.setdefault(row[0], []).append(row)
    out: dict[str, list] = {"density": [], "birads": [], "risk_1y": []}
    for empi, acc, lat in order:
        exam = by_acc.get(acc, [])
        dens = next((r[5] for r in exam if r[5] is not None), None)
        out["density"].append(dens - 1 if dens is not None and dens <= 4 else None)
        same = [r for r in exam if r[3] == lat] + [r for r in exam if r[3] in ("B", "")]
        a = next((r[4] for r in same if r[4]), "")
        out["birads"].append(BIRADS_TO_3[ASSES[a]] if a and ASSES.get(a) is not None else None)
        date = next((r[2] for r in exam if not pd.isna(r[2])), pd.NaT)
        risk = None
        if not pd.isna(date):
            later = [(r, (r[2] - date).days) for r in by_patient.get(empi, []) if not pd.isna(r[2])]
            cancer = any(0 <= days <= 365 and r[6] in (0, 1) and r[3] in (lat, "B", "") for r, days in later)
            risk = 1 if cancer else (0 if any(days > 365 for _, days in later) else None)
        out["risk_1y"].append(risk)
    return out


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    base = _locate(root)
    got = _breasts(base, Problems())
    out = list(_tables(base))
    if got:
        out += [f for k in got[0] for f in got[1][k].values() if f.is_file()]
    return out, base


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return list(VIEWS)


@register_dataset(NAME, "EMBED mammography, per exam breast (M4oE-MT, ICLR 2025)", embedded=False,
                  modalities="FFDM CC/MLO, C-View CC/MLO images",
                  tasks="density (4 classes), 1-year cancer risk (binary), BI-RADS (3 classes)",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, cache_dir: str | None = None,
          image_size: int = IMAGE_SIZE):
    base = _locate(data_root)
    problems = Problems()
    got = _breasts(base, problems)
    if got is None:
        problems.raise_if_any(NAME)
    order, files, rows = got
    if not order:
        problems.add(str(_tables(base)[0]), "lists no FFDM/C-View CC or MLO image")
    ids = [f"{acc}_{lat}" for _, acc, lat in order]
    views, present = breast_views(NAME, base, cache_dir, order, files, VIEWS, ids, image_size, problems, META)
    labels = labels_for(order, rows)
    tasks = class_tasks((("density", DENSITY), ("risk_1y", RISK), ("birads", BIRADS3)), labels.__getitem__)
    groups = np.array([e for e, _, _ in order])
    return mammo_data(NAME, "EMBED Open Data", base, views, present, ids, groups, tasks, split_seed,
                      "seeded 60/20/20 split grouped by empi_anon", None, {"image_size": image_size})
