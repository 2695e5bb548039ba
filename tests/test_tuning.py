"""Tuning (bench.tuning, docs/tuning.md): seeded and restart-invariant proposals, pruning of a
planted bad configuration, trials that never see test nor reach a leaderboard, resume after
SIGKILL, equal budgets in ``sweep --tuned`` and the leaderboard's budget column."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from bench.config import ConfigError
from bench.jobs import build_config
from bench.runner import run_job
from bench.store import RunStore, default_url
from bench.training import Pruned
from bench.tuning import TUNING_SEED, TuneSpec, default_storage, open_storage, tune
from methods import method_classes
from results import leaderboard, load_results

ROOT = Path(__file__).resolve().parents[1]
FAST = {"epochs": 4, "patience": 0}


def _spec(trials: int, **kw) -> TuneSpec:
    base = dict(method="early", dataset="wdbc", trials=trials, preset="tiny", train=dict(FAST), threads=1)
    return TuneSpec(**{**base, **kw})


def _trials(runs: Path, spec: TuneSpec) -> list:
    """The trials of the one study under ``runs`` (named as ``spec``'s; the name is read from the
    storage, since a subprocess computes it with its own code fingerprint)."""
    storage = open_storage(default_storage(runs))
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 1 and names[0].startswith(f"{spec.method}|{spec.dataset}|{spec.preset}|seed {spec.seed}|")
    study = optuna.load_study(study_name=names[0], storage=storage)
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def _params(trials) -> list[dict]:
    return [t.params for t in trials if t.user_attrs.get("slot") is not None]


def test_same_seed_same_sequence_and_more_trials_run_only_the_missing_ones(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first = tune(_spec(3), RunStore(default_url(a)), a, progress=False)
    assert (first.ran_here, first.finished) == (3, 3)
    more = tune(_spec(6), RunStore(default_url(a)), a, progress=False)   # the budget grows: 3 more, not 6
    assert (more.ran_here, more.finished) == (3, 6)
    again = tune(_spec(6), RunStore(default_url(a)), a, progress=False)
    assert again.ran_here == 0
    at_once = tune(_spec(6), RunStore(default_url(b)), b, progress=False)
    pa, pb = _params(_trials(a, _spec(6))), _params(_trials(b, _spec(6)))
    assert len(pa) == len(pb) == 6
    assert pa == pb, "3 + 3 trials must propose what 6 at once propose"
    assert more.best_params == at_once.best_params and more.best_value == at_once.best_value
    other = tune(_spec(3, seed=TUNING_SEED + 1), RunStore(default_url(c)), c, progress=False)
    assert _params(_trials(c, _spec(3, seed=TUNING_SEED + 1))) != pa[:3], "another seed must propose otherwise"
    assert other.finished == 3


def test_trials_never_see_test_nor_reach_the_leaderboard(tmp_path):
    store = RunStore(default_url(tmp_path))
    result = tune(_spec(2), store, tmp_path, progress=False)
    trials = store.records(purpose="trial")
    assert len(trials) == 2 and result.best_key in {r.key for r in trials}
    for rec in trials:
        assert set(rec.metrics) == {"val"}, "a trial must not evaluate the test split"
        assert not any("inference" in k for k in rec.cost), "nor time inference on test batches"
    assert load_results(store).frame.empty
    assert "No completed runs" in leaderboard(load_results(store))


def test_trial_key_differs_from_the_benchmark_run_of_the_same_configuration():
    ev = build_config("early", "wdbc", seed=TUNING_SEED, preset="tiny")
    tr = build_config("early", "wdbc", seed=TUNING_SEED, preset="tiny", purpose="trial")
    assert ev.key() != tr.key() and ev.config_id() != tr.config_id()
    assert "purpose" not in ev.key_fields(), "benchmark keys must not change"


def test_objective_is_the_runners_validation_score_and_the_last_report(tmp_path):
    store = RunStore(default_url(tmp_path))
    tune(_spec(2, pruner="none"), store, tmp_path, progress=False)
    for t in _trials(tmp_path, _spec(2)):
        rec = store.get(t.user_attrs["key"])
        assert t.value == rec.summary["best_val_score"]
        assert t.intermediate_values[max(t.intermediate_values)] == t.value
        assert rec.config["seed"] == TUNING_SEED and rec.purpose == "trial"


def test_pruning_stops_a_planted_bad_configuration(tmp_path):
    good = {"hidden": 64, "dropout": 0.1, "lr": 5e-3, "weight_decay": 1e-4}
    bad = {"hidden": 32, "dropout": 0.5, "lr": 2e-4, "weight_decay": 1e-2}   # the space's slowest learner
    store = RunStore(default_url(tmp_path))
    spec = _spec(4, train={"epochs": 8, "patience": 0})
    result = tune(spec, store, tmp_path, progress=False, enqueue=[good, {**good, "dropout": 0.0},
                                                                  {**good, "hidden": 32}, bad])
    trials = _trials(tmp_path, spec)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[3].params == bad and result.pruned == 1 and result.complete == 3
    rec = store.get(trials[3].user_attrs["key"])
    assert rec.status == "pruned" and rec.purpose == "trial"
    assert rec.summary["epochs_run"] < 8, "a pruned trial stops early"
    # control: without a pruner the same configuration trains to the end (so the pruner, not chance, stopped it)
    nopr = tmp_path / "nopruner"
    tune(_spec(4, train={"epochs": 8, "patience": 0}, pruner="none"), RunStore(default_url(nopr)), nopr, progress=False,
         enqueue=[good, {**good, "dropout": 0.0}, {**good, "hidden": 32}, bad])
    assert [t.state.name for t in _trials(nopr, spec)] == ["COMPLETE"] * 4


def test_pruned_callback_gives_a_pruned_record(tmp_path):
    store = RunStore(default_url(tmp_path))
    cfg = build_config("early", "wdbc", preset="tiny", train=dict(FAST), threads=1, purpose="trial")

    def prune_at_second(state):
        if state.epoch == 2:
            raise Pruned(state.epoch, state.best_score)
        return False

    rec = run_job(cfg, store, tmp_path, progress=False, callbacks=(prune_at_second,))
    assert rec.status == "pruned" and rec.summary["pruned_epoch"] == 2 and rec.summary["epochs_run"] == 2
    assert store.get(cfg.key()).status == "pruned"
    assert not (tmp_path / "checkpoints" / cfg.key() / "last.pt").exists()


def test_every_search_space_key_is_a_typed_hparam_of_its_method():
    for cls in method_classes():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        space = cls.search_space(trial)
        defaults = cls.defaults()
        assert set(space) <= set(defaults), f"{cls.name}: {set(space) - set(defaults)} are not hparams"
        for k, v in space.items():
            assert isinstance(v, type(defaults[k])) or (isinstance(defaults[k], float) and isinstance(v, int)), \
                f"{cls.name}.{k}: {type(v).__name__} vs default {type(defaults[k]).__name__}"


def test_bad_tune_arguments_are_one_line_errors(tmp_path, capsys):
    from bench.cli import main

    for argv, needle in ((["--trials", "0"], "--trials must be >= 1"),
                         (["--trials", "2", "--timeout", "-1"], "--timeout must be"),
                         (["--trials", "2", "--set", "bogus=1"], "unknown --set key"),
                         (["--trials", "2", "--seed", "-3"], "a seed must be an integer")):
        code = main(["tune", "--method", "early", "--dataset", "wdbc", "--runs-dir", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # about a minute of subprocess runs; CI runs the slow tests too
def test_cli_tune_prints_best_and_counts_then_resumes_after_sigkill(tmp_path):
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "bench", "tune", "--method", "early", "--dataset", "wdbc", "--trials", "3",
            "--preset", "tiny", "--set", "epochs=40", "--set", "patience=0", "--pruner", "none", "--threads", "1",
            "--runs-dir", str(runs), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(default_url(runs))
    deadline = time.time() + 240
    # kill once one trial is complete and the next is mid-training (its checkpoint exists)
    while time.time() < deadline:
        done = [r for r in store.records(purpose="trial") if r.status == "ok"]
        if done and any(p.parent.name not in {r.key for r in done} for p in (runs / "checkpoints").glob("*/last.pt")):
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    spec = _spec(3, train={"epochs": 40, "patience": 0}, pruner="none")
    before = {t.number: (t.state.name, t.value) for t in _trials(runs, spec)}
    complete_before = {n: v for n, (s, v) in before.items() if s == "COMPLETE"}
    assert complete_before and any(s == "RUNNING" for s, _ in before.values())

    out = subprocess.run(argv + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["complete"] == 3 and result["ran_here"] == 3 - len(complete_before)
    after = {t.number: (t.state.name, t.value) for t in _trials(runs, spec)}
    for n, v in complete_before.items():
        assert after[n] == ("COMPLETE", v), "a completed trial must be kept as it was"
    killed = [n for n, (s, _) in before.items() if s == "RUNNING"]
    assert all(after[n][0] == "FAIL" for n in killed), "the killed worker's trial is marked failed"
    trials = _trials(runs, spec)
    retried = [t for t in trials if t.number > max(before) and t.user_attrs["slot"] == trials[killed[0]].user_attrs["slot"]]
    assert retried and retried[0].params == trials[killed[0]].params, "the slot runs again with the same params"
    rec = store.get(retried[0].user_attrs["key"])
    assert rec.summary["epochs_run"] == 40

    # a subprocess again: the study's name includes the code fingerprint, which this test
    # process may have computed with modules other tests changed
    text = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600).stdout
    assert "trials: 3 of 3 finished (3 complete, 0 pruned, 0 failed); 0 run by this command" in text
    assert "best params: " in text and "objective: validation selection score" in text


def test_tuned_seed_must_not_be_an_evaluation_seed(tmp_path):
    from bench.tuning import tuned_jobs

    jobs = [build_config("early", "wdbc", seed=s, preset="tiny") for s in (0, TUNING_SEED)]
    with pytest.raises(ConfigError, match="evaluation seeds"):
        tuned_jobs(jobs, RunStore(default_url(tmp_path)), tmp_path, trials=2)


def test_sweep_tuned_runs_the_best_configuration_and_the_leaderboard_states_budgets(tmp_path, capsys):
    from bench.cli import main

    common = ["--datasets", "wdbc", "--seeds", "0", "1", "--preset", "tiny", "--set", "epochs=3", "--workers", "1",
              "--runs-dir", str(tmp_path), "--no-progress"]
    assert main(["sweep", "--methods", "early", *common, "--tuned", "--trials", "2", "--format", "md"]) == 0
    out = capsys.readouterr()
    assert "early \\(tuned\\)" in out.out and "| budget" in out.out and "2 trials" in out.out
    assert "tuned early on wdbc: 2 trials" in out.err
    store = RunStore(default_url(tmp_path))
    evals = store.records(purpose="eval")
    assert sorted(r.seed for r in evals) == [0, 1] and all(r.label.endswith("(tuned)") for r in evals)
    storage = open_storage(default_storage(tmp_path))
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 1 and names[0].startswith("early|wdbc|tiny|seed 1000|")
    study = optuna.load_study(study_name=names[0], storage=storage)
    best = study.best_trial.params
    for r in evals:   # the evaluation runs are the study's best configuration
        assert r.config["hparams"]["hidden"] == best["hidden"] and r.config["train"]["lr"] == best["lr"]
        assert r.config["train"]["epochs"] == 3 and r.config["purpose"] == "eval"
    # an untuned method next to it: the table flags the unequal budgets
    assert main(["sweep", "--methods", "late", *common, "--no-leaderboard"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--runs-dir", str(tmp_path)]) == 0
    board = capsys.readouterr().out
    assert "Unequal tuning budgets" in board and "defaults: late" in board
    assert main(["leaderboard", "--runs-dir", str(tmp_path), "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert ",2 trials" in csv and ",defaults" in csv
    # the budget is required, and an evaluation seed cannot be the tuning seed
    assert main(["sweep", "--methods", "early", *common, "--tuned"]) == 2
    assert main(["sweep", "--methods", "early", *common, "--tuned", "--trials", "2", "--tune-seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--tuned needs --trials" in err and "is one of the evaluation seeds" in err
