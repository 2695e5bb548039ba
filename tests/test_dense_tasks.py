"""Dense (segmentation) tasks in the per-sample multi-task path (docs/multitask.md):
``synthetic-mvmt:seg``, the per-sample CE + Dice loss, the 2-D Dice metric (checked against
MONAI), per-task ``supports_task`` with declined tasks recorded, and a test-only dense method
run end to end."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation import _evaluate_samples, model_tasks, validation_score
from bench.jobs import load_data
from bench.metrics import dice_per_class, evaluate_task
from bench.runner import build_config, run_job
from bench.store import RunStore, default_url
from datasets.spec import TaskSpec
from methods import Method, Output, task_loss
from methods.base import SEG_DICE_SMOOTH, segmentation_loss
from methods.nets.heads import TaskHeads
from methods.registry import _REGISTRY, parse_method

ROOT = Path(__file__).resolve().parents[1]
SEG = "synthetic-mvmt:seg"
#: sha256 of the default synthetic-mvmt tensors (inputs, masks, targets, label masks, splits; split
#: seed 0), computed before the seg variant existed (commit e4a98fd): the default data must not change
DEFAULT_MVMT_SHA256 = "1b22b9c692d89323d1aa3ff36b04e930ef688f9e2fb88d10948d40e64610c4a7"
DEFAULT_INPUT_SUMS = {"v1": 7167.875676581711, "v2": 3308.81459383894, "v3": -330.9241027704702}


def _mvmt_hash(d, tasks=("same", "task_a", "task_b")) -> str:
    h = hashlib.sha256()
    for k in ("v1", "v2", "v3"):
        h.update(k.encode())
        h.update(d.inputs[k].numpy().tobytes())
        h.update(d.mask[k].numpy().tobytes())
    for k in tasks:
        h.update(k.encode())
        h.update(d.targets[k].numpy().tobytes())
        h.update(d.target_mask[k].numpy().tobytes())
    for s in ("train", "val", "test"):
        h.update(np.asarray(d.splits[s]).astype(np.int64).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ a dense test method


class DenseToy(Method):
    """Test-only: one conv over the stacked views; a 1x1-conv decoder per dense task (logits
    (B, C, H, W)) and linear heads on the pooled features for the per-sample tasks."""

    name = "dense-toy"
    description = "test-only dense method"

    @classmethod
    def supports_task(cls, task):
        return True

    @classmethod
    def defaults(cls):
        return {"hidden": 8}

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        h = int(hparams["hidden"])
        self.conv = nn.Sequential(nn.Conv2d(sum(m.shape[0] for m in spec.modalities), h, 3, padding=1), nn.ReLU())
        self.decoders = nn.ModuleDict({t.name: nn.Conv2d(h, t.num_classes, 1) for t in self.tasks
                                       if t.kind == "segmentation"})
        self.heads = TaskHeads(tuple(t for t in self.tasks if t.kind != "segmentation"), h)

    def forward(self, batch):
        f = self.conv(torch.cat([batch["inputs"][m] for m in self.spec.modality_names], dim=1))
        preds = self.heads(f.mean(dim=(2, 3)))
        preds.update({name: dec(f) for name, dec in self.decoders.items()})
        return Output(preds)


@pytest.fixture
def dense_toy(monkeypatch):
    parse_method("late")   # the built-in registry is loaded before ours is added
    monkeypatch.setitem(_REGISTRY, DenseToy.name, DenseToy)
    return DenseToy


@pytest.fixture(scope="module")
def seg_data():
    return load_data(SEG, 0, None)


# ------------------------------------------------------------------------------------ data


def test_default_variant_is_unchanged():
    for name in ("synthetic-mvmt",):
        d = load_data(name, 0, None)
        assert d.spec.task_names == ["task_a", "task_b", "same"]
        assert _mvmt_hash(d) == DEFAULT_MVMT_SHA256, name
        assert {k: float(v.double().sum()) for k, v in d.inputs.items()} == pytest.approx(DEFAULT_INPUT_SUMS, rel=1e-12)


def test_seg_variant(seg_data):
    d, default = seg_data, load_data("synthetic-mvmt", 0, None)
    task = d.spec.task("mask")
    assert task.kind == "segmentation" and task.num_classes == 3 and d.problems() == []
    y = d.targets["mask"]
    assert y.shape == (len(d), 16, 16) and y.dtype == torch.int64 and set(y.unique().tolist()) == {0, 1, 2}
    assert 0.85 < float(d.target_mask["mask"].float().mean()) < 0.95      # some masks unlabelled
    for t in ("task_a", "task_b", "same"):   # the other tasks, v2, v3 and the splits are the default's
        assert torch.equal(d.targets[t], default.targets[t]) and torch.equal(d.target_mask[t], default.target_mask[t])
    for v in ("v2", "v3"):
        assert torch.equal(d.inputs[v], default.inputs[v])
    assert all(np.array_equal(d.splits[s], default.splits[s]) for s in d.splits)
    assert not torch.equal(d.inputs["v1"], default.inputs["v1"])          # the shapes are planted in v1
    assert d.spec.params["task_views"]["mask"] == ["v1"]


def test_problems_validates_segmentation_targets(seg_data):
    import dataclasses

    bad = seg_data.targets["mask"].clone()
    bad[seg_data.target_mask["mask"].nonzero()[0, 0], 0, 0] = 7
    probs = dataclasses.replace(seg_data, targets={**seg_data.targets, "mask": bad}).problems()
    assert any("outside 0..2" in p for p in probs)
    flat = dataclasses.replace(seg_data, targets={**seg_data.targets, "mask": seg_data.targets["mask"].flatten(1)})
    assert any("(N, H, W) int64" in p for p in flat.problems())
    # an out-of-range label on an unlabelled row is not a problem
    bad = seg_data.targets["mask"].clone()
    bad[(~seg_data.target_mask["mask"]).nonzero()[0, 0]] = 9
    assert dataclasses.replace(seg_data, targets={**seg_data.targets, "mask": bad}).problems() == []


# ------------------------------------------------------------------------------------ loss


def _hard_logits(classes: torch.Tensor, c: int, scale: float = 30.0) -> torch.Tensor:
    return scale * (nn.functional.one_hot(classes, c).movedim(-1, 1).float() * 2 - 1)


def test_loss_is_dice_averaged_per_sample_not_pooled():
    """Sample 0: a big foreground, predicted exactly; sample 1: a 2-pixel foreground, missed.
    Per sample the Dice losses are ~0 and ~1 (mean ~0.5); pooled over the batch ~0.01."""
    task = TaskSpec("mask", "segmentation", 2)
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[0, 2:12, 2:12] = 1
    target[1, 5, 5:7] = 1
    pred = _hard_logits(torch.stack([target[0], torch.zeros_like(target[1])]), 2)
    loss = float(task_loss(task, pred, target, torch.ones(2, dtype=torch.bool)))
    ce = float(nn.functional.cross_entropy(pred, target))
    prob, g = pred.softmax(1)[:, 1], (target == 1).float()
    per_sample = (2 * (prob * g).sum((1, 2)) + SEG_DICE_SMOOTH) / (prob.sum((1, 2)) + g.sum((1, 2)) + SEG_DICE_SMOOTH)
    pooled = (2 * (prob * g).sum() + SEG_DICE_SMOOTH) / (prob.sum() + g.sum() + SEG_DICE_SMOOTH)
    assert loss == pytest.approx(ce + float((1 - per_sample).mean()), rel=1e-5)
    assert float(per_sample[1]) < 0.4 and loss - ce > 0.3       # the missed small structure counts half
    assert abs((loss - ce) - (1 - float(pooled))) > 0.25


def test_loss_excludes_unlabelled_rows_and_is_bce_for_two_classes():
    torch.manual_seed(0)
    task = TaskSpec("mask", "segmentation", 2)
    pred = torch.randn(3, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (3, 8, 8))
    mask = torch.tensor([True, False, True])
    full = task_loss(task, pred, target, mask)
    assert float(full.detach()) == pytest.approx(float(segmentation_loss(pred.detach()[[0, 2]], target[[0, 2]])), rel=1e-6)
    other = target.clone()
    other[1] = 1 - other[1]
    assert float(task_loss(task, pred, other, mask)) == pytest.approx(float(full), rel=1e-6)
    full.backward()
    assert float(pred.grad[1].abs().sum()) == 0.0 and float(pred.grad[0].abs().sum()) > 0
    # CE part: two-logit softmax CE equals BCE on the logit difference
    p = pred.detach()[[0, 2]]
    bce = nn.functional.binary_cross_entropy_with_logits(p[:, 1] - p[:, 0], target[[0, 2]].float())
    assert float(nn.functional.cross_entropy(p, target[[0, 2]])) == pytest.approx(float(bce), rel=1e-5)
    none = task_loss(task, pred, target, torch.zeros(3, dtype=torch.bool))
    assert float(none) == 0.0 and none.requires_grad


# ------------------------------------------------------------------------------------ metric


def test_dice_matches_monai_with_documented_empty_convention():
    from monai.metrics import DiceMetric, compute_dice

    rng = np.random.default_rng(0)
    c = 3
    y = rng.integers(0, c, (6, 12, 12))
    logits = rng.standard_normal((6, c, 12, 12))
    y[0] = 0                                   # no foreground in truth; prediction has some -> 0
    y[1][y[1] == 2] = 0                        # class 2 absent from truth
    logits[1, 2] -= 100.0                      # ... and from the prediction: both empty -> NaN (excluded)
    y[2] = 0
    logits[2, 0] += 100.0                      # nothing anywhere: the whole case is NaN (excluded)
    pred = logits.argmax(1)
    onehot = lambda a: nn.functional.one_hot(torch.as_tensor(a), c).permute(0, 3, 1, 2).float()  # noqa: E731
    ref = compute_dice(onehot(pred), onehot(y), include_background=False, ignore_empty=False).numpy()
    ours, _ = dice_per_class(pred, y, c)
    both_empty = np.stack([((pred == k) | (y == k)).reshape(6, -1).sum(1) == 0 for k in range(1, c)], axis=1)
    assert both_empty[1, 1] and both_empty[2].all() and both_empty.sum() == 3
    np.testing.assert_allclose(ours[~both_empty], ref[~both_empty], rtol=1e-6)
    assert np.isnan(ours[both_empty]).all() and (ref[both_empty] == 1.0).all()   # MONAI scores both-empty as 1
    assert ours[0].tolist() == [0.0, 0.0]
    # where MONAI's default (ignore_empty=True) is defined (non-empty truth), it agrees too
    metric = DiceMetric(include_background=False, reduction="none")
    metric(onehot(pred), onehot(y))
    default = metric.aggregate().numpy()
    ok = ~np.isnan(default)
    np.testing.assert_allclose(ours[ok], default[ok], rtol=1e-6)

    task = TaskSpec("mask", "segmentation", c, ("bg", "a", "b"))
    ev = evaluate_task(task, torch.tensor(logits), torch.tensor(y), ids=[f"c{i}" for i in range(6)])
    per_case = np.array([np.nan if np.isnan(r).all() else np.nanmean(r) for r in ours])
    assert ev.metrics["dice"] == pytest.approx(float(np.nanmean(per_case)))       # mean over cases, NaN excluded
    assert ev.metrics["dice_a"] == pytest.approx(float(np.nanmean(ours[:, 0])))
    assert ev.metrics["dice_b"] == pytest.approx(float(np.nanmean(ours[:, 1])))
    np.testing.assert_allclose(ev.per_case["dice"].to_numpy(), per_case)
    assert ev.per_case["case_id"].tolist() == [f"c{i}" for i in range(6)]
    assert {"iou", "iou_a", "iou_b"} <= set(ev.metrics) and {"dice_a", "loss", "iou"} <= set(ev.per_case)
    # per case, not pooled over the batch: one big perfect case and one small missed one -> 0.5
    tgt = np.zeros((2, 16, 16), int)
    tgt[0, 2:12, 2:12] = 1
    tgt[1, 5, 5:7] = 1
    ev2 = evaluate_task(TaskSpec("m", "segmentation", 2), _hard_logits(torch.tensor(tgt[[0, 0]] * [[[1]], [[0]]]), 2),
                        tgt)
    assert ev2.metrics["dice"] == pytest.approx(0.5)
    # the label mask: unlabelled rows are not scored
    ev3 = evaluate_task(task, torch.tensor(logits), torch.tensor(y), mask=np.array([0, 1, 1, 1, 1, 1], bool))
    assert len(ev3.per_case) == 5 and ev3.metrics["dice"] == pytest.approx(float(np.nanmean(per_case[1:])))


# ------------------------------------------------------------------------------------ per-task supports


def test_declining_methods_build_heads_and_losses_for_supported_tasks_only(seg_data):
    from methods import resolve_hparams

    batch = seg_data.batch(seg_data.splits["train"][:8])
    for name in ("single:v1", "early", "late", "intermediate", "attention", "moe", "soft-moe", "i2moe"):
        cls, implied = parse_method(name)
        assert cls.supports(seg_data.spec) is True
        assert set(cls.declined_tasks(seg_data.spec)) == {"mask"} and "segmentation" in cls.declined_tasks(seg_data.spec)["mask"]
        model = cls(seg_data.spec, resolve_hparams(cls.defaults(), "tiny", implied))
        out = model(batch)
        assert set(out.preds) == {"task_a", "task_b", "same"}, name
        total, parts = model.loss(out, batch)
        assert "task/mask" not in parts and {"task/task_a", "task/task_b", "task/same"} <= set(parts), name
        assert bool(torch.isfinite(total))
    with pytest.raises(ValueError, match="dense decoder"):
        TaskHeads(seg_data.spec.tasks, 8)


def test_validation_loss_includes_dense_task_only_when_supported(seg_data, dense_toy):
    from bench.config import TrainConfig
    from methods import resolve_hparams

    tc = TrainConfig(select="loss", batch_size=64)
    cpu = torch.device("cpu")
    val = seg_data.splits["val"]
    for cls in (parse_method("late")[0], dense_toy):
        torch.manual_seed(0)
        model = cls(seg_data.spec, resolve_hparams(cls.defaults(), "tiny", {}))
        loss, score = validation_score(model, seg_data, tc, cpu, {})
        model.eval()
        with torch.no_grad():
            out = model(seg_data.batch(val))
        expected = {t.name: float(task_loss(t, out.preds[t.name], seg_data.targets[t.name][val],
                                            seg_data.target_mask[t.name][val])) for t in model_tasks(model, seg_data.spec)}
        assert ("mask" in expected) == (cls is dense_toy)
        assert loss == pytest.approx(sum(expected.values()), rel=1e-4) and score == loss
        ev = _evaluate_samples(model, seg_data, "val", 64, cpu)
        assert ("mask" in ev.metrics) == (cls is dense_toy)


# ------------------------------------------------------------------------------------ end to end


def _cli(capsys, *args: str) -> str:
    """``python -m bench ARGS`` in this process (the same entry point, without a second interpreter)."""
    from bench.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    assert code in (0, None), out.err[-2000:]
    return out.out


def test_cli_run_and_sweep_record_declined_tasks_and_rank_the_others(tmp_path, capsys):
    runs = str(tmp_path)
    rec = json.loads(_cli(capsys, "run", "--method", "late", "--dataset", SEG, "--preset", "tiny", "--set", "epochs=1",
                          "--json", "--runs-dir", runs))
    assert rec["status"] == "ok"
    assert set(rec["summary"]["declined_tasks"]) == {"mask"}
    assert "segmentation" in rec["summary"]["declined_tasks"]["mask"]
    assert set(rec["metrics"]["test"]) == {"task_a", "task_b", "same"}
    assert all(0.0 <= rec["metrics"]["test"][t]["accuracy"] <= 1.0 for t in ("task_a", "task_b", "same"))
    assert "mask" not in rec["catalogue"]["tasks"]
    assert "mask" not in rec["metrics"]["test[-v1]"]            # robustness: the same tasks
    # the sweep stores its own late and attention runs (its jobs carry the sweep's config)
    _cli(capsys, "sweep", "--methods", "late", "attention", "--datasets", SEG, "--seeds", "0", "--preset", "tiny",
         "--set", "epochs=1", "--runs-dir", runs)
    store = RunStore(default_url(tmp_path))
    records = [r for r in store.records() if r.dataset == SEG]
    assert {r.method for r in records} == {"attention", "late"} and all(r.status == "ok" for r in records)
    assert all(set(r.summary["declined_tasks"]) == {"mask"} for r in records)
    text = _cli(capsys, "leaderboard", "--format", "csv", "--no-tests", "--runs-dir", runs)
    header, *rows = [line for line in text.splitlines() if line.strip()]
    for t in ("task_a", "task_b", "same"):
        assert any(t in row and "late" in row for row in rows) and any(t in row and "attention" in row for row in rows)
    assert not any(",mask," in row for row in rows) and "dice" not in text


def test_dense_method_end_to_end(tmp_path, dense_toy, seg_data):
    store = RunStore(default_url(tmp_path))
    cfg = build_config("dense-toy", SEG, preset="tiny", train={"epochs": 1, "patience": 0})
    rec = run_job(cfg, store, tmp_path, progress=False)
    assert rec.status == "ok", rec.error
    assert "declined_tasks" not in rec.summary
    mask = rec.metrics["test"]["mask"]
    assert 0.0 <= mask["dice"] <= 1.0 and {"dice_disc", "dice_square", "iou"} <= set(mask)
    assert rec.catalogue["tasks"]["mask"]["primary"] == "dice" and rec.catalogue["tasks"]["mask"]["kind"] == "segmentation"
    assert set(rec.metrics["test"]) >= {"task_a", "task_b", "same", "mask"}
    assert "mask" in rec.metrics["val"] and "mask" in rec.metrics["test[-v1]"]
    cases = store.cases(rec.key)
    rows = cases[cases["task"] == "mask"]
    test = seg_data.splits["test"]
    assert len(rows) == int(seg_data.target_mask["mask"][test].sum())        # labelled test cases only
    assert np.nanmean(rows["dice"].to_numpy(np.float64)) == pytest.approx(mask["dice"])
