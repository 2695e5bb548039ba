"""Reader and validator for nnU-Net v2 *raw* dataset folders (NIfTI, read with nibabel).

Layout (nnU-Net v2, "raw" format)::

    DatasetXXX_Name/
      dataset.json   {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, ...},
                      "numTraining": N, "file_ending": ".nii.gz"}
      imagesTr/      <case>_<XXXX>.nii.gz   one file per channel; XXXX is the 4-digit channel index
      labelsTr/      <case>.nii.gz          integer label map on the image grid
      imagesTs/      optional test images (same naming)
      labelsTs/      optional test labels

:func:`open_dataset` parses ``dataset.json`` and lists the files (no voxel data is read); it stops at
the first problem. :func:`load_case` reads one case as arrays, honouring voxel spacing (header
zooms) and orientation (affine); by default it reorients to RAS with ``nib.as_closest_canonical``.
:func:`check_dataset` reports *every* problem in a folder at once, one line per problem, each
naming the file.

What is validated:

* ``dataset.json``: present, valid JSON, keys ``channel_names`` (legacy ``modality`` accepted),
  ``labels``, ``numTraining``, ``file_ending``; channel indices 0..C-1; integer label values,
  unique, including background 0 (region-based labels, i.e. lists, are rejected as unsupported);
  a NIfTI ``file_ending`` (``.nii.gz`` or ``.nii``).
* files: one image per channel for every case, no unknown channel indices, file names of the
  form ``<case>_<XXXX>``, a label for every training case, no label without images, and
  ``numTraining`` equal to the number of training cases.
* contents: readable (not truncated) 3-D NIfTI-1 or -2; a ``.nii.gz`` is decompressed to its end
  so that gzip verifies its CRC32 and length (nibabel alone stops after the voxel bytes, so a
  flipped bit could give wrong voxels without error); all channels of a case and its label on the
  same grid (equal shapes, affines equal within ``atol=1e-3``); no NaN/Inf in images; label values
  integer and listed in ``dataset.json`` ``labels``. Every read goes through one function, so
  ``load_case`` (hence preprocessing and training) verifies the checksum as ``check_dataset`` does.
* training-path rules (``check_dataset`` only; ``nnunet:<folder>`` refuses the same): label values
  contiguous 0..K-1 and at least one labelled training case (:func:`training_problems`, shared
  with ``seg_sources.nnunet_source``); at least 3 cases for the train/val/test split
  (``seg_data.split_cases`` itself); and, when every channel is named CT, foreground (label > 0)
  with non-constant intensities in the training split for CT normalisation -- flagged when some
  split seed could give a training split without it, from the same samples ``seg_preprocess`` takes.

Inputs are only read, never modified. Nothing is downloaded: the folder must already exist
locally; a missing folder or ``dataset.json`` raises :class:`DatasetNotFound` saying what was
expected and where. :func:`write_case` and :func:`write_dataset_json` write this layout (used by
the tests and by synthetic dataset generators).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..spec import DatasetError, DatasetFormatError, DatasetNotFound

__all__ = [
    "NnunetCase", "NnunetDataset", "open_dataset", "load_case", "check_dataset", "reorient_to_ras",
    "write_case", "write_dataset_json", "modality_of", "training_problems",
]

NIFTI_ENDINGS = (".nii.gz", ".nii")
AFFINE_ATOL = 1e-3
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_GZIP_CHUNK = 1 << 20
_NIFTI_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}   # header size -> image class
_READ_ERRORS = (ImageFileError, HeaderDataError, zlib.error, EOFError, OSError, ValueError, MemoryError)
_LAYOUT_HINT = "an nnU-Net v2 raw dataset folder holds dataset.json, imagesTr/<case>_<XXXX>.nii.gz and labelsTr/<case>.nii.gz"


@dataclass(frozen=True)
class NnunetCase:
    case_id: str
    images: tuple[Path, ...]      # one per channel, in channel order
    label: Path | None


@dataclass(frozen=True)
class NnunetDataset:
    root: Path
    channel_names: dict[int, str]
    labels: dict[str, int]        # name -> value
    file_ending: str
    cases: tuple[NnunetCase, ...]        # training cases (imagesTr/labelsTr), sorted by id
    test_cases: tuple[NnunetCase, ...]   # imagesTs (labelsTs where present), sorted by id

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)


# ----------------------------------------------------------------------------------------------
# dataset.json
# ----------------------------------------------------------------------------------------------

@dataclass
class _Meta:
    """Parsed dataset.json; a field is None when it was missing or invalid (problem recorded)."""

    channel_names: dict[int, str] | None = None
    labels: dict[str, int] | None = None
    file_ending: str | None = None
    num_training: int | None = None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DatasetNotFound(f"{root}: nnU-Net dataset folder not found; {_LAYOUT_HINT} (nothing is downloaded)")
    if not root.is_dir():
        raise DatasetNotFound(f"{root}: is not a folder; {_LAYOUT_HINT}")


def _read_dataset_json(root: Path) -> tuple[_Meta, list[DatasetError]]:
    meta = _Meta()
    path = root / "dataset.json"
    if not path.is_file():
        return meta, [DatasetNotFound(f"{path}: dataset.json not found; {_LAYOUT_HINT}")]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return meta, [DatasetFormatError(f"{path}: not valid JSON ({_one_line(e)}); fix the syntax of dataset.json")]
    if not isinstance(raw, dict):
        return meta, [DatasetFormatError(f"{path}: top level must be a JSON object, got {type(raw).__name__}")]

    problems: list[DatasetError] = []

    def bad(msg: str) -> None:
        problems.append(DatasetFormatError(f"{path}: {msg}"))

    # channel_names ("modality" is the nnU-Net v1 name, still accepted by v2)
    channels = raw.get("channel_names", raw.get("modality"))
    if channels is None:
        bad('missing key "channel_names"; add e.g. "channel_names": {"0": "CT"}')
    elif not isinstance(channels, dict) or not channels:
        bad(f'"channel_names" must be a non-empty object mapping channel index to name, got {channels!r}')
    else:
        try:
            parsed = {int(k): str(v) for k, v in channels.items()}
        except (TypeError, ValueError):
            bad(f'"channel_names" keys must be channel indices "0", "1", ..., got {sorted(channels)}')
        else:
            if sorted(parsed) != list(range(len(parsed))):
                bad(f'"channel_names" indices must be 0..{len(parsed) - 1}, got {sorted(parsed)}')
            else:
                meta.channel_names = dict(sorted(parsed.items()))

    labels = raw.get("labels")
    if labels is None:
        bad('missing key "labels"; add e.g. "labels": {"background": 0, "foreground": 1}')
    elif not isinstance(labels, dict) or not labels:
        bad(f'"labels" must be a non-empty object mapping label name to integer value, got {labels!r}')
    elif any(isinstance(v, (list, tuple)) for v in labels.values()):
        regions = sorted(k for k, v in labels.items() if isinstance(v, (list, tuple)))
        bad(f"region-based labels are not supported (labels {regions} are lists); "
            "give every label a single integer value")
    elif any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in labels.values()):
        bad(f'"labels" values must be non-negative integers, got {labels!r}')
    elif len(set(labels.values())) != len(labels):
        bad(f'"labels" values must be unique, got {labels!r}')
    elif 0 not in labels.values():
        bad(f'"labels" must include background with value 0, got {labels!r}')
    else:
        meta.labels = {str(k): int(v) for k, v in labels.items()}

    ending = raw.get("file_ending")
    if ending is None:
        bad('missing key "file_ending"; add "file_ending": ".nii.gz"')
    elif ending not in NIFTI_ENDINGS:
        bad(f'"file_ending" {ending!r} is not supported by this NIfTI reader; use one of {list(NIFTI_ENDINGS)}')
    else:
        meta.file_ending = ending

    n = raw.get("numTraining")
    if n is None:
        bad('missing key "numTraining"; set it to the number of training cases in imagesTr/')
    elif isinstance(n, bool) or not isinstance(n, int) or n < 0:
        bad(f'"numTraining" must be a non-negative integer, got {n!r}')
    else:
        meta.num_training = n
    return meta, problems


# ----------------------------------------------------------------------------------------------
# file listing
# ----------------------------------------------------------------------------------------------

@dataclass
class _RawCase:
    case_id: str
    images: dict[int, Path]
    label: Path | None


def _files(folder: Path, ending: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(ending) and not p.name.startswith(".") and p.is_file())


def _list_images(folder: Path, ending: str, problems: list[DatasetError]) -> dict[str, dict[int, Path]]:
    out: dict[str, dict[int, Path]] = {}
    for p in _files(folder, ending):
        m = _CHANNEL_RE.match(p.name[: -len(ending)])
        if m is None:
            problems.append(DatasetFormatError(
                f"{p}: image file name does not end in _XXXX (4-digit channel index); rename it to <case>_0000{ending}"))
            continue
        out.setdefault(m["case"], {})[int(m["channel"])] = p
    return out


def _scan_split(root: Path, split: str, ending: str, channels: dict[int, str] | None,
                problems: list[DatasetError]) -> list[_RawCase] | None:
    """List one split; None when the split is absent (allowed for Ts only)."""
    img_dir, lab_dir = root / f"images{split}", root / f"labels{split}"
    if not img_dir.is_dir():
        if split == "Tr":
            problems.append(DatasetFormatError(
                f"{img_dir}: folder missing; training images go in imagesTr/<case>_<XXXX>{ending}"))
        elif lab_dir.is_dir() and _files(lab_dir, ending):
            problems.append(DatasetFormatError(
                f"{img_dir}: folder missing but labelsTs/ holds labels; add imagesTs/ or remove labelsTs/"))
        return None
    images = _list_images(img_dir, ending, problems)
    labels: dict[str, Path] = {}
    has_labels = lab_dir.is_dir()
    if has_labels:
        labels = {p.name[: -len(ending)]: p for p in _files(lab_dir, ending)}
    elif split == "Tr":
        problems.append(DatasetFormatError(f"{lab_dir}: folder missing; training labels go in labelsTr/<case>{ending}"))

    # without a usable dataset.json, expect every channel index seen anywhere in this split
    expected = channels if channels is not None else {
        c: f"channel {c}" for c in sorted({c for chans in images.values() for c in chans})}
    cases: list[_RawCase] = []
    for case_id in sorted(set(images) | set(labels)):
        label = labels.get(case_id)
        if case_id not in images:
            problems.append(DatasetFormatError(
                f"{label}: label file has no image files (expected {img_dir / (case_id + '_0000' + ending)}); "
                "remove the label or add its images"))
            continue
        chans = images[case_id]
        for ch in expected:
            if ch not in chans:
                problems.append(DatasetFormatError(
                    f"{img_dir / f'{case_id}_{ch:04d}{ending}'}: missing channel {ch} ({expected[ch]}) of case "
                    f"{case_id!r}; every case needs one file per channel in dataset.json channel_names"))
        if channels is not None:
            for ch in sorted(set(chans) - set(channels)):
                problems.append(DatasetFormatError(
                    f"{chans[ch]}: channel index {ch} is not in dataset.json channel_names {sorted(channels)}; "
                    "rename the file or add the channel to dataset.json"))
        if label is None and split == "Tr" and has_labels:
            problems.append(DatasetFormatError(
                f"{lab_dir / (case_id + ending)}: missing label of training case {case_id!r}; "
                "add it or move the case's images to imagesTs/"))
        cases.append(_RawCase(case_id, dict(sorted(chans.items())), label))
    return cases


def _scan(root: Path) -> tuple[_Meta, list[_RawCase], list[_RawCase], list[DatasetError]]:
    _check_root(root)
    meta, problems = _read_dataset_json(root)
    ending = meta.file_ending or ".nii.gz"
    train = _scan_split(root, "Tr", ending, meta.channel_names, problems)
    test = _scan_split(root, "Ts", ending, meta.channel_names, problems) or []
    if train is not None and meta.num_training is not None and len(train) != meta.num_training:
        problems.append(DatasetFormatError(
            f"{root / 'dataset.json'}: numTraining is {meta.num_training} but imagesTr/ holds {len(train)} cases; "
            f"set numTraining to {len(train)} or add the missing cases"))
    return meta, train or [], test, problems


def open_dataset(root: str | os.PathLike) -> NnunetDataset:
    """Parse ``dataset.json`` and list the case files (no voxel data is read).

    Raises :class:`DatasetNotFound` when the folder or ``dataset.json`` is missing and
    :class:`DatasetFormatError` for the first structural problem (bad JSON, missing keys, missing
    channel file, label without images, numTraining mismatch, ...).
    """
    root = Path(root)
    meta, train, test, problems = _scan(root)
    if problems:
        raise problems[0]
    assert meta.channel_names is not None and meta.labels is not None and meta.file_ending is not None

    def build(raw: list[_RawCase]) -> tuple[NnunetCase, ...]:
        return tuple(NnunetCase(r.case_id, tuple(r.images[c] for c in meta.channel_names), r.label) for r in raw)

    return NnunetDataset(root=root, channel_names=dict(meta.channel_names), labels=dict(meta.labels),
                         file_ending=meta.file_ending, cases=build(train), test_cases=build(test))


# ----------------------------------------------------------------------------------------------
# reading and content checks
# ----------------------------------------------------------------------------------------------

@dataclass
class _Vol:
    path: Path
    img: nib.Nifti1Image
    data: np.ndarray


def _gunzip_verified(raw: io.BufferedIOBase) -> io.BytesIO:
    """Decompress a whole ``.gz`` stream, so that gzip checks every member's CRC32 and length.

    nibabel alone stops once it has the voxel bytes and never reaches the trailer, so a flipped bit
    in the compressed data could yield wrong voxels without any error. Memory: the compressed side
    streams in 1 MiB reads; the decompressed file is held once while the array is copied out of it.
    """
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        shutil.copyfileobj(gz, out, _GZIP_CHUNK)
    out.seek(0)
    return out


def _nifti_class(head: bytes) -> type[nib.Nifti1Image] | type[nib.Nifti2Image]:
    """NIfTI-1 or -2 from the header-size field (either byte order), as nib.load decides."""
    for order in ("little", "big"):
        size = int.from_bytes(head[:4], order)
        if size in _NIFTI_CLASSES:
            return _NIFTI_CLASSES[size]
    raise ImageFileError(f"header size field {int.from_bytes(head[:4], 'little')} is neither 348 (NIfTI-1) "
                         "nor 540 (NIfTI-2)")


def _read(path: Path) -> _Vol:
    """Read one NIfTI file fully; any failure becomes a one-line DatasetFormatError naming it.

    Every reader (load_case, check_dataset, so preprocessing and training too) goes through here,
    so a ``.nii.gz`` is always checksum-verified before its voxels are used.
    """
    def unreadable(e: BaseException) -> DatasetFormatError:
        return DatasetFormatError(f"{path}: unreadable or truncated NIfTI ({type(e).__name__}: {_one_line(e)}); "
                                  "re-export or re-copy the file")

    buf = None
    if path.name.endswith(".gz"):
        try:
            raw = open(path, "rb")
        except OSError as e:
            raise unreadable(e) from None
        with raw:
            try:
                buf = _gunzip_verified(raw)
            except _READ_ERRORS as e:
                raise DatasetFormatError(
                    f"{path}: truncated or corrupt gzip file (gzip checksum mismatch / corrupt data; "
                    f"{type(e).__name__}: {_one_line(e)}); re-export or re-copy the file") from None
    try:
        if buf is not None:
            cls = _nifti_class(buf.read(4))
            buf.seek(0)
            img = cls.from_stream(buf)
            data = np.asarray(img.dataobj)
            img = type(img)(data, img.affine, img.header)  # the array is a copy: drop the decompressed buffer
        else:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
    except _READ_ERRORS as e:
        raise unreadable(e) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DatasetFormatError(f"{path}: not a NIfTI image ({type(img).__name__}); convert it to NIfTI")
    if data.ndim != 3:
        raise DatasetFormatError(f"{path}: expected a 3-D volume, got shape {data.shape}; "
                                 "store one 3-D file per channel")
    return _Vol(path, img, data)


def _shape_problems(images: list[_Vol], label: _Vol | None) -> list[DatasetFormatError]:
    out = []
    ref = images[0] if images else None
    for v in images[1:]:
        if v.data.shape != ref.data.shape:
            out.append(DatasetFormatError(
                f"{v.path}: channel shape {v.data.shape} differs from {ref.path.name} {ref.data.shape}; "
                "all channels of a case must share one voxel grid"))
    if ref is not None and label is not None and label.data.shape != ref.data.shape:
        out.append(DatasetFormatError(
            f"{label.path}: label shape {label.data.shape} differs from image {ref.path.name} {ref.data.shape}; "
            "resample the label onto the image grid"))
    return out


def _affine_problems(images: list[_Vol], label: _Vol | None) -> list[DatasetFormatError]:
    out = []
    ref = images[0] if images else None
    for v, what in [(v, "channel") for v in images[1:]] + ([(label, "label")] if label is not None else []):
        if ref is not None and not np.allclose(v.img.affine, ref.img.affine, atol=AFFINE_ATOL):
            out.append(DatasetFormatError(
                f"{v.path}: {what} affine differs from {ref.path.name} (atol {AFFINE_ATOL}); "
                f"got {_one_line(np.round(v.img.affine, 4).tolist())} vs {_one_line(np.round(ref.img.affine, 4).tolist())}; "
                "fix the header or resample onto the image grid"))
    return out


def _value_problems(images: list[_Vol], label: _Vol | None, allowed: set[int] | None) -> list[DatasetFormatError]:
    out = []
    for v in images:
        if np.issubdtype(v.data.dtype, np.inexact):
            n_bad = int(np.count_nonzero(~np.isfinite(v.data)))
            if n_bad:
                out.append(DatasetFormatError(
                    f"{v.path}: {n_bad} NaN/Inf voxel(s) in image; replace non-finite values before use"))
    if label is not None:
        data = label.data
        if np.issubdtype(data.dtype, np.inexact):
            finite = np.isfinite(data)
            if not finite.all() or not np.array_equal(data[finite], np.rint(data[finite])):
                out.append(DatasetFormatError(
                    f"{label.path}: label map holds non-integer or NaN/Inf values; store integer labels"))
                return out
        if allowed is not None:
            values = {int(v) for v in np.unique(data)}
            extra = sorted(values - allowed)
            if extra:
                out.append(DatasetFormatError(
                    f"{label.path}: label value(s) {extra} not in dataset.json labels {sorted(allowed)}; "
                    "fix the label map or add the values to dataset.json labels"))
    return out


def reorient_to_ras(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Reorient (flip/permute voxel axes, no resampling) to the closest RAS+ orientation."""
    return nib.as_closest_canonical(img)


def _label_dtype(data: np.ndarray) -> np.dtype:
    if data.size == 0 or (data.min() >= 0 and data.max() <= np.iinfo(np.uint8).max):
        return np.dtype(np.uint8)
    return np.dtype(np.int16)


def load_case(ds: NnunetDataset, case: NnunetCase | str, validate: bool = True,
              reorient: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read one case: ``(image (C, X, Y, Z) float32, label (X, Y, Z) uint8/int16 or None, meta)``.

    ``meta``: ``spacing`` (mm, header zooms, after reorientation), ``affine`` (4x4), ``orientation``
    (axis codes, e.g. ``("R", "A", "S")``), ``original_orientation``, ``shape`` (X, Y, Z), ``case_id``.
    With ``reorient`` (default) image and label are reoriented to RAS with ``nib.as_closest_canonical``.
    Unreadable/truncated/corrupt files and shape mismatches always raise :class:`DatasetFormatError`;
    ``validate`` (default) also checks affines, NaN/Inf in images and label values.
    """
    if isinstance(case, str):
        found = [c for c in ds.cases + ds.test_cases if c.case_id == case]
        if not found:
            raise DatasetFormatError(f"{ds.root}: no case {case!r} in imagesTr/ or imagesTs/")
        case = found[0]
    images = [_read(p) for p in case.images]
    label = _read(case.label) if case.label is not None else None
    problems = _shape_problems(images, label)
    if validate:
        problems += _affine_problems(images, label)
        problems += _value_problems(images, label, set(ds.labels.values()))
    if problems:
        raise problems[0]
    return _assemble(case.case_id, images, label, reorient)


def _assemble(case_id: str, images: list[_Vol], label: _Vol | None,
              reorient: bool) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read volumes -> load_case's arrays and meta (shared with check_dataset's training-path checks)."""
    ref = images[0].img
    original = tuple(nib.aff2axcodes(ref.affine))
    vols = [nib.Nifti1Image(v.data, v.img.affine, v.img.header) for v in images]
    lab_img = nib.Nifti1Image(label.data, label.img.affine, label.img.header) if label is not None else None
    if reorient:
        vols = [reorient_to_ras(v) for v in vols]
        lab_img = reorient_to_ras(lab_img) if lab_img is not None else None
    arrays = [np.asarray(v.dataobj) for v in vols]
    if len({a.shape for a in arrays}) != 1:  # only reachable with validate=False and differing affines
        raise DatasetFormatError(f"{images[0].path}: channels of case {case_id!r} have different "
                                 "orientations; load with validate=True to see which file differs")
    image = np.ascontiguousarray(np.stack(arrays).astype(np.float32, copy=False))
    lab = None
    if lab_img is not None:
        raw = np.asarray(lab_img.dataobj)
        if np.issubdtype(raw.dtype, np.inexact):
            raw = np.rint(np.nan_to_num(raw))
        lab = np.ascontiguousarray(raw.astype(_label_dtype(raw), copy=False))
        if lab.shape != image.shape[1:]:
            raise DatasetFormatError(f"{label.path}: label orientation differs from the image after reorientation; "
                                     "load with validate=True to see the affine mismatch")
    out_img = vols[0]
    meta = {
        "case_id": case_id,
        "spacing": tuple(float(z) for z in out_img.header.get_zooms()[:3]),
        "affine": np.array(out_img.affine, dtype=np.float64),
        "orientation": tuple(nib.aff2axcodes(out_img.affine)),
        "original_orientation": original,
        "shape": tuple(int(s) for s in image.shape[1:]),
    }
    return image, lab, meta


def _inspect_case(raw: _RawCase, allowed: set[int] | None) -> tuple[list[DatasetError], list[_Vol], _Vol | None]:
    problems: list[DatasetError] = []
    images: list[_Vol] = []
    for _, path in sorted(raw.images.items()):
        try:
            images.append(_read(path))
        except DatasetFormatError as e:
            problems.append(e)
    label = None
    if raw.label is not None:
        try:
            label = _read(raw.label)
        except DatasetFormatError as e:
            problems.append(e)
    problems += _shape_problems(images, label)
    problems += _affine_problems(images, label)
    problems += _value_problems(images, label, allowed)
    return problems, images, label


# ----------------------------------------------------------------------------------------------
# rules of the training path (nnunet: datasets -> seg_sources -> seg_data -> seg_preprocess)
# ----------------------------------------------------------------------------------------------

def modality_of(channel_names: Sequence[str]) -> str:
    """The modality training assigns: CT when every channel is named CT (CT normalisation), else MR."""
    return "CT" if all(c.strip().upper() == "CT" for c in channel_names) else "MR"


def training_problems(root: Path, labels: dict[str, int] | None,
                      case_ids: Sequence[str] | None) -> list[DatasetFormatError]:
    """What ``nnunet_source`` rejects beyond the layout; shared so that data check and training agree.

    ``labels``/``case_ids`` None: unknown (already reported), not checked.
    """
    out = []
    values = sorted(labels.values()) if labels is not None else None
    if values is not None and values != list(range(len(values))):
        out.append(DatasetFormatError(f"{root / 'dataset.json'}: label values {values} must be contiguous 0..K-1 "
                                      "for per-dataset segmentation heads; renumber the labels"))
    if case_ids is not None and not case_ids:
        out.append(DatasetFormatError(f"{root / 'labelsTr'}: no labelled training cases; "
                                      "segmentation needs imagesTr/ cases with labelsTr/ labels"))
    return out


def _n_train(root: Path, case_ids: Sequence[str]) -> tuple[int | None, list[DatasetFormatError]]:
    """Training-split size (seed-independent) from the split the training path uses, or its refusal."""
    from .data import split_cases  # lazy: imports torch

    try:
        return len(split_cases(case_ids, 0)["train"]), []
    except DatasetFormatError as e:
        return None, [DatasetFormatError(f"{root / 'labelsTr'}: {e}; add labelled cases to imagesTr/ + labelsTr/")]


def _ct_samples(image: np.ndarray, label: np.ndarray) -> list[tuple[int, float, float]]:
    """Per channel (count, min, max) of the foreground voxels that CT statistics sample from one case;
    the same arrays, crop and stride as ``seg_preprocess._process_case``."""
    from .crop import CT_SAMPLE_STRIDE, _nonzero_crop

    img = image.transpose(0, 3, 2, 1)                        # (C, X, Y, Z) -> (C, Z, Y, X)
    crop, _ = _nonzero_crop(img)
    sl = tuple(slice(a, b) for a, b in crop)
    fg = label.transpose(2, 1, 0).astype(np.int16)[sl] > 0
    out = []
    for c in range(img.shape[0]):
        s = img[c][sl][fg][::CT_SAMPLE_STRIDE]
        out.append((int(s.size), float(s.min()), float(s.max())) if s.size else (0, 0.0, 0.0))
    return out


def _ct_problems(root: Path, channel_names: dict[int, str], samples: dict[str, list[tuple[int, float, float]]],
                 n_cases: int, n_train: int) -> list[DatasetFormatError]:
    """CT normalisation needs non-constant foreground intensities in the training split; flag it when
    any split of ``n_train`` cases (some split seed) could lack them. ``samples`` may cover only the
    readable cases: fewer cases only hide problems, never invent them."""
    empty = [cid for cid, s in samples.items() if s[0][0] == 0]
    if len(empty) >= n_train:
        seeds = "every split seed" if len(empty) == n_cases else "some split seeds"
        return [DatasetFormatError(
            f"{root / 'labelsTr'}: {len(empty)} of {n_cases} labelled cases have no foreground (label > 0) in the "
            f"non-zero image region; CT normalisation (every channel named CT) takes its statistics from the "
            f"foreground of the {n_train} training case(s), empty for {seeds}; label foreground in more cases")]
    out = []
    for c, name in channel_names.items():
        by_value: dict[float, int] = {}
        for s in samples.values():
            n, lo, hi = s[c]
            if n and lo == hi:
                by_value[lo] = by_value.get(lo, 0) + 1
        for v, k in sorted(by_value.items()):
            if len(empty) + k >= n_train:
                seeds = "every split seed" if len(empty) + k == n_cases else "some split seeds"
                out.append(DatasetFormatError(
                    f"{root / 'imagesTr'}: channel {c} ({name}) has the single foreground intensity {v:g} in {k} "
                    f"case(s) and no foreground in {len(empty)}; CT z-scoring over the {n_train} training case(s) is "
                    f"undefined (std 0) for {seeds}; check the intensities or the channel name"))
                break
    return out


def check_dataset(root: str | os.PathLike) -> list[str]:
    """Every problem in an nnU-Net v2 raw folder, one line each naming the file; ``[]`` means clean.

    Covers the training path's rules too, so that ``bench data check`` rejects what loading
    ``nnunet:<folder>`` would (it is stricter in places: it also reads imagesTs/, and flags CT
    statistics that only some split seeds break). Reads every file (one full pass over the data). Raises
    :class:`DatasetNotFound` only when ``root`` itself is missing; a missing ``dataset.json`` is
    reported as a line and the files are still checked (channels inferred from file names, label
    values and dataset.json-dependent training rules unchecked).
    """
    root = Path(root)
    meta, train, test, problems = _scan(root)
    allowed = set(meta.labels.values()) if meta.labels is not None else None
    channels = meta.channel_names
    ct = channels is not None and modality_of(list(channels.values())) == "CT"
    samples: dict[str, list[tuple[int, float, float]]] = {}
    for split, raws in (("Tr", train), ("Ts", test)):
        for raw in raws:
            found, images, label = _inspect_case(raw, allowed)
            problems += found
            if ct and split == "Tr" and not found and label is not None and list(raw.images) == list(channels):
                image, lab, _ = _assemble(raw.case_id, images, label, reorient=True)
                samples[raw.case_id] = _ct_samples(image, lab)
    ids = [r.case_id for r in train] if (root / "imagesTr").is_dir() else None
    problems += training_problems(root, meta.labels, ids)
    if ids:
        n_train, split_problems = _n_train(root, ids)
        problems += split_problems
        if ct and n_train is not None:
            problems += _ct_problems(root, channels, samples, len(ids), n_train)
    return [str(p) for p in problems]


# ----------------------------------------------------------------------------------------------
# writing (tests, synthetic generators)
# ----------------------------------------------------------------------------------------------

def _spacing_affine(spacing: Sequence[float]) -> np.ndarray:
    sp = [float(s) for s in spacing]
    if len(sp) != 3 or not all(s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive numbers (mm), got {spacing!r}")
    return np.diag(sp + [1.0])


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_case(root: str | os.PathLike, case_id: str, channels: list[np.ndarray], label: np.ndarray | None,
               spacing: Sequence[float], split: str = "Tr", *, affine: np.ndarray | None = None,
               file_ending: str = ".nii.gz") -> tuple[tuple[Path, ...], Path | None]:
    """Write one case in nnU-Net layout: ``images{split}/<case>_<XXXX>`` (float32) and ``labels{split}/<case>``.

    The affine is ``diag(spacing + [1])`` unless ``affine`` is given. Labels are stored as uint8 when
    they fit, else int16. Returns ``(image paths, label path or None)``.
    """
    if split not in ("Tr", "Ts"):
        raise ValueError(f"split must be 'Tr' or 'Ts', got {split!r}")
    if file_ending not in NIFTI_ENDINGS:
        raise ValueError(f"file_ending must be one of {NIFTI_ENDINGS}, got {file_ending!r}")
    if not channels:
        raise ValueError("channels must hold at least one 3-D array")
    arrays = [np.asarray(c) for c in channels]
    if any(a.ndim != 3 for a in arrays) or len({a.shape for a in arrays}) != 1:
        raise ValueError(f"channels must be 3-D arrays of one shape, got {[a.shape for a in arrays]}")
    aff = _spacing_affine(spacing) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {aff.shape}")
    root = Path(root)
    img_dir = root / f"images{split}"
    img_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = img_dir / f"{case_id}_{i:04d}{file_ending}"
        _save(a.astype(np.float32), aff, p)
        paths.append(p)
    label_path = None
    if label is not None:
        lab = np.asarray(label)
        if lab.ndim != 3:
            raise ValueError(f"label must be a 3-D array, got shape {lab.shape}")
        lab_dir = root / f"labels{split}"
        lab_dir.mkdir(parents=True, exist_ok=True)
        label_path = lab_dir / f"{case_id}{file_ending}"
        if np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.bool_):
            lab = lab.astype(_label_dtype(lab))
        _save(lab, aff, label_path)
    return tuple(paths), label_path


def write_dataset_json(root: str | os.PathLike, channel_names: dict[int, str], labels: dict[str, int],
                       num_training: int, file_ending: str = ".nii.gz") -> Path:
    """Write ``root/dataset.json`` in nnU-Net v2 form (channel indices as strings); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "channel_names": {str(int(k)): str(v) for k, v in sorted(channel_names.items())},
        "labels": {str(k): v for k, v in labels.items()},
        "numTraining": int(num_training),
        "file_ending": file_ending,
    }
    path = root / "dataset.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
