"""The I2MoE benchmark adapters cmu-mosi and mmimdb, on tiny fixtures with the release layouts.

Fixtures are generated in tmp_path with the real file names, keys and per-sample shapes (a few
dozen samples): ``cmu-mosi/mosi_data.pkl`` (and ``mosi_raw.pkl``) as pickled train/valid/test
dicts of NumPy arrays, ``mm-imdb/multimodal_imdb.hdf5`` with the Fuel split attribute.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from datasets import DatasetError, DatasetNotFound, load_dataset, parse_name
from datasets.adapters import cmu_mosi, mmimdb
from datasets.problems import DatasetProblems

ROOT = Path(__file__).resolve().parents[1]
MOSI_N = {"train": 24, "valid": 8, "test": 10}
IMDB_N = {"train": 20, "dev": 6, "test": 8}


# ------------------------------------------------------------------------------ CMU-MOSI fixtures

def mosi_parts(variant: str = "data", seed: int = 0) -> dict:
    """train/valid/test dicts as in mosi_data.pkl: front-padded (N, 50, F) features, (N, 1, 1) labels,
    (N, 2) string ids [video, segment]. Train features ~ 5 + 3z; test features shifted by +40."""
    rng = np.random.default_rng(seed)
    dims = cmu_mosi.VARIANTS[variant][1]
    out = {}
    for s, n in MOSI_N.items():
        part = {}
        pad = rng.integers(0, 30, n)
        for m in cmu_mosi.MODALITIES:
            x = (5 + 3 * rng.standard_normal((n, 50, dims[m])) + (40 if s == "test" else 0)).astype(np.float32)
            for i, p in enumerate(pad):
                x[i, :p] = 0.0
            part[m] = x
        part["labels"] = rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32)
        part["id"] = np.array([[f"vid{s}{i // 3}", str(i)] for i in range(n)], dtype="U16")
        out[s] = part
    return out


def write_mosi(root: Path, parts: dict | None = None, variant: str = "data") -> Path:
    folder = root / "cmu-mosi"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cmu_mosi.VARIANTS[variant][0]
    with open(path, "wb") as fh:
        pickle.dump(parts if parts is not None else mosi_parts(variant), fh, protocol=4)
    return path


def mosi_problems(root: Path) -> list[str]:
    with pytest.raises(DatasetProblems) as info:
        cmu_mosi.build(None, 0, data_root=str(root))
    return info.value.problems


# ------------------------------------------------------------------------------ CMU-MOSI

def test_mosi_loads_with_spec_shapes_and_official_splits(tmp_path):
    parts = mosi_parts()
    parts["train"]["text"][3] = 0.0  # empty text: dropped, as the reference's drop_entry
    write_mosi(tmp_path, parts)
    data = load_dataset("cmu-mosi", split_seed=0, data_root=str(tmp_path))
    assert data.spec.name == "cmu-mosi:data"
    assert [(m.name, m.kind, m.shape) for m in data.spec.modalities] == [
        ("vision", "sequence", (50, 20)), ("audio", "sequence", (50, 5)), ("text", "sequence", (50, 300))]
    task = data.spec.task("sentiment")
    assert task.kind == "regression" and task.num_classes == 1 and task.sign_metric
    ids = {key: [f"vid{key}{i // 3}_{i}" for i in range(n)] for key, n in MOSI_N.items()}
    assert data.spec.params["dropped_empty_text"] == {"train": ["vidtrain1_3"]}
    ids["train"].remove("vidtrain1_3")
    for ours, key in cmu_mosi.SPLIT_KEYS.items():
        assert [data.ids[i] for i in data.splits[ours]] == ids[key]
        labels = parts[key]["labels"].reshape(-1)
        if key == "train":
            labels = np.delete(labels, 3)
        np.testing.assert_allclose(data.targets["sentiment"][data.splits[ours]].numpy(), labels, rtol=1e-6)
    # a split seed changes nothing: the split is the release's
    other = cmu_mosi.build(None, 7, data_root=str(tmp_path))
    assert all((other.splits[s] == data.splits[s]).all() for s in data.splits)


def test_mosi_standardisation_is_fitted_on_train_only(tmp_path):
    parts = mosi_parts()
    write_mosi(tmp_path, parts)
    data = cmu_mosi.build(None, 0, data_root=str(tmp_path))
    for m in cmu_mosi.MODALITIES:
        x = data.inputs[m].numpy()
        pad = np.all(parts["train"]["text"] == 0, axis=-1)
        train = x[data.splits["train"]][~pad]
        np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-3)
        test_pad = np.all(parts["test"]["text"] == 0, axis=-1)
        assert x[data.splits["test"]][~test_pad].mean() > 8  # shifted by 40 raw units = ~13 train sd
        assert (x[data.splits["test"]][test_pad] == 0).all()  # padding stays 0
    task = data.spec.task("sentiment")
    train_y = parts["train"]["labels"].reshape(-1).astype(np.float64)
    assert task.target_mean == pytest.approx(train_y.mean(), abs=1e-6)
    assert task.target_std == pytest.approx(train_y.std(), abs=1e-6)


def test_mosi_raw_variant_reads_mosi_raw_pkl(tmp_path):
    write_mosi(tmp_path, mosi_parts("raw"), variant="raw")
    data = load_dataset("cmu-mosi:raw", data_root=str(tmp_path))
    assert [m.shape for m in data.spec.modalities] == [(50, 35), (50, 74), (50, 300)]
    with pytest.raises(DatasetNotFound, match="missing mosi_data.pkl"):
        cmu_mosi.check(str(tmp_path), "data")


def test_mosi_nonfinite_values_are_zeroed_and_counted_or_reported(tmp_path):
    parts = mosi_parts()
    parts["train"]["audio"][2, 40, 1] = -np.inf
    parts["train"]["audio"][5, 45, :2] = np.nan
    parts["test"]["vision"][1, 49, 0] = np.inf
    write_mosi(tmp_path, parts)
    with pytest.warns(UserWarning, match="replaced non-finite feature values by 0"):
        data = cmu_mosi.build(None, 0, data_root=str(tmp_path))
    assert data.spec.params["nonfinite_replaced"] == {"train": {"audio": 3}, "test": {"vision": 1}}
    with pytest.raises(DatasetProblems) as info:
        cmu_mosi.build(None, 0, data_root=str(tmp_path), nonfinite="error")
    assert info.value.problems == ["mosi_data.pkl ['train']['audio'] row 2: 1 NaN/Inf values",
                                   "mosi_data.pkl ['train']['audio'] row 5: 2 NaN/Inf values",
                                   "mosi_data.pkl ['test']['vision'] row 1: 1 NaN/Inf values"]


def test_mosi_truncated_pickle_is_named(tmp_path):
    path = write_mosi(tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    problems = mosi_problems(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("mosi_data.pkl: cannot be read as a pickle")


def test_mosi_pickle_with_foreign_class_is_refused_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    write_mosi(tmp_path, {"train": Evil()})
    problems = mosi_problems(tmp_path)
    assert "refusing to load" in problems[0] and "system" in problems[0]
    assert not (tmp_path / "pwned").exists()


def test_mosi_every_problem_is_collected_with_file_split_and_row(tmp_path):
    parts = mosi_parts()
    del parts["valid"]["audio"]                       # a missing modality key
    parts["train"]["labels"][4, 0, 0] = 3.5           # a label outside [-3, 3]
    parts["train"]["labels"][6, 0, 0] = np.nan
    parts["test"]["id"][2] = parts["train"]["id"][7]  # an id in two splits
    parts["test"]["text"] = parts["test"]["text"][:, :, :299]  # a shape mismatch
    write_mosi(tmp_path, parts)
    problems = mosi_problems(tmp_path)
    assert "mosi_data.pkl ['valid']: missing key 'audio' (has ['id', 'labels', 'text', 'vision'])" in problems
    assert "mosi_data.pkl ['train']['labels'] row 4: label 3.5 is outside [-3, 3]" in problems
    assert "mosi_data.pkl ['train']['labels'] row 6: label nan is not finite" in problems
    assert "mosi_data.pkl ['test']['text']: has shape (10, 50, 299), expected (N, 50, 300)" in problems
    assert "mosi_data.pkl ['test']['id'] row 2: id 'vidtrain2_7' repeats ['train'] row 7" in problems
    assert len(problems) == 5


def test_mosi_missing_split_and_row_count_mismatch(tmp_path):
    parts = mosi_parts()
    del parts["valid"]
    parts["test"]["labels"] = parts["test"]["labels"][:-1]
    write_mosi(tmp_path, parts)
    problems = mosi_problems(tmp_path)
    assert problems[0].startswith("mosi_data.pkl: missing split key 'valid'")
    assert "mosi_data.pkl ['test']: arrays have different numbers of rows: vision 10, audio 10, text 10, labels 9, id 10" \
        in problems


def test_mosi_absent_data_is_one_line_not_found(tmp_path):
    for call in (lambda: cmu_mosi.check(str(tmp_path)), lambda: cmu_mosi.input_files(str(tmp_path)),
                 lambda: load_dataset("cmu-mosi", data_root=str(tmp_path))):
        with pytest.raises(DatasetNotFound) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and str(tmp_path / "cmu-mosi") in msg and "mosi_data.pkl" in msg and "MultiBench" in msg
    entry, variant = parse_name("cmu-mosi")
    assert not entry.embedded and variant == "data"
    assert entry.modality_names(str(tmp_path), variant) == ["vision", "audio", "text"]  # no file needed
    path = write_mosi(tmp_path)
    assert entry.input_files(str(tmp_path), variant) == ([path], path.parent)


# ------------------------------------------------------------------------------ MM-IMDb fixtures

def imdb_arrays(seed: int = 0) -> dict:
    """The release's datasets for a few dozen movies in train/dev/test order; train features ~ 2 + 4z,
    dev/test shifted by +30."""
    rng = np.random.default_rng(seed)
    n = sum(IMDB_N.values())
    n_train = IMDB_N["train"]
    shift = np.r_[np.zeros(n_train), np.full(n - n_train, 30.0)][:, None]
    genres = (rng.random((n, 23)) < 0.2).astype(np.int32)
    genres[:, 0] |= genres.sum(axis=1) == 0
    return {
        "features": (2 + 4 * rng.standard_normal((n, 300)) + shift).astype(np.float32),
        "vgg_features": (2 + 4 * rng.standard_normal((n, 4096)) + shift).astype(np.float32),
        "genres": genres,
        "imdb_ids": np.array([f"{1000000 + 7 * i:07d}" for i in range(n)], dtype="S7"),
        "images": rng.integers(0, 255, (n, 3, 8, 5)).astype(np.int32),  # the 256x160 posters, not read
    }


def fuel_split(counts: dict = IMDB_N, sources=("features", "vgg_features", "genres", "imdb_ids", "images")):
    """Fuel's H5PYDataset.create_split_array layout: one row per (split, source)."""
    import h5py

    dtype = np.dtype([("split", "S5"), ("source", "S15"), ("start", np.int64), ("stop", np.int64),
                      ("indices", h5py.special_dtype(ref=h5py.Reference)), ("available", np.bool_),
                      ("comment", "S1")])
    rows, start = [], 0
    for split, n in counts.items():
        rows += [(split.encode(), src.encode(), start, start + n, None, True, b".") for src in sources]
        start += n
    return np.array(rows, dtype=dtype)


def write_imdb(root: Path, arrays: dict | None = None, split=True, target_names=mmimdb.GENRES) -> Path:
    import h5py

    folder = root / "mm-imdb"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "multimodal_imdb.hdf5"
    with h5py.File(path, "w") as f:
        for key, value in (imdb_arrays() if arrays is None else arrays).items():
            f.create_dataset(key, data=value)
        if "genres" in f and target_names is not None:
            f["genres"].attrs["target_names"] = json.dumps(list(target_names))
        if split is True:
            f.attrs["split"] = fuel_split()
        elif split is not None:
            f.attrs["split"] = split
    return path


def imdb_problems(root: Path) -> list[str]:
    with pytest.raises(DatasetProblems) as info:
        mmimdb.build(None, 0, data_root=str(root))
    return info.value.problems


# ------------------------------------------------------------------------------ MM-IMDb

def test_imdb_loads_with_spec_classes_and_fuel_splits(tmp_path):
    arrays = imdb_arrays()
    write_imdb(tmp_path, arrays)
    data = load_dataset("mmimdb", split_seed=3, data_root=str(tmp_path))
    assert [(m.name, m.kind, m.shape) for m in data.spec.modalities] == [("text", "embedding", (300,)),
                                                                       ("image", "embedding", (4096,))]
    task = data.spec.task("genres")
    assert task.kind == "multilabel" and task.num_classes == 23 and task.labels == mmimdb.GENRES
    assert task.labels[:3] == ("Drama", "Comedy", "Romance") and task.labels[-1] == "Film-Noir"
    ids = [i.decode() for i in arrays["imdb_ids"]]
    a = 0
    for ours, fuel in mmimdb.SPLIT_NAMES.items():
        n = IMDB_N[fuel]
        assert [data.ids[i] for i in data.splits[ours]] == ids[a:a + n]
        np.testing.assert_array_equal(data.targets["genres"][data.splits[ours]].numpy(), arrays["genres"][a:a + n])
        a += n


def test_imdb_standardisation_is_fitted_on_train_only(tmp_path):
    write_imdb(tmp_path)
    data = mmimdb.build(None, 0, data_root=str(tmp_path))
    for m in ("text", "image"):
        x = data.inputs[m].numpy()
        np.testing.assert_allclose(x[data.splits["train"]].mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(x[data.splits["train"]].std(axis=0), 1, atol=1e-3)
        assert x[data.splits["test"]].mean() > 5  # +30 raw units = 7.5 train sd


def test_imdb_without_split_attribute_uses_reference_ranges(tmp_path, monkeypatch):
    write_imdb(tmp_path, split=None)
    problems = imdb_problems(tmp_path)
    assert problems == ["multimodal_imdb.hdf5 attribute 'split': is absent and the file has 34 rows, not the "
                        "release's 25959: cannot place rows in the official split"]
    # the reference's fixed ranges, scaled down to the fixture
    monkeypatch.setattr(mmimdb, "RELEASE_ROWS", 34)
    monkeypatch.setattr(mmimdb, "REFERENCE_RANGES", {"train": (0, 20), "val": (20, 26), "test": (26, 34)})
    data = mmimdb.build(None, 0, data_root=str(tmp_path))
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [20, 6, 8]
    # with the attribute, a 25959-row-like file whose ranges differ from the reference's is refused
    write_imdb(tmp_path, split=fuel_split({"train": 19, "dev": 7, "test": 8}))
    assert "differ from the official (reference) ranges" in imdb_problems(tmp_path)[0]


def test_imdb_truncated_file_is_named(tmp_path):
    path = write_imdb(tmp_path)
    path.write_bytes(path.read_bytes()[:4096])
    problems = imdb_problems(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("multimodal_imdb.hdf5")
    assert "truncated or corrupted" in problems[0]


def test_imdb_every_problem_is_collected_with_file_dataset_and_row(tmp_path):
    arrays = imdb_arrays()
    del arrays["vgg_features"]                     # a missing modality
    arrays["genres"][3, 5] = 2                     # a label outside the declared classes
    arrays["imdb_ids"][30] = arrays["imdb_ids"][4]  # an id in train and test
    write_imdb(tmp_path, arrays, target_names=mmimdb.GENRES[::-1])
    problems = imdb_problems(tmp_path)
    assert problems[0].startswith("multimodal_imdb.hdf5: missing dataset 'vgg_features'")
    assert problems[1].startswith("multimodal_imdb.hdf5 ['genres'] attribute 'target_names': is ['Film-Noir'")
    assert "multimodal_imdb.hdf5 ['genres'] row 3: genre values must be 0 or 1 (Action=2)" in problems
    assert "multimodal_imdb.hdf5 ['imdb_ids'] row 30: id '1000028' (test) repeats row 4 (train)" in problems
    assert len(problems) == 4


def test_imdb_shape_mismatch_and_overlapping_splits(tmp_path):
    arrays = imdb_arrays()
    arrays["features"] = arrays["features"][:, :299]
    write_imdb(tmp_path, arrays)
    assert imdb_problems(tmp_path) == ["multimodal_imdb.hdf5 ['features']: has shape (34, 299), expected (N, 300)"]
    split = fuel_split()
    split["start"][split["split"] == b"dev"] -= 2
    write_imdb(tmp_path, split=split)
    assert imdb_problems(tmp_path) == ["multimodal_imdb.hdf5 attribute 'split': rows 18..19 are in both 'train' and 'dev'"]


def test_imdb_nonfinite_rows_are_masked_and_counted_or_reported(tmp_path):
    arrays = imdb_arrays()
    arrays["features"][2, 7] = np.nan
    arrays["vgg_features"][25, :] = np.inf
    write_imdb(tmp_path, arrays)
    with pytest.warns(UserWarning, match="marked missing"):
        data = mmimdb.build(None, 0, data_root=str(tmp_path))
    assert data.spec.params["nonfinite_masked"] == {"text": 1, "image": 1}
    assert not data.mask["text"][2] and not data.mask["image"][25] and int(data.mask["text"].sum()) == 33
    with pytest.raises(DatasetProblems) as info:
        mmimdb.build(None, 0, data_root=str(tmp_path), nonfinite="error")
    assert info.value.problems == ["multimodal_imdb.hdf5 ['features'] row 2: holds NaN/Inf values",
                                   "multimodal_imdb.hdf5 ['vgg_features'] row 25: holds NaN/Inf values"]


def test_imdb_absent_data_and_absent_h5py_are_one_line(tmp_path, monkeypatch):
    for call in (lambda: mmimdb.check(str(tmp_path)), lambda: load_dataset("mmimdb", data_root=str(tmp_path))):
        with pytest.raises(DatasetNotFound) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and str(tmp_path / "mm-imdb") in msg and "multimodal_imdb.hdf5" in msg
        assert "gmu-mmimdb" in msg
    assert parse_name("mmimdb")[0].modality_names(str(tmp_path), None) == ["text", "image"]
    path = write_imdb(tmp_path)
    assert mmimdb.input_files(str(tmp_path)) == ([path], path.parent)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DatasetError) as info:
        mmimdb.check(str(tmp_path))
    assert str(info.value) == "mmimdb: reading multimodal_imdb.hdf5 needs the optional package h5py (pip install h5py)"


# ------------------------------------------------------------------------------ end to end

def test_cli_run_late_on_cmu_mosi_reports_sign_accuracy(tmp_path):
    write_mosi(tmp_path / "data")
    r = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "late", "--dataset", "cmu-mosi",
                        "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"),
                        "--preset", "tiny", "--set", "epochs=1", "--json", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert record["status"] == "ok" and record["dataset"] == "cmu-mosi:data"
    for split in ("val", "test"):
        metrics = record["metrics"][split]["sentiment"]
        assert {"mae", "rmse", "pearson_r", "sign_accuracy"} <= set(metrics)
        assert 0.0 <= metrics["sign_accuracy"] <= 1.0


def test_fixtures_do_not_warn(tmp_path):
    write_mosi(tmp_path)
    write_imdb(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cmu_mosi.build(None, 0, data_root=str(tmp_path))
        mmimdb.build(None, 0, data_root=str(tmp_path))


def test_data_check_lists_every_problem_of_a_registered_dataset(tmp_path):
    """``bench data check cmu-mosi --data-root R``: the adapter's problems, one per line, exit 1;
    the missing files in one line when absent; a summary when clean."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def check(*args):
        return subprocess.run([sys.executable, "-m", "bench", "data", "check", *args], cwd=root,
                              capture_output=True, text=True)

    absent = check("cmu-mosi", "--data-root", str(tmp_path / "nothing"))
    assert absent.returncode == 1 and "mosi_data.pkl" in absent.stdout and len(absent.stdout.splitlines()) == 1
    good = tmp_path / "good"
    write_mosi(good)
    ok = check("cmu-mosi", "--data-root", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "modality vision (sequence" in ok.stdout and "no problems found" in ok.stderr
    parts = mosi_parts()
    del parts["valid"]["audio"]
    parts["train"]["labels"][4, 0, 0] = 3.5
    bad = tmp_path / "bad"
    write_mosi(bad, parts)
    broken = check("cmu-mosi", "--data-root", str(bad))
    assert broken.returncode == 1 and "2 problem(s)" in broken.stderr
    assert sorted(broken.stdout.splitlines()) == [
        "mosi_data.pkl ['train']['labels'] row 4: label 3.5 is outside [-3, 3]",
        "mosi_data.pkl ['valid']: missing key 'audio' (has ['id', 'labels', 'text', 'vision'])"]
