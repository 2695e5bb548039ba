"""The segmentation data pipeline (issue #19, "a data pipeline that keeps up"): batches built in
DataLoader workers are bit-identical to those built in-process, the runner's generator advances
by a fixed amount per epoch, and stopping early shuts the workers down.

Uses the generated ``synthetic-organs`` (session-cached by conftest's ``load_data``)."""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest
import torch

from datasets.segmentation.data import EpochBatches

OPTS_2D = {"slice_size": 32, "augment": True, "fg_oversample": 0.5}
OPTS_3D = {"dims": 3, "patch": (8, 32, 32), "augment": True}


@pytest.fixture(scope="module")
def data(load_data):
    return load_data("synthetic-organs")


def _epoch(data, workers: int, opts: dict, batch_size: int = 32, seed: int = 3, split: str = "train",
           **kw) -> tuple[list[dict], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed) if split == "train" else None
    out = list(data.batches(split, batch_size, gen, workers=workers, **opts, **kw))
    return out, (gen.get_state() if gen is not None else None)


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        assert x["id"] == y["id"]
        for key in ("index", "domain", "label"):
            assert torch.equal(x[key], y[key]), key
        for group in ("inputs", "mask", "targets", "target_mask"):
            assert x[group].keys() == y[group].keys()
            for k in x[group]:
                assert x[group][k].dtype == y[group][k].dtype and torch.equal(x[group][k], y[group][k]), (group, k)


@pytest.mark.parametrize("opts", [OPTS_2D, {**OPTS_2D, "balance": "datasets"}, OPTS_3D], ids=["2d", "2d-balanced", "3d"])
def test_batches_identical_for_0_1_2_workers(data, opts):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)   # workers run single-threaded: the main process must not differ with more threads
    try:
        ref, state = _epoch(data, 0, opts)
        for workers in (1, 2):
            global_rng = torch.get_rng_state()   # dropout's stream: the loader must not draw from it
            got, got_state = _epoch(data, workers, opts)
            _assert_same(ref, got)
            assert torch.equal(state, got_state) and torch.equal(torch.get_rng_state(), global_rng)
    finally:
        torch.set_num_threads(threads)
    if opts.get("dims", 2) == 2:   # augmentation is on, and differs between batches
        plain, _ = _epoch(data, 0, {**opts, "augment": False})
        assert any(not torch.equal(a["inputs"]["image"], p["inputs"]["image"]) for a, p in zip(ref, plain))
        assert [a["id"] for a in ref] == [p["id"] for p in plain]   # same rows: augmentation draws nothing
    assert len({r["id"][0] for r in ref}) > 1


def test_validation_batches_identical_and_fixed(data):
    for opts in ({"slice_size": 32}, {"dims": 3, "patch": (8, 32, 32)}):
        ref, _ = _epoch(data, 0, opts, split="val")
        got, _ = _epoch(data, 2, opts, split="val")
        _assert_same(ref, got)
    rows = data.slice_index("val")   # 2-D validation: every slice in order
    first, _ = _epoch(data, 0, {"slice_size": 32}, split="val")
    assert [i for b in first for i in b["id"]] == [f"{data.ids[c]}@z{z}" for c, z in rows]


@pytest.mark.parametrize("opts", [OPTS_2D, OPTS_3D], ids=["2d", "3d"])
def test_generator_advance_does_not_depend_on_how_far_the_consumer_reads(data, opts):
    full = torch.Generator().manual_seed(5)
    n = sum(1 for _ in data.batches("train", 16, full, **opts))
    assert n > 2
    for workers in (0, 2):
        early = torch.Generator().manual_seed(5)
        it = data.batches("train", 16, early, workers=workers, **opts)
        next(it)
        it.close()
        assert torch.equal(early.get_state(), full.get_state()), workers
    # the next epoch therefore starts from the same place: its first batch is the same
    nxt_full = next(data.batches("train", 16, full, **opts))
    nxt_early = next(data.batches("train", 16, early, **opts))
    _assert_same([nxt_full], [nxt_early])


def test_a_batch_depends_only_on_its_rows_and_the_epoch_seed(data):
    gen = torch.Generator().manual_seed(11)
    epoch = data.epoch_batches("train", 8, gen, **OPTS_2D)
    assert isinstance(epoch, EpochBatches) and len(epoch) == int(np.ceil(epoch.rows() / 8))
    _assert_same([epoch[3]], [epoch[3]])           # any order, any number of times
    again = pickle.loads(pickle.dumps(epoch))      # what a spawned worker would receive
    _assert_same([epoch[len(epoch) - 1], epoch[0]], [again[len(epoch) - 1], again[0]])
    with pytest.raises(IndexError):
        epoch[len(epoch)]


def _first_batches(data, workers: int, k: int):
    """Read k batches inside a generator function and stop (as a training loop stopping at
    max_steps does); the try/finally is where the loader must be shut down."""
    it = data.batches("train", 8, torch.Generator().manual_seed(0), workers=workers, prefetch=4, **OPTS_2D)
    try:
        for i, batch in enumerate(it):
            yield batch
            if i + 1 >= k:
                return
    finally:
        it.close()


def test_stopping_early_shuts_the_workers_down(data):
    before = set(multiprocessing.active_children())
    got = list(_first_batches(data, 2, 2))
    assert len(got) == 2
    assert set(multiprocessing.active_children()) <= before   # no worker left behind
    # a consumer that just drops the iterator (break in a for loop) also ends them
    for i, _ in enumerate(data.batches("train", 8, torch.Generator().manual_seed(0), workers=2, **OPTS_2D)):
        if i == 1:
            break
    assert set(multiprocessing.active_children()) <= before
    _assert_same(got, list(_first_batches(data, 0, 2)))


def test_options(data):
    with pytest.raises(TypeError, match="worker"):
        next(data.batches("train", 8, torch.Generator().manual_seed(0), worker=2))
    with pytest.raises(ValueError, match="workers"):
        next(data.batches("train", 8, torch.Generator().manual_seed(0), workers=-1))
    with pytest.raises(ValueError, match="prefetch"):
        next(data.batches("train", 8, torch.Generator().manual_seed(0), workers=1, prefetch=0))
    # pin_memory without CUDA is a no-op; epoch_size / example_batch accept the loader options
    opts = {**OPTS_2D, "workers": 2, "pin_memory": True, "prefetch": 2}
    assert data.epoch_size("train", **opts) == len(data.slice_index("train"))
    ex = data.example_batch("test", 4, slice_size=32, workers=2, pin_memory=True)
    assert ex["inputs"]["image"].shape == (4, 1, 32, 32)
    _assert_same([ex], [next(data.batches("test", 4, slice_size=32))])


def test_perf_pipeline_smoke(load_data):
    from bench.perf_pipeline import clamp_workers, format_report, run_pipeline_perf

    assert clamp_workers([0, 1, 2, 4, 2], cores=2) == [0, 1, 2]
    out = run_pipeline_perf("m4oe", "synthetic-organs", "tiny", workers=(0, 1), train_workers=(1,), reps=1,
                            batches=2, steps=1, warmup=0, batch_size=8)
    assert [r["workers"] for r in out["pipeline"]] == [0, 1] and [r["workers"] for r in out["training"]] == [1]
    assert all(r["slices"] == 16 and r["slices_per_s"] > 0 for r in out["pipeline"])
    assert all(0 <= r["wait_share"] < 1 and r["step_ms"] > 0 for r in out["training"])
    assert "data-wait share" in format_report(out)


def test_training_run_is_bit_identical_with_0_and_2_workers(tmp_path):
    """The runner passes ``Execution.data_workers`` into the training batch options: a whole short
    run (m4oe's two stages sharing the generator, each stopped mid-epoch by max_steps, with
    augmentation and foreground oversampling) gives the same weights and numbers either way."""
    from bench.execution import Execution
    from bench.jobs import build_config
    from bench.runner import run_job

    out = {}
    for workers in (0, 2):
        cfg = build_config("m4oe", "synthetic-organs:liver", preset="tiny",
                           train={"epochs": 2, "max_steps": 4, "batch_size": 16, "patience": 0, "fg_oversample": 0.3,
                                  "eval_space": "preprocessed"},
                           execution=Execution(data_workers=workers))
        rec = run_job(cfg, None, tmp_path / f"w{workers}", progress=False, strict=True)
        assert rec.status == "ok", rec.error
        assert rec.env["execution"]["data_workers"] == workers
        out[workers] = rec, torch.load(rec.checkpoint, weights_only=False)["model"]
    (a, wa), (b, wb) = out[0], out[2]
    assert a.summary["history"] == b.summary["history"] and a.metrics == b.metrics
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
