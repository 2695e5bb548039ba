"""The M4oE-MT adapters (embed, rsna-mammo, vindr-mammo, gamma) on tiny fixtures with the official names."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datasets.problems import DatasetProblems
from datasets.registry import load_dataset
from datasets.spec import DatasetNotFound

pydicom = pytest.importorskip("pydicom")
S = 16  # image size in tests


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", window: tuple | None = None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def ramp(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.tile(np.linspace(0, 4000, 32), (32, 1)) + rng.integers(0, 50, (32, 32))).astype(np.uint16)


def make_rsna(root: Path, n_patients: int = 10, over: dict | None = None) -> Path:
    base = root / "rsna-mammo"
    rows = []
    for p in range(n_patients):
        for lat in "LR":
            for view in ("CC", "MLO"):
                iid = len(rows) + 100
                photometric = "MONOCHROME1" if iid == 100 else "MONOCHROME2"
                write_dicom(base / "train_images" / str(p) / f"{iid}.dcm", ramp(iid), photometric)
                rows.append({"site_id": 1, "patient_id": p, "image_id": iid, "laterality": lat, "view": view,
                             "age": 50, "cancer": 0, "BIRADS": "" if p == 0 else p % 3, "density": "ABCD"[p % 4]})
    df = pd.DataFrame(rows)
    for (i, col), v in (over or {}).items():
        df.loc[i, col] = v
    df.to_csv(base / "train.csv", index=False)
    return base


def make_vindr(root: Path, n_studies: int = 10) -> Path:
    base = root / "vindr-mammo"
    rows = []
    for s in range(n_studies):
        for lat in "LR":
            for view in ("CC", "MLO"):
                iid = f"img{len(rows)}"
                write_dicom(base / "images" / f"st{s}" / f"{iid}.dicom", ramp(len(rows)), window=(2000, 2000))
                rows.append({"study_id": f"st{s}", "series_id": "x", "image_id": iid, "laterality": lat,
                             "view_position": view, "height": 32, "width": 32, "breast_birads": f"BI-RADS {1 + s % 5}",
                             "breast_density": f"DENSITY {'ABCD'[s % 4]}", "split": "test" if s >= 7 else "training"})
    pd.DataFrame(rows).to_csv(base / "breast-level_annotations.csv", index=False)
    pd.DataFrame(columns=["image_id", "finding_categories"]).to_csv(base / "finding_annotations.csv", index=False)
    return base


def make_embed(root: Path, n_patients: int = 8) -> Path:
    base = root / "embed"
    meta, clin = [], []
    for p in range(n_patients):
        for e, date in enumerate(("2015-01-01", "2016-06-01")):
            acc = f"acc{p}_{e}"
            for kind in ("2D", "cview"):
                for view in ("CC", "MLO"):
                    rel = f"cohort_1/{p}/{acc}/{kind}_{view}.dcm"
                    write_dicom(base / "images" / rel, ramp(len(meta)))
                    meta.append({"empi_anon": p, "acc_anon": acc, "anon_dicom_path": f"/mnt/NAS2/mammo/anon_dicom/{rel}",
                                 "ViewPosition": view, "ImageLateralityFinal": "L", "FinalImageType": kind})
            clin.append({"empi_anon": p, "acc_anon": acc, "study_date_anon": date, "side": "L",
                         "asses": "NBASMP"[p % 6], "tissueden": 1 + p % 4, "path_severity": ""})
        if p % 2:
            clin.append({"empi_anon": p, "acc_anon": f"bx{p}", "study_date_anon": "2015-06-01", "side": "L",
                         "asses": "S", "tissueden": "", "path_severity": 0})
    (base / "tables").mkdir(parents=True)
    pd.DataFrame(meta).to_csv(base / "tables" / "EMBED_OpenData_metadata.csv", index=False)
    pd.DataFrame(clin).to_csv(base / "tables" / "EMBED_OpenData_clinical.csv", index=False)
    return base


def write_xlsx(path: Path, rows: list[list]) -> None:
    """A minimal xlsx (inline strings and numbers), as the GT file; no openpyxl needed."""
    def cell(j, i, v):
        ref = f"{chr(65 + j)}{i}"
        if isinstance(v, str):
            return f'<c r="{ref}" t="inlineStr"><is><t>{v}</t></is></c>'
        return f'<c r="{ref}"><v>{v}</v></c>'
    sheet = "".join(f'<row r="{i}">' + "".join(cell(j, i, v) for j, v in enumerate(r)) + "</row>"
                    for i, r in enumerate(rows, start=1))
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns}/>')
        z.writestr("xl/worksheets/sheet1.xml", f'<?xml version="1.0"?><worksheet {ns}><sheetData>{sheet}</sheetData></worksheet>')


def make_gamma(root: Path, n: int = 10) -> Path:
    from PIL import Image

    base = root / "gamma"
    imgs = base / "Glaucoma_grading/training/multi-modality_images"
    rng = np.random.default_rng(0)
    rows = [["data", "non", "early", "mid_advanced"]]
    for k in range(1, n + 1):
        case = f"{k:04d}"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(imgs / case / f"{case}.jpg") \
            if (imgs / case).mkdir(parents=True) is None else None
        (imgs / case / case).mkdir()
        for b in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(imgs / case / case / f"{b}_image.jpg")
        mask = np.full((40, 48), 255, np.uint8)
        mask[10:30, 12:36] = 128
        mask[15:25, 18:30] = 0
        mdir = base / "Disc_Cup_Segmentation/training/Disc_Cup_Mask"
        mdir.mkdir(parents=True, exist_ok=True)
        if k != 2:
            Image.fromarray(mask).save(mdir / f"{case}.bmp")
        g = k % 3
        rows.append([k] + [int(g == j) for j in range(3)])
    write_xlsx(base / "Glaucoma_grading/training/glaucoma_grading_training_GT.xlsx", rows)
    return base


def _no_patient_in_two_splits(data, groups):
    owner = {}
    for s, idx in data.splits.items():
        for g in set(np.asarray(groups)[idx].tolist()):
            assert owner.setdefault(g, s) == s


def test_rsna_loads_windowed_inverted_split_by_patient(tmp_path):
    make_rsna(tmp_path)
    data = load_dataset("rsna-mammo", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)
    assert data.spec.modality_names == ["cc", "mlo"]
    assert [(t.name, t.num_classes) for t in data.spec.tasks] == [("density", 4), ("birads", 3)]
    assert data.inputs["cc"].shape == (20, 1, S, S)
    assert not bool(data.target_mask["birads"][:2].any()) and bool(data.target_mask["birads"][2:].all())
    _no_patient_in_two_splits(data, data.groups)
    # image 100 (patient 0, L, CC) is MONOCHROME1: a left-to-right ramp becomes dark on the right
    x0, x1 = data.inputs["cc"][0][0], data.inputs["cc"][2][0]
    assert x0[:, 0].mean() > 0.9 and x0[:, -1].mean() < 0.1
    assert x1[:, 0].mean() < 0.1 and x1[:, -1].mean() > 0.9
    b = data.batch(np.array([3, 1]))
    assert b["inputs"]["mlo"].dtype == torch.float32 and b["inputs"]["mlo"].shape == (2, 1, S, S)


def test_vindr_window_official_split_and_two_split_study(tmp_path):
    base = make_vindr(tmp_path)
    data = load_dataset("vindr-mammo", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)
    test_ids = {data.ids[i] for i in data.splits["test"]}
    assert test_ids == {f"st{s}_{lat}" for s in (7, 8, 9) for lat in "LR"}
    assert len(data.splits["val"]) > 0
    _no_patient_in_two_splits(data, data.groups)
    # window centre 2000 / width 2000 on a 0..4000 ramp: the outer quarters saturate at 0 and 1
    x = data.inputs["cc"][0][0]
    assert float(x[:, :3].max()) == 0.0 and float(x[:, -3:].min()) >= 0.99
    assert data.targets["birads"].tolist()[:4] == [0, 0, 1, 1]  # BI-RADS 1, 1 (st0 L/R), 2, 2 (st1)
    df = pd.read_csv(base / "breast-level_annotations.csv")
    df.loc[5, "split"] = "test"  # st1 now in both splits
    df.to_csv(base / "breast-level_annotations.csv", index=False)
    with pytest.raises(DatasetProblems, match=r"breast-level_annotations.csv row 6.*study_id 'st1'.*two splits"):
        load_dataset("vindr-mammo", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)


def test_embed_tasks_views_and_risk(tmp_path):
    make_embed(tmp_path)
    data = load_dataset("embed", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)
    assert data.spec.modality_names == ["ffdm_cc", "ffdm_mlo", "cview_cc", "cview_mlo"]
    assert [(t.name, t.num_classes) for t in data.spec.tasks] == [("density", 4), ("risk_1y", 2), ("birads", 3)]
    ids = data.ids
    i0, i1 = ids.index("acc1_0_L"), ids.index("acc0_0_L")
    assert data.targets["risk_1y"][i0] == 1 and data.targets["risk_1y"][i1] == 0  # cancer 5 months later / none
    assert not bool(data.target_mask["risk_1y"][ids.index("acc0_1_L")])  # last exam: no follow-up
    assert data.targets["density"][i1] == 0 and data.targets["birads"][i1] == 0  # tissueden 1 / N
    _no_patient_in_two_splits(data, data.groups)


def test_cache_written_once_reused_and_memory_mapped(tmp_path, monkeypatch):
    make_rsna(tmp_path, n_patients=4)
    kw = dict(data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)
    a = load_dataset("rsna-mammo", 0, **kw)
    assert isinstance(a.inputs["cc"].array, np.memmap)
    files = sorted(p for p in (tmp_path / "cache").rglob("*.npy"))

    def fail(*args, **kwargs):
        raise AssertionError("a DICOM was read on the second build")
    monkeypatch.setattr(pydicom, "dcmread", fail)
    b = load_dataset("rsna-mammo", 0, **kw)
    assert sorted(p for p in (tmp_path / "cache").rglob("*.npy")) == files
    assert torch.equal(a.batch(a.splits["train"])["inputs"]["mlo"], b.batch(b.splits["train"])["inputs"]["mlo"])
    # robustness-style perturbation writes into an overlay, never into the cache
    x = b.inputs["cc"].clone()
    x[[0]] = 0.0
    assert float(x[0].abs().sum()) == 0 and float(b.inputs["cc"][0].abs().sum()) > 0


def test_corrupt_dicom_bad_label_missing_column(tmp_path):
    base = make_rsna(tmp_path, n_patients=4, over={(3, "density"): "E"})
    (base / "train_images" / "1" / "105.dcm").write_bytes(b"not a dicom at all")
    kw = dict(data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S)
    with pytest.raises(DatasetProblems) as e:  # both problems, in one error
        load_dataset("rsna-mammo", 0, **kw)
    assert e.value.problems[0].endswith("train.csv row 4 (image_id '103'), column 'density': 'E' is not one of A, B, C, D")
    assert "105.dcm: cannot be read" in e.value.problems[1] and len(e.value.problems) == 2
    base = make_rsna(tmp_path / "b", n_patients=4)
    (base / "train_images" / "1" / "105.dcm").write_bytes(b"not a dicom at all")
    with pytest.raises(DatasetProblems, match=r"105\.dcm: cannot be read"):
        load_dataset("rsna-mammo", 0, data_root=str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"), image_size=S)
    df = pd.read_csv(base / "train.csv").drop(columns=["view"])
    df.to_csv(base / "train.csv", index=False)
    with pytest.raises(DatasetProblems, match=r"train.csv: has no column 'view'"):
        load_dataset("rsna-mammo", 0, data_root=str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"), image_size=S)


def test_gamma_modalities_grade_and_cup(tmp_path):
    make_gamma(tmp_path)
    data = load_dataset("gamma", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S,
                        oct_depth=4, oct_size=8)
    assert [(m.name, m.kind, m.shape) for m in data.spec.modalities] == [
        ("fundus", "image2d", (3, S, S)), ("oct", "volume3d", (1, 4, 8, 8))]
    assert [(t.name, t.kind, t.num_classes) for t in data.spec.tasks] == [("grade", "multiclass", 3),
                                                                          ("cup", "segmentation", 2)]
    assert data.targets["grade"].tolist()[:3] == [1, 2, 0]
    cup = data.targets["cup"]
    assert cup.shape == (10, S, S) and cup.dtype == torch.int64 and set(cup.unique().tolist()) == {0, 1}
    assert not bool(data.target_mask["cup"][1]) and bool(data.target_mask["cup"][0])
    assert data.batch(np.array([0]))["inputs"]["oct"].shape == (1, 1, 4, 8, 8)
    no_cup = load_dataset("gamma", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S,
                          oct_depth=4, oct_size=8, with_cup=False)
    assert no_cup.spec.task_names == ["grade"]


def test_gamma_bad_grade_row(tmp_path):
    base = make_gamma(tmp_path, n=4)
    write_xlsx(base / "Glaucoma_grading/training/glaucoma_grading_training_GT.xlsx",
               [["data", "non", "early", "mid_advanced"], [1, 1, 0, 0], [2, 1, 1, 0], [3, 0, 0, 1], [4, 0, 0, 1]])
    with pytest.raises(DatasetProblems, match=r"GT.xlsx row 3 \(case 0002\).*not one-hot"):
        load_dataset("gamma", 0, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), image_size=S,
                     oct_depth=4, oct_size=8)


@pytest.mark.parametrize("name,folder,missing", [
    ("embed", "embed", "EMBED_OpenData_metadata.csv"), ("rsna-mammo", "rsna-mammo", "train.csv"),
    ("vindr-mammo", "vindr-mammo", "breast-level_annotations.csv"), ("gamma", "gamma", "glaucoma_grading_training_GT.xlsx")])
def test_absent_data_is_one_line(tmp_path, name, folder, missing):
    from datasets.registry import parse_name

    entry, variant = parse_name(name)
    for call in (lambda: entry.check(str(tmp_path), variant), lambda: load_dataset(name, 0, data_root=str(tmp_path))):
        with pytest.raises(DatasetNotFound) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and missing in msg and str(tmp_path / folder) in msg and "obtain" in msg
