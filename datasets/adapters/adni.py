"""ADNI (I2MoE, ICML 2025): image, genomic, clinical and biospecimen; 3-class diagnosis CN/MCI/AD.

Expected files, under ``<data root>/adni/`` (the layout of the reference's ``data/adni/``, built
by Flex-MoE's preprocessing, which the I2MoE README points to)::

    label.csv                                   index column PTID, column DIAGNOSIS (1, 2, 3)
    PTID_splits.json                            optional: {"training": [PTID...], "validation": [...], "testing": [...]}
    image/ADNI_G.npy                            (scans, gray-matter voxels) RAVENS GM maps, one row per scan
    image/ADNI_subj.txt                         one line per row of ADNI_G.npy: <site>_S_<id>_..._<scan date>
    image/BLSA_SPGR+MPRAGE_averagetemplate_muse_seg_DS222.nii.gz   MUSE template; label 150 = gray matter
    genomic/genomic_merged.h5ad                 AnnData, obs index = PTID, X = SNP genotypes (0/1/2, NaN)
                                                (or genomic/genomic_merged.csv: PTID index column + SNP columns)
    clinical/clinical_merged.csv                PTID index column + numeric feature columns (NaN = not recorded)
    biospecimen/biospecimen_merged.csv          PTID index column + numeric feature columns (NaN = not recorded)

Where to obtain: apply for ADNI access at https://adni.loni.usc.edu/ and follow Flex-MoE's
``data/adni/README.md`` (https://github.com/UNITES-Lab/Flex-MoE): DXSUM -> ``label.csv`` (written
by ``clinical_preprocess.py``), MUSE/RAVENS pipeline + ``GetADNI_Ravens.py`` -> ``ADNI_G.npy`` and
``ADNI_subj.txt`` (the template ships in that repo), ``genomic_preprocess.ipynb`` ->
``genomic_merged.h5ad``, ``clinical_preprocess.py`` / ``biospecimen_preprocess.py`` ->
``clinical_merged.csv`` / ``biospecimen_merged.csv``. ``PTID_splits.json`` is the reference's
split file; it is not public, so it is optional here.

Label map: DIAGNOSIS 1 -> 0 ``CN``, 2 -> 1 ``MCI``, 3 -> 2 ``AD`` (the reference subtracts 1).
Any other value (including an empty cell) is a problem, not a dropped row.

Samples: one per PTID of ``label.csv``. Image: the latest scan of that PTID in ``ADNI_subj.txt``
(as the reference); its GM vector is put back into the template volume (C order, as
``GetADNI_Ravens.py`` extracted it) and served as a ``volume3d`` modality of shape
(1, *template shape) -- (1, 91, 109, 91) for the real template, about 3.6 MB per sample in memory.
Variants: ``common`` (default, the paper's setting, ``--use_common_ids True`` in every reference
script: only PTIDs with all four modalities) and ``all`` (every labelled PTID with at least one
modality; a modality a PTID lacks has mask False and zeros, never an imputed row).

Split: with ``PTID_splits.json`` its training/validation/testing lists are used as they are (the
split seed then changes nothing; labelled PTIDs in no list are left out, as in the reference, and
listed PTIDs without a label are ignored). Without it (the file is not public): a seeded 60/20/20
split stratified on the diagnosis, one row per patient (``datasets.splits``).

Departures from the reference, and why:

* Train-only statistics (the reference fits them on all subjects, so test subjects leak in):
  the reference reads ``*_merged_mean.csv`` (mean-imputed over all subjects by the preprocessing
  scripts); we read the un-imputed ``*_merged.csv`` and fill a missing value with the
  training-split column mean. Genomic NaNs: the reference fills the column mode over all
  subjects, we use the training-split mode. The reference scales genomic with a MinMaxScaler(-1, 1)
  fitted on all subjects and leaves clinical/biospecimen unscaled; we z-score every vector modality
  on the training split (``build_data``). The image is normalised with the mean/std of the GM
  values of the training subjects' scans (the reference: of every subject's scan).
* A row of a features file that is entirely NaN means the modality is absent for that PTID.
* The reference's ``ToTensor`` swaps the volume axes to (91, 91, 109); we keep the template's axis
  order (1, 91, 109, 91). Its clinical columns ``PTCOGBEG*``, ``PTADDX*``, ``PTADBEG*`` (onset
  dates that give the diagnosis away) are dropped here too.
* Malformed data stops the build with every problem listed (``DatasetProblems``) instead of
  being filled with -2 or zero.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .common import (
    duplicate_ids,
    fill_from_train,
    make_splits,
    not_found,
    numeric_features,
    read_csv,
    read_split_json,
    read_table,
)

NAME = "adni"
FOLDER = "adni"
MODALITIES = ("image", "genomic", "clinical", "biospecimen")
LABELS = ("CN", "MCI", "AD")
CODES = {1: 0, 2: 1, 3: 2}
VARIANTS = ("common", "all")
GM_LABEL = 150
TEMPLATE = "image/BLSA_SPGR+MPRAGE_averagetemplate_muse_seg_DS222.nii.gz"
REQUIRED = ("label.csv", "image/ADNI_G.npy", "image/ADNI_subj.txt", TEMPLATE, "genomic/genomic_merged.h5ad",
            "clinical/clinical_merged.csv", "biospecimen/biospecimen_merged.csv")
SPLIT_FILE = "PTID_splits.json"
OBTAIN = ("ADNI (https://adni.loni.usc.edu/, access on application) preprocessed with Flex-MoE's "
          "data/adni/README.md (https://github.com/UNITES-Lab/Flex-MoE)")
DROP_PREFIXES = ("PTCOGBEG", "PTADDX", "PTADBEG")


# ---------------------------------------------------------------------------------------------
def _locate(root: str | None) -> tuple[Path, Path]:
    r = data_root(root)
    base = r / FOLDER
    missing = []
    for f in REQUIRED:
        if f == "genomic/genomic_merged.h5ad":
            if not (base / f).is_file() and not (base / "genomic/genomic_merged.csv").is_file():
                missing.append(f"{f} (or genomic/genomic_merged.csv)")
        elif not (base / f).is_file():
            missing.append(f)
    if missing:
        raise not_found(NAME, base, r, missing, OBTAIN)
    return r, base


def _genomic_path(base: Path) -> Path:
    h5 = base / "genomic/genomic_merged.h5ad"
    return h5 if h5.is_file() else base / "genomic/genomic_merged.csv"


def check(root: str | None, variant: str | None = "common") -> Path:
    return _locate(root)[1]


def input_files(root: str | None, variant: str | None = "common") -> tuple[list[Path], Path]:
    _, base = _locate(root)
    files = [base / f for f in REQUIRED if f != "genomic/genomic_merged.h5ad"] + [_genomic_path(base)]
    if (base / SPLIT_FILE).is_file():
        files.append(base / SPLIT_FILE)
    return sorted(files), base


def modality_names(root: str | None = None, variant: str | None = "common") -> list[str]:
    return list(MODALITIES)


def _read_h5ad(path: Path) -> pd.DataFrame:
    """An AnnData file as a frame (obs index x var names), with anndata when installed, else h5py."""
    try:
        import anndata  # type: ignore

        return anndata.read_h5ad(path).to_df()
    except ImportError:
        pass
    try:
        import h5py  # type: ignore
    except ImportError as e:
        raise RuntimeError("reading .h5ad needs anndata or h5py (pip install h5py), or export it to "
                           "genomic/genomic_merged.csv") from e

    def names(group) -> list[str]:
        key = group.attrs.get("_index", "_index")
        return [v.decode() if isinstance(v, bytes) else str(v) for v in group[key][()]]

    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Group):
            from scipy import sparse

            shape = tuple(x.attrs["shape"])
            kind = x.attrs.get("encoding-type", x.attrs.get("h5sparse_format", "csr_matrix"))
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            cls = sparse.csc_matrix if kind.startswith("csc") else sparse.csr_matrix
            arr = cls((x["data"][()], x["indices"][()], x["indptr"][()]), shape=shape).toarray()
        else:
            arr = x[()]
        return pd.DataFrame(np.asarray(arr, np.float64), index=names(f["obs"]), columns=names(f["var"]))


def _features(base: Path, rel: str, ids: dict[str, int], problems: Problems, drop: tuple[str, ...] = ()
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """A PTID-indexed feature table aligned to ``ids``: (values with NaN where absent, present)."""
    path = base / rel
    if path.suffix == ".h5ad":
        try:
            df = _read_h5ad(path)
        except Exception as e:  # noqa: BLE001
            problems.add(str(path), f"cannot be read as AnnData ({type(e).__name__}: {e})")
            return None
    else:
        df = read_csv(path, problems, index_col=0)
        if df is None:
            return None
    df = df.drop(columns=[c for c in df.columns if str(c).startswith(drop)]) if drop else df
    if df.shape[1] == 0:
        problems.add(str(path), "has no feature columns")
        return None
    duplicate_ids(df.index, str(path), "PTID", problems)
    vals = numeric_features(df, str(path), "PTID", problems)
    out = np.full((len(ids), df.shape[1]), np.nan)
    present = np.zeros(len(ids), bool)
    for i, k in enumerate(map(str, df.index)):
        if k in ids and not np.isnan(vals[i]).all():
            out[ids[k]] = vals[i]
            present[ids[k]] = True
    return out, present


def _image(base: Path, ids: dict[str, int], problems: Problems):
    """(GM vectors aligned to ids, present, gray-matter mask, template shape) or None."""
    import nibabel as nib

    npy, txt, tpl = base / "image/ADNI_G.npy", base / "image/ADNI_subj.txt", base / TEMPLATE
    try:
        g = np.load(npy, mmap_mode="r")
    except Exception as e:  # noqa: BLE001
        problems.add(str(npy), f"cannot be read as a .npy array ({type(e).__name__}: {e})")
        g = None
    try:
        atlas = np.asarray(nib.load(str(tpl)).get_fdata())
    except Exception as e:  # noqa: BLE001
        problems.add(str(tpl), f"cannot be read as NIfTI ({type(e).__name__}: {e})")
        atlas = None
    try:
        lines = [ln.strip() for ln in txt.read_text().splitlines()]
    except Exception as e:  # noqa: BLE001
        problems.add(str(txt), f"cannot be read ({type(e).__name__}: {e})")
        lines = None
    if g is None or atlas is None or lines is None:
        return None
    gm = (atlas == GM_LABEL).ravel()
    ok = True
    if g.ndim != 2:
        problems.add(str(npy), f"must be 2-D (scans, gray-matter voxels), has shape {g.shape}")
        return None
    if g.shape[1] != int(gm.sum()):
        problems.add(str(npy), f"has {g.shape[1]} columns but the template has {int(gm.sum())} gray-matter voxels "
                               f"(label {GM_LABEL}) in {tpl.name}")
        ok = False
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != g.shape[0]:
        problems.add(str(txt), f"has {len(lines)} lines for the {g.shape[0]} rows of {npy.name}")
        ok = False
    if not ok:
        return None
    latest: dict[str, tuple[pd.Timestamp, int]] = {}
    for r, line in enumerate(lines):
        parts = line.split("_")
        date = pd.to_datetime(parts[-1], errors="coerce") if len(parts) >= 4 else pd.NaT
        if pd.isna(date):
            problems.add(f"{txt} line {r + 1}", f"{line!r} is not <site>_S_<id>_..._<scan date>")
            continue
        pid = "_".join(parts[:3])
        if pid not in latest or date > latest[pid][0]:
            latest[pid] = (date, r)
    out = np.full((len(ids), g.shape[1]), np.nan, np.float32)
    present = np.zeros(len(ids), bool)
    for pid, (_, r) in latest.items():
        if pid in ids:
            row = np.asarray(g[r], np.float32)
            if not np.isfinite(row).all():
                problems.add(f"{npy} row {r + 1} (PTID {pid!r})", "has NaN/Inf values")
                continue
            out[ids[pid]] = row
            present[ids[pid]] = True
    return out, present, gm, atlas.shape


def _spec(variant: str, template_shape: tuple[int, ...], dims: dict[str, int], source: str) -> DatasetSpec:
    mods = (ModalitySpec("image", "volume3d", (1, *map(int, template_shape))),
            *(ModalitySpec(m, "tabular", (dims[m],)) for m in MODALITIES[1:]))
    rule = ("the reference's PTID_splits.json when present (split seed unused), else seeded 60/20/20 "
            "stratified on diagnosis; one row per patient")
    return DatasetSpec(f"{NAME}:{variant}", mods, (TaskSpec("diagnosis", "multiclass", 3, LABELS),), rule, source,
                       params={"variant": variant})


@register_dataset(NAME, "ADNI Alzheimer's diagnosis, CN/MCI/AD (I2MoE, ICML 2025)", variants=VARIANTS,
                  default_variant="common", embedded=False, modalities="MRI GM volume, genomic, clinical, biospecimen",
                  tasks="multiclass (3 classes)", check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None):
    from ..prepare import build_data

    variant = variant or "common"
    _, base = _locate(data_root)
    problems = Problems()
    label_path = base / "label.csv"
    labels_df = read_table(label_path, problems, ("PTID", "DIAGNOSIS"), dtype={"PTID": str})
    if labels_df is None:  # the other files are still read, so every problem is listed
        labels_df = pd.DataFrame({"PTID": [], "DIAGNOSIS": []})
    pids = labels_df["PTID"].astype(str).tolist()
    duplicate_ids(pids, str(label_path), "PTID", problems)
    y = np.zeros(len(pids), np.int64)
    for i, v in enumerate(labels_df["DIAGNOSIS"].tolist()):
        code = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
        if pd.isna(code) or float(code) not in CODES:
            problems.add(f"{label_path} row {i + 1} (PTID {pids[i]!r}), column 'DIAGNOSIS'",
                         f"{v!r} is not one of 1 (CN), 2 (MCI), 3 (AD)")
        else:
            y[i] = CODES[int(code)]
    ids = {k: i for i, k in enumerate(pids)}

    image = _image(base, ids, problems)
    tables = {"genomic": _features(base, _genomic_path(base).relative_to(base).as_posix(), ids, problems),
              "clinical": _features(base, "clinical/clinical_merged.csv", ids, problems, DROP_PREFIXES),
              "biospecimen": _features(base, "biospecimen/biospecimen_merged.csv", ids, problems)}
    fixed = read_split_json(base / SPLIT_FILE, ids, problems) if (base / SPLIT_FILE).is_file() else None
    problems.raise_if_any(NAME)

    g, g_present, gm, shape = image
    present = {"image": g_present, **{m: tables[m][1] for m in MODALITIES[1:]}}
    stack = np.stack([present[m] for m in MODALITIES], axis=1)
    keep = stack.all(axis=1) if variant == "common" else stack.any(axis=1)
    rows, splits = make_splits(len(pids), y, split_seed, fixed, keep)
    if not len(rows):
        problems.add(str(base), f"no labelled PTID has {'all four modalities' if variant == 'common' else 'any modality'}")
        problems.raise_if_any(NAME)
    train = splits["train"]
    mask = {m: present[m][rows] for m in MODALITIES}
    inputs: dict[str, np.ndarray] = {}
    for m in MODALITIES[1:]:
        x = fill_from_train(tables[m][0][rows], mask[m], train, "mode" if m == "genomic" else "mean")
        x[~mask[m]] = 0.0
        inputs[m] = x
    gi = g[rows]
    tr = train[mask["image"][train]]
    vals = gi[tr] if len(tr) else gi[mask["image"]]
    mean, std = float(vals.mean()), float(vals.std()) or 1.0
    vol = np.full((len(rows), int(np.prod(shape))), -mean / std, np.float32)
    vol[:, gm] = (gi - mean) / std
    vol[~mask["image"]] = 0.0
    inputs["image"] = vol.reshape(len(rows), 1, *shape)
    spec = _spec(variant, shape, {m: inputs[m].shape[1] for m in MODALITIES[1:]},
                 f"ADNI (Flex-MoE preprocessing) read from {base}")
    ids_kept = [pids[r] for r in rows]
    return build_data(spec, inputs, {"diagnosis": y[rows]}, split_seed, ids=ids_kept, mask=mask, splits=splits,
                      groups=np.asarray(ids_kept, dtype=object))
