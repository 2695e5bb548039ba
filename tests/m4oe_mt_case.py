"""One small M4oE-MT case, built the same way by the test (tests/test_m4oe_mt_code.py) and by the
script that ran the authors' released code on it (scripts/m4oe_mt_reference.py).

The authors' model (github tangzhengxu2001/m4oe, models/models_m4oe.py) is hard-wired to four
views and three classification tasks, 32 MSoE experts per view and 16 fusion experts; only the
MToE expert count, the width, the depth and the heads are arguments. The case keeps that
structure at a width of 8, in float64, downstream of the encoders (each view's tokens are
given). Every weight is drawn from one numpy generator in the order of the harness model's
``named_parameters()``, so both sides get identical weights without sharing a file of them.
"""
from __future__ import annotations

import numpy as np
import torch

from datasets import DatasetSpec, ModalitySpec, TaskSpec

DIM, HEADS, DEPTH, MTOE_EXPERTS, TOKENS, BATCH = 8, 2, 2, 6, 5, 4
VIEWS = ("cc", "mlo", "cc2d", "mlo2d")
#: the authors' slot order: task 1 -> head1 (num_classes_1), task 2 -> head2 (num_classes_3),
#: task 3 -> head7 (num_classes_2); class counts chosen so 1 - frequency is exact in float32
TASKS = (("t1", 2, (3, 1)), ("t2", 3, (2, 1, 1)), ("t3", 4, (4, 2, 1, 1)))
#: row 3 has no label for task t2 (the authors' -1): the code's all-tasks mask drops it everywhere
LABELS = {"t1": [0, 1, 1, 0], "t2": [2, 0, 1, -1], "t3": [3, 1, 0, 2]}
WEIGHT_SEED, INPUT_SEED = 20250123, 7


def spec() -> DatasetSpec:
    mods = tuple(ModalitySpec(v, "sequence", (TOKENS, DIM)) for v in VIEWS)
    tasks = tuple(TaskSpec(n, "binary" if c == 2 else "multiclass", c, class_counts=counts) for n, c, counts in TASKS)
    return DatasetSpec("m4oe-mt-case", mods, tasks, "given", "tests/m4oe_mt_case.py")


def hparams(**over) -> dict:
    """The authors' main.py configuration at width 8: depth 2 (MSoE and fusion), MSoE 32 and fusion
    16 experts (hard-coded there), MLP ratio 4, no dropout."""
    from methods import resolve_hparams
    from methods.m4oe_mt import M4oEMT

    base = {"hidden": DIM, "heads": HEADS, "msoe_layers": DEPTH, "fusion_layers": DEPTH, "msoe_experts": 32,
            "mtoe_experts": MTOE_EXPERTS, "fusion_experts": 16, "mlp_ratio": 4.0, "dropout": 0.0, "alpha": 1.0}
    return resolve_hparams(M4oEMT.defaults(), "tiny", {**base, **over})


def draw(shape: tuple[int, ...], name: str, rng: np.random.Generator) -> np.ndarray:
    """A weight of sensible size for its role: the router scale and LayerNorm weights near 1, task
    embeddings and biases small but non-zero, matrices ~ N(0, 1/fan_in)."""
    if name.endswith("scale"):
        return 1.0 + 0.5 * np.abs(rng.standard_normal(shape))
    if name.endswith("task_embed"):
        return 0.5 * rng.standard_normal(shape)
    if len(shape) <= 1 or name.endswith(("b1", "b2")):  # b1/b2: stacked expert biases (E, width)
        return (1.0 if name.endswith("weight") else 0.0) + 0.3 * rng.standard_normal(shape)  # 1-D weights: LayerNorms
    fan_in = shape[0] if name.endswith("phi") else (shape[-2] if len(shape) == 3 else shape[-1])
    return rng.standard_normal(shape) / np.sqrt(fan_in)


def fill(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Cast to float64 and draw every parameter, in ``named_parameters()`` order."""
    module.double()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(draw(tuple(p.shape), name, rng))))
    return module


def model(**over):
    """The harness's M4oEMT on the case, float64, encoders replaced by the identity (tokens are
    given), weights drawn in ``named_parameters()`` order."""
    from torch import nn

    from methods.m4oe_mt import M4oEMT

    torch.manual_seed(0)
    net = M4oEMT(spec(), hparams(**over))
    net.encoders = nn.ModuleDict({v: nn.Identity() for v in VIEWS})
    return fill(net, WEIGHT_SEED)


def tokens() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(INPUT_SEED)
    return {v: torch.from_numpy(rng.standard_normal((BATCH, TOKENS, DIM))) for v in VIEWS}


def batch() -> dict:
    x = tokens()
    targets = {t: torch.tensor([max(y, 0) for y in LABELS[t]]) for t, _, _ in TASKS}
    mask = {t: torch.tensor([y >= 0 for y in LABELS[t]]) for t, _, _ in TASKS}
    return {"inputs": x, "mask": {v: torch.ones(BATCH, dtype=torch.bool) for v in VIEWS},
            "targets": targets, "target_mask": mask}


def layer_input(seed: int, shape: tuple[int, ...] = (2, TOKENS, DIM)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))
