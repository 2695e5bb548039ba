"""Slow end-to-end check of the segmentation acceptance command: M4oE on synthetic-organs at the
tiny preset, from the CLI, with per-class Dice well above the trivial all-background score (0).

The default loss is the reference's per-sample CE + Dice, which at this 24-epoch budget learns
less than the pooled form and varies a lot by seed (docs/segmentation.md: seeds 0-2 give 0.378 / 0.185 / 0.207);
the thresholds are set for seed 0 on one thread (0.378; every domain >= 0.368; livers 0.69 / 0.86)
with room for other CPUs' rounding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_m4oe_tiny_on_synthetic_organs_learns_every_domain(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "m4oe", "--dataset", "synthetic-organs",
                        "--preset", "tiny", "--threads", "1", "--json", "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads(r.stdout)
    test = record["metrics"]["test"]
    assert test["all"]["dice"] > 0.25
    for domain in ("synthetic-organs-ct", "synthetic-organs-mr", "synthetic-organs-liver"):
        assert test[domain]["dice"] > 0.15, (domain, test[domain])
    # the big organs are found in every domain (lesions and thin organs may lag at this budget)
    assert test["synthetic-organs-ct"]["dice_liver"] > 0.5 and test["synthetic-organs-mr"]["dice_liver"] > 0.5
    assert [s["name"] for s in record["summary"]["stages"]] == ["stage1", "stage2"]
