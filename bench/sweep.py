"""Sweeps: expand (methods x datasets x seeds) into job configs and run the missing ones.

Every job has an idempotent key, so a sweep skips keys already done in the store; an
interrupted sweep resumes (the interrupted job itself from its last checkpoint) and a finished
sweep reruns nothing. Executor ``local``: in-process one job at a time (``workers=1``), or a
pool of worker processes on this machine (``workers > 1``).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from datasets import DatasetError, parse_name

from .config import RunConfig
from .runner import _load_data, build_config, run_job
from .store import RunStore


@dataclass
class SweepReport:
    planned: int = 0
    already_done: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


def _modalities(dataset: str, split_seed: int) -> list[str]:
    entry, _ = parse_name(dataset)
    return _load_data(dataset, split_seed, None).spec.modality_names if entry.embedded else []


def expand(methods: list[str], datasets: list[str], seeds: list[int], preset: str = "small",
           sets: dict[str, str] | None = None, train: dict[str, Any] | None = None, split_seed: int = 0,
           device: str = "cpu", data_root: str | None = None) -> list[RunConfig]:
    jobs: list[RunConfig] = []
    for dataset in datasets:
        names: list[str] = []
        for method in methods:
            names += [f"single:{m}" for m in _modalities(dataset, split_seed)] if method == "single" else [method]
        for method in names:
            for seed in seeds:
                jobs.append(build_config(method, dataset, seed=seed, split_seed=split_seed, preset=preset, sets=sets,
                                         train=train, device=device, data_root=data_root))
    return jobs


def _job_line(job: RunConfig) -> str:
    return f"{job.method} {job.dataset} seed {job.seed}"


def _run_one(job: RunConfig, store: RunStore, runs_dir: str | Path, retry_failed: bool):
    """Run one job; returns its record, or the DatasetError text when its data is unavailable."""
    try:
        return run_job(job, store, runs_dir, progress=False, force=retry_failed and store.status(job.key()) == "failed")
    except DatasetError as exc:
        return str(exc)


_WORKER_STORE: RunStore | None = None
_TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


def _worker_init(store_url: str, threads: int) -> None:
    """Pool worker set-up: die with the parent (a SIGKILLed sweep leaves no orphans that could
    write records behind a resumed one), one torch thread pool per worker, one store connection."""
    global _WORKER_STORE
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(threads)
    _WORKER_STORE = RunStore(store_url)


def _worker_run(job: RunConfig, runs_dir: str, retry_failed: bool):
    return _run_one(job, _WORKER_STORE, runs_dir, retry_failed)


def run_sweep(jobs: list[RunConfig], store: RunStore, runs_dir: str | Path, retry_failed: bool = False,
              progress: bool = True, on_record: Callable | None = None, workers: int = 1) -> SweepReport:
    """Run the jobs not yet done. ``workers > 1`` runs them in that many processes (each with
    ``cores // workers`` torch threads): small models are bound by per-step overhead, so two
    single-threaded jobs finish sooner than two two-threaded ones in turn. Each job's record is
    written by the process that ran it, in one transaction, as with one worker."""
    report = SweepReport(planned=len(jobs))
    done = store.done_keys(("ok", "skipped") if retry_failed else ("ok", "skipped", "failed"))
    todo = [j for j in jobs if j.key() not in done]
    report.already_done = len(jobs) - len(todo)
    bar = tqdm(total=len(todo), desc="sweep", unit="job", disable=True if not progress else None, dynamic_ncols=True)

    def collect(job: RunConfig, result) -> None:
        bar.update(1)
        bar.set_postfix_str(_job_line(job))
        if isinstance(result, str):
            report.unavailable.append(f"{_job_line(job)}: {result}")
            return
        report.ran += 1
        if result.status == "failed":
            report.failed.append(f"{_job_line(job)}: {result.error}")
        elif result.status == "skipped":
            report.skipped.append(f"{job.method} {job.dataset}: {result.reason}")
        if on_record:
            on_record(result)

    try:
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                collect(job, _run_one(job, store, runs_dir, retry_failed))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            # multiprocessing's resource tracker (a helper process started with this interpreter's
            # -W options) warns about the pool's queue semaphores when Ctrl-C stops the pool; they
            # are cleaned up all the same, so keep that warning off the user's terminal
            if _TRACKER_WARNING not in sys.warnoptions:
                sys.warnoptions.append(_TRACKER_WARNING)
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(store.url, threads))
            # workers start with SIGINT ignored (an ignored signal stays ignored in the spawned
            # interpreter): Ctrl-C reaches only this process, which stops the workers itself
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                futures = {pool.submit(_worker_run, job, str(runs_dir), retry_failed): job for job in todo}
            finally:
                signal.signal(signal.SIGINT, previous)
            try:
                for fut in as_completed(futures):
                    collect(futures[fut], fut.result())
            except BaseException:
                # interrupted: stop now; a job killed mid-way leaves no record and resumes next time
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                pool.shutdown(wait=True, cancel_futures=True)  # joins the dead workers, frees their queues
                raise
            pool.shutdown()
    finally:
        bar.close()
    return report
