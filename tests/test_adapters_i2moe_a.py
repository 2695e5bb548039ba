"""The I2MoE adapters adni, mimic-iv and enrico on tiny fixtures with the real layouts and file names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from datasets import DatasetNotFound, load_dataset
from datasets.adapters import adni, enrico, mimic_iv
from datasets.problems import DatasetProblems
from datasets.registry import parse_name

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_SHAPE = (6, 5, 4)


# ------------------------------------------------------------------ fixtures
def make_adni(root: Path, n: int = 36, seed: int = 0, genomic: str = "csv") -> dict:
    """label.csv, PTID_splits.json, image/{ADNI_G.npy, ADNI_subj.txt, template}, genomic, clinical, biospecimen."""
    rng = np.random.default_rng(seed)
    base = root / "adni"
    for sub in ("image", "genomic", "clinical", "biospecimen"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    pids = [f"{100 + i:03d}_S_{1000 + i:04d}" for i in range(n)]
    dx = np.array([1, 2, 3] * (n // 3))
    # as clinical_preprocess.py writes it: an unnamed index column, PTID, DIAGNOSIS
    pd.DataFrame({"PTID": pids, "DIAGNOSIS": dx.astype(float)}).to_csv(base / "label.csv")
    train, val, test = pids[:24], pids[24:30], pids[30:]
    (base / "PTID_splits.json").write_text(json.dumps({"training": train, "validation": val, "testing": test}))
    atlas = np.zeros(TEMPLATE_SHAPE)
    atlas.ravel()[::3] = 150
    atlas.ravel()[1::3] = 250
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), str(base / adni.TEMPLATE))
    n_gm = int((atlas == 150).sum())
    # every PTID but the last has a scan; the first has an older scan too (the latest one is used)
    lines, rows = [], []
    lines.append(f"{pids[0]}_2005-01-01")
    rows.append(np.full(n_gm, 99.0))
    for i, p in enumerate(pids[:-1]):
        lines.append(f"{p}_2007-06-0{1 + i % 9}")
        rows.append(rng.normal(1.0 + (5.0 if p in test else 0.0), 1.0, n_gm))
    np.save(base / "image/ADNI_G.npy", np.stack(rows).astype(np.float64))
    (base / "image/ADNI_subj.txt").write_text("\n".join(lines) + "\n")
    snp = rng.integers(0, 3, (n, 7)).astype(float)
    snp[3, 2] = np.nan
    gdf = pd.DataFrame(snp, index=pd.Index(pids, name="PTID"), columns=[f"rs{i}" for i in range(7)])
    if genomic == "csv":
        gdf.to_csv(base / "genomic/genomic_merged.csv")
    else:
        write_h5ad(base / "genomic/genomic_merged.h5ad", gdf)
    clin = rng.normal(0, 1, (n, 4))
    is_test = np.isin(pids, test)
    clin[is_test, 0] = 1000.0 + rng.normal(0, 1, is_test.sum())  # test rows far away: all-row stats would shift
    clin[25, 1] = np.nan   # a val row with one missing cell: filled with the TRAIN mean
    clin[2, 1] = np.nan    # a train row too
    cdf = pd.DataFrame(clin, index=pd.Index(pids, name="PTID"), columns=["age", "bmi", "educ", "pulse"])
    cdf["PTCOGBEG"] = dx  # dropped, as in the reference (an onset date giving the diagnosis away)
    cdf.to_csv(base / "clinical/clinical_merged.csv")
    bio = rng.normal(0, 1, (n, 3))
    bdf = pd.DataFrame(bio, index=pd.Index(pids, name="PTID"), columns=["ABETA", "TAU", "PTAU"])
    bdf = bdf.drop(index=[pids[5], pids[26]])  # two PTIDs without biospecimen
    bdf.to_csv(base / "biospecimen/biospecimen_merged.csv")
    return {"pids": pids, "train": train, "val": val, "test": test, "n_gm": n_gm, "base": base}


def write_h5ad(path: Path, df: pd.DataFrame) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=df.to_numpy())
        for key, names in (("obs", df.index), ("var", df.columns)):
            g = f.create_group(key)
            g.attrs["_index"] = "_index"
            g.create_dataset("_index", data=np.array([str(s).encode() for s in names]))


def make_mimic(root: Path, n: int = 40, seed: int = 0, folder: str = "mimic-iv") -> dict:
    rng = np.random.default_rng(seed)
    base = root / folder
    base.mkdir(parents=True)
    ids = [str(10000000 + i) for i in range(n)]
    y = np.array([0, 1] * (n // 2))
    pd.DataFrame({"subject_id": ids, "one_year_mortality": y}).to_csv(base / "labels.csv", index=False)
    lab = rng.normal(0, 1, (n, 5))
    lab[30:, 0] += 500.0          # test rows shifted
    lab[4, 1] = np.nan            # an unmeasured lab of a train patient
    lab[31, 2] = np.nan           # and of a test patient
    note = rng.normal(0, 1, (n, 8)).astype(np.float32)
    note[7] = np.nan              # patient 7 has no notes
    code = rng.integers(0, 2, (n, 6)).astype(np.float32)
    torch.save(torch.from_numpy(lab), base / "lab_x.pt")
    torch.save(torch.from_numpy(note), base / "note_x.pt")
    torch.save(code, base / "code_x.pt")  # a NumPy array also works
    (base / "PTID_splits_mimic.json").write_text(json.dumps(
        {"training": ids[:24], "validation": ids[24:30], "testing": ids[30:]}))
    return {"ids": ids, "base": base}


def make_enrico(root: Path, n: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    base = root / "enrico"
    (base / "screenshots").mkdir(parents=True)
    (base / "wireframes").mkdir()
    ids = [str(1000 + i) for i in range(n)] + ["50105"]  # 50105 is skipped as in the reference
    topics = [enrico.TOPICS[i % 20] for i in range(n)] + ["bare"]
    pd.DataFrame({"screen_id": ids, "topic": topics}).to_csv(base / "design_topics.csv", index=False)
    for s in ids[:-1]:
        Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(base / "screenshots" / f"{s}.jpg")
        Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(base / "wireframes" / f"{s}.png")
    return {"ids": ids[:-1], "topics": topics[:-1], "base": base}


def problems_of(exc: pytest.ExceptionInfo) -> str:
    assert isinstance(exc.value, DatasetProblems), exc.value
    return "\n".join(exc.value.problems)


# ------------------------------------------------------------------ ADNI
def test_adni_loads_common_variant(tmp_path) -> None:
    fx = make_adni(tmp_path)
    data = load_dataset("adni", data_root=str(tmp_path))
    assert data.spec.name == "adni:common"
    assert data.spec.modality_names == ["image", "genomic", "clinical", "biospecimen"]
    kinds = {m.name: (m.kind, m.shape) for m in data.spec.modalities}
    assert kinds["image"] == ("volume3d", (1, *TEMPLATE_SHAPE))
    assert kinds["genomic"] == ("tabular", (7,)) and kinds["biospecimen"] == ("tabular", (3,))
    assert kinds["clinical"] == ("tabular", (4,))  # PTCOGBEG dropped
    assert data.spec.task("diagnosis").labels == ("CN", "MCI", "AD") and data.spec.task("diagnosis").num_classes == 3
    # common: the last PTID (no scan) and the two without biospecimen are left out
    dropped = {fx["pids"][-1], fx["pids"][5], fx["pids"][26]}
    assert set(data.ids) == set(fx["pids"]) - dropped
    assert all(bool(v.all()) for v in data.mask.values())
    # labels 1, 2, 3 -> 0, 1, 2; splits from PTID_splits.json
    y = dict(zip(data.ids, data.targets["diagnosis"].tolist()))
    assert y[fx["pids"][0]] == 0 and y[fx["pids"][1]] == 1 and y[fx["pids"][2]] == 2
    assert {data.ids[i] for i in data.splits["test"]} == set(fx["test"]) - dropped
    assert {data.ids[i] for i in data.splits["train"]} == set(fx["train"]) - dropped


def test_adni_all_variant_masks_missing_modalities(tmp_path) -> None:
    fx = make_adni(tmp_path)
    data = load_dataset("adni:all", data_root=str(tmp_path))
    assert set(data.ids) == set(fx["pids"])
    row = {p: i for i, p in enumerate(data.ids)}
    for pid in (fx["pids"][5], fx["pids"][26]):
        assert not bool(data.mask["biospecimen"][row[pid]])
        assert bool(data.mask["clinical"][row[pid]])
        assert torch.count_nonzero(data.inputs["biospecimen"][row[pid]]) == 0
    last = row[fx["pids"][-1]]
    assert not bool(data.mask["image"][last]) and torch.count_nonzero(data.inputs["image"][last]) == 0
    assert int(data.mask["biospecimen"].sum()) == len(fx["pids"]) - 2


def test_adni_statistics_come_from_the_train_split_only(tmp_path) -> None:
    fx = make_adni(tmp_path)
    data = load_dataset("adni:all", data_root=str(tmp_path))
    train = torch.as_tensor(data.splits["train"])
    clin = data.inputs["clinical"]
    # column 'age': test rows are ~1000; train-only z-scoring puts the train rows at mean 0, std 1
    assert abs(float(clin[train, 0].mean())) < 1e-4
    assert abs(float(clin[train, 0].std(unbiased=False)) - 1) < 1e-3
    assert float(clin[torch.as_tensor(data.splits["test"]), 0].min()) > 100
    # a missing cell of a val row is the train mean, i.e. exactly 0 after train z-scoring
    row = data.ids.index(fx["pids"][25])
    assert abs(float(clin[row, 1])) < 1e-6
    # the image is normalised with train GM statistics (test scans are shifted by +5)
    atlas = np.asarray(nib.load(str(fx["base"] / adni.TEMPLATE)).get_fdata())
    gm = torch.from_numpy((atlas == 150).ravel())
    img = data.inputs["image"].reshape(len(data), -1)[:, gm]
    tr = train[data.mask["image"][train]]
    assert abs(float(img[tr].mean())) < 1e-4
    # the first PTID's older scan (all 99) is not used
    assert float(img[data.ids.index(fx["pids"][0])].max()) < 20


def test_adni_reads_the_h5ad_genomic_file(tmp_path) -> None:
    pytest.importorskip("h5py")
    make_adni(tmp_path, genomic="h5ad")
    data = load_dataset("adni", data_root=str(tmp_path))
    assert data.spec.modality("genomic").shape == (7,)
    files, root = adni.input_files(str(tmp_path), "common")
    assert root == tmp_path / "adni" and root / "genomic/genomic_merged.h5ad" in files


def test_adni_absent_data_is_one_line_naming_the_missing_files(tmp_path) -> None:
    fx = make_adni(tmp_path)
    (fx["base"] / "biospecimen/biospecimen_merged.csv").unlink()
    (fx["base"] / "image/ADNI_subj.txt").unlink()
    for call in (lambda: load_dataset("adni", data_root=str(tmp_path)), lambda: adni.check(str(tmp_path))):
        with pytest.raises(DatasetNotFound) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and str(fx["base"]) in msg
        assert "biospecimen/biospecimen_merged.csv" in msg and "image/ADNI_subj.txt" in msg
        assert "label.csv" not in msg and "adni.loni.usc.edu" in msg


def test_adni_problems_are_collected_with_file_row_and_column(tmp_path) -> None:
    fx = make_adni(tmp_path)
    lab = pd.read_csv(fx["base"] / "label.csv", index_col=0)
    lab.loc[4, "DIAGNOSIS"] = 4.0
    lab.to_csv(fx["base"] / "label.csv")
    (fx["base"] / "image/ADNI_G.npy").write_bytes(b"not a numpy file")
    splits = json.loads((fx["base"] / "PTID_splits.json").read_text())
    splits["testing"].append(fx["pids"][0])
    (fx["base"] / "PTID_splits.json").write_text(json.dumps(splits))
    clin = pd.read_csv(fx["base"] / "clinical/clinical_merged.csv", index_col=0).astype(object)
    clin.iloc[3, 2] = "high"
    clin.to_csv(fx["base"] / "clinical/clinical_merged.csv")
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("adni", data_root=str(tmp_path))
    text = problems_of(exc)
    assert len(exc.value.problems) == 4, text
    assert f"label.csv row 5 (PTID {fx['pids'][4]!r}), column 'DIAGNOSIS': 4.0 is not one of 1 (CN)" in text
    assert "ADNI_G.npy: cannot be read" in text
    assert f"PTID_splits.json: PTID {fx['pids'][0]!r} is in both 'training' and 'testing'" in text
    assert f"clinical_merged.csv row 4 (PTID {fx['pids'][3]!r}), column 'educ': 'high' is not a number" in text
    assert "\n" not in str(exc.value)


def test_adni_missing_label_column_and_shape_mismatch(tmp_path) -> None:
    fx = make_adni(tmp_path)
    pd.read_csv(fx["base"] / "label.csv", index_col=0).rename(columns={"DIAGNOSIS": "DX"}).to_csv(fx["base"] / "label.csv")
    g = np.load(fx["base"] / "image/ADNI_G.npy")
    np.save(fx["base"] / "image/ADNI_G.npy", g[:, :-1])
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("adni", data_root=str(tmp_path))
    text = problems_of(exc)
    assert "label.csv: has no column 'DIAGNOSIS'" in text
    assert f"ADNI_G.npy: has {fx['n_gm'] - 1} columns but the template has {fx['n_gm']} gray-matter voxels" in text


# ------------------------------------------------------------------ MIMIC-IV
def test_mimic_loads_masks_and_scales_on_train(tmp_path) -> None:
    fx = make_mimic(tmp_path)
    data = load_dataset("mimic-iv:all", data_root=str(tmp_path))
    assert data.spec.modality_names == ["lab", "note", "code"]
    assert [(m.kind, m.shape) for m in data.spec.modalities] == [("tabular", (5,)), ("embedding", (8,)), ("tabular", (6,))]
    task = data.spec.task("mortality")
    assert task.kind == "binary" and task.num_classes == 2
    assert data.ids == fx["ids"]
    assert not bool(data.mask["note"][7]) and int(data.mask["note"].sum()) == len(data) - 1
    assert torch.count_nonzero(data.inputs["note"][7]) == 0
    train = torch.as_tensor(data.splits["train"])
    assert abs(float(data.inputs["lab"][train, 0].mean())) < 1e-4
    assert float(data.inputs["lab"][torch.as_tensor(data.splits["test"]), 0].min()) > 50
    assert abs(float(data.inputs["lab"][31, 2])) < 1e-6  # a test NaN is the train mean -> 0
    # the default (common) variant leaves patient 7 (no notes) out
    common = load_dataset("mimic-iv", data_root=str(tmp_path))
    assert fx["ids"][7] not in common.ids and len(common) == len(fx["ids"]) - 1


def test_mimic_reference_folder_name_and_seeded_split_without_json(tmp_path) -> None:
    fx = make_mimic(tmp_path, folder="mimic4 Dataset")
    (fx["base"] / "PTID_splits_mimic.json").unlink()
    a = load_dataset("mimic-iv", 0, data_root=str(tmp_path))
    b = load_dataset("mimic-iv", 1, data_root=str(tmp_path))
    assert sum(len(v) for v in a.splits.values()) == len(a)
    assert not np.array_equal(a.splits["test"], b.splits["test"])
    files, root = mimic_iv.input_files(str(tmp_path))
    assert root == fx["base"] and [f.name for f in files] == ["code_x.pt", "lab_x.pt", "labels.csv", "note_x.pt"]


def test_mimic_problems(tmp_path) -> None:
    fx = make_mimic(tmp_path)
    lab = pd.read_csv(fx["base"] / "labels.csv", dtype={"subject_id": str})
    lab.loc[2, "one_year_mortality"] = 2
    lab.to_csv(fx["base"] / "labels.csv", index=False)
    (fx["base"] / "lab_x.pt").write_bytes(b"garbage")
    torch.save(torch.zeros(len(fx["ids"]) - 3, 8), fx["base"] / "note_x.pt")
    code = torch.load(fx["base"] / "code_x.pt", weights_only=False)
    code[9, 4] = np.inf
    torch.save(code, fx["base"] / "code_x.pt")
    splits = json.loads((fx["base"] / "PTID_splits_mimic.json").read_text())
    splits["validation"].append(fx["ids"][1])
    (fx["base"] / "PTID_splits_mimic.json").write_text(json.dumps(splits))
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("mimic-iv", data_root=str(tmp_path))
    text = problems_of(exc)
    assert len(exc.value.problems) == 5, text
    assert f"labels.csv row 3 (subject_id {fx['ids'][2]!r}), column 'one_year_mortality': 2 is not 0 or 1" in text
    assert "lab_x.pt: cannot be read" in text
    assert f"note_x.pt: has shape ({len(fx['ids']) - 3}, 8); expected ({len(fx['ids'])}, features)" in text
    assert f"code_x.pt row 10 (subject_id {fx['ids'][9]!r}), column 4: is +-Inf" in text
    assert f"subject_id {fx['ids'][1]!r} is in both 'training' and 'validation'" in text


def test_mimic_feature_file_that_would_run_code_is_refused_not_run(tmp_path) -> None:
    """A planted pickle in a data root (a class whose unpickling calls os.system) is one problem
    naming the file; nothing runs. Before, a failed safe load fell back to weights_only=False."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    fx = make_mimic(tmp_path)
    torch.save({"x": Evil()}, fx["base"] / "note_x.pt")
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("mimic-iv", data_root=str(tmp_path))
    assert not (tmp_path / "pwned").exists()
    assert any("note_x.pt: holds Python objects other than tensors" in p and "refused, not run" in p
               for p in exc.value.problems), exc.value.problems
    # the NumPy arrays the adapter accepts still load (float64, float32, int64, bool)
    for arr in (np.ones((3, 2)), np.ones((3, 2), np.float32), np.arange(6).reshape(3, 2), np.ones((3, 2), bool)):
        torch.save(arr, tmp_path / "a.pt")
        got = mimic_iv.load_array_file(tmp_path / "a.pt")
        assert isinstance(got, np.ndarray) and got.dtype == arr.dtype and np.array_equal(got, arr)


def test_mimic_missing_label_column_and_absent_data(tmp_path) -> None:
    with pytest.raises(DatasetNotFound) as exc:
        mimic_iv.check(str(tmp_path))
    assert "labels.csv, lab_x.pt, note_x.pt, code_x.pt" in str(exc.value) and "physionet" in str(exc.value)
    fx = make_mimic(tmp_path)
    (fx["base"] / "code_x.pt").unlink()
    with pytest.raises(DatasetNotFound, match=r"missing code_x\.pt in .*mimic-iv"):
        load_dataset("mimic-iv", data_root=str(tmp_path))
    torch.save(torch.zeros(len(fx["ids"]), 2), fx["base"] / "code_x.pt")
    pd.read_csv(fx["base"] / "labels.csv").drop(columns="one_year_mortality").to_csv(fx["base"] / "labels.csv", index=False)
    with pytest.raises(DatasetProblems, match="labels.csv: has no column 'one_year_mortality'"):
        load_dataset("mimic-iv", data_root=str(tmp_path))


# ------------------------------------------------------------------ ENRICO
def test_enrico_loads_with_the_reference_split(tmp_path) -> None:
    fx = make_enrico(tmp_path)
    data = load_dataset("enrico", data_root=str(tmp_path))
    assert data.ids == fx["ids"]  # 50105 skipped
    assert [(m.kind, m.shape) for m in data.spec.modalities] == [("image2d", (3, 256, 128))] * 2
    task = data.spec.task("topic")
    assert task.num_classes == 20 and task.labels == enrico.TOPICS
    assert data.targets["topic"].tolist() == [enrico.TOPICS.index(t) for t in fx["topics"]]
    x = data.inputs["screenshot"]
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.05
    # the reference: random.Random(42).shuffle, 65/15/20 int cuts
    import random
    keys = list(range(len(fx["ids"])))
    random.Random(42).shuffle(keys)
    assert data.splits["train"].tolist() == sorted(keys[:19]) and data.splits["test"].tolist() == sorted(keys[24:])
    files, root = enrico.input_files(str(tmp_path))
    assert root == fx["base"] and len(files) == 1 + 2 * len(fx["ids"])


def test_enrico_problems_and_absent_data(tmp_path) -> None:
    with pytest.raises(DatasetNotFound, match="missing design_topics.csv, screenshots/<screen_id>.jpg"):
        load_dataset("enrico", data_root=str(tmp_path))
    fx = make_enrico(tmp_path)
    df = pd.read_csv(fx["base"] / "design_topics.csv", dtype=str)
    df.loc[3, "topic"] = "weather"
    df.to_csv(fx["base"] / "design_topics.csv", index=False)
    (fx["base"] / "screenshots" / f"{fx['ids'][5]}.jpg").write_bytes(b"\xff\xd8 broken")
    (fx["base"] / "wireframes" / f"{fx['ids'][6]}.png").unlink()
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("enrico", data_root=str(tmp_path))
    text = problems_of(exc)
    assert len(exc.value.problems) == 3, text
    assert f"design_topics.csv row 4 (screen_id {fx['ids'][3]!r}), column 'topic': 'weather' is not one of" in text
    assert f"screenshots/{fx['ids'][5]}.jpg: cannot be read as an image" in text
    assert f"wireframes/{fx['ids'][6]}.png: is missing" in text
    df.drop(columns="topic").to_csv(fx["base"] / "design_topics.csv", index=False)
    with pytest.raises(DatasetProblems, match="design_topics.csv: has no column 'topic'"):
        load_dataset("enrico", data_root=str(tmp_path))


# ------------------------------------------------------------------ registry and runner
def test_registry_entries_know_files_and_modalities_without_building(tmp_path) -> None:
    for name, mods in (("adni", ["image", "genomic", "clinical", "biospecimen"]), ("mimic-iv", ["lab", "note", "code"]),
                       ("enrico", ["screenshot", "wireframe"])):
        entry, variant = parse_name(name)
        assert not entry.embedded and entry.modality_names(str(tmp_path), variant) == mods
        with pytest.raises(DatasetNotFound):
            entry.input_files(str(tmp_path), variant)
    make_adni(tmp_path)
    files, root = parse_name("adni")[0].input_files(str(tmp_path), "common")
    assert {f.relative_to(root).as_posix() for f in files} == {
        "label.csv", "PTID_splits.json", "image/ADNI_G.npy", "image/ADNI_subj.txt", adni.TEMPLATE,
        "genomic/genomic_merged.csv", "clinical/clinical_merged.csv", "biospecimen/biospecimen_merged.csv"}


def test_bench_run_accepts_adni(tmp_path) -> None:
    make_adni(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--method", "early", "--dataset", "adni", "--data-root",
         str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), "--preset", "tiny", "--set", "epochs=1",
         "--no-progress", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "adni" in json.dumps(record)


def test_adni_image_npy_that_would_run_code_is_refused_not_run(tmp_path) -> None:
    """ADNI_G.npy holding a pickled object array (its unpickling calls os.system) is one problem
    naming the file; nothing runs (np.load never unpickles: allow_pickle is False)."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    fx = make_adni(tmp_path)
    np.save(fx["base"] / "image/ADNI_G.npy", np.array([Evil(), Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetProblems) as exc:
        load_dataset("adni", data_root=str(tmp_path))
    assert not (tmp_path / "pwned").exists()
    assert "ADNI_G.npy: cannot be read" in problems_of(exc)
