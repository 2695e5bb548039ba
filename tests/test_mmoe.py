"""mmoe (multi-gate MoE, Ma et al. KDD 2018): per-task gates, the stacked experts against a per-expert
loop, one expert == shared bottom, missing modalities, interpretation, the CLI, and I2MoE wrapping it
(batched == loop, through the existing I2MoE test)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import test_i2moe
import test_methods
import torch
from torch import nn
from torch.nn import functional as F

from bench.cli import main
from methods import parse_method, resolve_hparams
from methods.hparam_rules import check_hparams

MMOE, _ = parse_method("mmoe")
I2, _ = parse_method("i2moe")


def _model(spec, **over):
    torch.manual_seed(0)
    return MMOE(spec, resolve_hparams(MMOE.defaults(), "tiny", {"dropout": 0.0, **over}))


def _batch(data, n: int = 16):
    return data.batch(data.splits["train"][:n])


def _expert_input(model, batch) -> torch.Tensor:
    """The documented expert input, computed here: pooled encoder tokens x mask, concatenated."""
    parts = []
    for m in model.spec.modality_names:
        z = model.encoders[m](batch["inputs"][m]).mean(dim=1)
        parts.append(z * batch["mask"][m].unsqueeze(1).float())
    return torch.cat(parts, dim=-1)


def _softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _reference(model, batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """MMoE written out per expert and per task: preds and gates (B, E) of every task."""
    bb, x = model.backbone, _expert_input(model, batch)
    w1, b1, w2, b2 = bb.mlps.w1, bb.mlps.b1, bb.mlps.w2, bb.mlps.b2
    experts = [F.gelu(x @ w1[e] + b1[e]) @ w2[e] + b2[e] for e in range(bb.experts)]
    preds, gates = {}, {}
    for t in model.spec.tasks:
        g = _softmax(x @ bb.gates[t.name].weight.T + bb.gates[t.name].bias)
        rep = sum(g[:, e:e + 1] * experts[e] for e in range(bb.experts))
        head = bb.towers[t.name].heads[t.name]
        preds[t.name], gates[t.name] = rep @ head.weight.T + head.bias, g
    return preds, gates


def test_gates_are_a_softmax_over_experts_per_task(load_data):
    data = load_data("synthetic-mvmt")
    model = _model(data.spec, num_experts=3).eval()
    with torch.no_grad():
        out = model(_batch(data))
    assert set(out.aux) == {f"gate_{t}" for t in data.spec.task_names}
    for t in data.spec.task_names:
        g = out.aux[f"gate_{t}"]
        assert g.shape == (16, 3) and bool((g > 0).all())
        torch.testing.assert_close(g.sum(dim=1), torch.ones(16))


def test_forward_equals_per_expert_per_task_computation(load_data):
    data = load_data("synthetic-mvmt")
    model = _model(data.spec, num_experts=4).eval()
    batch = _batch(data)
    with torch.no_grad():
        out = model(batch)
        preds, gates = _reference(model, batch)
    for t in data.spec.task_names:
        torch.testing.assert_close(out.preds[t], preds[t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.aux[f"gate_{t}"], gates[t], atol=1e-6, rtol=1e-5)


def test_stacked_einsum_experts_equal_a_per_expert_loop(load_data):
    mlps = _model(load_data("synthetic-mvmt").spec, num_experts=5).backbone.mlps
    x = torch.randn(7, mlps.w1.shape[1])
    stacked = mlps(x.unsqueeze(1).expand(-1, 5, -1))
    for e in range(5):
        torch.testing.assert_close(stacked[:, e], F.gelu(x @ mlps.w1[e] + mlps.b1[e]) @ mlps.w2[e] + mlps.b2[e])


def test_tasks_have_their_own_gates_at_init_and_after_training(load_data):
    data = load_data("synthetic-mvmt")
    model = _model(data.spec)
    batch = _batch(data, 64)
    gate_params = [set(map(id, model.backbone.gates[t].parameters())) for t in data.spec.task_names]
    assert all(not (a & b) for i, a in enumerate(gate_params) for b in gate_params[i + 1:])

    def gates():
        model.eval()
        with torch.no_grad():
            aux = model(batch).aux
        return aux["gate_task_a"], aux["gate_task_b"]

    a, b = gates()
    assert (a - b).abs().max() > 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(5):
        opt.zero_grad()
        model.loss(model(batch), batch)[0].backward()
        opt.step()
    a2, b2 = gates()
    assert (a2 - b2).abs().max() > 1e-3 and (a2 - a).abs().max() > 1e-4  # trained, and still per task


def test_one_expert_is_a_shared_bottom_mlp(load_data):
    data = load_data("synthetic-mvmt")
    model = _model(data.spec, num_experts=1).eval()
    bb, batch = model.backbone, _batch(data)
    d, h = bb.mlps.w1.shape[1:]
    bottom = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d))
    with torch.no_grad():
        bottom[0].weight.copy_(bb.mlps.w1[0].T)
        bottom[0].bias.copy_(bb.mlps.b1[0])
        bottom[2].weight.copy_(bb.mlps.w2[0].T)
        bottom[2].bias.copy_(bb.mlps.b2[0])
        z = bottom(_expert_input(model, batch))
        out = model(batch)
    for t in data.spec.task_names:
        torch.testing.assert_close(out.aux[f"gate_{t}"], torch.ones(16, 1))
        torch.testing.assert_close(out.preds[t], bb.towers[t].heads[t](z), atol=1e-5, rtol=1e-5)


def test_absent_modality_is_a_zero_embedding(load_data):
    data = load_data("synthetic-mvmt")
    model = _model(data.spec).eval()
    batch = _batch(data)
    test_methods._masked_invariance(model, batch, "v2")  # absent row ignored, present rows still matter
    # absent == its pooled block of the expert and gate input is zero
    tokens = {m: model.encoders[m](batch["inputs"][m]) for m in data.spec.modality_names}
    mask = {m: torch.ones(16, dtype=torch.bool) for m in data.spec.modality_names}
    absent = {**mask, "v2": torch.zeros(16, dtype=torch.bool)}
    zeroed = {**tokens, "v2": torch.zeros_like(tokens["v2"])}
    with torch.no_grad():
        p1, _, i1 = model.backbone(tokens, absent)
        p2, _, i2 = model.backbone(zeroed, mask)
    for k in list(p1):
        torch.testing.assert_close(p1[k], p2[k])
    for k in i1:
        torch.testing.assert_close(i1[k], i2[k])
    assert "zero embedding" in MMOE.missing_modality


def test_interpret_reports_gates_entropy_and_task_distance():
    from datasets import DatasetSpec, ModalitySpec, TaskSpec

    spec = DatasetSpec(name="toy", modalities=(ModalitySpec("a", "tabular", (3,)), ModalitySpec("b", "tabular", (3,))),
                       tasks=(TaskSpec("x", "binary", 2), TaskSpec("y", "binary", 2)), split_rule="random", source="test")
    model = _model(spec, num_experts=2)
    aux = {"gate_x": np.array([[1.0, 0.0], [1.0, 0.0]]), "gate_y": np.array([[0.5, 0.5], [0.5, 0.5]])}
    out = model.interpret(aux, {})
    assert out["gate_x_e0"] == 1.0 and out["gate_y_e1"] == 0.5
    assert out["gate_entropy_x"] == 0.0 and out["gate_entropy_y"] == pytest.approx(1.0)
    assert out["gate_task_tv"] == pytest.approx(0.5)
    assert all(k.startswith("gate_") for k in out)  # the routing plot reads gate_* numbers


def test_hparam_rules_and_i2moe_backbone_choice():
    check_hparams(MMOE, {**MMOE.defaults(), "num_experts": 1})
    with pytest.raises(ValueError, match="num_experts=0"):
        check_hparams(MMOE, {**MMOE.defaults(), "num_experts": 0})
    check_hparams(I2, {**I2.defaults(), "backbone": "mmoe"})


@pytest.mark.parametrize("args,task", [
    (["--method", "mmoe", "--dataset", "synthetic-mvmt", "--set", "epochs=2"], "task_a"),
    (["--method", "i2moe", "--dataset", "synthetic-pid:mixed", "--set", "backbone=mmoe", "--set", "epochs=1"], "label"),
])
def test_cli_runs_complete(args, task, tmp_path, capsys):
    assert main(["run", *args, "--preset", "tiny", "--json", "--runs-dir", str(tmp_path)]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["status"] == "ok", rec["error"]
    test = rec["metrics"]["test"]
    assert 0.0 <= test[task]["accuracy"] <= 1.0
    assert any(k.startswith(("gate_", "weight_")) for k in test["interpretation"])


def test_match_params_reaches_i2moe_over_mmoe():
    spec = test_i2moe._data(2).spec
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    matched = MMOE(spec, resolve_hparams(MMOE.defaults(), "small", {"match_params": True}))
    target = count(I2(spec, resolve_hparams(I2.defaults(), "small", {"backbone": "mmoe"})))
    assert abs(count(matched) - target) / target < 0.1
