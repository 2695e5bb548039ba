"""I2MoE: structure, interaction losses on hand-made logits, gradients, loop == batched,
evaluation, reference mode (against numbers from the authors' code), which modality and whose
noise each perturbed pass gets, ablation flags, interpretation output."""
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


def test_regression_losses_are_bounded_by_default_and_reference_is_mse():
    m, b = 2, 4
    clean = torch.zeros(b, 1)
    out = clean.expand(m + 2, m + 1, b, 1).clone()
    out[:, 1:] = 100.0  # perturbed outputs far from clean
    ours = interaction_losses(out, [0, 1], m, regression=True)
    assert 0 <= ours[m].item() < 1e-6  # synergy exp(-d): far is good, bounded below by 0
    assert ours[m + 1].item() == pytest.approx(1.0)  # redundancy 1 - exp(-d): far is bad, bounded by 1
    ref = interaction_losses(out, [0, 1], m, regression=True, regression_form="mse")
    # reference (InteractionMoERegression): synergy and redundancy are both mean_j MSE(o^0, o^j), so both
    # pull the perturbed outputs toward the clean one; uniqueness MSE(a, p) - MSE(a, n) = 0 here (p == n)
    assert ref[m].item() == pytest.approx(100.0 ** 2) and ref[m + 1].item() == pytest.approx(100.0 ** 2)
    assert ref[0].item() == pytest.approx(0.0) and ref[1].item() == pytest.approx(0.0)
    out[0, 2] = 10.0  # expert 0: the positive (modality 2 perturbed) closer than the negative: unhinged, negative
    assert interaction_losses(out, [0, 1], m, regression=True, regression_form="mse")[0].item() == pytest.approx(
        10.0 ** 2 - 100.0 ** 2)


# ---------------------------------------------------------------- numbers from the authors' code
# Computed with the authors' released code (github.com/Raina-Xin/I2MoE at commit 75b578e, torch CPU,
# float32) on the weights and inputs that _fill/_tokens regenerate here: their Transformer
# (src/common/fusion_models/transformer.py), InteractionMoE.inference and InteractionMoERegression.forward,
# with our parameters copied into theirs by this name mapping (ours -> theirs):
#   pos.m1, pos.m2 (concatenated along tokens) -> pos_embed
#   blocks.i.attn.qkv.weight rows [:H] / [H:]  -> network.i.attn.q.weight / network.i.attn.kv.weight
#   blocks.i.{norm1,norm2,attn.proj}.*         -> network.i.{norm1,norm2,attn.proj}.*
#   blocks.i.ffn.fc1.* / blocks.i.ffn.fc2.*    -> network.i.mlp.network.0.* / network.i.mlp.network.3.*
#   heads.heads.label.*                        -> network.2.fc.*   (their final Linear on M*H)
#   gate.0.*, gate.3.*                          -> reweight.mlp.network.0.*, reweight.mlp.network.3.*
# Shapes: M = 2 modalities of P = 3 tokens, H = 16, 4 heads, 2 fusion layers, dropout 0.3, batch 4.
REF_M, REF_P, REF_H, REF_B = 2, 3, 16, 4
REF_BACKBONE = [[-1.94808960, 2.38342476], [-0.88700724, 2.09739685], [-2.49143481, -0.30071074],
                [-2.44289875, -0.95384514]]  # weights seed 11, inputs seed 12, eval
REF_WEIGHTS = [[0.19736540, 0.33876383, 0.21714982, 0.24672100], [0.19462742, 0.23000015, 0.39492059, 0.18045184],
               [0.18326171, 0.39933631, 0.28769147, 0.12971051], [0.25970921, 0.32303777, 0.20528078, 0.21197221]]
REF_PRED = [[-0.21911147, 0.41210890], [0.57130742, 0.01590799], [0.42537352, 0.33632237],
            [0.22621098, 1.64293337]]  # weights seed 21 (stacked experts + gate.*), inputs seed 22, eval
# InteractionMoERegression with M = 3 on fixed expert outputs OUT = randn(5, 4, 5, 1) (seed 31; expert k,
# variant v: 0 clean, v perturbs modality v-1): their interaction losses, then their training script's
# criterion SmoothL1Loss() on their weighted prediction against TARGET = the next randn(5) of that generator
REF_REG_LOSSES = [-0.93076408, -0.20207161, -0.23729914, 1.61277139, 2.85920811]
REF_REG_PRED = [0.20447658, -0.05885432, 0.46570858, 0.60257965, 0.36963037]
REF_REG_TASK = 0.45855325


def _ref_spec(tasks=None):
    from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec

    return DatasetSpec(name="ref", modalities=tuple(ModalitySpec(f"m{i + 1}", "sequence", (REF_P, 5))
                                                    for i in range(REF_M)),
                       tasks=tasks or (TaskSpec("label", "binary", 2),), split_rule="-", source="test")


def _ref_hparams(**over):
    return resolve_hparams(I2.defaults(), "tiny", {"hidden": REF_H, "heads": 4, "fusion_layers": 2, "dropout": 0.3,
                                                   "gate_layers": 2, "reference_compat": True, **over})


def _fill(named, seed: int) -> None:
    """Deterministic weights: parameters in sorted name order, 0.2 N(0, 1) (LayerNorm gains 1 + 0.1 N(0, 1))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(named):
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith(("norm1.weight", "norm2.weight")) else 0.2 * noise)


def _tokens(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"m{i + 1}": torch.randn(REF_B, REF_P, REF_H, generator=g) for i in range(REF_M)}


def _all_present(b: int = REF_B, m: int = REF_M) -> dict[str, torch.Tensor]:
    return {f"m{i + 1}": torch.ones(b, dtype=torch.bool) for i in range(m)}


def test_compat_transformer_matches_the_reference_transformer():
    from methods.i2moe import REFERENCE
    from methods.nets.backbones import build_backbone

    bb = build_backbone("attention", _ref_spec(), {**_ref_hparams(), **REFERENCE}, {"m1": REF_P, "m2": REF_P})
    names = sorted(n for n, _ in bb.named_parameters())
    assert "cls" not in names and "norm.weight" not in names and "blocks.0.attn.qkv.bias" not in names
    assert bb.heads.heads["label"].in_features == REF_M * REF_H
    _fill(bb.named_parameters(), seed=11)
    with torch.no_grad():
        out = bb.eval()(_tokens(12), _all_present())[0]["label"]
    torch.testing.assert_close(out, torch.tensor(REF_BACKBONE), atol=1e-5, rtol=1e-5)


def test_compat_model_matches_the_reference_model_at_evaluation(monkeypatch):
    import methods.i2moe as mod

    model = I2(_ref_spec(), _ref_hparams())
    named = list(zip(model.experts.names, model.experts.stacked)) + [(f"gate.{n}", p) for n, p in model.gate.named_parameters()]
    _fill(named, seed=21)
    tokens = _tokens(22)
    monkeypatch.setattr(mod, "encode", lambda encoders, names, batch: tokens)
    with torch.no_grad():
        out = model.eval()({"mask": _all_present()})
    torch.testing.assert_close(out.aux["expert_weights"], torch.tensor(REF_WEIGHTS), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.preds["label"], torch.tensor(REF_PRED), atol=1e-5, rtol=1e-5)


def test_reference_regression_losses_match_the_reference_numbers():
    g = torch.Generator().manual_seed(31)
    out = torch.randn(5, 4, 5, 1, generator=g)
    target = torch.randn(5, generator=g)
    got = interaction_losses(out, [0, 1, 2], 3, regression=True, regression_form="mse")
    torch.testing.assert_close(got, torch.tensor(REF_REG_LOSSES), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(interaction_losses(out, [0, 1, 2], 3, regression=True), got, atol=1e-2)

    from datasets.spec import TaskSpec
    from methods import Output

    spec = _ref_spec((TaskSpec("score", "regression", 1, target_mean=3.0, target_std=2.0),))
    model = I2(spec, _ref_hparams())
    batch = {"targets": {"score": target}, "target_mask": {"score": torch.ones(5, dtype=torch.bool)}}
    total, parts = model.loss(Output({"score": torch.tensor(REF_REG_PRED)}), batch)
    assert parts["task/score"].item() == pytest.approx(REF_REG_TASK, abs=1e-6)  # SmoothL1 in original units
    ours = I2(spec, _ref_hparams(reference_compat=False))
    mse = ((torch.tensor(REF_REG_PRED) - target) / 2.0).pow(2).mean()  # default: MSE in standardised units
    assert ours.loss(Output({"score": torch.tensor(REF_REG_PRED)}), batch)[1]["task/score"].item() == pytest.approx(
        mse.item(), abs=1e-6)


def test_reference_compat_sets_every_reference_flag_and_defaults_are_standard():
    from methods.i2moe import REFERENCE

    ours, ref = I2(_ref_spec(), _ref_hparams(reference_compat=False)), I2(_ref_spec(), _ref_hparams())
    assert REFERENCE == {"expert_init": "shared", "attn_residual": False, "readout": "mean", "pos_init": "zero",
                         "qkv_bias": False, "regression_int_loss": "mse", "regression_task_loss": "smooth-l1",
                         "latent_grad": False, "load_balance_grad": False}
    assert all(ref.hparams[k] == v for k, v in REFERENCE.items())
    assert all(ours.hparams[k] != v for k, v in REFERENCE.items())
    names = set(ours.experts.names)
    assert {"cls", "norm.weight", "blocks.0.attn.qkv.bias"} <= names
    pos = ours.experts.stacked[ours.experts.names.index("pos.m1")]
    assert pos.abs().max() > 0 and pos.std().item() == pytest.approx(0.02, rel=0.5)
    assert not ({"cls", "norm.weight", "blocks.0.attn.qkv.bias"} & set(ref.experts.names))
    assert torch.count_nonzero(ref.experts.stacked[ref.experts.names.index("pos.m1")]) == 0


def test_attn_residual_false_adds_the_attention_branch_to_itself():
    from methods.nets.blocks import Block

    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    std, ref = Block(8, 2), Block(8, 2, attn_residual=False)
    ref.load_state_dict(std.state_dict())
    with torch.no_grad():
        a = std.attn(std.norm1(x))
        want_std = (x + a) + std.ffn(std.norm2(x + a))
        want_ref = (2 * a) + std.ffn(std.norm2(2 * a))  # eval: a + dropout(a) = 2a, no path from x around attention
        torch.testing.assert_close(std.eval()(x)[0], want_std)
        torch.testing.assert_close(ref.eval()(x)[0], want_ref)


# ---------------------------------------------------------------- perturbed passes: which modality, whose noise
def _seq_model(m: int = 3, p: int = 2, **over) -> I2MoE:
    from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec

    spec = DatasetSpec(name="seq", modalities=tuple(ModalitySpec(f"m{i + 1}", "sequence", (p, 4)) for i in range(m)),
                       tasks=(TaskSpec("label", "multiclass", 3),), split_rule="-", source="test")
    return _model(spec, **over).eval()


def _expected(model, tokens, mask, perturbed, repl):
    """Expert k's output on variant v, computed one pass at a time from the replacements ``repl``."""
    names = model.spec.modality_names
    rows = []
    for k in range(model.k):
        per_v = []
        for which in [None] + [names[j] for j in perturbed]:
            inp = {n: (repl[n][k] if n == which else t) for n, t in tokens.items()}
            per_v.append(model.experts.one(k, inp, mask)[0]["label"])
        rows.append(torch.stack(per_v))
    return torch.stack(rows)  # (K, V, B, C)


@pytest.mark.parametrize("impl", ["loop", "per-expert", "vmap"])
@pytest.mark.parametrize("perturbed", [[0, 1, 2], [0, 2], [1]])
def test_each_expert_gets_its_own_noise_draw_on_the_modality_of_its_variant(impl, perturbed):
    """Variant v replaces modality perturbed[v-1] (and nothing else) by expert k's own draw: the draws are one
    randn(K, B, P, H) per perturbed modality, in order, slice k for expert k."""
    model = _seq_model(impl=impl)
    b = 5
    tokens = {n: torch.randn(b, 2, model.hparams["hidden"]) for n in model.spec.modality_names}
    mask = _all_present(b, 3)
    torch.manual_seed(7)
    with torch.no_grad():
        preds, _, _ = model.run_experts(tokens, mask, perturbed)
    torch.manual_seed(7)
    repl = {model.spec.modality_names[j]: torch.randn(model.k, b, 2, model.hparams["hidden"]) for j in perturbed}
    assert not torch.equal(repl[model.spec.modality_names[perturbed[0]]][0],
                           repl[model.spec.modality_names[perturbed[0]]][1])
    with torch.no_grad():
        want = _expected(model, tokens, mask, perturbed, repl)
    torch.testing.assert_close(preds["label"], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["loop", "per-expert", "vmap"])
def test_identical_experts_differ_only_on_perturbed_passes(impl):
    """With shared init every expert computes the same function: clean outputs agree, and perturbed outputs
    differ between experts only because each expert gets an independent noise draw."""
    model = _seq_model(impl=impl, expert_init="shared")
    tokens = {n: torch.randn(6, 2, model.hparams["hidden"]) for n in model.spec.modality_names}
    with torch.no_grad():
        preds, _, _ = model.run_experts(tokens, _all_present(6, 3), [0, 1, 2])
    out = preds["label"]  # (K, V, B, C)
    for k in range(1, model.k):
        torch.testing.assert_close(out[k, 0], out[0, 0], atol=1e-5, rtol=1e-5)
        for v in range(1, 4):
            assert (out[k, v] - out[0, v]).abs().max() > 1e-3, (k, v)


@pytest.mark.parametrize("impl", ["loop", "per-expert", "vmap"])
def test_zero_perturbation_replaces_exactly_the_named_modality(impl):
    """RNG-free: with perturb=zero, variant v equals the expert on the inputs with modality perturbed[v-1]
    zeroed, and differs from zeroing any other modality."""
    model = _seq_model(impl=impl, perturb="zero")
    names = model.spec.modality_names
    tokens = {n: torch.randn(4, 2, model.hparams["hidden"]) for n in names}
    mask = _all_present(4, 3)
    for perturbed in ([0, 1, 2], [0, 2], [1, 2]):
        with torch.no_grad():
            preds, _, _ = model.run_experts(tokens, mask, perturbed)
            for v, j in enumerate(perturbed, start=1):
                for k in range(model.k):
                    for other in range(3):
                        zeroed = {n: (torch.zeros_like(t) if n == names[other] else t) for n, t in tokens.items()}
                        ref = model.experts.one(k, zeroed, mask)[0]["label"]
                        close = torch.allclose(preds["label"][k, v], ref, atol=1e-5, rtol=1e-5)
                        assert close is (other == j), (perturbed, v, k, other)


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


@pytest.mark.parametrize("backbone", ["attention", "late", "intermediate", "early", "moe", "soft-moe", "mmoe"])
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


def test_reference_compat_on_regression_uses_raw_mse_interaction_and_smooth_l1_task_losses():
    import torch.nn.functional as F

    data = datasets.load_dataset("diabetes-views")
    batch = _batch(data)
    model = _model(data.spec, reference_compat=True).train()
    torch.manual_seed(3)
    out = model(batch)
    total, parts = model.loss(out, batch)
    task = data.spec.tasks[0]
    want = F.smooth_l1_loss(out.preds[task.name], batch["targets"][task.name].float())
    torch.testing.assert_close(parts[f"task/{task.name}"], want)
    # the interaction loss compares predictions in original units (not standardised)
    vec = model._vector({task.name: out.preds[task.name]}, {})
    torch.testing.assert_close(vec[:, 0], out.preds[task.name])


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
    assert got["gate_spread"] == pytest.approx(0.6)
    h = -(0.7 * np.log(0.7) + 3 * 0.1 * np.log(0.1)) / np.log(4)
    assert got["gate_entropy"] == pytest.approx(h)
    # dominant: u1, syn, red, u2; meant: u1, syn, red, syn -> p_e = 1/4*1/4 + 1/4*2/4 + 1/4*1/4 = 1/4
    assert got["chance_agreement"] == pytest.approx(0.25)
    assert got["agreement_kappa"] == pytest.approx((0.75 - 0.25) / 0.75)


def test_interpret_separates_a_decisive_gate_from_a_near_uniform_constant_one():
    import numpy as np

    model = _model(_data(2).spec)
    truth = np.array(["unique-m1"] * 7 + ["synergy"] * 3)
    # near-uniform weights whose argmax is always unique-m1 (what an untrained gate can look like)
    flat = np.full((10, 4), 0.25) + np.array([0.01, -0.01, 0.0, 0.0])
    got = model.interpret({"expert_weights": flat}, {"interaction": truth})
    assert got["agreement"] == pytest.approx(0.7)  # looks like signal ...
    assert got["agreement_kappa"] == pytest.approx(0.0) and got["chance_agreement"] == pytest.approx(0.7)  # ... is not
    assert got["gate_spread"] == pytest.approx(0.02) and got["gate_entropy"] > 0.999
    sharp = np.where(np.arange(4) == np.where(truth == "synergy", 2, 0)[:, None], 0.97, 0.01)
    got = model.interpret({"expert_weights": sharp}, {"interaction": truth})
    assert got["agreement"] == got["agreement_kappa"] == pytest.approx(1.0)
    assert got["gate_spread"] == pytest.approx(0.96) and got["gate_entropy"] < 0.2
    one_type = model.interpret({"expert_weights": sharp[:7]}, {"interaction": truth[:7]})
    assert one_type["agreement"] == 1.0 and one_type["agreement_kappa"] == 0.0  # a constant label carries no signal


def test_cohen_kappa_matches_a_worked_example_and_sklearn():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    from methods.i2moe import cohen_kappa

    # worked example (Wikipedia, "Cohen's kappa"): 50 items, both yes 20, both no 15, A yes/B no 5, A no/B yes 10:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    a = np.array(["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10)
    b = np.array(["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10)
    kappa, chance = cohen_kappa(a, b)
    assert kappa == pytest.approx(0.4) and chance == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    names = np.array(["unique-m1", "unique-m2", "synergy", "redundancy"])
    for _ in range(5):
        x, y = names[rng.integers(0, 4, 200)], names[rng.integers(0, 3, 200)]
        y[:80] = x[:80]
        assert cohen_kappa(x, y)[0] == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)


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
    assert {"agreement_kappa", "chance_agreement", "gate_spread", "gate_entropy"} <= set(interp)
    assert sum(interp[f"weight_{n}"] for n in ("unique-m1", "unique-m2", "synergy", "redundancy")) == pytest.approx(1.0)
    cases = store.cases(cfg.key())
    weights = cases["aux_expert_weights"].iloc[0]
    assert len(weights) == 4 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert set(cases["truth_interaction"]) == {"synergy"}


def test_perf_times_every_implementation_once_per_repetition_in_rotating_order():
    from bench.perf import spread, time_interleaved

    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("loop", "per-expert", "vmap", "fused")}
    times = time_interleaved(steps, torch.device("cpu"), reps=4, warmup=1)
    assert all(len(t) == 4 for t in times.values())
    assert calls[4:] == ["loop", "per-expert", "vmap", "fused", "per-expert", "vmap", "fused", "loop",
                         "vmap", "fused", "loop", "per-expert", "fused", "loop", "per-expert", "vmap"]
    assert spread([3.0, 1.0, 2.0, 10.0]) == (1.0, 2.5, 10.0)


def test_batched_rule_vmaps_small_calls_and_gpu_and_runs_per_expert_for_large_cpu_calls(monkeypatch):
    import methods.i2moe as mod

    assert mod.batched_impl(False, mod.VMAP_MAX_ELEMENTS) == "vmap"
    assert mod.batched_impl(False, mod.VMAP_MAX_ELEMENTS + 1) == "per-expert"
    assert mod.batched_impl(True, 10 * mod.VMAP_MAX_ELEMENTS) == "vmap"
    # the model asks the rule with V*B*P*H of its call
    model = _seq_model(impl="batched")
    seen = []
    monkeypatch.setattr(mod, "batched_impl", lambda cuda, elements: seen.append((cuda, elements)) or "loop")
    tokens = {n: torch.randn(5, 2, model.hparams["hidden"]) for n in model.spec.modality_names}
    with torch.no_grad():
        model.run_experts(tokens, _all_present(5, 3), [0, 2])
    assert seen == [(False, 3 * 5 * 2 * model.hparams["hidden"])]


def test_perf_cli_reports_the_spread_and_a_fused_pass_not_a_bound(capsys):
    import json

    from bench.cli import main

    small = ["--sizes", "quick", "--modalities", "2", "--reps", "2"]
    assert main(["perf", "i2moe", *small, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reps"] == 2 and row["batched_impl"] == "vmap"
    assert row["speedup_min"] <= row["speedup_median"] <= row["speedup_max"]
    assert row["batched_over_fused_min"] <= row["batched_over_fused_median"] <= row["batched_over_fused_max"]
    assert "bound_ms" not in row and row["fused_ms"] > 0
    assert main(["perf", "--method", "i2moe", *small]) == 0  # the older spelling
    text = capsys.readouterr().out
    assert "fused pass" in text and "bound" not in text and "min / median / max" in text
