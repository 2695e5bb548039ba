"""GPU tests (``pytest -m gpu``): skipped, with the reason, where no CUDA device exists.

What they check on a GPU (docs/gpu.md): every method's tiny run finishes on CUDA in the default
deterministic mode (no op without a deterministic implementation crashes it; the ones that have
none are listed in the record), bf16 runs finish with finite losses, and a deterministic CUDA
run repeated gives bit-identical metrics. ``scripts/gpu_check.sh`` runs them together with the
timing commands whose figures go into the README.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from bench.execution import Execution
from bench.jobs import build_config, load_data
from bench.runner import run_job
from methods import method_classes, parse_method
from methods.seg_base import SegMethod

#: the device under test; ``BENCH_GPU_TEST_DEVICE=cpu`` runs these tests' logic on a CPU (slow; to check the tests)
DEVICE = os.environ.get("BENCH_GPU_TEST_DEVICE", "cuda")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="no CUDA device here; GPU tests run where one exists (pytest -m gpu)")]

#: per-sample datasets tried in order for each method (the first one it supports)
PER_SAMPLE = ("wdbc", "digits-halves", "synthetic-mvmt")
#: a short budget: the point is that every step and the evaluation run on the device
SHORT = {"epochs": "2", "max_steps": "3"}


def _dataset_for(method: str) -> str:
    cls, _ = parse_method(method)
    if issubclass(cls, SegMethod):
        return "synthetic-organs"

    for name in PER_SAMPLE:
        if cls.supports(load_data(name, 0, None).spec) is True:
            return name
    pytest.skip(f"{method}: none of {PER_SAMPLE} suits it")


def _method_names() -> list[str]:
    return [c.name if c.name != "single" else "single:mean" for c in method_classes()]


def _run(method: str, dataset: str, tmp_path, precision: str = "fp32", sets=None):
    cfg = build_config(method, dataset, preset="tiny", sets={**SHORT, **(sets or {})}, device=DEVICE,
                       execution=Execution(precision=precision))
    return run_job(cfg, None, tmp_path, progress=False, strict=True, force=True)


@pytest.mark.parametrize("method", _method_names())
def test_every_method_runs_on_cuda_in_deterministic_mode(method, tmp_path):
    record = _run(method, _dataset_for(method), tmp_path)
    assert record.status == "ok", record.error
    assert isinstance(record.summary["nondeterministic_ops"], list)
    assert record.env["device"] == DEVICE.split(":")[0]


@pytest.mark.parametrize("method,dataset", [("attention", "wdbc"), ("i2moe", "wdbc"), ("m4oe", "synthetic-organs"),
                                            ("unet", "synthetic-organs"), ("m4oe-mt", "synthetic-mvmt")])
def test_bf16_runs_finish_with_finite_losses(method, dataset, tmp_path):
    record = _run(method, dataset, tmp_path, precision="bf16")
    assert record.status == "ok", record.error
    losses = [h["train_loss"] for st in record.summary.get("stages", [record.summary]) for h in st["history"]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert record.env["execution"]["precision"] == "bf16"


@pytest.mark.parametrize("method,dataset", [("attention", "wdbc"), ("m4oe", "synthetic-organs")])
def test_deterministic_cuda_runs_are_bit_identical(method, dataset, tmp_path):
    a = _run(method, dataset, tmp_path / "a")
    b = _run(method, dataset, tmp_path / "b")
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics
    assert a.summary["nondeterministic_ops"] == [], "an op without a deterministic implementation ran"
