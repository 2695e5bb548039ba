"""Runner and store: determinism, resume after SIGKILL, NaN detection, idempotent sweeps."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ctrl_c import interrupt_after_first_run

from bench.config import ConfigError
from bench.robustness import conditions
from bench.runner import build_config, run_job
from bench.store import RunStore, default_url
from bench.sweep import expand, run_sweep

ROOT = Path(__file__).resolve().parents[1]
FAST = {"epochs": 4, "patience": 0}


def _store(tmp_path: Path) -> RunStore:
    return RunStore(default_url(tmp_path))


def test_same_job_twice_is_bit_identical(tmp_path):
    cfg = build_config("attention", "synthetic-pid:mixed", seed=3, preset="tiny", train=FAST)
    a = run_job(cfg, None, tmp_path / "a", progress=False)
    b = run_job(cfg, None, tmp_path / "b", progress=False)
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics
    assert a.summary["history"] == b.summary["history"]


def test_different_seed_changes_result(tmp_path):
    a = run_job(build_config("intermediate", "wdbc", seed=0, preset="tiny", train=FAST), None, tmp_path, progress=False)
    b = run_job(build_config("intermediate", "wdbc", seed=1, preset="tiny", train=FAST), None, tmp_path, progress=False)
    assert a.key != b.key
    assert a.summary["history"] != b.summary["history"]


def cfg_modalities(rec) -> list[str]:
    from datasets import load_dataset

    return load_dataset(rec.dataset, rec.split_seed).spec.modality_names


def test_record_contents_and_store_roundtrip(tmp_path):
    store = _store(tmp_path)
    cfg = build_config("late", "synthetic-mvmt", seed=0, preset="tiny", train={"epochs": 2, "patience": 0})
    rec = run_job(cfg, store, tmp_path, progress=False)
    assert rec.status == "ok" and rec.key == cfg.key()
    robust = {c.split for c in conditions(list(cfg_modalities(rec)))}
    assert set(rec.metrics) == {"val", "test"} | robust   # + the robustness conditions (bench/robustness.py)
    assert set(rec.metrics["test"]) == {"task_a", "task_b", "same"}
    assert all(set(rec.metrics[s]) == {"task_a", "task_b", "same"} for s in robust)
    for field in ("params_total", "params_trainable", "flops_per_sample", "peak_memory_bytes", "train_time_s",
                  "step_time_s", "inference_s_per_sample", "throughput_samples_s"):
        assert rec.cost[field] > 0, field
    assert rec.env["torch"] and rec.checkpoint and Path(rec.checkpoint).exists()
    assert store.get(cfg.key()).metrics == rec.metrics
    cases = store.cases(cfg.key())
    # one row per labelled test case and task; 'same' has masked labels so fewer rows
    assert set(cases["task"]) == {"task_a", "task_b", "same"}
    assert (cases["task"] == "task_a").sum() > (cases["task"] == "same").sum()
    assert {"case_id", "target", "pred", "correct", "loss", "probs", "aux_modality_weights", "truth_noise_v1"} <= set(cases.columns)
    # the per-case table agrees with the aggregate metric
    acc = cases[cases.task == "task_a"]["correct"].mean()
    assert acc == pytest.approx(rec.metrics["test"]["task_a"]["accuracy"])


def test_rerun_of_finished_job_returns_stored_record(tmp_path):
    store = _store(tmp_path)
    cfg = build_config("early", "wdbc", preset="tiny", train=FAST)
    first = run_job(cfg, store, tmp_path, progress=False)
    again = run_job(cfg, store, tmp_path, progress=False)
    assert again.created_at == first.created_at and store.count() == 1


def test_nan_loss_is_recorded_as_failed(tmp_path, monkeypatch):
    import methods.base as base

    real = base.task_loss
    monkeypatch.setattr(base, "task_loss", lambda *a: real(*a) * float("nan"))
    store = _store(tmp_path)
    cfg = build_config("intermediate", "wdbc", preset="tiny", train=FAST)
    rec = run_job(cfg, store, tmp_path, progress=False)
    assert rec.status == "failed"
    assert "non-finite loss at step 0" in rec.error
    assert rec.summary["failed_step"] == 0 and "task/diagnosis" in rec.summary["loss_parts"]
    assert store.status(cfg.key()) == "failed" and store.cases(cfg.key()).empty


def test_sweep_skips_done_jobs_and_reports(tmp_path):
    store = _store(tmp_path)
    jobs = expand(["single", "early"], ["synthetic-pid:unique-m1"], [0, 1], preset="tiny", train=FAST)
    assert sorted({j.method for j in jobs}) == ["early", "single:m1", "single:m2"] and len(jobs) == 6
    first = run_sweep(jobs, store, tmp_path, progress=False)
    assert first.ran == 6 and first.already_done == 0
    second = run_sweep(jobs, store, tmp_path, progress=False)
    assert second.ran == 0 and second.already_done == 6


def test_bad_set_values_and_names():
    with pytest.raises(ConfigError, match="unknown --set key 'nope'.*valid keys: .*lr"):
        build_config("early", "wdbc", sets={"nope": "1"})
    with pytest.raises(ConfigError, match="--set lr=abc: expected a float"):
        build_config("early", "wdbc", sets={"lr": "abc"})
    with pytest.raises(ConfigError, match="optimizer='rmsprop' is not one of"):
        build_config("early", "wdbc", sets={"optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        build_config("early", "wdbc", sets={"epochs": "0"})
    with pytest.raises(ConfigError, match="modality 'x' is not in wdbc.*mean, se, worst"):
        run_job(build_config("single:x", "wdbc", preset="tiny"), None, "unused", progress=False, strict=True)


def _run_cli(args, runs_dir, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args, "--runs-dir", str(runs_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_mid_job_then_resume_matches_uninterrupted_run(tmp_path):
    args = ["run", "--method", "intermediate", "--dataset", "digits-halves", "--preset", "tiny", "--set", "epochs=25",
            "--set", "patience=0", "--no-progress", "--json"]
    proc = _run_cli(args, tmp_path / "killed")
    ckpt_root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_root.glob("*/last.pt")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed; make it longer"
    store = RunStore(default_url(tmp_path / "killed"))
    assert store.count() == 0, "a killed job must leave no record"
    import json

    resumed = _run_cli(args, tmp_path / "killed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    clean = _run_cli(args, tmp_path / "clean")
    out2, err2 = clean.communicate(timeout=300)
    assert clean.returncode == 0, err2
    a, b = json.loads(out), json.loads(out2)
    assert a["summary"]["epochs_run"] == 25
    assert a["metrics"] == b["metrics"], "resumed run differs from the uninterrupted one"
    assert a["summary"]["history"] == b["summary"]["history"]
    assert not list(ckpt_root.glob("*/last.pt")), "finished jobs drop their resume checkpoint"


def test_parallel_sweep_stores_every_job_once(tmp_path):
    store = _store(tmp_path)
    jobs = expand(["early", "late"], ["wdbc"], [0, 1], preset="tiny", train={"epochs": 2, "patience": 0}, threads=1)
    report = run_sweep(jobs, store, tmp_path, progress=False, workers=2)
    assert report.ran == 4 and not report.failed
    assert store.done_keys() == {j.key() for j in jobs}
    assert all(rec.status == "ok" and rec.env["threads"] == 1 for rec in store.records())
    assert run_sweep(jobs, store, tmp_path, progress=False, workers=2).ran == 0


@pytest.mark.slow  # about a minute of subprocess runs; CI runs the slow tests too
def test_ctrl_c_on_a_parallel_sweep_is_one_line_and_resumable(tmp_path):
    args = ["sweep", "--methods", "early", "intermediate", "--datasets", "digits-halves",
            "--seeds", "0", "1", "2", "--preset", "tiny", "--set", "epochs=15", "--set", "patience=0", "--workers", "2",
            "--runs-dir", str(tmp_path), "--no-progress", "--no-leaderboard"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc, err = interrupt_after_first_run(args, tmp_path, env)
    store = RunStore(default_url(tmp_path))
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted: finished jobs are stored; rerun the same command to resume"]
    done = store.count()
    assert 1 <= done < 6
    rerun = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0 and f"6 jobs planned, {done} already done, {6 - done} run" in rerun.stderr



def test_step_schedule_is_torchs_steplr_stepped_once_an_epoch():
    """``schedule=step`` (M4oE-MT's released code: StepLR(step_size=5, gamma=0.1), stepped each epoch)
    against torch's own StepLR driven the same way."""
    import torch

    from bench.config import TrainConfig
    from bench.training import make_schedule

    tc = TrainConfig(schedule="step", step_epochs=2, step_gamma=0.5, lr=1.0).validate()
    per_epoch, epochs = 3, 7
    ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ours = make_schedule(ours_opt, tc, per_epoch * epochs, per_epoch)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=2, gamma=0.5)
    got, want = [], []
    for _ in range(epochs):
        for _ in range(per_epoch):
            got.append(ours_opt.param_groups[0]["lr"])
            want.append(ref_opt.param_groups[0]["lr"])
            ours_opt.step()
            ours.step()
        ref_opt.step()
        ref.step()
    assert got == pytest.approx(want) and want[-1] == 0.125


def test_step_schedule_fields_enter_the_key_only_with_that_schedule():
    base = build_config("early", "wdbc", preset="tiny")
    other = build_config("early", "wdbc", preset="tiny", sets={"step_gamma": "0.5"})
    assert "step_gamma" not in base.key_fields()["train"] and base.key() == other.key()  # no effect, no new key
    step = build_config("early", "wdbc", preset="tiny", sets={"schedule": "step"})
    step2 = build_config("early", "wdbc", preset="tiny", sets={"schedule": "step", "step_gamma": "0.5"})
    assert step.key_fields()["train"]["step_epochs"] == 5 and step.key() != step2.key()
    with pytest.raises(ConfigError, match="step_gamma"):
        build_config("early", "wdbc", preset="tiny", sets={"schedule": "step", "step_gamma": "0"})
