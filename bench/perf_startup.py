"""``python -m bench perf startup``: what a newcomer waits for before anything trains.

Each command runs in a fresh interpreter, ``reps`` times, next to ``python -c "import torch"``
(the floor any job pays): wall time as the parent sees it (interpreter start included) and the
child's peak resident memory (``ru_maxrss``). The machine is shared and noisy, so every figure is
the median with the min-max spread of the repetitions, taken in one interleaved run (rep 1 of
every command, then rep 2, ...), so that a slow spell hits all commands alike. A benchmark, not
a timed test (docs/performance.md).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

#: runs in the child: the command (bench's CLI in-process, or plain Python), its output thrown
#: away, then the peak RSS in KiB on the last line of stderr
_CHILD = r"""
import contextlib, io, json, resource, sys
argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    if argv and argv[0] == "--python":
        exec(argv[1])
    else:
        from bench.cli import main
        try:
            rc = main(argv)
        except SystemExit as exc:  # --help exits
            rc = exc.code or 0
        if rc:
            raise SystemExit(f"exit status {rc}")
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
"""


@dataclass
class StartupRow:
    command: str
    reps: int
    wall_s_median: float
    wall_s_min: float
    wall_s_max: float
    rss_mib_median: float
    rss_mib_min: float
    rss_mib_max: float


def commands(tmp: Path) -> dict[str, Callable[[int], list[str]]]:
    """Shown name -> argv of repetition i (each run gets a fresh store so that none is skipped as done)."""
    empty = f"sqlite:///{tmp / 'empty.db'}"
    return {
        'python -c "import torch"': lambda i: ["--python", "import torch"],
        "bench --help": lambda i: ["--help"],
        "bench list methods": lambda i: ["list", "methods"],
        "bench run --method early --dataset wdbc --preset tiny": lambda i: [
            "run", "--method", "early", "--dataset", "wdbc", "--preset", "tiny",
            "--store", f"sqlite:///{tmp / f'run{i}.db'}", "--runs-dir", str(tmp / f"runs{i}")],
        "bench leaderboard (empty store)": lambda i: ["leaderboard", "--store", empty],
    }


def _once(argv: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(argv)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"bench perf startup: {' '.join(argv)} failed: {out.stderr.strip().splitlines()[-1:]}")
    rss = json.loads(out.stderr.strip().splitlines()[-1])["maxrss_kib"] / 1024
    return wall, rss


def run_startup(reps: int = 5, progress: Callable[[], None] | None = None) -> list[StartupRow]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        cmds = commands(Path(tmp))
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        rss: dict[str, list[float]] = {k: [] for k in cmds}
        for i in range(reps):
            for name, argv in cmds.items():
                w, r = _once(argv(i))
                walls[name].append(w)
                rss[name].append(r)
                if progress:
                    progress()
    return [StartupRow(name, reps, statistics.median(walls[name]), min(walls[name]), max(walls[name]),
                       statistics.median(rss[name]), min(rss[name]), max(rss[name])) for name in walls]


def format_rows(rows: list[StartupRow]) -> str:
    from tabulate import tabulate

    def span(mid: float, lo: float, hi: float, digits: int) -> str:
        return f"{mid:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"

    table = [[r.command, span(r.wall_s_median, r.wall_s_min, r.wall_s_max, 2),
              span(r.rss_mib_median, r.rss_mib_min, r.rss_mib_max, 0)] for r in rows]
    head = (f"startup: each command in a fresh interpreter, {rows[0].reps} repetitions interleaved; "
            "median (min-max)") if rows else "startup: no rows"
    return head + "\n" + tabulate(table, headers=["command", "wall s", "peak RSS MiB"], tablefmt="github")


def as_dicts(rows: list[StartupRow]) -> list[dict]:
    return [asdict(r) for r in rows]
