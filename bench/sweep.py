"""Sweeps: expand (methods x datasets x seeds) into job configs and run the missing ones.

Every job has an idempotent key, so a sweep skips keys already done in the store; an interrupted
sweep resumes (the interrupted job itself from its last checkpoint) and a finished sweep reruns
nothing. Executor ``local``: in-process one job at a time (``workers=1``), or a pool of worker
processes on this machine (``workers > 1``), each with ``cores // workers`` torch threads; the
thread count is part of every job's key, since floating-point sums depend on it. Executor
``dask`` (:mod:`bench.dask_executor`): the same jobs on a dask cluster, through the same loop
(:func:`drive`), so claims, waiting and the report work alike.

Several sweeps may share one store (terminals or machines): each job is claimed before it runs
(``bench.store.claims``), a job claimed by another live worker is set aside and looked at again
until it is done there or its claim dies, and each sweep reports what it ran and what others
ran. :func:`plan` tells, without running anything, which jobs are done, to run, stale (stored
with other code or data, and which) or running elsewhere (``bench sweep --dry-run``).
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from tqdm.auto import tqdm

from datasets import DatasetError

from .config import RunConfig
from .execution import Execution
from .jobs import build_config, default_threads, modality_names
from .runner import JobBusy, JobDone
from .store import RunStore
from .worker import _TRACKER_WARNING, BAD_DATA, UNAVAILABLE, DataProblem, _run_one, data_problem  # noqa: F401

#: seconds between looks at jobs other workers are running
POLL_S = 2.0


@dataclass
class SweepReport:
    planned: int = 0
    already_done: int = 0
    ran: int = 0
    ran_elsewhere: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)   # the data is not on this machine (may be fine)
    bad_data: list[str] = field(default_factory=list)      # the data is here but cannot be read (an error)


def sweep_threads(workers: int) -> int:
    """CPU threads of each of ``workers`` parallel jobs (all of them share the cores)."""
    return max(1, default_threads() // max(1, workers))


def expand(methods: list[str], datasets: list[str], seeds: list[int], preset: str = "small",
           sets: dict[str, str] | None = None, train: dict[str, Any] | None = None, split_seed: int = 0,
           device: str = "cpu", data_root: str | None = None, threads: int | None = None,
           execution: Execution | None = None) -> list[RunConfig]:
    """Job configs; ``single`` becomes ``single:<modality>`` for every modality (for
    segmentation datasets: every image channel) of each dataset."""
    jobs: list[RunConfig] = []
    for dataset in datasets:
        names: list[str] = []
        for method in methods:
            if method == "single":
                names += [f"single:{m}" for m in modality_names(dataset, split_seed, data_root)]
            else:
                names.append(method)
        for method in names:
            for seed in seeds:
                jobs.append(build_config(method, dataset, seed=seed, split_seed=split_seed, preset=preset, sets=sets,
                                         train=train, device=device, data_root=data_root, threads=threads,
                                         execution=execution))
    return jobs


def _job_line(job: RunConfig) -> str:
    return f"{job.label()} {job.dataset} seed {job.seed}"


# ------------------------------------------------------------------------------------------ plan

@dataclass
class PlannedJob:
    job: RunConfig
    state: str          # done | failed | skipped | to run | stale | running elsewhere
    why: str = ""


def plan(jobs: list[RunConfig], store: RunStore, retry_failed: bool = False) -> list[PlannedJob]:
    """What a sweep would do with each job, and why, from the store alone."""
    done = {}
    for status in ("ok", "skipped", "failed"):
        for key in store.done_keys((status,)):
            done[key] = status
    stored = store.by_request(j.request_id() for j in jobs)
    out = []
    for job in jobs:
        key = job.key()
        status = done.get(key)
        if status == "ok":
            out.append(PlannedJob(job, "done"))
        elif status == "skipped":
            out.append(PlannedJob(job, "skipped", "the method does not support the dataset"))
        elif status == "failed" and not retry_failed:
            out.append(PlannedJob(job, "failed", "stored as failed; --retry-failed reruns it"))
        elif holder := store.claim_holder(key):
            out.append(PlannedJob(job, "running elsewhere", holder))
        else:
            older = [r for r in stored.get(job.request_id(), []) if r["key"] != key]
            if older:
                out.append(PlannedJob(job, "stale", _why_stale(older[0], job)))
            else:
                out.append(PlannedJob(job, "to run", "retry of a failed run" if status == "failed" else ""))
    return out


#: plan states of jobs whose data a dry run found absent / present but unreadable
def probe_data(planned: list[PlannedJob], runs_dir: str | Path) -> list[PlannedJob]:
    """``--dry-run``: read each file-backed per-sample dataset that a job to run needs, once per
    (dataset, split seed, data root), as the run will, so that the plan says what the run will do:
    its jobs become ``unavailable`` (absent) or ``bad data`` (present but unreadable) with the
    reason. Embedded datasets cannot be corrupt and are not read; segmentation datasets are not
    preprocessed by a dry run (their folders are checked when the run reads them)."""
    import os

    from datasets import parse_name

    from .jobs import load_data

    seen: dict[tuple, tuple[str, str] | None] = {}
    out = []
    for p in planned:
        job = p.job
        entry = parse_name(job.dataset)[0]
        if p.state not in ("to run", "stale") or entry.embedded or entry.segmentation:
            out.append(p)
            continue
        at = (job.dataset, job.split_seed, job.data_root)
        if at not in seen:
            try:
                load_data(job.dataset, job.split_seed, job.data_root,
                          os.environ.get("BENCH_CACHE_DIR") or str(Path(runs_dir) / "cache"))
                seen[at] = None
            except DatasetError as exc:
                seen[at] = data_problem(exc)
        out.append(p if seen[at] is None else PlannedJob(job, *seen[at]))
    return out


def _why_stale(old: dict[str, Any], job: RunConfig) -> str:
    reasons = []
    if old["code_version"] != job.code_version:
        reasons.append(f"code changed ({old['code_version']} -> {job.code_version})")
    if old.get("data") != job.data_fingerprint:
        reasons.append(f"data changed ({old.get('data') or 'not fingerprinted'} -> {job.data_fingerprint})")
    if old.get("evaluation") != json.loads(json.dumps(job.evaluation)):
        reasons.append("evaluation protocol changed (robustness conditions)" if old.get("evaluation")
                       else "stored before the robustness evaluation")
    return "; ".join(reasons) or "stored under another key"


# ------------------------------------------------------------------------------------------- run

_WORKER_STORE: RunStore | None = None


def _worker_init(store_url: str) -> None:
    """Pool worker set-up: die with the parent (a SIGKILLed sweep leaves no orphans that could
    write records behind a resumed one) and open one store connection. Each job sets its own
    thread count from its config."""
    global _WORKER_STORE
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    _WORKER_STORE = RunStore(store_url)


def _worker_run(job: RunConfig, runs_dir: str, retry_failed: bool, suite: str | None):
    return _run_one(job, _WORKER_STORE, runs_dir, retry_failed, suite)


def run_sweep(jobs: list[RunConfig], store: RunStore, runs_dir: str | Path, retry_failed: bool = False,
              progress: bool = True, on_record: Callable | None = None, workers: int = 1,
              suite: str | None = None, executor: str = "local", scheduler: str | None = None) -> SweepReport:
    """Run the jobs not yet done, in ``workers`` processes (each job with the threads its config
    names). Jobs another worker holds are retried until they are done there; a job whose worker
    died is taken over. Each job's record is written by the process that ran it, in one transaction.

    ``executor`` ``local``: this process (``workers`` 1) or a pool of ``workers`` processes here;
    ``dask``: a dask cluster (:mod:`bench.dask_executor`), a ``LocalCluster`` of ``workers``
    processes, or the one whose scheduler is at ``scheduler``. Both feed the same loop (claims,
    jobs held elsewhere, progress, report)."""
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; choose local or dask")
    report = SweepReport(planned=len(jobs))
    done = store.done_keys(("ok", "skipped") if retry_failed else ("ok", "skipped", "failed"))
    todo = deque(j for j in jobs if j.key() not in done)
    report.already_done = len(jobs) - len(todo)
    bar = tqdm(total=len(todo), desc="sweep", unit="job", disable=True if not progress else None, dynamic_ncols=True)
    waiting: list[RunConfig] = []   # held by other workers

    def collect(job: RunConfig, result) -> None:
        if isinstance(result, JobBusy):
            waiting.append(job)
            return
        bar.update(1)
        if isinstance(result, JobDone):
            report.ran_elsewhere += 1
            return
        bar.set_postfix_str(_job_line(job))
        if isinstance(result, DataProblem):
            (report.unavailable if result.state == UNAVAILABLE else report.bad_data).append(
                f"{_job_line(job)}: {result.why}")
            return
        report.ran += 1
        if result.status == "failed":
            report.failed.append(f"{_job_line(job)}: {result.error}")
        elif result.status == "skipped":
            report.skipped.append(f"{job.method} {job.dataset}: {result.reason}")
        if on_record:
            on_record(result)

    def recheck() -> None:
        """Jobs held elsewhere: count those done there, requeue those whose claim died."""
        still = []
        for job in waiting:
            status = store.status(job.key())
            if status in ("ok", "skipped", "failed") and not (retry_failed and status == "failed"):
                report.ran_elsewhere += 1
                bar.update(1)
            elif store.claim_holder(job.key()) is None:
                todo.append(job)
            else:
                still.append(job)
        waiting[:] = still

    try:
        if executor == "local" and (workers <= 1 or len(todo) <= 1):
            while todo or waiting:
                while todo:
                    job = todo.popleft()
                    collect(job, _run_one(job, store, runs_dir, retry_failed, suite))
                if waiting:
                    time.sleep(POLL_S)
                    recheck()
        elif todo:
            if executor == "dask":
                from .dask_executor import DaskExecutor

                pool: JobExecutor = DaskExecutor(store.url, runs_dir, retry_failed, suite, workers, scheduler)
            else:
                pool = LocalPool(store.url, runs_dir, retry_failed, suite, workers)
            drive(pool, todo, waiting, collect, recheck)
    finally:
        bar.close()
    return report


class JobExecutor(Protocol):
    """Where a sweep's jobs run: :func:`drive` submits up to ``slots`` jobs at a time and hands
    each result (a record, a DatasetError text, :class:`JobBusy` or :class:`JobDone`) to the sweep."""

    slots: float

    def submit(self, job: RunConfig) -> Any: ...
    def wait(self, futures: list, timeout: float) -> list: ...   # the finished ones (maybe none)
    def result(self, future) -> Any: ...
    def close(self) -> None: ...   # after the last job
    def abort(self) -> None: ...   # Ctrl-C or an error: stop now, free everything


def drive(pool: JobExecutor, todo: deque, waiting: list, collect: Callable, recheck: Callable) -> None:
    """Run ``todo`` on ``pool`` until every job is collected; jobs held elsewhere (``waiting``)
    are rechecked while the pool has nothing else to do. Always closes (or aborts) the pool."""
    running: dict = {}
    try:
        while todo or running or waiting:
            while todo and len(running) < pool.slots:
                job = todo.popleft()
                running[pool.submit(job)] = job
            if running:
                for fut in pool.wait(list(running), POLL_S):
                    collect(running.pop(fut), pool.result(fut))
            else:
                time.sleep(POLL_S)
            if waiting and (not running or not todo):
                recheck()
    except BaseException:
        # interrupted: stop now; a job killed mid-way leaves no record and resumes next time
        pool.abort()
        raise
    pool.close()


class LocalPool:
    """Executor ``local`` with ``workers`` > 1: spawned worker processes on this machine."""

    def __init__(self, store_url: str, runs_dir: str | Path, retry_failed: bool, suite: str | None, workers: int):
        # multiprocessing's resource tracker (a helper process started with this interpreter's -W
        # options) warns about the pool's queue semaphores when Ctrl-C stops the pool; they are
        # cleaned up all the same, so keep that warning off the user's terminal
        if _TRACKER_WARNING not in sys.warnoptions:
            sys.warnoptions.append(_TRACKER_WARNING)
        self.slots, self.args = workers, (str(runs_dir), retry_failed, suite)
        ctx = multiprocessing.get_context("spawn")
        # workers start with SIGINT ignored (an ignored signal stays ignored in the spawned
        # interpreter): Ctrl-C reaches only this process, which stops the workers itself
        with _sigint_ignored():
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(store_url,))

    def submit(self, job: RunConfig):
        # a worker process may be spawned by this submit (one per submit until there are
        # `workers`): it must start with SIGINT ignored. A Ctrl-C that arrives while SIGINT is
        # ignored here is lost, so ignore it only while the pool is still growing (its first
        # `workers` submits), never once every worker runs
        if len(getattr(self.pool, "_processes", None) or {}) >= self.slots:
            return self.pool.submit(_worker_run, job, *self.args)
        with _sigint_ignored():
            return self.pool.submit(_worker_run, job, *self.args)

    def wait(self, futures: list, timeout: float) -> list:
        return list(wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)[0])

    def result(self, future):
        return future.result()

    def close(self) -> None:
        self.pool.shutdown()

    def abort(self) -> None:
        for proc in list(getattr(self.pool, "_processes", {}).values()):
            proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)  # joins the dead workers, frees their queues


@contextlib.contextmanager
def _sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
