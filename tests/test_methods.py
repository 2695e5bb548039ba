"""Tests of the method contract: registry, shapes, gradients, missing modalities, heads, planted signal."""
from __future__ import annotations

import pytest
import torch

from bench.runner import build_config, run_job
from datasets import DatasetSpec, ModalitySpec, TaskSpec
from methods import Method, Output, UnknownMethod, method_classes, parse_method, resolve_hparams, task_loss
from methods.nets.heads import TaskHeads
from methods.seg_base import SegMethod

BASELINES = ("single", "early", "late", "intermediate", "attention", "moe", "soft-moe")
SMALL_DATASETS = ("digits-halves", "wdbc", "diabetes-views", "synthetic-mvmt")


def _build(name: str, spec, **overrides) -> Method:
    cls, from_name = parse_method(name)
    torch.manual_seed(0)
    return cls(spec, resolve_hparams(cls.defaults(), "tiny", {**from_name, **overrides}))


def _batch(data, n: int = 8, split: str = "train"):
    return data.batch(data.splits[split][:n])


# ----------------------------------------------------------------------------------------- registry


def test_registry_has_the_baselines() -> None:
    classes = {c.name: c for c in method_classes()}
    assert set(BASELINES) <= set(classes)
    for name in BASELINES:
        cls = classes[name]
        assert issubclass(cls, Method) and cls.description
        assert "hidden" in cls.defaults()
        assert isinstance(getattr(cls, "missing_modality", None), str)


def test_parse_method() -> None:
    cls, hp = parse_method("single:left")
    assert cls.name == "single" and hp == {"modality": "left"}
    cls, hp = parse_method("late")
    assert cls.name == "late" and hp == {}
    with pytest.raises(UnknownMethod) as exc:
        parse_method("no-such-method")
    assert all(name in str(exc.value) for name in BASELINES)
    with pytest.raises(UnknownMethod, match="takes no ':' argument"):
        parse_method("early:x")
    assert issubclass(UnknownMethod, ValueError)


def test_resolve_hparams_order() -> None:
    defaults = {"hidden": 64, "dropout": 0.1, "weights": "mean"}
    hp = resolve_hparams(defaults, "tiny", {"dropout": 0.3})
    assert hp == {"hidden": 16, "dropout": 0.3, "weights": "mean"}  # preset over defaults, overrides over preset
    assert "heads" not in hp  # presets only set declared hparams
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_hparams(defaults, "huge", {})


def test_single_needs_a_real_modality(load_data) -> None:
    spec = load_data("wdbc").spec
    with pytest.raises(ValueError, match="mean, se, worst"):
        _build("single:nope", spec)
    with pytest.raises(ValueError):
        _build("single", spec)


def test_supports_rejects_segmentation() -> None:
    spec = DatasetSpec("seg", (ModalitySpec("ct", "image2d", (1, 8, 8)),), (TaskSpec("mask", "segmentation", 3),),
                       "r", "s")
    for cls in method_classes():
        if cls.name in BASELINES:
            reason = cls.supports(spec)
            assert isinstance(reason, str) and "segmentation" in reason


# --------------------------------------------------------------------- forward / loss / backward


def _method_names(spec) -> list[str]:
    return [f"single:{spec.modality_names[-1]}", "early", "late", "intermediate", "attention", "moe", "soft-moe"]


@pytest.mark.parametrize("dataset", SMALL_DATASETS)
def test_forward_loss_backward(dataset, load_data) -> None:
    data = load_data(dataset)
    spec = data.spec
    batch = _batch(data)
    b = len(batch["index"])
    for name in _method_names(spec):
        model = _build(name, spec)
        assert cls_supports(model, spec)
        out = model(batch)
        assert isinstance(out, Output) and set(out.preds) == set(spec.task_names)
        for t in spec.tasks:
            p = out.preds[t.name]
            expected = (b,) if t.kind == "regression" else (b, t.num_classes)
            assert tuple(p.shape) == expected, (name, t.name)
            assert bool(torch.isfinite(p).all())
        total, parts = model.loss(out, batch)
        assert total.dim() == 0 and bool(torch.isfinite(total)) and float(total.detach()) > 0
        assert {f"task/{t}" for t in spec.task_names} <= set(parts)
        assert float(total.detach()) == pytest.approx(float(sum(v.detach() for v in parts.values())), rel=1e-5)
        total.backward()
        params = list(model.named_parameters())
        with_grad = [n for n, p in params if p.grad is not None and bool((p.grad != 0).any())]
        assert len(with_grad) >= 0.9 * len(params), (name, sorted(set(n for n, _ in params) - set(with_grad)))
        if name.startswith("single"):
            used = spec.modality_names[-1]
            others = [m for m in spec.modality_names if m != used]
            assert not hasattr(model, "encoders") and not hasattr(model, "fusion")
            # only the used modality has an encoder: the model never reads the others
            other_batch = dict(batch, inputs={**batch["inputs"],
                                              **{m: torch.randn_like(batch["inputs"][m]) for m in others}})
            model.eval()
            with torch.no_grad():
                for t in spec.task_names:
                    torch.testing.assert_close(model(other_batch).preds[t], model(batch).preds[t])
        elif name != "early":
            encoders = model.encoders
            assert set(encoders) == set(spec.modality_names)
            for m in spec.modality_names:  # every modality's encoder is trained
                assert any(p.grad is not None and bool((p.grad != 0).any()) for p in encoders[m].parameters()), (name, m)


def cls_supports(model: Method, spec) -> bool:
    return type(model).supports(spec) is True


def test_early_stacks_same_size_images_as_channels(load_data) -> None:
    assert _build("early", load_data("synthetic-mvmt").spec).as_channels
    assert _build("early", load_data("digits-halves").spec).as_channels
    assert not _build("early", load_data("wdbc").spec).as_channels


# ------------------------------------------------------------------------------------ missing modalities


def _masked_invariance(model: Method, batch, modality: str) -> None:
    model.eval()
    batch = {**batch, "inputs": dict(batch["inputs"]), "mask": dict(batch["mask"])}
    mask = batch["mask"][modality].clone()
    mask[0] = False
    x = batch["inputs"][modality].clone()
    x[0] = 0.0  # the data contract: absent rows are zeros
    batch["mask"][modality], batch["inputs"][modality] = mask, x
    with torch.no_grad():
        base = model(batch).preds
        x2 = x.clone()
        x2[0] = 5.0 * torch.randn_like(x2[0]) + 3.0  # garbage in the absent row
        x2[1] = x2[1] + 2.0 * torch.randn_like(x2[1])  # a real change in a present row
        changed = model({**batch, "inputs": {**batch["inputs"], modality: x2}}).preds
    for t in base:
        torch.testing.assert_close(changed[t][0], base[t][0], rtol=1e-5, atol=1e-5)  # absent row ignored
        torch.testing.assert_close(changed[t][2:], base[t][2:], rtol=1e-5, atol=1e-5)  # no cross-sample leak
        assert not torch.allclose(changed[t][1], base[t][1], atol=1e-4), t  # the present row did change


@pytest.mark.parametrize("method", ["late", "attention", "intermediate"])
@pytest.mark.parametrize("dataset,modality", [("wdbc", "se"), ("synthetic-mvmt", "v3"), ("digits-halves", "left")])
def test_masked_modality_does_not_affect_prediction(method, dataset, modality, load_data) -> None:
    data = load_data(dataset)
    model = _build(method, data.spec)
    _masked_invariance(model, _batch(data), modality)


def test_masked_modality_in_real_data_handled(load_data) -> None:
    data = load_data("synthetic-mvmt")
    absent = torch.nonzero(~data.mask["v3"]).flatten()[:4].numpy()
    batch = data.batch(absent)
    for method in ("late", "attention", "intermediate"):
        model = _build(method, data.spec).eval()
        with torch.no_grad():
            base = model(batch).preds
            noisy = {**batch, "inputs": {**batch["inputs"], "v3": torch.randn_like(batch["inputs"]["v3"])}}
            out = model(noisy).preds
        for t in base:
            torch.testing.assert_close(out[t], base[t], rtol=1e-5, atol=1e-5)


def test_late_fusion_averages_present_branches(load_data) -> None:
    data = load_data("wdbc")
    model = _build("late", data.spec).eval()
    batch = _batch(data, 4)
    batch = {**batch, "mask": {**batch["mask"], "se": torch.tensor([False, True, True, True])}}
    with torch.no_grad():
        out = model(batch)
        branch = {m: model.backbone.heads[m](model.encoders[m](batch["inputs"][m]).mean(1))["diagnosis"]
                  for m in data.spec.modality_names}
    expected0 = (branch["mean"][0] + branch["worst"][0]) / 2
    expected1 = (branch["mean"][1] + branch["se"][1] + branch["worst"][1]) / 3
    torch.testing.assert_close(out.preds["diagnosis"][0], expected0)
    torch.testing.assert_close(out.preds["diagnosis"][1], expected1)
    w = out.aux["modality_weights"]
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    assert float(w[0, 1]) == 0.0 and float(w[0, 0]) == pytest.approx(0.5)


def test_late_fusion_learned_weights(load_data) -> None:
    data = load_data("wdbc")
    model = _build("late", data.spec, weights="learned")
    assert model.backbone.logit_w is not None and model.backbone.logit_w.shape == (3,)
    batch = _batch(data)
    out = model(batch)
    model.loss(out, batch)[0].backward()
    assert model.backbone.logit_w.grad is not None
    with pytest.raises(ValueError, match="weights"):
        _build("late", data.spec, weights="max")


# ----------------------------------------------------------------------------------------- heads


def test_regression_head_reports_original_units() -> None:
    task = TaskSpec("r", "regression", 1, target_mean=100.0, target_std=10.0)
    cls_task = TaskSpec("c", "multiclass", 3)
    heads = TaskHeads((task, cls_task), 4)
    with torch.no_grad():
        for lin in heads.heads.values():
            lin.weight.zero_()
            lin.bias.zero_()
    h = torch.randn(5, 4)
    out = heads(h)
    assert tuple(out["r"].shape) == (5,) and tuple(out["c"].shape) == (5, 3)
    torch.testing.assert_close(out["r"], torch.full((5,), 100.0))
    torch.testing.assert_close(out["c"], torch.zeros(5, 3))  # classification logits are not rescaled
    with torch.no_grad():
        heads.heads["r"].bias.fill_(1.0)  # one standardised unit = one target_std
    torch.testing.assert_close(heads(h)["r"], torch.full((5,), 110.0))


def test_regression_loss_is_standardised() -> None:
    task = TaskSpec("r", "regression", 1, target_mean=100.0, target_std=10.0)
    target = torch.tensor([90.0, 100.0, 120.0])
    loss = task_loss(task, target + 10.0, target, torch.ones(3, dtype=torch.bool))
    assert float(loss) == pytest.approx(1.0)  # an error of one std costs 1
    none = task_loss(task, (target + 10.0).requires_grad_(), target, torch.zeros(3, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad
    masked = task_loss(task, torch.tensor([100.0, 0.0, 120.0]), target, torch.tensor([False, True, True]))
    assert float(masked) == pytest.approx((100.0 + 0.0) / 2)


@pytest.mark.parametrize("method", ["single:serum", "early", "late", "intermediate", "attention"])
def test_every_method_predicts_regression_in_original_units(method, load_data) -> None:
    data = load_data("diabetes-views")
    task = data.spec.task("progression")
    assert task.target_mean > 100 and task.target_std > 50  # the spec carries the train-split scale
    model = _build(method, data.spec).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, TaskHeads):
                for lin in mod.heads.values():
                    lin.weight.zero_()
                    lin.bias.zero_()
        pred = model(_batch(data)).preds["progression"]
    torch.testing.assert_close(pred, torch.full_like(pred, task.target_mean))


# ------------------------------------------------------------------------------------ planted signal


def _test_accuracy(method: str, dataset: str, epochs: int, tmp_path) -> float:
    cfg = build_config(method, dataset, seed=0, split_seed=0, preset="tiny", train={"epochs": epochs, "patience": 0})
    assert cfg.method == method and cfg.preset == "tiny" and cfg.hparams["hidden"] == 16
    record = run_job(cfg, store=None, runs_dir=tmp_path, progress=False)
    assert record.status == "ok", record
    assert record.summary["epochs_run"] == epochs
    return float(record.metrics["test"]["label"]["accuracy"])


@pytest.mark.parametrize("method", ["single:m1", "early", "late", "intermediate", "attention", "moe", "soft-moe"])
def test_planted_unique_signal_is_learned(method, tmp_path) -> None:
    assert _test_accuracy(method, "synthetic-pid:unique-m1", 15, tmp_path) > 0.75


def test_uninformative_modality_stays_at_chance(tmp_path) -> None:
    assert _test_accuracy("single:m2", "synthetic-pid:unique-m1", 15, tmp_path) < 0.62


@pytest.mark.parametrize("method", ["attention", "intermediate"])
def test_planted_synergy_is_learned_by_fusion(method, tmp_path) -> None:
    assert _test_accuracy(method, "synthetic-pid:synergy", 25, tmp_path) > 0.65


def test_synergy_is_invisible_to_one_modality(tmp_path) -> None:
    assert _test_accuracy("single:m1", "synthetic-pid:synergy", 25, tmp_path) < 0.6


# ------------------------------------------------------------------------------------ MoE controls


def test_switch_moe_load_balancing_loss_keeps_its_gradient(load_data) -> None:
    data = load_data("synthetic-pid:mixed")
    model = _build("moe", data.spec, num_experts=4, top_k=1)
    batch = _batch(data, 32)
    out = model(batch)
    lb = out.losses["load_balance"]
    assert lb.requires_grad and float(lb.detach()) > 0
    total, parts = model.loss(out, batch)
    assert "aux/load_balance" in parts
    lb.backward(retain_graph=True)
    router = model.backbone.blocks[0].ffn.router.weight
    assert router.grad is not None and bool((router.grad != 0).any()), "load balancing must train the router"


def test_switch_moe_balanced_router_gives_the_textbook_minimum() -> None:
    from methods.nets.moe_layers import SwitchMoE

    layer = SwitchMoE(8, experts=4, top_k=1, aux_weight=1.0)
    torch.nn.init.zeros_(layer.router.weight)  # uniform probabilities: P_e = 1/E
    x = torch.randn(2, 6, 8)
    _, aux = layer(x)
    # all tokens pick expert 0 on ties: f = (1, 0, 0, 0), so E * sum f_e P_e = 4 * 1/4 = 1
    assert float(aux.detach()) == pytest.approx(1.0)


def test_moe_reports_active_parameters_below_total(load_data) -> None:
    from bench.cost import parameter_counts

    data = load_data("synthetic-pid:mixed")
    counts = parameter_counts(_build("moe", data.spec, num_experts=4, top_k=1))
    assert counts["params_active"] < counts["params_total"]
    dense = parameter_counts(_build("attention", data.spec))
    assert dense["params_active"] == dense["params_total"]


def test_soft_moe_ignores_absent_modality_tokens(load_data) -> None:
    data = load_data("wdbc")
    model = _build("soft-moe", data.spec).eval()
    batch = _batch(data, 4)
    batch = {**batch, "mask": {**batch["mask"], "se": torch.tensor([False, False, True, True])}}
    changed = {**batch, "inputs": {**batch["inputs"], "se": torch.randn_like(batch["inputs"]["se"])}}
    with torch.no_grad():
        a, b = model(batch).preds["diagnosis"], model(changed).preds["diagnosis"]
    torch.testing.assert_close(a[:2], b[:2])
    assert not torch.allclose(a[2:], b[2:])


def test_search_spaces_only_declare_known_hparams() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for cls in method_classes():
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        space = cls.search_space(trial)
        shared = {"dice_weight"} if issubclass(cls, SegMethod) else {"hidden", "dropout"}
        assert shared <= set(space), cls.name
        assert set(space) <= set(cls.defaults()), (cls.name, set(space) - set(cls.defaults()))


@pytest.mark.parametrize("dataset", ["wdbc", "synthetic-mvmt"])
def test_every_registered_method_meets_the_contract(dataset, load_data) -> None:
    """Iterates the registry, not a list: a method added to the table is exercised here without
    editing this test (forward shapes, a finite loss that is the sum of its parts, gradients)."""
    from methods import method_names

    data = load_data(dataset)
    spec, batch = data.spec, _batch(data)
    b = len(batch["index"])
    tried = []
    for name in method_names():
        cls, _ = parse_method(name)
        if getattr(cls, "name_arg", None):
            name = f"{name}:{spec.modality_names[0]}"
        if cls.supports(spec) is not True:
            continue
        model = _build(name, spec)
        out = model(batch)
        for t in spec.tasks:
            expected = (b,) if t.kind == "regression" else (b, t.num_classes)
            assert tuple(out.preds[t.name].shape) == expected and bool(torch.isfinite(out.preds[t.name]).all()), name
        total, parts = model.loss(out, batch)
        assert bool(torch.isfinite(total)) and float(total.detach()) == pytest.approx(
            float(sum(v.detach() for v in parts.values())), rel=1e-5, abs=1e-6), name
        total.backward()
        assert any(p.grad is not None and bool((p.grad != 0).any()) for p in model.parameters()), name
        tried.append(name.partition(":")[0])
    assert {"early", "late", "attention", "i2moe", "mmoe", "m4oe-mt"} <= set(tried)
