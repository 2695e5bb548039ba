"""Tests for bench.seg_metrics: analytic values, conventions, errors and a brute-force cross-check."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench.seg_metrics import (
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
    """Independent surface: a mask voxel with any of its 3^ndim - 1 neighbours outside the mask or the image."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.zeros_like(mask)
    for idx in zip(*np.nonzero(mask)):
        window = padded[tuple(slice(i, i + 3) for i in idx)]
        out[idx] = not window.all()
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
