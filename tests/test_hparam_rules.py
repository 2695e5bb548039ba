"""Tests of the declarative hparam rules: every hparam has one, defaults pass, values that cannot work fail."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import segmentation_models_pytorch as smp

from datasets import DatasetSpec, ModalitySpec, TaskSpec
from methods import PRESETS, Rule, check_hparams, method_classes, parse_method, resolve_hparams
from methods import hparam_rules as hr
from methods.i2moe import CHOICES
from methods.nets.backbones import BACKBONES
from methods.nets.swin_unet import MOE_WHERE, ROUTINGS

INF, NAN = float("inf"), float("nan")


def _cls(name: str):
    return parse_method(name)[0]


def _hp(name: str, preset: str = "tiny", **over):
    cls = _cls(name)
    return resolve_hparams(cls.defaults(), preset, over)


def _error(name: str, **over) -> str:
    with pytest.raises(ValueError) as exc:
        check_hparams(_cls(name), _hp(name, **over), explicit=over)
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message
    return message


def _seg_spec(classes=(3, 2)) -> DatasetSpec:
    tasks = tuple(TaskSpec(f"d{i}", "segmentation", c) for i, c in enumerate(classes))
    return DatasetSpec("fake", (ModalitySpec("image", "volume3d", (1, 8, 64, 64)),), tasks, "n/a", "test")


# ------------------------------------------------------------------------------------ coverage


def test_every_hparam_of_every_method_has_a_rule() -> None:
    for cls in method_classes():
        rules = cls.hparam_rules()
        missing = [k for k in cls.defaults() if k not in rules]
        assert missing == [], f"{cls.name}: no rule for {missing}"
        assert hr.missing_rules(cls) == []
        assert all(isinstance(r, Rule) for r in rules.values())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_defaults_pass_at_every_preset(preset: str) -> None:
    for cls in method_classes():
        hp = resolve_hparams(cls.defaults(), preset, {})
        check_hparams(cls, hp)
        for key, rule in cls.hparam_rules().items():
            assert rule.problem(hp[key]) is None, f"{cls.name} at {preset}: {key}={hp[key]!r}"


def test_a_removed_rule_is_caught(monkeypatch) -> None:
    """The coverage test above fails when a shared rule disappears, and the value goes unchecked."""
    table = dict(hr.shared_rules())
    del table["hidden"]
    monkeypatch.setattr(hr, "shared_rules", lambda: table)
    early = _cls("early")
    assert hr.missing_rules(early) == ["hidden"]
    assert "hidden" not in early.hparam_rules()
    check_hparams(early, _hp("early", hidden=0))  # no rule: nothing refuses it any more


# --------------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("method, over, expected", [
    ("early", {"layers": -1}, "layers=-1: must be an integer >= 1"),
    ("early", {"hidden": 0}, "hidden=0: must be an integer >= 1"),
    ("early", {"hidden": 1.5}, "hidden=1.5: must be an integer >= 1"),
    ("early", {"hidden": True}, "hidden=True: must be an integer >= 1"),
    ("early", {"dropout": 1.5}, "dropout=1.5: must be a finite number in [0, 1)"),
    ("late", {"dropout": NAN}, "dropout=nan: must be a finite number in [0, 1)"),
    ("i2moe", {"temperature": INF}, "temperature=inf: must be a finite number > 0"),
    ("i2moe", {"lambda_int": INF}, "lambda_int=inf: must be a finite number >= 0"),
    ("i2moe", {"gate_dropout": 1.0}, "gate_dropout=1.0: must be a finite number in [0, 1)"),
    ("i2moe", {"margin": -1.0}, "margin=-1.0: must be a finite number >= 0"),
    ("i2moe", {"interaction_loss": "no"}, "interaction_loss='no': must be true or false"),
    ("early", {"image_encoder": "x | **pwn** | 9.999 |"},
     "image_encoder='x | **pwn** | 9.999 |': must be one of: cnn, vit"),
    ("attention", {"heads": 0}, "heads=0: must be an integer >= 1"),
    ("attention", {"fusion_layers": 0}, "fusion_layers=0: must be an integer >= 1"),
    ("soft-moe", {"num_experts": 0}, "num_experts=0: must be an integer >= 1"),
    ("soft-moe", {"slots": 0}, "slots=0: must be an integer >= 1"),
    ("moe", {"aux_weight": -0.1}, "aux_weight=-0.1: must be a finite number >= 0"),
    ("m4oe", {"num_experts": -1}, "num_experts=-1: must be an integer >= 0 (0 = one expert per dataset)"),
    ("m4oe", {"stage1_fraction": 1.0}, "stage1_fraction=1.0: must be a finite number in (0, 1)"),
    ("m4oe", {"depths": "2,x,2,2"}, "depths='2,x,2,2': must be comma-separated integers >= 1"),
    ("m4oe", {"num_heads": "0,2,4,8"}, "num_heads='0,2,4,8': must be comma-separated integers >= 1"),
    ("swinunet", {"mlp_ratio": INF}, "mlp_ratio=inf: must be a finite number > 0"),
    ("swinunet", {"drop_path": 1.0}, "drop_path=1.0: must be a finite number in [0, 1)"),
    ("swinunet", {"repeat_channels": 0}, "repeat_channels=0: must be an integer >= 1"),
    ("unet", {"ce_weight": -1.0}, "ce_weight=-1.0: must be a finite number >= 0"),
    ("unet", {"img_size": 0}, "img_size=0: must be an integer >= 1"),
    ("unet", {"unet_depth": 6}, "unet_depth=6: must be an integer in 1..5"),
    ("unet", {"unet_encoder": "resnet999"}, "unet_encoder='resnet999': must be an smp encoder name"),
    ("unet", {"unet_encoder": "tu-notamodel"}, "or tu-<timm model name>"),
    ("unet", {"unet_decoder": "32,0,8"}, "unet_decoder='32,0,8': must be comma-separated integers >= 1"),
    ("unet3d", {"unet3d_features": "8,8,16"}, "must be 6 comma-separated integers >= 1"),
    ("unet3d", {"patch": "0,48,48"}, "patch='0,48,48': must be 3 comma-separated multiples of 16 >= 16 (z,y,x)"),
])
def test_values_that_cannot_work_are_rejected(method: str, over: dict, expected: str) -> None:
    message = _error(method, **over)
    assert message.startswith(f"{next(iter(over))}=")
    assert expected in message


def test_non_finite_floats_are_always_rejected() -> None:
    early = _cls("early")
    with pytest.raises(ValueError, match=r"^extra=inf: must be a finite number$"):
        check_hparams(early, {**_hp("early"), "extra": INF})  # a key without a rule
    for key in ("hidden", "layers", "dropout"):
        for bad in (INF, -INF, NAN):
            with pytest.raises(ValueError, match=f"^{key}="):
                check_hparams(early, _hp("early", **{key: bad}))


def test_messages_are_one_line_even_for_odd_values() -> None:
    message = _error("early", image_encoder="cnn\n| a | b |\r\n" + "x" * 500)
    assert message.startswith("image_encoder='cnn\\n| a | b |") and "..." in message and len(message) < 200
    with pytest.raises(ValueError) as exc:
        check_hparams(_cls("early"), _hp("early"), explicit=["image_encoder"], modality_kinds={"tabular"})
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------ what a value applies to


def test_image_encoder_only_on_datasets_with_images() -> None:
    for name in ("attention", "late", "i2moe", "early"):
        cls, hp = _cls(name), _hp(name, image_encoder="vit")
        with pytest.raises(ValueError) as exc:
            check_hparams(cls, hp, explicit=["image_encoder"], modality_kinds={"tabular"})
        message = str(exc.value)
        assert message.startswith("image_encoder='vit': applies only to datasets ")
        assert "image2d" in message and "tabular" in message and "\n" not in message
        check_hparams(cls, hp, explicit=["image_encoder"], modality_kinds={"image2d"})
        check_hparams(cls, hp, explicit=[], modality_kinds={"tabular"})  # a default, not the user's choice
        check_hparams(cls, hp, explicit=["image_encoder"])  # kinds unknown: not checked
        check_hparams(cls, _hp(name, hidden=8), explicit=["hidden"], modality_kinds={"tabular"})


def test_early_fusion_uses_image_encoder_only_when_every_modality_is_an_image() -> None:
    mixed = {"image2d", "tabular"}
    with pytest.raises(ValueError, match="all image2d; this dataset has image2d and tabular modalities"):
        check_hparams(_cls("early"), _hp("early", image_encoder="vit"), explicit=["image_encoder"], modality_kinds=mixed)
    check_hparams(_cls("attention"), _hp("attention", image_encoder="vit"), explicit=["image_encoder"],
                  modality_kinds=mixed)


# --------------------------------------------------------------------------------- choices


@pytest.mark.parametrize("method, key, good, bad", [
    ("i2moe", "backbone", list(BACKBONES), ["transformer", "Attention"]),
    ("i2moe", "impl", ["batched", "vmap", "per-expert", "loop"], ["fast", ""]),
    ("i2moe", "perturb", ["noise", "zero", "mean"], ["gaussian"]),
    ("i2moe", "loss_space", ["logits", "latent"], ["probs"]),
    ("i2moe", "expert_init", ["independent", "shared"], ["copy"]),
    ("late", "weights", ["mean", "learned"], ["max", 1]),
    ("m4oe", "routing", ["hard", "gated", "gated-code", "dense"], ["soft"]),
    ("m4oe", "moe_where", ["enc", "dec", "both"], ["all"]),
    ("unet", "unet_encoder", ["resnet18", "resnet34", "efficientnet-b0", "timm-efficientnet-b0", "mit_b0", "tu-resnet18"],
     ["resnet999", "tu-", "RESNET18"]),
    ("unet-late", "unet_encoder", ["mobileone_s0", "vgg11"], ["x | **pwn** |"]),
])
def test_choices(method: str, key: str, good: list, bad: list) -> None:
    cls = _cls(method)
    for value in good:
        check_hparams(cls, _hp(method, **{key: value}))
    for value in bad:
        with pytest.raises(ValueError, match=f"^{key}="):
            check_hparams(cls, _hp(method, **{key: value}))


def test_choices_are_the_codes() -> None:
    table = hr.shared_rules()
    assert table["backbone"].choices == tuple(BACKBONES)
    for key in ("perturb", "loss_space", "expert_init", "impl"):
        assert table[key].choices == CHOICES[key]
    assert table["routing"].choices == ROUTINGS and table["moe_where"].choices == MOE_WHERE
    assert set(table["unet_encoder"].choices) == set(smp.encoders.get_encoder_names())


def test_every_allowed_choice_builds(load_data) -> None:
    """The other direction: what a rule allows, the constructors accept."""
    tab, img, seg = load_data("wdbc").spec, load_data("synthetic-mvmt").spec, _seg_spec()
    for backbone in hr.shared_rules()["backbone"].choices:
        _cls("i2moe")(tab, _hp("i2moe", backbone=backbone))
    for weights in ("mean", "learned"):
        _cls("late")(tab, _hp("late", weights=weights))
        _cls("i2moe")(tab, _hp("i2moe", backbone="late", weights=weights))
    for encoder in _cls("early").hparam_rules()["image_encoder"].choices:
        _cls("early")(img, _hp("early", image_encoder=encoder))
    for routing in ROUTINGS:
        for where in MOE_WHERE:
            _cls("m4oe")(seg, _hp("m4oe", routing=routing, moe_where=where))
    for encoder in ("resnet18", "tu-resnet18"):
        _cls("unet")(seg, _hp("unet", unet_encoder=encoder))


# -------------------------------------------------------------------------- per-method rules


def test_method_specific_rules() -> None:
    check_hparams(_cls("m4oe"), _hp("m4oe", num_experts=0))  # 0 = one expert per dataset
    with pytest.raises(ValueError, match="^num_experts=0: must be an integer >= 1$"):
        check_hparams(_cls("moe"), _hp("moe", num_experts=0))
    for modality in ("", "left", "v1"):  # checked against the dataset by the constructor
        check_hparams(_cls("single"), _hp("single", modality=modality))
    with pytest.raises(ValueError, match="^modality=3: "):
        check_hparams(_cls("single"), _hp("single", modality=3))


# ------------------------------------------------------------------------------------- Rule


def test_rule_value_forms() -> None:
    whole = hr.integer(1)
    assert whole.problem(64) is None and whole.problem(64.0) is None and whole.problem(np.int64(3)) is None
    assert whole.problem("64") and whole.problem(False) and whole.problem(0)
    assert hr.integer(1, 5).allowed() == "an integer in 1..5"
    assert hr.number(0, lo_open=True).problem(0.0) == "must be a finite number > 0"
    assert hr.number(0, 1, lo_open=True, hi_open=True).allowed() == "a finite number in (0, 1)"
    assert hr.flag().problem(np.bool_(True)) is None and hr.flag().problem(1)
    widths = hr.int_list(1, length=4)
    for ok in ("2,2,2,2", "2, 2, 2, 2", (2, 2, 2, 2), [1, 2, 3, 4]):
        assert widths.problem(ok) is None
    for bad in ("2,2,2", "2,2,2,-2", "", "a,b,c,d", None):
        assert widths.problem(bad) == "must be 4 comma-separated integers >= 1"
    with pytest.raises(ValueError, match="kind"):
        Rule("list")
    with pytest.raises(dataclasses.FrozenInstanceError):
        whole.lo = 0  # type: ignore[misc]
    assert Rule("str", choices=["a"], applies_to={"image2d"}).applies_to == frozenset({"image2d"})
