"""The folder dataset format (``folder:PATH``): reading, checking every problem, convert, round trips."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datasets import load_dataset, parse_name
from datasets.folder import check_folder, folder_files, folder_modality_names
from datasets.folder.writer import convert_to_folder
from datasets.problems import DatasetProblems

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          env=env, timeout=300)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``bench ARGS`` in this process: (exit status, stdout, stderr)."""
    from bench.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def make_folder(path: Path, doc: dict | str, rows: list[dict], files: dict[str, np.ndarray | bytes] | None = None
                ) -> Path:
    """A folder dataset: dataset.yaml (a dict or raw text), table.csv from ``rows`` (all cells as text)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dataset.yaml").write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
    (path / "table.csv").write_text("\n".join(lines) + "\n")
    for rel, content in (files or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (path / rel).write_bytes(content)
        else:
            np.save(path / rel, content)
    return path


def study(n: int = 30, **overrides) -> tuple[dict, list[dict], dict]:
    """A clean small study: clinical columns, an npy image per sample, a 3-class label, a score, a site."""
    rng = np.random.default_rng(0)
    doc = {"name": "toy", "id": "sid", "patient": "pid",
           "modalities": [{"name": "clinical", "kind": "tabular", "columns": ["age", "lab_*"]},
                          {"name": "scan", "kind": "image2d", "path": "scan_file"}],
           "tasks": [{"name": "dx", "kind": "multiclass", "label": "dx", "classes": ["CN", "MCI", "AD"]},
                     {"name": "score", "kind": "regression", "label": "score"}]}
    rows, files = [], {}
    for i in range(n):
        rows.append({"sid": f"s{i:02d}", "pid": f"p{i // 2:02d}", "age": f"{50 + i}", "lab_a": f"{rng.normal():.4f}",
                     "lab_b": f"{rng.normal():.4f}", "scan_file": f"files/s{i:02d}.npy", "dx": ["CN", "MCI", "AD"][i % 3],
                     "score": f"{rng.normal():.3f}", "site": f"site{i % 4}"})
        files[f"files/s{i:02d}.npy"] = rng.random((1, 4, 4)).astype(np.float32)
    doc.update(overrides)
    return doc, rows, files


# --------------------------------------------------------------------------------------------- round trips
def _same_tensors(a, b) -> None:
    assert list(a.ids) == list(b.ids)
    assert a.spec.modality_names == b.spec.modality_names and a.spec.task_names == b.spec.task_names
    for m in a.spec.modality_names:
        assert torch.equal(a.inputs[m], b.inputs[m]), m
        assert torch.equal(a.mask[m], b.mask[m]), m
    for t in a.spec.task_names:
        assert torch.equal(a.target_mask[t], b.target_mask[t]), t
        assert torch.equal(a.targets[t][a.target_mask[t]], b.targets[t][b.target_mask[t]]), t
    for s in ("train", "val", "test"):
        assert np.array_equal(a.splits[s], b.splits[s]), s


@pytest.mark.slow  # about a minute of subprocess runs; CI runs the slow tests too
def test_wdbc_round_trip_gives_the_same_test_metrics(tmp_path) -> None:
    out = tmp_path / "wdbc"
    r = bench("data", "convert", "wdbc", "--to", "folder", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "split" not in yaml.safe_load((out / "dataset.yaml").read_text())  # the default rule reproduces it
    metrics = []
    for dataset in ("wdbc", f"folder:{out}"):
        r = bench("run", "--method", "attention", "--dataset", dataset, "--runs-dir", str(tmp_path / "runs"),
                  "--preset", "tiny", "--set", "epochs=1", "--no-progress", "--json")
        assert r.returncode == 0, r.stderr
        metrics.append(json.loads(r.stdout.strip().splitlines()[-1])["metrics"]["test"])
    assert metrics[0] == metrics[1] and metrics[0]["diagnosis"]["accuracy"] > 0


@pytest.mark.parametrize("split_seed", [0, 3])
def test_digits_halves_round_trip_through_npy_files(tmp_path, split_seed) -> None:
    info = convert_to_folder("digits-halves", tmp_path / "d", split_seed=split_seed)
    assert info["files"] == 2 * 1797 and not info["split_column"]
    assert (tmp_path / "d" / "files" / "digit-0000__left.npy").is_file()
    for seed in (split_seed, split_seed + 1):  # no split column: the folder follows the split seed like the original
        _same_tensors(load_dataset("digits-halves", seed), load_dataset(f"folder:{tmp_path / 'd'}", seed))


def test_diabetes_round_trip_writes_a_split_column(tmp_path) -> None:
    info = convert_to_folder("diabetes-views", tmp_path / "db", split_seed=2)
    assert info["split_column"]  # quartile strata are not the folder's default rule
    original = load_dataset("diabetes-views", 2)
    _same_tensors(original, load_dataset(f"folder:{tmp_path / 'db'}", 2))
    other = load_dataset(f"folder:{tmp_path / 'db'}", 7)  # a fixed split: the split seed changes nothing
    assert all(np.array_equal(other.splits[s], original.splits[s]) for s in ("train", "val", "test"))
    assert other.spec.tasks[0].target_mean == original.spec.tasks[0].target_mean


def test_patient_groups_masks_and_extras_round_trip(tmp_path) -> None:
    info = convert_to_folder("synthetic-mvmt", tmp_path / "mv")
    assert not info["split_column"]
    original, back = load_dataset("synthetic-mvmt", 0), load_dataset(f"folder:{tmp_path / 'mv'}", 0)
    _same_tensors(original, back)
    assert not bool(back.mask["v3"].all()) and not bool(back.target_mask["same"].all())
    assert set(back.meta) == {"noise_v1", "noise_v2", "noise_v3"}


def test_convert_refuses_a_non_empty_output_and_segmentation_names(tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    rc, _, err = cli(capsys, "data", "convert", "wdbc", "--out", str(tmp_path / "out"))
    assert rc == 2 and "not empty" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "x" and len(list(tmp_path.iterdir())) == 1
    rc, _, err = cli(capsys, "data", "convert", "flare22", "--to", "folder", "--out", str(tmp_path / "f"))
    assert rc == 2 and "--to nnunet" in err
    rc, _, err = cli(capsys, "data", "convert", "wdbc", "--to", "nnunet", "--out", str(tmp_path / "f"))
    assert rc == 2 and "--to folder" in err
    rc, out, _ = cli(capsys, "data", "convert", "synthetic-pid:mixed", "--out", str(tmp_path / "pid"), "--json")
    assert rc == 0 and json.loads(out)["samples"] == 1500
    assert "interaction" in load_dataset(f"folder:{tmp_path / 'pid'}", 0).meta


# --------------------------------------------------------------------------------------------- reading
def test_clean_folder_builds_and_check_prints_a_summary(tmp_path, capsys) -> None:
    folder = make_folder(tmp_path / "toy", *study())
    data = load_dataset(f"folder:{folder}", 0)
    assert data.spec.modality("clinical").shape == (3,) and data.spec.modality("scan").shape == (1, 4, 4)
    assert data.spec.task("dx").labels == ("CN", "MCI", "AD")
    assert data.targets["dx"].tolist()[:4] == [0, 1, 2, 0]  # row order kept, classes in declared order
    assert list(data.meta) == ["site"] and data.meta["site"][1] == "site1"
    raw = np.load(folder / "files/s05.npy")
    assert torch.equal(data.inputs["scan"][5], torch.from_numpy(raw))  # images are not standardised
    rc, out, err = cli(capsys, "data", "check", f"folder:{folder}")
    assert rc == 0, out + err
    assert "30 samples" in out and "modality scan (image2d, shape (1, 4, 4)): missing for 0" in out
    assert "meta columns" in out and "train " in out and "no problems found" in err


def test_missing_cells_and_paths_mark_the_modality_missing(tmp_path) -> None:
    doc, rows, files = study()
    rows[3]["lab_a"] = ""
    rows[4]["scan_file"] = ""
    rows[5]["age"] = "NA"
    rows[6]["dx"] = ""
    data = load_dataset(f"folder:{make_folder(tmp_path / 't', doc, rows, files)}", 0)
    assert data.mask["clinical"].tolist()[2:7] == [True, False, True, False, True]
    assert data.mask["scan"].tolist()[3:6] == [True, False, True]
    assert float(data.inputs["clinical"][3].abs().sum()) == 0.0
    assert data.target_mask["dx"].tolist()[5:8] == [True, False, True]
    assert bool(data.target_mask["score"].all())


def test_a_modality_missing_for_every_sample_is_an_error(tmp_path) -> None:
    doc, rows, files = study()
    for r in rows:
        r["scan_file"] = ""
    with pytest.raises(DatasetProblems, match="modality 'scan' is missing for every sample"):
        load_dataset(f"folder:{make_folder(tmp_path / 't', doc, rows, files)}", 0)


def test_fixed_split_column_is_honoured(tmp_path) -> None:
    doc, rows, files = study(split="part")
    for i, r in enumerate(rows):
        r["part"] = "train" if i < 18 else ("val" if i < 24 else "test")
    folder = make_folder(tmp_path / "t", doc, rows, files)
    a, b = load_dataset(f"folder:{folder}", 0), load_dataset(f"folder:{folder}", 9)
    assert a.splits["train"].tolist() == list(range(18)) and a.splits["test"].tolist() == list(range(24, 30))
    assert all(np.array_equal(a.splits[s], b.splits[s]) for s in ("train", "val", "test"))
    assert "part" not in a.meta and "fixed by the split column" in a.spec.split_rule


def test_patient_column_keeps_each_patient_in_one_split(tmp_path) -> None:
    doc, rows, files = study(n=60)
    for i, r in enumerate(rows):
        r["pid"] = f"p{i % 7}"  # patients spread over the table, not adjacent
    folder = make_folder(tmp_path / "t", doc, rows, files)
    for seed in range(3):
        data = load_dataset(f"folder:{folder}", seed)
        owner = {}
        for s in ("train", "val", "test"):
            for i in data.splits[s]:
                assert owner.setdefault(rows[i]["pid"], s) == s
        assert "pid" not in data.meta


def test_parquet_table_multilabel_binary_and_png(tmp_path) -> None:
    import pandas as pd
    from PIL import Image

    folder = tmp_path / "pq"
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(20):
        px = np.full((3, 5), i * 10, np.uint8)
        Image.fromarray(px).save(folder / "img" / f"{i}.png")
        rows.append({"id": i, "x1": float(i) / 3, "x2": None if i == 4 else 2.0 * i, "img": f"img/{i}.png",
                     "tags": ["a|b", "b", "", "c|a"][i % 4], "y": i % 2, "g1": i % 2, "g2": 1 - i % 2})
    pd.DataFrame(rows).to_parquet(folder / "table.parquet")
    (folder / "dataset.yaml").write_text(yaml.safe_dump({
        "id": "id", "modalities": [{"name": "tab", "kind": "tabular", "columns": ["x*"]},
                                   {"name": "pic", "kind": "image2d", "path": "img", "file": "png"}],
        "tasks": [{"name": "y", "kind": "binary", "label": "y"},
                  {"name": "tags", "kind": "multilabel", "label": "tags", "separator": "|"},
                  {"name": "g", "kind": "multilabel", "columns": ["g1", "g2"], "classes": ["one", "two"]}]}))
    data = load_dataset(f"folder:{folder}", 0)
    assert data.spec.name == "pq" and data.ids[3] == "3"
    assert data.spec.modality("pic").shape == (1, 3, 5)
    assert float(data.inputs["pic"][2, 0, 0, 0]) == pytest.approx(20 / 255)
    assert data.mask["tab"].tolist()[3:6] == [True, False, True]
    assert data.spec.task("tags").labels == ("a", "b", "c")
    assert data.targets["tags"][3].tolist() == [1.0, 0.0, 1.0] and not bool(data.target_mask["tags"][2])
    assert data.targets["g"][1].tolist() == [1.0, 0.0] and data.spec.task("g").labels == ("one", "two")


# --------------------------------------------------------------------------------------------- problems
def test_check_lists_every_problem_with_row_and_column(tmp_path, capsys) -> None:
    doc, rows, files = study(split="part")
    doc["modalities"].append({"name": "notes", "kind": "embedding", "columns": ["note_vec"]})  # absent column
    for i, r in enumerate(rows):
        r["part"] = "train" if i < 18 else ("val" if i < 24 else "test")
    rows[17]["pid"] = rows[18]["pid"] = "p99"                      # patient p99 in train (row 18) and val (row 19)
    rows[2]["dx"] = "XX"                                            # label outside the classes
    rows[4]["lab_b"] = "inf"                                        # Inf in a tabular cell
    rows[5]["age"] = "old"                                          # non-numeric
    rows[6]["scan_file"] = "files/nowhere.npy"                      # missing file
    files["files/s07.npy"] = (np.lib.format.MAGIC_PREFIX + b"\x01\x00" + b"{'descr': '<f4', 'fortran_order': False, "
                              b"'shape': (1, 4, 4), }" + b" " * 40 + b"\n" + b"\x00" * 12)  # truncated
    files["files/s08.npy"] = np.zeros((1, 5, 4), np.float32)       # wrong shape
    rows[9]["sid"] = rows[10]["sid"]                                # duplicate id
    rows[11]["part"] = "holdout"                                    # bad split value
    folder = make_folder(tmp_path / "broken", doc, rows, files)
    rc, out, err = cli(capsys, "data", "check", f"folder:{folder}")
    assert rc == 1 and "10 problem(s)" in err
    lines = out.strip().splitlines()
    expected = [
        "table.csv row 3 (id 's02'), column 'dx': label 'XX' is not one of the declared classes CN, MCI, AD",
        "table.csv row 5 (id 's04'), column 'lab_b': 'inf' is infinite",
        "table.csv row 6 (id 's05'), column 'age': 'old' is not a number",
        "table.csv row 7 (id 's06'), column 'scan_file': file 'files/nowhere.npy' does not exist",
        "table.csv row 8 (id 's07'), column 'scan_file': cannot read npy file 'files/s07.npy'",
        "table.csv row 9 (id 's08'), column 'scan_file': 'files/s08.npy' has shape (1, 5, 4), expected (1, 4, 4)",
        "id 's10' is repeated (rows 10, 11)",
        "table.csv row 12 (id 's11'), column 'part': split 'holdout' is not one of train, val, test",
        "patient 'p99' is in two splits: 'train' (row 18) and 'val' (row 19)",
        "column 'note_vec' of modality 'notes' is not in table.csv",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, lines)
    assert len(lines) == len(expected)
    problems, summary = check_folder(folder)
    assert summary is None and len(problems) == len(expected)
    with pytest.raises(DatasetProblems) as exc:
        load_dataset(f"folder:{folder}", 0)
    assert len(exc.value.problems) == len(expected) and "\n" not in str(exc.value)


def test_dataset_yaml_errors_name_line_and_field(tmp_path) -> None:
    text = """id: sid
colour: blue
modalities:
  - {name: clinical, kind: tabular, columns: [age]}
  - {name: scan, kind: picture, path: scan_file}
  - {kind: tabular, columns: [lab_a]}
tasks:
  - {name: dx, kind: multiclass}
  - {name: sc, kind: regression, label: score, classes: [a, b]}
"""
    _, rows, files = study()
    folder = make_folder(tmp_path / "y", text, rows, files)
    problems, _ = check_folder(folder)
    assert "dataset.yaml line 2: colour: unknown key; use only: name, description, table, id, patient, split, " \
           "modalities, tasks" in problems
    assert any(p.startswith("dataset.yaml line 5: modalities[1].kind: 'picture' is not a modality kind") for p in problems)
    assert any(p.startswith("dataset.yaml line 6: modalities[2].name: missing") for p in problems)
    assert any(p.startswith("dataset.yaml line 8: tasks[0].label: missing") for p in problems)
    assert any(p.startswith("dataset.yaml line 9: tasks[1].classes: a regression task has no classes") for p in problems)
    assert len(problems) == 5, problems
    with pytest.raises(DatasetProblems):
        folder_modality_names(None, str(folder))


def test_broken_png_and_missing_nibabel_are_problems(tmp_path, monkeypatch) -> None:
    from PIL import Image

    doc, rows, files = study(n=12)
    doc["modalities"][1] = {"name": "scan", "kind": "image2d", "path": "scan_file"}
    folder = make_folder(tmp_path / "p", doc, rows, {})
    for i, r in enumerate(rows):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / f"{i}.png")
        r["scan_file"] = f"{i}.png"
    (folder / "3.png").write_bytes((folder / "3.png").read_bytes()[:30])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "4.png")  # RGB among grey: another shape
    (folder / "5.nii.gz").write_bytes(b"x")
    rows[5]["scan_file"] = "5.nii.gz"
    make_folder(folder, doc, rows)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    problems, _ = check_folder(folder)
    assert any(p.startswith("table.csv row 4 (id 's03'), column 'scan_file': cannot read png file '3.png'")
               for p in problems), problems
    assert any("row 5 (id 's04')" in p and "has shape (3, 4, 4), expected (1, 4, 4)" in p for p in problems)
    assert any("row 6 (id 's05')" in p and "needs nibabel" in p for p in problems)
    assert len(problems) == 3


def test_row_numbers_are_one_based_data_rows(tmp_path) -> None:
    doc, rows, files = study()
    rows[0]["dx"] = "bad"  # the first data row is row 1 (the header is not counted)
    problems, _ = check_folder(make_folder(tmp_path / "t", doc, rows, files))
    assert problems == ["table.csv row 1 (id 's00'), column 'dx': label 'bad' is not one of the declared classes "
                        "CN, MCI, AD"]


# --------------------------------------------------------------------------------------------- registry
def test_registry_input_files_and_single_expansion(tmp_path) -> None:
    from bench.identity import data_fingerprint
    from bench.sweep import expand

    folder = make_folder(tmp_path / "t", *study())
    entry, variant = parse_name(f"folder:{folder}")
    assert not entry.embedded and variant == str(folder)
    files, root = folder_files(None, str(folder))
    assert root == folder and len(files) == 2 + 30
    assert {folder / "dataset.yaml", folder / "table.csv", folder / "files/s29.npy"} <= set(files)
    before = data_fingerprint(f"folder:{folder}")
    np.save(folder / "files/s29.npy", np.ones((1, 4, 4), np.float32))
    os.utime(folder / "files/s29.npy", ns=(1, 1))
    assert data_fingerprint(f"folder:{folder}") != before
    (folder / "table.csv").rename(folder / "gone.csv")  # modality names come from dataset.yaml alone
    assert folder_modality_names(None, str(folder)) == ["clinical", "scan"]
    (folder / "gone.csv").rename(folder / "table.csv")
    jobs = expand(["single", "late"], [f"folder:{folder}"], [0])
    assert [j.method for j in jobs] == ["single:clinical", "single:scan", "late"]
    with pytest.raises(Exception, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'nothing'}", 0)


def _serum_table(n: int = 24) -> tuple[dict, list[dict]]:
    """The layout a new user hit: id sample_id, sex (clinical), split (undeclared), s1_tc..s3_glu (serum)."""
    rng = np.random.default_rng(3)
    rows = [{"sample_id": f"diabetes_{i:03d}", "sex": str(i % 2), "age": f"{40 + i}", "split": ["train", "val", "test"][i % 3],
             "s1_tc": f"{rng.normal():.3f}", "s2_ldl": f"{rng.normal():.3f}", "s3_glu": f"{rng.normal():.3f}",
             "score": f"{rng.normal():.3f}"} for i in range(n)]
    doc = {"name": "serum", "id": "sample_id",
           "modalities": [{"name": "clinical", "kind": "tabular", "columns": ["sex", "age"]},
                          {"name": "serum", "kind": "tabular", "columns": ["s*"]}],
           "tasks": [{"name": "score", "kind": "regression", "label": "score"}]}
    return doc, rows


def test_a_glob_never_swallows_id_split_or_label_columns(tmp_path):
    doc, rows = _serum_table()
    doc["modalities"][1]["columns"] = ["s1_*", "s2_*", "s3_*", "s*"]
    doc["modalities"][0]["columns"] = ["age"]
    doc["split"] = "split"
    doc["tasks"][0]["label"] = "score"
    folder = make_folder(tmp_path / "serum", doc, rows)
    problems, _ = check_folder(folder)
    # s* matches sample_id, sex, s1_tc ..., split, score: only the three serum columns and sex are features
    assert problems == []
    data = load_dataset(f"folder:{folder}")
    assert data.spec.modality("serum").shape == (4,)   # s1_tc, s2_ldl, s3_glu and sex (no id, split or label)


def test_a_column_two_modalities_claim_is_one_problem_naming_both(tmp_path):
    doc, rows = _serum_table()
    folder = make_folder(tmp_path / "serum", doc, rows)
    with pytest.warns(UserWarning, match="add `split: split` to use it"):
        problems, _ = check_folder(folder)
    assert len(problems) == 1, problems
    assert "column 'sex' is claimed by modalities 'clinical' and 'serum'" in problems[0]
    doc["modalities"][0]["columns"] = ["sample_id", "age"]       # an explicit reserved column
    doc["modalities"][1]["columns"] = ["s1_*"]
    folder = make_folder(tmp_path / "serum2", doc, rows)
    problems, _ = check_folder(folder)
    assert any("column 'sample_id' of modality 'clinical' is the id column; it cannot be a feature" in p
               for p in problems), problems


def test_repeated_cell_problems_collapse_to_a_few_lines_per_column(tmp_path):
    doc, rows = _serum_table(60)
    for r in rows:
        r["age"] = "unknown"
    doc["modalities"][1]["columns"] = ["s1_*", "s2_*", "s3_*"]
    folder = make_folder(tmp_path / "serum", doc, rows)
    problems, _ = check_folder(folder)
    age = [p for p in problems if "'age'" in p]
    assert len(age) == 4 and "57 more rows with this problem (not a number)" in age[-1], age


def test_corrupt_data_fails_the_sweep_and_its_dry_run_says_so(tmp_path, capsys):
    """Data that is present but cannot be read: the dry run reads it (as the run will) and lists
    its jobs as 'bad data'; the sweep exits 1 (absent data stays exit 0: not on this machine)."""
    doc, rows, files = study(30)
    folder = make_folder(tmp_path / "toy", doc, rows, files)
    args = ["sweep", "--methods", "early", "--datasets", f"folder:{folder}", "--seeds", "0", "--preset", "tiny",
            "--set", "epochs=1", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-leaderboard"]
    rc, out, err = cli(capsys, *args, "--dry-run", "--json")
    assert rc == 0 and [r["state"] for r in json.loads(out)] == ["to run"]
    (folder / "files" / "s03.npy").write_bytes(b"\x93NUMPY truncated")   # present, unreadable
    from bench.jobs import load_data

    load_data.cache_clear()   # this process read the good data above (a new command would not have)
    rc, out, err = cli(capsys, *args, "--dry-run", "--json")
    plan = json.loads(out)
    assert rc == 0 and plan[0]["state"] == "bad data" and "s03.npy" in plan[0]["why"], plan
    rc, out, err = cli(capsys, *args)
    assert rc == 1, err
    assert "1 with bad data" in err and "bad data: early" in err and "s03.npy" in err


def test_a_folder_npy_file_that_would_run_code_is_refused_not_run(tmp_path, capsys):
    """A per-sample .npy holding a pickled object array (its unpickling calls os.system) is one
    problem naming the row and file; nothing runs, under `data check` and when loading."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    doc, rows, files = study(30)
    folder = make_folder(tmp_path / "planted", doc, rows, files)
    np.save(folder / "files/s03.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    rc, out, err = cli(capsys, "data", "check", f"folder:{folder}")
    assert rc == 1 and not (tmp_path / "pwned").exists()
    assert "table.csv row 4 (id 's03'), column 'scan_file': cannot read npy file 'files/s03.npy'" in out, out
    with pytest.raises(DatasetProblems):
        load_dataset(f"folder:{folder}")
    assert not (tmp_path / "pwned").exists()
