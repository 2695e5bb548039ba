"""Segmentation data path: official-layout adapters, preprocessing cache, synthetic-organs, conversion.

Fixtures are tiny NIfTI volumes written into tmp_path in exactly the released layouts
(FLARE22 nnU-Net-style and official, AMOS22 with dataset.json and Tr/Va/Ts, ATLAS23 im/lb).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from datasets.segmentation import preprocess as seg_preprocess
from datasets.segmentation import synthetic_organs
from datasets.segmentation.convert import OUTPUT_FOLDERS, convert_to_nnunet
from datasets.segmentation.nnunet import check_dataset, write_case, write_dataset_json
from datasets.segmentation.preprocess import PREPROCESS_VERSION, PreparedCase, prepare_source, to_original
from datasets.segmentation.sources import (
    AMOS22_LABELS,
    ATLAS23_LABELS,
    FLARE22_LABELS,
    SegSource,
    amos22_source,
    atlas23_source,
    flare22_source,
    nnunet_source,
    read_case,
)
from datasets.segmentation.synthetic_organs import (
    DOMAINS,
    FOLDERS,
    LABELS,
    phantom,
    synthetic_organs_sources,
    write_synthetic_organs,
)
from datasets.spec import DatasetFormatError, DatasetNotFound

SHAPE = (16, 16, 8)  # NIfTI (X, Y, Z)

AMOS_OFFICIAL_LABELS = {
    "0": "background", "1": "spleen", "2": "right kidney", "3": "left kidney", "4": "gall bladder",
    "5": "esophagus", "6": "liver", "7": "stomach", "8": "arota", "9": "postcava", "10": "pancreas",
    "11": "right adrenal gland", "12": "left adrenal gland", "13": "duodenum", "14": "bladder",
    "15": "prostate/uterus",
}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _save(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0), affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    aff = np.diag([*spacing, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, str(path))
    return path


def _volume(seed: int, n_classes: int, shape=SHAPE, ct=True):
    """(image, label) in NIfTI (X, Y, Z) order: a body block with organs as boxes."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    x, y, z = shape
    for k in range(1, n_classes):
        x0 = int(rng.integers(1, x - 5))
        y0 = int(rng.integers(1, y - 5))
        lab[x0:x0 + 4, y0:y0 + 4, 1:z - 1] = k
    base = -1000.0 if ct else 0.0
    img = np.full(shape, base, np.float32)
    img[1:-1, 1:-1, :] = rng.normal(40 if ct else 300, 10, (x - 2, y - 2, z)).astype(np.float32)
    img[lab > 0] += 30.0 * lab[lab > 0]
    return img, lab


def _flare(root: Path, layout: str = "nnunet", ids=(2, 1, 3)) -> Path:
    base = root / "FLARE22"
    idir, ldir = ("imagesTr", "labelsTr") if layout == "nnunet" else ("images", "labels")
    for i in ids:
        img, lab = _volume(i, 14)
        _save(base / idir / f"FLARE22_Tr_{i:04d}_0000.nii.gz", img)
        _save(base / ldir / f"FLARE22_Tr_{i:04d}.nii.gz", lab)
    return base


def _amos(root: Path, labels=None) -> Path:
    base = root / "amos22"
    base.mkdir(parents=True)
    (base / "dataset.json").write_text(json.dumps({
        "name": "AMOS", "modality": {"0": "CT"}, "labels": labels or AMOS_OFFICIAL_LABELS,
        "numTraining": 5, "training": [], "validation": [], "test": []}))
    for split, ids in (("Tr", (1, 5, 507)), ("Va", (10, 600))):
        for i in ids:
            img, lab = _volume(i, 16, ct=i <= 500)
            _save(base / f"images{split}" / f"amos_{i:04d}.nii.gz", img)
            _save(base / f"labels{split}" / f"amos_{i:04d}.nii.gz", lab)
    img, _ = _volume(20, 16)
    _save(base / "imagesTs" / "amos_0020.nii.gz", img)
    return base


def _atlas(root: Path, ids=(10, 0, 2)) -> Path:
    base = root / "atlas-train-dataset-1.0.1" / "train"
    for i in ids:
        img, lab = _volume(i, 3, ct=False)
        _save(base / "imagesTr" / f"im{i}.nii.gz", img)
        _save(base / "labelsTr" / f"lb{i}.nii.gz", lab)
    return base


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg
    return msg


def _nnunet_ds(root: Path, spacings, channel="CT", shape=SHAPE, n_classes=3, vol=None) -> SegSource:
    """A small nnU-Net v2 folder; ``spacings`` are NIfTI (x, y, z) per case; ``vol(i)`` overrides arrays."""
    labels = {"background": 0, **{f"organ{k}": k for k in range(1, n_classes)}}
    write_dataset_json(root, {0: channel}, labels, len(spacings))
    for i, sp in enumerate(spacings):
        img, lab = vol(i) if vol else _volume(i, n_classes, shape, ct=channel == "CT")
        write_case(root, f"case_{i:03d}", [img], lab, sp)
    return nnunet_source(root)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


# ------------------------------------------------------------------------------------------------
# adapters: layouts found
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["nnunet", "official"])
def test_flare22_both_layouts(tmp_path, layout):
    base = _flare(tmp_path, layout)
    src = flare22_source(tmp_path)
    assert src.name == "flare22" and src.modality == "CT" and src.channels == ("CT",)
    assert src.labels == FLARE22_LABELS and len(src.labels) == 14 and src.labels[13] == "left kidney"
    assert [c.case_id for c in src.cases] == ["FLARE22_Tr_0001", "FLARE22_Tr_0002", "FLARE22_Tr_0003"]
    sub = "imagesTr" if layout == "nnunet" else "images"
    assert src.cases[0].images == (base / sub / "FLARE22_Tr_0001_0000.nii.gz",)
    image, label, meta = read_case(src, src.cases[0])
    assert image.shape == (1, *SHAPE) and image.dtype == np.float32 and label.shape == SHAPE
    assert meta["orientation"] == ("R", "A", "S") and meta["spacing"] == (1.0, 1.0, 2.0)


def test_flare22_uses_data_root_env(tmp_path, monkeypatch):
    _flare(tmp_path)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    assert len(flare22_source().cases) == 3


def test_amos22_split_by_id(tmp_path):
    _amos(tmp_path)
    ct, mr = amos22_source(tmp_path, "ct"), amos22_source(tmp_path, "mr")
    assert [c.case_id for c in ct.cases] == ["amos_0001", "amos_0005", "amos_0010"]   # Tr + Va, ids <= 500
    assert [c.case_id for c in mr.cases] == ["amos_0507", "amos_0600"]
    assert (ct.name, ct.modality, mr.name, mr.modality) == ("amos22-ct", "CT", "amos22-mr", "MR")
    assert ct.labels == AMOS22_LABELS == mr.labels and len(ct.labels) == 16
    assert ct.cases[2].images[0].parent.name == "imagesVa"          # official names lack _0000
    image, label, _ = read_case(mr, "amos_0600")
    assert image.shape == (1, *SHAPE) and int(label.max()) == 15
    with pytest.raises(ValueError):
        amos22_source(tmp_path, "pet")


def test_amos22_accepts_nnunet_style_labels_and_unlabelled_va(tmp_path):
    base = _amos(tmp_path, labels={v: int(k) for k, v in AMOS_OFFICIAL_LABELS.items()})
    assert len(amos22_source(tmp_path).cases) == 3
    (base / "labelsVa" / "amos_0010.nii.gz").unlink()
    with pytest.raises(DatasetFormatError, match="amos_0010.nii.gz: image has no label"):
        amos22_source(tmp_path)
    (base / "labelsVa" / "amos_0600.nii.gz").unlink()
    (base / "labelsVa").rmdir()                      # challenge-phase release: Va labels withheld
    assert [c.case_id for c in amos22_source(tmp_path).cases] == ["amos_0001", "amos_0005"]


def test_atlas23_im_lb_naming(tmp_path):
    base = _atlas(tmp_path)
    src = atlas23_source(tmp_path)
    assert [c.case_id for c in src.cases] == ["atlas23_0000", "atlas23_0002", "atlas23_0010"]
    assert src.cases[2].images == (base / "imagesTr" / "im10.nii.gz",)
    assert src.cases[2].label == base / "labelsTr" / "lb10.nii.gz"
    assert src.labels == ATLAS23_LABELS and src.modality == "MR"


def test_nnunet_source_modality_and_labels(tmp_path):
    ct = _nnunet_ds(tmp_path / "Dataset001_A", [(1, 1, 2)] * 2)
    mr = _nnunet_ds(tmp_path / "Dataset002_B", [(1, 1, 2)] * 2, channel="T2")
    assert (ct.name, ct.modality, mr.modality) == ("Dataset001_A", "CT", "MR")
    assert ct.labels == {0: "background", 1: "organ1", 2: "organ2"}
    assert nnunet_source(tmp_path / "Dataset001_A", name="x").name == "x"
    bad = tmp_path / "Dataset003_C"
    write_dataset_json(bad, {0: "CT"}, {"background": 0, "a": 2}, 0)
    (bad / "imagesTr").mkdir()
    (bad / "labelsTr").mkdir()
    with pytest.raises(DatasetFormatError, match="contiguous"):
        nnunet_source(bad)


# ------------------------------------------------------------------------------------------------
# adapters: absent and malformed data
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn,folder,expect", [
    (flare22_source, "FLARE22", "FLARE22_Tr_XXXX_0000.nii.gz"),
    (amos22_source, "amos22", "amos_XXXX.nii.gz"),
    (atlas23_source, "atlas-train-dataset-1.0.1", "im{N}.nii.gz"),
])
def test_absent_data_names_expected_files(tmp_path, fn, folder, expect):
    with pytest.raises(DatasetNotFound) as ei:
        fn(tmp_path)
    msg = _one_line(ei.value)
    assert str(tmp_path / folder) in msg and expect in msg
    assert "--data-root" in msg and "BENCH_DATA_ROOT" in msg and "obtain" in msg


def test_amos22_missing_part_is_not_found(tmp_path):
    _amos(tmp_path)
    for p in (tmp_path / "amos22").rglob("amos_05*.nii.gz"):
        p.unlink()
    for p in (tmp_path / "amos22").rglob("amos_06*.nii.gz"):
        p.unlink()
    with pytest.raises(DatasetNotFound, match="MRI cases"):
        amos22_source(tmp_path, "mr")


def test_image_without_label_names_file(tmp_path):
    base = _flare(tmp_path, "official")
    (base / "labels" / "FLARE22_Tr_0002.nii.gz").unlink()
    with pytest.raises(DatasetFormatError) as ei:
        flare22_source(tmp_path)
    msg = _one_line(ei.value)
    assert str(base / "images" / "FLARE22_Tr_0002_0000.nii.gz") in msg
    assert str(base / "labels" / "FLARE22_Tr_0002.nii.gz") in msg


def test_label_without_image_and_bad_name(tmp_path):
    base = _atlas(tmp_path)
    (base / "imagesTr" / "im2.nii.gz").unlink()
    with pytest.raises(DatasetFormatError, match="lb2.nii.gz: label has no image"):
        atlas23_source(tmp_path)
    _save(base / "imagesTr" / "im2.nii.gz", np.zeros(SHAPE, np.float32))
    _save(base / "imagesTr" / "scan7.nii.gz", np.zeros(SHAPE, np.float32))
    with pytest.raises(DatasetFormatError, match="scan7.nii.gz"):
        atlas23_source(tmp_path)


def test_label_value_outside_map_names_file(tmp_path):
    base = _flare(tmp_path)
    bad = base / "labelsTr" / "FLARE22_Tr_0001.nii.gz"
    _save(bad, np.full(SHAPE, 14, np.uint8))
    src = flare22_source(tmp_path)
    with pytest.raises(DatasetFormatError) as ei:
        read_case(src, "FLARE22_Tr_0001")
    msg = _one_line(ei.value)
    assert str(bad) in msg and "[14]" in msg and "flare22 label map" in msg


def test_amos22_bad_label_map_names_dataset_json(tmp_path):
    _amos(tmp_path, labels={**AMOS_OFFICIAL_LABELS, "6": "kidney"})
    with pytest.raises(DatasetFormatError) as ei:
        amos22_source(tmp_path)
    assert str(tmp_path / "amos22" / "dataset.json") in _one_line(ei.value) and "liver" in str(ei.value)


# ------------------------------------------------------------------------------------------------
# preprocessing
# ------------------------------------------------------------------------------------------------

def test_resample_to_median_spacing_shape(tmp_path):
    spacings = [(0.8, 0.8, 2.0), (1.0, 1.0, 3.0), (1.2, 1.2, 4.0)]   # NIfTI (x, y, z)
    src = _nnunet_ds(tmp_path / "Dataset001_CT", spacings)
    cases = prepare_source(src, tmp_path / "cache", [c.case_id for c in src.cases], progress=False)
    assert [c.case_id for c in cases] == [c.case_id for c in src.cases]
    manifest = json.loads((Path(cases[0].meta["cache_dir"]) / "manifest.json").read_text())
    assert manifest["target_spacing"] == [3.0, 1.0, 1.0] and manifest["version"] == PREPROCESS_VERSION
    for case, (sx, sy, sz) in zip(cases, spacings):
        assert isinstance(case, PreparedCase) and case.domain == "Dataset001_CT"
        assert case.crop == ((0, 8), (0, 16), (0, 16))       # CT air is non-zero: nothing cropped
        expected = (round(8 * sz / 3.0), round(16 * sy / 1.0), round(16 * sx / 1.0))
        assert case.image.shape == (1, *expected) and case.image.dtype == np.float32
        assert case.label.shape == expected and case.label.dtype == np.int16
        assert case.original_label.shape == (8, 16, 16) and np.allclose(case.original_spacing, (sz, sy, sx))
        assert np.allclose(np.array(case.spacing) * expected, np.array([sz, sy, sx]) * (8, 16, 16))
    # explicit target spacing overrides the median
    fine = prepare_source(src, tmp_path / "cache", [src.cases[0].case_id], target_spacing=(2.0, 0.8, 0.8),
                          progress=False)
    assert fine[1].label.shape == (12, 20, 20)


def test_ct_normalisation_uses_only_stats_cases(tmp_path):
    def make(root, hot):
        def vol(i):
            img, lab = _volume(i, 3)
            if i == 2 and hot:
                img[lab > 0] += 500.0
            return img, lab
        return _nnunet_ds(root, [(1, 1, 2)] * 3, vol=vol)

    stats = ["case_000", "case_001"]
    a = prepare_source(make(tmp_path / "a" / "Dataset001_X", False), tmp_path / "cache", stats, progress=False)
    b = prepare_source(make(tmp_path / "b" / "Dataset001_X", True), tmp_path / "cache", stats, progress=False)
    ma, mb = (json.loads((Path(c[0].meta["cache_dir"]) / "manifest.json").read_text()) for c in (a, b))
    assert ma["key"] != mb["key"] and ma["ct_stats"] == mb["ct_stats"]
    for i in (0, 1):
        assert np.array_equal(a[i].image, b[i].image)
    assert not np.array_equal(a[2].image, b[2].image)
    # the statistics are exactly those of the stats cases' foreground voxels (every 10th, clip, z-score)
    src = make(tmp_path / "a" / "Dataset001_X", False)
    vals = []
    for cid in stats:
        img, lab, _ = read_case(src, cid)
        vals.append(img[0].transpose(2, 1, 0)[lab.transpose(2, 1, 0) > 0][::10])
    v = np.concatenate(vals).astype(np.float64)
    st = ma["ct_stats"][0]
    assert np.isclose(st["mean"], v.mean()) and np.isclose(st["std"], v.std())
    assert np.isclose(st["p_low"], np.percentile(v, 0.5)) and np.isclose(st["p_high"], np.percentile(v, 99.5))
    img, _, _ = read_case(src, "case_000")
    expect = (np.clip(img[0].transpose(2, 1, 0), st["p_low"], st["p_high"]) - st["mean"]) / st["std"]
    assert np.allclose(a[0].image[0], expect, atol=1e-4)
    # including the changed case does change the statistics
    c = prepare_source(make(tmp_path / "b" / "Dataset001_X", True), tmp_path / "cache", stats + ["case_002"],
                       progress=False)
    assert not np.array_equal(a[0].image, c[0].image)


def test_ct_without_foreground_in_stats_cases(tmp_path):
    def vol(i):
        img, lab = _volume(i, 3)
        return img, (lab if i == 1 else np.zeros_like(lab))
    src = _nnunet_ds(tmp_path / "Dataset001_X", [(1, 1, 2)] * 2, vol=vol)
    with pytest.raises(DatasetFormatError, match="no foreground"):
        prepare_source(src, tmp_path / "cache", ["case_000"], progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # nothing half-written


def _mr_corner_vol(i):
    """MR volume that is zero in one x/y corner (inside the bounding box, not a hole) and on a border."""
    rng = np.random.default_rng(i)
    img = rng.uniform(100, 200, SHAPE).astype(np.float32)
    lab = np.zeros(SHAPE, np.uint8)
    lab[6:12, 6:12, 2:6] = 1
    lab[8:10, 8:10, 3:5] = 2
    img[lab == 1] += 100
    img[:5, :5, :] = 0      # corner: stays inside the crop -> ignore label
    img[:, 15, :] = 0       # border row: cropped away
    return img, lab


def test_mr_zscore_and_ignore_label_outside_nonzero(tmp_path):
    src = _nnunet_ds(tmp_path / "Dataset001_MR", [(1, 1, 2)] * 2, channel="T1", vol=_mr_corner_vol)
    cases = prepare_source(src, tmp_path / "cache", [], progress=False)
    for case in cases:
        assert case.crop == ((0, 8), (0, 15), (0, 16))
        outside = np.zeros((8, 15, 16), bool)
        outside[:, :5, :5] = True                       # (z, y, x)
        assert np.array_equal(case.label == -1, outside)
        assert set(np.unique(case.label)) == {-1, 0, 1, 2}
        inside = case.image[0][~outside]
        assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3
        assert np.all(case.image[0][outside] == 0)


def test_to_original_identity_is_exact(tmp_path):
    src = _nnunet_ds(tmp_path / "Dataset001_MR", [(1, 1, 2)] * 2, channel="T1", vol=_mr_corner_vol)
    for case, raw in zip(prepare_source(src, tmp_path / "cache", [], progress=False), src.cases):
        _, lab, _ = read_case(src, raw)
        assert np.array_equal(case.original_label, lab.transpose(2, 1, 0))
        back = to_original(case.label, case)
        assert back.dtype == np.int16 and np.array_equal(back, case.original_label)
    with pytest.raises(ValueError, match="shape"):
        to_original(np.zeros((2, 2, 2)), case)


def test_to_original_after_resampling_is_close(tmp_path):
    shape = (48, 48, 20)

    def vol(i):
        x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        lab = np.zeros(shape, np.uint8)
        lab[((x - 18) / 14) ** 2 + ((y - 22) / 15) ** 2 + ((z - 10) / 7) ** 2 < 1] = 1
        lab[((x - 36) / 8) ** 2 + ((y - 26) / 9) ** 2 + ((z - 9) / 6) ** 2 < 1] = 2
        img = np.where(lab > 0, 100.0, 20.0) - 1000 * (x == 0) + np.random.default_rng(i).normal(0, 5, shape)
        return img.astype(np.float32), lab

    src = _nnunet_ds(tmp_path / "Dataset001_CT", [(0.9, 0.9, 2.5), (1.0, 1.0, 3.0), (1.3, 1.3, 4.0)], vol=vol)
    cases = prepare_source(src, tmp_path / "cache", ["case_000"], progress=False)
    for case in cases:
        back = to_original(case.label, case)
        assert back.shape == case.original_label.shape
        for k in (1, 2):
            assert _dice(back == k, case.original_label == k) > 0.95, (case.case_id, k, case.label.shape, case.crop)


def test_cache_hit_does_not_recompute(tmp_path, monkeypatch):
    src = _nnunet_ds(tmp_path / "Dataset001_CT", [(1, 1, 2), (1, 1, 3)])
    snap = _snapshot(tmp_path / "Dataset001_CT")
    first = prepare_source(src, tmp_path / "cache", ["case_000"], progress=False)

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(seg_preprocess, "_process_case", boom)
    again = prepare_source(src, tmp_path / "cache", ["case_000"], progress=False)
    for x, y in zip(first, again):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.label, y.label)
        assert (x.spacing, x.crop, x.original_spacing) == (y.spacing, y.crop, y.original_spacing)
        assert isinstance(y.image, np.memmap)
    with pytest.raises(AssertionError, match="recomputed"):   # other arguments -> another key -> computed
        prepare_source(src, tmp_path / "cache", ["case_000"], image_order=1, progress=False)
    folders = sorted(p.name for p in (tmp_path / "cache" / "Dataset001_CT").iterdir())
    assert len(folders) == 1 and not folders[0].startswith(".")   # failed run left nothing behind
    files = sorted(p.name for p in (tmp_path / "cache" / "Dataset001_CT" / folders[0]).iterdir())
    assert files == sorted(["manifest.json"] + [f"case_00{i}_{k}.npy" for i in (0, 1) for k in ("image", "label", "orig")])
    assert _snapshot(tmp_path / "Dataset001_CT") == snap          # inputs untouched


# ------------------------------------------------------------------------------------------------
# synthetic-organs
# ------------------------------------------------------------------------------------------------

def test_synthetic_organs_deterministic(tmp_path):
    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}
    a = write_synthetic_organs(tmp_path / "a", n_cases=3, seed=0, shape=(16, 32, 32))
    write_synthetic_organs(tmp_path / "b", n_cases=3, seed=0, shape=(16, 32, 32))
    write_synthetic_organs(tmp_path / "c", n_cases=3, seed=1, shape=(16, 32, 32))
    da, db, dc = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert da == db and len(da) == 3 * (1 + 2 * 3)
    assert all(da[k] != dc[k] for k in da if k.endswith(".nii.gz"))
    assert a == {d: tmp_path / "a" / FOLDERS[d] for d in DOMAINS}
    with pytest.raises(FileExistsError):
        write_synthetic_organs(tmp_path / "a", n_cases=3)


def test_synthetic_organs_layout_labels_orientation_and_speed(tmp_path):
    t0 = time.perf_counter()
    folders = write_synthetic_organs(tmp_path)          # 3 x 12 cases at 32 x 64 x 64
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0, f"generation took {elapsed:.1f}s (budget 5 s)"
    for d in DOMAINS:
        assert check_dataset(folders[d]) == []
        ds = json.loads((folders[d] / "dataset.json").read_text())
        assert ds["labels"] == LABELS[d] and ds["numTraining"] == 12
        src = nnunet_source(folders[d])
        seen = set()
        for i, case in enumerate(src.cases):
            img = nib.load(str(case.images[0]))
            lab = nib.load(str(case.label))
            assert lab.get_data_dtype() == np.uint8
            codes = nib.aff2axcodes(img.affine)
            assert codes == {1: ("L", "P", "S"), 4: ("P", "S", "L")}.get(i % 6, ("R", "A", "S"))
            if i in (0, 1, 4):
                image, label, meta = read_case(src, case)
                ref_img, ref_lab, spacing, cid = phantom(d, i, 0)
                assert cid == case.case_id and meta["orientation"] == ("R", "A", "S")
                assert np.array_equal(image[0].transpose(2, 1, 0), ref_img)
                assert np.array_equal(label.transpose(2, 1, 0), ref_lab)
                assert np.allclose(meta["spacing"][::-1], spacing)
            seen |= set(np.unique(np.asarray(lab.dataobj)).tolist())
            zyx = img.header.get_zooms()
            assert all(1.2 <= s <= 3.5 for s in zyx)
        assert seen == set(LABELS[d].values())


def test_synthetic_organs_not_threshold_separable():
    """The best single intensity window for the liver in CT must fall well short of a perfect Dice."""
    img, lab, _, _ = phantom("ct", 0, 0)
    liver = lab == 1
    vals = np.sort(np.unique(np.rint(img[liver])))
    best = 0.0
    for lo in np.percentile(vals, [0, 5, 10, 20, 30]):
        for hi in np.percentile(vals, [70, 80, 90, 95, 100]):
            best = max(best, _dice((img >= lo) & (img <= hi), liver))
    assert best < 0.6


def test_synthetic_organs_sources_cached(tmp_path, monkeypatch):
    sources = synthetic_organs_sources(tmp_path, n_cases=4, seed=3, shape=(16, 32, 32))
    assert [s.name for s in sources] == ["synthetic-organs-ct", "synthetic-organs-mr", "synthetic-organs-liver"]
    assert [s.modality for s in sources] == ["CT", "MR", "MR"]
    assert [s.num_classes for s in sources] == [5, 4, 3]

    def boom(*a, **k):
        raise AssertionError("regenerated")
    monkeypatch.setattr(synthetic_organs, "write_synthetic_organs", boom)
    again = synthetic_organs_sources(tmp_path, n_cases=4, seed=3, shape=(16, 32, 32))
    assert [s.cases for s in again] == [s.cases for s in sources]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # the whole pipeline runs on them: preprocess (CT stats from the first 3 cases) and undo
    for s in sources:
        prepared = prepare_source(s, tmp_path / "cache", [c.case_id for c in s.cases[:3]], progress=False)
        for p in prepared:
            assert p.image.shape[1:] == p.label.shape and np.isfinite(p.image).all()
            back = to_original(p.label, p)
            fg = p.original_label > 0
            assert _dice(back[fg] > 0, np.ones(fg.sum(), bool)) > 0.8


# ------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------

def test_convert_flare22_official(tmp_path):
    _flare(tmp_path / "data", "official")
    snap = _snapshot(tmp_path / "data")
    (out,) = convert_to_nnunet("flare22", tmp_path / "data", tmp_path / "out")
    assert out == tmp_path / "out" / OUTPUT_FOLDERS["flare22"]
    assert check_dataset(out) == []
    src = nnunet_source(out)
    assert src.labels == FLARE22_LABELS and src.modality == "CT"
    assert [c.case_id for c in src.cases] == [c.case_id for c in flare22_source(tmp_path / "data").cases]
    orig = tmp_path / "data" / "FLARE22" / "images" / "FLARE22_Tr_0001_0000.nii.gz"
    assert os.stat(out / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz").st_ino == os.stat(orig).st_ino  # hard link
    assert _snapshot(tmp_path / "data") == snap
    with pytest.raises(DatasetFormatError) as ei:
        convert_to_nnunet("flare22", tmp_path / "data", tmp_path / "out")
    assert str(out) in _one_line(ei.value) and "not empty" in str(ei.value)


def test_convert_amos22_two_parts_and_atlas23_copies(tmp_path):
    _amos(tmp_path / "data")
    _atlas(tmp_path / "data")
    snap = _snapshot(tmp_path / "data")
    outs = convert_to_nnunet("amos22", tmp_path / "data", tmp_path / "out")
    assert [p.name for p in outs] == [OUTPUT_FOLDERS["amos22-ct"], OUTPUT_FOLDERS["amos22-mr"]]
    ct, mr = (nnunet_source(p) for p in outs)
    assert check_dataset(outs[0]) == []
    # the fixture's MR part has 2 cases: a valid folder, but too few to split, which data check says as run would
    (problem,) = check_dataset(outs[1])
    assert "need at least 3 labelled cases" in problem
    assert (ct.modality, mr.modality, len(ct.cases), len(mr.cases)) == ("CT", "MR", 3, 2)
    assert ct.labels == AMOS22_LABELS
    (atlas,) = convert_to_nnunet("atlas23", tmp_path / "data", tmp_path / "out", link=False)
    assert check_dataset(atlas) == []
    src = nnunet_source(atlas)
    assert src.modality == "MR" and src.labels == ATLAS23_LABELS and len(src.cases) == 3
    img = atlas / "imagesTr" / "atlas23_0010_0000.nii.gz"
    assert os.stat(img).st_ino != os.stat(tmp_path / "data" / "atlas-train-dataset-1.0.1" / "train" / "imagesTr"
                                          / "im10.nii.gz").st_ino
    assert _snapshot(tmp_path / "data") == snap
    with pytest.raises(DatasetNotFound):
        convert_to_nnunet("flare22", tmp_path / "data", tmp_path / "out")
    with pytest.raises(ValueError):
        convert_to_nnunet("embed", tmp_path / "data", tmp_path / "out")


# ------------------------------------------------------------------------------------------------
# 2-D resizing: no half-pixel shift (a perfect prediction survives the round trip)
# ------------------------------------------------------------------------------------------------

def _dice_per_organ(pred: np.ndarray, ref: np.ndarray) -> list[float]:
    out = []
    for k in np.unique(ref[ref > 0]):
        a, b = pred == k, ref == k
        out.append(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return out


def _round_trip(label: np.ndarray, size: int, resize) -> np.ndarray:
    """What the harness does to a perfect prediction: labels resized to the model's slice size (the
    training target, and what a perfect model outputs), then resized back to the slice grid."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
    return resize(resize(t, size), tuple(label.shape[-2:])).numpy()


def _floor_nearest(y, size):   # what the code did before: torch's mode="nearest"
    import torch.nn.functional as F

    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(y[:, None].float(), size=size, mode="nearest")[:, 0].long()


def test_resize_label_is_the_reference_zoom():
    import torch
    from scipy.ndimage import zoom

    from datasets.segmentation.data import resize_label

    rng = np.random.default_rng(0)
    for h, w, oh, ow in [(512, 512, 224, 224), (224, 224, 512, 512), (37, 53, 64, 64), (100, 80, 64, 64),
                         (300, 300, 224, 224), (5, 7, 13, 3)]:
        y = rng.integers(0, 5, (h, w))
        ours = resize_label(torch.from_numpy(y)[None], (oh, ow))[0].numpy()
        ref = zoom(y, (oh / h, ow / w), order=0)
        # zoom's floating-point bound test can return its fill value (0) on the last row/column
        # (e.g. 512 -> 224); everywhere else the two agree exactly
        assert np.array_equal(ours[:-1, :-1], ref[:-1, :-1]), (h, w, oh, ow)


def test_perfect_prediction_round_trip_keeps_dice_on_every_synthetic_organs_domain(tmp_path):
    from datasets import load_dataset
    from datasets.segmentation.data import resize_label

    data = load_dataset("synthetic-organs", 0, cache_dir=os.environ.get("BENCH_CACHE_DIR", str(tmp_path)))
    for d, dom in enumerate(data.domains):
        ours, old = [], []
        for c in np.nonzero(data.case_domain == d)[0][:4]:
            label = np.maximum(np.asarray(data.cases[c].label), 0)          # (Z, Y, X), preprocessed grid
            ours += _dice_per_organ(_round_trip(label, 64, resize_label), label)
            old += _dice_per_organ(_round_trip(label, 64, _floor_nearest), label)
        assert np.mean(ours) >= 0.97, (dom.name, np.mean(ours))
        assert np.mean(old) < np.mean(ours) - 0.05, "the old floor mapping must show the shift this test guards"


def test_perfect_prediction_round_trip_at_real_size():
    from datasets.segmentation.data import resize_label

    yy, xx = np.mgrid[:512, :512]
    label = np.zeros((1, 512, 512), np.int64)
    for k, (cy, cx, ry, rx) in enumerate([(200, 180, 90, 120), (330, 360, 40, 30), (140, 380, 25, 60)], start=1):
        label[0][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k   # liver-, kidney-, spleen-sized blobs
    assert min(_dice_per_organ(_round_trip(label, 224, resize_label), label)) >= 0.97
    assert min(_dice_per_organ(_round_trip(label, 224, _floor_nearest), label)) < 0.97
