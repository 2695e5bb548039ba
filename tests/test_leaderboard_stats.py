"""`bench leaderboard` with its statistics: † marks in every format, worse_than_best / p_adjusted /
test and CI columns in CSV/JSON, the best single modality chosen on validation, --control
(Friedman + Wilcoxon-Holm over datasets), and --no-tests giving the plain leaderboard."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from bench.catalogue import build_catalogue
from bench.cli import main
from bench.record import RunRecord
from bench.store import RunStore, default_url
from results import load_results, summarize, to_markdown
from results.latex import MARK
from results.leaderboard import SUMMARY_COLUMNS, md_escape, to_text
from results.significance import SIGNIFICANCE_COLUMNS
from results.stats import friedman_nemenyi, wilcoxon_holm_vs_control

N_CASES = 200


def _run(key, method, seed, correct, dataset="toy", val_acc=None, config_id=None):
    """A finished binary run whose test accuracy is the mean of its per-case ``correct`` (returned
    with the per-case table, columns as bench.metrics writes them)."""
    correct = np.asarray(correct, dtype=np.float64)
    acc = float(correct.mean())
    metrics = {"test": {"label": {"accuracy": acc, "ece": 0.05 + 0.01 * seed}},
               "val": {"label": {"accuracy": acc - 0.05 if val_acc is None else val_acc, "ece": 0.1}}}
    rec = RunRecord(key=key, method=method, dataset=dataset, seed=seed, split_seed=0, preset="tiny", code_version="x",
                    config={}, status="ok", metrics=metrics, config_id=config_id or f"{dataset}-{method}",
                    request_id=f"req-{key}", label=method, label_fields={}, created_at="2026-01-01",
                    catalogue=build_catalogue({"label": "binary"}, metrics))
    target = np.arange(len(correct)) % 2
    pred = np.where(correct == 1, target, 1 - target)
    cases = pd.DataFrame({"case_id": [f"c{j}" for j in range(len(correct))], "target": target.astype(float),
                          "pred": pred.astype(float), "correct": correct, "loss": 1.0 - correct * 0.5,
                          "task": "label"})
    return rec, cases


def _three(rng, n=N_CASES):
    """Per-case correctness of a best configuration (~90%), one that differs from it on 2 cases
    (tied) and a clearly worse one (~60%)."""
    best = (rng.random(n) < 0.9).astype(float)
    tied = best.copy()
    tied[:2] = 1 - tied[:2]
    worse = best.copy()
    worse[rng.random(n) < 0.35] = 0.0
    return best, tied, worse


@pytest.fixture
def runs(tmp_path):
    """One dataset, three configurations (best, tied, worse) over 3 seeds with per-case data."""
    store = RunStore(default_url(tmp_path / "runs"))
    rng = np.random.default_rng(0)
    for seed in range(3):
        best, tied, worse = _three(rng)
        for method, correct in (("best", best), ("tied", tied), ("worse", worse)):
            store.put(*_run(f"{method}{seed}", method, seed, correct))
    return str(tmp_path / "runs")


def _cli(capsys, *args) -> str:
    assert main(["leaderboard", *args]) == 0
    return capsys.readouterr().out


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_a_clearly_worse_configuration_is_marked_in_every_format_and_a_tied_one_is_not(runs, capsys):
    md = _cli(capsys, "--runs-dir", runs, "--format", "md")
    assert "†" in _row(md, "| worse").split("|")[3] and "†" not in _row(md, "| tied")
    assert "†" not in _row(md, "| best")
    footnote = _row(md, "† ")
    assert md_escape("paired seeds + cases") in footnote and "Shaffer" in footnote and md_escape("α = 0.05") in footnote
    # per column the test and what n counts (ece: no per-case probabilities in these tables, no case term)
    assert md_escape("accuracy (n = 3 seeds × 200 cases)") in footnote and md_escape("ece (n = 3 seeds)") in footnote

    tex = _cli(capsys, "--runs-dir", runs, "--format", "latex")
    assert MARK in _row(tex, "worse &") and MARK not in _row(tex, "tied &") and "paired seeds + cases" in tex

    page = _cli(capsys, "--runs-dir", runs, "--format", "html")
    rows = {r.split("</td>")[0]: r for r in page.split("<tr><td>")[1:]}
    assert 'class="mark"' in rows["worse"] and 'class="mark"' not in rows["tied"]
    assert "vs best: " in rows["worse"] and "Holm p = " in rows["worse"]   # each cell's comparison as a tooltip

    csv = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv")))
    assert list(csv.columns) == SUMMARY_COLUMNS + ["ci_low", "ci_high", "ci_over"] + SIGNIFICANCE_COLUMNS
    acc = csv[csv["metric"] == "accuracy"].set_index("label")
    assert acc.loc["worse", "worse_than_best"] and acc.loc["worse", "p_adjusted"] < 0.05
    assert not acc.loc["tied", "worse_than_best"] and acc.loc["tied", "p_adjusted"] > 0.05
    assert acc.loc["worse", "test"] == acc.loc["tied", "test"] == "paired seeds + cases"
    assert acc.loc["best", "test"] == "best" and np.isnan(acc.loc["best", "p_adjusted"])
    # estimate, CI and p of every comparison, on the metric itself: the difference of the means
    worse = acc.loc["worse"]
    assert worse["diff_vs_best"] == pytest.approx(worse["mean"] - acc.loc["best", "mean"])
    assert worse["diff_ci_low"] < worse["diff_vs_best"] < worse["diff_ci_high"] < 0 and worse["p"] < 0.05
    assert (worse["n_seeds"], worse["n_cases"], worse["pairs"]) == (3, 200, 3)
    js = json.loads(_cli(capsys, "--runs-dir", runs, "--format", "json"))
    assert {(r["label"], r["worse_than_best"]) for r in js if r["metric"] == "accuracy"} == {
        ("best", False), ("tied", False), ("worse", True)}
    cell = next(r for r in js if r["metric"] == "accuracy" and r["label"] == "worse")
    assert cell["test"] == "paired seeds + cases" and cell["p"] < 0.05 and cell["diff_ci_high"] < 0

    below = f"{csv['p_adjusted'].min() / 2:.3g}"   # --alpha reaches the tests
    strict = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv", "--alpha", below)))
    assert not strict["worse_than_best"].any()


def test_ci_columns_and_the_statement_says_what_they_are_over(runs, tmp_path, capsys):
    csv = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv")))
    over = dict(zip(csv["metric"], csv["ci_over"]))
    assert over == {"accuracy": "seeds+cases", "ece": "seeds"}   # ece has no per-case probabilities here
    assert (csv["ci_low"] <= csv["mean"]).all() and (csv["mean"] <= csv["ci_high"]).all()

    md = _cli(capsys, "--runs-dir", runs, "--ci", "--metric", "accuracy", "--format", "md")
    statement = "95% CI: t over seeds with the test-sample term from the per-case tables"
    assert md_escape(statement) + "." in md
    assert "mean [95% CI]" in md and "±" not in _row(md, "| best")
    row = csv[(csv["metric"] == "accuracy") & (csv["label"] == "best")].iloc[0]
    assert f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in _row(md, "| best")
    both = _cli(capsys, "--runs-dir", runs, "--ci", "--format", "md")
    assert md_escape("the per-case tables (accuracy); t over seeds (no per-case data) (ece)") in both
    tex = _cli(capsys, "--runs-dir", runs, "--ci", "--format", "latex", "--metric", "accuracy")
    assert "95\\% CI: t over seeds with the test-{}sample term" in tex
    page = _cli(capsys, "--runs-dir", runs, "--ci", "--format", "html", "--metric", "accuracy")
    assert statement in page

    # no per-case data: the interval is over seeds, and the table says so
    store = RunStore(default_url(tmp_path / "noCases"))
    rng = np.random.default_rng(1)
    for seed in range(3):
        for method, correct in zip(("best", "tied", "worse"), _three(rng)):
            store.put(_run(f"{method}{seed}", method, seed, correct)[0])
    md = _cli(capsys, "--runs-dir", str(tmp_path / "noCases"), "--ci", "--metric", "accuracy", "--format", "md")
    assert md_escape("95% CI: t over seeds (no per-case data)") + "." in md and "per-case tables" not in md.split("†")[0]


def test_the_best_single_modality_is_chosen_on_validation(tmp_path, capsys):
    store = RunStore(default_url(tmp_path / "runs"))
    rng = np.random.default_rng(2)
    for seed in range(3):
        best, _, worse = _three(rng)
        store.put(*_run(f"f{seed}", "early", seed, best))
        # single:a is best on test but worse on validation; single:b is chosen
        store.put(*_run(f"a{seed}", "single:a", seed, best, val_acc=0.60))
        store.put(*_run(f"b{seed}", "single:b", seed, worse, val_acc=0.80))
        store.put(*_run(f"c{seed}", "single:c", seed, worse, val_acc=0.70))
    runs = str(tmp_path / "runs")
    md = _cli(capsys, "--runs-dir", runs, "--format", "md")
    labels = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][1:]
    assert sorted(labels) == [md_escape("best single (b)"), "early"], md
    assert "single:a" not in md and "single:c" not in md
    csv = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv", "--no-tests")))
    assert set(csv["label"]) == {"early", "best single (b)"} and set(csv["method"]) == {"early", "single:b"}
    every = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv", "--all-singles")))
    assert set(every["label"]) == {"early", "single:a", "single:b", "single:c"}
    # lower-is-better primary metrics are chosen in their direction too
    from results.leaderboard import choose_best_singles

    res = load_results(RunStore(default_url(runs)), headline_only=True)
    assert choose_best_singles(res) == {"toy": "toy-single:b"}
    res.frame.loc[res.frame["metric"] == "accuracy", "higher"] = False
    assert choose_best_singles(res) == {"toy": "toy-single:a"}


def _multi_dataset_store(path, datasets=("d1", "d2", "d3", "d4", "d5", "d6")) -> str:
    store = RunStore(default_url(path))
    rng = np.random.default_rng(3)
    for d_i, dataset in enumerate(datasets):
        for seed in range(2):
            base = (rng.random(60) < 0.7 + 0.03 * d_i).astype(float)
            for m_i, method in enumerate(("late", "early", "attention", "moe")):
                correct = base.copy()
                correct[rng.random(60) < 0.05 * m_i + 0.02 * ((d_i + m_i) % 3)] = 0.0
                store.put(*_run(f"{dataset}{method}{seed}", method, seed, correct, dataset=dataset))
            store.put(*_run(f"{dataset}sa{seed}", "single:a", seed, base * (rng.random(60) < 0.8), dataset=dataset,
                            val_acc=0.5 + 0.1 * (d_i % 2)))
            store.put(*_run(f"{dataset}sb{seed}", "single:b", seed, base * (rng.random(60) < 0.7), dataset=dataset,
                            val_acc=0.55))
    return str(path)


def test_control_friedman_and_holm_match_results_stats(tmp_path, capsys):
    runs = _multi_dataset_store(tmp_path / "runs")
    md = _cli(capsys, "--runs-dir", runs, "--control", "late", "--format", "md")
    summary = summarize(load_results(RunStore(default_url(runs)), headline_only=True, split="test"))[0]
    acc = summary[summary["metric"] == "accuracy"]
    # the best single of each dataset (chosen on validation) is one column, "best single"
    chosen = {"d1": "single:b", "d2": "single:a", "d3": "single:b", "d4": "single:a", "d5": "single:b",
              "d6": "single:a"}
    keep = ~acc["method"].str.startswith("single:") | np.array([chosen[d] == m for d, m in zip(acc["dataset"], acc["method"])])
    acc = acc[keep].assign(label=lambda f: f["label"].where(~f["method"].str.startswith("single:"), "best single"))
    scores = acc.pivot_table(index="dataset", columns="label", values="mean")
    fried = friedman_nemenyi(scores, higher_is_better=True)
    vs = wilcoxon_holm_vs_control(scores, "late").set_index("method")
    section = md[md.index("### Against the control late"):]
    assert f"χ²\\_F = {fried.statistic:.3f}" in section and f"Nemenyi CD = {fried.cd:.3f}" in section
    assert f"over {len(scores)} datasets, {scores.shape[1]} configurations" in section
    for label in scores.columns:
        row = _row(section, f"| {md_escape(label)}")
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == f"{fried.ranks[label]:.2f}"
        if label == "late":
            assert "(control)" in cells[0] and cells[2] == "—"
            continue
        p, p_holm = vs.loc[label, "pvalue"], vs.loc[label, "p_holm"]
        assert cells[2] == f"{p:.3g}" and cells[3].split()[0] == f"{p_holm:.3g}"
        assert f"r = {vs.loc[label, 'rank_biserial']:+.2f}" in cells[4]
    tex = _cli(capsys, "--runs-dir", runs, "--control", "late", "--format", "latex")
    assert tex.count("\\begin{table}") == 6 + 1 and "Holm-adjusted $p$" in tex   # 6 dataset tables + control
    if shutil.which("pdflatex"):   # the control table, CIs and marks compile (tests/test_outputs.py: the rest)
        for layout in ("tables", "grouped"):
            path = tmp_path / f"{layout}.tex"
            path.write_text(_cli(capsys, "--runs-dir", runs, "--control", "late", "--format", "latex", "--ci",
                                 "--layout", layout))
            done = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", path.name],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-2000:]
    page = _cli(capsys, "--runs-dir", runs, "--control", "late", "--format", "html")
    assert "Against the control late" in page and "Critical difference diagram: accuracy" in page


def test_control_needs_two_datasets_and_a_known_control(tmp_path, capsys):
    runs = _multi_dataset_store(tmp_path / "runs", datasets=("d1",))
    md = _cli(capsys, "--runs-dir", runs, "--control", "late")
    last = md.strip().splitlines()[-1]
    assert "need ≥ 2 datasets" in last and "d1" in last and "Against the control" not in md
    runs2 = _multi_dataset_store(tmp_path / "runs2", datasets=("d1", "d2"))
    assert "is no configuration of the leaderboard" in _cli(capsys, "--runs-dir", runs2, "--control", "nope")


def test_no_tests_gives_the_plain_leaderboard(runs, capsys):
    plain = summarize(load_results(RunStore(default_url(runs)), headline_only=True, split="test"))
    assert _cli(capsys, "--runs-dir", runs, "--no-tests", "--format", "md") == to_markdown(*plain) + "\n"
    assert _cli(capsys, "--runs-dir", runs, "--no-tests") == to_text(*plain) + "\n"   # the terminal default
    assert "†" not in _cli(capsys, "--runs-dir", runs, "--no-tests")
    csv = pd.read_csv(io.StringIO(_cli(capsys, "--runs-dir", runs, "--format", "csv", "--no-tests")))
    assert list(csv.columns) == SUMMARY_COLUMNS


def test_the_csv_with_tests_and_cis_is_the_same_whatever_order_runs_were_stored(tmp_path, capsys):
    rng = np.random.default_rng(4)
    items = []
    for seed in range(3):
        for method, correct in zip(("best", "tied", "worse"), _three(rng, 80)):
            items.append(_run(f"{method}{seed}", method, seed, correct))
    texts = []
    for name, order in (("fwd", items), ("rev", items[::-1])):
        store = RunStore(default_url(tmp_path / name))
        for rec, cases in order:
            store.put(rec, cases)
        texts.append(_cli(capsys, "--runs-dir", str(tmp_path / name), "--format", "csv"))
    assert texts[0] == texts[1] and "ci_over" in texts[0]


def _md_cell(cell: str) -> str:
    """A Markdown cell as the plain-text board writes it: no escapes, the bold best as ``x*``."""
    cell = re.sub(r"\\(.)", r"\1", cell.strip())
    return cell[2:-2] + "*" if cell.startswith("**") and cell.endswith("**") else cell


def _text_rows(text: str) -> list[list[str]]:
    """The rows of every plain-text table (after its dashed header rule, up to the blank line)."""
    rows, inside = [], False
    for line in text.splitlines():
        if re.fullmatch(r"-+( +-+)*", line):
            inside = True
        elif not line.strip():
            inside = False
        elif inside:
            rows.append(re.split(r" {2,}", line.strip()))
    return rows


def test_the_terminal_default_is_plain_text_with_the_content_of_md(runs, capsys):
    text = _cli(capsys, "--runs-dir", runs)
    assert text == _cli(capsys, "--runs-dir", runs, "--format", "text")
    md = _cli(capsys, "--runs-dir", runs, "--format", "md")
    assert "###" not in text and "|" not in text and "\\" not in text and "**" not in text and "`" not in text
    assert "toy — task label (test, mean ± std over 3 seeds, ddof=1; best marked *; n = distinct seeds)" in text
    head = next(line for line in text.splitlines() if line.startswith("configuration"))
    assert re.split(r" {2,}", head) == ["configuration", "n", "accuracy ↑", "ece ↓"]
    # the same rows and cells as md, the † marks and the footnote unescaped
    md_rows = [[_md_cell(c) for c in line.strip().strip("|").split("|")] for line in md.splitlines()
               if line.startswith("| ") and not line.startswith("| configuration")]
    assert _text_rows(text) == md_rows and len(md_rows) == 3
    rows = {r[0]: r for r in _text_rows(text)}
    assert rows["worse"][2].endswith("†") and not rows["tied"][2].endswith("†") and rows["best"][2].endswith("*")
    footnote = _row(text, "† ")
    assert _row(md, "† ") == "† " + md_escape(footnote[2:])
    assert "paired seeds + cases" in footnote and "(n = 3 seeds × 200 cases)" in footnote and "α = 0.05" in footnote


def test_task_tables_come_before_interpretation_tables(tmp_path, capsys):
    store = RunStore(default_url(tmp_path / "runs"))
    rng = np.random.default_rng(5)
    for seed in range(2):
        for method, correct in zip(("best", "tied", "worse"), _three(rng, 40)):
            rec, cases = _run(f"{method}{seed}", method, seed, correct)
            rec.metrics["test"]["interpretation"] = {"weight_a": 0.3 + 0.1 * seed}
            rec.catalogue = build_catalogue({"label": "binary"}, rec.metrics)
            store.put(rec, cases)
    runs = str(tmp_path / "runs")
    for fmt, label, interpretation in (("text", "task label (", "task interpretation ("),
                                       ("md", "task `label`", "task `interpretation`")):
        out = _cli(capsys, "--runs-dir", runs, "--format", fmt)
        assert label in out and interpretation in out and out.index(label) < out.index(interpretation), out
    tex = _cli(capsys, "--runs-dir", runs, "--format", "latex")
    assert tex.index("accuracy") < tex.index("weight")


def test_the_sweep_prints_the_board_bench_leaderboard_prints(tmp_path, capsys):
    """The board that closes a sweep is results.pipeline's, as bench leaderboard's: the best single
    chosen on validation, the † tests and their footnote, the same bytes for the same store."""
    runs = str(tmp_path / "runs")
    sweep = ["sweep", "--methods", "early", "late", "single", "--datasets", "wdbc", "--preset", "tiny", "--seeds",
             "0", "1", "2", "--set", "epochs=2", "--workers", "1", "--no-progress", "--runs-dir", runs]
    assert main(sweep) == 0
    board = capsys.readouterr().out
    assert board == _cli(capsys, "--runs-dir", runs)
    labels = [r[0] for r in _text_rows(board)]
    assert sorted(labels)[1:] == ["early", "late"] and labels[0].startswith("best single (")   # one single row
    assert "single:" not in board and _row(board, "† ").startswith("† Marked: significantly worse")
    assert "\\" not in board and "###" not in board
    # still the sweep's own jobs only: a run it did not make is on bench leaderboard's board, not the sweep's
    store = RunStore(default_url(runs))
    for seed in range(2):
        store.put(*_run(f"other{seed}", "early", seed, _three(np.random.default_rng(seed))[0]))
    assert main([*sweep, "--format", "md"]) == 0   # every job done: nothing runs, the board is printed
    md = capsys.readouterr().out
    assert md == _cli(capsys, "--runs-dir", runs, "--dataset", "wdbc", "--format", "md")
    assert "toy" not in md and "toy" in _cli(capsys, "--runs-dir", runs, "--format", "md")
    assert md_escape(labels[0]) in md
