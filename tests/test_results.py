"""Results: tidy frame from the store, grouping by configuration, mean ± std (ddof 1) summaries, leaderboards."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.catalogue import build_catalogue
from bench.record import RunRecord
from bench.store import RunStore, default_url
from results import leaderboard, load_results, md_escape, render, runs_frame, summarize, to_markdown


def _rec(key, method, seed, acc, status="ok", config_id=None, label_fields=None, request_id=None, created="2026-01-01",
         code="x", dataset="toy"):
    metrics = {"test": {"label": {"accuracy": acc, "ece": 0.1, "auroc_a": 0.5}},
               "val": {"label": {"accuracy": acc - 0.1, "ece": 0.2, "auroc_a": 0.5}}}
    fields = label_fields or {}
    return RunRecord(key=key, method=method, dataset=dataset, seed=seed, split_seed=0, preset="tiny", code_version=code,
                     config={}, status=status, metrics=metrics if status == "ok" else {},
                     config_id=config_id or f"cfg-{method}", request_id=request_id or f"req-{key}",
                     label=method, label_fields=fields, created_at=created,
                     catalogue=build_catalogue({"label": "binary"}, metrics) if status == "ok" else {})


@pytest.fixture
def store(tmp_path):
    s = RunStore(default_url(tmp_path))
    for i, acc in enumerate([0.80, 0.90, 0.85]):
        s.put(_rec(f"a{i}", "alpha", i, acc))
    for i, acc in enumerate([0.60, 0.70]):
        s.put(_rec(f"b{i}", "beta", i, acc))
    s.put(_rec("c0", "gamma", 0, 0.0, status="failed"))
    return s


def _summary(store, split="test"):
    return summarize(load_results(store, headline_only=True), split)[0]


def test_runs_frame_is_tidy_and_ignores_failed(store):
    f = runs_frame(store)
    assert set(f.columns) >= {"key", "config_id", "label", "method", "dataset", "seed", "split", "task", "metric", "value"}
    assert set(f["method"]) == {"alpha", "beta"}
    assert len(f) == 5 * 2 * 3  # runs x splits x metrics
    headline = runs_frame(store, split="test", headline_only=True)
    assert set(headline["metric"]) == {"accuracy", "ece"} and set(headline["split"]) == {"test"}


def test_summary_mean_and_sample_std_against_pandas_and_numpy(store):
    s = _summary(store).set_index(["label", "metric"])
    assert s.loc[("alpha", "accuracy"), "mean"] == pytest.approx(0.85)
    assert s.loc[("alpha", "accuracy"), "std"] == pytest.approx(np.std([0.80, 0.90, 0.85], ddof=1))
    assert s.loc[("beta", "accuracy"), "std"] == pytest.approx(math.sqrt(0.005))
    assert s.loc[("alpha", "accuracy"), "n"] == 3 and s.loc[("beta", "accuracy"), "n"] == 2
    val = _summary(store, "val").set_index(["label", "metric"])
    assert val.loc[("alpha", "accuracy"), "mean"] == pytest.approx(0.75)


def test_markdown_bolds_best_respecting_direction(store):
    md = leaderboard(load_results(store, headline_only=True))
    alpha = next(line for line in md.splitlines() if line.startswith("| alpha"))
    beta = next(line for line in md.splitlines() if line.startswith("| beta"))
    assert "**0.850 ± 0.050**" in alpha and "**" not in beta.split("|")[3]
    assert "accuracy ↑" in md and "ece ↓" in md and "ddof=1" in md


def test_csv_round_trips(store):
    summary, commons = summarize(load_results(store, headline_only=True))
    back = pd.read_csv(io.StringIO(render(summary, "csv")))
    assert list(back.columns) == ["dataset", "task", "metric", "config_id", "label", "method", "mean", "std", "n",
                                  "higher", "budget"]
    assert set(back["budget"]) == {"defaults"}
    assert len(back) == 4
    with pytest.raises(ValueError, match="unknown leaderboard format"):
        render(summary, "xml")


def test_rows_are_configurations_and_n_counts_distinct_seeds(tmp_path):
    s = RunStore(default_url(tmp_path))
    for seed in (0, 1):
        s.put(_rec(f"e2-{seed}", "early", seed, 0.7 + seed / 10, config_id="e2", label_fields={"epochs": 2}))
    s.put(_rec("e3-0", "early", 0, 0.9, config_id="e3", label_fields={"epochs": 3}))
    summary = _summary(s)
    acc = summary[summary.metric == "accuracy"].set_index("label")
    assert sorted(acc.index) == ["early[epochs=2]", "early[epochs=3]"]
    assert acc.loc["early[epochs=2]", "n"] == 2 and acc.loc["early[epochs=3]", "n"] == 1
    assert acc.loc["early[epochs=2]", "mean"] == pytest.approx(0.75)


def test_labels_show_only_what_differs_and_name_what_is_shared(tmp_path):
    s = RunStore(default_url(tmp_path))
    s.put(_rec("a", "early", 0, 0.7, config_id="a", label_fields={"epochs": 20, "patience": 5}))
    s.put(_rec("b", "late", 0, 0.8, config_id="b", label_fields={"epochs": 20, "patience": 5, "weights": "learned"}))
    s.put(_rec("c", "late", 0, 0.8, config_id="c", label_fields={"epochs": 20, "patience": 5}, code="y"))
    s.put(_rec("d", "late", 0, 0.8, config_id="d", label_fields={"epochs": 20, "patience": 5}, code="z"))
    summary, commons = summarize(load_results(s, headline_only=True))
    assert set(summary["label"]) == {"early", "late[weights=learned]", "late (code y)", "late (code z)"}
    assert commons["toy"] == {"epochs": 20, "patience": 5}
    assert "Shared by every row: epochs=20, patience=5" in to_markdown(summary, commons)


def test_only_the_newest_run_of_a_request_is_used_unless_asked(tmp_path):
    s = RunStore(default_url(tmp_path))
    s.put(_rec("old", "early", 0, 0.5, config_id="old-code", request_id="r", created="2026-01-01", code="v1"))
    s.put(_rec("new", "early", 0, 0.9, config_id="new-code", request_id="r", created="2026-02-01", code="v2"))
    latest = _summary(s)
    assert set(latest["config_id"]) == {"new-code"}
    both = summarize(load_results(s, headline_only=True, latest=False))[0]
    assert set(both["label"]) == {"early (code v1)", "early (code v2)"}


def test_user_strings_cannot_break_the_markdown_table(tmp_path):
    s = RunStore(default_url(tmp_path))
    evil = "x | **pwn** | 9.999 |"
    s.put(_rec("a", "early", 0, 0.7, config_id="a", label_fields={"image_encoder": evil}))
    s.put(_rec("b", "early", 0, 0.8, config_id="b", label_fields={"image_encoder": "cnn"}))
    md = leaderboard(load_results(s, headline_only=True))
    table = [line for line in md.splitlines() if line.startswith("|")]
    cells = [len(line.replace("\\|", "").split("|")) for line in table]
    assert len(set(cells)) == 1, md   # every row has the header's column count
    assert "**pwn**" not in md and md_escape(evil) in md
    assert md_escape("a|b*c_[d]`e") == "a\\|b\\*c\\_\\[d\\]\\`e"


def test_results_never_import_torch(tmp_path):
    """The leaderboard reads the store alone: no torch, no bench.metrics, no datasets."""
    s = RunStore(default_url(tmp_path))
    s.put(_rec("a", "early", 0, 0.7))
    code = ("import sys; from bench.cli import main; rc = main(['leaderboard', '--runs-dir', %r]); "
            "bad = [m for m in ('torch', 'bench.metrics', 'datasets', 'sklearn') if m in sys.modules]; "
            "print(rc, bad)") % str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_runs_with_different_hparams_are_not_averaged_together(tmp_path):
    from bench.runner import build_config, run_job

    store = RunStore(default_url(tmp_path))
    train = {"epochs": 1, "patience": 0}
    run_job(build_config("moe", "wdbc", preset="tiny", train=train), store, tmp_path, progress=False)
    run_job(build_config("moe", "wdbc", preset="tiny", train=train, sets={"top_k": "2"}), store, tmp_path, progress=False)
    assert set(_summary(store)["label"]) == {"moe", "moe[top_k=2]"}
    stored = {r.label for r in store.records()}
    assert stored == {"moe@tiny[epochs=1,patience=0]", "moe@tiny[epochs=1,patience=0,top_k=2]"}
    assert json.loads(leaderboard(load_results(store, headline_only=True), "json"))[0]["n"] == 1


def test_perf_leaderboard_prints_figures(capsys):
    from bench.cli import main

    assert main(["perf", "leaderboard", "--runs", "40", "--reps", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == 40 and out["leaderboard_s"]["median"] > 0 and out["empty_store_s"]["min"] > 0
    assert out["peak_rss_mb"] > 10


def test_the_csv_does_not_depend_on_the_order_runs_were_stored(tmp_path):
    """Workers finish in any order; the same runs must give the same bytes (row order and sums)."""
    runs = [_rec(f"{m}{i}", m, i, acc) for m, accs in (("zeta", [0.1, 0.2, 0.3]), ("alpha", [0.3, 0.2, 0.1]))
            for i, acc in enumerate(accs)]
    texts = []
    for name, order in (("fwd", runs), ("rev", runs[::-1]), ("mixed", runs[1::2] + runs[::2])):
        s = RunStore(default_url(tmp_path / name))
        for r in order:
            s.put(r)
        texts.append(leaderboard(load_results(s), "csv"))
    assert texts[0] == texts[1] == texts[2]


def test_a_tuned_row_shows_its_budget_and_unequal_budgets_are_flagged(tmp_path):
    s = RunStore(default_url(tmp_path))
    for i in range(2):
        s.put(_rec(f"t8-{i}", "alpha", i, 0.8, config_id="c8", label_fields={"tuned_trials": 8}))
        s.put(_rec(f"t4-{i}", "beta", i, 0.7, config_id="c4", label_fields={"tuned_trials": 4}))
    md = leaderboard(load_results(s, headline_only=True))
    assert "| budget" in md and "alpha \\(tuned\\)" in md and "8 trials" in md and "4 trials" in md
    assert "Unequal tuning budgets" in md
    s2 = RunStore(default_url(tmp_path / "equal"))
    for i in range(2):
        s2.put(_rec(f"a{i}", "alpha", i, 0.8, config_id="ca", label_fields={"tuned_trials": 8}))
        s2.put(_rec(f"b{i}", "beta", i, 0.7, config_id="cb", label_fields={"tuned_trials": 8}))
    md2 = leaderboard(load_results(s2, headline_only=True))
    assert "| budget" in md2 and "Unequal" not in md2
    s3 = RunStore(default_url(tmp_path / "untuned"))
    for i in range(2):
        s3.put(_rec(f"a{i}", "alpha", i, 0.8, config_id="ca"))
    assert "budget" not in leaderboard(load_results(s3, headline_only=True))   # no tuned row: no column


def test_configurations_alike_but_for_a_key_field_are_labelled_by_it(tmp_path):
    """Two configurations that differ only in a field the label leaves out (threads, data) are
    labelled by that field, `late[threads=2]`, not by a config id prefix (issue: everyday use)."""
    s = RunStore(default_url(tmp_path))
    for threads, cid in ((1, "cfg-t1"), (2, "cfg-t2")):
        for seed in (0, 1):
            r = _rec(f"{cid}-{seed}", "late", seed, 0.8 + 0.01 * seed + 0.001 * threads, config_id=cid,
                     label_fields={"epochs": 3})
            r.config = {"threads": threads, "data_fingerprint": "1:abc", "train": {"epochs": 3}}
            s.put(r)
    r = _rec("other-0", "early", 0, 0.7, config_id="cfg-early")
    r.config = {"threads": 1, "data_fingerprint": "1:abc"}
    s.put(r)
    labels = set(summarize(load_results(s))[0]["label"])
    assert {"late[epochs=3,threads=1]", "late[epochs=3,threads=2]", "early"} <= labels, labels
    # the data fingerprint, cut to a readable prefix, when that is what differs
    for cid, fp in (("cfg-d1", "3:0123456789abcdef"), ("cfg-d2", "3:fedcba9876543210")):
        r = _rec(f"{cid}-0", "mid", 0, 0.75, config_id=cid)
        r.config = {"threads": 1, "data_fingerprint": fp}
        s.put(r)
    labels = set(summarize(load_results(s))[0]["label"])
    assert {"mid[data=3:0123456789]", "mid[data=3:fedcba9876]"} <= labels, labels
