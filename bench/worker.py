"""What a sweep worker does with one job, whichever executor runs it (the local process pool of
``bench.sweep`` or a dask worker, ``bench.dask_executor``): run it and turn the outcomes a sweep
must tell apart into plain values. Kept apart from both executors so neither imports the other."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetError

from .config import RunConfig
from .runner import JobBusy, JobDone, run_job
from .store import RunStore

#: the resource tracker's leaked-semaphore warning, silenced in worker processes
_TRACKER_WARNING = "ignore:resource_tracker:UserWarning"
#: the two ways a job's data can fail it
UNAVAILABLE, BAD_DATA = "unavailable", "bad data"


@dataclass(frozen=True)
class DataProblem:
    """Why a job could not read its data: ``state`` UNAVAILABLE or BAD_DATA, and the one line."""
    state: str
    why: str


def data_problem(exc: DatasetError) -> tuple[str, str]:
    """(state, one line) of a DatasetError: absent data is ``unavailable`` (a paper dataset not on
    this machine), anything else (malformed, corrupt) is ``bad data``."""
    from datasets import DatasetNotFound

    return (UNAVAILABLE if isinstance(exc, DatasetNotFound) else BAD_DATA), " ".join(str(exc).split())


def _run_one(job: RunConfig, store: RunStore, runs_dir: str | Path, retry_failed: bool, suite: str | None):
    """Run one job; returns its record, a :class:`DataProblem` when its data cannot be read, a
    :class:`JobBusy` when another worker holds it, or a :class:`JobDone` when another finished it."""
    try:
        return run_job(job, store, runs_dir, progress=False, suite=suite, reuse=False,
                       force=retry_failed and store.status(job.key()) == "failed")
    except DatasetError as exc:   # a plain pair: DatasetError subclasses do not all survive pickling
        return DataProblem(*data_problem(exc))
    except (JobBusy, JobDone) as exc:
        return exc
