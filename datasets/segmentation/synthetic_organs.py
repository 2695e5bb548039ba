"""``synthetic-organs``: the embedded, offline stand-in for FLARE22 / AMOS22 / ATLAS23 (docs/datasets.md).

Why: the M4oE-seg pipeline (several datasets, each with its own modality and label set, read from
NIfTI, preprocessed, sliced, evaluated in the original geometry) must run end to end in tests, CI
and the README's first command, where the real data cannot ship. This module writes three small
nnU-Net v2 raw folders that exercise every part of that path and are hard enough that methods are
not all at 100 %.

Domains (three label sets, like the three M4oE datasets; names are the :class:`SegSource` names):

* ``synthetic-organs-ct`` -> ``Dataset901_SynthOrgansCT``: CT-like intensities in HU (integers,
  air -1000), labels 0 background, 1 liver, 2 spleen, 3 left kidney, 4 right kidney. The kidneys
  look alike, so left/right needs position (context), not intensity.
* ``synthetic-organs-mr`` -> ``Dataset902_SynthOrgansMR``: T1-like arbitrary units (random global
  gain) times a smooth multiplicative bias field; 0 background, 1 liver, 2 spleen, 3 kidneys.
* ``synthetic-organs-liver`` -> ``Dataset903_SynthLiverLesion``: CE-T1-like (like ATLAS23), bias
  field; 0 background, 1 liver, 2 lesion (1-4 small hyper- or hypo-intense lesions inside the liver,
  a few voxels across: radius 3.5-6 mm, i.e. 2-5 voxels).

Phantoms [ours throughout]: an elliptic-cylinder body (subcutaneous fat rim, soft tissue, spine,
aorta and vena cava, "bowel" blobs whose intensities span the organs' range), organs as deformed
ellipsoids (angular and axial radius modulation) at jittered positions, sizes and in-plane
rotations, placed anatomically in RAS (liver on the patient's right = +x, spleen left, kidneys
posterior). Per-organ mean intensities vary per case and overlap each other and the soft tissue;
Gaussian noise (CT ~20 HU; MR ~5 % of the gain) and a light blur (partial volume) are added. So a
threshold cannot separate the organs, but shape and position can: the task is meant to be learnable
by a small 2-D U-Net to Dice ~0.6-0.9 in minutes of CPU training (lesions lower).

Geometry: ``shape`` is (Z, Y, X) voxels (default 32 x 64 x 64; stored in NIfTI order (X, Y, Z)).
Anatomy is defined in mm, scaled by ``shape / (32, 64, 64)``; per-case spacing is drawn as
z 2.0-3.5 mm and x = y 1.2-1.8 mm and written into the affine, so organ sizes in voxels vary between
cases as they do in real data (and resampling to the median spacing matters). Outside the body MR
volumes are exactly 0 (as in masked releases), which exercises the non-zero crop and the MR ``-1``
ignore label; CT air is -1000 HU (non-zero, as in real CT). Every 6th case starting at 1 is stored in
LPS orientation (x and y flipped) and every 6th starting at 4 in PSL (axes permuted and flipped),
with matching affines, so readers must reorient to RAS; reading them back in RAS gives exactly
:func:`phantom`'s arrays.

Determinism: case ``i`` of domain ``d`` uses ``np.random.default_rng([seed, d, i])``, so the files
are a pure function of ``(n_cases, seed, shape)`` (nibabel's gzip writer stores no timestamp, so
equal arguments give identical bytes), and case ``i`` does not depend on ``n_cases``. Generating
3 x 12 cases takes about a second. Images are float32, labels uint8.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, ornt_transform
from scipy import ndimage

from .nnunet import write_case, write_dataset_json
from .sources import SegSource, nnunet_source

__all__ = ["DOMAINS", "DEFAULT_SHAPE", "FOLDERS", "LABELS", "SOURCE_NAMES", "GENERATOR_VERSION", "phantom",
           "write_synthetic_organs", "synthetic_organs_sources"]

DOMAINS = ("ct", "mr", "liver")
DEFAULT_SHAPE = (32, 64, 64)
GENERATOR_VERSION = 2  # bump whenever the generated files change
FOLDERS = {"ct": "Dataset901_SynthOrgansCT", "mr": "Dataset902_SynthOrgansMR", "liver": "Dataset903_SynthLiverLesion"}
SOURCE_NAMES = {"ct": "synthetic-organs-ct", "mr": "synthetic-organs-mr", "liver": "synthetic-organs-liver"}
CHANNELS = {"ct": {0: "CT"}, "mr": {0: "MR"}, "liver": {0: "CE-T1"}}
LABELS = {
    "ct": {"background": 0, "liver": 1, "spleen": 2, "left kidney": 3, "right kidney": 4},
    "mr": {"background": 0, "liver": 1, "spleen": 2, "kidneys": 3},
    "liver": {"background": 0, "liver": 1, "lesion": 2},
}
_CASE_PREFIX = {"ct": "synthct", "mr": "synthmr", "liver": "synthliver"}
_NON_RAS = {1: ("L", "P", "S"), 4: ("P", "S", "L")}   # case index % 6 -> stored orientation


def _orientation(index: int) -> tuple[str, str, str]:
    return _NON_RAS.get(index % 6, ("R", "A", "S"))


class _Grid:
    """World coordinates (mm, RAS, centred on the volume) of a (Z, Y, X) grid, as broadcastable arrays."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        nz, ny, nx = shape
        sz, sy, sx = spacing
        self.z = ((np.arange(nz) - (nz - 1) / 2) * sz)[:, None, None].astype(np.float32)
        self.y = ((np.arange(ny) - (ny - 1) / 2) * sy)[None, :, None].astype(np.float32)
        self.x = ((np.arange(nx) - (nx - 1) / 2) * sx)[None, None, :].astype(np.float32)
        self.shape = shape


def _blob(g: _Grid, rng: np.random.Generator, centre, radii, angle: float = 0.0, wobble: float = 0.12) -> np.ndarray:
    """A deformed, in-plane-rotated ellipsoid mask (radius modulated with angle and height)."""
    cx, cy, cz = centre
    rx, ry, rz = radii
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = g.x - cx, g.y - cy
    u = (c * dx + s * dy) / rx
    v = (-s * dx + c * dy) / ry
    w = (g.z - cz) / rz
    r = np.sqrt(u * u + v * v + w * w)
    theta = np.arctan2(v, u)
    a1, a2, a3 = rng.uniform(-wobble, wobble, 3)
    p1, p2, p3 = rng.uniform(0, 2 * np.pi, 3)
    edge = 1.0 + a1 * np.sin(2 * theta + p1) + a2 * np.sin(3 * theta + p2) + a3 * np.sin(np.pi * w + p3)
    return r < edge


def _anatomy(domain: str, rng: np.random.Generator, shape: tuple[int, int, int],
             spacing: tuple[float, float, float]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Masks of every structure (in painting order) and the label map of ``domain``."""
    g = _Grid(shape, spacing)
    k = shape[2] / DEFAULT_SHAPE[2], shape[1] / DEFAULT_SHAPE[1], shape[0] / DEFAULT_SHAPE[0]  # x, y, z scale

    def j(v: float, sd: float) -> float:
        return float(v + rng.normal(0, sd))

    def at(x, y, z):
        return x * k[0], y * k[1], z * k[2]

    def size(rx, ry, rz, jit=0.12):
        f = rng.uniform(1 - jit, 1 + jit, 3)
        return rx * k[0] * f[0], ry * k[1] * f[1], rz * k[2] * f[2]

    m: dict[str, np.ndarray] = {}
    bx, by = 36 * k[0] * rng.uniform(0.92, 1.06), 27 * k[1] * rng.uniform(0.92, 1.06)
    taper = 1 + 0.06 * np.sin(np.pi * g.z / (40 * k[2]) + rng.uniform(0, np.pi))
    rr = (g.x / (bx * taper)) ** 2 + (g.y / (by * taper)) ** 2
    m["body"] = np.broadcast_to(rr < 1, shape)
    fat_in = 1 - 2 * rng.uniform(3.0, 5.5) * min(k[:2]) / min(bx, by)
    m["fat"] = m["body"] & (rr >= fat_in ** 2)
    spine_y = -by + 9 * k[1]
    m["spine"] = _blob(g, rng, (0, spine_y, 0), (6 * k[0], 5.5 * k[1], 200), 0.0, 0.04)
    m["marrow"] = _blob(g, rng, (0, spine_y, 0), (3.5 * k[0], 3.0 * k[1], 200), 0.0, 0.04)
    m["psoas"] = (_blob(g, rng, (8 * k[0], spine_y + 1, -5 * k[2]), (4 * k[0], 4 * k[1], 30 * k[2]), 0.2, 0.1)
                  | _blob(g, rng, (-8 * k[0], spine_y + 1, -5 * k[2]), (4 * k[0], 4 * k[1], 30 * k[2]), -0.2, 0.1))
    m["aorta"] = _blob(g, rng, (-3 * k[0], spine_y + 9 * k[1], 0), (3.5 * k[0], 3.5 * k[1], 200), 0.0, 0.05)
    m["ivc"] = _blob(g, rng, (5 * k[0], spine_y + 10 * k[1], 0), (3.5 * k[0], 2.8 * k[1], 200), 0.3, 0.08)
    bowel = np.zeros(shape, bool)
    for _ in range(int(rng.integers(4, 8))):
        c = at(rng.uniform(-22, 18), rng.uniform(2, 20), rng.uniform(-30, 25))
        bowel |= _blob(g, rng, c, size(5, 4, 7, 0.3), rng.uniform(0, np.pi), 0.2)
    m["bowel"] = bowel
    m["liver"] = _blob(g, rng, at(j(14, 2.5), j(2, 2), j(8, 3)), size(18, 15, 21), rng.uniform(-0.35, 0.35), 0.12)
    m["spleen"] = _blob(g, rng, at(j(-20, 2), j(-7, 2), j(10, 3)), size(8, 11, 13), rng.uniform(0.2, 0.8), 0.12)
    for side, sx_, sz_ in (("left", -14, -6), ("right", 14, -10)):
        ctr = at(j(sx_, 1.5), j(-13, 1.5), j(sz_, 3))
        rad = size(6.5, 8.5, 11)
        ang = rng.uniform(-0.5, 0.5) * np.sign(sx_)
        m[f"{side} kidney"] = _blob(g, rng, ctr, rad, ang, 0.06)
        m[f"{side} medulla"] = _blob(g, rng, ctr, tuple(r * 0.55 for r in rad), ang, 0.1) & m[f"{side} kidney"]
    body = m["body"]
    for name in list(m):
        if name not in ("body",):
            m[name] = m[name] & body

    if domain == "liver":
        lesion = np.zeros(shape, bool)
        inside = np.argwhere(ndimage.binary_erosion(m["liver"], iterations=2))
        n_les = int(rng.integers(1, 5)) if len(inside) else 0
        for _ in range(n_les):
            zc, yc, xc = inside[int(rng.integers(len(inside)))]
            c = (float(g.x[0, 0, xc]), float(g.y[0, yc, 0]), float(g.z[zc, 0, 0]))
            r = rng.uniform(3.5, 6.0)
            lesion |= _blob(g, rng, c, (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.9, 1.4)),
                            rng.uniform(0, np.pi), 0.15)
        m["lesion"] = lesion & m["liver"]

    lab = np.zeros(shape, np.uint8)
    order = {"ct": [("liver", 1), ("spleen", 2), ("left kidney", 3), ("right kidney", 4)],
             "mr": [("liver", 1), ("spleen", 2), ("left kidney", 3), ("right kidney", 3)],
             "liver": [("liver", 1), ("lesion", 2)]}[domain]
    for name, value in order:
        lab[m[name]] = value
    return m, lab


def _paint(masks: dict[str, np.ndarray], values: dict[str, float], base: float, shape) -> np.ndarray:
    img = np.full(shape, base, np.float32)
    for name, val in values.items():
        if name in masks:
            img[masks[name]] = val
    return img


def phantom(domain: str, index: int, seed: int = 0, shape=DEFAULT_SHAPE):
    """Case ``index`` of ``domain`` in RAS, axes (Z, Y, X): ``(image float32, label uint8, spacing (z, y, x), id)``."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes (Z, Y, X) of at least 8 voxels, got {shape!r}")
    rng = np.random.default_rng([int(seed), DOMAINS.index(domain), int(index)])
    sxy = float(rng.uniform(1.2, 1.8))
    spacing = (float(rng.uniform(2.0, 3.5)), sxy, sxy)
    m, lab = _anatomy(domain, rng, shape, spacing)
    u = rng.uniform

    if domain == "ct":
        liver = u(50, 75)
        vals = {"body": u(25, 45), "fat": u(-120, -80), "psoas": u(40, 60),
                "bowel": u(-10, 70), "aorta": u(150, 260), "ivc": u(90, 160),
                "spine": u(450, 800), "marrow": u(150, 300),
                "liver": liver, "spleen": liver + u(-20, 10),
                "left kidney": u(150, 200), "right kidney": u(150, 200),
                "left medulla": u(80, 120), "right medulla": u(80, 120)}
        img = _paint(m, vals, -1000.0, shape)
        img = ndimage.gaussian_filter(img, (0.4, 0.7, 0.7))
        img += rng.normal(0, u(15, 25), shape).astype(np.float32)
        img = np.clip(np.rint(img), -1024, 3071).astype(np.float32)
    else:
        liver = u(0.5, 0.65)
        vals = {"body": u(0.18, 0.28), "fat": u(0.9, 1.1), "psoas": u(0.2, 0.3), "bowel": u(0.2, 0.75),
                "aorta": u(0.05, 0.15), "ivc": u(0.1, 0.25), "spine": u(0.15, 0.25), "marrow": u(0.6, 0.8),
                "liver": liver, "spleen": liver - u(0.1, 0.2),
                "left kidney": u(0.45, 0.6), "right kidney": u(0.45, 0.6),
                "left medulla": u(0.25, 0.38), "right medulla": u(0.25, 0.38)}
        if domain == "liver":
            vals["lesion"] = liver + (u(0.25, 0.4) if rng.random() < 0.6 else -u(0.22, 0.32))
        img = _paint(m, vals, 0.0, shape)
        img = ndimage.gaussian_filter(img, (0.4, 0.7, 0.7))
        g = _Grid(shape, spacing)
        L = 60.0
        a = rng.normal(0, 0.25, 6)
        bias = np.exp(a[0] * g.x / L + a[1] * g.y / L + a[2] * g.z / L + a[3] * (g.x / L) ** 2
                      + a[4] * (g.y / L) ** 2 + a[5] * (g.x * g.y) / L ** 2).astype(np.float32)
        img = img * bias + rng.normal(0, u(0.04, 0.06), shape).astype(np.float32)
        gain = u(300, 1500)
        img = np.where(m["body"], np.maximum(img, 0.01) * gain, 0.0).astype(np.float32)
    case_id = f"{_CASE_PREFIX[domain]}_{int(index):03d}"
    return img, lab, spacing, case_id


def _affine_and_arrays(img_zyx: np.ndarray, lab_zyx: np.ndarray, spacing, index: int):
    """NIfTI arrays (X, Y, Z) and affine, in the stored orientation of case ``index``."""
    img, lab = img_zyx.transpose(2, 1, 0), lab_zyx.transpose(2, 1, 0)
    sz, sy, sx = spacing
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = -(np.array(img.shape) - 1) / 2 * np.array([sx, sy, sz])
    codes = _orientation(index)
    if codes != ("R", "A", "S"):
        t = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(codes))
        ri = nib.Nifti1Image(img, aff).as_reoriented(t)
        rl = nib.Nifti1Image(lab, aff).as_reoriented(t)
        return np.asarray(ri.dataobj), np.asarray(rl.dataobj), ri.affine
    return img, lab, aff


def write_synthetic_organs(root: str | os.PathLike, n_cases: int = 12, seed: int = 0,
                           shape=DEFAULT_SHAPE) -> dict[str, Path]:
    """Write the three nnU-Net v2 raw folders under ``root``; returns ``{domain: folder}``.

    Refuses (``FileExistsError``) to write into a dataset folder that already holds files.
    """
    if int(n_cases) < 1:
        raise ValueError(f"n_cases must be >= 1, got {n_cases!r}")
    root = Path(root)
    out = {}
    for domain in DOMAINS:
        folder = root / FOLDERS[domain]
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder}: already exists and is not empty; synthetic-organs never overwrites data")
        write_dataset_json(folder, CHANNELS[domain], LABELS[domain], int(n_cases))
        for i in range(int(n_cases)):
            img, lab, spacing, cid = phantom(domain, i, seed, shape)
            arr, larr, aff = _affine_and_arrays(img, lab, spacing, i)
            write_case(folder, cid, [arr], larr.astype(np.uint8), spacing[::-1], affine=aff)
        out[domain] = folder
    return out


def synthetic_organs_sources(cache_root: str | os.PathLike, n_cases: int = 12, seed: int = 0,
                             shape=DEFAULT_SHAPE) -> list[SegSource]:
    """The three domains as :class:`SegSource` (CT, MR, liver order), written once per parameters.

    Files go to ``cache_root/synthetic-organs-v<GENERATOR_VERSION>-n<n>-s<seed>-<Z>x<Y>x<X>/``,
    written into a temporary sibling and renamed into place, so an interrupted run leaves nothing
    that a later call would mistake for a complete set.
    """
    shape = tuple(int(s) for s in shape)
    cache_root = Path(cache_root)
    folder = cache_root / f"synthetic-organs-v{GENERATOR_VERSION}-n{int(n_cases)}-s{int(seed)}-" \
                          f"{'x'.join(str(s) for s in shape)}"
    if not all((folder / FOLDERS[d] / "dataset.json").is_file() for d in DOMAINS):
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = cache_root / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            write_synthetic_organs(tmp, n_cases, seed, shape)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not all((folder / FOLDERS[d] / "dataset.json").is_file() for d in DOMAINS):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [nnunet_source(folder / FOLDERS[d], name=SOURCE_NAMES[d]) for d in DOMAINS]
