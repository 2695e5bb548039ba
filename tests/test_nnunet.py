"""nnU-Net v2 raw reader/validator: tiny NIfTI fixtures written with the module's own helpers."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from datasets.segmentation.nnunet import (
    NnunetCase,
    NnunetDataset,
    check_dataset,
    load_case,
    open_dataset,
    reorient_to_ras,
    write_case,
    write_dataset_json,
)
from datasets.spec import DatasetError, DatasetFormatError, DatasetNotFound

SHAPE = (8, 8, 4)
SPACING = (0.8, 0.8, 2.5)
CHANNELS = {0: "CT", 1: "PET"}
LABELS = {"background": 0, "liver": 1, "tumor": 2}


def _arrays(seed: int):
    rng = np.random.default_rng(seed)
    chans = [rng.normal(size=SHAPE).astype(np.float32), 100.0 + rng.normal(size=SHAPE).astype(np.float32)]
    label = rng.integers(0, 3, size=SHAPE).astype(np.uint8)
    return chans, label


def _make(root: Path, case_ids=("case_b", "case_a", "case_c"), num_training=None, **kw) -> dict[str, tuple]:
    """A clean 2-channel dataset of 3 cases (training needs 3); written out of order to exercise sorting."""
    write_dataset_json(root, CHANNELS, LABELS, len(case_ids) if num_training is None else num_training)
    written = {}
    for i, cid in enumerate(case_ids):
        chans, label = _arrays(i)
        write_case(root, cid, chans, label, SPACING, **kw)
        written[cid] = (chans, label)
    return written


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _single_line(msg: str) -> None:
    assert "\n" not in msg and msg.strip() == msg


# ------------------------------------------------------------------------------------------------
# clean data
# ------------------------------------------------------------------------------------------------

def test_clean_dataset_opens_and_loads(tmp_path):
    root = tmp_path / "Dataset001_Tiny"
    written = _make(root)
    ds = open_dataset(root)
    assert isinstance(ds, NnunetDataset)
    assert ds.channel_names == CHANNELS and ds.labels == LABELS and ds.file_ending == ".nii.gz"
    assert [c.case_id for c in ds.cases] == ["case_a", "case_b", "case_c"]
    assert ds.test_cases == ()
    for case in ds.cases:
        assert isinstance(case, NnunetCase)
        assert [p.name for p in case.images] == [f"{case.case_id}_0000.nii.gz", f"{case.case_id}_0001.nii.gz"]
        assert case.label == root / "labelsTr" / f"{case.case_id}.nii.gz"

        image, label, meta = load_case(ds, case)
        assert image.shape == (2, *SHAPE) and image.dtype == np.float32
        assert label.shape == SHAPE and label.dtype == np.uint8
        assert meta["spacing"] == pytest.approx(SPACING)
        assert meta["shape"] == SHAPE
        assert meta["orientation"] == ("R", "A", "S")
        assert np.allclose(meta["affine"], np.diag([*SPACING, 1.0]))
        chans, lab = written[case.case_id]
        np.testing.assert_array_equal(image[0], chans[0])
        np.testing.assert_array_equal(image[1], chans[1])  # channel order kept
        np.testing.assert_array_equal(label, lab)
    # a case can also be addressed by id
    assert load_case(ds, "case_b")[2]["case_id"] == "case_b"
    assert check_dataset(root) == []


def test_test_split_is_optional_and_read(tmp_path):
    root = tmp_path / "Dataset002_Ts"
    _make(root)
    chans, _ = _arrays(5)
    write_case(root, "test_1", chans, None, SPACING, split="Ts")
    ds = open_dataset(root)
    assert [c.case_id for c in ds.test_cases] == ["test_1"]
    assert ds.test_cases[0].label is None
    image, label, _ = load_case(ds, ds.test_cases[0])
    assert image.shape == (2, *SHAPE) and label is None
    assert check_dataset(root) == []


def test_large_label_values_use_int16(tmp_path):
    root = tmp_path / "Dataset003_Big"
    labels = {"background": 0, "big": 300}
    write_dataset_json(root, {0: "MR"}, labels, 1)
    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[0, 0, 0] = 300
    write_case(root, "c", [np.ones(SHAPE)], lab, SPACING)
    _, label, _ = load_case(open_dataset(root), "c")
    assert label.dtype == np.int16 and label.max() == 300


# ------------------------------------------------------------------------------------------------
# orientation and spacing
# ------------------------------------------------------------------------------------------------

def test_flipped_x_is_reoriented_to_ras(tmp_path):
    root = tmp_path / "Dataset004_LAS"
    affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    affine[0, 3] = 10.0
    written = _make(root, case_ids=("c1", "c2", "c3"), affine=affine)
    ds = open_dataset(root)
    chans, lab = written["c1"]

    image, label, meta = load_case(ds, "c1")
    assert meta["orientation"] == ("R", "A", "S") and meta["original_orientation"] == ("L", "A", "S")
    assert meta["spacing"] == pytest.approx(SPACING)
    np.testing.assert_array_equal(image[0], chans[0][::-1])
    np.testing.assert_array_equal(label, lab[::-1])
    assert meta["affine"][0, 0] > 0
    # the same world point maps to the same value before and after reorientation
    world = affine @ np.array([1, 2, 3, 1.0])
    ijk = np.rint(np.linalg.inv(meta["affine"]) @ world).astype(int)[:3]
    assert image[0][tuple(ijk)] == chans[0][1, 2, 3]

    image_raw, label_raw, meta_raw = load_case(ds, "c1", reorient=False)
    assert meta_raw["orientation"] == ("L", "A", "S")
    np.testing.assert_array_equal(image_raw[0], chans[0])
    np.testing.assert_array_equal(label_raw, lab)
    assert check_dataset(root) == []


def test_permuted_axes_spacing_follows_reorientation(tmp_path):
    root = tmp_path / "Dataset005_Perm"
    # voxel axis i points superior (2.5 mm), j right (0.8 mm), k anterior (0.8 mm)
    affine = np.array([[0, 0.8, 0, 0], [0, 0, 0.8, 0], [2.5, 0, 0, 0], [0, 0, 0, 1.0]])
    write_dataset_json(root, {0: "CT"}, LABELS, 1)
    data = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    write_case(root, "p", [data], np.zeros((4, 8, 8), np.uint8), (1, 1, 1), affine=affine)
    ds = open_dataset(root)
    image, label, meta = load_case(ds, "p")
    assert image.shape == (1, 8, 8, 4) and label.shape == (8, 8, 4)
    assert meta["spacing"] == pytest.approx(SPACING)
    assert meta["orientation"] == ("R", "A", "S")
    np.testing.assert_array_equal(image[0], data.transpose(1, 2, 0))
    assert load_case(ds, "p", reorient=False)[2]["spacing"] == pytest.approx((2.5, 0.8, 0.8))


def test_reorient_to_ras_helper():
    img = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([-1.0, 2.0, 3.0, 1.0]))
    ras = reorient_to_ras(img)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert ras.header.get_zooms()[:3] == pytest.approx((1.0, 2.0, 3.0))


# ------------------------------------------------------------------------------------------------
# bad data: each problem raises from open_dataset/load_case and appears in check_dataset
# ------------------------------------------------------------------------------------------------

def _expect_load_error(root: Path, case_id: str, fragment: str, path: Path) -> str:
    ds = open_dataset(root)
    with pytest.raises(DatasetFormatError) as exc:
        load_case(ds, case_id)
    msg = str(exc.value)
    _single_line(msg)
    assert str(path) in msg and fragment in msg
    lines = check_dataset(root)
    assert any(str(path) in line and fragment in line for line in lines), lines
    return msg


def test_label_shape_mismatch(tmp_path):
    root = tmp_path / "Dataset010"
    _make(root)
    chans, _ = _arrays(0)
    _, label_path = write_case(root, "case_a", chans, np.zeros((8, 8, 3), np.uint8), SPACING)
    _expect_load_error(root, "case_a", "shape", label_path)
    assert len(check_dataset(root)) == 1


def test_channel_shape_and_affine_mismatch(tmp_path):
    root = tmp_path / "Dataset011"
    _make(root)
    p1 = root / "imagesTr" / "case_a_0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.float32), np.diag([*SPACING, 1.0])), str(p1))
    _expect_load_error(root, "case_a", "shape", p1)
    p2 = root / "imagesTr" / "case_b_0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.diag([0.8, 0.8, 3.0, 1.0])), str(p2))
    _expect_load_error(root, "case_b", "affine", p2)
    # below atol: not a problem
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.diag([0.8, 0.8, 2.5 + 1e-5, 1.0])), str(p2))
    assert not any(str(p2) in line for line in check_dataset(root))


def test_label_value_not_in_dataset_json(tmp_path):
    root = tmp_path / "Dataset012"
    _make(root)
    chans, lab = _arrays(0)
    lab[0, 0, 0] = 7
    _, label_path = write_case(root, "case_b", chans, lab, SPACING)
    msg = _expect_load_error(root, "case_b", "not in dataset.json labels", label_path)
    assert "[7]" in msg


def test_truncated_file(tmp_path):
    root = tmp_path / "Dataset013"
    _make(root)
    path = root / "imagesTr" / "case_a_0001.nii.gz"
    _truncate(path)
    _expect_load_error(root, "case_a", "truncated", path)
    with pytest.raises(DatasetFormatError, match="truncated"):  # also with validation off
        load_case(open_dataset(root), "case_a", validate=False)
    assert len(check_dataset(root)) == 1


def test_truncated_data_after_intact_header(tmp_path):
    """Header readable, voxel data cut short: the failure happens in np.asarray(img.dataobj)."""
    root = tmp_path / "Dataset013b"
    write_dataset_json(root, {0: "CT"}, LABELS, 1)
    big = np.random.default_rng(0).normal(size=(16, 16, 8))
    (path,), _ = write_case(root, "c", [big], np.zeros(big.shape, np.uint8), SPACING)
    path.write_bytes(path.read_bytes()[:-64])
    assert nib.load(str(path)).shape == big.shape  # header still parses
    msg = _expect_load_error(root, "c", "truncated", path)
    assert "EOFError" in msg


def test_nan_in_image(tmp_path):
    root = tmp_path / "Dataset014"
    _make(root)
    chans, lab = _arrays(0)
    chans[0][1, 1, 1] = np.nan
    chans[0][2, 2, 2] = np.inf
    (p0, _), _ = write_case(root, "case_b", chans, lab, SPACING)
    msg = _expect_load_error(root, "case_b", "NaN", p0)
    assert "2 NaN/Inf" in msg
    image, _, _ = load_case(open_dataset(root), "case_b", validate=False)
    assert np.isnan(image[0, 1, 1, 1])


def test_missing_channel_file(tmp_path):
    root = tmp_path / "Dataset015"
    _make(root)
    missing = root / "imagesTr" / "case_a_0001.nii.gz"
    missing.unlink()
    with pytest.raises(DatasetFormatError) as exc:
        open_dataset(root)
    _single_line(str(exc.value))
    assert str(missing) in str(exc.value) and "missing channel 1 (PET)" in str(exc.value)
    lines = check_dataset(root)
    assert len(lines) == 1 and str(missing) in lines[0]


def test_label_without_images(tmp_path):
    root = tmp_path / "Dataset016"
    _make(root)
    orphan = root / "labelsTr" / "ghost.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)), str(orphan))
    with pytest.raises(DatasetFormatError, match="has no image files") as exc:
        open_dataset(root)
    assert str(orphan) in str(exc.value)
    assert any(str(orphan) in line for line in check_dataset(root))


def test_num_training_mismatch(tmp_path):
    root = tmp_path / "Dataset017"
    _make(root, num_training=5)
    with pytest.raises(DatasetFormatError, match="numTraining is 5 but imagesTr/ holds 3") as exc:
        open_dataset(root)
    assert str(root / "dataset.json") in str(exc.value)
    assert len(check_dataset(root)) == 1


def test_missing_folder_and_dataset_json(tmp_path):
    with pytest.raises(DatasetNotFound, match="not found") as exc:
        open_dataset(tmp_path / "Dataset999_Nope")
    assert "Dataset999_Nope" in str(exc.value)
    root = tmp_path / "Dataset018"
    _make(root)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetNotFound) as exc:
        open_dataset(root)
    assert "dataset.json" in str(exc.value) and str(root) in str(exc.value)
    _single_line(str(exc.value))
    # check_dataset reports it as a line and still checks the files (channels inferred)
    (root / "imagesTr" / "case_a_0001.nii.gz").unlink()
    lines = check_dataset(root)
    assert len(lines) == 2 and "dataset.json" in lines[0] and "case_a_0001" in lines[1]


def test_bad_json_and_missing_keys(tmp_path):
    root = tmp_path / "Dataset019"
    _make(root)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        open_dataset(root)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"}, "labels": LABELS}))
    with pytest.raises(DatasetFormatError, match="file_ending"):
        open_dataset(root)
    lines = check_dataset(root)
    assert sum("missing key" in line for line in lines) == 2  # file_ending and numTraining


def test_region_based_labels_rejected(tmp_path):
    root = tmp_path / "Dataset020"
    _make(root)
    doc = json.loads((root / "dataset.json").read_text())
    doc["labels"] = {"background": 0, "whole_tumor": [1, 2, 3], "enhancing": 3}
    doc["regions_class_order"] = [1, 2, 3]
    (root / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match="region-based labels are not supported") as exc:
        open_dataset(root)
    _single_line(str(exc.value))
    assert str(root / "dataset.json") in str(exc.value)
    assert any("region-based" in line for line in check_dataset(root))


def test_check_dataset_lists_all_problems_at_once(tmp_path):
    root = tmp_path / "Dataset021"
    _make(root, num_training=4)                                   # problem 1: numTraining mismatch
    truncated = root / "imagesTr" / "case_a_0001.nii.gz"
    _truncate(truncated)                                          # problem 2: truncated image
    chans, lab = _arrays(0)
    lab[3, 3, 3] = 9
    _, bad_label = write_case(root, "case_b", chans, lab, SPACING)  # problem 3: label value 9
    lines = check_dataset(root)
    assert len(lines) == 3, lines
    for line in lines:
        _single_line(line)
    assert any(str(root / "dataset.json") in line and "numTraining" in line for line in lines)
    assert any(str(truncated) in line and "truncated" in line for line in lines)
    assert any(str(bad_label) in line and "[9]" in line for line in lines)


def test_errors_share_the_base_class(tmp_path):
    with pytest.raises(DatasetError):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetNotFound):
        check_dataset(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------
# inputs are never modified
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flip", [False, True])
def test_inputs_not_modified(tmp_path, flip):
    root = tmp_path / "Dataset030"
    affine = np.diag([-0.8, 0.8, 2.5, 1.0]) if flip else None
    _make(root, affine=affine)
    chans, _ = _arrays(3)
    write_case(root, "test_1", chans, None, SPACING, split="Ts")
    before = _snapshot(root)
    ds = open_dataset(root)
    for case in ds.cases + ds.test_cases:
        load_case(ds, case)
        load_case(ds, case, reorient=False, validate=False)
    assert check_dataset(root) == []
    assert _snapshot(root) == before


def test_write_helpers_round_trip(tmp_path):
    root = tmp_path / "Dataset031"
    path = write_dataset_json(root, {1: "T2", 0: "T1"}, {"background": 0, "x": 1}, 0, file_ending=".nii")
    doc = json.loads(path.read_text())
    assert doc == {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "x": 1},
                   "numTraining": 0, "file_ending": ".nii"}
    images, label = write_case(root, "c", [np.zeros(SHAPE)] * 2, np.zeros(SHAPE, np.int64), SPACING,
                               file_ending=".nii")
    assert [p.name for p in images] == ["c_0000.nii", "c_0001.nii"] and label.name == "c.nii"
    img = nib.load(str(images[0]))
    assert img.header.get_zooms() == pytest.approx(SPACING)
    assert np.allclose(img.affine, np.diag([*SPACING, 1.0]))
    assert nib.load(str(label)).get_data_dtype() == np.uint8
    with pytest.raises(ValueError):
        write_case(root, "c", [np.zeros(SHAPE), np.zeros((2, 2, 2))], None, SPACING)
    with pytest.raises(ValueError):
        write_case(root, "c", [np.zeros(SHAPE)], None, (1.0, 0.0, 1.0))


# ------------------------------------------------------------------------------------------------
# data check rejects exactly what training (nnunet:<folder>) rejects
# ------------------------------------------------------------------------------------------------

def _ct(root: Path, n: int, fg=lambda i: True, constant: float | None = None, labels=None) -> None:
    """A 1-channel CT folder (CT normalisation applies); ``fg(i)``: case i has a foreground box."""
    write_dataset_json(root, {0: "CT"}, labels or LABELS, n)
    for i in range(n):
        rng = np.random.default_rng(i)
        img = rng.normal(40.0, 10.0, SHAPE).astype(np.float32)
        lab = np.zeros(SHAPE, np.uint8)
        if fg(i):
            lab[2:5, 2:5, 1:3] = 1
            img[lab > 0] = constant if constant is not None else img[lab > 0] + 100.0
        write_case(root, f"ct_{i}", [img], lab, SPACING)


def _empty_folders(root: Path) -> None:
    write_dataset_json(root, CHANNELS, LABELS, 0)
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()


def _label_outside_json(root: Path) -> None:
    _make(root)
    chans, lab = _arrays(0)
    lab[0, 0, 0] = 7
    write_case(root, "case_a", chans, lab, SPACING)


def _ct_seed_dependent(root: Path) -> None:
    _ct(root, 5, fg=lambda i: i >= 3)   # 3 of 5 cases without foreground; 3 training cases per split


TRAINING_RULES = {   # name: (folder writer, check_dataset line fragment, path the line names, training error fragment)
    "no cases (empty imagesTr/)": (_empty_folders, "no labelled training cases", "labelsTr",
                                   "no labelled training cases"),
    "fewer than 3 cases": (lambda r: _make(r, case_ids=("a", "b")), "need at least 3 labelled cases", "labelsTr",
                           "need at least 3 labelled cases"),
    "non-contiguous labels": (lambda r: _ct(r, 3, labels={"background": 0, "liver": 1, "tumor": 3}),
                              "must be contiguous 0..K-1", "dataset.json", "must be contiguous"),
    "CT without foreground": (lambda r: _ct(r, 3, fg=lambda i: False), "empty for every split seed", "labelsTr",
                              "no foreground (label > 0) voxels in the CT statistics cases"),
    "CT foreground in too few cases": (_ct_seed_dependent, "empty for some split seeds", "labelsTr",
                                       "no foreground (label > 0) voxels in the CT statistics cases"),
    "CT constant foreground": (lambda r: _ct(r, 3, constant=5.0), "single foreground intensity 5", "imagesTr",
                               "are constant (std 0.0)"),
    "missing channel file": (lambda r: (_make(r), (r / "imagesTr" / "case_c_0001.nii.gz").unlink()),
                             "missing channel 1", "imagesTr/case_c_0001.nii.gz", "missing channel 1"),
    "label value not in dataset.json": (_label_outside_json, "not in dataset.json labels", "labelsTr/case_a.nii.gz",
                                        "not in dataset.json labels"),
}


def _split_seed_that_fails(root: Path) -> int:
    """A split seed whose training split holds only cases without foreground (exists by construction)."""
    from datasets.segmentation.data import split_cases

    ids = [c.case_id for c in open_dataset(root).cases]
    empty = {"ct_0", "ct_1", "ct_2"}
    return next(s for s in range(1000) if set(split_cases(ids, s)["train"]) <= empty)


@pytest.mark.parametrize("rule", list(TRAINING_RULES))
def test_check_dataset_rejects_what_training_rejects(tmp_path, rule):
    from datasets import load_dataset

    write, fragment, named, run_fragment = TRAINING_RULES[rule]
    root = tmp_path / "Dataset040_Rule"
    write(root)
    lines = check_dataset(root)
    assert len(lines) == 1, lines
    _single_line(lines[0])
    assert fragment in lines[0] and lines[0].startswith(str(root / named)), lines
    seed = _split_seed_that_fails(root) if rule == "CT foreground in too few cases" else 0
    with pytest.raises(DatasetError, match=re.escape(run_fragment)):
        load_dataset("nnunet:" + str(root), seed, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("kind", ["MR (CT+PET channels)", "CT"])
def test_clean_folder_passes_check_and_training(tmp_path, kind):
    from datasets import load_dataset

    root = tmp_path / "Dataset041_Clean"
    if kind == "CT":
        _ct(root, 5, fg=lambda i: i >= 2)   # 2 empty cases < 3 training cases: every split seed has foreground
    else:
        _make(root)
    assert check_dataset(root) == []
    for seed in (0, 1):
        data = load_dataset("nnunet:" + str(root), seed, cache_dir=str(tmp_path / "cache"))
        assert len(data) == len(open_dataset(root).cases)


def test_nnunet_source_shares_the_label_and_case_rules(tmp_path):
    from datasets.segmentation.sources import nnunet_source

    root = tmp_path / "Dataset042"
    _empty_folders(root)
    with pytest.raises(DatasetFormatError) as exc:
        nnunet_source(root)
    assert str(exc.value) == check_dataset(root)[0]
