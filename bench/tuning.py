"""Hyper-parameter tuning with Optuna, with the same trial budget for every method (docs/tuning.md).

A study tunes one (method, dataset, preset, training budget) on the **validation** split only:

* the search space is the method's ``search_space(trial)`` plus one shared training space
  (:func:`training_space`: learning rate and weight decay, log-uniform around the protocol's
  defaults); values are typed and go through ``build_config``'s checks like ``--set`` values;
* the objective is the runner's validation selection score (``best_val_score``, lower is
  better), and the pruner sees the same number after every validation (the best score so far),
  so intermediate values and the objective agree; a pruned trial is stored as a ``pruned`` run;
* each trial is a run with purpose ``trial`` (its own key: it never evaluates test and never
  appears in a leaderboard), trained with the tuning seed (:data:`TUNING_SEED` by default,
  outside the evaluation seeds);
* the budget is ``trials`` **slots** 0..N-1. A worker claims a slot in the run store (the job
  claims of ``bench.store.claims``), runs one trial for it and records the slot on the trial.
  Rerunning with a larger N runs only the new slots; several workers (processes or machines
  sharing the run store and the study storage) never run a slot twice, and a slot whose worker
  died (claim expired, or its local process is gone) is taken over: the dead trial is marked
  failed and the slot runs again, resuming the same run from its checkpoint.
* the sampler is TPE seeded per slot (``seed``, slot), so a study's proposals depend only on the
  seed and on the trials finished before, not on how many processes or restarts it took.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import TUNED_FIELD, ConfigError, TrainConfig
from .jobs import build_config, protocol_defaults
from .training import Pruned

#: training seed of every tuning trial: outside the evaluation seeds (0..4) of the shipped suites
TUNING_SEED = 1000
#: random (startup) trials before TPE models the history
TPE_STARTUP_TRIALS = 5
PRUNERS = ("median", "halving", "none")
#: Optuna's trial heartbeat (seconds) and how long a silent trial lives before Optuna fails it
HEARTBEAT_S = 30
GRACE_S = 120
#: seconds between looks at slots other workers are running
WAIT_POLL_S = 2.0
OBJECTIVE = "validation selection score (lower is better)"


def objective_text(select: str) -> str:
    what = "mean validation task loss" if select == "loss" else "tasks' primary validation metrics, signed so lower is better"
    return f"validation selection score, select={select}: {what} (lower is better)"


class TrialFailed(Exception):
    """The trial's run failed or its configuration was refused (stored on the trial as ``error``)."""


@dataclass
class TuneSpec:
    """One study: what is tuned, on what, with which budget."""

    method: str
    dataset: str
    trials: int
    preset: str = "small"
    seed: int = TUNING_SEED
    split_seed: int = 0
    sets: dict[str, str] = field(default_factory=dict)      # fixed settings, as strings (--set)
    train: dict[str, Any] = field(default_factory=dict)     # fixed training values, typed (suites)
    hparams: dict[str, Any] = field(default_factory=dict)   # fixed method hparams, typed (suites)
    device: str = "cpu"
    data_root: str | None = None
    threads: int | None = None
    pruner: str = "median"
    timeout: float | None = None
    study: str | None = None

    def validate(self) -> "TuneSpec":
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner {self.pruner!r} is not one of: {', '.join(PRUNERS)}")
        return self


@dataclass
class TuneResult:
    study: str
    storage: str
    trials: int                   # the budget asked for
    complete: int
    pruned: int
    failed: int                   # runs that failed or were refused (a dead worker's trial is not counted)
    ran_here: int                 # trials this call ran
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_key: str | None
    objective: str = OBJECTIVE
    timed_out: bool = False
    held_elsewhere: int = 0       # slots another live worker is running

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


#: the shared training space's keys
TRAINING_KEYS = ("lr", "weight_decay")


def training_space(trial, protocol: TrainConfig, fixed: set[str] = frozenset()) -> dict[str, Any]:
    """The shared training space, the same for every method: learning rate log-uniform over one
    decade either side of the protocol's default, weight decay log-uniform in [1e-6, 1e-2].
    Keys the study fixes (``fixed``) are not searched."""
    out = {}
    if "lr" not in fixed:
        out["lr"] = trial.suggest_float("lr", protocol.lr / 10, protocol.lr * 10, log=True)
    if "weight_decay" not in fixed:
        out["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    return out


def suggest(cls, trial, protocol: TrainConfig, fixed_train: set[str] = frozenset()) -> tuple[dict, dict]:
    """(method hparams, training values) proposed for one trial."""
    return dict(cls.search_space(trial)), training_space(trial, protocol, fixed_train)


# --------------------------------------------------------------------------------- storage, study

def default_storage(runs_dir: str | Path) -> str:
    return f"sqlite:///{Path(runs_dir).expanduser().resolve() / 'optuna.db'}"


def open_storage(url: str):
    """Optuna's RDB storage with trial heartbeats (a killed worker's trial is failed after
    :data:`GRACE_S`); SQLite waits for the write lock instead of failing at once."""
    import optuna

    from .store.urls import normalize_url

    url = normalize_url(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 300}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy import create_engine

    from .store.migrate import schema_lock

    engine = create_engine(url, **kwargs)
    try:   # two workers creating Optuna's tables at once corrupt its version table: one at a time
        with schema_lock(engine), _quiet_experimental():
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _quiet_experimental():
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def base_config(spec: TuneSpec):
    """The study's configuration before tuning (method defaults, the spec's budget, the tuning seed)."""
    return build_config(spec.method, spec.dataset, seed=spec.seed, split_seed=spec.split_seed, preset=spec.preset,
                        sets=spec.sets, train=spec.train, device=spec.device, data_root=spec.data_root,
                        threads=spec.threads, hparams=spec.hparams, purpose="trial")


def study_name(spec: TuneSpec) -> str:
    """``method|dataset|preset|seed S|<id>``: the id digests everything else a trial depends on
    (training budget, fixed settings, split seed, threads, code and data), so a study never mixes
    trials of different code, data or budgets."""
    if spec.study:
        return spec.study
    base = base_config(spec)
    digest = hashlib.sha256(base.config_id().encode()).hexdigest()[:10]
    return f"{base.method}|{base.dataset}|{spec.preset}|seed {spec.seed}|{digest}"


def make_pruner(name: str):
    import optuna

    if name == "median":   # after 3 finished trials, from the 2nd validation on
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    return optuna.pruners.NopPruner()


def slot_seed(seed: int, slot: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{slot}".encode()).digest()[:4], "big")


def _slot_key(storage_url: str, study: str, slot: int) -> str:
    return "slot-" + hashlib.sha256(f"{storage_url}\n{study}\n{slot}".encode()).hexdigest()[:40]


class PrunerCallback:
    """Validation callback that reports the best validation score so far to the trial after
    every validation and raises :class:`Pruned` when the pruner says so. The step is the epoch,
    counted across a multi-stage method's stages."""

    def __init__(self, trial):
        self.trial, self.offset, self.last = trial, 0, 0

    def __call__(self, state) -> bool:
        if state.epoch < self.last:   # a new stage started
            self.offset += self.last
        self.last = state.epoch
        step, value = self.offset + state.epoch, float(state.best_score)
        if math.isfinite(value):
            self.trial.report(value, step)
            if self.trial.should_prune():
                raise Pruned(step, value)
        return False


# ------------------------------------------------------------------------------------------- tune

def _slots(study, trials: int) -> tuple[set[int], dict[int, list]]:
    """(finished slots, running trials per slot)."""
    from optuna.trial import TrialState

    done: set[int] = set()
    running: dict[int, list] = {}
    for t in study.get_trials(deepcopy=False):
        slot = t.user_attrs.get("slot")
        if slot is None:
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "error" in t.user_attrs):
            done.add(slot)
        elif t.state == TrialState.RUNNING:
            running.setdefault(slot, []).append(t)
    return done, running


def tune(spec: TuneSpec, store, runs_dir: str | Path = "runs", storage: str | None = None, progress: bool = True,
         enqueue: list[dict[str, Any]] | None = None, on_trial: Callable[[str], None] | None = None,
         wait: bool = False) -> TuneResult:
    """Run the study's missing trial slots (up to ``spec.trials``) in this process and return
    where the study stands. ``enqueue``: parameter sets to try first (tests, warm starts).
    ``wait``: when other workers hold slots, wait until they finish them (or die, and then run
    them here), so the result is the whole budget's."""
    import optuna
    from optuna.trial import TrialState

    from methods import parse_method

    from .runner import run_job
    from .store import Heartbeat, Owner, claim_ttl

    spec.validate()
    optuna.logging.set_verbosity(logging.WARNING)
    base = base_config(spec)   # refuses a bad method/dataset/setting before anything is created
    cls, _ = parse_method(base.method)
    protocol = dataclasses_replace(protocol_defaults(_is_segmentation(base.dataset), spec.preset), spec.train)
    fixed_train = set(spec.train) | {k for k in spec.sets if k in TRAINING_KEYS}
    name = study_name(spec)
    storage_url = storage or default_storage(runs_dir)
    rdb = open_storage(storage_url)
    pruner = make_pruner(spec.pruner)
    study = optuna.create_study(study_name=name, storage=rdb, direction="minimize", load_if_exists=True,
                                pruner=pruner)
    if not study.user_attrs:
        for k, v in {"method": base.method, "dataset": base.dataset, "preset": spec.preset, "seed": spec.seed,
                     "objective": objective_text(protocol.select), "pruner": spec.pruner, "base_config_id": base.config_id(),
                     "code_version": base.code_version}.items():
            study.set_user_attr(k, v)
    for params in enqueue or []:
        study.enqueue_trial(params, skip_if_exists=True)

    owner = str(Owner.current())
    started, ran, timed_out = time.monotonic(), 0, False
    last_trial: dict[int, int] = {}   # slot -> number of the trial this process ran for it

    def objective(slot: int):
        def run(trial) -> float:
            last_trial[slot] = trial.number
            trial.set_user_attr("slot", slot)
            try:
                hparams, train = suggest(cls, trial, protocol, fixed_train)
                cfg = build_config(spec.method, spec.dataset, seed=spec.seed, split_seed=spec.split_seed,
                                   preset=spec.preset, sets=spec.sets, train={**spec.train, **train}, device=spec.device,
                                   data_root=spec.data_root, threads=spec.threads, hparams={**hparams, **spec.hparams},
                                   purpose="trial")
            except ConfigError as exc:
                trial.set_user_attr("error", f"refused: {exc}")
                raise TrialFailed(str(exc)) from None
            trial.set_user_attr("key", cfg.key())
            previous = store.get(cfg.key())
            if previous is not None and previous.status == "pruned":   # the same configuration was pruned before
                record = previous
            else:
                record = run_job(cfg, store, runs_dir, progress=progress, wait=True, callbacks=(PrunerCallback(trial),))
            if record.status == "pruned":
                trial.set_user_attr("outcome", "pruned")
                raise optuna.TrialPruned(record.reason)
            if record.status != "ok":
                trial.set_user_attr("error", record.error or record.reason or record.status)
                raise TrialFailed(record.error or record.reason or record.status)
            trial.set_user_attr("outcome", "ok")
            return float(record.summary["best_val_score"])
        return run

    while True:
        held = 0
        for slot in range(spec.trials):
            if spec.timeout is not None and time.monotonic() - started > spec.timeout:
                timed_out = True
                break
            done, _ = _slots(study, spec.trials)
            if slot in done:
                continue
            key = _slot_key(storage_url, name, slot)
            if store.claim(key, owner) is not None:
                held += 1
                continue
            try:
                with Heartbeat(store, key, owner, interval=max(1.0, claim_ttl() / 6)):
                    done, running = _slots(study, spec.trials)
                    if slot in done:
                        continue
                    study_id = rdb.get_study_id_from_name(name)
                    for dead in running.get(slot, []):   # its worker's claim died: the trial will never finish
                        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, dead.number)
                        with contextlib.suppress(Exception):   # Optuna's heartbeat may have failed it already
                            rdb.set_trial_state_values(trial_id, TrialState.FAIL)
                    sampler = optuna.samplers.TPESampler(seed=slot_seed(spec.seed, slot),
                                                         n_startup_trials=TPE_STARTUP_TRIALS)
                    slot_study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner)
                    with _quiet_experimental():
                        slot_study.optimize(objective(slot), n_trials=1, catch=(TrialFailed,))
                    ran += 1
                    if on_trial and slot in last_trial:
                        last = next(t for t in slot_study.get_trials(deepcopy=False) if t.number == last_trial[slot])
                        on_trial(f"slot {slot}: trial {last.number} {last.state.name.lower()}"
                                 + (f", value {last.value:.6g}" if last.value is not None else ""))
            finally:
                with contextlib.suppress(Exception):
                    store.release(key, owner)
        if not wait or not held or timed_out:
            break
        time.sleep(WAIT_POLL_S)   # other workers run the remaining slots: wait for them (or their death)
    result = summarize_study(study, spec.trials, storage_url, ran, timed_out, held)
    result.objective = objective_text(protocol.select)
    return result


def summarize_study(study, trials: int, storage_url: str, ran: int = 0, timed_out: bool = False,
                    held: int = 0) -> TuneResult:
    from optuna.trial import TrialState

    from .store.urls import hide_password

    counted = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("slot") is not None]
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    pruned = [t for t in counted if t.state == TrialState.PRUNED]
    failed = [t for t in counted if t.state == TrialState.FAIL and "error" in t.user_attrs]
    best = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    return TuneResult(study=study.study_name, storage=hide_password(storage_url), trials=trials,
                      complete=len(complete), pruned=len(pruned), failed=len(failed), ran_here=ran,
                      best_value=best.value if best else None, best_params=dict(best.params) if best else {},
                      best_trial=best.number if best else None, best_key=best.user_attrs.get("key") if best else None,
                      timed_out=timed_out, held_elsewhere=held)


def split_params(cls, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's params as (method hparams, training values)."""
    return ({k: v for k, v in params.items() if k not in TRAINING_KEYS},
            {k: v for k, v in params.items() if k in TRAINING_KEYS})


def tuned_config(spec: TuneSpec, result: TuneResult, seed: int, threads: int | None = None):
    """The evaluation config of a study's best trial at ``seed``: label ``method (tuned)``, the
    budget in its label fields (the leaderboard's budget column)."""
    from methods import parse_method

    if not result.best_params:
        raise ConfigError(f"study {result.study!r} has no complete trial to take the best configuration from "
                          f"({result.pruned} pruned, {result.failed} failed)")
    cls, _ = parse_method(spec.method)
    hparams, train = split_params(cls, result.best_params)
    cfg = build_config(spec.method, spec.dataset, seed=seed, split_seed=spec.split_seed, preset=spec.preset,
                       sets=spec.sets, train={**spec.train, **train}, device=spec.device, data_root=spec.data_root,
                       threads=threads, hparams={**hparams, **spec.hparams})
    tuned = set(result.best_params)
    cfg.label_fields = {k: v for k, v in cfg.label_fields.items() if k not in tuned}
    cfg.label_fields[TUNED_FIELD] = result.trials
    return cfg


def dataclasses_replace(tc: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(tc, **{k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__})


def _is_segmentation(dataset: str) -> bool:
    from datasets import parse_name

    return parse_name(dataset)[0].segmentation


# ------------------------------------------------------------------------------------ sweep --tuned

@dataclass
class TunedSweep:
    jobs: list                                               # evaluation configs of the tuned methods
    results: dict[tuple[str, str], TuneResult] = field(default_factory=dict)
    untuned: list = field(default_factory=list)              # jobs run as they are (method cannot run there)
    problems: list[str] = field(default_factory=list)        # studies without a complete trial


def spec_for(job, trials: int, seed: int, pruner: str = "median", timeout: float | None = None) -> TuneSpec:
    """The study that tunes an evaluation job's configuration: its fixed settings are the job's
    settings that differ from the protocol and method defaults; the rest of the space is searched."""
    import dataclasses

    from methods import parse_method

    from .jobs import hparam_overrides

    cls, _ = parse_method(job.method)
    protocol = dataclasses.asdict(protocol_defaults(_is_segmentation(job.dataset), job.preset))
    train = {k: v for k, v in dataclasses.asdict(job.train).items() if protocol[k] != v}
    return TuneSpec(job.method, job.dataset, trials, preset=job.preset, seed=seed, split_seed=job.split_seed,
                    train=train, hparams=hparam_overrides(cls, job), device=job.device, data_root=job.data_root,
                    pruner=pruner, timeout=timeout)


def tuned_jobs(jobs: list, store, runs_dir: str | Path, trials: int, seed: int = TUNING_SEED, pruner: str = "median",
               timeout: float | None = None, storage: str | None = None, progress: bool = True,
               say: Callable[[str], None] | None = None) -> TunedSweep:
    """``bench sweep --tuned``: tune every (configuration, dataset) of ``jobs`` with the same
    budget (``trials`` trials at the tuning ``seed``, which must not be an evaluation seed), then
    return the best configuration of each at every evaluation seed of ``jobs``."""
    from methods import parse_method

    from .jobs import load_data

    seeds = sorted({j.seed for j in jobs})
    if seed in seeds:
        raise ConfigError(f"--tune-seed {seed} is one of the evaluation seeds {seeds}; tuning must not train on an "
                          "evaluation seed (choose another --tune-seed)")
    out = TunedSweep(jobs=[])
    specs: dict[str, tuple[TuneSpec, list]] = {}
    for job in jobs:
        spec = spec_for(job, trials, seed, pruner, timeout)
        specs.setdefault(job.config_id(), (spec, []))[1].append(job)
    for n, (spec, group) in enumerate(specs.values(), 1):
        cls, _ = parse_method(spec.method)
        cache = str(Path(runs_dir) / "cache")
        supported = cls.supports(load_data(spec.dataset, spec.split_seed, spec.data_root, cache).spec)
        if supported is not True:   # nothing to tune: the sweep stores these jobs as skipped
            out.untuned += group
            continue
        if say:
            say(f"tuning {n}/{len(specs)}: {spec.method} on {spec.dataset} ({trials} trials)")
        result = tune(spec, store, runs_dir, storage=storage, progress=progress, wait=True)
        out.results[(spec.method, spec.dataset)] = result
        if not result.best_params:
            out.problems.append(f"{spec.method} {spec.dataset}: no complete trial in study {result.study!r} "
                                f"({result.pruned} pruned, {result.failed} failed, {result.held_elsewhere} elsewhere)")
            continue
        out.jobs += [tuned_config(spec, result, seed=j.seed, threads=j.threads) for j in group]
    return out
