"""Results you can trust: each fault found by probing the runner as users and faults would, reproduced.

planted pickles, the resume window after the last epoch, configs averaged together, stale runs
after code and data changes, two sweeps on one store, one bad job stopping a sweep, results that
depend on the thread count, and the messages for values that cannot work.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.checkpoint import Checkpointer
from bench.cli import main
from bench.config import ConfigError
from bench.runner import build_config, run_job
from bench.store import RunStore, default_url
from bench.sweep import expand, plan, run_sweep

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"epochs": 3, "patience": 0}


class Kill(BaseException):
    """A simulated SIGKILL: nothing after it runs, and it is not an error the job could record."""


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# ------------------------------------------------------------------ checkpoints that run code

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_in_last_pt_does_not_run(tmp_path, capsys):
    cfg = build_config("early", "wdbc", preset="tiny", train=QUICK)
    ckpt = tmp_path / "checkpoints" / cfg.key()
    ckpt.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"stages_done": [], "payload": _Payload(marker)}, ckpt / "last.pt")
    # the payload is live: the old loader (weights_only=False) would have run it
    torch.load(ckpt / "last.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    rec = run_job(cfg, None, tmp_path, progress=False)
    assert not marker.exists(), "a planted checkpoint ran code"
    assert rec.status == "ok" and rec.summary["epochs_run"] == 3   # started afresh
    assert list(ckpt.glob("last.pt.rejected-*")), "the planted file is set aside, not deleted"
    err = capsys.readouterr().err
    assert re.search(r"warning: set aside .*last\.pt .*does not load as a safe checkpoint", err)
    assert len([line for line in err.splitlines() if line.startswith("warning")]) == 1


def test_another_jobs_checkpoint_is_set_aside(tmp_path):
    a = build_config("early", "wdbc", seed=0, preset="tiny", train={"epochs": 4, "patience": 0})
    b = build_config("early", "wdbc", seed=1, preset="tiny", train={"epochs": 4, "patience": 0})
    clean = run_job(b, None, tmp_path / "clean", progress=False)

    def kill_after_two(self, path, state, real=Checkpointer.save):
        real(self, path, state)
        if path.name == "last.pt" and state.get("state", {}).get("epoch") == 2:
            raise Kill

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Checkpointer, "save", kill_after_two)
        with pytest.raises(Kill):
            run_job(a, None, tmp_path / "runs", progress=False)
    (tmp_path / "runs" / "checkpoints" / b.key()).mkdir(parents=True)
    os.replace(tmp_path / "runs" / "checkpoints" / a.key() / "last.pt",
               tmp_path / "runs" / "checkpoints" / b.key() / "last.pt")
    rec = run_job(b, None, tmp_path / "runs", progress=False)
    assert rec.metrics == clean.metrics and rec.summary["history"] == clean.summary["history"]


def _killed_at_epoch_two(cfg, runs):
    def kill_after_two(self, path, state, real=Checkpointer.save):
        real(self, path, state)
        if path.name == "last.pt" and state.get("state", {}).get("epoch") == 2:
            raise Kill

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Checkpointer, "save", kill_after_two)
        with pytest.raises(Kill):
            run_job(cfg, None, runs, progress=False)
    return runs / "checkpoints" / cfg.key()


def test_a_checkpoint_whose_weights_do_not_fit_is_set_aside_and_the_job_trains_afresh(tmp_path, capsys):
    """Right key and format, wrong tensors (the code changed under the same key): every rerun
    used to fail with "Missing key(s) in state_dict" until the user deleted the file."""
    cfg = build_config("early", "wdbc", seed=0, preset="tiny", train={"epochs": 4, "patience": 0})
    clean = run_job(cfg, None, tmp_path / "clean", progress=False)
    ckpt = _killed_at_epoch_two(cfg, tmp_path / "runs")
    state = torch.load(ckpt / "last.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"] = {**{k: v for k, v in state["model"].items() if k != first}, "renamed.weight": torch.zeros(3)}
    torch.save(state, ckpt / "last.pt")
    capsys.readouterr()
    rec = run_job(cfg, None, tmp_path / "runs", progress=False)
    assert rec.status == "ok" and rec.metrics == clean.metrics and rec.summary["history"] == clean.summary["history"]
    err = capsys.readouterr().err
    assert re.search(rf"warning: set aside .*last\.pt .*do not fit this model: 1 missing tensor \({re.escape(first)}\); "
                     r"1 unexpected tensor \(renamed\.weight\)", err), err
    assert len(list(ckpt.glob("last.pt.rejected-*"))) == 1


def test_a_temporary_file_left_by_a_kill_during_save_is_removed_by_the_next_run(tmp_path):
    cfg = build_config("early", "wdbc", seed=0, preset="tiny", train={"epochs": 3, "patience": 0})
    ckpt = tmp_path / "checkpoints" / cfg.key()
    ckpt.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = ckpt / f"last.pt.{dead}-0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = ckpt / f"best.pt.{os.getppid()}-4567ef01.tmp"   # a process that still runs: left alone
    live.write_bytes(b"being written")
    assert run_job(cfg, None, tmp_path, progress=False).status == "ok"
    assert not stale.exists() and live.exists()


def test_rng_state_in_checkpoints_loads_safely():
    from bench.seeding import rng_state, seed_everything, set_rng_state

    seed_everything(5)
    state = rng_state()
    expected = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    assert (np.random.rand(), torch.rand(1).item(), __import__("random").random()) == expected


# ----------------------------------------------------------- the resume window after the last epoch

@pytest.mark.parametrize("where", ["after the stopping epoch's checkpoint", "during the final evaluation"])
def test_a_kill_after_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, where):
    """Early stopping fires; the process dies before the record is stored. The rerun must not train on."""
    train = {"epochs": 30, "patience": 2, "lr": 0.05}
    cfg = build_config("early", "wdbc", preset="tiny", train=train)
    whole = run_job(cfg, None, tmp_path / "whole", progress=False)
    assert whole.summary["epochs_run"] < 30, "early stopping must fire for this test to mean anything"

    import bench.runner as runner

    if where == "during the final evaluation":
        real = runner._finish

        def die(*a, **k):
            raise Kill

        monkeypatch.setattr(runner, "_finish", die)
    else:
        real = Checkpointer.save

        def die(self, path, state):
            real(self, path, state)
            if path.name == "last.pt" and state.get("state", {}).get("stopped"):
                raise Kill

        monkeypatch.setattr(Checkpointer, "save", die)
    with pytest.raises(Kill):
        run_job(cfg, None, tmp_path / "killed", progress=False)
    monkeypatch.undo()
    resumed = run_job(cfg, None, tmp_path / "killed", progress=False)
    assert resumed.summary["epochs_run"] == whole.summary["epochs_run"]
    assert resumed.summary["history"] == whole.summary["history"]
    assert resumed.metrics == whole.metrics


# ------------------------------------------------------------------ configs averaged together

def test_acceptance_two_budgets_are_two_rows_each_with_one_seed(tmp_path, capsys):
    base = ["run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny", "--runs-dir", str(tmp_path),
            "--no-progress"]
    assert main([*base, "--set", "epochs=2"]) == 0
    assert main([*base, "--set", "epochs=3"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--format", "json", "--dataset", "wdbc", "--runs-dir", str(tmp_path)]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["metric"] == "accuracy"]
    assert sorted((r["label"], r["n"]) for r in rows) == [("early[epochs=2]", 1), ("early[epochs=3]", 1)]


@pytest.mark.parametrize("change", [{"sets": {"max_steps": "5"}}, {"sets": {"batch_size": "32"}}, {"preset": "small"},
                                    {"split_seed": 1}, {"threads": 1}])
def test_any_setting_makes_another_configuration(change):
    a = build_config("early", "wdbc", preset="tiny", threads=2)
    b = build_config("early", "wdbc", **{"preset": "tiny", "threads": 2, **change})
    assert a.config_id() != b.config_id() and a.key() != b.key()
    same_config_other_seed = build_config("early", "wdbc", seed=7, preset="tiny", threads=2)
    assert same_config_other_seed.config_id() == a.config_id()


# --------------------------------------------------------------- stale runs: code and data

def test_a_code_change_makes_stored_runs_stale(tmp_path, monkeypatch):
    import bench.jobs as jobs

    store = RunStore(default_url(tmp_path))
    monkeypatch.setattr(jobs, "code_fingerprint", lambda modules: "before")
    old = build_config("early", "wdbc", preset="tiny", train=QUICK)
    run_job(old, store, tmp_path, progress=False)
    assert plan([old], store)[0].state == "done"
    monkeypatch.setattr(jobs, "code_fingerprint", lambda modules: "after")
    new = build_config("early", "wdbc", preset="tiny", train=QUICK)
    assert new.key() != old.key() and new.request_id() == old.request_id()
    (p,) = plan([new], store)
    assert p.state == "stale" and p.why == f"code changed ({old.code_version} -> {new.code_version})"
    rerun = run_job(new, store, tmp_path, progress=False)
    assert rerun.key == new.key() and store.count() == 2 and plan([new], store)[0].state == "done"


def _nnunet(root: Path, n: int = 4, channels=("CT",)) -> Path:
    from datasets.segmentation.nnunet import write_case, write_dataset_json

    rng = np.random.default_rng(0)
    write_dataset_json(root, dict(enumerate(channels)), {"background": 0, "organ": 1}, n)
    for i in range(n):
        lab = np.zeros((16, 16, 8), np.uint8)
        lab[4:12, 4:12, 2:6] = 1
        imgs = [(rng.normal(size=lab.shape) + 3 * lab).astype(np.float32) for _ in channels]
        write_case(root, f"case_{i:03d}", imgs, lab, (1.0, 1.0, 2.0))
    return root


def test_a_label_wipe_makes_the_job_stale(tmp_path):
    from datasets.segmentation.nnunet import write_case

    root = _nnunet(tmp_path / "Dataset001_Toy")
    store = RunStore(default_url(tmp_path / "runs"))
    train = {"epochs": 1, "batch_size": 8, "max_steps": 2}
    cfg = build_config("unet", f"nnunet:{root}", preset="tiny", train=train)
    assert cfg.data_fingerprint and cfg.data_fingerprint.startswith("9:")   # 4 images + 4 labels + dataset.json
    assert run_job(cfg, store, tmp_path / "runs", progress=False).status == "ok"
    for i in range(4):   # wipe every label
        write_case(root, f"case_{i:03d}", [np.zeros((16, 16, 8), np.float32)], np.zeros((16, 16, 8), np.uint8),
                   (1.0, 1.0, 2.0))
    again = build_config("unet", f"nnunet:{root}", preset="tiny", train=train)
    assert again.key() != cfg.key() and again.request_id() == cfg.request_id()
    (p,) = plan([again], store)
    assert p.state == "stale" and p.why.startswith("data changed")


def test_acceptance_single_expands_to_the_channels_of_an_nnunet_folder(tmp_path, capsys):
    root = _nnunet(tmp_path / "Dataset002_Two", n=3, channels=("T1", "FLAIR"))
    assert main(["sweep", "--methods", "single", "--datasets", f"nnunet:{root}", "--seeds", "0", "--preset", "tiny",
                 "--runs-dir", str(tmp_path / "runs"), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert sorted(p["label"] for p in planned) == ["single:FLAIR@tiny", "single:T1@tiny"]
    assert {p["state"] for p in planned} == {"to run"}


# ------------------------------------------------------------------------ two sweeps, one store

@pytest.mark.slow  # half a minute of two CLI sweeps; tests/test_runner.py and test_postgres.py cover shared stores fast
def test_acceptance_two_sweeps_on_one_store_share_the_jobs(tmp_path):
    args = [sys.executable, "-m", "bench", "sweep", "--methods", "early", "late", "--datasets", "wdbc", "--seeds", "0",
            "1", "2", "--preset", "tiny", "--store", f"sqlite:///{tmp_path / 'S.db'}", "--runs-dir", str(tmp_path),
            "--no-progress", "--no-leaderboard"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    ran = [int(re.search(r"(\d+) run,", err).group(1)) for _, err in outs]
    assert sum(ran) == 6, [o[1] for o in outs]
    elsewhere = [int(re.search(r"(\d+) run by other workers", err).group(1)) for _, err in outs]
    assert ran[0] + elsewhere[0] + int(re.search(r"(\d+) already done", outs[0][1]).group(1)) == 6
    store = RunStore(f"sqlite:///{tmp_path / 'S.db'}")
    assert store.count() == 6 and store.claims() == []
    assert not list(tmp_path.glob("checkpoints/*/*.tmp"))


def test_a_sweep_takes_over_the_job_of_a_dead_worker(tmp_path):
    store = RunStore(default_url(tmp_path))
    jobs = expand(["early"], ["wdbc"], [0, 1], preset="tiny", train=QUICK, threads=1)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    from bench.store.claims import Owner

    store.claim(jobs[0].key(), str(Owner(Owner.current().host, proc.pid, "1", "deadbeef")))
    report = run_sweep(jobs, store, tmp_path, progress=False)
    assert report.ran == 2 and report.ran_elsewhere == 0 and store.count() == 2


def test_checkpoint_temporary_files_are_per_process(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(Path(a).name), real(a, b)))
    Checkpointer(tmp_path, "k").save(tmp_path / "last.pt", {"x": torch.zeros(1)})
    assert re.fullmatch(rf"last\.pt\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", seen[0])


# ------------------------------------------------------------------- one bad job, a whole sweep

def test_one_failing_job_does_not_stop_the_sweep(tmp_path, monkeypatch, capsys):
    from methods.early import EarlyFusion

    real = EarlyFusion.forward

    def forward(self, batch):
        if self.spec.name == "digits-halves":
            raise RuntimeError("boom in forward")
        return real(self, batch)

    monkeypatch.setattr(EarlyFusion, "forward", forward)
    rc = main(["sweep", "--methods", "early", "--datasets", "digits-halves", "wdbc", "--seeds", "0", "--preset", "tiny",
               "--set", "epochs=2", "--runs-dir", str(tmp_path), "--workers", "1", "--no-progress"])
    assert rc == 1
    store = RunStore(default_url(tmp_path))
    by = {r.dataset: r for r in store.records()}
    assert by["wdbc"].status == "ok"
    failed = by["digits-halves"]
    assert failed.status == "failed" and failed.error == "RuntimeError: boom in forward"
    assert failed.summary["error_type"] == "RuntimeError" and "boom in forward" in failed.summary["traceback"][-1]
    assert "1 failed" in capsys.readouterr().err


def test_a_bad_value_stops_a_sweep_before_anything_runs(tmp_path, capsys):
    rc = main(["sweep", "--methods", "early", "--datasets", "wdbc", "digits-halves", "--set", "image_encoder=foo",
               "--preset", "tiny", "--runs-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "image_encoder" in err
    assert RunStore(default_url(tmp_path)).count() == 0


# ---------------------------------------------------------------- results depend on --workers

def test_the_thread_count_is_part_of_the_key_and_is_applied(tmp_path):
    from bench.sweep import sweep_threads

    one, two = (build_config("early", "wdbc", preset="tiny", train=QUICK, threads=t) for t in (1, 2))
    assert one.key() != two.key() and one.request_id() != two.request_id()
    assert [j.threads for j in expand(["early"], ["wdbc"], [0], threads=sweep_threads(2))] == [sweep_threads(2)]
    before = torch.get_num_threads()
    try:
        rec = run_job(one, None, tmp_path, progress=False)
        assert rec.env["threads"] == 1
    finally:
        torch.set_num_threads(before)
    gpu = build_config("early", "wdbc", preset="tiny", device="cuda")
    assert gpu.threads is None and gpu.key_fields()["threads"] is None


# ---------------------------------------------------------------------- values that cannot work

@pytest.mark.parametrize("args, needle", [
    (["--set", "lr=inf"], "lr=inf: expected a finite number"),
    (["--set", "layers=-1"], "layers=-1: must be an integer >= 1"),
    (["--set", "hidden=0"], "hidden=0: must be an integer >= 1"),
    (["--seed", "100000000000000000000"], "a seed must be an integer in 0..4294967295"),
    (["--set", "image_encoder=x | **pwn** | 9.999 |"], "image_encoder"),
    (["--set", "image_encoder=vit"], "image_encoder='vit': applies only to datasets whose modalities are all image2d"),
])
def test_values_that_cannot_work_are_one_line_exit_2(tmp_path, capsys, args, needle):
    rc = main(["run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny", "--runs-dir", str(tmp_path),
               *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert RunStore(default_url(tmp_path)).count() == 0


def test_a_method_that_cannot_run_on_the_dataset_is_exit_2_in_run(tmp_path, capsys):
    rc = main(["run", "--method", "unet", "--dataset", "wdbc", "--preset", "tiny", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unet cannot run on wdbc" in err and "segmentation" in err
    assert RunStore(default_url(tmp_path)).count() == 0
    # in a sweep it is a skipped job with its reason
    report = run_sweep(expand(["unet"], ["wdbc"], [0], preset="tiny"), RunStore(default_url(tmp_path)), tmp_path,
                       progress=False)
    assert len(report.skipped) == 1


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    import bench.checkpoint as checkpoint

    def full(path, mode="r", *a, **k):
        return builtins.open("/dev/full", mode, *a, **k) if "w" in mode else builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(checkpoint, "open", full, raising=False)
    rc = main(["run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny", "--runs-dir", str(tmp_path),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert re.fullmatch(r"error: cannot write checkpoint .*last\.pt: disk full: free space or point --runs-dir "
                        r"elsewhere", err)
    assert RunStore(default_url(tmp_path)).count() == 0, "a disk-full job is not recorded as failed"
    assert not list(tmp_path.glob("checkpoints/*/*.tmp")), "no temporary file is left behind"


def test_dry_run_lists_done_to_run_and_stale(tmp_path, capsys):
    base = ["sweep", "--methods", "early", "--datasets", "wdbc", "--seeds", "0", "1", "--preset", "tiny", "--set",
            "epochs=2", "--runs-dir", str(tmp_path), "--workers", "1", "--no-progress"]
    run_job(build_config("early", "wdbc", seed=0, preset="tiny", sets={"epochs": "2"}, threads=1),
            RunStore(default_url(tmp_path)), tmp_path, progress=False)
    assert main([*base, "--dry-run", "--json"]) == 0
    states = {p["seed"]: p["state"] for p in json.loads(capsys.readouterr().out)}
    assert states == {0: "done", 1: "to run"}
    assert RunStore(default_url(tmp_path)).count() == 1, "a dry run runs nothing"
    assert main([*base, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "| done" in out.out and "| to run" in out.out and "1 done, 1 to run; nothing was run" in out.err


def test_config_errors_raised_inside_a_job_are_exit_2_in_run(tmp_path):
    cfg = build_config("moe", "wdbc", preset="tiny", sets={"top_k": "9"})   # top_k > num_experts: the model says so
    with pytest.raises(ConfigError, match="top_k"):
        run_job(cfg, None, tmp_path, progress=False, strict=True)


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--method", "early", "--dataset", "wdbc", "--seed", "1e20"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err == "error: argument --seed: invalid int value: '1e20' (see python -m bench " \
                                           "run --help)"


def test_bench_run_waits_for_a_job_another_worker_holds(tmp_path, monkeypatch):
    import threading

    import bench.runner as runner
    from bench.runner import JobBusy

    monkeypatch.setattr(runner, "WAIT_POLL_S", 0.1)
    store = RunStore(default_url(tmp_path))
    cfg = build_config("early", "wdbc", preset="tiny", train=QUICK)
    other = "far-host:1:1:otherone"
    assert store.claim(cfg.key(), other) is None
    with pytest.raises(JobBusy):   # a sweep sets it aside
        run_job(cfg, store, tmp_path, progress=False)
    finished = run_job(cfg, None, tmp_path / "elsewhere", progress=False)   # what the other worker computes

    def other_worker_finishes():
        store.put(finished)
        store.release(cfg.key(), other)

    timer = threading.Timer(0.5, other_worker_finishes)
    timer.start()
    got = run_job(cfg, store, tmp_path, progress=False, wait=True)   # bench run waits for it
    timer.join()
    assert got.created_at == finished.created_at and store.count() == 1
    assert not (tmp_path / "checkpoints" / cfg.key()).exists(), "the waiting process trained nothing"


def test_a_sweep_counts_a_job_finished_elsewhere_as_run_elsewhere(tmp_path, monkeypatch):
    """The sweep's to-do list is computed once; a job another sweep finishes meanwhile must not be
    counted (or run) again here."""
    store = RunStore(default_url(tmp_path))
    jobs = expand(["early"], ["wdbc"], [0, 1], preset="tiny", train=QUICK, threads=1)
    monkeypatch.setattr(store, "done_keys", lambda statuses=None: set())   # the snapshot said: nothing done
    first = run_job(jobs[0], store, tmp_path, progress=False)              # ...then another sweep did job 0
    report = run_sweep(jobs, store, tmp_path, progress=False)
    assert (report.ran, report.ran_elsewhere, store.count()) == (1, 1, 2)
    assert store.get(jobs[0].key()).created_at == first.created_at
