"""The one function that runs one job: ``(method, dataset, seed, hparams, budget) -> RunRecord``.

It owns everything that must be uniform across methods (protocol.md): seeding and determinism,
the split, optimiser and schedule, the epoch/step budget, early stopping and checkpoint
selection on the **validation split only**, a single test evaluation with the selected weights
at the end, NaN/Inf detection, checkpoint + resume, progress display and cost measurement.
No code path here computes a test metric during training.
"""
from __future__ import annotations

import copy
import datetime as _dt
import functools
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from datasets import MultimodalData, canonical_name, load_dataset, parse_name
from methods import parse_method, resolve_hparams, task_loss

from . import __version__
from .checkpoint import Checkpointer
from .config import SEG_EPOCHS_BY_PRESET, SEG_TRAIN_DEFAULTS, ConfigError, RunConfig, TrainConfig, split_overrides
from .cost import flops_per_sample, parameter_counts, peak_memory_bytes, reset_peak_memory, timed_inference
from .metrics import evaluate_task, primary_metric
from .record import RunRecord
from .seeding import configure_determinism, make_generator, rng_state, seed_everything, set_rng_state
from .seg_eval import evaluate_cases, seg_val_loss
from .store import RunStore

#: step times kept for the median step time (the most recent ones; bounded so checkpoints stay small)
STEP_TIMES_KEPT = 256


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, parts: dict[str, float]):
        self.step, self.parts = step, parts
        super().__init__(f"non-finite loss at step {step}: {parts}")


def build_config(method: str, dataset: str, seed: int = 0, split_seed: int = 0, preset: str = "small",
                 sets: dict[str, str] | None = None, train: dict[str, Any] | None = None, device: str = "cpu",
                 deterministic: bool = True, data_root: str | None = None) -> RunConfig:
    """Resolve names, preset and ``--set`` overrides into a :class:`RunConfig` (raises ConfigError)."""
    cls, from_name = parse_method(method)
    defaults = cls.defaults()
    train_over, hp_over = split_overrides(sets or {}, defaults)
    try:
        hparams = resolve_hparams(defaults, preset, {**from_name, **hp_over})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    arg = getattr(cls, "name_arg", None)
    name = f"{cls.name}:{hparams[arg]}" if arg and hparams.get(arg) else cls.name
    entry, _ = parse_name(dataset)
    seg_defaults = {**SEG_TRAIN_DEFAULTS, "epochs": SEG_EPOCHS_BY_PRESET[preset]} if entry.segmentation else {}
    try:
        tc = TrainConfig(**{**seg_defaults, **(train or {}), **train_over}).validate()
    except TypeError as exc:
        raise ConfigError(f"bad training setting: {exc}") from None
    return RunConfig(method=name, dataset=canonical_name(dataset), seed=seed, split_seed=split_seed, preset=preset,
                     hparams=hparams, train=tc, device=device, deterministic=deterministic, data_root=data_root)


@dataclass
class SplitEval:
    loss: float
    metrics: dict[str, dict[str, float]]
    cases: pd.DataFrame | None
    aux: dict[str, np.ndarray]      # per-sample interpretation tensors, in split order (per_case only)
    extras: dict[str, np.ndarray]   # the dataset's per-sample ground truth for the split (per_case only)


def _to_device(batch: dict, device: torch.device) -> dict:
    if device.type == "cpu":
        return batch
    return {k: ({kk: vv.to(device, non_blocking=True) for kk, vv in v.items()} if isinstance(v, dict)
                else v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def evaluate_split(model, data: MultimodalData, split: str, batch_size: int, device: torch.device,
                   per_case: bool = False, with_metrics: bool = True) -> SplitEval:
    """Predict a whole split in eval mode; loss, metrics per task (unless ``with_metrics`` is
    False: per-epoch validation under ``select=loss`` needs only the loss); with ``per_case``, also
    the per-case frame and the per-sample ``aux`` outputs and ground truth (interpretation)."""
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {t: [] for t in data.spec.task_names}
    aux: dict[str, list[torch.Tensor]] = {}
    for batch in data.batches(split, batch_size):
        out = model(_to_device(batch, device))
        for t in preds:
            preds[t].append(out.preds[t].float().cpu())
        for name, value in (out.aux.items() if per_case else ()):
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == len(batch["index"]):
                aux.setdefault(name, []).append(value.float().cpu())
    idx = data.splits[split]
    ids = [data.ids[i] for i in idx]
    loss, metrics, frames = 0.0, {}, []
    for task in data.spec.tasks:
        p = torch.cat(preds[task.name])
        y, m = data.targets[task.name][idx], data.target_mask[task.name][idx]
        loss += float(task_loss(task, p, y, m))
        if not (with_metrics or per_case):
            continue
        ev = evaluate_task(task, p, y, m, ids)
        metrics[task.name] = ev.metrics
        if per_case:
            frames.append(ev.per_case.assign(task=task.name))
    aux_arrays = {name: torch.cat(parts).numpy() for name, parts in aux.items()}
    extras = {name: np.asarray(values)[idx] for name, values in data.extras.items()} if per_case else {}
    cases = None
    if per_case:
        cases = pd.concat(frames, ignore_index=True)
        extra = pd.DataFrame({"case_id": ids})
        for name, v in aux_arrays.items():
            extra[f"aux_{name}"] = v.reshape(len(v), -1).tolist() if v.ndim > 1 else v
        for name, values in extras.items():
            extra[f"truth_{name}"] = values
        cases = cases.merge(extra, on="case_id", how="left")
    return SplitEval(loss, metrics, cases, aux_arrays, extras)


def _selection_score(ev: SplitEval, data: MultimodalData, select: str) -> float:
    """Lower is better."""
    if select == "loss":
        return ev.loss
    values = []
    for task in data.spec.tasks:
        name, higher = primary_metric(task)
        v = ev.metrics[task.name][name]
        values.append(-v if higher else v)
    return float(np.mean(values))


def _make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    return torch.optim.SGD(params, lr=tc.lr, weight_decay=tc.weight_decay, momentum=0.9)


def _make_schedule(opt, tc: TrainConfig, total_steps: int):
    if tc.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if tc.schedule == "poly":  # (1 - it / max_it)^0.9 per iteration, no warm-up (M4oE / Swin-UNet)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (1 - min(step, total_steps) / total_steps) ** 0.9)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


_GIT: str | None = None


def environment(device: torch.device) -> dict[str, Any]:
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
    return env


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _record(cfg: RunConfig, status: str, **kw) -> RunRecord:
    return RunRecord(key=cfg.key(), method=cfg.method, dataset=cfg.dataset, seed=cfg.seed, split_seed=cfg.split_seed,
                     preset=cfg.preset, code_version=__version__, config=cfg.to_dict(), status=status,
                     created_at=_now(), **kw)


@functools.lru_cache(maxsize=4)
def _load_data(dataset: str, split_seed: int, data_root: str | None, cache_dir: str | None = None) -> MultimodalData:
    """Datasets are immutable once built; a sweep reuses them across methods and seeds.
    Segmentation datasets preprocess into (and reuse) ``cache_dir`` (see :func:`_setup`)."""
    entry, _ = parse_name(dataset)
    options = {} if entry.embedded else {"data_root": data_root}
    if entry.segmentation:
        options["cache_dir"] = cache_dir
    return load_dataset(dataset, split_seed, **options)


def _setup(cfg: RunConfig, runs_dir: str | Path = "runs") -> tuple[torch.device, MultimodalData, type, bool | str]:
    """Determinism, seeds and data for a job; returns (device, data, method class, supports())."""
    device = torch.device(cfg.device)
    configure_determinism(cfg.deterministic)
    seed_everything(cfg.seed)
    cache = os.environ.get("BENCH_CACHE_DIR") or str(Path(runs_dir) / "cache")
    data = _load_data(cfg.dataset, cfg.split_seed, cfg.data_root, cache)
    cls, _ = parse_method(cfg.method)
    return device, data, cls, cls.supports(data.spec)


def _build_model(cls, data: MultimodalData, cfg: RunConfig, device: torch.device,
                 hparams: dict[str, Any] | None = None) -> torch.nn.Module:
    seed_everything(cfg.seed)  # model init never depends on what ran before it
    try:
        return cls(data.spec, cfg.hparams if hparams is None else hparams).to(device)
    except ValueError as exc:  # bad hparam values found by the method
        raise ConfigError(str(exc)) from None


def _is_seg(data) -> bool:
    return bool(getattr(data, "is_segmentation", False))


def _batch_options(model, data, tc: TrainConfig, train: bool = False) -> dict[str, Any]:
    """Options for ``data.batches``: the method's (slice size / patch) plus, for segmentation
    training, the harness's sampling and augmentation settings."""
    if not _is_seg(data):
        return {}
    opts = dict(model.data_options())
    if train:
        opts.update(augment=tc.augment, fg_oversample=tc.fg_oversample, balance=tc.balance)
    return opts


def _epoch_batches(data, tc: TrainConfig, opts: dict[str, Any]) -> int:
    return math.ceil(data.epoch_size("train", **opts) / tc.batch_size)


def _validate(model, data, tc: TrainConfig, device: torch.device, opts: dict[str, Any]) -> tuple[float, float]:
    """(validation loss, selection score; lower is better) on the validation split only."""
    if not _is_seg(data):
        val = evaluate_split(model, data, "val", tc.batch_size, device, with_metrics=tc.select != "loss")
        return val.loss, _selection_score(val, data, tc.select)
    loss = seg_val_loss(model, data, "val", tc.batch_size, device, opts)
    if tc.select == "loss":
        return loss, loss
    metrics, _, _ = evaluate_cases(model, data, "val", tc.batch_size, device, opts, tc.eval_space, tc.metric_compat)
    return loss, -float(np.nanmean([metrics[t.name]["dice"] for t in data.spec.tasks]))


def _overrides(cls, cfg: RunConfig) -> dict[str, Any]:
    """hparams that differ from the method's defaults at the run's preset (the name argument,
    e.g. ``single:left``, is already in the method name)."""
    base = resolve_hparams(cls.defaults(), cfg.preset, {})
    arg = getattr(cls, "name_arg", None)
    return {k: v for k, v in cfg.hparams.items() if k != arg and base.get(k) != v}


def _stage_epochs(stages, epochs: int) -> list[int]:
    """Each stage's share of the epoch budget (at least one epoch each; the last takes the rest)."""
    out = [max(1, int(round(s.fraction * epochs))) for s in stages[:-1]]
    return out + [max(1, epochs - sum(out))]


def run_job(cfg: RunConfig, store: RunStore | None, runs_dir: str | Path = "runs", progress: bool = True,
            force: bool = False) -> RunRecord:
    """Run (or resume) one job and store its record. Returns the stored record if already done.

    A method with several stages (``Method.stages``) trains them in order; each stage has its own
    optimiser and schedule and its weights are selected on validation; the next stage starts from
    them through ``Method.load_stage``. ``last.pt`` records the stage, so a killed run resumes
    inside the stage it was in."""
    key = cfg.key()
    if store is not None and not force:
        existing = store.get(key)
        if existing is not None and existing.status in ("ok", "skipped"):
            return existing
    device, data, cls, supported = _setup(cfg, runs_dir)
    if supported is not True:
        record = _record(cfg, "skipped", reason=str(supported), env=environment(device))
        if store is not None:
            store.put(record)
        return record
    tc = cfg.train
    stages = cls.stages(cfg.hparams)
    stage_epochs = _stage_epochs(stages, tc.epochs)
    ckpt = Checkpointer(Path(runs_dir) / "checkpoints" / key)
    gen = make_generator(cfg.seed)
    resumed = ckpt.load(ckpt.last_path) if not force else None
    done: list[dict[str, Any]] = resumed["stages_done"] if resumed is not None else []
    reset_peak_memory(device)
    for si, stage in enumerate(stages):
        if si < len(done):
            continue
        model = _build_model(cls, data, cfg, device, stage.hparams)
        opts = _batch_options(model, data, tc, train=True)
        eval_opts = _batch_options(model, data, tc)
        epochs = stage_epochs[si]
        total_steps = epochs * _epoch_batches(data, tc, opts)
        total_steps = min(tc.max_steps, total_steps) if tc.max_steps else total_steps
        st = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
              "train_time": 0.0, "step_times": [], "loaded": None}
        best_weights = None
        within = resumed is not None and resumed.get("stage", 0) == si
        if si > 0:  # also when resuming inside the stage: load_stage may freeze parameters
            previous = ckpt.load(ckpt.dir / f"stage{si - 1}.pt")
            if previous is None:
                raise RuntimeError(f"checkpoint of stage {si - 1} is missing under {ckpt.dir}; rerun with --force")
            st["loaded"] = model.load_stage(previous["model"], stage)
        opt = _make_optimizer(model, tc)
        sched = _make_schedule(opt, tc, total_steps)
        if within:
            model.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimizer"])
            sched.load_state_dict(resumed["schedule"])
            gen.set_state(resumed["generator"])
            set_rng_state(resumed["rng"])
            st, best_weights = resumed["state"], resumed["best_model"]
        resumed = None
        desc = f"{cfg.method} | {cfg.dataset} | seed {cfg.seed}" + (f" | {stage.name}" if len(stages) > 1 else "")
        bar = tqdm(total=epochs, initial=st["epoch"], desc=desc, disable=True if not progress else None, leave=False,
                   unit="ep", dynamic_ncols=True)
        try:
            while st["epoch"] < epochs and not (tc.max_steps and st["step"] >= tc.max_steps):
                model.train()
                epoch_start, losses = time.perf_counter(), []
                for batch in data.batches("train", tc.batch_size, gen, **opts):
                    t0 = time.perf_counter()
                    batch = _to_device(batch, device)
                    out = model(batch)
                    total, parts = model.loss(out, batch)
                    if not bool(torch.isfinite(total)):
                        raise NonFiniteLoss(st["step"], {k: v.item() for k, v in parts.items()})
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    if tc.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    opt.step()
                    sched.step()
                    st["step"] += 1
                    losses.append(total.detach().item())
                    st["step_times"] = st["step_times"][-(STEP_TIMES_KEPT - 1):] + [time.perf_counter() - t0]
                    if tc.max_steps and st["step"] >= tc.max_steps:
                        break
                st["train_time"] += time.perf_counter() - epoch_start
                st["epoch"] += 1
                entry = {"epoch": st["epoch"] - 1, "train_loss": float(np.mean(losses)) if losses else float("nan")}
                last_epoch = st["epoch"] >= epochs or bool(tc.max_steps and st["step"] >= tc.max_steps)
                if st["epoch"] % tc.val_every == 0 or last_epoch or best_weights is None:
                    val_loss, score = _validate(model, data, tc, device, eval_opts)
                    if not math.isfinite(score):
                        raise NonFiniteLoss(st["step"], {"val_selection_score": score})
                    if score < st["best_score"]:
                        st.update(best_score=score, best_epoch=st["epoch"] - 1, bad_epochs=0)
                        best_weights = copy.deepcopy(model.state_dict())
                    else:
                        st["bad_epochs"] += 1
                    entry.update(val_loss=val_loss, val_score=score)
                    bar.set_postfix(train=f"{entry['train_loss']:.3f}", val=f"{score:.3f}", best=st["best_epoch"])
                st["history"].append(entry)
                ckpt.save(ckpt.last_path, {"model": model.state_dict(), "best_model": best_weights,
                                           "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                                           "generator": gen.get_state(), "rng": rng_state(), "state": st,
                                           "stage": si, "stages_done": done})
                bar.update(1)
                if tc.patience and st["bad_epochs"] >= tc.patience:
                    break
        except NonFiniteLoss as exc:
            bar.close()
            record = _record(cfg, "failed", error=str(exc), env=environment(device),
                             summary={"failed_step": exc.step, "loss_parts": exc.parts, "history": st["history"],
                                      "stage": stage.name})
            if store is not None:
                store.put(record)
            ckpt.discard_last()
            return record
        bar.close()
        if len(stages) > 1:
            ckpt.save(ckpt.dir / f"stage{si}.pt", {"model": best_weights, "epoch": st["best_epoch"]})
        done = done + [{"name": stage.name, **{k: st[k] for k in ("epoch", "step", "best_score", "best_epoch",
                                                                  "history", "train_time", "step_times", "loaded")}}]
        model.load_state_dict(best_weights)

    best_weights = model.state_dict()
    ckpt.save(ckpt.best_path, {"model": best_weights, "epoch": done[-1]["best_epoch"]})
    eval_opts = _batch_options(model, data, tc)
    if _is_seg(data):
        val_metrics, _, _ = evaluate_cases(model, data, "val", tc.batch_size, device, eval_opts, tc.eval_space,
                                           tc.metric_compat)
        test_metrics, cases, test_aux = evaluate_cases(model, data, "test", tc.batch_size, device, eval_opts,
                                                       tc.eval_space, tc.metric_compat)   # the one test evaluation
        truth = {"domain": data.case_domain[data.splits["test"]], "domain_names": np.array([d.name for d in data.domains])}
        val, test = SplitEval(float("nan"), val_metrics, None, {}, {}), SplitEval(float("nan"), test_metrics, cases,
                                                                                    test_aux, truth)
    else:
        val = evaluate_split(model, data, "val", tc.batch_size, device)
        test = evaluate_split(model, data, "test", tc.batch_size, device, per_case=True)  # the one test evaluation
    interpretation = model.interpret(test.aux, test.extras)
    if interpretation:
        test.metrics["interpretation"] = interpretation
    step_times = [t for d in done for t in d["step_times"]]
    warm = step_times[min(5, len(step_times) // 5):] or step_times
    first = data.example_batch("test", tc.batch_size, **eval_opts)
    cost = {**parameter_counts(model),
            "flops_per_sample": flops_per_sample(model, _to_device(first, device)),
            "peak_memory_bytes": peak_memory_bytes(device),
            "train_time_s": sum(d["train_time"] for d in done),
            "step_time_s": statistics.median(warm) if warm else float("nan"),
            **timed_inference(lambda b: model(_to_device(b, device)), data.batches("test", tc.batch_size, **eval_opts),
                              device)}
    if len(stages) > 1:
        cost.update({f"train_time_s_{d['name']}": d["train_time"] for d in done})
    last = done[-1]
    summary = {"epochs_run": sum(d["epoch"] for d in done), "steps": sum(d["step"] for d in done),
               "best_epoch": last["best_epoch"], "selection": tc.select, "best_val_score": last["best_score"],
               "history": last["history"], "missing_modality": getattr(cls, "missing_modality", "unspecified"),
               "model_hparams": dict(model.hparams), "dataset_source": data.spec.source,
               "hparam_overrides": _overrides(cls, cfg)}
    if len(stages) > 1:
        summary["stages"] = [{k: d[k] for k in ("name", "epoch", "step", "best_epoch", "best_score", "history",
                                                "train_time")} | {"new_parameters": (d["loaded"] or {}).get("new", [])}
                             for d in done]
    record = _record(cfg, "ok", metrics={"val": val.metrics, "test": test.metrics}, cost=cost, env=environment(device),
                     summary=summary, checkpoint=str(ckpt.best_path))
    if store is not None:
        store.put(record, test.cases)
    ckpt.discard_last()
    return record


def cost_job(cfg: RunConfig, steps: int = 10, runs_dir: str | Path = "runs") -> dict[str, Any]:
    """Cost of a configuration without training it: parameters, FLOPs per sample (per slice for
    2-D segmentation models), median time of ``steps`` training steps (after 2 warm-up steps),
    inference latency and peak memory, measured exactly as ``run_job`` measures them
    (``bench cost``). A multi-stage method is measured as its final stage's model."""
    device, data, cls, supported = _setup(cfg, runs_dir)
    if supported is not True:
        raise ConfigError(str(supported))
    reset_peak_memory(device)
    model = _build_model(cls, data, cfg, device, cls.stages(cfg.hparams)[-1].hparams)
    opts = _batch_options(model, data, cfg.train, train=True)
    eval_opts = _batch_options(model, data, cfg.train)
    opt = _make_optimizer(model, cfg.train)
    gen = make_generator(cfg.seed)
    batches = []
    for batch in data.batches("train", cfg.train.batch_size, gen, drop_last=True, **opts):
        batches.append(batch)
        if len(batches) >= steps + 2:
            break
    times = []
    model.train()
    for i in range(steps + 2):
        batch = _to_device(batches[i % len(batches)], device)
        t0 = time.perf_counter()
        total, _ = model.loss(model(batch), batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    first = _to_device(data.example_batch("test", cfg.train.batch_size, **eval_opts), device)
    model.eval()
    with torch.no_grad():
        latency = timed_inference(lambda b: model(_to_device(b, device)),
                                  data.batches("test", cfg.train.batch_size, **eval_opts), device)
    return {"method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset, **parameter_counts(model),
            "flops_per_sample": flops_per_sample(model, first), "step_time_s": statistics.median(times),
            "batch_size": cfg.train.batch_size, **latency, "peak_memory_bytes": peak_memory_bytes(device)}
