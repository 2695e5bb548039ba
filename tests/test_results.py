"""Results: tidy frame from the store, mean ± std (ddof 1) summaries, Markdown/CSV leaderboards."""
from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from bench.record import RunRecord
from bench.store import RunStore, default_url
from results import render, runs_frame, summarize, to_markdown


def _rec(key, method, seed, acc, mae=None, status="ok"):
    metrics = {"test": {"label": {"accuracy": acc, "ece": 0.1}}, "val": {"label": {"accuracy": acc - 0.1, "ece": 0.2}}}
    return RunRecord(key=key, method=method, dataset="toy", seed=seed, split_seed=0, preset="tiny", code_version="x",
                     config={}, status=status, metrics=metrics if status == "ok" else {})


@pytest.fixture
def store(tmp_path):
    s = RunStore(default_url(tmp_path))
    for i, acc in enumerate([0.80, 0.90, 0.85]):
        s.put(_rec(f"a{i}", "alpha", i, acc))
    for i, acc in enumerate([0.60, 0.70]):
        s.put(_rec(f"b{i}", "beta", i, acc))
    s.put(_rec("c0", "gamma", 0, 0.0, status="failed"))
    return s


def test_runs_frame_is_tidy_and_ignores_failed(store):
    f = runs_frame(store)
    assert set(f.columns) >= {"key", "method", "dataset", "seed", "split", "task", "metric", "value"}
    assert set(f["method"]) == {"alpha", "beta"}
    assert len(f) == 5 * 2 * 2  # runs x splits x metrics


def test_summary_mean_and_sample_std(store):
    s = summarize(runs_frame(store)).set_index(["method", "metric"])
    assert s.loc[("alpha", "accuracy"), "mean"] == pytest.approx(0.85)
    assert s.loc[("alpha", "accuracy"), "std"] == pytest.approx(0.05)  # sample std of .80 .90 .85 (ddof 1)
    assert s.loc[("beta", "accuracy"), "std"] == pytest.approx(math.sqrt(0.005))
    assert s.loc[("alpha", "accuracy"), "n"] == 3 and s.loc[("beta", "accuracy"), "n"] == 2
    val = summarize(runs_frame(store), split="val").set_index(["method", "metric"])
    assert val.loc[("alpha", "accuracy"), "mean"] == pytest.approx(0.75)


def test_markdown_bolds_best_respecting_direction(store):
    md = to_markdown(summarize(runs_frame(store)))
    alpha = next(line for line in md.splitlines() if line.startswith("| alpha"))
    beta = next(line for line in md.splitlines() if line.startswith("| beta"))
    assert "**0.850 ± 0.050**" in alpha and "**" not in beta.split("|")[2]
    assert "accuracy ↑" in md and "ece ↓" in md and "ddof=1" in md


def test_csv_round_trips(store):
    text = render(summarize(runs_frame(store)), "csv")
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == ["dataset", "task", "metric", "method", "mean", "std", "n"]
    assert len(back) == 4
    with pytest.raises(ValueError, match="unknown leaderboard format"):
        render(summarize(runs_frame(store)), "xml")


def test_runs_with_different_hparams_are_not_averaged_together(tmp_path):
    from bench.runner import build_config, run_job
    from bench.store import RunStore, default_url
    from results import runs_frame

    store = RunStore(default_url(tmp_path))
    train = {"epochs": 1, "patience": 0}
    run_job(build_config("moe", "wdbc", preset="tiny", train=train), store, tmp_path, progress=False)
    run_job(build_config("moe", "wdbc", preset="tiny", train=train, sets={"top_k": "2"}), store, tmp_path, progress=False)
    assert set(runs_frame(store)["method"]) == {"moe", "moe[top_k=2]"}
