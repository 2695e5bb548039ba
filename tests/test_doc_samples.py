"""Every Python sample in README.md and docs/*.md runs, or says why it cannot.

A sample is a ```python block; the HTML comment on the line before it says what to do with it:

- ``<!-- sample: method NAME ... -->``: executed inside the ``methods`` package (its relative
  imports resolve there), then the method it registers trains one epoch on wdbc;
- ``<!-- sample: dataset NAME ... -->``: executed inside the ``datasets`` package, then the
  dataset is built and ``early`` trains one epoch on it (``read from a data root``: a table.csv
  of the columns the sample reads is written under a temporary data root first);
- ``<!-- sample: not run (reason) -->``: not executed (a cluster, a signature).

A block without a comment fails the test, so a new sample is either run or explained.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!--\s*sample:\s*(.*?)\s*-->")


def _samples() -> list[tuple[str, int, str, str]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "```python":
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            mark = MARK.search(lines[i - 1]) if i else None
            out.append((str(path.relative_to(ROOT)), i + 1, mark.group(1) if mark else "", "\n".join(lines[i + 1:end])))
    return out


SAMPLES = _samples()


def test_every_sample_is_run_or_explained() -> None:
    bare = [f"{f}:{line}" for f, line, mark, _ in SAMPLES if not mark]
    assert not bare, f"python samples without a <!-- sample: ... --> line before them: {bare}"
    assert any(m.startswith("method") for _, _, m, _ in SAMPLES) and any(m.startswith("dataset") for _, _, m, _ in SAMPLES)


def _table(folder: Path) -> None:
    rng = np.random.default_rng(0)
    n = 240
    a, b = rng.normal(size=(n, 5)), rng.normal(size=(n, 3))
    y = (a[:, 0] + b[:, 0] > 0).astype(int)
    lines = [",".join([*(f"a{i}" for i in range(5)), *(f"b{i}" for i in range(3)), "y", "patient"])]
    for r in range(n):
        bs = ["", "", ""] if r % 10 == 0 else [f"{v:.4f}" for v in b[r]]  # every 10th row without modality b
        lines.append(",".join([*(f"{v:.4f}" for v in a[r]), *bs, str(y[r]), str(r // 2)]))
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text("\n".join(lines) + "\n")


_RUN = """
import contextlib, io, json, sys
src = open(sys.argv[1]).read()
package, name, method, dataset, data_root, store = json.loads(sys.argv[2])
exec(compile(src, sys.argv[3], "exec"), {"__name__": package + "._doc_sample", "__package__": package})
from bench.cli import main
argv = ["run", "--method", method, "--dataset", dataset, "--preset", "tiny", "--set", "epochs=1", "--store", store]
if data_root:
    argv += ["--data-root", data_root]
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = main(argv + ["--json"])
record = json.loads(out.getvalue())
print(json.dumps({"rc": rc, "method": record["method"], "dataset": record["dataset"],
                  "tasks": sorted(record["metrics"]["test"])}))
"""


@pytest.mark.parametrize("where, line, mark, code", [s for s in SAMPLES if not s[2].startswith("not run")],
                         ids=[f"{s[0]}:{s[1]}" for s in SAMPLES if not s[2].startswith("not run")])
def test_sample_runs(where, line, mark, code, tmp_path) -> None:
    kind, name = mark.split()[:2]
    name = name.rstrip(",")
    data_root = ""
    if "data root" in mark:
        data_root = str(tmp_path / "data")
        _table(tmp_path / "data" / name)
    src = tmp_path / "sample.py"
    src.write_text(code)
    package = "methods" if kind == "method" else "datasets"
    method, dataset = (name, "wdbc") if kind == "method" else ("early", name)
    args = json.dumps([package, name, method, dataset, data_root, f"sqlite:///{tmp_path / 's.db'}"])
    out = subprocess.run([sys.executable, "-c", _RUN, str(src), args, f"{where}:{line}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{where}:{line}: {out.stderr[-3000:]}"
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and got["method"] == method and got["dataset"] == dataset and got["tasks"], got
