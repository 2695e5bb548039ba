"""Ctrl-C on a running ``bench`` command, as a terminal sends it (tests of interrupted sweeps)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.store import RunStore, default_url

ROOT = Path(__file__).resolve().parents[1]


def _default_sigint() -> None:
    """In the child: SIGINT back to its default action. A test run started in the background by
    a non-interactive shell (as CI may do) has SIGINT ignored, the child would inherit that, and
    Python does not install its KeyboardInterrupt handler for an ignored signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after_first_run(args: list[str], runs_dir: Path, env: dict[str, str], wait_s: float = 180):
    """Start ``python -m bench *args`` in its own process group, wait until the store under
    ``runs_dir`` holds a run, send SIGINT to the whole group (what Ctrl-C in a terminal does) and
    return the finished process and its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_sigint)
    store = RunStore(default_url(runs_dir))
    deadline = time.time() + wait_s
    while time.time() < deadline and store.count() < 1 and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc, err
