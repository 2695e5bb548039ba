"""nnU-Net-v1-like preprocessing of a :class:`~datasets.segmentation.sources.SegSource`, cached on disk.

Why: M4oE's authors preprocessed every dataset with nnU-Net v1 before slicing it for their 2-D
Swin-UNet (docs/segmentation.md "Preprocessing"). We reproduce the steps that change what the model
sees -- crop, resample to a common spacing, intensity normalisation -- without depending on
nnU-Net, and keep what evaluation in the original geometry needs (the original label, the crop box
and both spacings) so :func:`to_original` can undo them.

Per case, in this order (nnU-Net v1 order: crop, then resample, then normalise):

1. Read with :func:`datasets.segmentation.sources.read_case` (validated, reoriented to RAS), then transpose
   nibabel's (X, Y, Z) arrays to (Z, Y, X) so axial slices are the first axis. Spacings are (z, y, x) mm.
2. Crop to the non-zero region: the union over channels of ``image != 0``, holes filled
   (``binary_fill_holes``, as nnU-Net's ``create_nonzero_mask``); its bounding box is ``crop``. An
   all-zero image keeps the full volume [ours].
3. Resample to the target spacing: the median over the source's cases of the per-axis spacing,
   unless ``target_spacing`` is given. nnU-Net's extra rule for anisotropic data (10th percentile
   on the coarse axis; separate in-plane/out-of-plane resampling with order 0 along z) is not
   applied [ours: the median spacing and one interpolation order per array kind, docs/segmentation.md]. New shape
   ``round(crop_shape * spacing / target)`` (at least 1). Images: ``scipy.ndimage.zoom`` with
   ``order=image_order`` (3 = nnU-Net's cubic spline); labels: order 0 (nearest). ``grid_mode=True``
   with ``mode="nearest"`` [ours], i.e. voxel edges aligned and edge values replicated, which is how
   ``skimage.transform.resize`` (used by nnU-Net) maps coordinates. When the new shape equals the
   cropped shape nothing is interpolated (exact copy, as nnU-Net does). ``spacing`` stores the
   *effective* spacing ``crop_shape * spacing / new_shape`` [ours], which differs from the target by
   the rounding of the shape, so surface metrics on the preprocessed grid stay in true mm.
4. Normalise:
   * CT: clip to the 0.5 / 99.5 percentiles of the foreground (label > 0) voxels of ``stats_cases``,
     then z-score with their mean / std (nnU-Net v1 computes mean/std on the *unclipped* foreground
     voxels, and so do we). Foreground voxels are gathered on the cropped, not yet resampled grid,
     every 10th voxel per case (nnU-Net v1's ``[::10]`` subsampling), per channel. The caller passes
     the training cases as ``stats_cases``, so validation/test intensities never leak into the
     normalisation. No foreground voxels, or zero spread, raises :class:`DatasetFormatError`.
   * MR (anything not CT): per volume and per channel, z-score over the non-zero mask and set the
     image to 0 outside it; background labels outside the mask become -1 (the loss's
     ``ignore_index``). nnU-Net v1 uses the mask only when cropping shrank the volume by >= 25 %; we
     always use it [ours, docs/segmentation.md]. Labelled voxels outside the mask keep their label (v1).
     ``stats_cases`` are not used for MR and are not part of its cache key [ours], so different
     splits share one cache.

Cache: ``cache_dir/<source name>/<key>/`` where ``key`` hashes the source (name, modality, labels,
channels, every file's path, size and mtime), the CT stats cases, the target spacing, the image
order and :data:`PREPROCESS_VERSION` (bump it whenever the output of this module changes). It holds
``<case>_image.npy`` (C, Z, Y, X) float32, ``<case>_label.npy`` (Z, Y, X) int16,
``<case>_orig.npy`` (Z, Y, X) int16 (the original-grid label) -- uncompressed so they open with
``np.load(mmap_mode="r")`` -- and one ``manifest.json`` with all meta (spacings, crop boxes, shapes,
RAS affines, CT statistics). Everything is written into a hidden temporary sibling folder that is
renamed into place only when complete, so a killed run never leaves a half cache (at worst a stale
``.tmp-*`` folder, which is never read). A second call with the same arguments only reads the
manifest and memory-maps the arrays. Input files are only read.

Returned :class:`PreparedCase` arrays are always the memory-mapped cache files (read-only), also
right after computing them, so a large source does not have to fit in memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from ..file_hashes import file_sha256, save_hashes
from ..spec import DatasetFormatError
from .crop import CT_SAMPLE_STRIDE, Crop, _nonzero_crop  # noqa: F401  (re-exported)
from .sources import SegSource, SegSourceCase, read_case

__all__ = ["PREPROCESS_VERSION", "PreparedCase", "prepare_source", "to_original", "cache_key", "median_spacing"]

PREPROCESS_VERSION = 1
CT_PERCENTILES = (0.5, 99.5)
MANIFEST = "manifest.json"



@dataclass
class PreparedCase:
    case_id: str
    domain: str                         # SegSource.name
    image: np.ndarray                   # (C, Z, Y, X) float32, normalised, preprocessed grid
    label: np.ndarray                   # (Z, Y, X) int16, preprocessed grid; -1 = ignore (MR: outside non-zero mask)
    spacing: tuple[float, float, float]           # (z, y, x) mm of the preprocessed grid (effective)
    original_label: np.ndarray          # (Z, Y, X) int16 on the original grid (RAS, transposed to z, y, x)
    original_spacing: tuple[float, float, float]  # (z, y, x) mm
    crop: Crop                          # non-zero bbox on the original grid (z, y, x), half-open
    meta: dict = field(default_factory=dict)  # [ours] affine (RAS, X/Y/Z voxel order), orientations, files, shapes

    @property
    def num_slices(self) -> int:
        return int(self.image.shape[1])


# ----------------------------------------------------------------------------------------------
# cache key, spacing
# ----------------------------------------------------------------------------------------------

def _fingerprint(source: SegSource) -> list:
    """Each input file's case, path and content hash (cached: docs/identity.md)."""
    out = []
    for c in source.cases:
        for p in (*c.images, c.label):
            if p is None:
                continue
            try:
                digest, _ = file_sha256(p)
            except OSError as e:
                raise DatasetFormatError(f"{p}: cannot read input file ({type(e).__name__}: {e.strerror}); "
                                         "was it moved or deleted?") from None
            out.append([c.case_id, str(Path(p).resolve()), digest])
    save_hashes()   # writes only if a hash was computed
    return out


def _spacing_tuple(value, what: str) -> tuple[float, float, float]:
    try:
        sp = tuple(float(v) for v in value)
    except TypeError:
        raise ValueError(f"{what} must be three positive numbers (z, y, x) mm, got {value!r}") from None
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"{what} must be three positive numbers (z, y, x) mm, got {value!r}")
    return sp  # type: ignore[return-value]


def cache_key(source: SegSource, stats_cases: Sequence[str], target_spacing=None, image_order: int = 3) -> str:
    """The cache folder name for these arguments (hex, 16 characters)."""
    doc = {
        "version": PREPROCESS_VERSION,
        "name": source.name, "modality": source.modality, "channels": list(source.channels),
        "labels": {str(k): v for k, v in sorted(source.labels.items())},
        "files": _fingerprint(source),
        "stats_cases": sorted(stats_cases) if source.modality == "CT" else None,
        "target_spacing": None if target_spacing is None else list(_spacing_tuple(target_spacing, "target_spacing")),
        "image_order": int(image_order),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _ras_spacing_zyx(path: Path) -> tuple[float, float, float]:
    """(z, y, x) spacing after reorientation to RAS, from the header only (no voxel data read)."""
    try:
        img = nib.load(str(path))
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        ornt = nib.orientations.io_orientation(img.affine)
    except Exception as e:  # nibabel raises many types for bad headers
        raise DatasetFormatError(f"{path}: unreadable NIfTI header ({type(e).__name__}: {' '.join(str(e).split())}); "
                                 "re-export or re-copy the file") from None
    if len(zooms) != 3:
        raise DatasetFormatError(f"{path}: expected a 3-D volume, got {len(zooms)} spacing values")
    ras = [0.0, 0.0, 0.0]
    for j in range(3):
        ras[int(ornt[j, 0])] = zooms[j]
    return ras[2], ras[1], ras[0]


def median_spacing(source: SegSource) -> tuple[float, float, float]:
    """Per-axis median (z, y, x) spacing over the source's cases (headers only)."""
    spacings = np.array([_ras_spacing_zyx(c.images[0]) for c in source.cases], dtype=np.float64)
    return tuple(float(v) for v in np.median(spacings, axis=0))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# per-case work
# ----------------------------------------------------------------------------------------------

def _resample(arr: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """Resample a 3-D array to ``new_shape``; an exact copy when the shape does not change."""
    new_shape = tuple(int(s) for s in new_shape)
    if arr.shape == new_shape:
        return arr.copy()
    factors = [n / o for n, o in zip(new_shape, arr.shape)]
    out = ndimage.zoom(arr, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    assert out.shape == new_shape, (out.shape, new_shape)
    return out


def _process_case(source: SegSource, case: SegSourceCase, target_spacing: tuple[float, float, float],
                  image_order: int, collect_stats: bool) -> dict:
    """Read, crop, resample (and normalise MR) one case; the worker that a cache hit never calls."""
    image, label, meta = read_case(source, case)
    image = np.ascontiguousarray(image.transpose(0, 3, 2, 1))        # (C, X, Y, Z) -> (C, Z, Y, X)
    label = np.ascontiguousarray(label.transpose(2, 1, 0)).astype(np.int16)
    spacing = tuple(float(s) for s in reversed(meta["spacing"]))    # (x, y, z) -> (z, y, x)
    crop, mask = _nonzero_crop(image)
    sl = tuple(slice(a, b) for a, b in crop)
    img_c = image[(slice(None),) + sl]
    lab_c = label[sl].copy()
    mask_c = mask[sl]

    samples = None
    if collect_stats:
        fg = lab_c > 0
        samples = [img_c[c][fg][::CT_SAMPLE_STRIDE].astype(np.float64) for c in range(img_c.shape[0])]
    if source.modality != "CT":
        lab_c[(lab_c == 0) & ~mask_c] = -1

    crop_shape = lab_c.shape
    new_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(crop_shape, spacing, target_spacing))
    out_img = np.stack([_resample(img_c[c], new_shape, image_order) for c in range(img_c.shape[0])]).astype(
        np.float32, copy=False)
    out_lab = _resample(lab_c, new_shape, 0).astype(np.int16, copy=False)

    if source.modality != "CT":
        keep = out_lab >= 0
        for c in range(out_img.shape[0]):
            vals = out_img[c][keep]
            if vals.size:
                mu, sd = float(vals.mean()), float(vals.std())
                out_img[c] = (out_img[c] - mu) / max(sd, 1e-8)
            out_img[c][~keep] = 0.0

    eff = tuple(float(s * n / m) for s, n, m in zip(spacing, crop_shape, new_shape))
    return {
        "image": out_img, "label": out_lab, "orig": label, "samples": samples,
        "spacing": eff, "original_spacing": spacing, "crop": crop,
        "meta": {
            "affine": np.asarray(meta["affine"]).tolist(), "orientation": list(meta["orientation"]),
            "original_orientation": list(meta["original_orientation"]), "files": meta["files"],
            "original_shape": list(label.shape), "shape": list(out_lab.shape),
        },
    }


def _ct_stats(samples: list[list[np.ndarray]], source: SegSource, stats_cases: Sequence[str]) -> list[dict]:
    n_ch = len(source.channels)
    stats = []
    for c in range(n_ch):
        vals = np.concatenate([s[c] for s in samples]) if samples else np.zeros(0)
        if vals.size == 0:
            raise DatasetFormatError(
                f"{source.root}: no foreground (label > 0) voxels in the CT statistics cases {sorted(stats_cases)} of "
                f"{source.name}; CT normalisation needs foreground intensities from the training cases")
        lo, hi = (float(v) for v in np.percentile(vals, CT_PERCENTILES))
        mean, std = float(vals.mean()), float(vals.std())
        if not std > 0 or not np.isfinite(std):
            raise DatasetFormatError(
                f"{source.root}: foreground intensities of the CT statistics cases {sorted(stats_cases)} of "
                f"{source.name} are constant (std {std}); CT z-scoring is undefined")
        stats.append({"channel": source.channels[c], "p_low": lo, "p_high": hi, "mean": mean, "std": std,
                      "n_voxels": int(vals.size)})
    return stats


def _normalise_ct_inplace(path: Path, stats: list[dict]) -> None:
    arr = np.load(path, mmap_mode="r+")
    for c, st in enumerate(stats):
        ch = np.clip(arr[c], st["p_low"], st["p_high"])
        arr[c] = (ch - st["mean"]) / st["std"]
    arr.flush()
    del arr


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _load(folder: Path) -> list[PreparedCase]:
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    out = []
    for e in manifest["cases"]:
        cid = e["case_id"]
        out.append(PreparedCase(
            case_id=cid, domain=manifest["source"]["name"],
            image=np.load(folder / f"{cid}_image.npy", mmap_mode="r"),
            label=np.load(folder / f"{cid}_label.npy", mmap_mode="r"),
            spacing=tuple(e["spacing"]),
            original_label=np.load(folder / f"{cid}_orig.npy", mmap_mode="r"),
            original_spacing=tuple(e["original_spacing"]),
            crop=tuple(tuple(b) for b in e["crop"]),
            meta=dict(e["meta"], cache_dir=str(folder)),
        ))
    return out


def _complete(folder: Path) -> bool:
    if not (folder / MANIFEST).is_file():
        return False
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return all((folder / f"{e['case_id']}_{k}.npy").is_file()
                   for e in manifest["cases"] for k in ("image", "label", "orig"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare_source(source: SegSource, cache_dir: str | os.PathLike, stats_cases: Sequence[str], *,
                   target_spacing=None, image_order: int = 3, progress: bool = True) -> list[PreparedCase]:
    """Crop, resample and normalise every case of ``source`` (cached); see the module docstring.

    ``stats_cases``: case ids whose foreground intensities define the CT normalisation (pass the
    training split). ``target_spacing``: (z, y, x) mm, default the median spacing. ``image_order``:
    spline order for images (3 = nnU-Net; 1 = linear). Returns cases in ``source.cases`` order.
    """
    if isinstance(stats_cases, str):
        raise ValueError("stats_cases must be a sequence of case ids, not a string")
    if not isinstance(image_order, (int, np.integer)) or not 0 <= int(image_order) <= 5:
        raise ValueError(f"image_order must be an integer spline order 0..5, got {image_order!r}")
    known = {c.case_id for c in source.cases}
    unknown = sorted(set(stats_cases) - known)
    if unknown:
        raise ValueError(f"{source.name}: stats_cases {unknown} are not cases of this source")
    if not source.cases:
        raise DatasetFormatError(f"{source.root}: {source.name} has no labelled cases to preprocess")
    key = cache_key(source, stats_cases, target_spacing, image_order)
    base = Path(cache_dir) / _safe(source.name)
    final = base / key
    if _complete(final):
        return _load(final)

    target = (_spacing_tuple(target_spacing, "target_spacing") if target_spacing is not None
              else median_spacing(source))
    is_ct = source.modality == "CT"
    stats_set = set(stats_cases)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        entries, samples = [], []
        for case in tqdm(source.cases, desc=f"preprocess {source.name}", unit="case", disable=not progress):
            r = _process_case(source, case, target, int(image_order), is_ct and case.case_id in stats_set)
            if r["samples"] is not None:
                samples.append(r["samples"])
            np.save(tmp / f"{case.case_id}_image.npy", r["image"])
            np.save(tmp / f"{case.case_id}_label.npy", r["label"])
            np.save(tmp / f"{case.case_id}_orig.npy", r["orig"])
            entries.append({"case_id": case.case_id, "spacing": list(r["spacing"]),
                            "original_spacing": list(r["original_spacing"]),
                            "crop": [list(b) for b in r["crop"]], "meta": r["meta"]})
        ct_stats = None
        if is_ct:
            ct_stats = _ct_stats(samples, source, stats_cases)
            for e in entries:
                _normalise_ct_inplace(tmp / f"{e['case_id']}_image.npy", ct_stats)
        manifest = {
            "version": PREPROCESS_VERSION, "key": key,
            "source": {"name": source.name, "modality": source.modality, "channels": list(source.channels),
                       "labels": {str(k): v for k, v in sorted(source.labels.items())}, "root": str(source.root)},
            "target_spacing": list(target), "image_order": int(image_order),
            "stats_cases": sorted(stats_cases) if is_ct else None, "ct_stats": ct_stats,
            "cases": entries,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final):  # not a concurrent writer that finished first: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load(final)


def to_original(pred: np.ndarray, case: PreparedCase) -> np.ndarray:
    """A (Z, Y, X) label map on the preprocessed grid -> the original grid (Z, Y, X), int16.

    Nearest-neighbour resample back to the crop size (same coordinate convention as the forward
    resampling), then pad into the original shape with background 0. Negative values (the -1
    ignore label) become background 0 [ours].
    """
    pred = np.asarray(pred)
    if pred.shape != tuple(case.label.shape):
        raise ValueError(f"{case.domain}/{case.case_id}: prediction shape {pred.shape} differs from the "
                         f"preprocessed shape {tuple(case.label.shape)}")
    crop_shape = tuple(b - a for a, b in case.crop)
    back = _resample(pred.astype(np.int16, copy=False), crop_shape, 0)
    back[back < 0] = 0
    out = np.zeros(tuple(case.original_label.shape), dtype=np.int16)
    out[tuple(slice(a, b) for a, b in case.crop)] = back
    return out
