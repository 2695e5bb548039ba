"""Per-case, per-class segmentation metrics (Dice, IoU, HD95, NSD).

Units: Dice, IoU and NSD are unitless; NSD's tolerance ``tau`` is in mm. HD95 is in mm, except under
``convention="m4oe"`` where it is in voxels (see below); :class:`SegCaseMetrics` records ``hd95_unit``.

Inputs
------
* Label volumes are integer arrays (3-D; 2-D and other ``ndim >= 1`` work too) of identical shape; class ``c``
  is the binary mask ``labels == c``. The binary-mask functions accept any array and use ``mask != 0``.
  A shape mismatch raises ``ValueError`` naming both shapes.
* ``spacing`` is the voxel size per axis in mm, ``len(spacing) == ndim``, every entry finite and > 0
  (else ``ValueError``).

Definitions
-----------
* Dice = ``2|P & R| / (|P| + |R|)``; IoU = ``|P & R| / |P | R|`` (voxel counts).
* Surface ``S_M`` of a binary mask ``M``: its boundary voxels, ``M & ~binary_erosion(M, S)`` where ``S`` is the
  face-connectivity (cross) structuring element ``generate_binary_structure(ndim, 1)`` (6-neighbourhood in
  3-D) and the image border is treated as background, so a mask touching the border has a surface there. A
  non-empty mask always has a non-empty surface. This is the edge of MONAI's ``get_mask_edges`` (scipy's
  default erosion, ``use_subvoxels=False``) and of medpy's ``__surface_distances`` (``connectivity=1``).
* Directed surface distances ``d(S_A -> S_B)``: for every voxel of ``S_A``, the Euclidean distance to the
  nearest voxel centre of ``S_B``, computed as ``distance_transform_edt(~S_B, sampling=spacing)`` read at
  ``S_A`` (mm with the voxel spacing, voxels with unit spacing).
* HD95, ``hd95_mode="monai"`` (default; MONAI's ``compute_hausdorff_distance(percentile=95, directed=False)``):
  ``max(P95(d(S_P -> S_R)), P95(d(S_R -> S_P)))``, the larger of the two directed 95th percentiles, with
  numpy's default linear interpolation (the same as MONAI's ``torch.quantile``).
* HD95, ``hd95_mode="medpy"`` (medpy's ``medpy.metric.binary.hd95``, used by the TransUNet/SwinUNet/M4oE
  reference code): ``P95(d(S_P -> S_R) ++ d(S_R -> S_P))``, one 95th percentile of the POOLED distances of both
  directions (``np.percentile(np.hstack((d_pr, d_rp)), 95)``).
* NSD, normalised surface Dice at tolerance ``tau`` mm (Nikolov et al. 2021; MONAI's
  ``compute_surface_dice(class_thresholds=[tau], use_subvoxels=False)``), counted on boundary voxels (not
  surfel areas): ``(|{s in S_P: d(s, S_R) <= tau}| + |{s in S_R: d(s, S_P) <= tau}|) / (|S_P| + |S_R|)``. As in
  MONAI, a distance is compared with ``tau`` after rounding both to float32, so a distance that equals ``tau``
  on the grid is not lost to float64 round-off.
* Agreement with MONAI 1.x (``tests/test_seg_metrics.py``): HD95 and NSD match ``compute_hausdorff_distance``
  and ``compute_surface_dice`` (with ``spacing``) to 1e-4 whenever both masks are non-empty (MONAI works in
  float32, we in float64). Empty masks are where we deliberately differ: MONAI's HD95 is NaN (with a warning)
  when either mask is empty, ours follows the table below; MONAI's NSD agrees with ours (NaN / 0).

Empty-mask conventions and HD95 (``convention`` of :func:`evaluate_case`)
-------------------------------------------------------------------------
``"nnunet"`` (default; also what :func:`dice`, :func:`iou`, :func:`hd95` and :func:`nsd` do on their own).
HD95 is ``hd95_mode="monai"`` in mm.

==========================  ======  ======  ======  ===========================================
P (prediction), R (ref)      Dice    IoU     NSD     HD95
==========================  ======  ======  ======  ===========================================
both empty                   NaN     NaN     NaN     NaN
P empty, R non-empty         0       0       0       image diagonal in mm
P non-empty, R empty         0       0       0       image diagonal in mm
both non-empty               value   value   value   value
==========================  ======  ======  ======  ===========================================

NaN means "undefined, exclude from means" (nnU-Net sets Dice to NaN when ``TP + FP + FN == 0``; Metrics
Reloaded recommends a worst-case value for distance metrics when exactly one mask is empty, taken here as the
image diagonal ``sqrt(sum((shape_i * spacing_i)^2))``).

``"m4oe"`` reproduces ``calculate_metric_percase`` of the TransUNet/SwinUNet reference code used by M4oE::

    if pred.sum() > 0 and gt.sum() > 0: return dice, hd95   # hd95 = medpy.metric.binary.hd95(pred, gt)
    elif pred.sum() > 0 and gt.sum() == 0: return 1, 0
    else: return 0, 0

i.e. a false positive on an empty reference scores Dice 1 / HD95 0, and an empty prediction scores Dice 0 /
HD95 0 whether or not the reference is empty (so a correctly absent class, both empty, gets Dice 0, HD95 0).
On both-non-empty masks HD95 is the reference's: ``hd95_mode="medpy"`` computed WITHOUT the voxel spacing
(medpy's ``hd95`` is called without ``voxelspacing``), so it is in VOXELS, not mm. The reference code has no IoU
or NSD; here they follow the Dice branch of the same rule (1 on the false-positive branch, 0 on the "else"
branch), and on both-non-empty masks Dice, IoU and NSD (tau in mm, with the spacing) are the definitions above.

``evaluate_case(..., hd95_mode=...)`` overrides the HD95 definition of either convention; the unit stays the
convention's (mm for ``"nnunet"``, voxels for ``"m4oe"``).

References
----------
* L. Maier-Hein, A. Reinke et al., "Metrics reloaded: recommendations for image analysis validation",
  Nature Methods 21, 2024.
* S. Nikolov et al., "Clinically applicable segmentation of head and neck anatomy for radiotherapy: deep
  learning algorithm development and validation study", J Med Internet Res 23(7), 2021 (surface Dice).
* F. Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical image
  segmentation", Nature Methods 18, 2021.
* MONAI ``monai.metrics.compute_hausdorff_distance``, ``compute_surface_dice``, ``utils.get_mask_edges``;
  medpy ``medpy.metric.binary.hd95``; J. Chen et al., TransUNet (2021), ``utils.calculate_metric_percase``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

__all__ = [
    "CONVENTIONS",
    "HD95_MODES",
    "SegCaseMetrics",
    "dice",
    "evaluate_case",
    "hd95",
    "image_diagonal",
    "iou",
    "nsd",
    "surface",
    "surface_distances",
]

CONVENTIONS = ("nnunet", "m4oe")
HD95_MODES = ("monai", "medpy")
_DEFAULT_HD95_MODE = {"nnunet": "monai", "m4oe": "medpy"}
_HD95_UNIT = {"nnunet": "mm", "m4oe": "voxel"}
SURFACE_CONNECTIVITY = 1  # face connectivity, as MONAI's get_mask_edges and medpy's __surface_distances


@dataclass
class SegCaseMetrics:
    """Metrics of one case; every dict maps class label -> plain ``float`` (NaN where undefined)."""

    dice: dict[int, float]
    hd95: dict[int, float]  # in ``hd95_unit``: mm ("nnunet") or voxels ("m4oe")
    nsd: dict[int, float]  # normalised surface Dice at tolerance ``tau`` mm
    iou: dict[int, float]
    pred_voxels: dict[int, int]  # voxel count of the class in the prediction
    ref_voxels: dict[int, int]  # voxel count of the class in the reference
    tau: float = 2.0
    convention: str = "nnunet"
    spacing: tuple[float, ...] = field(default_factory=tuple)
    hd95_mode: str = "monai"  # "monai" (max of directed P95s) or "medpy" (P95 of pooled distances)
    hd95_unit: str = "mm"  # "mm" or "voxel"


# ----------------------------------------------------------------------------------------- validation


def _check_shapes(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "ref")) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {names[0]} has shape {a.shape}, {names[1]} has shape {b.shape}")
    if a.ndim < 1:
        raise ValueError(f"expected arrays with ndim >= 1, got shape {a.shape}")


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    try:
        sp = tuple(float(s) for s in spacing)
    except TypeError as exc:
        raise ValueError(f"spacing must be a sequence of {ndim} positive numbers, got {spacing!r}") from exc
    if len(sp) != ndim:
        raise ValueError(f"spacing has {len(sp)} entries but the arrays have {ndim} dimensions: {spacing!r}")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing entries must be finite and > 0, got {spacing!r}")
    return sp


def _check_mode(mode: str) -> str:
    if mode not in HD95_MODES:
        raise ValueError(f"unknown hd95_mode {mode!r}; expected one of {HD95_MODES}")
    return mode


def _binary_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "ref")) -> tuple[np.ndarray, ...]:
    a = np.asarray(a)
    b = np.asarray(b)
    _check_shapes(a, b, names)
    return a != 0, b != 0


# ----------------------------------------------------------------------------------------- primitives


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in mm: ``sqrt(sum((shape_i * spacing_i)^2))``."""
    sp = _check_spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: ``mask & ~binary_erosion(mask, face connectivity, border=background)``."""
    m = np.asarray(mask) != 0
    if not m.any():
        return m
    structure = generate_binary_structure(m.ndim, SURFACE_CONNECTIVITY)
    return m & ~binary_erosion(m, structure=structure, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (in the unit of ``spacing``) from every surface voxel of ``a`` to the nearest surface voxel of ``b``.

    Returned in C order of ``a``'s surface voxels (``np.nonzero(surface(a))``). Empty when ``a`` is empty;
    all ``inf`` when ``a`` is non-empty and ``b`` is empty.
    """
    ma, mb = _binary_pair(a, b, ("a", "b"))
    sp = _check_spacing(spacing, ma.ndim)
    sa = surface(ma)
    n = int(sa.sum())
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    sb = surface(mb)
    if not sb.any():
        return np.full(n, np.inf, dtype=np.float64)
    dist = distance_transform_edt(~sb, sampling=sp)
    return np.asarray(dist[sa], dtype=np.float64)


def _both_directed(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(d(S_p -> S_r), d(S_r -> S_p))`` for two non-empty boolean masks, on a crop for speed.

    The crop is the bounding box of ``p | r`` grown by one voxel (clipped to the image): every surface voxel
    of both masks lies inside it, so nearest-surface distances are unchanged, and its faces are either
    background or the true image border, so the surfaces (border treated as background) are unchanged too.
    """
    idx = np.nonzero(p | r)
    sl = tuple(slice(max(int(i.min()) - 1, 0), min(int(i.max()) + 2, n)) for i, n in zip(idx, p.shape))
    pc, rc = p[sl], r[sl]
    return surface_distances(pc, rc, sp), surface_distances(rc, pc, sp)


def _hd95_from(d_pr: np.ndarray, d_rp: np.ndarray, mode: str = "monai") -> float:
    if mode == "medpy":  # medpy.metric.binary.hd95: one percentile of the pooled distances
        return float(np.percentile(np.hstack((d_pr, d_rp)), 95))
    return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))  # MONAI: larger directed percentile


def _nsd_from(d_pr: np.ndarray, d_rp: np.ndarray, tau: float) -> float:
    t = np.float32(tau)  # compared in float32 as MONAI does (its distances are float32)
    hits = int((d_pr.astype(np.float32) <= t).sum()) + int((d_rp.astype(np.float32) <= t).sum())
    return float(hits / (d_pr.size + d_rp.size))


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two binary masks; NaN when both are empty, 0 when exactly one is."""
    p, r = _binary_pair(pred, ref)
    denom = int(p.sum()) + int(r.sum())
    if denom == 0:
        return float("nan")
    return float(2.0 * int((p & r).sum()) / denom)


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union of two binary masks; NaN when both are empty, 0 when exactly one is."""
    p, r = _binary_pair(pred, ref)
    union = int((p | r).sum())
    if union == 0:
        return float("nan")
    return float(int((p & r).sum()) / union)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], mode: str = "monai") -> float:
    """95th-percentile symmetric Hausdorff distance in the unit of ``spacing`` (mm; pass 1s for voxels).

    ``mode="monai"`` (default): ``max(P95(d(S_pred -> S_ref)), P95(d(S_ref -> S_pred)))``;
    ``mode="medpy"``: ``P95`` of both directed sets pooled (medpy's ``hd95``). Face-connected surfaces and
    numpy's linear interpolation in both. NaN when both masks are empty; the image diagonal (same unit) when
    exactly one is empty.
    """
    p, r = _binary_pair(pred, ref)
    sp = _check_spacing(spacing, p.ndim)
    _check_mode(mode)
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return float("nan")
    if not (has_p and has_r):
        return image_diagonal(p.shape, sp)
    d_pr, d_rp = _both_directed(p, r, sp)
    return _hd95_from(d_pr, d_rp, mode)


def nsd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tau: float) -> float:
    """Normalised surface Dice at tolerance ``tau`` mm (boundary-voxel counts, distance ``<= tau``).

    NaN when both masks are empty; 0 when exactly one is empty.
    """
    p, r = _binary_pair(pred, ref)
    sp = _check_spacing(spacing, p.ndim)
    tau = float(tau)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be finite and >= 0, got {tau!r}")
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return float("nan")
    if not (has_p and has_r):
        return 0.0
    d_pr, d_rp = _both_directed(p, r, sp)
    return _nsd_from(d_pr, d_rp, tau)


# ----------------------------------------------------------------------------------------- per case


def evaluate_case(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing: Sequence[float],
    classes: list[int],
    tau: float = 2.0,
    convention: str = "nnunet",
    hd95_mode: str | None = None,
) -> SegCaseMetrics:
    """Dice, IoU, HD95 and NSD at ``tau`` mm for each class label in ``classes`` (see module docstring).

    HD95 is in mm with ``convention="nnunet"`` and in voxels with ``"m4oe"`` (``hd95_unit`` of the result);
    ``hd95_mode`` (``"monai"`` or ``"medpy"``) defaults to ``"monai"`` for ``"nnunet"`` and ``"medpy"`` for ``"m4oe"``.
    """
    pred = np.asarray(pred_labels)
    ref = np.asarray(ref_labels)
    _check_shapes(pred, ref, ("pred_labels", "ref_labels"))
    sp = _check_spacing(spacing, pred.ndim)
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    mode = _check_mode(_DEFAULT_HD95_MODE[convention] if hd95_mode is None else hd95_mode)
    unit = _HD95_UNIT[convention]
    hd_sp = sp if unit == "mm" else (1.0,) * pred.ndim  # m4oe: medpy's hd95 without voxelspacing
    tau = float(tau)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be finite and >= 0, got {tau!r}")

    out = SegCaseMetrics(dice={}, hd95={}, nsd={}, iou={}, pred_voxels={}, ref_voxels={},
                         tau=tau, convention=convention, spacing=sp, hd95_mode=mode, hd95_unit=unit)
    for c in classes:
        c = int(c)
        p = pred == c
        r = ref == c
        n_p, n_r = int(p.sum()), int(r.sum())
        out.pred_voxels[c] = n_p
        out.ref_voxels[c] = n_r
        if convention == "m4oe" and not (n_p > 0 and n_r > 0):
            # calculate_metric_percase: (pred>0, gt==0) -> 1, 0; pred empty -> 0, 0
            v = 1.0 if n_p > 0 else 0.0
            out.dice[c], out.iou[c], out.nsd[c], out.hd95[c] = v, v, v, 0.0
            continue
        out.dice[c] = dice(p, r)
        out.iou[c] = iou(p, r)
        if n_p > 0 and n_r > 0:
            d_pr, d_rp = _both_directed(p, r, sp)  # one pair of EDTs shared by HD95 and NSD when units agree
            out.nsd[c] = _nsd_from(d_pr, d_rp, tau)
            if hd_sp != sp:
                d_pr, d_rp = _both_directed(p, r, hd_sp)
            out.hd95[c] = _hd95_from(d_pr, d_rp, mode)
        else:
            out.hd95[c] = hd95(p, r, hd_sp, mode)
            out.nsd[c] = nsd(p, r, sp, tau)
    return out
