"""The command line: one-line errors without tracebacks, --json, help with examples, list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.docs import END, START, registry_tables

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_m4oe_on_flare22_without_data_names_every_missing_part(tmp_path):
    r = cli("run", "--method", "m4oe", "--dataset", "flare22", "--runs-dir", str(tmp_path / "runs"),
            env={"BENCH_DATA_ROOT": str(tmp_path / "data")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    msg = lines[0]
    assert msg.startswith("error: ")
    assert str(tmp_path / "data" / "FLARE22") in msg and "imagesTr/FLARE22_Tr_XXXX_0000.nii.gz" in msg
    assert "labelsTr/FLARE22_Tr_XXXX.nii.gz" in msg and "BENCH_DATA_ROOT" in msg
    assert not (tmp_path / "runs" / "runs.db").exists() or "m4oe" not in (tmp_path / "runs" / "runs.db").read_bytes().decode("latin1")


@pytest.mark.parametrize("args, expected", [
    (["run", "--method", "nope", "--dataset", "wdbc"], "unknown method 'nope'; choose one of: attention, early"),
    (["run", "--method", "early", "--dataset", "nope"], "unknown dataset 'nope'; choose one of: "),
    (["run", "--method", "early", "--dataset", "synthetic-pid:nope"], "has no variant 'nope'; choose one of: unique-m1"),
    (["run", "--method", "early", "--dataset", "wdbc", "--set", "lr=fast"], "--set lr=fast: expected a float value"),
    (["run", "--method", "early", "--dataset", "wdbc", "--set", "hidden"], "--set 'hidden': expected key=value"),
    (["sweep", "--suite", "nope"], "unknown suite 'nope'; choose one of: quick"),
    (["sweep", "--methods", "early"], "sweep needs --suite NAME, or both --methods and --datasets"),
])
def test_bad_input_gives_one_line_error(args, expected, tmp_path, capsys):
    code = main([*args, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("args", [["run", "--method", "early", "--dataset", "wdbc", "--threads", "0"],
                                  ["sweep", "--suite", "quick", "--threads", "-2"],
                                  ["verify", "claims/demo.yaml", "--threads", "0"]])
def test_threads_below_one_is_refused(args, tmp_path, capsys):
    """--threads 0 was stored in the job key while torch kept its default thread count."""
    with pytest.raises(SystemExit) as exc:
        main([*args, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--threads: expected a whole number >= 1" in err[0], err


def test_run_json_prints_one_record_line(tmp_path):
    r = cli("run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny", "--set", "epochs=3", "--json",
            "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["status"] == "ok" and rec["config"]["train"]["epochs"] == 3 and rec["config"]["preset"] == "tiny"
    assert 0.0 <= rec["metrics"]["test"]["diagnosis"]["accuracy"] <= 1.0
    assert rec["cost"]["params_total"] > 0


def test_presets_change_model_size(tmp_path, capsys):
    sizes = {}
    for preset in ("tiny", "small"):
        assert main(["run", "--method", "intermediate", "--dataset", "wdbc", "--preset", preset, "--set", "epochs=1",
                     "--json", "--runs-dir", str(tmp_path)]) == 0
        sizes[preset] = json.loads(capsys.readouterr().out)["cost"]["params_total"]
    assert sizes["tiny"] < sizes["small"]


@pytest.mark.parametrize("command", ["run", "sweep", "leaderboard", "list", "perf", "data", "cost"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_list_json_names_registries(capsys):
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"attention", "early", "late", "intermediate", "single"} <= {m["name"] for m in out["methods"]}
    assert {"wdbc", "digits-halves", "synthetic-pid", "flare22"} <= {d["name"] for d in out["datasets"]}
    assert "quick" in {s["name"] for s in out["suites"]}


def test_readme_tables_match_registries():
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == registry_tables().strip(), "README tables are stale: paste `python -m bench list --markdown`"


def test_leaderboard_on_empty_store_says_what_to_do(tmp_path, capsys):
    assert main(["leaderboard", "--runs-dir", str(tmp_path)]) == 0
    assert "bench sweep --suite quick" in capsys.readouterr().out


def test_data_check_lists_every_problem_and_exits_nonzero(tmp_path, capsys):
    import numpy as np

    from datasets.segmentation.nnunet import write_case, write_dataset_json

    root = tmp_path / "Dataset001_Toy"
    vol = np.random.default_rng(0).normal(size=(8, 8, 6)).astype(np.float32)
    lab = np.zeros((8, 8, 6), np.uint8)
    lab[2:6, 2:6, 1:5] = 1
    write_dataset_json(root, {0: "CT"}, {"background": 0, "liver": 1}, 3)
    for i in range(3):
        write_case(root, f"case_00{i}", [vol], lab, (1.0, 1.0, 2.0))
    assert main(["data", "check", str(root)]) == 0
    captured = capsys.readouterr()
    assert "no problems found" in captured.err
    assert "fingerprint (job key): 7:" in captured.out and "content: sha256:" in captured.out   # 3x2 files + json
    assert main(["data", "check", str(root), "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["problems"] == [] and clean["files"] == 7 and clean["content_sha256"].startswith("sha256:")
    from bench.identity import data_fingerprint

    assert clean["fingerprint"] == data_fingerprint(f"nnunet:{root}")   # what it calls the job key is the key's
    bad = lab.copy()
    bad[0, 0, 0] = 7  # not in dataset.json
    write_case(root, "case_001", [np.zeros((5, 8, 6), np.float32)], bad, (1.0, 1.0, 2.0))
    assert main(["data", "check", str(root), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert len(problems) >= 2 and all("case_001" in p for p in problems)
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_cost_reports_every_method_without_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["cost", "--method", "attention", "moe", "i2moe", "--dataset", "synthetic-pid:mixed", "--preset", "tiny",
                 "--steps", "2", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"attention", "moe", "i2moe"}
    for r in rows.values():
        assert r["params_total"] > 0 and r["flops_per_sample"] > 0 and r["step_time_s"] > 0
    assert rows["moe"]["params_active"] < rows["moe"]["params_total"]
    assert rows["i2moe"]["params_total"] > 3 * rows["attention"]["params_total"] // 2
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing stored
    assert main(["cost", "--method", "attention", "--dataset", "wdbc", "--steps", "0"]) == 2
