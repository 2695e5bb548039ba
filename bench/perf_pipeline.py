"""``bench perf m4oe``: does the segmentation data pipeline keep up with the training step?

Two measurements, for one segmentation method (default ``m4oe``) on one segmentation dataset
(default the generated ``synthetic-organs``) at one preset (default ``tiny``; ``paper`` gives the
paper's slice size and batch on whatever data is given):

1. **The pipeline alone.** For each worker count (``0`` = batches built in this process), the
   first ``batches`` training batches of an epoch (sampling, 2-D slice reads, augmentation,
   resizing to the model's slice size, exactly as training gets them; ``SegmentationData.batches``)
   are drawn and nothing else is done with them. Reported per worker count: slices/s after the
   first batch (the steady rate; median and min / max over the repetitions), that rate per
   worker, the time to the first batch (the worker start-up an epoch pays, since workers are not
   kept between epochs) and the rate with the first batch included. Repetitions rotate
   the order of the worker counts, so a slow period of a shared machine does not hit one of them
   only.
2. **Training fed by the pipeline.** ``steps`` training steps (forward, losses, backward,
   clipping, optimiser; :func:`bench.training.train_step`, after ``warmup`` steps) on ``device``
   with batches from the pipeline with each of ``train_workers``. Per step, the *wait* is the time
   from the end of the previous step to the moment its batch is in hand, the *compute* the time
   from there to the end of the step (host-to-device copy included; on CUDA the step ends at
   ``torch.cuda.synchronize``). Reported: the median step time (wait + compute), the median wait
   and the data-wait share = total wait / (total wait + total compute). An epoch that runs out
   is followed by the next (its workers' start-up counted as wait, as in training).

Goal (issue #19): a data-wait share under 5 % at paper size in bf16 on the GPU. On a CPU the
workers compete with the training step for the same cores, so the figures there say whether the
pipeline is correct and how fast one core builds slices, not what a GPU box will see.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .config import ConfigError
from .execution import Execution, make_scaler
from .perf import _sync


@dataclass
class PipelineRow:
    workers: int
    batches: int
    slices: int            # rows (slices, or 3-D patches) per repetition
    reps: int
    slices_per_s: float    # after the first batch (steady state): median over the repetitions
    slices_per_s_min: float
    slices_per_s_max: float
    per_worker: float      # median steady slices/s divided by max(workers, 1)
    first_batch_s: float   # median time to the first batch (worker start-up + one batch)
    overall_slices_per_s: float  # median, the first batch's wait included


@dataclass
class TrainRow:
    workers: int
    steps: int
    batch: int
    step_ms: float         # median over the timed steps of wait + compute
    wait_ms: float         # median wait for the batch
    compute_ms: float      # median compute
    wait_share: float      # total wait / (total wait + total compute)
    pin_memory: bool


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def clamp_workers(workers: Sequence[int], cores: int | None = None) -> list[int]:
    """The distinct worker counts that this machine has cores for (0 always kept), in order."""
    cores = available_cores() if cores is None else cores
    out = []
    for w in workers:
        if w < 0:
            raise ConfigError(f"--workers {w}: must be >= 0")
        if (w == 0 or w <= cores) and w not in out:
            out.append(w)
    return out


def setup(method: str, dataset: str, preset: str, device: str, sets: dict[str, str] | None = None,
          data_root: str | None = None, batch_size: int | None = None, precision: str = "fp32"):
    """(config, data, model, training batch options) built by the runner's own steps, as ``bench
    run`` builds them: determinism and matmul settings, data, the model with its execution options
    (``precision``) applied, and the training batch options without workers (the caller picks those)."""
    from .jobs import build_config
    from .runner import _batch_options, _build_model, _setup

    train = {"batch_size": batch_size} if batch_size else None
    cfg = build_config(method, dataset, preset=preset, sets=sets, train=train, device=device, data_root=data_root,
                       execution=Execution(precision=precision))
    dev, data, cls, supported = _setup(cfg)
    if not getattr(data, "is_segmentation", False):
        raise ConfigError(f"bench perf {method}: {dataset} is not a segmentation dataset; the data pipeline "
                          "benchmark is for segmentation (e.g. --dataset synthetic-organs)")
    if supported is not True:
        raise ConfigError(str(supported))
    model = _build_model(cls, data, cfg, dev, cls.stages(cfg.hparams)[-1].hparams)
    return cfg, data, model, _batch_options(model, data, cfg.train, train=True)


def measure_pipeline(data, batch_size: int, opts: dict[str, Any], workers: Sequence[int], batches: int,
                     reps: int, prefetch: int = 2, progress: Callable[[str], None] | None = None) -> list[PipelineRow]:
    """Slices/s of the first ``batches`` training batches of an epoch, per worker count."""
    n_epoch = data.epoch_size("train", **opts) // batch_size
    batches = max(1, min(batches, n_epoch)) if n_epoch else 1
    times: dict[int, list[float]] = {w: [] for w in workers}
    first: dict[int, list[float]] = {w: [] for w in workers}
    rows_seen: dict[int, int] = {}
    rows_first: dict[int, int] = {}
    order = list(workers)
    for r in range(reps):
        for w in order[r % len(order):] + order[:r % len(order)]:
            gen = torch.Generator().manual_seed(r)
            it = data.batches("train", batch_size, gen, drop_last=True, workers=w, prefetch=prefetch, **opts)
            n = k = 0
            t0 = time.perf_counter()
            try:
                for batch in it:
                    if k == 0:
                        first[w].append(time.perf_counter() - t0)
                        rows_first[w] = len(batch["id"])
                    n += len(batch["id"])
                    k += 1
                    if k >= batches:
                        break
            finally:
                it.close()
            times[w].append(time.perf_counter() - t0)
            rows_seen[w] = n
        if progress:
            progress(f"pipeline repetition {r + 1}/{reps}")
    out = []
    for w in workers:
        rest = rows_seen[w] - rows_first[w]
        steady = [rest / (t - f) if rest else rows_seen[w] / t for t, f in zip(times[w], first[w])]
        med = statistics.median(steady)
        out.append(PipelineRow(w, batches, rows_seen[w], reps, med, min(steady), max(steady), med / max(w, 1),
                               statistics.median(first[w]), statistics.median(rows_seen[w] / t for t in times[w])))
    return out


def measure_training(model, data, cfg, opts: dict[str, Any], device: torch.device, workers: int, steps: int,
                     warmup: int, prefetch: int = 2) -> TrainRow:
    """Training steps fed by the pipeline with ``workers`` workers: step time and data wait. The
    model comes from :func:`setup` (its precision already applied); fp16 steps get a loss scaler."""
    from .evaluation import to_device
    from .seeding import make_generator
    from .training import make_optimizer, train_step

    scaler = make_scaler(cfg.execution, device)
    tc = cfg.train
    opt = make_optimizer(model, tc)
    gen = make_generator(cfg.seed)
    pin = device.type == "cuda"
    model.train()
    waits, computes = [], []
    total = warmup + steps
    done = 0
    _sync(device)
    ready = time.perf_counter()
    while done < total:
        it = data.batches("train", tc.batch_size, gen, drop_last=True, workers=workers, pin_memory=pin,
                          prefetch=prefetch, **opts)
        got = False
        try:
            for batch in it:
                got = True
                t0 = time.perf_counter()
                train_step(model, to_device(batch, device), opt, tc.grad_clip, done, scaler=scaler)
                _sync(device)
                t1 = time.perf_counter()
                if done >= warmup:
                    waits.append(t0 - ready)
                    computes.append(t1 - t0)
                done += 1
                ready = t1
                if done >= total:
                    break
        finally:
            it.close()
        if not got:
            raise ConfigError(f"the training split yields no batch of {tc.batch_size}; lower --batch-size")
    step_times = [w + c for w, c in zip(waits, computes)]
    return TrainRow(workers, steps, tc.batch_size, statistics.median(step_times) * 1e3, statistics.median(waits) * 1e3,
                    statistics.median(computes) * 1e3, sum(waits) / (sum(waits) + sum(computes)), pin)


def run_pipeline_perf(method: str = "m4oe", dataset: str = "synthetic-organs", preset: str = "tiny",
                      device: str = "cpu", workers: Sequence[int] = (0, 1, 2, 4),
                      train_workers: Sequence[int] | None = None, reps: int = 3, batches: int = 20, steps: int = 8,
                      warmup: int = 1, batch_size: int | None = None, precision: str = "fp32",
                      sets: dict[str, str] | None = None, data_root: str | None = None, prefetch: int = 2,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both measurements (module docstring); a JSON-ready dict."""
    if reps < 1 or batches < 1 or steps < 1 or warmup < 0 or prefetch < 1:
        raise ConfigError("--reps, --batches, --steps and --prefetch must be >= 1, --warmup >= 0")
    cores = available_cores()
    workers = clamp_workers(workers, cores)
    dev = torch.device(device)
    if train_workers is None:   # what `bench run` picks (bench.execution): 0 on CPU, up to 8 on a GPU; and 0
        auto = Execution().workers(dev)
        train_workers = sorted({0, auto if auto else min(2, cores)})
    train_workers = clamp_workers(train_workers, cores)
    if progress:
        progress(f"loading {dataset} and building {method} ({preset})")
    cfg, data, model, opts = setup(method, dataset, preset, device, sets, data_root, batch_size=batch_size,
                                   precision=precision)
    bs = cfg.train.batch_size
    pipeline = measure_pipeline(data, bs, opts, workers, batches, reps, prefetch, progress)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    training = []
    for w in train_workers:
        if progress:
            progress(f"training steps with {w} worker(s)")
        model.load_state_dict(state)   # every worker count times the same model
        training.append(measure_training(model, data, cfg, opts, dev, w, steps, warmup, prefetch))
    return {"method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset, "device": device,
            "precision": precision, "batch_size": bs, "batch_options": {k: (list(v) if isinstance(v, tuple) else v)
                                                                        for k, v in opts.items()},
            "cores": cores, "torch_threads": torch.get_num_threads(), "reps": reps,
            "pipeline": [asdict(r) for r in pipeline], "training": [asdict(r) for r in training]}


def format_report(out: dict[str, Any]) -> str:
    from tabulate import tabulate

    o = out["batch_options"]
    size = f"patch {'x'.join(map(str, o['patch']))}" if o.get("dims") == 3 else f"slices {o.get('slice_size')}px"
    head = (f"{out['method']} on {out['dataset']}, preset {out['preset']}: batch {out['batch_size']}, {size}, "
            f"augment {o.get('augment')}, fg_oversample {o.get('fg_oversample')}; {out['cores']} cores, "
            f"{out['torch_threads']} torch threads")
    p = out["pipeline"]
    t1 = tabulate([[r["workers"], r["batches"], r["slices"], f"{r['slices_per_s']:.0f}",
                    f"{r['slices_per_s_min']:.0f} / {r['slices_per_s_max']:.0f}", f"{r['per_worker']:.0f}",
                    f"{r['first_batch_s'] * 1e3:.0f}", f"{r['overall_slices_per_s']:.0f}"] for r in p],
                  headers=["workers", "batches", "slices", "slices/s (median)", "min / max", "slices/s per worker",
                           "first batch ms", "slices/s incl. first"], tablefmt="github")
    t = out["training"]
    t2 = tabulate([[r["workers"], r["steps"], f"{r['step_ms']:.1f}", f"{r['wait_ms']:.2f}", f"{r['compute_ms']:.1f}",
                    f"{r['wait_share']:.1%}", "yes" if r["pin_memory"] else "no"] for r in t],
                  headers=["workers", "timed steps", "step ms (median)", "data wait ms (median)", "compute ms (median)",
                           "data-wait share", "pinned"], tablefmt="github")
    return (f"{head}\n\ndata pipeline alone ({out['reps']} repetitions of the first batches of an epoch; slices/s "
            f"after the first batch, whose wait includes the workers' start-up):\n{t1}\n\ntraining steps on {out['device']} ({out['precision']}) fed by the pipeline; "
            f"data-wait share = wait / (wait + compute), goal < 5%:\n{t2}")
