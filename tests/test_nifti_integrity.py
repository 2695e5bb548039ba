"""Bit flips in a .nii.gz: the reader verifies the gzip CRC32/length that nibabel alone never reads.

nibabel stops decompressing once it has the voxel bytes, so a flip in the compressed data can give
wrong voxels without any error; every reader of datasets.segmentation.nnunet (so data check, preprocessing and
training) must either refuse such a file or return exactly the original voxels.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from datasets.segmentation.nnunet import _read, check_dataset, load_case, open_dataset, write_case, write_dataset_json
from datasets.spec import DatasetError, DatasetFormatError

SHAPE = (8, 8, 4)
SPACING = (0.8, 0.8, 2.5)
N_FLIPS = 40
GZIP_HEADER = 10   # magic, method, flags, mtime, xfl, os: not covered by the CRC (mtime/os never change voxels)


def _case(root: Path, case_id: str = "c", seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=SHAPE).astype(np.float32)
    label = rng.integers(0, 3, size=SHAPE).astype(np.uint8)
    (path,), label_path = write_case(root, case_id, [image], label, SPACING)
    return path, label_path


def _flips(size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` seeded (byte, bit) flips, one per equal stretch of bytes after the gzip header, last byte included."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(GZIP_HEADER, size, n + 1).astype(int)
    out = [(int(rng.integers(lo, max(hi, lo + 1))), int(rng.integers(8))) for lo, hi in zip(edges[:-1], edges[1:])]
    out[-1] = (size - 1, out[-1][1])   # the top byte of ISIZE, the stored length
    return out


def _flip(src: bytes, pos: int, bit: int) -> bytes:
    b = bytearray(src)
    b[pos] ^= 1 << bit
    return bytes(b)


def _nibabel_alone(path: Path) -> np.ndarray | None:
    """What nibabel's own reader returns (the old path), or None when it raises."""
    try:
        return np.asarray(nib.load(str(path)).dataobj)
    except Exception:  # noqa: BLE001 - any refusal counts
        return None


@pytest.mark.parametrize("which", ["image", "label"])
def test_single_bit_flips_are_refused_or_harmless(tmp_path, which):
    image_path, label_path = _case(tmp_path / "clean")
    src = image_path if which == "image" else label_path
    ref = _read(src)
    raw = src.read_bytes()
    target = tmp_path / "flipped" / src.name
    target.parent.mkdir()
    flips = _flips(len(raw), N_FLIPS, seed=1)
    assert len(set(flips)) == N_FLIPS
    detected = identical = nibabel_wrong = 0
    for pos, bit in flips:
        target.write_bytes(_flip(raw, pos, bit))
        try:
            vol = _read(target)
        except DatasetFormatError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(f"{target}: ") and "re-export or re-copy" in msg, msg
            detected += 1
            old = _nibabel_alone(target)
            if old is not None and not np.array_equal(old, ref.data):
                nibabel_wrong += 1
            continue
        # accepted: only flips that do not touch the voxels (e.g. the stored file name) may pass
        assert np.array_equal(vol.data, ref.data) and vol.data.dtype == ref.data.dtype, (pos, bit)
        assert np.array_equal(vol.img.affine, ref.img.affine), (pos, bit)
        identical += 1
    assert detected + identical == N_FLIPS
    assert detected >= N_FLIPS - 8, (detected, identical)   # only the stored file name is not checksummed
    if which == "image":
        assert nibabel_wrong >= 1   # the bug: nibabel alone returned other voxels, silently


def test_nibabel_alone_accepts_a_flip_that_the_reader_refuses(tmp_path):
    path, _ = _case(tmp_path)
    raw = path.read_bytes()
    ref = np.asarray(nib.load(str(path)).dataobj)
    for pos, bit in _flips(len(raw), N_FLIPS, seed=1):
        path.write_bytes(_flip(raw, pos, bit))
        old = _nibabel_alone(path)
        if old is not None and old.shape == ref.shape and not np.array_equal(old, ref):
            break
    else:
        pytest.fail("no flip changed nibabel's voxels silently")
    with pytest.raises(DatasetFormatError, match="gzip checksum mismatch / corrupt"):
        _read(path)


def test_trailer_flip_is_refused_though_voxels_decode(tmp_path):
    """A flip in the stored CRC32 leaves every voxel byte intact: only the checksum can tell."""
    path, _ = _case(tmp_path)
    raw = path.read_bytes()
    ref = np.asarray(nib.load(str(path)).dataobj)
    path.write_bytes(_flip(raw, len(raw) - 8, 0))   # first byte of the CRC32
    np.testing.assert_array_equal(np.asarray(nib.load(str(path)).dataobj), ref)  # nibabel never looks
    with pytest.raises(DatasetFormatError, match="BadGzipFile: CRC check failed"):
        _read(path)
    path.write_bytes(raw[:-8])   # trailer cut off: truncated
    with pytest.raises(DatasetFormatError, match="truncated"):
        _read(path)


def test_check_dataset_and_training_report_the_flipped_file(tmp_path):
    root = tmp_path / "Dataset050_Flip"
    write_dataset_json(root, {0: "MR"}, {"background": 0, "a": 1, "b": 2}, 3)
    paths = [_case(root, f"case_{i}", seed=i)[0] for i in range(3)]
    assert check_dataset(root) == []
    bad = paths[1]
    raw = bad.read_bytes()
    ref = np.asarray(nib.load(str(bad)).dataobj)
    for pos, bit in _flips(len(raw), N_FLIPS, seed=2):   # a flip that nibabel alone would train on
        bad.write_bytes(_flip(raw, pos, bit))
        old = _nibabel_alone(bad)
        if old is not None and old.shape == ref.shape and not np.array_equal(old, ref):
            break
    else:
        pytest.fail("no flip changed nibabel's voxels silently")
    lines = check_dataset(root)
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: ") and "gzip checksum mismatch" in lines[0], lines
    with pytest.raises(DatasetFormatError, match="gzip checksum mismatch"):
        load_case(open_dataset(root), "case_1")

    from datasets import load_dataset

    with pytest.raises(DatasetError) as exc:
        load_dataset("nnunet:" + str(root), 0, cache_dir=str(tmp_path / "cache"))
    assert str(exc.value) == lines[0]


def test_plain_nii_and_nifti2_gz_still_read(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=SHAPE).astype(np.float32)
    affine = np.diag([*SPACING, 1.0])
    nib.save(nib.Nifti2Image(data, affine), str(tmp_path / "two.nii.gz"))
    vol = _read(tmp_path / "two.nii.gz")
    assert isinstance(vol.img, nib.Nifti2Image)
    np.testing.assert_array_equal(vol.data, data)
    assert np.allclose(vol.img.affine, affine) and vol.img.header.get_zooms() == pytest.approx(SPACING)
    # scaled integers come back scaled, as nibabel returns them
    img = nib.Nifti1Image(np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE), affine)
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    np.testing.assert_array_equal(_read(tmp_path / "scaled.nii.gz").data,
                                  np.asarray(nib.load(str(tmp_path / "scaled.nii.gz")).dataobj))
    # plain .nii: nibabel's own reader, unchanged
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "one.nii"))
    np.testing.assert_array_equal(_read(tmp_path / "one.nii").data, data)
    # a gzip of something that is not NIfTI
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"\0" * 400))
    with pytest.raises(DatasetFormatError, match="neither 348"):
        _read(tmp_path / "junk.nii.gz")
