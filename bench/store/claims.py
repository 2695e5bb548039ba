"""Job claims: one worker per job, across terminals and machines sharing a store.

Before a job runs, its worker inserts a row ``(key, owner, claimed_at, heartbeat_at)`` in
``job_claims``; the primary key makes the insert succeed for exactly one worker. While the job
runs, a background thread renews ``heartbeat_at``. Another worker that finds the claim skips
the job for now and comes back to it; it may take the claim over only when the claim is dead:

* its heartbeat is older than the time-to-live (default 120 s, ``BENCH_CLAIM_TTL``), or
* its owner ran on this host and that process is gone (checked through ``/proc`` with the
  process start time, so a reused pid does not count), which makes a killed local sweep
  resumable at once instead of after the TTL.

The takeover is a conditional update on the old owner and heartbeat, so two workers cannot
both take over one dead claim. A finished job's claim is deleted.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

DEFAULT_TTL_S = 120.0


def claim_ttl() -> float:
    try:
        return max(1.0, float(os.environ.get("BENCH_CLAIM_TTL", DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


def _start_time(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot, from /proc), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    """``host:pid:start:nonce``: who holds a claim; enough to tell a dead local owner."""

    host: str
    pid: int
    start: str
    nonce: str

    @classmethod
    def current(cls) -> "Owner":
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_time(pid) or "?", uuid.uuid4().hex[:8])

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> "Owner | None":
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def owner_is_dead(text: str) -> bool:
    """True when the owner ran on this host and its process no longer exists."""
    owner = Owner.parse(text)
    if owner is None or owner.host != socket.gethostname():
        return False
    return _start_time(owner.pid) != owner.start


class Heartbeat:
    """Renews a claim every ``interval`` seconds in a daemon thread while the job runs."""

    def __init__(self, store, key: str, owner: str, interval: float):
        self.store, self.key, self.owner, self.interval = store, key, owner, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"claim-heartbeat-{key[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.key, self.owner)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the TTL is several beats long
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def now() -> float:
    return time.time()
