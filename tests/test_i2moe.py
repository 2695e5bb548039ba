"""I2MoE: structure, interaction losses on hand-made logits, gradients, loop == batched,
evaluation, reference mode, ablation flags, interpretation output."""
from __future__ import annotations

import pytest
import torch

import datasets
from bench.runner import build_config, run_job
from methods import parse_method, resolve_hparams
from methods.i2moe import I2MoE, interaction_losses

I2, _ = parse_method("i2moe")


def _data(m: int = 2, variant: str = "mixed"):
    return datasets.load_dataset(f"synthetic-pid:{variant}", modalities=m, n=200)


def _model(spec, **over) -> I2MoE:
    torch.manual_seed(0)
    return I2(spec, resolve_hparams(I2.defaults(), "tiny", {"dropout": 0.0, **over}))


def _batch(data, n: int = 12):
    return data.batch(data.splits["train"][:n])


@pytest.mark.parametrize("m", [2, 3, 4])
def test_k_is_m_plus_2_and_weights_sum_to_one(m):
    data = _data(m)
    model = _model(data.spec)
    assert model.k == m + 2 and model.experts.k == m + 2
    assert model.expert_names == [f"unique-m{i + 1}" for i in range(m)] + ["synergy", "redundancy"]
    assert model.gate[-1].out_features == m + 2
    out = model.eval()(_batch(data))
    w = out.aux["expert_weights"]
    assert w.shape == (12, m + 2)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(12))


def test_prediction_is_the_weighted_sum_of_expert_logits():
    data = _data(3)
    model = _model(data.spec).eval()
    with torch.no_grad():
        out = model(_batch(data))
    w = out.aux["expert_weights"]  # (B, K)
    logits = out.aux["expert_logits_label"].reshape(12, model.k, 2)  # (B, K, C)
    manual = (w.unsqueeze(-1) * logits).sum(dim=1)
    torch.testing.assert_close(out.preds["label"], manual)


def test_interaction_losses_on_hand_made_logits():
    m, b, d = 2, 5, 3
    x = torch.randn(b, d)
    same = x.expand(m + 2, m + 1, b, d).clone()  # every variant identical to the clean pass
    losses = interaction_losses(same, [0, 1], m, regression=False, margin=1.0)
    # identical anchor/positive/negative: triplet = max(0 - 0 + margin) = margin
    assert losses[0].item() == pytest.approx(1.0) and losses[1].item() == pytest.approx(1.0)
    assert losses[m].item() == pytest.approx(1.0, abs=1e-6)  # synergy = cos(clean, perturbed) = 1
    assert losses[m + 1].item() == pytest.approx(0.0, abs=1e-6)  # redundancy = 1 - cos = 0
    flipped = same.clone()
    flipped[:, 1:] = -x
    losses = interaction_losses(flipped, [0, 1], m, regression=False)
    assert losses[m].item() == pytest.approx(-1.0, abs=1e-6)
    assert losses[m + 1].item() == pytest.approx(2.0, abs=1e-6)
    # uniqueness: negative far away (own modality removed), positive identical -> loss 0
    uniq = same.clone()
    uniq[0, 1] = x + 10.0  # expert 0, variant perturbing modality 0 -> the negative
    assert interaction_losses(uniq, [0, 1], m, regression=False)[0].item() == pytest.approx(0.0)


def test_regression_losses_are_bounded_by_default_and_reference_differs():
    m, b = 2, 4
    clean = torch.zeros(b, 1)
    out = clean.expand(m + 2, m + 1, b, 1).clone()
    out[:, 1:] = 100.0  # perturbed outputs far from clean
    ours = interaction_losses(out, [0, 1], m, regression=True)
    assert 0 <= ours[m].item() < 1e-6  # synergy exp(-d): far is good, bounded below by 0
    assert ours[m + 1].item() == pytest.approx(1.0)  # redundancy 1 - exp(-d): far is bad, bounded by 1
    ref = interaction_losses(out, [0, 1], m, regression=True, reference=True)
    assert ref[m].item() == pytest.approx(100.0)  # reference: +d, the opposite sign and unbounded


@pytest.mark.parametrize("impl", ["batched", "vmap", "per-expert"])
def test_every_expert_encoder_and_gate_gets_gradients(impl):
    data = _data(3)
    model = _model(data.spec, impl=impl).train()
    batch = _batch(data)
    out = model(batch)
    total, parts = model.loss(out, batch)
    assert "aux/interaction" in parts and parts["aux/interaction"].requires_grad
    total.backward()
    for p in model.experts.stacked:
        nonzero = p.grad.reshape(model.k, -1).abs().sum(dim=1) > 0
        assert bool(nonzero.all()), "every expert's slice of every parameter gets a gradient"
    for m in data.spec.modality_names:
        assert any(bool((p.grad != 0).any()) for p in model.encoders[m].parameters())
    assert all(bool((p.grad != 0).any()) for p in model.gate.parameters())


def test_moe_backbone_load_balancing_keeps_gradient_and_reference_drops_it():
    data = _data(2)
    batch = _batch(data)
    for ref, kept in ((False, True), (True, False)):
        model = _model(data.spec, backbone="moe", reference_compat=ref).train()
        out = model(batch)
        assert out.losses["load_balance"].requires_grad is kept
        if kept:
            model.zero_grad()
            out.losses["load_balance"].backward(retain_graph=True)
            router = [p for n, p in zip(model.experts.names, model.experts.stacked) if "router" in n][0]
            assert bool((router.grad.reshape(model.k, -1).abs().sum(1) > 0).all())


@pytest.mark.parametrize("backbone", ["attention", "late", "intermediate", "early", "moe", "soft-moe"])
@pytest.mark.parametrize("m", [2, 3])
def test_loop_and_batched_agree_on_outputs_and_gradients(backbone, m):
    data = _data(m)
    batch = _batch(data)
    results = {}
    for impl in ("loop", "per-expert", "vmap", "batched"):
        model = _model(data.spec, backbone=backbone, impl=impl).train()
        torch.manual_seed(123)  # the same noise draws
        out = model(batch)
        total, parts = model.loss(out, batch)
        total.backward()
        results[impl] = (out.preds["label"].detach(), {k: v.detach() for k, v in parts.items()},
                         [p.grad.clone() for p in model.parameters()])
    ref_pred, ref_parts, ref_grads = results["loop"]
    for impl, (pred, parts, grads) in results.items():
        torch.testing.assert_close(pred, ref_pred, atol=1e-5, rtol=1e-5)
        for k in ref_parts:
            torch.testing.assert_close(parts[k], ref_parts[k], atol=1e-5, rtol=1e-5)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_evaluation_is_deterministic_and_runs_only_clean_passes(monkeypatch):
    data = _data(3)
    model = _model(data.spec, impl="loop", dropout=0.2).eval()
    calls = []
    real = model.experts.one
    monkeypatch.setattr(model.experts, "one", lambda k, *a: calls.append(k) or real(k, *a))
    batch = _batch(data)
    with torch.no_grad():
        a, b = model(batch), model(batch)
    assert calls == list(range(model.k)) * 2  # K clean passes per forward, no perturbed ones
    torch.testing.assert_close(a.preds["label"], b.preds["label"], rtol=0, atol=0)
    assert not a.losses


def test_reference_compat_gives_identical_experts_at_step_zero():
    spec = _data(2).spec
    ref = _model(spec, reference_compat=True)
    ours = _model(spec)
    for p in ref.experts.stacked:
        assert all(torch.equal(p[0], p[k]) for k in range(1, ref.k))
    assert any(not torch.equal(p[0], p[1]) for p in ours.experts.stacked)
    assert ref.hparams["attn_residual"] is False and ref.hparams["expert_init"] == "shared"


def test_ablation_flags():
    data = _data(3)
    batch = _batch(data)
    no_int = _model(data.spec, interaction_loss=False).train()
    assert "interaction" not in no_int(batch).losses
    uniform = _model(data.spec, uniform_weights=True).eval()
    torch.testing.assert_close(uniform(batch).aux["expert_weights"], torch.full((12, 5), 0.2))
    for over in ({"perturb": "zero"}, {"perturb": "mean"}, {"loss_space": "latent"}, {"num_perturb": 2},
                 {"expert_init": "shared"}, {"temperature": 2.0}):
        model = _model(data.spec, **over).train()
        out = model(batch)
        assert torch.isfinite(model.loss(out, batch)[0]), over
    with pytest.raises(ValueError, match="perturb='blur' is not one of"):
        _model(data.spec, perturb="blur")
    with pytest.raises(ValueError, match="num_perturb must be in 0..3"):
        _model(data.spec, num_perturb=5)


def test_regression_dataset_runs_with_distance_losses():
    data = datasets.load_dataset("diabetes-views")
    model = _model(data.spec).train()
    batch = _batch(data)
    out = model(batch)
    assert model.regression and torch.isfinite(out.losses["interaction"])
    assert out.preds["progression"].shape == (12,)


def test_interpret_scores_dominant_expert_against_planted_truth():
    import numpy as np

    model = _model(_data(2).spec)
    w = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7], [0.1, 0.7, 0.1, 0.1]])
    truth = np.array(["unique-m1", "synergy", "redundant", "synergy"])
    got = model.interpret({"expert_weights": w}, {"interaction": truth})
    assert got["agreement"] == pytest.approx(0.75)
    assert got["agreement_synergy"] == pytest.approx(0.5) and got["agreement_redundant"] == pytest.approx(1.0)
    assert got["weight_unique-m1"] == pytest.approx(0.25)


def test_match_params_control_has_about_i2moe_parameter_count():
    spec = _data(2).spec
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    for name in ("attention", "intermediate"):
        cls, _ = parse_method(name)
        matched = cls(spec, resolve_hparams(cls.defaults(), "small", {"match_params": True}))
        plain = cls(spec, resolve_hparams(cls.defaults(), "small", {}))
        target = count(I2(spec, resolve_hparams(I2.defaults(), "small", {"backbone": name})))
        assert count(plain) < 0.6 * target
        assert abs(count(matched) - target) / target < 0.1, (name, count(matched), target)


def test_run_stores_weights_and_agreement(tmp_path):
    from bench.store import RunStore, default_url

    store = RunStore(default_url(tmp_path))
    cfg = build_config("i2moe", "synthetic-pid:synergy", preset="tiny", train={"epochs": 3, "patience": 0})
    rec = run_job(cfg, store, tmp_path, progress=False)
    interp = rec.metrics["test"]["interpretation"]
    assert 0.0 <= interp["agreement"] <= 1.0 and "weight_synergy" in interp
    assert sum(interp[f"weight_{n}"] for n in ("unique-m1", "unique-m2", "synergy", "redundancy")) == pytest.approx(1.0)
    cases = store.cases(cfg.key())
    weights = cases["aux_expert_weights"].iloc[0]
    assert len(weights) == 4 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert set(cases["truth_interaction"]) == {"synergy"}
