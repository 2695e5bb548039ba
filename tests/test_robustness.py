"""Robustness evaluation (bench/robustness.py, results/robustness.py): removed / noisy modalities
on the test split, stored as extra splits of the run, in the key, and shown by the leaderboard."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score

from bench.config import ROBUSTNESS_PROTOCOL, RunConfig
from bench.jobs import build_config
from bench.robustness import (
    Condition,
    applies,
    conditions,
    evaluate_robustness,
    modality_scale,
    parse_split,
    perturbed,
)
from bench.runner import run_job
from bench.store import RunStore, default_url
from bench.sweep import _why_stale
from datasets import DatasetSpec, ModalitySpec, TaskSpec
from datasets.prepare import build_data
from methods import parse_method

ROOT = Path(__file__).resolve().parents[1]


def test_split_names_round_trip():
    for cond in conditions(["m1", "m2"]):
        assert parse_split(cond.split) == cond
    assert [c.split for c in conditions(["a", "b"], (0.5,))] == [
        "test[-a]", "test[-b]", "test[noise:a@0.5]", "test[noise:b@0.5]"]
    assert parse_split("test") is None and parse_split("val") is None and parse_split("test[x]") is None
    assert Condition("m1", 1.0).column == "m1~1" and Condition("m1").column == "-m1"
    assert len(conditions(["m1", "m2"])) == 2 + 2 * len(ROBUSTNESS_PROTOCOL["noise_levels"])


def test_removal_touches_only_the_test_rows_of_one_modality(load_data):
    data = load_data("synthetic-pid:unique-m1")
    before = {m: x.clone() for m, x in data.inputs.items()}
    out = perturbed(data, Condition("m1"), seed=0)
    test = data.splits["test"]
    others = np.setdiff1d(np.arange(len(data)), test)
    assert not out.mask["m1"][test].any() and bool(out.mask["m1"][others].all() == data.mask["m1"][others].all())
    assert torch.equal(out.inputs["m1"][test], torch.zeros_like(out.inputs["m1"][test]))
    assert torch.equal(out.inputs["m1"][others], data.inputs["m1"][others])
    assert out.inputs["m2"] is data.inputs["m2"] and out.mask["m2"] is data.mask["m2"]
    for m, x in before.items():   # nothing written into the original
        assert torch.equal(x, data.inputs[m])
    assert bool(data.mask["m1"].all())


def test_noise_has_the_declared_scale_is_seeded_and_spares_absent_rows():
    rng = np.random.default_rng(0)
    n = 3000
    spec = DatasetSpec("toy", (ModalitySpec("a", "tabular", (4,)), ModalitySpec("b", "tabular", (2,))),
                       (TaskSpec("y", "binary", 2),), "seeded", "test")
    present = rng.random(n) > 0.2
    data = build_data(spec, {"a": rng.normal(size=(n, 4)) * 3, "b": rng.normal(size=(n, 2))},
                      {"y": rng.integers(0, 2, n)}, 0, mask={"a": present}).validate()
    test = data.splits["test"]
    scale = modality_scale(data, "a")
    train = data.splits["train"]
    independent = data.inputs["a"][train][data.mask["a"][train]].double().std().item()
    assert scale == pytest.approx(independent)
    for level in (0.5, 2.0):
        out = perturbed(data, Condition("a", level), seed=3)
        diff = (out.inputs["a"] - data.inputs["a"]).numpy()
        rows = test[present[test]]
        assert diff[rows].std() == pytest.approx(level * scale, rel=0.05)
        assert abs(diff[rows].mean()) < 0.05 * level * scale
        untouched = np.setdiff1d(np.arange(n), rows)   # train/val rows and absent test rows
        assert not diff[untouched].any()
        assert torch.equal(out.mask["a"], data.mask["a"])
    again = perturbed(data, Condition("a", 0.5), seed=3).inputs["a"]
    assert torch.equal(again, perturbed(data, Condition("a", 0.5), seed=3).inputs["a"])
    assert not torch.equal(again, perturbed(data, Condition("a", 0.5), seed=4).inputs["a"])
    d1 = perturbed(data, Condition("a", 1.0), seed=3).inputs["a"] - data.inputs["a"]
    d2 = perturbed(data, Condition("a", 2.0), seed=3).inputs["a"] - data.inputs["a"]
    rows = test[present[test]]
    corr = np.corrcoef(d1[rows].flatten().numpy(), d2[rows].flatten().numpy())[0, 1]
    assert abs(corr) < 0.1, "each level has its own draw"


def test_applies_to_multimodal_per_sample_data_only(load_data):
    assert applies(load_data("synthetic-pid:unique-m1"))
    assert not applies(SimpleNamespace(is_segmentation=True))
    rng = np.random.default_rng(0)
    spec = DatasetSpec("one", (ModalitySpec("a", "tabular", (3,)),), (TaskSpec("y", "binary", 2),), "seeded", "test")
    one = build_data(spec, {"a": rng.normal(size=(60, 3))}, {"y": rng.integers(0, 2, 60)}, 0)
    assert not applies(one)


@pytest.mark.parametrize("method", ["early", "late", "attention"])
def test_removed_modality_metric_matches_a_direct_forward(load_data, method):
    """The stored -m1 accuracy equals sklearn's accuracy of the model's own forward on a batch
    whose m1 is absent (mask False, zeros): computed here without bench.robustness."""
    data = load_data("synthetic-pid:unique-m1")
    cls, _ = parse_method(method)
    torch.manual_seed(0)
    model = cls(data.spec, build_config(method, "synthetic-pid:unique-m1").hparams).eval()
    got = evaluate_robustness(model, data, 64, torch.device("cpu"), seed=0)
    assert set(got) == {c.split for c in conditions(data.spec.modality_names)}
    batch = data.batch(data.splits["test"])
    batch["inputs"]["m1"] = torch.zeros_like(batch["inputs"]["m1"])
    batch["mask"]["m1"] = torch.zeros_like(batch["mask"]["m1"])
    with torch.no_grad():
        pred = model(batch).preds["label"].argmax(1).numpy()
    y = data.targets["label"][data.splits["test"]].numpy()
    assert got["test[-m1]"]["label"]["accuracy"] == pytest.approx(accuracy_score(y, pred))


def test_protocol_is_in_the_key_and_old_runs_are_stale():
    new = RunConfig("early", "wdbc", code_version="c1")
    old = RunConfig("early", "wdbc", code_version="c1", evaluation={})
    assert new.request_id() == old.request_id() and new.key() != old.key()
    assert new.config_id() != old.config_id()
    other = RunConfig("early", "wdbc", code_version="c1", evaluation={**ROBUSTNESS_PROTOCOL, "noise_levels": (1.0,)})
    assert other.key() != new.key()
    why = _why_stale({"code_version": "c1", "data": None, "evaluation": None}, new)
    assert "before the robustness evaluation" in why
    why = _why_stale({"code_version": "c1", "data": None,
                      "evaluation": json.loads(json.dumps(dict(other.evaluation)))}, new)
    assert "evaluation protocol changed" in why
    same = _why_stale({"code_version": "c1", "data": None, "evaluation": json.loads(json.dumps(new.evaluation))}, new)
    assert "evaluation" not in same


def _run(method: str, seed: int, runs: Path):
    cfg = build_config(method, "synthetic-pid:unique-m1", seed=seed, preset="tiny", sets={"epochs": "3"})
    return run_job(cfg, RunStore(default_url(runs)), runs, progress=False)


def test_runs_store_the_conditions_and_the_leaderboard_shows_them(tmp_path):
    runs = tmp_path / "runs"
    records = [_run(m, s, runs) for m in ("early", "late") for s in (0, 1)]
    for rec in records:
        assert rec.status == "ok"
        splits = set(rec.metrics)
        assert {c.split for c in conditions(["m1", "m2"])} <= splits
        assert rec.summary["robustness"]["missing_path"]
        assert rec.summary["robustness"]["noise_levels"] == list(ROBUSTNESS_PROTOCOL["noise_levels"])
    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs-dir", str(runs), "--robustness",
                          "--format", "csv"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert set(table["label"]) == {"early", "late"} and set(table["metric"]) == {"accuracy"}
    for method in ("early", "late"):   # recomputed from the stored records, without results/robustness.py
        mine = [r for r in records if r.method == method]
        for cond in ["-m1", "m2~2"]:
            split = "test[-m1]" if cond == "-m1" else "test[noise:m2@2]"
            vals = [r.metrics[split]["label"]["accuracy"] for r in mine]
            drops = [r.metrics[split]["label"]["accuracy"] - r.metrics["test"]["label"]["accuracy"] for r in mine]
            row = table[(table["label"] == method) & (table["condition"] == cond)].iloc[0]
            assert row["mean"] == pytest.approx(np.mean(vals)) and row["std"] == pytest.approx(np.std(vals, ddof=1))
            assert row["delta"] == pytest.approx(np.mean(drops)) and row["n"] == 2
    md = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs-dir", str(runs), "--robustness",
                         "--format", "md"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    head = next(line for line in md.splitlines() if line.startswith("| configuration"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[:5] == ["configuration", "n", "intact", "-m1", "-m2"] and "m1\\~0.5" in cols
    assert "early: zero-fill" in md and "late: dropped from the mean" in md
    # the terminal default: the same table as plain text, unescaped
    text = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs-dir", str(runs), "--robustness"],
                          capture_output=True, text=True, cwd=ROOT, check=True).stdout
    head = next(line for line in text.splitlines() if line.startswith("configuration"))
    assert re.split(r" {2,}", head.strip())[:5] == ["configuration", "n", "intact", "-m1", "-m2"]
    assert "m1~0.5" in head.split() and "\\" not in text and not text.startswith("###")
    assert "early: zero-fill" in text and "late: dropped from the mean" in text
    page = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs-dir", str(runs), "--format", "html",
                           "--no-tests"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "Robustness: missing and noisy modalities" in page and "Robustness: synthetic-pid:unique-m1" in page
    bad = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs-dir", str(runs), "--robustness",
                          "--format", "latex"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "md, csv, json or html" in bad.stderr


def test_bench_run_prints_the_robustness_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "early", "--dataset",
                          "synthetic-pid:unique-m1", "--preset", "tiny", "--set", "epochs=1", "--no-progress",
                          "--runs-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    line = next(x for x in out.splitlines() if "robustness" in x)
    assert line.strip().startswith("robustness label (accuracy): intact ")
    assert [c.split()[0] for c in line.split(": ", 1)[1].split(" | ")] == [
        "intact", "-m1", "-m2", "m1~0.5", "m1~1", "m1~2", "m2~0.5", "m2~1", "m2~2"]
