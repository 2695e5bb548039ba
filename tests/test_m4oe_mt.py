"""M4oE-MT (methods/m4oe_mt.py) and the shared SoftMoE it builds on (methods/nets/moe_layers.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from datasets import DatasetSpec, ModalitySpec, TaskSpec
from datasets.prepare import build_data
from methods import parse_method, resolve_hparams
from methods.m4oe_mt import M4oEMT, class_weights, focal_loss, mi_code, mi_from_joint, mi_paper, routing_joint
from methods.nets.dense_decoder import PatchGridDecoder
from methods.nets.moe_layers import SoftMoE


def _model(spec, **over) -> M4oEMT:
    torch.manual_seed(0)
    return M4oEMT(spec, resolve_hparams(M4oEMT.defaults(), "tiny", over))


@pytest.fixture(scope="module")
def mvmt():
    from bench.runner import load_data

    return load_data("synthetic-mvmt", 0, None, None)


# ------------------------------------------------------------------------------- SoftMoE layer
def _old_soft_moe(layer: SoftMoE, x, keep=None):
    """The harness's SoftMoE forward before the M4oE-MT extension (commit 343a179), verbatim."""
    b, n, d = x.shape
    logits = layer.norm(x) @ layer.phi
    dispatch_logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf")) if keep is not None else logits
    dispatch = torch.softmax(dispatch_logits, dim=1)
    combine = torch.softmax(logits, dim=-1)
    slots = torch.einsum("bns,bnd->bsd", dispatch, x).view(b, layer.experts, layer.slots, d)
    out = layer.mlps(slots.transpose(1, 2)).transpose(1, 2).reshape(b, layer.experts * layer.slots, d)
    return torch.einsum("bns,bsd->bnd", combine, out)


def test_soft_moe_defaults_reproduce_the_original_layer_exactly() -> None:
    torch.manual_seed(0)
    layer = SoftMoE(8, experts=3, slots=2, hidden=16).eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.normal_()
    x = torch.randn(4, 5, 8)
    keep = torch.tensor([[True] * 5, [True, True, False, False, True], [True] * 5, [False, True, True, True, True]])
    for k in (None, keep):
        assert torch.equal(layer(x, k), _old_soft_moe(layer, x, k))
    assert sorted(n for n, _ in layer.named_parameters()) == ["mlps.b1", "mlps.b2", "mlps.w1", "mlps.w2", "norm.bias",
                                                              "norm.weight", "phi"]
    # the soft-moe method builds exactly that layer: same parameters, same outputs as before
    cls, _ = parse_method("soft-moe")
    spec = DatasetSpec("t", (ModalitySpec("a", "tabular", (3,)), ModalitySpec("b", "tabular", (2,))),
                       (TaskSpec("y", "binary", 2),), "r", "s")
    model = cls(spec, resolve_hparams(cls.defaults(), "tiny", {}))
    ffn = model.backbone.blocks[0].ffn
    assert type(ffn) is SoftMoE and ffn.router == "layernorm" and ffn.tasks == 0 and ffn.mlps.w1.shape[-1] == 2 * 16


def _loop_soft_moe(layer: SoftMoE, x):
    """Per-expert Python loop of the paper's Soft-MoE (l2 router), the oracle for the einsum."""
    b, n, d = x.shape
    phi = layer.scale * F.normalize(layer.phi, dim=0)
    logits = F.normalize(x, dim=-1) @ phi  # (B, N, E*S)
    dispatch, combine = logits.softmax(dim=1), logits.softmax(dim=-1)
    outs = []
    for e in range(layer.experts):
        for s in range(layer.slots):
            j = e * layer.slots + s
            slot = (dispatch[:, :, j:j + 1] * x).sum(dim=1)  # (B, d)
            h = F.gelu(slot @ layer.mlps.w1[e] + layer.mlps.b1[e])
            outs.append(h @ layer.mlps.w2[e] + layer.mlps.b2[e])
    out = torch.stack(outs, dim=1)  # (B, E*S, d)
    return sum(combine[:, :, j:j + 1] * out[:, j:j + 1] for j in range(out.shape[1]))


def test_soft_moe_paper_router_normalises_and_matches_a_per_expert_loop() -> None:
    torch.manual_seed(1)
    layer = SoftMoE(6, experts=4, slots=2, mlp_ratio=4, router="l2")
    assert layer.mlps.w1.shape == (4, 6, 24) and float(layer.scale.detach()) == 1.0 and not hasattr(layer, "norm")
    with torch.no_grad():
        layer.scale.fill_(2.5)
    x = torch.randn(3, 7, 6)
    y, routing = layer(x, return_routing=True)
    torch.testing.assert_close(y, _loop_soft_moe(layer, x), rtol=1e-5, atol=1e-5)
    d, c = routing["dispatch"], routing["combine"]  # (B, N, E, S)
    torch.testing.assert_close(d.sum(dim=1), torch.ones(3, 4, 2))  # dispatch: softmax over tokens
    torch.testing.assert_close(c.sum(dim=(2, 3)), torch.ones(3, 7))  # combine: over all (expert, slot) pairs
    # logits are scale * cosine: bounded by the scale, invariant to the norm of x
    assert float(routing["logits"].abs().max()) <= 2.5 + 1e-5
    torch.testing.assert_close(layer(3.0 * x, return_routing=True)[1]["logits"], routing["logits"])


def test_soft_moe_ignores_dispatch_of_masked_tokens() -> None:
    torch.manual_seed(2)
    layer = SoftMoE(6, experts=2, slots=1, router="l2")
    x = torch.randn(2, 5, 6)
    keep = torch.tensor([[True, True, True, False, False]] * 2)
    _, r = layer(x, keep, return_routing=True)
    assert float(r["dispatch"][:, 3:].abs().max()) == 0.0
    torch.testing.assert_close(r["dispatch"].sum(dim=1), torch.ones(2, 2, 1))


def test_task_slots_combine_per_task_and_embeddings_are_per_task() -> None:
    torch.manual_seed(3)
    t, e, d = 3, 4, 6
    layer = SoftMoE(d, experts=e, slots=t, hidden=12, router="l2", tasks=t)
    x = torch.randn(2, 5, d)
    u, r = layer(x, return_routing=True)
    assert u.shape == (2, t, 5, d) and float(layer.task_embed.abs().sum()) == 0.0  # embeddings start at 0
    torch.testing.assert_close(r["dispatch"].sum(dim=1), torch.ones(2, e, t))
    torch.testing.assert_close(r["combine"].sum(dim=2), torch.ones(2, 5, t))  # one softmax per task over experts
    # oracle: task k's output uses only its own slots (+ its embedding), combined over them alone
    dispatch = r["logits"].softmax(dim=1)
    for k in range(t):
        slots = torch.einsum("bne,bnd->bed", dispatch[..., k], x) + layer.task_embed[k]
        out = layer.mlps(slots)  # (B, E, d)
        comb = r["logits"][..., k].softmax(dim=-1)
        torch.testing.assert_close(u[:, k], torch.einsum("bne,bed->bnd", comb, out), rtol=1e-5, atol=1e-5)
    # changing task 0's embedding moves task 0's output only
    with torch.no_grad():
        layer.task_embed[0].normal_()
    u2 = layer(x)
    assert not torch.allclose(u2[:, 0], u[:, 0])
    torch.testing.assert_close(u2[:, 1:], u[:, 1:])


# ---------------------------------------------------------------------------- MI estimates
def _mi_numpy(p: np.ndarray) -> float:
    """I(M;E|T) written out term by term from a (M, E, T) table."""
    pt, pmt, pet = p.sum((0, 1)), p.sum(1), p.sum(0)
    total = 0.0
    for m in range(p.shape[0]):
        for e in range(p.shape[1]):
            for t in range(p.shape[2]):
                if p[m, e, t] > 0:
                    total += p[m, e, t] * np.log(p[m, e, t] * pt[t] / (pmt[m, t] * pet[e, t]))
    return total


def test_mi_matches_a_hand_computed_table_and_is_zero_when_independent() -> None:
    # T=2 tasks; in task 0 modality 0 uses expert 0 and modality 1 expert 1 (dependent), task 1 is uniform
    p = np.array([[[0.20, 0.05], [0.05, 0.05]],
                  [[0.05, 0.05], [0.20, 0.35]]])
    p = p / p.sum()
    got = float(mi_from_joint(torch.tensor(p)))
    assert got == pytest.approx(_mi_numpy(p), abs=1e-6) and got > 0.01
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.random((3, 4, 2))
        q /= q.sum()
        assert float(mi_from_joint(torch.tensor(q))) == pytest.approx(_mi_numpy(q), abs=1e-6)
        assert float(mi_from_joint(torch.tensor(q))) >= -1e-7
    pm, pe, pt = np.array([0.3, 0.7]), np.array([0.1, 0.5, 0.4]), np.array([0.6, 0.4])
    indep = np.einsum("m,e,t->met", pm, pe, pt)
    assert abs(float(mi_from_joint(torch.tensor(indep)))) < 1e-6


def test_mi_paper_from_routing_logits_and_the_code_variant() -> None:
    torch.manual_seed(4)
    b, n, e, t = 3, 4, 2, 2
    logits = torch.randn(b, n, e, t) * 2
    keep = torch.ones(b, n, dtype=torch.bool)
    token_view = [0, 0, 1, 1]
    onehot = F.one_hot(torch.tensor(token_view), 2).float()
    # by hand: per-sample softmax over all (token, expert, task) entries, tokens summed into modalities, batch mean
    lp = logits.numpy().reshape(b, -1)
    sm = np.exp(lp - lp.max(1, keepdims=True))
    sm = (sm / sm.sum(1, keepdims=True)).reshape(b, n, e, t)
    joint = np.zeros((2, e, t))
    for i, m in enumerate(token_view):
        joint[m] += sm[:, i].mean(0)
    assert float(mi_paper(logits, keep, onehot)) == pytest.approx(_mi_numpy(joint), abs=1e-5)
    # with experts marginalised (the code's quantity) the number differs: the paper variant conditions on experts
    marg = joint.sum(1, keepdims=True)
    assert abs(_mi_numpy(joint) - _mi_numpy(marg)) > 1e-3
    # code variant: per sample I(token; task) with experts summed out, log(ratio + 1e-10), summed over the batch
    ref = []
    for s in sm:
        pnt = s.sum(1)
        ref.append(float((pnt * np.log(pnt / (pnt.sum(1, keepdims=True) * pnt.sum(0, keepdims=True)) + 1e-10)).sum()))
    assert float(mi_code(logits, keep)) == pytest.approx(np.sum(ref), abs=1e-5)
    assert float(mi_code(logits.repeat(2, 1, 1, 1), keep.repeat(2, 1))) == pytest.approx(2 * np.sum(ref), abs=1e-5)
    # absent tokens carry no routing mass
    keep2 = keep.clone()
    keep2[0, 2:] = False
    assert float(routing_joint(logits, keep2)[0, 2:].sum()) == 0.0


# ---------------------------------------------------------------------------------- losses
def test_focal_loss_formula_and_weighted_ce_at_gamma_zero() -> None:
    torch.manual_seed(5)
    logits, y = torch.randn(10, 3), torch.randint(0, 3, (10,))
    w = torch.tensor([0.2, 0.5, 0.3])
    p = logits.softmax(-1)[torch.arange(10), y]
    expected = (w[y] * (1 - p) ** 2 * -torch.log(p)).sum() / w[y].sum()
    torch.testing.assert_close(focal_loss(logits, y, w, 2.0), expected)
    torch.testing.assert_close(focal_loss(logits, y, w, 0.0), F.cross_entropy(logits, y, weight=w))
    torch.testing.assert_close(focal_loss(logits, y, None, 0.0), F.cross_entropy(logits, y))
    torch.testing.assert_close(class_weights((30, 10)), torch.tensor([0.25, 0.75]))
    assert class_weights(()) is None


def test_class_counts_come_from_labelled_training_rows_only() -> None:
    n = 40
    y = np.array([0] * 20 + [1] * 20)
    spec = DatasetSpec("c", (ModalitySpec("a", "tabular", (2,)),),
                       (TaskSpec("y", "binary", 2), TaskSpec("r", "regression", 1)), "fixed", "test")
    splits = {"train": np.arange(0, 25), "val": np.arange(25, 30), "test": np.arange(30, 40)}
    tmask = np.ones(n, bool)
    tmask[:5] = False  # unlabeled training rows do not count
    data = build_data(spec, {"a": np.zeros((n, 2))}, {"y": y, "r": np.arange(n, dtype=float)}, 0,
                      target_mask={"y": tmask}, splits=splits)
    assert data.spec.task("y").class_counts == (15, 5) and data.spec.task("r").class_counts == ()


def test_masked_labels_do_not_change_loss_or_gradient(mvmt) -> None:
    model = _model(mvmt.spec, alpha=0.0, dropout=0.0)
    batch = mvmt.batch(mvmt.splits["train"][:8])
    batch["target_mask"] = {**batch["target_mask"], "task_a": torch.tensor([False] + [True] * 7)}
    other = {**batch, "targets": {**batch["targets"], "task_a": batch["targets"]["task_a"].clone()}}
    other["targets"]["task_a"][0] = (other["targets"]["task_a"][0] + 1) % 3

    def loss_and_grad(b):
        model.zero_grad()
        total, parts = model.loss(model(b), b)
        total.backward()
        return float(parts["task/task_a"]), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    l1, g1 = loss_and_grad(batch)
    l2, g2 = loss_and_grad(other)
    assert l1 == pytest.approx(l2, abs=0) and torch.equal(g1, g2)
    # ... whereas the same change on a labelled row does change it
    other["target_mask"] = {**batch["target_mask"], "task_a": torch.ones(8, dtype=torch.bool)}
    batch["target_mask"] = other["target_mask"]
    assert loss_and_grad(batch)[0] != pytest.approx(loss_and_grad(other)[0])


# ---------------------------------------------------------------------------------- model
def test_forward_shapes_aux_and_backward(mvmt) -> None:
    model = _model(mvmt.spec)
    batch = mvmt.batch(mvmt.splits["train"][:8])
    out = model(batch)
    assert {k: tuple(v.shape) for k, v in out.preds.items()} == {"task_a": (8, 3), "task_b": (8, 3), "same": (8, 2)}
    for t in mvmt.spec.task_names:
        torch.testing.assert_close(out.aux[f"contrib_{t}"].sum(-1), torch.ones(8))
    assert "mutual_information" in out.losses and float(out.losses["mutual_information"]) <= 0
    total, parts = model.loss(out, batch)
    total.backward()
    assert model.mtoe.moe.task_embed.grad is not None and model.mtoe.moe.scale.grad is not None
    for v in mvmt.spec.modality_names:
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.encoders[v].parameters())
    for over in ({"router": "topk"}, {"msoe": False}, {"mtoe": False}, {"mi_variant": "code"}):
        m = _model(mvmt.spec, **over)
        total, parts = m.loss(m(batch), batch)
        total.backward()
        assert bool(torch.isfinite(total)), over
    with pytest.raises(ValueError, match="both be off"):
        _model(mvmt.spec, msoe=False, mtoe=False)


def test_absent_view_does_not_affect_prediction(mvmt) -> None:
    model = _model(mvmt.spec).eval()
    batch = mvmt.batch(mvmt.splits["test"][:4])
    batch["mask"] = {**batch["mask"], "v3": torch.tensor([False, False, True, True])}
    changed = {**batch, "inputs": {**batch["inputs"], "v3": torch.randn_like(batch["inputs"]["v3"])}}
    with torch.no_grad():
        a, b = model(batch), model(changed)
    for t in mvmt.spec.task_names:
        torch.testing.assert_close(a.preds[t][:2], b.preds[t][:2])
        assert float(a.aux[f"contrib_{t}"][:2, 2].abs().max()) == 0.0
    assert not torch.allclose(a.preds["task_a"][2:], b.preds["task_a"][2:])


def _train(spec, data, alpha: float, steps: int = 8):
    torch.manual_seed(0)
    model = M4oEMT(spec, resolve_hparams(M4oEMT.defaults(), "tiny", {"alpha": alpha}))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    idx = data.splits["train"][:32]
    batch = data.batch(idx)
    for _ in range(steps):
        opt.zero_grad()
        total, _ = model.loss(model(batch), batch)
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(batch)
        z = torch.cat([model.encoders[v](batch["inputs"][v]) for v in model.views], dim=1)
        _, logits, _ = model.mtoe(z, torch.ones(z.shape[:2], dtype=torch.bool))
        mi = float(mi_paper(logits, torch.ones(z.shape[:2], dtype=torch.bool), model.token_onehot))
    return torch.stack([out.aux[f"contrib_{t}"] for t in spec.task_names]), mi


def test_alpha_changes_routing_statistics(mvmt) -> None:
    c0, mi0 = _train(mvmt.spec, mvmt, 0.0)
    c0b, mi0b = _train(mvmt.spec, mvmt, 0.0)
    c1, mi1 = _train(mvmt.spec, mvmt, 5.0)
    torch.testing.assert_close(c0, c0b)  # same seed: deterministic
    assert not torch.allclose(c0, c1, atol=1e-4)
    assert mi1 > mi0  # the loss term maximises I(M; E | T)


def test_interpret_scores_planted_truth(mvmt) -> None:
    model = _model(mvmt.spec)
    n = 50
    rng = np.random.default_rng(0)
    noise = {v: rng.uniform(2, 6, n) for v in model.views}
    aux = {"view_present": np.ones((n, 3))}
    tv = mvmt.spec.params["task_views"]
    for t in mvmt.spec.task_names:  # mass only on the planted views, less on the noisier one
        w = np.stack([(v in tv[t]) / noise[v] for v in model.views], axis=1)
        aux[f"contrib_{t}"] = w / w.sum(1, keepdims=True)
    out = model.interpret(aux, {f"noise_{v}": noise[v] for v in model.views})
    assert out["planted_auc"] == 1.0 and out["planted_agreement"] == 0.5 and out["planted_auc_sample"] == 1.0
    assert out["noise_spearman"] < -0.5 and out["noise_pair_agreement"] == 0.5
    flat = {k: np.full((n, 3), 1 / 3) if k.startswith("contrib") else v for k, v in aux.items()}
    out = model.interpret(flat, {f"noise_{v}": noise[v] for v in model.views})
    assert out["planted_agreement"] == 0.0 and out["noise_pair_agreement"] == 0.0  # ties count one half


def test_paper_preset_sizes_on_meta_without_allocating() -> None:
    spec = DatasetSpec("p", tuple(ModalitySpec(f"v{i}", "image2d", (3, 224, 224)) for i in range(4)),
                       (TaskSpec("a", "binary", 2), TaskSpec("b", "multiclass", 4)), "r", "s")
    hp = resolve_hparams(M4oEMT.defaults(), "paper", {})
    assert (hp["hidden"], hp["msoe_experts"], hp["mtoe_experts"], hp["fusion_experts"]) == (768, 32, 128, 16)
    with torch.device("meta"):
        model = M4oEMT(spec, hp)
    total = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    assert 2.2e9 < total < 2.5e9 and model.token_counts["v0"] == 197  # 196 patches + the class token [code]
    with torch.device("meta"):
        assert M4oEMT(spec, {**hp, "encoder_cls": False}).token_counts["v0"] == 196
    assert resolve_hparams(parse_method("soft-moe")[0].defaults(), "paper", {})["hidden"] == 256  # others unchanged


def test_dense_decoder_shapes() -> None:
    dec = PatchGridDecoder(16, (4, 4), (16, 16), 2)
    assert dec(torch.randn(3, 16, 16)).shape == (3, 2, 16, 16)
    dec = PatchGridDecoder(16, (14, 14), (224, 224), 3)
    assert len(dec.stages) == 4 and dec(torch.randn(1, 196, 16)).shape == (1, 3, 224, 224)


def test_segmentation_task_gets_dense_logits_and_a_loss() -> None:
    from bench.runner import load_data

    data = load_data("synthetic-mvmt:seg", 0, None, None)
    assert M4oEMT.supports(data.spec) is True
    model = _model(data.spec)
    batch = data.batch(data.splits["train"][:4])
    out = model(batch)
    assert out.preds["mask"].shape == (4, data.spec.task("mask").num_classes, 16, 16)
    total, parts = model.loss(out, batch)
    total.backward()
    assert "task/mask" in parts and any(p.grad is not None for p in model.decoders["mask"].parameters())


def test_bench_cost_uses_the_papers_input_without_a_dataset(capsys):
    """``bench cost --method m4oe-mt --preset paper``: the paper's size (about 2.3 B parameters) and
    FLOPs at 4 views of 3x224x224, counted on the meta device; a method with no input of its own
    needs --dataset."""
    from bench.cli import main

    assert main(["cost", "--method", "m4oe-mt", "--preset", "paper", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert 2.2e9 < row["params_total"] < 2.4e9 and row["flops_per_sample"] > 1e11 and row["meta"]
    assert row["inputs"].count("3x224x224") == 4
    assert main(["cost", "--method", "early"]) == 2
    assert "needs --dataset for early" in capsys.readouterr().err
