"""The one function that runs one job: ``(method, dataset, seed, hparams, budget) -> RunRecord``.

``run_job`` orchestrates; the pieces live beside it: configs and their checks in
``bench.jobs``, the training loop in ``bench.training``, evaluation in ``bench.evaluation``,
checkpoints in ``bench.checkpoint`` and the store in ``bench.store``. What must be uniform across
methods is owned here (docs/protocol.md): seeding and determinism, thread count, the split, the
stages and their budgets, selection on the **validation split only**, a single test evaluation
with the selected weights at the end, NaN/Inf detection, checkpoint + resume, cost measurement.
No code path here computes a test metric during training.

Failure handling (docs/design.md): a job that cannot be configured raises ``ConfigError``
before training (``bench run`` exits 2); any other exception inside a job becomes a ``failed``
record with its type, message and traceback tail, so a sweep goes on. Missing or corrupt data
(``DatasetError``), a full disk (``CheckpointWriteError``), store errors and interrupts are not
the job's fault and propagate.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from datasets import DatasetError, MultimodalData
from methods import parse_method

from . import __version__, robustness
from .catalogue import build_catalogue
from .checkpoint import Checkpointer, CheckpointWriteError, state_mismatch
from .config import ConfigError, RunConfig, TrainConfig
from .cost import (
    META_AUTO_PARAMS,
    flops_per_sample,
    meta_cost,
    meta_model,
    parameter_counts,
    peak_memory_bytes,
    reset_peak_memory,
    timed_inference,
    training_throughput,
    with_images,
)
from .errors import StoreError
from .evaluation import evaluate, is_segmentation, to_device
from .execution import ExecutionError, check_device, configure_matmul, make_scaler, prepare_model, tf32_active
from .execution import describe as describe_execution
from .jobs import build_config, hparam_overrides, load_data
from .record import RunRecord
from .seeding import NondeterminismLog, configure_determinism, make_generator, rng_state, seed_everything, set_rng_state
from .training import (
    EarlyStopping,
    NonFiniteLoss,
    Pruned,
    StageRun,
    StageState,
    make_optimizer,
    make_schedule,
    train_stage,
    train_step,
)

if TYPE_CHECKING:  # the store is handed in; importing it here would tie run identity to store code
    from .store import RunStore

__all__ = ["build_config", "run_job", "cost_job", "JobBusy", "JobDone", "NonFiniteLoss"]

#: lines of traceback kept in a failed record
TRACEBACK_LINES = 12
#: seconds between looks at a job another process is running (``bench run`` waits for it)
WAIT_POLL_S = 2.0


class JobBusy(RuntimeError):
    """The job is claimed by another live worker."""

    def __init__(self, key: str, holder: str):
        super().__init__(key, holder)   # args are what a worker process pickles back
        self.key, self.holder = key, holder

    def __str__(self) -> str:
        return f"job {self.key} is running in another process ({self.holder})"


class JobDone(RuntimeError):
    """The job is already in the store (``run_job(..., reuse=False)``): another worker finished it."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"job {self.key} is already done"


_GIT: str | None = None


def environment(device: torch.device, cfg: RunConfig | None = None) -> dict[str, Any]:
    global _GIT
    if _GIT is None:
        try:
            _GIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            _GIT = "unknown"
    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "device": device.type, "bench": __version__, "git": _GIT, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    if cfg is not None:
        env["execution"] = describe_execution(cfg.execution, device, cfg.deterministic)
    return env


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _record(cfg: RunConfig, status: str, suite: str | None = None, purpose: str = "eval", **kw) -> RunRecord:
    return RunRecord(key=cfg.key(), method=cfg.method, dataset=cfg.dataset, seed=cfg.seed, split_seed=cfg.split_seed,
                     preset=cfg.preset, code_version=cfg.code_version, config=cfg.to_dict(), status=status,
                     created_at=_now(), config_id=cfg.config_id(), request_id=cfg.request_id(), label=cfg.label(),
                     label_fields=dict(cfg.label_fields), purpose=purpose, suite=suite, **kw)


def _setup(cfg: RunConfig, runs_dir: str | Path = "runs") -> tuple[torch.device, MultimodalData, type, bool | str]:
    """Determinism, threads, seeds and data for a job; returns (device, data, method class, supports())."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available on this machine")
    try:
        check_device(cfg.execution, device)
    except ExecutionError as exc:
        raise ConfigError(str(exc)) from None
    configure_determinism(cfg.deterministic)
    configure_matmul(cfg.execution, device, cfg.deterministic)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    cache = os.environ.get("BENCH_CACHE_DIR") or str(Path(runs_dir) / "cache")
    data = load_data(cfg.dataset, cfg.split_seed, cfg.data_root, cache)
    cls, _ = parse_method(cfg.method)
    return device, data, cls, cls.supports(data.spec)


def _build_model(cls, data: MultimodalData, cfg: RunConfig, device: torch.device,
                 hparams: dict[str, Any] | None = None) -> torch.nn.Module:
    """The method's model on the device, with the job's execution options applied (precision,
    channels-last, compile: ``bench.execution.prepare_model``)."""
    seed_everything(cfg.seed)  # model init never depends on what ran before it
    try:
        model = cls(data.spec, cfg.hparams if hparams is None else hparams).to(device)
    except ValueError as exc:  # bad hparam values found by the method
        raise ConfigError(f"{cfg.method} on {cfg.dataset}: {exc}") from None
    return prepare_model(model, cfg.execution, device)


def _batch_options(model, data, tc: TrainConfig, train: bool = False, workers: int = 0,
                   device: torch.device | None = None) -> dict[str, Any]:
    """Options for ``data.batches``: the method's (slice size / patch) plus, for segmentation
    training, the harness's sampling and augmentation settings and the DataLoader workers that
    build the batches (pinned memory on a GPU; the batches are the same for any worker count)."""
    if not is_segmentation(data):
        return {}
    opts = dict(model.data_options())
    if train:
        opts.update(augment=tc.augment, fg_oversample=tc.fg_oversample, balance=tc.balance)
        if workers:
            opts.update(workers=workers, pin_memory=device is not None and device.type == "cuda")
    return opts


def _stage_epochs(stages, epochs: int) -> list[int]:
    """Each stage's share of the epoch budget (at least one epoch each; the last takes the rest)."""
    out = [max(1, int(round(s.fraction * epochs))) for s in stages[:-1]]
    return out + [max(1, epochs - sum(out))]


@contextlib.contextmanager
def _claimed(store: RunStore | None, key: str, wait: bool):
    """Hold the job's claim (and renew it) while the job runs; raise JobBusy, or with ``wait``
    poll until the holder finishes or dies. Yields False when the job got done meanwhile."""
    if store is None:
        yield True
        return
    from .store import Heartbeat, Owner, claim_ttl

    owner = str(Owner.current())
    while True:
        holder = store.claim(key, owner)
        if holder is None:
            break
        if not wait:
            raise JobBusy(key, holder)
        time.sleep(WAIT_POLL_S)
        if store.status(key) in ("ok", "skipped"):
            yield False
            return
    try:
        with Heartbeat(store, key, owner, interval=max(1.0, claim_ttl() / 6)):
            yield True
    finally:
        with contextlib.suppress(Exception):
            store.release(key, owner)


def run_job(cfg: RunConfig, store: RunStore | None, runs_dir: str | Path = "runs", progress: bool = True,
            force: bool = False, *, strict: bool = False, wait: bool = False, reuse: bool = True,
            suite: str | None = None, purpose: str | None = None, callbacks: tuple = ()) -> RunRecord:
    """Run (or resume) one job and store its record. Returns the stored record if already done.

    ``strict`` (``bench run``): a method that does not support the dataset, or a value the model
    rejects, raises ConfigError instead of storing a ``skipped``/``failed`` record. ``wait``:
    when another worker holds the job, wait for it instead of raising :class:`JobBusy`. ``reuse``
    False (sweeps): a job found done (or failed) raises :class:`JobDone` instead of returning the
    stored record, so a sweep can tell what it ran from what others ran.
    ``callbacks`` are extra validation callbacks (e.g. a tuning pruner) after early stopping; one
    that raises :class:`bench.training.Pruned` ends the run as a ``pruned`` record. ``purpose``
    defaults to the config's (``trial`` configs are evaluated on validation only)."""
    key = cfg.key()
    purpose = purpose or cfg.purpose

    def stored() -> RunRecord | None:
        existing = store.get(key) if store is not None and not force else None
        # a sweep also counts a failed job as done (it reruns those only with force, --retry-failed)
        if existing is None or existing.status not in (("ok", "skipped") if reuse else ("ok", "skipped", "failed")):
            return None
        if not reuse:
            raise JobDone(key)
        return existing

    if (existing := stored()) is not None:
        return existing
    with _claimed(store, key, wait) as ours:
        if not ours:   # we waited, and the other worker finished it
            return store.get(key)
        if (existing := stored()) is not None:   # another worker may have finished it before we claimed it
            return existing
        try:
            with NondeterminismLog() as ndlog:
                return _run_claimed(cfg, store, Path(runs_dir), progress, force, strict, suite, purpose, callbacks,
                                    ndlog)
        except (DatasetError, CheckpointWriteError, StoreError):
            raise
        except ConfigError:
            if strict:
                raise
            return _failed(cfg, store, suite, purpose)
        except Exception:  # noqa: BLE001 - a job's own failure is recorded; the sweep goes on
            return _failed(cfg, store, suite, purpose)


def _failed(cfg: RunConfig, store, suite, purpose) -> RunRecord:
    """A ``failed`` record for the exception being handled: type, message, traceback tail."""
    exc = sys.exc_info()[1]
    tail = "".join(traceback.format_exception(exc)).rstrip().splitlines()[-TRACEBACK_LINES:]
    message = " ".join(str(exc).split()) or "(no message)"
    record = _record(cfg, "failed", suite, purpose, error=f"{exc.__class__.__name__}: {message}",
                     env=environment(torch.device(cfg.device), cfg),
                     summary={"error_type": exc.__class__.__name__, "traceback": tail})
    if store is not None:
        store.put(record)
    return record


def _run_claimed(cfg: RunConfig, store, runs_dir: Path, progress: bool, force: bool, strict: bool,
                 suite: str | None, purpose: str, callbacks: tuple, ndlog: NondeterminismLog) -> RunRecord:
    key = cfg.key()
    device, data, cls, supported = _setup(cfg, runs_dir)
    if supported is not True:
        if strict:
            raise ConfigError(f"{cfg.method} cannot run on {cfg.dataset}: {supported}")
        record = _record(cfg, "skipped", suite, purpose, reason=str(supported), env=environment(device, cfg))
        if store is not None:
            store.put(record)
        return record
    tc = cfg.train
    stages = cls.stages(cfg.hparams)
    stage_epochs = _stage_epochs(stages, tc.epochs)
    ckpt = Checkpointer(runs_dir / "checkpoints" / key, key)
    gen = make_generator(cfg.seed)
    ckpt.clean_temporaries()
    resumed = ckpt.load(ckpt.last_path) if not force else None
    if resumed is not None:   # weights that load safely but do not fit today's model: start afresh
        at = len(stages) - 1 if resumed.get("finished") else int(resumed.get("stage", 0))
        probe = _build_model(cls, data, cfg, device, stages[min(at, len(stages) - 1)].hparams).state_dict()
        why = state_mismatch(probe, resumed.get("model")) or (
            state_mismatch(probe, resumed["best_model"]) if isinstance(resumed.get("best_model"), dict) else "")
        del probe
        if why:
            ckpt.reject(ckpt.last_path, why)
            resumed = None
    done: list[dict[str, Any]] = resumed["stages_done"] if resumed is not None else []
    reset_peak_memory(device)
    model = None
    for si, stage in enumerate(stages):
        if si < len(done):
            continue
        model = _build_model(cls, data, cfg, device, stage.hparams)
        opts = _batch_options(model, data, tc, train=True, workers=cfg.execution.workers(device), device=device)
        eval_opts = _batch_options(model, data, tc)
        epochs = stage_epochs[si]
        steps_per_epoch = math.ceil(data.epoch_size("train", **opts) / tc.batch_size)
        total_steps = epochs * steps_per_epoch
        total_steps = min(tc.max_steps, total_steps) if tc.max_steps else total_steps
        state, best_weights = StageState(), None
        if si > 0:  # also when resuming inside the stage: load_stage may freeze parameters
            previous = ckpt.load(ckpt.stage_path(si - 1))
            if previous is None:
                raise RuntimeError(f"checkpoint of stage {si - 1} is missing under {ckpt.dir}; rerun with --force")
            state.loaded = model.load_stage(previous["model"], stage)
        opt = make_optimizer(model, tc)
        sched = make_schedule(opt, tc, total_steps, steps_per_epoch)
        scaler = make_scaler(cfg.execution, device)
        if resumed is not None and resumed.get("stage", 0) == si:
            model.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimizer"])
            sched.load_state_dict(resumed["schedule"])
            if scaler is not None and resumed.get("scaler"):
                scaler.load_state_dict(resumed["scaler"])
            gen.set_state(resumed["generator"])
            set_rng_state(resumed["rng"])
            state, best_weights = StageState.from_dict(resumed["state"]), resumed["best_model"]
        resumed = None

        def save(st: StageState, best: dict | None, si=si, model=model, opt=opt, sched=sched, scaler=scaler) -> None:
            ckpt.save(ckpt.last_path, {"model": model.state_dict(), "best_model": best, "optimizer": opt.state_dict(),
                                       "schedule": sched.state_dict(), "generator": gen.get_state(), "rng": rng_state(),
                                       "state": st.to_dict(), "stage": si, "stages_done": done,
                                       "scaler": scaler.state_dict() if scaler is not None else None})

        run = StageRun(tc, device, epochs, opts, eval_opts, gen, (EarlyStopping(tc.patience), *callbacks), save,
                       f"{cfg.method} | {cfg.dataset} | seed {cfg.seed}" + (f" | {stage.name}" if len(stages) > 1 else ""),
                       progress, scaler)
        try:
            state, best_weights = train_stage(model, data, run, opt, sched, state, best_weights)
        except Pruned as exc:   # a tuning pruner ended the trial: a result of the trial, stored as such
            record = _record(cfg, "pruned", suite, purpose, reason=str(exc), env=environment(device, cfg),
                             summary={"pruned_epoch": exc.epoch, "pruned_value": exc.value, "history": state.history,
                                      "best_val_score": state.best_score, "stage": stage.name,
                                      "epochs_run": sum(d["epoch"] for d in done) + state.epoch})
            if store is not None:
                store.put(record)
            ckpt.discard_last()
            return record
        except NonFiniteLoss as exc:
            record = _record(cfg, "failed", suite, purpose, error=str(exc), env=environment(device, cfg),
                             summary={"failed_step": exc.step, "loss_parts": exc.parts, "history": state.history,
                                      "stage": stage.name})
            if store is not None:
                store.put(record)
            ckpt.discard_last()
            return record
        if len(stages) > 1:
            ckpt.save(ckpt.stage_path(si), {"model": best_weights, "epoch": state.best_epoch})
        done = done + [{"name": stage.name, **{k: v for k, v in state.to_dict().items() if k != "stopped"}}]
        model.load_state_dict(best_weights)
        if si == len(stages) - 1:  # training is over: from here a rerun goes straight to evaluation
            ckpt.save(ckpt.last_path, {"finished": True, "stages_done": done, "model": model.state_dict()})
    if model is None:  # resumed after training had finished
        state_dict = resumed["model"]
        model = _build_model(cls, data, cfg, device, stages[-1].hparams)
        if len(stages) > 1:
            model.load_stage(ckpt.load(ckpt.stage_path(len(stages) - 2))["model"], stages[-1])
        model.load_state_dict(state_dict)
    return _finish(cfg, store, ckpt, data, cls, model, device, done, suite, purpose, ndlog)


def _declined_tasks(cls, data) -> dict[str, str]:
    """``{task: reason}`` for the tasks of a per-sample dataset the method declines
    (``Method.supports_task``); the 3-D segmentation track has its own task handling."""
    if is_segmentation(data) or not hasattr(cls, "declined_tasks"):
        return {}
    return dict(cls.declined_tasks(data.spec))


def _finish(cfg: RunConfig, store, ckpt: Checkpointer, data, cls, model, device, done: list[dict[str, Any]],
            suite: str | None, purpose: str, ndlog: NondeterminismLog) -> RunRecord:
    """The one test evaluation with the selected weights, cost, and the record. In deterministic
    mode the summary lists the ops that had no deterministic implementation on this device
    (``nondeterministic_ops``; empty: the run is reproducible bit for bit); None when the mode is off."""
    tc = cfg.train
    ckpt.save(ckpt.best_path, {"model": model.state_dict(), "epoch": done[-1]["best_epoch"]})
    eval_opts = _batch_options(model, data, tc)
    val = evaluate(model, data, "val", tc, device, eval_opts)
    if cfg.purpose == "trial":   # tuning trials never see test: validation only, no test-set timing either
        return _finish_trial(cfg, store, ckpt, data, model, device, done, val, suite, ndlog)
    test = evaluate(model, data, "test", tc, device, eval_opts, per_case=True)   # the one test evaluation
    interpretation = model.interpret(test.aux, test.extras)
    if interpretation:
        test.metrics["interpretation"] = interpretation
    step_times = [t for d in done for t in d["step_times"]]
    warm = step_times[min(5, len(step_times) // 5):] or step_times
    first = data.example_batch("test", tc.batch_size, **eval_opts)
    cost = {**parameter_counts(model),
            "flops_per_sample": flops_per_sample(model, to_device(first, device)),
            "peak_memory_bytes": peak_memory_bytes(device),
            "train_time_s": sum(d["train_time"] for d in done),
            "data_wait_s": sum(d.get("data_wait", 0.0) for d in done),
            "step_time_s": statistics.median(warm) if warm else float("nan"),
            **timed_inference(lambda b: model(to_device(b, device)), data.batches("test", tc.batch_size, **eval_opts),
                              device)}
    if len(done) > 1:
        cost.update({f"train_time_s_{d['name']}": d["train_time"] for d in done})
    last = done[-1]
    summary = {"epochs_run": sum(d["epoch"] for d in done), "steps": sum(d["step"] for d in done),
               "best_epoch": last["best_epoch"], "selection": tc.select, "best_val_score": last["best_score"],
               "history": last["history"], "missing_modality": getattr(cls, "missing_modality", "unspecified"),
               "model_hparams": dict(model.hparams), "dataset_source": data.spec.source,
               "hparam_overrides": hparam_overrides(cls, cfg)}
    if declined := _declined_tasks(cls, data):   # trained and evaluated without them; no leaderboard row
        summary["declined_tasks"] = declined
    if len(done) > 1:
        summary["stages"] = [{k: d[k] for k in ("name", "epoch", "step", "best_epoch", "best_score", "history",
                                                "train_time")} | {"new_parameters": (d["loaded"] or {}).get("new", [])}
                             for d in done]
    metrics = {"val": val.metrics, "test": test.metrics}
    if robustness.applies(data):   # the same weights on the test split with a modality removed / noisy
        metrics.update(robustness.evaluate_robustness(model, data, tc.batch_size, device, cfg.seed))
        summary["robustness"] = robustness.describe(cls)
    summary["nondeterministic_ops"] = ndlog.ops if cfg.deterministic else None
    catalogue = build_catalogue({t.name: t.kind for t in data.spec.tasks}, metrics)
    record = _record(cfg, "ok", suite, purpose, metrics=metrics, cost=cost, env=environment(device, cfg), summary=summary,
                     checkpoint=str(ckpt.best_path), catalogue=catalogue)
    if store is not None:
        store.put(record, test.cases)
    ckpt.discard_last()
    return record


def _finish_trial(cfg: RunConfig, store, ckpt: Checkpointer, data, model, device, done: list[dict[str, Any]], val,
                  suite: str | None, ndlog: NondeterminismLog) -> RunRecord:
    last = done[-1]
    summary = {"epochs_run": sum(d["epoch"] for d in done), "steps": sum(d["step"] for d in done),
               "best_epoch": last["best_epoch"], "selection": cfg.train.select, "best_val_score": last["best_score"],
               "history": last["history"], "model_hparams": dict(model.hparams),
               "nondeterministic_ops": ndlog.ops if cfg.deterministic else None}
    if declined := _declined_tasks(type(model), data):
        summary["declined_tasks"] = declined
    cost = {**parameter_counts(model), "train_time_s": sum(d["train_time"] for d in done)}
    record = _record(cfg, "ok", suite, "trial", metrics={"val": val.metrics}, cost=cost, env=environment(device, cfg),
                     summary=summary, checkpoint=str(ckpt.best_path))
    if store is not None:
        store.put(record)
    ckpt.discard_last()
    return record


def cost_job(cfg: RunConfig, steps: int = 10, runs_dir: str | Path = "runs", meta: bool | None = False,
             images: str | None = None) -> dict[str, Any]:
    """Cost of a configuration without training it: parameters, FLOPs per sample (per slice for
    2-D segmentation models), median time of ``steps`` training steps (after 2 warm-up steps),
    inference latency and peak memory, measured exactly as ``run_job`` measures them
    (``bench cost``). A multi-stage method is measured as its final stage's model.

    ``meta=True`` (or None = automatic: on CPU when the model has more than
    ``cost.META_AUTO_PARAMS`` parameters) counts parameters and FLOPs on the ``meta`` device
    without allocating weights or timing anything (:func:`bench.cost.meta_cost`); ``images``
    ("NxCxHxW") replaces the dataset's image modalities by N such views for that count."""
    device, data, cls, supported = _setup(cfg, runs_dir)
    if supported is not True:
        raise ConfigError(str(supported))
    hparams = cls.stages(cfg.hparams)[-1].hparams
    spec = with_images(data.spec, images) if images else data.spec
    if images and meta is False:
        raise ConfigError("--images is for the meta-device count only: add --meta")
    if meta is None and device.type == "cpu":
        meta = parameter_counts(meta_model(cls, spec, hparams))["params_total"] > META_AUTO_PARAMS
    if meta:
        try:
            row = meta_cost(cls, spec, hparams)
        except ValueError as exc:
            raise ConfigError(f"{cfg.method} on {cfg.dataset}: {exc}") from None
        shapes = ", ".join(f"{m.name} {'x'.join(map(str, m.shape))}" for m in spec.modalities)
        return {"method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset, "inputs": shapes, **row,
                "batch_size": cfg.train.batch_size}
    reset_peak_memory(device)
    model = _build_model(cls, data, cfg, device, cls.stages(cfg.hparams)[-1].hparams)
    opts = _batch_options(model, data, cfg.train, train=True, workers=cfg.execution.workers(device), device=device)
    eval_opts = _batch_options(model, data, cfg.train)
    opt = make_optimizer(model, cfg.train)
    scaler = make_scaler(cfg.execution, device)
    gen = make_generator(cfg.seed)
    batches = []
    for batch in data.batches("train", cfg.train.batch_size, gen, drop_last=True, **opts):
        batches.append(batch)
        if len(batches) >= steps + 2:
            break
    times = []
    model.train()
    for i in range(steps + 2):
        batch = to_device(batches[i % len(batches)], device)
        t0 = time.perf_counter()
        train_step(model, batch, opt, 0.0, i, scaler=scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    first = to_device(data.example_batch("test", cfg.train.batch_size, **eval_opts), device)
    model.eval()
    with torch.no_grad():
        latency = timed_inference(lambda b: model(to_device(b, device)),
                                  data.batches("test", cfg.train.batch_size, **eval_opts), device)
    flops, step = flops_per_sample(model, first), statistics.median(times)
    return {"method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset, **parameter_counts(model),
            "flops_per_sample": flops, "step_time_s": step, "batch_size": cfg.train.batch_size, **latency,
            "peak_memory_bytes": peak_memory_bytes(device), "precision": cfg.execution.precision,
            **training_throughput(flops, cfg.train.batch_size, step, device,
                                  "tf32" if tf32_active(cfg.execution, device, cfg.deterministic)
                                  else cfg.execution.precision)}
