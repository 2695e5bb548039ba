"""Tests for methods/nets/swin_unet.py: the 2-D Swin-UNet with M4oE's mixture-of-experts FFN."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from methods.nets.swin_unet import (
    MOE_WHERE,
    REFERENCE_PARAM_COUNTS,
    ROUTINGS,
    MoEFFN,
    SwinUNet,
    SwinUNetConfig,
    count_parameters,
    gate_keys,
    load_stage1,
    paper_config,
    small_config,
)
from methods.nets.swin_unet import tiny_config as tiny_preset_config

HEADS = (5, 3, 7)  # small, distinct class counts per domain


def tiny_config(**kw) -> SwinUNetConfig:
    """The tiny preset with two blocks per stage, so that the shifted windows are exercised."""
    return tiny_preset_config(**{"depths": (2, 2, 2, 2), **kw})


def test_preset_configs_are_the_harness_presets():
    """One source of truth for sizes: the network's preset configs are methods.presets' values."""
    from methods import parse_method, resolve_hparams
    from methods.swinunet import swin_config

    cls, _ = parse_method("swinunet")
    for preset, make in (("tiny", tiny_preset_config), ("small", small_config), ("paper", paper_config)):
        hp = resolve_hparams(cls.defaults(), preset, {})
        assert swin_config(hp, 1, HEADS, "hard", 3) == make(head_classes=HEADS, routing="hard", num_experts=3), preset
    assert paper_config() == SwinUNetConfig().validate()


def _model(seed: int = 0, **kw) -> SwinUNet:
    torch.manual_seed(seed)
    kw.setdefault("head_classes", HEADS)
    return SwinUNet(tiny_config(**kw)).eval()


def _batch(domains=(2, 0, 1, 1, 0, 2), seed: int = 1, chans: int = 1, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(domains), chans, size, size, generator=g), torch.tensor(domains)


def _moe_layers(model):
    return [m for m in model.modules() if isinstance(m, MoEFFN)]


# ---------------------------------------------------------------------------- parameter counts

def test_paper_parameter_counts_match_reference():
    # the released M4oE: channel gate (gated-code), 3 experts, heads 14+3+16, 3 input channels
    n_code3 = count_parameters(paper_config(routing="gated-code", in_chans=3))
    n_code1 = count_parameters(paper_config(routing="gated-code"))
    assert n_code3 == REFERENCE_PARAM_COUNTS["m4oe_gated_code_in3"] == 60_432_132
    assert n_code1 == REFERENCE_PARAM_COUNTS["m4oe_gated_code_in1"]
    for n in (n_code3, n_code1):
        assert abs(n - 60.4e6) / 60.4e6 < 0.005
    # Swin-Unet (Synapse setup: 3 channels, one 9-class head): 27.17 M
    n_dense = count_parameters(paper_config(routing="dense", in_chans=3, head_classes=(9,)))
    assert n_dense == REFERENCE_PARAM_COUNTS["swinunet_in3_nc9"] == 27_168_900
    assert abs(n_dense - 27.17e6) / 27.17e6 < 0.005
    # hard routing = the code's MoEFFN_dataset = M4oE without its 14 Linear(C, C) gates
    n_hard = count_parameters(paper_config(routing="hard", in_chans=3))
    assert n_hard == n_code3 - REFERENCE_PARAM_COUNTS["m4oe_gate_params"]


def test_gated_parameter_count_is_channel_gate_swapped_for_expert_gate():
    # our "gated" gate is LN(C) + Linear(C, E): 2C + C*E + E params per MoE block
    cfg = paper_config()  # gated, in_chans 1
    dims = [96, 96, 192, 192, 384, 384, 768, 768] + [384, 384, 192, 192, 96, 96]  # enc+bottleneck, dec
    E = cfg.num_experts
    expert_gates = sum(2 * c + c * E + E for c in dims)
    channel_gates = sum(c * c + c for c in dims)
    assert channel_gates == REFERENCE_PARAM_COUNTS["m4oe_gate_params"]
    n = count_parameters(cfg)
    assert n == REFERENCE_PARAM_COUNTS["m4oe_gated_code_in1"] - channel_gates + expert_gates == 58_492_206


def test_active_parameters():
    cfg = tiny_config(routing="hard", head_classes=HEADS)
    total, active = count_parameters(cfg), count_parameters(cfg, active=True)
    model = SwinUNet(cfg)
    experts = sum(m.w1.numel() + m.b1.numel() + m.w2.numel() + m.b2.numel() for m in _moe_layers(model))
    heads = [h.weight.numel() for h in model.heads]
    assert active == total - experts * 2 // 3 - (sum(heads) - max(heads))
    g = tiny_config(routing="gated", head_classes=HEADS)
    assert count_parameters(g, active=True) == count_parameters(g) - (sum(heads) - max(heads))


# ---------------------------------------------------------------------------- shapes and heads

@pytest.mark.parametrize("where", MOE_WHERE)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_output_shapes(routing, where):
    model = _model(routing=routing, moe_where=where)
    x, d = _batch()
    out = model(x, d)
    assert len(out.logits) == len(d)
    for i, di in enumerate(d.tolist()):
        assert out.logits[i].shape == (HEADS[di], 64, 64)
        assert torch.isfinite(out.logits[i]).all()
    n_moe = {"both": 14, "enc": 8, "dec": 6}[where]
    if routing == "dense":
        n_moe = 0
    assert model.num_moe_layers == len(model.moe_layer_names) == len(_moe_layers(model)) == n_moe
    if routing == "gated":
        assert out.gates.shape == (len(d), n_moe, 3)
    elif routing == "gated-code":
        assert out.gates.shape == (len(d), n_moe)
        assert (out.gates > 0).all() and (out.gates <= torch.log(torch.tensor(768.0))).all()
    else:
        assert out.gates is None
    # dense FFN blocks are plain fc1/fc2 Mlps
    n_mlp = sum(1 for n, _ in model.named_modules() if n.endswith(".mlp") and not isinstance(_, MoEFFN))
    assert n_mlp == 14 - n_moe


def test_moe_where_placement():
    enc = _model(routing="gated", moe_where="enc")
    dec = _model(routing="gated", moe_where="dec")
    assert all(n.startswith("layers.") for n in enc.moe_layer_names)
    assert any(n.startswith("layers.3.") for n in enc.moe_layer_names)  # bottleneck counts as encoder
    assert all(n.startswith("layers_up.") for n in dec.moe_layer_names)


def test_batch_order_and_per_sample_equivalence():
    model = _model(routing="gated")
    x, d = _batch()
    out = model(x, d)
    with torch.no_grad():
        for i in range(len(d)):
            single = model(x[i:i + 1], d[i:i + 1])
            torch.testing.assert_close(single.logits[0], out.logits[i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(single.gates[0], out.gates[i], atol=1e-6, rtol=1e-5)


def test_each_sample_uses_its_own_head():
    model = _model(routing="hard")
    x, d = _batch()
    with torch.no_grad():
        before = model(x, d).logits
        model.heads[1].weight.zero_()
        after = model(x, d).logits
    for i, di in enumerate(d.tolist()):
        if di == 1:
            assert not torch.equal(before[i], after[i]) and after[i].abs().max() == 0
        else:
            assert torch.equal(before[i], after[i])


def test_bad_domain_raises():
    model = _model()
    x, _ = _batch(domains=(0, 1))
    with pytest.raises(ValueError, match="domain"):
        model(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="domain"):
        model(x, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))


# ---------------------------------------------------------------------------- routing semantics

def test_hard_routing_uses_only_own_expert():
    model = _model(routing="hard")
    x, d = _batch()
    with torch.no_grad():
        before = model(x, d).logits
        for m in _moe_layers(model):  # perturb expert 0 everywhere
            m.w1[0].add_(torch.randn_like(m.w1[0]))
            m.b2[0].add_(1.0)
        after = model(x, d).logits
    for i, di in enumerate(d.tolist()):
        if di == 0:
            assert not torch.allclose(before[i], after[i])
        else:
            assert torch.equal(before[i], after[i])


def test_hard_routing_expert_map():
    cfg = tiny_config(routing="hard", num_experts=2, expert_map=(1, 0, 1), head_classes=HEADS)
    torch.manual_seed(0)
    model = SwinUNet(cfg).eval()
    x, d = _batch()
    with torch.no_grad():
        before = model(x, d).logits
        for m in _moe_layers(model):
            m.w1[1].add_(torch.randn_like(m.w1[1]))
        after = model(x, d).logits
    for i, di in enumerate(d.tolist()):
        assert torch.equal(before[i], after[i]) == (di == 1)  # only domain 1 uses expert 0


def _naive_expert(m: MoEFFN, x, e):
    return F.gelu(x @ m.w1[e] + m.b1[e]) @ m.w2[e] + m.b2[e]


def test_gated_matches_naive_loop_and_gates_sum_to_one():
    torch.manual_seed(0)
    m = MoEFFN(dim=12, hidden=48, num_experts=3, routing="gated")
    with torch.no_grad():  # make experts and gate non-trivial
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 10, 12)
    out, stat = m(x)
    g = torch.softmax(m.gate.proj(m.gate.norm(x)), -1)
    ref = sum(g[..., e:e + 1] * _naive_expert(m, x, e) for e in range(3))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stat, g.mean(1))
    assert stat.shape == (4, 3)
    torch.testing.assert_close(stat.sum(-1), torch.ones(4))
    # model level: per-layer mean gates sum to 1 over experts
    model = _model(routing="gated")
    gates = model(*_batch()).gates
    torch.testing.assert_close(gates.sum(-1), torch.ones(gates.shape[:2]))


def test_gated_code_matches_reference_formula_and_is_expert_symmetric():
    torch.manual_seed(0)
    m = MoEFFN(dim=12, hidden=48, num_experts=3, routing="gated-code")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 10, 12)
    out, ent = m(x)
    g = torch.softmax(m.gate.proj(x), -1)  # channel gate
    ref = g * sum(_naive_expert(m, x, e) for e in range(3))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, -(g * g.log()).sum(-1).mean(1), atol=1e-5, rtol=1e-5)
    # permuting the experts does not change the output
    perm = torch.tensor([2, 0, 1])
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        for name in ("w1", "b1", "w2", "b2"):
            getattr(m2, name).copy_(getattr(m, name)[perm])
    torch.testing.assert_close(m2(x)[0], out, atol=1e-6, rtol=1e-5)
    # ... but it does for the expert gate
    mg = MoEFFN(dim=12, hidden=48, num_experts=3, routing="gated")
    with torch.no_grad():
        for p in mg.parameters():
            p.add_(0.3 * torch.randn_like(p))
        mg2 = copy.deepcopy(mg)
        for name in ("w1", "b1", "w2", "b2"):
            getattr(mg2, name).copy_(getattr(mg, name)[perm])
    assert not torch.allclose(mg2(x)[0], mg(x)[0], atol=1e-4)


def test_experts_initialised_independently():
    m = MoEFFN(dim=16, hidden=64, num_experts=3, routing="hard")
    assert not torch.equal(m.w1[0], m.w1[1]) and not torch.equal(m.w2[1], m.w2[2])
    # timm trunc_normal_(std=.02) truncates at +-2 (absolute), as in the reference: ~ N(0, .02^2)
    assert abs(m.w1.std().item() - 0.02) < 0.004 and abs(m.w2[2].std().item() - 0.02) < 0.004
    assert (m.b1 == 0).all() and (m.b2 == 0).all()


# ---------------------------------------------------------------------------- stage 1 -> stage 2

@pytest.mark.parametrize("target", ["gated", "gated-code"])
def test_hard_state_dict_loads_into_gated(target):
    hard = _model(seed=0, routing="hard")
    gated = _model(seed=1, routing=target)
    sd = hard.state_dict()
    res = gated.load_state_dict(sd, strict=False)
    assert res.unexpected_keys == []
    keys = gate_keys(gated)
    assert sorted(res.missing_keys) == keys and keys
    assert all(".mlp.gate." in k for k in keys)
    per_layer = 4 if target == "gated" else 2  # norm.{weight,bias} + proj.{weight,bias} / proj.{weight,bias}
    assert len(keys) == per_layer * 14

    fresh = _model(seed=2, routing=target)
    gate_before = {k: v.clone() for k, v in fresh.state_dict().items() if k in keys}
    assert load_stage1(fresh, sd) == keys
    after = fresh.state_dict()
    for k, v in sd.items():
        assert torch.equal(after[k], v)
    for k, v in gate_before.items():
        assert torch.equal(after[k], v)  # gates keep their fresh init


def test_load_stage1_rejects_mismatches():
    gated = _model(routing="gated")
    sd = _model(routing="hard").state_dict()
    with pytest.raises(ValueError, match="shape"):
        load_stage1(gated, _model(routing="hard", head_classes=(5, 3, 8)).state_dict())
    with pytest.raises(ValueError, match="shape"):
        load_stage1(_model(routing="gated", num_experts=4, expert_map=(0, 1, 2)), sd)
    bad = dict(sd)
    bad.pop("layers.0.blocks.0.attn.qkv.weight")
    with pytest.raises(ValueError, match="missing non-gate"):
        load_stage1(gated, bad)
    bad = dict(sd)
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected"):
        load_stage1(gated, bad)
    with pytest.raises(ValueError, match="missing non-gate"):  # dense checkpoint: expert keys absent
        load_stage1(gated, _model(routing="dense").state_dict())


# ---------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("routing", ["hard", "gated", "gated-code", "dense"])
def test_gradients_reach_all_parameters(routing):
    model = _model(routing=routing).train()
    x, d = _batch(domains=(0, 1, 2, 2))
    out = model(x, d)
    sum(lg.square().mean() for lg in out.logits).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if routing in ("gated", "gated-code"):
        assert all(m.gate.proj.weight.grad.abs().sum() > 0 for m in _moe_layers(model))


def test_hard_gradients_only_for_present_domains():
    model = _model(routing="hard").train()
    x, d = _batch(domains=(1, 1))
    sum(lg.square().mean() for lg in model(x, d).logits).backward()
    for m in _moe_layers(model):
        assert m.w1.grad[1].abs().sum() > 0
        assert m.w1.grad[0].abs().sum() == 0 and m.w2.grad[2].abs().sum() == 0
    assert model.heads[0].weight.grad is None and model.heads[1].weight.grad is not None


# ---------------------------------------------------------------------------- windows and config

def test_window_clipping_tiny():
    model = _model()  # 64 px, patch 4 -> 16/8/4/2 tokens, window 4
    blocks = {n: m for n, m in model.named_modules() if n.endswith(tuple(f"blocks.{j}" for j in range(2)))}
    assert blocks["layers.0.blocks.0"].window_size == 4 and blocks["layers.0.blocks.1"].shift_size == 2
    assert blocks["layers.1.blocks.1"].shift_size == 2
    assert blocks["layers.2.blocks.1"].window_size == 4 and blocks["layers.2.blocks.1"].shift_size == 0
    assert blocks["layers.3.blocks.1"].window_size == 2 and blocks["layers.3.blocks.1"].shift_size == 0
    assert blocks["layers_up.1.blocks.1"].window_size == 4 and blocks["layers_up.3.blocks.1"].shift_size == 2
    # paper size: 56/28/14/7 with window 7 -> only the bottleneck is clipped (no shift)
    with torch.device("meta"):
        paper = SwinUNet(paper_config())
    assert paper.layers[2].blocks[1].shift_size == 3 and paper.layers[3].blocks[1].shift_size == 0


def test_resolution_smaller_than_window():
    cfg = tiny_config(img_size=32, window_size=16, head_classes=HEADS)  # tokens 8/4/2/1, all < window
    torch.manual_seed(0)
    model = SwinUNet(cfg)
    assert all(b.window_size == b.resolution and b.shift_size == 0
               for n, b in model.named_modules() if n.endswith(("blocks.0", "blocks.1")))
    x, d = _batch(domains=(0, 2), size=32)
    out = model(x, d)
    assert [tuple(lg.shape) for lg in out.logits] == [(5, 32, 32), (7, 32, 32)]


@pytest.mark.parametrize("field, kw", [
    ("routing", dict(routing="topk")),
    ("moe_where", dict(moe_where="middle")),
    ("window_size", dict(window_size=5)),  # 16 tokens not divisible by 5
    ("window_size", dict(window_size=0)),
    ("img_size", dict(img_size=66)),  # not divisible by patch 4
    ("img_size", dict(img_size=48)),  # 12 tokens not divisible by 2^3
    ("num_heads", dict(num_heads=(1, 2, 4))),
    ("num_heads", dict(num_heads=(5, 2, 4, 8))),  # 24 not divisible by 5
    ("depths", dict(depths=(2, 0, 2, 2))),
    ("head_classes", dict(head_classes=())),
    ("head_classes", dict(head_classes=(3, 0))),
    ("num_experts", dict(routing="hard", num_experts=2)),  # != number of domains
    ("num_experts", dict(num_experts=0)),
    ("expert_map", dict(routing="hard", expert_map=(0, 1))),
    ("expert_map", dict(routing="hard", expert_map=(0, 1, 3))),
    ("drop_path", dict(drop_path=1.0)),
    ("mlp_ratio", dict(mlp_ratio=0.0)),
    ("embed_dim", dict(embed_dim=-1)),
])
def test_bad_config_raises_with_field_name(field, kw):
    with pytest.raises(ValueError, match=rf"SwinUNetConfig\.{field}\b"):
        tiny_config(**kw)


def test_configs_validate_and_lists_become_tuples():
    for f in (paper_config, tiny_config, small_config):
        assert isinstance(f(), SwinUNetConfig)
    cfg = SwinUNetConfig(depths=[2, 2, 2, 2], head_classes=[4, 5]).validate()
    assert cfg.depths == (2, 2, 2, 2) and cfg.head_classes == (4, 5)
    assert paper_config(routing="hard").routing == "hard"
