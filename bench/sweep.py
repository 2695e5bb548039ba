"""Sweeps: expand (methods x datasets x seeds) into job configs and run the missing ones.

Every job has an idempotent key, so a sweep skips keys already done in the store; an
interrupted sweep resumes (the interrupted job itself from its last checkpoint) and a finished
sweep reruns nothing. Executors: ``local`` (in-process, one job at a time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from datasets import DatasetError, load_dataset, parse_name

from .config import RunConfig
from .runner import build_config, run_job
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
    return load_dataset(dataset, split_seed).spec.modality_names if entry.embedded else []


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


def run_sweep(jobs: list[RunConfig], store: RunStore, runs_dir: str | Path, retry_failed: bool = False,
              progress: bool = True, on_record: Callable | None = None) -> SweepReport:
    report = SweepReport(planned=len(jobs))
    done = store.done_keys(("ok", "skipped") if retry_failed else ("ok", "skipped", "failed"))
    todo = [j for j in jobs if j.key() not in done]
    report.already_done = len(jobs) - len(todo)
    bar = tqdm(todo, desc="sweep", unit="job", disable=True if not progress else None, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(f"{job.method} | {job.dataset} | seed {job.seed}")
        try:
            record = run_job(job, store, runs_dir, progress=False, force=retry_failed and store.status(job.key()) == "failed")
        except DatasetError as exc:
            report.unavailable.append(f"{job.method} {job.dataset} seed {job.seed}: {exc}")
            continue
        report.ran += 1
        if record.status == "failed":
            report.failed.append(f"{job.method} {job.dataset} seed {job.seed}: {record.error}")
        elif record.status == "skipped":
            report.skipped.append(f"{job.method} {job.dataset}: {record.reason}")
        if on_record:
            on_record(record)
    return report
