"""The segmentation track in the harness: data container, loss, M4oE stages, evaluation on 3-D
volumes, the segmentation baselines, and the FLARE22 / nnU-Net paths end to end on generated
fixtures with the real layouts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import ConfigError
from bench.jobs import load_data as _load_data
from bench.runner import build_config, cost_job, run_job
from bench.seg_eval import evaluate_cases
from bench.store import RunStore, default_url
from datasets import DatasetFormatError, load_dataset
from datasets.segmentation.data import split_cases
from datasets.segmentation.nnunet import write_case
from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec
from methods import parse_method
from methods.m4oe import M4oE
from methods.nets.swin_unet import count_parameters, gate_keys, paper_config
from methods.seg_base import dice_loss, seg_loss

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"epochs": 2, "patience": 0, "batch_size": 16}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One runs dir per module, so synthetic-organs is generated and preprocessed once."""
    return tmp_path_factory.mktemp("segruns")


def _data(runs: Path, name: str = "synthetic-organs"):
    return _load_data(name, 0, None, str(runs / "cache"))


def _spec(classes=(14, 3, 16), chans: int = 1) -> DatasetSpec:
    tasks = tuple(TaskSpec(f"d{i}", "segmentation", c) for i, c in enumerate(classes))
    return DatasetSpec("fake", (ModalitySpec("image", "volume3d", (chans, 8, 64, 64)),), tasks, "n/a", "test")


def _hp(method: str, preset: str = "tiny", **over):
    cls, _ = parse_method(method)
    return build_config(method, "synthetic-organs", preset=preset, sets={k: str(v) for k, v in over.items()}).hparams


# ------------------------------------------------------------------------------------------ data


def test_split_is_patient_level_deterministic_and_complete():
    ids = [f"c{i:02d}" for i in range(12)]
    a, b, c = split_cases(ids, 0), split_cases(ids, 0), split_cases(ids, 1)
    assert a == b and a != c
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (9, 1, 2)
    with pytest.raises(DatasetFormatError, match="at least 3"):
        split_cases(ids[:2], 0)


def test_synthetic_organs_domains_splits_and_batches(runs):
    data = _data(runs)
    assert [t.name for t in data.spec.tasks] == ["synthetic-organs-ct", "synthetic-organs-mr", "synthetic-organs-liver"]
    assert [t.num_classes for t in data.spec.tasks] == [5, 4, 3]
    for s in ("train", "val", "test"):   # every split holds every domain
        assert set(data.case_domain[data.splits[s]].tolist()) == {0, 1, 2}
    splits = json.loads((runs / "cache" / "splits" / "synthetic-organs-all-split0.json").read_text())
    assert set(splits["domains"]) == set(data.spec.task_names)
    gen = torch.Generator().manual_seed(0)
    batch = next(data.batches("train", 8, gen, slice_size=32, augment=True))
    assert batch["inputs"]["image"].shape == (8, 1, 32, 32) and batch["label"].shape == (8, 32, 32)
    for d, task in enumerate(data.spec.tasks):   # labels stay inside each sample's own label set
        rows = batch["domain"] == d
        assert torch.equal(batch["target_mask"][task.name], rows)
        assert int(batch["label"][rows].max()) < task.num_classes if bool(rows.any()) else True
    again = next(data.batches("train", 8, torch.Generator().manual_seed(0), slice_size=32, augment=True))
    assert torch.equal(again["inputs"]["image"], batch["inputs"]["image"])  # seeded, so reproducible


def test_balance_and_foreground_oversampling(runs):
    data = _data(runs)
    counts = np.bincount(data.case_domain[data.slice_index("train")[:, 0]], minlength=3)
    rows = data._epoch_rows("train", torch.Generator().manual_seed(0), "datasets", 0.0)
    balanced = np.bincount(data.case_domain[rows[:, 0]], minlength=3)
    assert len(set(balanced.tolist())) == 1 and balanced.sum() >= counts.sum()

    def fg_fraction(p: float) -> float:
        rows = data._epoch_rows("train", torch.Generator().manual_seed(1), "slices", p)
        return float(np.mean([(np.asarray(data.cases[c].label[z]) > 0).any() for c, z in rows]))

    assert fg_fraction(1.0) == 1.0 and fg_fraction(0.0) < 0.95


def test_patches_for_3d_models(runs):
    data = _data(runs, "synthetic-organs:liver")
    batch = next(data.batches("train", 4, torch.Generator().manual_seed(0), dims=3, patch=(16, 48, 48)))
    assert batch["inputs"]["image"].shape == (4, 1, 16, 48, 48) and batch["label"].shape == (4, 16, 48, 48)


# ------------------------------------------------------------------------------------------ loss


def test_dice_loss_and_ignore_label():
    label = torch.tensor([[[0, 1], [2, -1]]])
    perfect = torch.nn.functional.one_hot(label.clamp(min=0), 3).movedim(-1, 1).float() * 50
    assert float(dice_loss(perfect, label)) < 1e-4
    wrong = perfect.roll(1, dims=1)
    assert float(dice_loss(wrong, label)) > 0.9
    # the ignored pixel never contributes: changing its logits changes neither term
    other = perfect.clone()
    other[0, :, 1, 1] = torch.tensor([0.0, 0.0, 100.0])
    for a, b in zip(seg_loss(perfect, label, 0.4, 0.6), seg_loss(other, label, 0.4, 0.6)):
        assert torch.allclose(a, b)


def _reference_batch():
    g = torch.Generator().manual_seed(1234)
    logits = torch.randn(4, 5, 16, 16, generator=g) * 2
    label = torch.randint(0, 5, (4, 16, 16), generator=g)
    label[0] = 0           # a background-only sample: per-sample and pooled Dice differ
    label[1, :8] = 0
    return logits, label


def test_loss_is_the_references_per_sample_loss():
    """Numbers from the released M4oE code (JefferyJiang-YF/M4oE @ 4f8c343, utils.DiceLoss and
    nn.CrossEntropyLoss called once per sample as trainer.py does, averaged over the batch) on this
    exact batch; the pooled form is what this harness computed before (loss_granularity=group)."""
    logits, label = _reference_batch()
    ce, dl = seg_loss(logits, label, 1.0, 1.0)
    assert float(ce) == pytest.approx(2.914649486541748, abs=1e-6)
    assert float(dl) == pytest.approx(0.8044511079788208, abs=1e-6)
    assert float(dice_loss(logits, label, per_sample=False)) == pytest.approx(0.7749271392822266, abs=1e-6)


def test_loss_granularity_switch_reaches_the_method():
    from methods.base import Output

    logits, label = _reference_batch()
    cls, _ = parse_method("unet")
    for granularity, dice in (("sample", 0.8044511079788208), ("group", 0.7749271392822266)):
        spec = _spec((5,))
        model = cls(spec, _hp("unet", loss_granularity=granularity))
        out = Output({spec.tasks[0].name: logits})
        _, parts = model.loss(out, {"domain": torch.zeros(4, dtype=torch.long), "label": label})
        assert float(parts["dice"]) == pytest.approx(0.6 * dice, abs=1e-6)


# ------------------------------------------------------------------------------------------ M4oE


def test_paper_size_parameter_counts_match_the_reference():
    """60.4 M: the released M4oE (3 experts, heads 14+3+16, the code's channel gate, RGB input);
    27.17 M: plain Swin-UNet (Synapse setup, 9 classes, RGB input)."""
    m4oe = count_parameters(paper_config(routing="gated-code", in_chans=3, head_classes=(14, 3, 16)))
    assert abs(m4oe - 60.4e6) / 60.4e6 < 0.005
    dense = count_parameters(paper_config(routing="dense", num_experts=1, in_chans=3, head_classes=(9,)))
    assert abs(dense - 27.17e6) / 27.17e6 < 0.005
    # through the harness: the registered method at --preset paper builds the same network, from a
    # 1-channel dataset with the reference's repeat-to-RGB switch
    hp = _hp("m4oe", "paper", routing="gated-code", repeat_channels=3)
    with torch.device("meta"):
        model = M4oE(_spec((14, 3, 16), chans=1), hp)
    assert sum(p.numel() for p in model.parameters()) == m4oe


def test_stages_are_hard_then_gated():
    hp = _hp("m4oe")
    stages = M4oE.stages(hp)
    assert [s.name for s in stages] == ["stage1", "stage2"]
    assert stages[0].hparams["routing"] == "hard" and stages[1].hparams["routing"] == "gated"
    assert [s.name for s in M4oE.stages({**hp, "routing": "hard"})] == ["main"]
    assert [s.name for s in M4oE.stages({**hp, "two_stage": False})] == ["main"]


@pytest.mark.parametrize("routing", ["gated", "gated-code"])
def test_hard_checkpoint_into_gated_model_leaves_only_the_gate_new(routing):
    spec = _spec((5, 4, 3))
    hp = _hp("m4oe")
    stage1 = M4oE(spec, {**hp, "routing": "hard"})
    stage2 = M4oE(spec, {**hp, "routing": routing, "reinit_heads": False})
    info = stage2.load_stage(stage1.state_dict(), M4oE.stages({**hp, "routing": routing})[1])
    expected_new = sorted(f"net.{k}" for k in gate_keys(stage2.net))
    assert info["new"] == expected_new and expected_new
    assert all(".mlp.gate." in k for k in info["new"])
    restored = stage2.state_dict()
    for k, v in stage1.state_dict().items():   # every stage-1 tensor arrived unchanged
        assert torch.equal(restored[k], v), k
    assert set(info["restored"]) == set(stage1.state_dict())


def test_freeze_experts_and_reinit_heads():
    spec = _spec((5, 4, 3))
    hp = _hp("m4oe")
    stage1 = M4oE(spec, {**hp, "routing": "hard"})
    stage2 = M4oE(spec, {**hp, "freeze_experts": True})
    info = stage2.load_stage(stage1.state_dict(), M4oE.stages(hp)[1])
    frozen = {n for n, p in stage2.named_parameters() if not p.requires_grad}
    assert frozen and all(n.rsplit(".", 1)[-1] in ("w1", "b1", "w2", "b2") for n in frozen)
    assert info["reinitialised"] and not torch.equal(stage2.net.heads[0].weight, stage1.net.heads[0].weight)


def test_bad_m4oe_settings_are_config_errors(runs):
    with pytest.raises(ConfigError, match="routing='sparse': must be one of: hard, gated"):
        build_config("m4oe", "synthetic-organs", preset="tiny", sets={"routing": "sparse"})
    cfg = build_config("m4oe", "synthetic-organs", preset="tiny", sets={"routing": "hard", "num_experts": "2"})
    with pytest.raises(ConfigError, match="num_experts"):
        run_job(cfg, None, runs, progress=False, strict=True)
    failed = run_job(cfg, None, runs, progress=False)   # in a sweep: a failed record, and the sweep goes on
    assert failed.status == "failed" and "num_experts" in failed.error


def test_segmentation_protocol_defaults_are_the_reference_training_setup():
    tc = build_config("unet", "synthetic-organs", preset="paper").train
    assert (tc.optimizer, tc.lr, tc.batch_size, tc.schedule, tc.epochs, tc.val_every, tc.patience) == \
        ("sgd", 0.015, 36, "poly", 100, 2, 7)
    assert build_config("unet", "wdbc").train.optimizer == "adamw"  # classification keeps its protocol


# ------------------------------------------------------------------------------------------ runner


def test_two_stage_run_records_both_stages_and_the_new_gate(runs):
    store = RunStore(default_url(runs))
    cfg = build_config("m4oe", "synthetic-organs", preset="tiny", train={**QUICK, "max_steps": 0},
                       sets={"img_size": "32", "window_size": "2"})
    record = run_job(cfg, store, runs, progress=False)
    assert record.status == "ok", record.error
    stages = record.summary["stages"]
    assert [s["name"] for s in stages] == ["stage1", "stage2"] and all(s["epoch"] == 1 for s in stages)
    assert stages[0]["new_parameters"] == [] and stages[1]["new_parameters"]
    assert all(".mlp.gate." in k for k in stages[1]["new_parameters"])
    assert {"train_time_s_stage1", "train_time_s_stage2"} <= set(record.cost)
    test = record.metrics["test"]
    for task in ("synthetic-organs-ct", "synthetic-organs-mr", "synthetic-organs-liver", "all"):
        assert {"dice", "hd95", "nsd"} <= set(test[task])
    assert {"dice_liver", "dice_spleen", "hd95_liver"} <= set(test["synthetic-organs-ct"])
    interp = test["interpretation"]
    assert 0.0 <= interp["gate_match"] <= 1.0
    for name in ("ct", "mr", "liver"):   # gate weights per dataset sum to 1 over the experts
        assert abs(sum(interp[f"gate_synthetic-organs-{name}_e{e}"] for e in range(3)) - 1) < 1e-5
    cases = store.cases(record.key)
    assert set(cases["task"]) == {"synthetic-organs-ct", "synthetic-organs-mr", "synthetic-organs-liver"}
    assert len(cases) == 2 * (4 + 3 + 2) and "aux_gates" in cases.columns  # 2 test cases per domain x organs
    assert not (Path(runs) / "checkpoints" / record.key / "last.pt").exists()


def test_segmentation_run_is_deterministic(runs):
    cfg = build_config("swinunet-joint", "synthetic-organs:liver", seed=1, preset="tiny",
                       train={**QUICK, "max_steps": 6}, sets={"img_size": "32", "window_size": "2"})
    a = run_job(cfg, None, runs / "a", progress=False)
    b = run_job(cfg, None, runs / "b", progress=False)
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics and a.summary["history"] == b.summary["history"]


def test_oracle_prediction_scores_dice_one_in_original_space(runs, monkeypatch):
    import bench.seg_eval as seg_eval

    data = _data(runs, "synthetic-organs:ct")

    def oracle(model, data, c, options, batch_size, device):
        return np.maximum(np.asarray(data.cases[c].label), 0).astype(np.int16), {}

    def empty(model, data, c, options, batch_size, device):
        return np.zeros(np.asarray(data.cases[c].label).shape, dtype=np.int16), {}

    monkeypatch.setattr(seg_eval, "predict_case", oracle)
    metrics, cases, _ = evaluate_cases(torch.nn.Identity(), data, "test", 8, torch.device("cpu"), {"slice_size": 64})
    assert metrics["synthetic-organs-ct"]["dice"] > 0.95       # resampled back to the original grid
    assert metrics["synthetic-organs-ct"]["hd95"] < 5.0         # mm
    pre, _, _ = evaluate_cases(torch.nn.Identity(), data, "test", 8, torch.device("cpu"), {"slice_size": 64}, eval_space="preprocessed")
    assert pre["synthetic-organs-ct"]["dice"] == pytest.approx(1.0)
    monkeypatch.setattr(seg_eval, "predict_case", empty)       # the trivial all-background prediction
    trivial, _, _ = evaluate_cases(torch.nn.Identity(), data, "test", 8, torch.device("cpu"), {"slice_size": 64})
    assert trivial["synthetic-organs-ct"]["dice"] == 0.0
    compat, _, _ = evaluate_cases(torch.nn.Identity(), data, "test", 8, torch.device("cpu"), {"slice_size": 64}, convention="m4oe")
    assert compat["synthetic-organs-ct"]["hd95"] == 0.0        # the reference's rule for an empty prediction


@pytest.mark.parametrize("method", ["unet", "unet-late", "swinunet", "swinunet-joint", "unet3d", "m4oe"])
def test_every_segmentation_method_trains_a_step_and_reports_cost(runs, method):
    cfg = build_config(method, "synthetic-organs", preset="tiny", train={"batch_size": 4},
                       sets={"patch": "16,32,32"} if method == "unet3d" else {})
    row = cost_job(cfg, steps=1, runs_dir=runs)
    assert row["params_total"] > 0 and row["flops_per_sample"] > 0 and row["step_time_s"] > 0


def test_classification_methods_skip_segmentation_and_back(runs):
    rec = run_job(build_config("i2moe", "synthetic-organs", preset="tiny"), None, runs, progress=False)
    assert rec.status == "skipped" and "segmentation" in rec.reason
    rec = run_job(build_config("m4oe", "wdbc", preset="tiny"), None, runs, progress=False)
    assert rec.status == "skipped" and "segmentation" in rec.reason


# ------------------------------------------------------------------------------------------ real layouts


def _phantom(rng: np.random.Generator, shape=(24, 24, 8), classes=14):
    img = rng.normal(0, 20, shape).astype(np.float32) - 100
    lab = np.zeros(shape, dtype=np.uint8)
    for k in range(1, classes):
        x, y = rng.integers(2, shape[0] - 5), rng.integers(2, shape[1] - 5)
        lab[x:x + 3, y:y + 3, 2:6] = k
        img[lab == k] += 40 + 10 * k
    return img, lab


def _flare_fixture(root: Path, n: int = 5) -> Path:
    """A tiny FLARE22 release in the nnU-Net raw layout the adapter reads."""
    rng = np.random.default_rng(0)
    base = root / "FLARE22"
    for i in range(1, n + 1):
        img, lab = _phantom(rng)
        write_case(base, f"FLARE22_Tr_{i:04d}", [img], lab, spacing=(0.8, 0.8, 2.5))
    return base


def test_flare22_fixture_trains_and_reports_per_organ_dice(tmp_path):
    _flare_fixture(tmp_path / "data")
    cfg = build_config("m4oe", "flare22", preset="tiny", data_root=str(tmp_path / "data"), train=QUICK,
                       sets={"img_size": "32", "window_size": "2"})
    record = run_job(cfg, None, tmp_path / "runs", progress=False)
    assert record.status == "ok", record.error
    organs = {k for k in record.metrics["test"]["flare22"] if k.startswith("dice_")}
    assert len(organs) == 13 and "dice_liver" in organs and "dice_duodenum" in organs


def test_data_convert_then_nnunet_dataset(tmp_path):
    from datasets.segmentation.nnunet import check_dataset

    base = tmp_path / "data" / "FLARE22"
    rng = np.random.default_rng(1)
    for i in range(1, 5):   # the official release layout: images/ + labels/
        img, lab = _phantom(rng)
        write_case(tmp_path / "stage", f"FLARE22_Tr_{i:04d}", [img], lab, spacing=(0.8, 0.8, 2.5))
    (base).mkdir(parents=True)
    os.rename(tmp_path / "stage" / "imagesTr", base / "images")
    os.rename(tmp_path / "stage" / "labelsTr", base / "labels")
    before = sorted((p.name, p.stat().st_size) for p in base.rglob("*") if p.is_file())
    r = subprocess.run([sys.executable, "-m", "bench", "data", "convert", "flare22", "--data-root", str(tmp_path / "data"),
                        "--out", str(tmp_path / "raw"), "--json"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0, r.stderr
    (folder,) = [Path(p) for p in json.loads(r.stdout)]
    assert check_dataset(folder) == []
    assert sorted((p.name, p.stat().st_size) for p in base.rglob("*") if p.is_file()) == before  # input untouched
    data = load_dataset(f"nnunet:{folder}", 0, cache_dir=str(tmp_path / "cache"))
    assert data.spec.tasks[0].num_classes == 14 and len(data) == 4
    again = subprocess.run([sys.executable, "-m", "bench", "data", "convert", "flare22", "--data-root",
                            str(tmp_path / "data"), "--out", str(tmp_path / "raw")], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1   # refuses to overwrite


def test_two_stage_run_killed_in_stage_two_resumes_to_the_same_result(runs, monkeypatch):
    from bench.checkpoint import Checkpointer

    cfg = build_config("m4oe", "synthetic-organs:liver", seed=2, preset="tiny", train={**QUICK, "epochs": 4},
                       sets={"img_size": "32", "window_size": "2"})
    whole = run_job(cfg, None, runs / "whole", progress=False)

    class Killed(BaseException):  # a kill, not an error: an Exception would become a failed record
        pass

    real_save = Checkpointer.save

    def save_then_die(self, path, state):
        real_save(self, path, state)
        if path.name == "last.pt" and state["stage"] == 1 and state["state"]["epoch"] == 1:
            raise Killed

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(Killed):
        run_job(cfg, None, runs / "killed", progress=False)
    monkeypatch.setattr(Checkpointer, "save", real_save)
    resumed = run_job(cfg, None, runs / "killed", progress=False)
    assert resumed.status == whole.status == "ok"
    assert resumed.metrics == whole.metrics
    assert [s["history"] for s in resumed.summary["stages"]] == [s["history"] for s in whole.summary["stages"]]


def test_unet_counts_only_the_encoder_stages_it_runs():
    """smp keeps all four ResNet stages whatever encoder_depth is; a depth-3 U-Net runs conv1, bn1,
    layer1 and layer2 only. The count is checked against torchvision's ResNet-18, an independent
    implementation, and the outputs against smp's unpruned network on the same weights."""
    import segmentation_models_pytorch as smp
    import torchvision

    from methods.unet import make_unet

    hp = _hp("unet")   # tiny: resnet18, depth 3
    assert (hp["unet_encoder"], hp["unet_depth"]) == ("resnet18", 3)
    torch.manual_seed(0)
    full = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8), in_channels=1,
                    classes=5)
    torch.manual_seed(0)
    used = make_unet(hp, 1, 5)
    tv = torchvision.models.resnet18(weights=None)
    n = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
    conv1 = 64 * 1 * 7 * 7   # one input channel instead of three
    assert n(used.encoder) == conv1 + n(tv.bn1) + n(tv.layer1) + n(tv.layer2)
    assert n(full.encoder) == conv1 + n(tv.bn1) + n(tv.layer1) + n(tv.layer2) + n(tv.layer3) + n(tv.layer4)
    full.eval(), used.eval()
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(full(x), used(x))
    cls, _ = parse_method("unet")
    assert sum(p.numel() for p in cls(_spec((5, 4, 3)), hp).parameters()) < 3 * 0.8e6   # was 33.8 M
