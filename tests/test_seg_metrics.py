"""Tests for bench.seg_metrics: analytic values, conventions, errors, a brute-force cross-check, agreement with
MONAI (called here) and medpy (reference numbers stored below; medpy itself is not a dependency)."""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt, gaussian_filter, generate_binary_structure

from bench.seg_metrics import (
    HD95_MODES,
    SegCaseMetrics,
    _both_directed,
    dice,
    evaluate_case,
    hd95,
    image_diagonal,
    iou,
    nsd,
    surface,
    surface_distances,
)

ISO = (1.0, 1.0, 1.0)


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    g = np.indices(shape)
    return sum((g[i] - centre[i]) ** 2 for i in range(len(shape))) <= radius * radius


def box(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Independent surface: a mask voxel with any of its 2 * ndim FACE neighbours outside the mask or the image.

    (Face connectivity, as MONAI's get_mask_edges and medpy use; an earlier version of the module and of this
    helper used all 3^ndim - 1 neighbours, which gave thicker surfaces and disagreed with MONAI.)
    """
    padded = np.pad(mask, 1, constant_values=False)
    out = np.zeros_like(mask)
    for idx in zip(*np.nonzero(mask)):
        centre = tuple(i + 1 for i in idx)
        neighbours = [tuple(c + (d if k == ax else 0) for k, c in enumerate(centre))
                      for ax in range(mask.ndim) for d in (-1, 1)]
        out[idx] = not all(padded[n] for n in neighbours)
    return out


def brute_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    pa = np.argwhere(brute_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(brute_surface(b)) * np.asarray(spacing)
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(axis=1)


# ------------------------------------------------------------------------------------------ spheres


S = (40, 40, 40)
C = (20, 20, 20)


def test_concentric_spheres():
    a, b = ball(S, C, 10), ball(S, C, 8)
    assert b.sum() < a.sum() and (b & ~a).sum() == 0  # b inside a
    assert dice(a, b) == pytest.approx(2 * b.sum() / (a.sum() + b.sum()))
    assert iou(a, b) == pytest.approx(b.sum() / a.sum())
    assert hd95(a, b, ISO) == pytest.approx(2.0, abs=1.0)
    assert hd95(b, a, ISO) == hd95(a, b, ISO)
    assert nsd(a, b, ISO, tau=3.0) == 1.0
    assert nsd(a, b, ISO, tau=0.5) == 0.0  # no surface voxel of one lies on the other's surface


def test_offset_spheres_and_uniform_scaling():
    a, b = ball(S, C, 10), ball(S, (23, 20, 20), 10)
    h = hd95(a, b, ISO)
    assert h == pytest.approx(3.0, abs=1.0)
    # the continuous answer is 0.95 * 3 (|cos| is uniform on a sphere); discretisation lowers it a little
    assert 2.0 <= h <= 3.0
    assert hd95(a, b, (2.0, 2.0, 2.0)) == pytest.approx(2 * h)
    assert hd95(a, b, (2.0, 1.0, 1.0)) > 1.5 * h  # stretching the shift axis increases the distance
    assert 0.0 < nsd(a, b, ISO, tau=1.0) < 1.0
    assert nsd(a, b, ISO, tau=3.0) == 1.0


def test_shifted_cubes_exact_and_anisotropic_spacing():
    # cubes shifted by 3 voxels along axis 0: the 100 of 488 surface voxels on the leading face are exactly
    # 3 voxels (3 * spacing_0 mm) from the other surface, and everything else is nearer, so HD95 = 3 * spacing_0
    shape = (30, 30, 30)
    a = box(shape, (10, 10, 10), (20, 20, 20))
    b = box(shape, (13, 10, 10), (23, 20, 20))
    assert surface(a).sum() == 10**3 - 8**3
    assert hd95(a, b, ISO) == pytest.approx(3.0)
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, b, (0.5, 1.0, 1.0)) == pytest.approx(1.5)
    assert dice(a, b) == pytest.approx(2 * 700 / 2000)


# ------------------------------------------------------------------------------------------ simple cases


def test_identical_masks():
    a = ball(S, C, 7)
    assert dice(a, a) == 1.0
    assert iou(a, a) == 1.0
    assert hd95(a, a, (1.5, 0.7, 3.0)) == 0.0
    assert nsd(a, a, ISO, tau=0.0) == 1.0
    assert np.all(surface_distances(a, a, ISO) == 0.0)


def test_disjoint_far_masks():
    shape = (30, 30, 30)
    a = box(shape, (2, 2, 2), (6, 6, 6))
    b = box(shape, (20, 20, 20), (25, 25, 25))
    assert dice(a, b) == 0.0
    assert nsd(a, b, ISO, tau=2.0) == 0.0
    # nearest pair: (5,5,5) and (20,20,20)
    assert surface_distances(a, b, ISO).min() == pytest.approx(15 * math.sqrt(3))


def test_nsd_hand_example_2d():
    # a = 3x3 square rows 1-3, cols 1-3; b = the same shifted one column right. Each surface is the square
    # minus its centre (8 voxels). With spacing (row 1 mm, col 2 mm), d(a -> b) is
    #   (1,1):2 (1,2):0 (1,3):0 (2,1):2 (2,3):1 (3,1):2 (3,2):0 (3,3):0   and d(b -> a) is its mirror image.
    a = np.zeros((6, 6), dtype=np.int64)
    b = np.zeros((6, 6), dtype=np.int64)
    a[1:4, 1:4] = 1
    b[1:4, 2:5] = 1
    sp = (1.0, 2.0)
    assert sorted(surface_distances(a, b, sp)) == [0, 0, 0, 0, 1, 2, 2, 2]
    assert sorted(surface_distances(b, a, sp)) == [0, 0, 0, 0, 1, 2, 2, 2]
    assert nsd(a, b, sp, tau=0.5) == pytest.approx(8 / 16)
    assert nsd(a, b, sp, tau=1.0) == pytest.approx(10 / 16)  # <= tau counts
    assert nsd(a, b, sp, tau=1.99) == pytest.approx(10 / 16)
    assert nsd(a, b, sp, tau=2.0) == 1.0
    assert dice(a, b) == pytest.approx(12 / 18)
    assert iou(a, b) == pytest.approx(6 / 12)
    assert hd95(a, b, sp) == pytest.approx(2.0)
    assert hd95(a, b, (1.0, 1.0)) == pytest.approx(1.0)


def test_surface_touching_border():
    m = np.ones((4, 5), dtype=bool)
    s = surface(m)
    assert s.sum() == 4 * 5 - 2 * 3  # border treated as background: only the 2x3 interior is not surface
    assert not surface(np.zeros((3, 3), dtype=bool)).any()


def test_surface_is_face_connected():
    # a 3x3x3 cube with its 8 corners removed: the centre's 6 face neighbours are all inside, so with face
    # connectivity the centre is interior (surface = 18 voxels); a full-connectivity (26-neighbour) erosion
    # would also put the centre on the surface (19), which is what MONAI and medpy do not do
    m = np.zeros((5, 5, 5), dtype=bool)
    m[1:4, 1:4, 1:4] = True
    for corner in itertools.product((1, 3), repeat=3):
        m[corner] = False
    assert surface(m).sum() == 18 and not surface(m)[2, 2, 2]
    assert np.array_equal(surface(m), brute_surface(m))


def test_surface_distances_brute_force():
    rng = np.random.default_rng(0)
    sp = (1.3, 0.6, 2.1)
    for _ in range(3):
        a = rng.random((9, 8, 7)) < 0.35
        b = rng.random((9, 8, 7)) < 0.35
        assert np.array_equal(surface(a), brute_surface(a))
        np.testing.assert_allclose(surface_distances(a, b, sp), brute_directed(a, b, sp), rtol=1e-12)
        np.testing.assert_allclose(surface_distances(b, a, sp), brute_directed(b, a, sp), rtol=1e-12)
        # the cropped computation used by hd95 / nsd matches the full-image one
        d_ab, d_ba = _both_directed(a, b, sp)
        np.testing.assert_array_equal(d_ab, surface_distances(a, b, sp))
        np.testing.assert_array_equal(d_ba, surface_distances(b, a, sp))


def test_crop_matches_full_image_for_small_masks():
    sp = (0.8, 1.7, 1.1)
    shape = (25, 22, 20)
    a = ball(shape, (6, 8, 9), 4)
    b = ball(shape, (9, 11, 8), 3)
    d_ab, d_ba = _both_directed(a, b, sp)
    np.testing.assert_array_equal(d_ab, surface_distances(a, b, sp))
    np.testing.assert_array_equal(d_ba, surface_distances(b, a, sp))
    expected = max(np.percentile(brute_directed(a, b, sp), 95), np.percentile(brute_directed(b, a, sp), 95))
    assert hd95(a, b, sp) == pytest.approx(expected)


def test_surface_distances_empty():
    a = box((5, 5), (1, 1), (3, 3))
    e = np.zeros((5, 5), dtype=bool)
    assert surface_distances(e, a, (1, 1)).size == 0
    d = surface_distances(a, e, (1, 1))
    assert d.size == 4 and np.all(np.isinf(d))


# ------------------------------------------------------------------------------------------ conventions


def _case(pred_present: bool, ref_present: bool) -> tuple[np.ndarray, np.ndarray]:
    shape = (12, 12, 12)
    pred = np.zeros(shape, dtype=np.int64)
    ref = np.zeros(shape, dtype=np.int64)
    if pred_present:
        pred[2:6, 2:6, 2:6] = 1
    if ref_present:
        ref[3:7, 2:6, 2:6] = 1
    return pred, ref


SP = (1.0, 2.0, 0.5)
DIAG = math.sqrt(12**2 + 24**2 + 6**2)


@pytest.mark.parametrize(
    "pred_present, ref_present, exp",
    [
        (False, False, dict(dice=math.nan, iou=math.nan, hd95=math.nan, nsd=math.nan)),
        (True, False, dict(dice=0.0, iou=0.0, hd95=DIAG, nsd=0.0)),
        (False, True, dict(dice=0.0, iou=0.0, hd95=DIAG, nsd=0.0)),
        (True, True, dict(dice=2 * 48 / 128, iou=48 / 80, hd95=1.0, nsd=1.0)),
    ],
)
def test_nnunet_convention(pred_present, ref_present, exp):
    pred, ref = _case(pred_present, ref_present)
    m = evaluate_case(pred, ref, SP, classes=[1], tau=1.0)
    got = dict(dice=m.dice[1], iou=m.iou[1], hd95=m.hd95[1], nsd=m.nsd[1])
    for k, v in exp.items():
        assert isinstance(got[k], float)
        if math.isnan(v):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(v), k
    # the binary-mask functions follow the same convention
    p, r = pred == 1, ref == 1
    for k, fn in [("dice", dice), ("iou", iou)]:
        assert np.isclose(fn(p, r), exp[k], equal_nan=True)
    assert np.isclose(hd95(p, r, SP), exp["hd95"], equal_nan=True)
    assert np.isclose(nsd(p, r, SP, 1.0), exp["nsd"], equal_nan=True)


@pytest.mark.parametrize(
    "pred_present, ref_present, exp",
    [
        (False, False, dict(dice=0.0, iou=0.0, hd95=0.0, nsd=0.0)),  # "else: return 0, 0"
        (True, False, dict(dice=1.0, iou=1.0, hd95=0.0, nsd=1.0)),  # false positive on empty GT: 1, 0
        (False, True, dict(dice=0.0, iou=0.0, hd95=0.0, nsd=0.0)),  # missed structure: 0, 0
        (True, True, dict(dice=2 * 48 / 128, iou=48 / 80, hd95=1.0, nsd=1.0)),
    ],
)
def test_m4oe_convention(pred_present, ref_present, exp):
    pred, ref = _case(pred_present, ref_present)
    m = evaluate_case(pred, ref, SP, classes=[1], tau=1.0, convention="m4oe")
    assert m.convention == "m4oe"
    got = dict(dice=m.dice[1], iou=m.iou[1], hd95=m.hd95[1], nsd=m.nsd[1])
    assert got == pytest.approx(exp)
    assert all(isinstance(v, float) for v in got.values())


# ------------------------------------------------------------------------------------------ evaluate_case


def test_evaluate_case_multiclass():
    shape = (20, 20, 20)
    ref = np.zeros(shape, dtype=np.int16)
    pred = np.zeros(shape, dtype=np.int16)
    ref[ball(shape, (10, 10, 10), 6)] = 1
    pred[ball(shape, (10, 10, 10), 6)] = 1
    ref[2:5, 2:5, 2:5] = 2
    pred[2:5, 2:6, 2:5] = 2
    classes = [1, 2, 3]  # 3 is absent in both
    m = evaluate_case(pred, ref, (1.0, 1.0, 1.0), classes, tau=1.0)
    assert isinstance(m, SegCaseMetrics)
    for d in (m.dice, m.hd95, m.nsd, m.iou, m.pred_voxels, m.ref_voxels):
        assert list(d) == classes
    assert m.dice[1] == 1.0 and m.hd95[1] == 0.0 and m.nsd[1] == 1.0
    assert m.dice[2] == pytest.approx(2 * 27 / (27 + 36))
    assert m.hd95[2] == pytest.approx(hd95(pred == 2, ref == 2, (1, 1, 1)))
    assert m.nsd[2] == pytest.approx(nsd(pred == 2, ref == 2, (1, 1, 1), 1.0))
    assert all(math.isnan(d[3]) for d in (m.dice, m.hd95, m.nsd, m.iou))
    assert m.pred_voxels[3] == 0 and m.ref_voxels[2] == 27 and m.pred_voxels[2] == 36
    assert m.spacing == (1.0, 1.0, 1.0) and m.tau == 1.0
    # background label 0 works like any other class
    m0 = evaluate_case(pred, ref, (1, 1, 1), [0])
    assert m0.dice[0] == pytest.approx(dice(pred == 0, ref == 0))


def test_evaluate_case_2d():
    ref = np.zeros((10, 10), dtype=np.int64)
    ref[2:6, 2:6] = 4
    m = evaluate_case(ref.copy(), ref, (0.5, 0.5), [4])
    assert m.dice[4] == 1.0 and m.hd95[4] == 0.0 and m.nsd[4] == 1.0


def test_image_diagonal():
    assert image_diagonal((3, 4), (1.0, 1.0)) == pytest.approx(5.0)
    assert image_diagonal((2, 2, 1), (1.0, 1.0, 2.0)) == pytest.approx(math.sqrt(12))


# ------------------------------------------------------------------------------------------ errors


def test_shape_mismatch_names_both_shapes():
    a = np.zeros((4, 5, 6), dtype=np.int64)
    b = np.zeros((4, 5, 7), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
        evaluate_case(a, b, ISO, [1])
    for fn in (dice, iou):
        with pytest.raises(ValueError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
            fn(a, b)
    with pytest.raises(ValueError, match="shape"):
        hd95(a, b, ISO)
    with pytest.raises(ValueError, match="shape"):
        nsd(a, b, ISO, 1.0)
    with pytest.raises(ValueError, match="shape"):
        surface_distances(a, b, ISO)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0),
                                     (1.0, math.nan, 1.0), (1.0, math.inf, 1.0), 3.0])
def test_bad_spacing(spacing):
    a = np.zeros((4, 4, 4), dtype=np.int64)
    a[1:3, 1:3, 1:3] = 1
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(a, a, spacing, [1])
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, spacing)
    with pytest.raises(ValueError, match="spacing"):
        nsd(a, a, spacing, 1.0)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(a, a, spacing)


def test_bad_convention_and_tau():
    a = np.ones((3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="convention"):
        evaluate_case(a, a, (1, 1), [1], convention="medpy")
    with pytest.raises(ValueError, match="hd95_mode"):
        evaluate_case(a, a, (1, 1), [1], hd95_mode="max")
    with pytest.raises(ValueError, match="hd95_mode"):
        hd95(a, a, (1, 1), mode="pooled")
    with pytest.raises(ValueError, match="tau"):
        evaluate_case(a, a, (1, 1), [1], tau=-1.0)
    with pytest.raises(ValueError, match="tau"):
        nsd(a, a, (1, 1), tau=math.nan)


def test_no_runtime_warnings_on_all_empty_combinations():
    # pyproject turns RuntimeWarnings from bench.* into errors; exercise every branch once
    for pp, rp in itertools.product([False, True], repeat=2):
        pred, ref = _case(pp, rp)
        for conv in ("nnunet", "m4oe"):
            evaluate_case(pred, ref, SP, [0, 1, 2], convention=conv)


# ------------------------------------------------------------------------------------------ MONAI agreement


def random_pair(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """A seeded random 3-D mask pair with anisotropic spacing; ``seed % 6`` picks the kind of structure."""
    rng = np.random.default_rng(seed)
    kind = seed % 6
    shape = tuple(int(n) for n in rng.integers(12, 33, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 3.0, size=3))
    g = np.indices(shape).astype(float)

    def blob() -> np.ndarray:
        c = [rng.uniform(0, n) for n in shape]
        r = [rng.uniform(2, n / 2.5) for n in shape]
        return sum(((g[i] - c[i]) / r[i]) ** 2 for i in range(3)) <= 1.0

    def smooth_noise(fraction: float) -> np.ndarray:
        f = gaussian_filter(rng.random(shape), sigma=rng.uniform(0.8, 2.0))
        return f > np.quantile(f, 1 - fraction)

    if kind == 0:  # two ellipsoids (often overlapping or clipped by the image border)
        a, b = blob(), blob()
    elif kind == 1:  # smoothed noise of different volume fractions
        a, b = smooth_noise(rng.uniform(0.05, 0.4)), smooth_noise(rng.uniform(0.05, 0.4))
    elif kind == 2:  # thin structures: a one-voxel plate plus a line, vs a shifted copy with specks
        a = np.zeros(shape, dtype=bool)
        plane = [slice(None)] * 3
        ax = int(rng.integers(3))
        plane[ax] = int(rng.integers(shape[ax]))
        a[tuple(plane)] = blob()[tuple(plane)] | (rng.random(a[tuple(plane)].shape) < 0.1)
        a[int(rng.integers(shape[0])), int(rng.integers(shape[1])), :] = True
        b = np.roll(a, int(rng.integers(-2, 3)), axis=int(rng.integers(3))) | (rng.random(shape) < 0.01)
    elif kind == 3:  # masks touching the image border
        a, b = blob(), blob()
        a[: int(rng.integers(1, 4))] = True
        b[:, -int(rng.integers(1, 4)):] |= rng.random((shape[0], 1, shape[2])) < 0.7
    elif kind == 4:  # very different sizes: two big ellipsoids vs a few isolated voxels
        a = blob() | blob()
        b = rng.random(shape) < 0.003
        b[tuple(int(rng.integers(n)) for n in shape)] = True
    else:  # sparse random noise
        a, b = rng.random(shape) < 0.3, rng.random(shape) < rng.uniform(0.02, 0.5)
    return a, b, spacing


MONAI_SEEDS = range(36)


def monai_hd95_nsd(a: np.ndarray, b: np.ndarray, spacing, taus) -> tuple[float, list[float]]:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(np.asarray(a, dtype=np.float32))[None, None]
    r = torch.from_numpy(np.asarray(b, dtype=np.float32))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty masks
        h = compute_hausdorff_distance(p, r, include_background=True, percentile=95, directed=False,
                                       spacing=list(spacing))
        n = [compute_surface_dice(p, r, [t], include_background=True, spacing=list(spacing)) for t in taus]
    return float(h[0, 0]), [float(x[0, 0]) for x in n]


def test_hd95_and_nsd_match_monai_on_random_pairs():
    # 36 seeded pairs: ellipsoids, smooth noise, thin plates/lines, border-touching masks, very different
    # sizes, sparse noise; anisotropic spacing in [0.4, 3] mm. All non-empty (empty masks: see next test).
    taus = (1.0, 2.0)
    worst_h = worst_n = 0.0
    for seed in MONAI_SEEDS:
        a, b, sp = random_pair(seed)
        assert a.any() and b.any(), seed
        h_ref, n_ref = monai_hd95_nsd(a, b, sp, taus)
        assert hd95(a, b, sp) == pytest.approx(h_ref, abs=1e-4, rel=1e-6), seed
        assert hd95(b, a, sp) == pytest.approx(h_ref, abs=1e-4, rel=1e-6), seed
        for t, n in zip(taus, n_ref):
            assert nsd(a, b, sp, t) == pytest.approx(n, abs=1e-4), (seed, t)
        m = evaluate_case(a.astype(np.int16), b.astype(np.int16), sp, [1], tau=taus[0])
        assert m.hd95[1] == pytest.approx(h_ref, abs=1e-4, rel=1e-6) and m.nsd[1] == pytest.approx(n_ref[0], abs=1e-4)
        worst_h = max(worst_h, abs(hd95(a, b, sp) - h_ref))
        worst_n = max(worst_n, max(abs(nsd(a, b, sp, t) - n) for t, n in zip(taus, n_ref)))
    assert worst_h < 1e-4 and worst_n < 1e-4


def test_empty_masks_vs_monai():
    # NSD agrees with MONAI on empty masks (both empty: NaN, one empty: 0). HD95 deliberately does not when
    # exactly one mask is empty: MONAI gives NaN, we give the image diagonal (nnU-Net / Metrics Reloaded).
    sp = (1.0, 2.0, 0.5)
    for pp, rp in itertools.product([False, True], repeat=2):
        if pp and rp:
            continue
        pred, ref = _case(pp, rp)
        h_ref, (n_ref,) = monai_hd95_nsd(pred, ref, sp, [1.0])
        assert math.isnan(h_ref)
        assert np.isclose(nsd(pred, ref, sp, 1.0), n_ref, equal_nan=True)
        if pp or rp:
            assert hd95(pred, ref, sp) == pytest.approx(DIAG)
        else:
            assert math.isnan(hd95(pred, ref, sp))


def test_nsd_tolerance_compared_in_float32_like_monai():
    # surfaces exactly 1 mm apart; a tau below 1 by less than float32 resolution still counts the pair as
    # within tolerance (MONAI compares float32 distances), a tau clearly below 1 does not
    a = np.zeros((6, 6, 6), dtype=bool)
    b = np.zeros((6, 6, 6), dtype=bool)
    a[2, 1:5, 1:5] = True
    b[3, 1:5, 1:5] = True
    sp = (1.0, 0.7, 1.3)
    for tau, expected in [(1.0 - 1e-12, 1.0), (0.999, 0.0)]:
        assert nsd(a, b, sp, tau) == expected
        assert monai_hd95_nsd(a, b, sp, [tau])[1][0] == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ medpy hd95


def ellipsoid(shape, centre, radii) -> np.ndarray:
    g = np.indices(shape)
    return sum(((g[i] - centre[i]) / radii[i]) ** 2 for i in range(len(shape))) <= 1.0


def medpy_pairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """Deterministic (RNG-free) mask pairs with anisotropic spacing for the stored medpy values."""
    s = (24, 28, 20)
    box_at_border = np.zeros(s, dtype=bool)
    box_at_border[0:9, 3:20, 2:15] = True
    plate = np.zeros(s, dtype=bool)
    plate[10, 4:22, 3:17] = True
    plate[3:20, 14, 10] = True
    plate2 = np.zeros(s, dtype=bool)
    plate2[12, 6:24, 3:15] = True
    plate2[5:22, 15, 11] = True
    return {
        "offset_ellipsoids": (ellipsoid(s, (11, 13, 9), (7, 9, 5)), ellipsoid(s, (13, 12, 10), (6, 10, 6)),
                              (0.8, 1.5, 2.5)),
        "box_vs_ellipsoid_border": (box_at_border, ellipsoid(s, (4, 12, 8), (6, 8, 5)), (2.0, 0.7, 1.2)),
        "thin_plate_and_line": (plate, plate2, (1.7, 0.6, 0.9)),
        "big_vs_two_small": (ellipsoid(s, (12, 14, 10), (9, 11, 7)),
                             ellipsoid(s, (5, 6, 4), (2, 2, 2)) | ellipsoid(s, (18, 20, 15), (1, 1, 1)),
                             (1.25, 0.5, 3.0)),
    }


# medpy 0.5.2 ``medpy.metric.binary.hd95(a, b, voxelspacing=sp)`` and ``hd95(a, b)`` (no spacing, i.e. voxels, as
# the M4oE reference calls it) on medpy_pairs(), obtained once by hand with medpy installed outside the project
# (pip install --no-deps --target); medpy is not a dependency. The last column is MONAI's definition in mm.
MEDPY_HD95 = {  # name: (medpy with voxelspacing [mm], medpy without voxelspacing [voxels], MONAI-definition [mm])
    "offset_ellipsoids": (4.220189569201839, 2.8284271247461903, 5.0),
    "box_vs_ellipsoid_border": (4.167733196834941, 3.7416573867739413, 4.167733196834941),
    "thin_plate_and_line": (3.605551275463989, 2.8284271247461903, 3.8470768123342687),
    "big_vs_two_small": (17.351152699460634, 12.206555615733702, 17.37814021190772),
}


@pytest.mark.parametrize("name", sorted(MEDPY_HD95))
def test_medpy_hd95_reference_values(name):
    a, b, sp = medpy_pairs()[name]
    mm, vox, monai_mm = MEDPY_HD95[name]
    assert hd95(a, b, sp, mode="medpy") == pytest.approx(mm, rel=1e-9)
    assert hd95(a, b, (1.0, 1.0, 1.0), mode="medpy") == pytest.approx(vox, rel=1e-9)
    assert hd95(a, b, sp) == pytest.approx(monai_mm, rel=1e-9)
    assert hd95(a, b, sp, mode="monai") == hd95(a, b, sp)
    h_ref, _ = monai_hd95_nsd(a, b, sp, [1.0])
    assert monai_mm == pytest.approx(h_ref, abs=1e-4)
    # the reference's evaluation: m4oe reports medpy's hd95 in voxels; nnunet reports MONAI's in mm
    m = evaluate_case(a.astype(np.int64), b.astype(np.int64), sp, [1], convention="m4oe")
    assert m.hd95[1] == pytest.approx(vox, rel=1e-9) and m.hd95_unit == "voxel" and m.hd95_mode == "medpy"
    assert m.nsd[1] == nsd(a, b, sp, 2.0)  # NSD stays in mm (tau mm, with the spacing)
    m = evaluate_case(a.astype(np.int64), b.astype(np.int64), sp, [1])
    assert m.hd95[1] == pytest.approx(monai_mm, rel=1e-9) and m.hd95_unit == "mm" and m.hd95_mode == "monai"
    m = evaluate_case(a.astype(np.int64), b.astype(np.int64), sp, [1], hd95_mode="medpy")
    assert m.hd95[1] == pytest.approx(mm, rel=1e-9) and m.hd95_unit == "mm"


def medpy_formula_hd95(a: np.ndarray, b: np.ndarray, spacing=None) -> float:
    """medpy.metric.binary.hd95 written out (0.5.2 source): face-connectivity erosion, EDT, pooled percentile."""
    def surface_distances(result, reference):
        footprint = generate_binary_structure(result.ndim, 1)
        result_border = result ^ binary_erosion(result, structure=footprint, iterations=1)
        reference_border = reference ^ binary_erosion(reference, structure=footprint, iterations=1)
        return distance_transform_edt(~reference_border, sampling=spacing)[result_border]

    return float(np.percentile(np.hstack((surface_distances(a, b), surface_distances(b, a))), 95))


def test_medpy_hd95_matches_medpy_formula_on_random_pairs():
    for seed in range(12):
        a, b, sp = random_pair(seed)
        assert hd95(a, b, sp, mode="medpy") == pytest.approx(medpy_formula_hd95(a, b, sp), rel=1e-12), seed
        m = evaluate_case(a.astype(np.int16), b.astype(np.int16), sp, [1], convention="m4oe")
        assert m.hd95[1] == pytest.approx(medpy_formula_hd95(a, b), rel=1e-12), seed
    assert set(HD95_MODES) == {"monai", "medpy"}
