"""Declarative checks of method hparams, applied before a job is configured.

Why: a constructor catches only what it happens to trip over, so values that cannot work were
stored as runs (``layers=-1``), died deep inside a module (``hidden=0``: StopIteration) or reached
reports (``image_encoder='x | **pwn** |'`` on a tabular dataset). Every hparam of every method has a
:class:`Rule` (``Method.hparam_rules()``: the shared table below for the keys of ``defaults()``,
overridden per class where a method differs), and :func:`check_hparams` raises a one-line
``ValueError`` naming the key, the value and what is allowed. Constraints between fields
(``top_k <= num_experts``, ``img_size`` divisible by ``2**unet_depth``, ``num_heads`` one per stage)
stay in the constructors, which see every value and the dataset.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

if TYPE_CHECKING:
    from .base import Method

KINDS = ("int", "float", "bool", "str", "ints")
#: segmentation loss forms (methods.seg_base): per sample or over the pooled group of a batch
LOSS_GRANULARITIES = ("sample", "group")


def parse_ints(value: str | int | tuple | list, name: str) -> tuple[int, ...]:
    """hparams such as ``depths`` are strings ("2,2,2,2") so ``--set depths=1,1,1,1`` works."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    try:
        out = tuple(int(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected comma-separated integers, e.g. 2,2,2,2") from None
    if not out:
        raise ValueError(f"{name}={value!r}: expected comma-separated integers")
    return out


@dataclass(frozen=True)
class Rule:
    """What one hparam may be. ``kind``: int, float, bool, str or ints (comma-separated integers
    such as ``depths="2,2,2,2"``, parsed as the methods parse them). ``lo``/``hi`` bound numbers and
    every entry of ints (``*_open``: strict), ``multiple_of`` steps them; ``length``: the number of
    entries of ints; ``choices``: allowed strings, ``also`` accepts more (e.g. ``tu-<timm model>``).
    ``applies_to``: the modality kinds the hparam has an effect on (any of them, or all with
    ``applies_to_all``); setting it explicitly elsewhere is an error, as it would silently do
    nothing. ``doc`` replaces the generated description of the allowed values; ``note`` is added
    to it (e.g. what 0 means)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    also: Callable[[str], bool] | None = None
    length: int | None = None
    multiple_of: int = 1
    applies_to: frozenset[str] = field(default_factory=frozenset)
    applies_to_all: bool = False
    doc: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Rule kind {self.kind!r} is not one of: {', '.join(KINDS)}")
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "applies_to", frozenset(self.applies_to))

    # ---- description
    def _bounds(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            if self.kind in ("int", "ints") and not (self.lo_open or self.hi_open):
                return f" in {lo}..{hi}"
            return f" in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f" {'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f" {'<' if self.hi_open else '<='} {hi}"
        return ""

    def allowed(self) -> str:
        """What is allowed, as the tail of an error message ("an integer >= 1")."""
        if self.doc:
            text = self.doc
        elif self.kind == "int":
            text = (f"a multiple of {self.multiple_of}" if self.multiple_of > 1 else "an integer") + self._bounds()
        elif self.kind == "float":
            text = "a finite number" + self._bounds()
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "ints":
            count = f"{self.length} " if self.length else ""
            what = f"multiples of {self.multiple_of}" if self.multiple_of > 1 else "integers"
            text = f"{count}comma-separated {what}{self._bounds()}"
        elif self.choices:
            text = "one of: " + ", ".join(self.choices)
        else:
            text = "a string"
        return f"{text} ({self.note})" if self.note else text

    # ---- checks
    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else "must be <what is allowed>"."""
        return None if self._ok(value) else "must be " + self.allowed()

    def _ok(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, (bool, np.bool_))
        if self.kind == "str":
            if not isinstance(value, str):
                return False
            return not self.choices or value in self.choices or (self.also is not None and self.also(value))
        if self.kind == "ints":
            try:
                values = parse_ints(value, "")
            except (ValueError, TypeError, OverflowError):
                return False
            return (self.length is None or len(values) == self.length) and all(self._in_range(v) for v in values)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.kind == "int" and not (isinstance(value, numbers.Integral) or float(value).is_integer()):
            return False
        return self._in_range(value)

    def _in_range(self, v: float) -> bool:
        if self.multiple_of > 1 and v % self.multiple_of:
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or not (v >= self.hi if self.hi_open else v > self.hi)

    def applies(self, modality_kinds: Iterable[str]) -> bool:
        """Whether the hparam has an effect on a dataset with these modality kinds."""
        kinds = set(modality_kinds)
        if not self.applies_to:
            return True
        if self.applies_to_all:
            return bool(kinds) and kinds <= self.applies_to
        return bool(kinds & self.applies_to)


# ------------------------------------------------------------------------- short constructors
def integer(lo: int | None = None, hi: int | None = None, **kw: Any) -> Rule:
    return Rule("int", lo=lo, hi=hi, **kw)


def number(lo: float | None = None, hi: float | None = None, **kw: Any) -> Rule:
    return Rule("float", lo=lo, hi=hi, **kw)


def fraction() -> Rule:
    """[0, 1): a dropout-like probability (1 would drop everything)."""
    return Rule("float", lo=0.0, hi=1.0, hi_open=True)


def one_of(*choices: str, **kw: Any) -> Rule:
    return Rule("str", choices=choices, **kw)


def flag() -> Rule:
    return Rule("bool")


def int_list(lo: int = 1, length: int | None = None, **kw: Any) -> Rule:
    return Rule("ints", lo=lo, length=length, **kw)


def _timm_universal(name: str) -> bool:
    """smp's ``tu-<timm model>`` encoders, built without weights (an unknown model is a RuntimeError
    inside smp, which the U-Net constructor would not turn into a config error)."""
    import timm

    return name.startswith("tu-") and timm.is_model(name[3:])


@functools.cache
def shared_rules() -> dict[str, Rule]:
    """The rule of every hparam some method declares, keyed by name. Built on first use: the
    choices come from the modules that act on them (the backbones, I2MoE, the Swin-UNet, smp), so
    a choice the code accepts is always allowed and nothing is listed twice."""
    import segmentation_models_pytorch as smp

    from .choices import BACKBONE_NAMES as BACKBONES
    from .choices import I2MOE_CHOICES as CHOICES
    from .choices import MOE_WHERE, ROUTINGS

    smp_encoders = tuple(smp.encoders.get_encoder_names())
    return {
        # shared encoders (encoders.py) and fusion backbones (backbones.py, blocks.py, moe_layers.py)
        "hidden": integer(1), "layers": integer(1), "dropout": fraction(),
        "image_encoder": one_of("cnn", "vit", applies_to={"image2d"}),
        "heads": integer(1), "fusion_layers": integer(1), "match_params": flag(),
        "weights": one_of("mean", "learned"),  # LateBackbone
        "num_experts": integer(1), "top_k": integer(1), "aux_weight": number(0), "slots": integer(1),
        # i2moe
        "backbone": one_of(*BACKBONES), "perturb": one_of(*CHOICES["perturb"]),
        "loss_space": one_of(*CHOICES["loss_space"]), "expert_init": one_of(*CHOICES["expert_init"]),
        "impl": one_of(*CHOICES["impl"]),
        "lambda_int": number(0), "temperature": number(0, lo_open=True), "gate_layers": integer(1),
        "gate_dropout": fraction(), "margin": number(0), "num_perturb": integer(0, note="0 = every modality"),
        "interaction_loss": flag(), "uniform_weights": flag(), "attn_residual": flag(), "reference_compat": flag(),
        "readout": one_of(*CHOICES["readout"]), "pos_init": one_of(*CHOICES["pos_init"]), "qkv_bias": flag(),
        "regression_int_loss": one_of(*CHOICES["regression_int_loss"]),
        "regression_task_loss": one_of(*CHOICES["regression_task_loss"]), "latent_grad": flag(),
        "load_balance_grad": flag(),
        # segmentation: loss (seg_base.py), Swin-UNet (swinunet.py, swin_unet.py), m4oe
        "ce_weight": number(0), "dice_weight": number(0), "loss_granularity": one_of(*LOSS_GRANULARITIES),
        "img_size": integer(1), "patch_size": integer(1), "embed_dim": integer(1),
        "depths": int_list(1), "num_heads": int_list(1), "window_size": integer(1),
        "mlp_ratio": number(0, lo_open=True), "drop_path": fraction(), "repeat_channels": integer(1),
        "routing": one_of(*ROUTINGS), "moe_where": one_of(*MOE_WHERE), "two_stage": flag(),
        "stage1_fraction": number(0, 1, lo_open=True, hi_open=True), "reinit_heads": flag(), "freeze_experts": flag(),
        # smp U-Net (unet.py): any smp encoder, built without weights; smp's encoders take depth 1..5
        "unet_encoder": one_of(*smp_encoders, also=_timm_universal,
                               doc=f"an smp encoder name ({', '.join(smp_encoders[:4])}, ... "
                                   f"{len(smp_encoders)} in all) or tu-<timm model name>"),
        "unet_depth": integer(1, 5), "unet_decoder": int_list(1),
        # MONAI BasicUNet (unet3d.py): six widths; patch z,y,x
        "unet3d_features": int_list(1, length=6), "patch": int_list(16, length=3, multiple_of=16, note="z,y,x"),
    }


def rules_for(keys: Iterable[str]) -> dict[str, Rule]:
    """The shared rules of ``keys`` (those that have one)."""
    table = shared_rules()
    return {k: table[k] for k in keys if k in table}


def missing_rules(cls: type[Method]) -> list[str]:
    """hparams of ``cls`` without a rule (kept empty for every registered method by the tests)."""
    rules = cls.hparam_rules()
    return [k for k in cls.defaults() if k not in rules]


def check_hparams(cls: type[Method], hparams: dict[str, Any], explicit: Iterable[str] = (),
                  modality_kinds: set[str] | None = None) -> None:
    """Raise a one-line ValueError for the first hparam value of ``cls`` that cannot work.

    ``explicit``: the keys the user set; with ``modality_kinds`` (the dataset's modality kinds),
    an explicit key that has no effect on such a dataset is an error too. Keys without a rule are
    only checked for non-finite floats."""
    rules = cls.hparam_rules()
    for key, value in hparams.items():
        rule = rules.get(key)
        if rule is not None:
            problem = rule.problem(value)
        else:
            bad = isinstance(value, float) and not math.isfinite(value)
            problem = "must be a finite number" if bad else None
        if problem:
            raise ValueError(_line(f"{key}={_show(value)}: {problem}"))
    if modality_kinds is None:
        return
    kinds = set(modality_kinds)
    for key in explicit:
        rule = rules.get(key)
        if rule is None or rule.applies(kinds):
            continue
        want = " or ".join(sorted(rule.applies_to))
        scope = f"whose modalities are all {want}" if rule.applies_to_all else f"with {want} modalities"
        have = " and ".join(sorted(kinds)) or "no"
        shown = f"={_show(hparams[key])}" if key in hparams else ""
        raise ValueError(_line(f"{key}{shown}: applies only to datasets {scope}; this dataset has {have} modalities"))


def _num(v: float | None) -> str:
    return "" if v is None else (str(int(v)) if float(v).is_integer() else repr(v))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _line(message: str) -> str:
    return " ".join(message.splitlines())
