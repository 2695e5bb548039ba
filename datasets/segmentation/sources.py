"""Segmentation sources: where the M4oE benchmarks' volumes are on disk, as the organisers release them.

Why this module exists: the M4oE-seg track (docs/segmentation.md) trains one model on several
segmentation datasets that each come in their *own* official layout. A :class:`SegSource` is the
common, format-free description of one such dataset (name, modality, label map, channel names, the
labelled cases and their files). Preprocessing (``seg_preprocess.py``) and conversion
(``convert.py``) consume only this description, so adding a dataset means adding one locator here.

Locators (``data_root`` is ``--data-root`` or ``BENCH_DATA_ROOT``, default ``./data``; resolved by
:func:`datasets.registry.data_root`):

* :func:`flare22_source` -- ``<root>/FLARE22/`` holding either the nnU-Net raw style
  ``imagesTr/FLARE22_Tr_0001_0000.nii.gz`` + ``labelsTr/FLARE22_Tr_0001.nii.gz`` or the official zip's
  ``images/`` + ``labels/`` with the same file names. When both are present ``imagesTr/`` wins
  [ours]. 14 classes in the release's order (1 liver ... 13 left kidney).
* :func:`amos22_source` -- ``<root>/amos22/`` with ``dataset.json`` and ``imagesTr``/``labelsTr`` plus
  (optional) ``imagesVa``/``labelsVa``; labelled cases are Tr + Va (``imagesTs`` has no labels and is
  not listed; ``imagesVa`` without a ``labelsVa`` folder, as in the challenge-phase release, is
  treated as unlabelled and skipped [ours], whereas a ``labelsVa`` folder missing some labels is an
  error). ``amos_XXXX`` with id <= 500 is CT, > 500 is MRI (the AMOS convention); ``part``
  selects one. The label map is the release's 16 classes; ``dataset.json`` ``labels`` (either
  ``{"0": "background", ...}`` as AMOS ships it, or nnU-Net v2's ``{"background": 0, ...}``) must
  have exactly the indices 0..15 with names matching those organs (lenient matching: the
  official file spells "arota" and "postcava") or a :class:`DatasetFormatError` names the file. The
  MRI part keeps all 16 classes [ours]: AMOS MRI labels never use 14 (bladder) and 15
  (prostate/uterus), which the nnU-Net metric convention then reports as NaN (both empty), whereas a
  13-organ map would reject any MRI label that did use them, and would give the CT and MRI parts
  different heads for the same organs. The claim that "MRI cases annotate 13 classes" cannot be
  verified without the data; read_case accepts 0..15 either way.
* :func:`atlas23_source` -- ``<root>/atlas-train-dataset-1.0.1/train/imagesTr/im{N}.nii.gz`` +
  ``labelsTr/lb{N}.nii.gz`` (CE-T1 MRI; 1 liver, 2 tumour). Case ids are ``atlas23_{N:04d}`` [ours],
  so that sorting by id is numeric and the ids are valid nnU-Net case names.
* :func:`nnunet_source` -- any nnU-Net v2 raw folder, through :func:`datasets.segmentation.nnunet.open_dataset`
  (which validates ``dataset.json`` and the file listing). Modality is CT when every channel is named
  "CT" (case-insensitive), otherwise MR [ours: nnU-Net normalises per channel; we normalise per
  source, and z-scoring per volume is the safe choice for anything that is not calibrated HU].
  Label values must be contiguous 0..K-1 (the per-dataset heads need it).

Case ids and pairing: an image's case id is its file name without the ending and without the
``_0000`` channel suffix when present (the official AMOS/ATLAS names have none). Only ``.nii.gz`` and
``.nii`` files are considered, hidden files (``._*`` from macOS zips) are skipped; a NIfTI file whose
name does not fit the layout, an image without a label, a label without an image, or two files for
one case raise :class:`DatasetFormatError` naming the file -- nothing is silently skipped, because a
silently smaller dataset changes results. ``cases`` holds labelled cases only, sorted by id.

Absent data raises :class:`DatasetNotFound` with one line naming the folder searched, the data root
and how to set it, the expected files, and where to obtain the data (the wording follows
:func:`datasets.segmentation.external.locate`). Nothing is downloaded and input files are only read.

:func:`read_case` reads one case with :func:`datasets.segmentation.nnunet.load_case` (same reader, validation
and reorientation to RAS with ``nib.as_closest_canonical``) by describing the case to it as a
one-case nnU-Net dataset; that reader does not depend on the ``_XXXX`` naming.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spec import DatasetFormatError, DatasetNotFound
from .nnunet import NnunetCase, NnunetDataset, load_case, modality_of, open_dataset, training_problems

__all__ = [
    "SegSourceCase", "SegSource", "flare22_source", "amos22_source", "atlas23_source", "nnunet_source",
    "read_case", "FLARE22_LABELS", "AMOS22_LABELS", "ATLAS23_LABELS", "AMOS_MR_FIRST_ID",
]

FLARE22_LABELS = {
    0: "background", 1: "liver", 2: "right kidney", 3: "spleen", 4: "pancreas", 5: "aorta",
    6: "inferior vena cava", 7: "right adrenal gland", 8: "left adrenal gland", 9: "gallbladder",
    10: "esophagus", 11: "stomach", 12: "duodenum", 13: "left kidney",
}
AMOS22_LABELS = {
    0: "background", 1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gallbladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "aorta", 9: "inferior vena cava", 10: "pancreas", 11: "right adrenal gland",
    12: "left adrenal gland", 13: "duodenum", 14: "bladder", 15: "prostate/uterus",
}
ATLAS23_LABELS = {0: "background", 1: "liver", 2: "tumour"}
AMOS_MR_FIRST_ID = 501  # AMOS: ids <= 500 are CT, ids > 500 are MRI

# lenient name matching for AMOS dataset.json: a normalised official name must contain one of these
_AMOS_ALIASES = {
    0: ("background",), 1: ("spleen",), 2: ("rightkidney", "kidneyright", "rkidney"),
    3: ("leftkidney", "kidneyleft", "lkidney"), 4: ("gallbladder",), 5: ("esophagus", "oesophagus"),
    6: ("liver",), 7: ("stomach",), 8: ("aorta", "arota"), 9: ("postcava", "venacava", "ivc"),
    10: ("pancreas",), 11: ("rightadrenal", "adrenalright", "radrenal"),
    12: ("leftadrenal", "adrenalleft", "ladrenal"), 13: ("duodenum",), 14: ("bladder",),
    15: ("prostate", "uterus"),
}

_OBTAIN = {
    "flare22": "the MICCAI FLARE 2022 challenge (flare22.grand-challenge.org, registration required; "
               "use the 50 labelled training cases)",
    "amos22": "the AMOS 2022 release (amos22.grand-challenge.org, data on Zenodo record 7262581, CC BY 4.0); "
              "unzip amos22.zip so that amos22/dataset.json exists",
    "atlas23": "the liver ATLAS 2023 challenge (atlas-challenge.u-bourgogne.fr, registration required, "
               "CC BY-NC-SA 4.0; not the stroke ATLAS)",
}
_OFFICIAL = ("flare22", "amos22-ct", "amos22-mr", "atlas23")
_NIFTI_RE = re.compile(r"^(?P<stem>.+?)(?P<ending>\.nii\.gz|\.nii)$")


@dataclass(frozen=True)
class SegSourceCase:
    case_id: str
    images: tuple[Path, ...]   # one per channel
    label: Path | None


@dataclass(frozen=True)
class SegSource:
    name: str                  # "flare22", "amos22-ct", "amos22-mr", "atlas23", "synthetic-organs-*", or folder name
    modality: str              # "CT" or "MR" (drives normalisation)
    labels: dict[int, str]     # class index -> name, 0 = "background", contiguous 0..K-1
    channels: tuple[str, ...]  # channel names
    cases: tuple[SegSourceCase, ...]   # labelled cases only, sorted by id
    root: Path

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def case(self, case_id: str) -> SegSourceCase:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(f"{self.name}: no case {case_id!r} (it has {len(self.cases)} cases)")

    @property
    def files(self) -> tuple[Path, ...]:
        """Every input file (images, then label, per case), e.g. for cache keys."""
        return tuple(p for c in self.cases for p in (*c.images, *([c.label] if c.label is not None else [])))


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _data_root(explicit: str | os.PathLike | None) -> Path:
    # imported lazily: external.py registers datasets and may one day import this module
    from ..registry import data_root
    return data_root(explicit)


def _not_found(name: str, base: Path, root: Path, expected: str, obtain: str, why: str = "data not found") -> DatasetNotFound:
    return DatasetNotFound(
        f"{name}: {why} at {base} (data root {root}, set with --data-root or BENCH_DATA_ROOT); "
        f"expected {expected}; obtain it from {obtain} (nothing is downloaded)")


def _nifti_files(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, stem, ending) of the NIfTI files in ``folder`` (hidden files skipped); [] if absent."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        m = _NIFTI_RE.match(p.name)
        if m:
            out.append((p, m["stem"], m["ending"]))
    return out


def _collect(folder: Path, pattern: re.Pattern, what: str, expected: str,
             make_id: Callable[[re.Match], str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p, stem, _ in _nifti_files(folder):
        m = pattern.fullmatch(stem)
        if m is None:
            raise DatasetFormatError(f"{p}: {what} file name does not match the expected {expected}; "
                                     "rename or remove it")
        cid = make_id(m)
        if cid in out:
            raise DatasetFormatError(f"{p}: second {what} file for case {cid!r} (also {out[cid].name}); "
                                     "keep one file per case")
        out[cid] = p
    return out


def _pair(images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path,
          label_name: Callable[[str, Path], str], image_name: Callable[[str, Path], str]) -> list[SegSourceCase]:
    for cid, p in sorted(images.items()):
        if cid not in labels:
            raise DatasetFormatError(
                f"{p}: image has no label (expected {label_dir / label_name(cid, p)}); "
                "add the label or move the image out of the labelled set")
    for cid, p in sorted(labels.items()):
        if cid not in images:
            raise DatasetFormatError(
                f"{p}: label has no image (expected {image_dir / image_name(cid, p)}); "
                "add the image or remove the label")
    return [SegSourceCase(cid, (images[cid],), labels[cid]) for cid in sorted(images)]


def _ending(p: Path) -> str:
    return ".nii.gz" if p.name.endswith(".nii.gz") else ".nii"


# ----------------------------------------------------------------------------------------------
# FLARE22
# ----------------------------------------------------------------------------------------------

_FLARE_EXPECTED = ("imagesTr/FLARE22_Tr_XXXX_0000.nii.gz + labelsTr/FLARE22_Tr_XXXX.nii.gz (nnU-Net raw style) "
                   "or the official images/FLARE22_Tr_XXXX_0000.nii.gz + labels/FLARE22_Tr_XXXX.nii.gz, "
                   "50 labelled abdominal CT, 13 organs")
_FLARE_IMAGE = re.compile(r"(?P<case>FLARE22_Tr_\d{4})(?:_0000)?")
_FLARE_LABEL = re.compile(r"(?P<case>FLARE22_Tr_\d{4})")


def flare22_source(data_root: str | os.PathLike | None = None) -> SegSource:
    """FLARE22 labelled training CT (14 classes); see the module docstring for the layouts."""
    root = _data_root(data_root)
    base = root / "FLARE22"
    for img_name, lab_name in (("imagesTr", "labelsTr"), ("images", "labels")):
        image_dir, label_dir = base / img_name, base / lab_name
        if not _nifti_files(image_dir):
            continue
        images = _collect(image_dir, _FLARE_IMAGE, "FLARE22 image", "FLARE22_Tr_XXXX_0000.nii.gz",
                          lambda m: m["case"])
        labels = _collect(label_dir, _FLARE_LABEL, "FLARE22 label", "FLARE22_Tr_XXXX.nii.gz", lambda m: m["case"])
        cases = _pair(images, labels, image_dir, label_dir,
                      lambda c, p: c + _ending(p), lambda c, p: f"{c}_0000{_ending(p)}")
        return SegSource("flare22", "CT", dict(FLARE22_LABELS), ("CT",), tuple(cases), base)
    raise _not_found("flare22", base, root, _FLARE_EXPECTED, _OBTAIN["flare22"])


# ----------------------------------------------------------------------------------------------
# AMOS22
# ----------------------------------------------------------------------------------------------

_AMOS_EXPECTED = ("dataset.json + imagesTr/amos_XXXX.nii.gz + labelsTr/amos_XXXX.nii.gz (optionally imagesVa/ + "
                  "labelsVa/), CT ids <= 500, MRI ids > 500")
_AMOS_FILE = re.compile(r"amos_(?P<num>\d{4})")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def _amos_labels(path: Path) -> None:
    """Check AMOS ``dataset.json`` ``labels`` against the release's 16 classes; raise naming the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetFormatError(f"{path}: not valid JSON ({' '.join(str(e).split())}); "
                                 "restore the dataset.json shipped with AMOS22") from None
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise DatasetFormatError(f"{path}: missing or empty \"labels\" object; restore the dataset.json shipped "
                                 "with AMOS22")
    parsed: dict[int, str] = {}
    try:
        if all(isinstance(v, str) for v in labels.values()):   # AMOS: {"0": "background", ...}
            parsed = {int(k): str(v) for k, v in labels.items()}
        else:                                                     # nnU-Net v2: {"background": 0, ...}
            parsed = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{path}: \"labels\" must map class index to name (or name to index), "
                                 f"got {labels!r}") from None
    if sorted(parsed) != sorted(AMOS22_LABELS):
        raise DatasetFormatError(f"{path}: \"labels\" has indices {sorted(parsed)} but AMOS22 has the 16 classes "
                                 f"0..15 ({', '.join(f'{k} {v}' for k, v in AMOS22_LABELS.items())})")
    wrong = [f"{k} {parsed[k]!r} (expected {AMOS22_LABELS[k]})" for k in sorted(parsed)
             if not any(a in _norm(parsed[k]) for a in _AMOS_ALIASES[k])]
    if wrong:
        raise DatasetFormatError(f"{path}: \"labels\" differs from the AMOS22 label map: {'; '.join(wrong)}")


def amos22_source(data_root: str | os.PathLike | None = None, part: str = "ct") -> SegSource:
    """AMOS22 labelled cases (Tr + Va) of one part: ``"ct"`` (ids <= 500) or ``"mr"`` (ids > 500)."""
    if part not in ("ct", "mr"):
        raise ValueError(f"amos22 part must be 'ct' or 'mr', got {part!r}")
    root = _data_root(data_root)
    base = root / "amos22"
    name = f"amos22-{part}"
    if not (base / "dataset.json").is_file() or not _nifti_files(base / "imagesTr"):
        raise _not_found(name, base, root, _AMOS_EXPECTED, _OBTAIN["amos22"])
    _amos_labels(base / "dataset.json")
    cases: list[SegSourceCase] = []
    for split in ("Tr", "Va"):
        image_dir, label_dir = base / f"images{split}", base / f"labels{split}"
        if split == "Va" and not label_dir.is_dir():
            continue  # early releases withheld the validation labels: imagesVa/ is then unlabelled
        images = _collect(image_dir, _AMOS_FILE, "AMOS22 image", "amos_XXXX.nii.gz", lambda m: f"amos_{m['num']}")
        labels = _collect(label_dir, _AMOS_FILE, "AMOS22 label", "amos_XXXX.nii.gz", lambda m: f"amos_{m['num']}")

        def keep(cid: str) -> bool:
            return (int(cid[5:]) >= AMOS_MR_FIRST_ID) == (part == "mr")

        images = {k: v for k, v in images.items() if keep(k)}
        labels = {k: v for k, v in labels.items() if keep(k)}
        cases += _pair(images, labels, image_dir, label_dir, lambda c, p: c + _ending(p), lambda c, p: c + _ending(p))
    ids = [c.case_id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetFormatError(f"{base / 'imagesVa'}: case(s) {dup} appear in both imagesTr/ and imagesVa/; "
                                 "keep each case in one split")
    if not cases:
        what = "MRI cases (ids > 500)" if part == "mr" else "CT cases (ids <= 500)"
        raise _not_found(name, base, root, _AMOS_EXPECTED, _OBTAIN["amos22"], why=f"no labelled {what} found")
    modality = "CT" if part == "ct" else "MR"
    return SegSource(name, modality, dict(AMOS22_LABELS), (modality,),
                     tuple(sorted(cases, key=lambda c: c.case_id)), base)


# ----------------------------------------------------------------------------------------------
# ATLAS23
# ----------------------------------------------------------------------------------------------

_ATLAS_EXPECTED = ("train/imagesTr/im{N}.nii.gz + train/labelsTr/lb{N}.nii.gz, N = 0..59, CE-T1 liver MRI "
                   "(liver + tumour)")


def atlas23_source(data_root: str | os.PathLike | None = None) -> SegSource:
    """ATLAS 2023 labelled training MRI (3 classes); case ids ``atlas23_{N:04d}``."""
    root = _data_root(data_root)
    base = root / "atlas-train-dataset-1.0.1"
    image_dir, label_dir = base / "train" / "imagesTr", base / "train" / "labelsTr"
    if not _nifti_files(image_dir):
        raise _not_found("atlas23", base, root, _ATLAS_EXPECTED, _OBTAIN["atlas23"])
    images = _collect(image_dir, re.compile(r"im(?P<n>\d+)"), "ATLAS23 image", "im{N}.nii.gz",
                      lambda m: f"atlas23_{int(m['n']):04d}")
    labels = _collect(label_dir, re.compile(r"lb(?P<n>\d+)"), "ATLAS23 label", "lb{N}.nii.gz",
                      lambda m: f"atlas23_{int(m['n']):04d}")
    cases = _pair(images, labels, image_dir, label_dir,
                  lambda c, p: f"lb{int(c[8:])}{_ending(p)}", lambda c, p: f"im{int(c[8:])}{_ending(p)}")
    return SegSource("atlas23", "MR", dict(ATLAS23_LABELS), ("CE-T1",), tuple(cases), base / "train")


# ----------------------------------------------------------------------------------------------
# nnU-Net v2 raw folders
# ----------------------------------------------------------------------------------------------

def nnunet_source(path: str | os.PathLike, name: str | None = None) -> SegSource:
    """Any nnU-Net v2 raw folder (labelled ``imagesTr``/``labelsTr`` cases); ``name`` defaults to the folder name."""
    ds = open_dataset(path)
    cases = tuple(SegSourceCase(c.case_id, c.images, c.label) for c in ds.cases if c.label is not None)
    problems = training_problems(ds.root, ds.labels, [c.case_id for c in cases])
    if problems:
        raise problems[0]
    labels = {v: k for k, v in sorted(ds.labels.items(), key=lambda kv: kv[1])}
    channels = tuple(ds.channel_names[c] for c in sorted(ds.channel_names))
    modality = modality_of(channels)
    return SegSource(name or ds.root.name, modality, labels, channels, cases, ds.root)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def read_case(source: SegSource, case: SegSourceCase | str, *, validate: bool = True,
              reorient: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one labelled case: ``(image (C, X, Y, Z) float32, label (X, Y, Z) uint8/int16, meta)`` in RAS.

    Uses :func:`datasets.segmentation.nnunet.load_case` (checks grids, affines, NaN/Inf, label values against
    ``source.labels``). ``meta`` is load_case's (``spacing`` (X, Y, Z) mm, ``affine``, ``orientation``,
    ``original_orientation``, ``shape``, ``case_id``) plus ``domain``, ``modality`` and ``files``.
    """
    if isinstance(case, str):
        try:
            case = source.case(case)
        except KeyError as e:
            raise DatasetFormatError(f"{source.root}: {e.args[0]}") from None
    if case.label is None:
        raise DatasetFormatError(f"{case.images[0]}: case {case.case_id!r} has no label; read_case reads labelled "
                                 "cases only")
    ds = NnunetDataset(root=source.root, channel_names=dict(enumerate(source.channels)),
                       labels={n: i for i, n in source.labels.items()}, file_ending=_ending(case.images[0]),
                       cases=(), test_cases=())
    try:
        image, label, meta = load_case(ds, NnunetCase(case.case_id, tuple(case.images), case.label),
                                       validate=validate, reorient=reorient)
    except DatasetFormatError as e:
        msg = str(e)
        if source.name in _OFFICIAL:  # their label map is fixed by the release, not by an nnU-Net dataset.json
            msg = msg.replace("; fix the label map or add the values to dataset.json labels",
                              "; the label file does not follow the official label map")
            msg = msg.replace("dataset.json labels", f"the {source.name} label map")
        raise DatasetFormatError(msg) from None
    meta = dict(meta, domain=source.name, modality=source.modality,
                files=[str(p) for p in case.images] + [str(case.label)])
    return image, label, meta


def source_files(sources: list[SegSource]) -> tuple[list[Path], Path]:
    """Every file the sources are read from (their cases and any ``dataset.json``), and their common root."""
    files = [p for s in sources for p in s.files]
    files += [s.root / "dataset.json" for s in sources if (s.root / "dataset.json").is_file()]
    root = Path(os.path.commonpath([str(s.root) for s in sources])) if sources else None
    return files, root
