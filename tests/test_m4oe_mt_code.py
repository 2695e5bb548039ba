"""M4oE-MT against its authors' released code (github tangzhengxu2001/m4oe), on identical weights in float64.

The numbers in tests/fixtures/m4oe_mt_code_reference.json were computed by the authors' own
layers and loss (scripts/m4oe_mt_reference.py ran them on the case of tests/m4oe_mt_case.py);
here the harness's modules get the same weights and inputs, and ``variant=code`` must give those
numbers to 1e-10, each item's flag must matter on its own, and the default must differ.
docs/m4oe-mt.md "Paper text, released code and the defaults" lists the items.
"""
from __future__ import annotations

import json
from pathlib import Path

import m4oe_mt_case as case
import pytest
import torch

from methods.m4oe_mt import CODE, M4oEMT, mi_code
from methods.nets.moe_layers import SoftMoE

REF = json.loads((Path(__file__).parent / "fixtures" / "m4oe_mt_code_reference.json").read_text())
TOL = 1e-10
#: a difference clearly above float64 rounding: the item changed the number
DIFFERS = 1e-8


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def _max_diff(a: torch.Tensor, b) -> float:
    return float((a.detach() - _t(b)).abs().max())


def _run(**over):
    net = case.model(**over).train()  # dropout is 0: training mode only switches the MI term on
    batch = case.batch()
    out = net(batch)
    _, parts = net.loss(out, batch)
    return out, parts


def _model_diff(out, parts) -> dict[str, float]:
    ref = REF["model"]
    diffs = {f"logits/{t}": _max_diff(out.preds[t], ref["logits"][t]) for t in ref["logits"]}
    diffs.update({f"focal/{t}": abs(float(parts[f"task/{t}"]) - ref["focal"][t]) for t in ref["focal"]})
    diffs["mi"] = abs(float(parts["aux/mutual_information"]) - ref["tc_loss"])  # alpha = 1: -I, as tc_loss
    return diffs


def test_soft_moe_layer_dispatches_normalised_tokens_as_the_code() -> None:
    ref = REF["soft_moe"]["output"]
    x = case.layer_input(12)
    ours = case.fill(SoftMoE(case.DIM, 4, 2, hidden=16, router="l2", slot_input="normalized"), 11)
    assert _max_diff(ours(x), ref) <= TOL
    raw = case.fill(SoftMoE(case.DIM, 4, 2, hidden=16, router="l2"), 11)  # same weights, raw slot inputs
    assert _max_diff(raw(x), ref) > 0.05


def test_mtoe_layer_joint_combine_and_mi_as_the_code() -> None:
    ref = REF["mtoe_layer"]
    want = _t(ref["outputs"]).transpose(0, 1)  # the code's three (B, N, d) task outputs -> (B, T, N, d)
    x = case.layer_input(14)
    ours = case.fill(SoftMoE(case.DIM, 4, 3, hidden=16, router="l2", tasks=3, slot_input="normalized",
                             combine="joint"), 13)
    y, routing = ours(x, return_routing=True)
    assert _max_diff(y, want) <= TOL
    keep = torch.ones(x.shape[:2], dtype=torch.bool)
    assert abs(-float(mi_code(routing["logits"], keep).detach()) - ref["tc_loss"]) <= TOL  # the code returns -I
    # at init the joint combine gives each task about 1/T of the mass; per-task gives each task all of it
    share = routing["combine"].sum(dim=2)  # (B, N, T)
    torch.testing.assert_close(share.sum(dim=-1), torch.ones_like(share[..., 0]))
    per_task = case.fill(SoftMoE(case.DIM, 4, 3, hidden=16, router="l2", tasks=3, slot_input="normalized"), 13)
    assert _max_diff(per_task(x), want) > 0.05


def test_variant_code_reproduces_the_released_model_and_loss() -> None:
    diffs = _model_diff(*_run(variant="code"))
    assert max(diffs.values()) <= TOL, diffs


def test_the_item_flags_alone_compose_to_variant_code() -> None:
    """variant=paper with every item flag set to the code's value gives the same numbers."""
    flags = {k: v for k, v in CODE.items() if k not in ("encoder_cls", "dropout")}  # encoders are replaced here
    diffs = _model_diff(*_run(variant="paper", **flags))
    assert max(diffs.values()) <= TOL, diffs


@pytest.mark.parametrize("flag, other, moved", [
    ("slot_input", "raw", "logits"),
    ("mtoe_combine", "per-task", "logits"),
    ("norm_eps", 1e-5, "logits"),
    ("mi_variant", "paper", "mi"),
    ("focal_norm", "weights", "focal"),
    ("label_mask", "per-task", "focal"),
])
def test_each_item_is_a_real_switch(flag, other, moved) -> None:
    flags = {k: v for k, v in CODE.items() if k not in ("encoder_cls", "dropout")}
    diffs = _model_diff(*_run(variant="paper", **{**flags, flag: other}))
    assert max(v for k, v in diffs.items() if k.startswith(moved)) > DIFFERS, diffs


def test_the_default_is_not_the_code_and_variant_code_overrides_the_flags() -> None:
    diffs = _model_diff(*_run())
    assert max(v for k, v in diffs.items() if k.startswith("logits")) > 0.05  # the per-task combine alone
    net = case.model(variant="code", mtoe_combine="per-task", label_mask="per-task", dropout=0.3)
    assert (net.hparams["mtoe_combine"], net.hparams["label_mask"], net.hparams["dropout"]) == ("joint", "all", 0.0)


def test_fusion_head_shared_is_one_norm_and_projection_for_every_task() -> None:
    per_task, shared = case.model(), case.model(fusion_head="shared")
    d = case.DIM
    one = 2 * d + d * d + d  # LayerNorm + Linear
    assert sum(p.numel() for p in per_task.parameters()) - sum(p.numel() for p in shared.parameters()) == 2 * one
    assert set(per_task.fusion_norms) == {t for t, _, _ in case.TASKS} and not hasattr(shared, "fusion_norms")


def test_label_mask_all_drops_a_row_missing_any_label() -> None:
    """The code's ``valid_idx``: row 3 lacks task t2's label, so it leaves t1 and t3 too."""
    net = case.model(variant="code").eval()
    batch = case.batch()
    out = net(batch)
    _, parts = net.loss(out, batch)
    kept = {k: v[:3] for k, v in batch["target_mask"].items()}
    sub = {**batch, "target_mask": kept, "targets": {k: v[:3] for k, v in batch["targets"].items()}}
    out3 = type(out)({k: v[:3] for k, v in out.preds.items()}, aux={}, losses={})
    _, parts3 = net.loss(out3, sub)
    for t in ("t1", "t3"):
        assert float(parts[f"task/{t}"]) == pytest.approx(float(parts3[f"task/{t}"]), abs=1e-12)


def test_encoder_cls_keeps_the_vit_class_token_and_the_decoder_skips_it() -> None:
    from bench.runner import load_data

    data = load_data("synthetic-mvmt:seg", 0, None, None)
    over = {"image_encoder": "vit", "patch_size": 4}
    with_cls = M4oEMT(data.spec, case.hparams(**over))
    without = M4oEMT(data.spec, case.hparams(**over, encoder_cls=False))
    view = data.spec.modality_names[0]
    assert with_cls.token_counts[view] == without.token_counts[view] + 1 == 16 + 1
    batch = data.batch(data.splits["train"][:2])
    classes = data.spec.task("mask").num_classes
    assert with_cls(batch).preds["mask"].shape == without(batch).preds["mask"].shape == (2, classes, 16, 16)


def test_paper_size_parameters_equal_the_code_less_what_its_forward_never_uses(capsys) -> None:
    """``bench cost --preset paper --meta --set variant=code``: the authors' model at main.py's
    configuration (four ViT-B/16 encoders built from ViTConfig) has REF total parameters; its
    outputs do not depend on ``unused`` (the ViT poolers, the stem's patch embeddings, positions and
    class token, task embeddings 4-7 of the MToE, head3), which the harness does not build."""
    from bench.cli import main

    params = REF["paper_params"]
    assert main(["cost", "--method", "m4oe-mt", "--preset", "paper", "--meta", "--set", "variant=code", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["params_total"] == params["total"] - params["unused_total"] == 2_336_047_123
    assert sum(params["unused"].values()) == params["unused_total"]
