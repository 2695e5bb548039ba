"""Determinism that works on CUDA (docs/protocol.md "Seeds and determinism").

The pixel-wise cross-entropy of the segmentation losses must equal ``F.cross_entropy`` without
dispatching ``nll_loss*`` (no deterministic CUDA kernel) or ``scatter_add*``; deterministic mode
warns instead of raising, and :class:`bench.seeding.NondeterminismLog` records the ops that warned.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from bench.seeding import NondeterminismLog, configure_determinism
from methods.base import SEG_DICE_SMOOTH, segmentation_loss
from methods.losses import pixel_cross_entropy
from methods.seg_base import cross_entropy

SHAPES = [(3, 4, 5, 6), (2, 3, 4, 5, 3)]  # (B, C, H, W) and (B, C, D, H, W)
DTYPES = [torch.float32, torch.float64]
FORBIDDEN = ("nll_loss", "scatter_add")


def _case(shape, dtype, seed=0, ignore_frac=0.3, all_ignored_sample=True):
    g = torch.Generator().manual_seed(seed)
    b, c, *spatial = shape
    logits = torch.randn(shape, generator=g, dtype=dtype) * 3
    label = torch.randint(0, c, (b, *spatial), generator=g)
    label[torch.rand((b, *spatial), generator=g) < ignore_frac] = -1
    if all_ignored_sample:
        label[1] = -1
    return logits, label


def _value_and_grad(fn, logits, label):
    x = logits.clone().requires_grad_(True)
    out = fn(x, label)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), grad


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the formulation itself
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_pixel_cross_entropy_equals_f_cross_entropy(shape, dtype, reduction):
    logits, label = _case(shape, dtype)
    assert (label == -1).any() and (label[1] == -1).all() and (label >= 0).any()
    new = _value_and_grad(lambda x, y: pixel_cross_entropy(x, y, ignore_index=-1, reduction=reduction), logits, label)
    old = _value_and_grad(lambda x, y: F.cross_entropy(x, y, ignore_index=-1, reduction=reduction), logits, label)
    assert new[0].dtype == dtype and new[0].shape == old[0].shape
    _close(new[0], old[0])
    _close(new[1], old[1])
    assert new[1][1].abs().max() == 0  # the all-ignored sample gets no gradient


def test_pixel_cross_entropy_every_pixel_ignored_is_nan_like_f_cross_entropy():
    logits = torch.randn(2, 3, 4, 4)
    label = torch.full((2, 4, 4), -1)
    assert torch.isnan(pixel_cross_entropy(logits, label)) and torch.isnan(F.cross_entropy(logits, label, ignore_index=-1))
    assert pixel_cross_entropy(logits, label, reduction="sum") == 0


def test_pixel_cross_entropy_inf_logits_and_half_input():
    logits, label = _case((2, 3, 4, 4), torch.float32, all_ignored_sample=False)
    logits[:, 2] = float("-inf")  # a masked class that no label uses
    label[label == 2] = 0
    _close(pixel_cross_entropy(logits, label), F.cross_entropy(logits, label, ignore_index=-1))
    half = pixel_cross_entropy(logits.half(), label)
    assert half.dtype == torch.float32
    _close(half, F.cross_entropy(logits.half().float(), label, ignore_index=-1))


def test_pixel_cross_entropy_rejects_bad_labels_and_shapes():
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="outside 0..2"):
        pixel_cross_entropy(logits, torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match="outside 0..2"):
        pixel_cross_entropy(logits, torch.full((2, 4, 4), -2))
    with pytest.raises(ValueError, match="expected"):
        pixel_cross_entropy(logits, torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        pixel_cross_entropy(logits, torch.zeros(2, 4, 4, dtype=torch.long), reduction="avg")


# ------------------------------------------------------------------ the two losses that use it
def _old_seg_cross_entropy(logits, label, per_sample=True):
    """methods.seg_base.cross_entropy as it was, with F.cross_entropy."""
    valid = label >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if not per_sample:
        return F.cross_entropy(logits.float(), label, ignore_index=-1)
    pixel = F.cross_entropy(logits.float(), label, ignore_index=-1, reduction="none").flatten(1)
    count = valid.flatten(1).sum(1)
    has = count > 0
    return (pixel.sum(1)[has] / count[has]).mean()


def _old_segmentation_loss(pred, target):
    """methods.base.segmentation_loss as it was, with F.cross_entropy."""
    logits = pred.float()
    target = target.long()
    ce = F.cross_entropy(logits, target)
    prob = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    dims = tuple(range(2, logits.dim()))
    dice = (2 * (prob * onehot).sum(dims) + SEG_DICE_SMOOTH) / (prob.sum(dims) + onehot.sum(dims) + SEG_DICE_SMOOTH)
    return ce + (1.0 - dice.mean(dim=1)).mean()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_sample", [True, False])
def test_seg_base_cross_entropy_unchanged(shape, dtype, per_sample):
    logits, label = _case(shape, dtype)
    new = _value_and_grad(lambda x, y: cross_entropy(x, y, per_sample), logits, label)
    old = _value_and_grad(lambda x, y: _old_seg_cross_entropy(x, y, per_sample), logits, label)
    _close(new[0], old[0])
    _close(new[1], old[1])


@pytest.mark.parametrize("per_sample", [True, False])
def test_seg_base_cross_entropy_without_ignored_and_all_ignored(per_sample):
    logits, label = _case((3, 4, 5, 6), torch.float32, ignore_frac=0.0, all_ignored_sample=False)
    _close(cross_entropy(logits, label, per_sample), _old_seg_cross_entropy(logits, label, per_sample))
    x = logits.clone().requires_grad_(True)
    out = cross_entropy(x, torch.full_like(label, -1), per_sample)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert x.grad.abs().max() == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_base_segmentation_loss_unchanged(shape, dtype):
    logits, label = _case(shape, dtype, ignore_frac=0.0, all_ignored_sample=False)
    new = _value_and_grad(segmentation_loss, logits, label)
    old = _value_and_grad(_old_segmentation_loss, logits, label)
    _close(new[0], old[0])
    _close(new[1], old[1])


# ------------------------------------------------------------------ structural: which kernels run
class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.name())
        return func(*args, **(kwargs or {}))


def _dispatched(fn, logits, label):
    x = logits.clone().requires_grad_(True)
    with _OpRecorder() as rec:
        fn(x, label).backward()
    assert x.grad is not None
    return rec.ops


def test_recorder_sees_nll_loss_of_f_cross_entropy():
    """The recorder catches forward and backward kernels: F.cross_entropy shows nll_loss2d both ways."""
    logits, label = _case((2, 3, 4, 4), torch.float32)
    ops = _dispatched(lambda x, y: F.cross_entropy(x, y, ignore_index=-1), logits, label)
    assert any(op.startswith("aten::nll_loss2d_forward") for op in ops)
    assert any(op.startswith("aten::nll_loss2d_backward") for op in ops)


@pytest.mark.parametrize("shape", SHAPES)
def test_losses_dispatch_no_nll_loss_or_scatter_add(shape):
    logits, label = _case(shape, torch.float32)
    dense_label = label.clamp(min=0)
    losses = {
        "pixel_cross_entropy": (lambda x, y: pixel_cross_entropy(x, y), label),
        "seg_base.cross_entropy per sample": (lambda x, y: cross_entropy(x, y, True), label),
        "seg_base.cross_entropy pooled": (lambda x, y: cross_entropy(x, y, False), label),
        "base.segmentation_loss": (segmentation_loss, dense_label),
    }
    for name, (fn, y) in losses.items():
        ops = _dispatched(fn, logits, y)
        assert any("_log_softmax_backward" in op for op in ops), (name, sorted(ops))  # backward was recorded
        bad = sorted(op for op in ops if any(f in op for f in FORBIDDEN))
        assert not bad, (name, bad)


# ------------------------------------------------------------------ warn-only mode and the log
@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    configure_determinism(True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = False


def _put():
    """put_ with accumulate=False has no deterministic implementation, on CPU too."""
    t = torch.zeros(5)
    t.put_(torch.tensor([1, 3]), torch.tensor([1.0, 2.0]), accumulate=False)
    return t


def test_configure_determinism_warns_instead_of_raising(deterministic):
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    with pytest.warns(UserWarning, match="put_ does not have a deterministic implementation"):
        t = _put()
    assert t.tolist() == [0.0, 1.0, 0.0, 2.0, 0.0]


def test_nondeterminism_log_records_op_once_and_does_not_raise(deterministic):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # even an "error" filter outside must not crash the job
        with NondeterminismLog() as log:
            for _ in range(3):
                _put()
    assert log.ops == ["put_"]
    assert len(log._ops) == 1


def test_nondeterminism_log_empty_when_all_deterministic_or_mode_off(deterministic):
    with NondeterminismLog() as log:
        x = torch.randn(2, 3, 4, 4, requires_grad=True)
        cross_entropy(x, torch.randint(0, 3, (2, 4, 4))).backward()
    assert log.ops == []
    torch.use_deterministic_algorithms(False)
    with NondeterminismLog() as log:
        _put()
    assert log.ops == []


def test_nondeterminism_log_passes_other_warnings_through(deterministic):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with NondeterminismLog() as log:
            warnings.warn("an unrelated warning", UserWarning)
            _put()
            warnings.warn("another one", DeprecationWarning)
    messages = [str(w.message) for w in record]
    assert "an unrelated warning" in messages and "another one" in messages
    assert not any("deterministic implementation" in m for m in messages)
    assert log.ops == ["put_"]


def test_nondeterminism_log_restores_warning_machinery(deterministic):
    show, filters = warnings.showwarning, list(warnings.filters)
    with NondeterminismLog():
        assert warnings.showwarning is not show
    assert warnings.showwarning is show and warnings.filters == filters


def test_cublas_workspace_config_set_at_import():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import os, bench; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ":4096:8"
    env["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ":16:8"


def test_determinism_switch_skips_inductor_until_a_job_compiles():
    """configure_determinism sets what torch.use_deterministic_algorithms sets, without importing
    torch._inductor (2 s of every job's start); a compiling job sets inductor's flag itself."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from bench.seeding import configure_determinism\n"
            "configure_determinism(True)\n"
            "assert torch.are_deterministic_algorithms_enabled()\n"
            "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "assert 'torch._inductor.config' not in sys.modules\n"
            "from bench.execution import Execution, prepare_model\n"
            "prepare_model(torch.nn.Linear(2, 2), Execution(compile=True), torch.device('cpu'))\n"
            "import torch._inductor.config as ic\n"
            "assert ic.deterministic is True\n"
            "configure_determinism(False)\n"
            "assert not torch.are_deterministic_algorithms_enabled() and ic.deterministic is False\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
