"""Executor ``dask`` (``bench sweep --executor dask [--scheduler ADDRESS]``): a sweep's jobs on a
dask cluster.

Without a scheduler address the sweep starts a ``distributed.LocalCluster`` of ``workers``
processes with one dask thread each (torch threads per job: the job's config, as for the local
pool, so the keys and results are those of ``--executor local --workers N``); with one it
connects to that cluster (``dask scheduler`` / ``dask worker``, dask-jobqueue's ``SLURMCluster``,
...). Each task runs :func:`bench.runner.run_job` for one job in a worker process and writes the
record to the shared run store itself (one store connection per worker process); job claims
work exactly as in the local pool, and the loop that submits jobs, sets aside those held
elsewhere and counts them is :func:`bench.sweep.drive`, shared with the local pool.

Remote workers need the same bench code (a worker refuses a job whose code or data fingerprint
differs from the one in its key), the data under the same ``--data-root`` paths, a run
directory path they can write (checkpoints; shared, to resume a job on another machine) and a
store they can reach: PostgreSQL, or an SQLite file on a shared file system.
"""
from __future__ import annotations

import itertools
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    from .config import RunConfig
    from .store import RunStore

INSTALL_HINT = "--executor dask needs dask and distributed: pip install 'bench[dask]'"
#: worker environment variables dask sets to 1 by default; a sweep's workers keep this
#: process's values instead, as the local pool's do (numerical libraries see the same settings)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_SUBMISSIONS = itertools.count(1)
#: a job seeds torch's (process-global) generators and sets its thread count: two jobs in one
#: process would change each other's results
ONE_THREAD = ("every dask worker must have one thread (jobs seed torch's process-wide generators): start workers "
              "with `dask worker ADDRESS --nthreads 1 --nworkers N`, or SLURMCluster(processes=cores)")


def require_dask() -> None:
    """Raise a one-line ConfigError when dask or distributed is missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


# ---------------------------------------------------------------------------------- worker side

_STORES: dict[str, RunStore] = {}
_STORES_LOCK = threading.Lock()


def _worker_store(url: str) -> RunStore:
    """This worker process's connection to the store at ``url`` (opened once)."""
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            from .store import RunStore

            store = _STORES[url] = RunStore(url)
        return store


def _identity_mismatch(job: RunConfig) -> str | None:
    """Why this worker cannot run ``job`` under its key (other code or data here), else None."""
    import socket

    from datasets import canonical_name, parse_name
    from methods import method_info

    from . import __version__
    from .identity import code_fingerprint
    from .jobs import _data_fingerprint

    cls, _ = method_info(job.method)
    entry, _ = parse_name(job.dataset)
    code = f"{__version__}+{code_fingerprint([cls.module, entry.builder.__module__])}"
    if code != job.code_version:
        return (f"worker {socket.gethostname()} runs other code ({code}, the sweep has {job.code_version}); "
                "install the same bench there")
    data = _data_fingerprint(canonical_name(job.dataset), job.data_root)
    if data != job.data_fingerprint:
        return (f"worker {socket.gethostname()} sees other data under the data root ({data}, the sweep has "
                f"{job.data_fingerprint})")
    return None


def run_task(job: RunConfig, store_url: str, runs_dir: str, retry_failed: bool, suite: str | None):
    """One job in a dask worker: what :func:`bench.worker._run_one` returns (record, DatasetError
    text, JobBusy or JobDone); a worker with other code or data answers with the reason, as text."""
    from distributed import get_worker

    from datasets import DatasetError

    from .worker import _run_one

    if get_worker().state.nthreads != 1:
        raise ConfigError(ONE_THREAD)
    try:
        mismatch = _identity_mismatch(job)
    except DatasetError as exc:
        return str(exc)
    if mismatch:
        return mismatch
    return _run_one(job, _worker_store(store_url), runs_dir, retry_failed, suite)


# ---------------------------------------------------------------------------------- sweep side

class DaskExecutor:
    """:class:`bench.sweep.JobExecutor` on a dask cluster: every job is submitted at once (the
    scheduler queues them, and an adaptive cluster sees the demand); closing (also on Ctrl-C or
    an error) closes the client and a cluster started here."""

    slots = float("inf")

    def __init__(self, store_url: str, runs_dir: str | Path, retry_failed: bool, suite: str | None,
                 workers: int = 1, scheduler: str | None = None):
        require_dask()
        import dask
        from distributed import Client, LocalCluster

        # an absolute run directory: a worker may run elsewhere (the same path, on a shared file system)
        self.args = (store_url, str(Path(runs_dir).expanduser().resolve()), retry_failed, suite)
        self.cluster: Any = None
        self.client: Any = None
        self.futures: set = set()   # submitted, not yet collected (cancelled on abort)
        # processes started now ignore SIGINT (inherited): Ctrl-C reaches only this process,
        # which then closes the cluster itself
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if scheduler:
                self.client = Client(scheduler)
                if any(n != 1 for n in self.client.nthreads().values()):
                    raise ConfigError(ONE_THREAD)
            else:
                from .worker import _TRACKER_WARNING

                # as for the local pool: no resource-tracker warning when Ctrl-C stops the workers
                if _TRACKER_WARNING not in sys.warnoptions:
                    sys.warnoptions.append(_TRACKER_WARNING)
                environ = {f"distributed.nanny.pre-spawn-environ.{k}": None for k in _THREAD_VARIABLES}
                with dask.config.set(environ):
                    # no memory limit (the local pool has none); only errors are logged (closing a
                    # worker that is tearing torch down, or one stopped mid-job, logs warnings)
                    self.cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                                memory_limit=0, dashboard_address=":0", silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except BaseException:
            self.abort()
            raise
        finally:
            signal.signal(signal.SIGINT, previous)

    def submit(self, job: RunConfig):
        future = self.client.submit(run_task, job, *self.args, pure=False,   # a resubmitted job runs again
                                    key=f"bench-{job.label()}-{job.dataset}-seed{job.seed}-{next(_SUBMISSIONS)}")
        self.futures.add(future)
        return future

    def wait(self, futures: list, timeout: float) -> list:
        from distributed import wait

        try:
            wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        return [f for f in futures if f.done()]

    def result(self, future):
        self.futures.discard(future)   # dropping the future lets the cluster forget the result
        return future.result()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def abort(self) -> None:
        """Cancel what has not run; close the client and a cluster started here (its workers
        stop, and a job killed mid-way resumes from its checkpoint next time). Jobs already
        running on a remote cluster finish there and store their records."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not leave it half closed
        try:
            if self.client is not None:
                try:
                    self.client.cancel(list(self.futures))
                    if self.cluster is not None:   # ours: its workers are stopped mid-job, which they log
                        self.client.run(_quiet, nanny=False)
                        _quiet()
                except Exception:  # noqa: BLE001 - closing is all that is left to do
                    pass
            self.futures = set()
            self.close()
        finally:
            signal.signal(signal.SIGINT, previous)


def _quiet() -> None:
    """Silence distributed's loggers in this process (a LocalCluster being stopped on Ctrl-C)."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
