"""How a job executes on its device: precision, TF32, memory format, compilation, data workers.

These options change speed, never the protocol (the same data, splits, budget, selection and
evaluation; docs/gpu.md). Those that can change a number (``precision``, ``tf32``,
``channels_last``, ``compile``) are part of the job key when they differ from their defaults, so
a bf16 run is never reused for an fp32 request; ``data_workers`` cannot change a number (every
batch is a pure function of its rows and seed, whatever process builds it), so it is recorded in
the run but kept out of the key.

Precision is applied at the model's forward: :func:`prepare_model` runs ``forward`` under
``torch.autocast`` and casts its floating outputs back to float32, so the losses, metrics,
robustness evaluation and cost measurement all see float32 tensors and need no changes. fp16
training scales the loss (:func:`make_scaler`); bf16 needs no scaling.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # torch dtypes by name: torch loads when a job runs
#: most DataLoader workers ``data_workers=None`` (auto) picks on a GPU
AUTO_WORKERS_MAX = 8


class ExecutionError(ValueError):
    """A bad execution option; the message names the option and what to do."""


@dataclass
class Execution:
    """Execution options of one job (``bench run --precision bf16 --channels-last ...``).

    ``tf32`` *allows* TensorFloat-32 matmuls and convolutions; they are used only for fp32 on a
    CUDA device of compute capability 8.0 or newer, and never in deterministic mode.
    ``data_workers``: DataLoader workers that build segmentation training batches; None = auto
    (0 on CPU, where workers would compete with training for the cores; up to 8 on a GPU)."""

    precision: str = "fp32"
    tf32: bool = True
    channels_last: bool = False
    compile: bool = False
    data_workers: int | None = None

    def validate(self) -> "Execution":
        if self.precision not in PRECISIONS:
            raise ExecutionError(f"--precision {self.precision}: must be one of {', '.join(PRECISIONS)}")
        if self.data_workers is not None and self.data_workers < 0:
            raise ExecutionError(f"--data-workers {self.data_workers}: must be >= 0")
        return self

    def key_fields(self) -> dict[str, Any]:
        """The options that can change a result, where they differ from the defaults (so the keys
        of default runs are the keys they always had)."""
        default = Execution()
        return {k: getattr(self, k) for k in ("precision", "tf32", "channels_last", "compile")
                if getattr(self, k) != getattr(default, k)}

    def workers(self, device: torch.device) -> int:
        if self.data_workers is not None:
            return self.data_workers
        if device.type == "cpu":
            return 0
        return max(1, min(AUTO_WORKERS_MAX, (os.cpu_count() or 2) // 2))


def tf32_active(ex: Execution, device: torch.device, deterministic: bool) -> bool:
    """Whether TF32 is used: allowed, fp32, not deterministic, CUDA with compute capability >= 8."""
    import torch

    if not ex.tf32 or ex.precision != "fp32" or deterministic or device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def configure_matmul(ex: Execution, device: torch.device, deterministic: bool) -> bool:
    """Set torch's process-wide TF32 switches for this job (every job sets them, so one job's
    choice never leaks into the next in a sweep); returns whether TF32 is on."""
    import torch

    on = tf32_active(ex, device, deterministic)
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):   # torch >= 2.9; mixing in the old switches warns
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on   # torch's default is True: convolutions used TF32 unasked
    return on


def check_device(ex: Execution, device: torch.device) -> None:
    """Refuse what the device cannot do, before anything runs."""
    import torch

    if ex.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ExecutionError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 support; "
                             "use fp16 or fp32")


def autocast(ex: Execution, device: torch.device):
    """The autocast context of the job's precision (a no-op for fp32)."""
    import torch

    if ex.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, _DTYPES[ex.precision]))


def make_scaler(ex: Execution, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 training (fp16 gradients underflow without one); None otherwise."""
    import torch

    if ex.precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def _to_float32(value: Any) -> Any:
    import torch

    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_float32(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _to_float32(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def _channels_last_inputs(batch: dict) -> dict:
    import torch

    inputs = batch.get("inputs") if isinstance(batch, dict) else None
    if not isinstance(inputs, dict):
        return batch
    moved = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4
             and v.is_floating_point() else v for k, v in inputs.items()}
    return {**batch, "inputs": moved}


def prepare_model(model: torch.nn.Module, ex: Execution, device: torch.device) -> torch.nn.Module:
    """Apply the execution options to a built model, in place: channels-last weights and inputs,
    the forward under autocast with float32 outputs, and ``torch.compile`` last. The state dict's
    keys are unchanged (``Module.compile`` compiles the call in place), so checkpoints stay
    interchangeable between options."""
    import torch

    if ex.channels_last:
        model.to(memory_format=torch.channels_last)
    if ex.precision != "fp32" or ex.channels_last:
        forward = model.forward

        @functools.wraps(forward)
        def run(batch, *args, **kwargs):
            if ex.channels_last:
                batch = _channels_last_inputs(batch)
            with autocast(ex, device):
                out = forward(batch, *args, **kwargs)
            return _to_float32(out)

        model.forward = run
    if ex.compile:   # inductor's determinism flag, which bench.seeding leaves to the compiling job
        import torch._inductor.config as inductor_config

        inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
        model.compile()
    return model


def describe(ex: Execution, device: torch.device, deterministic: bool) -> dict[str, Any]:
    """What the run executed with, for the record (``env.execution``)."""
    return {"precision": ex.precision, "tf32": tf32_active(ex, device, deterministic),
            "channels_last": ex.channels_last, "compile": ex.compile, "data_workers": ex.workers(device)}


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch's tensors on ``device`` (nested dicts of tensors too); on the CPU the batch itself."""
    import torch

    if device.type == "cpu":
        return batch
    return {k: ({kk: vv.to(device, non_blocking=True) for kk, vv in v.items()} if isinstance(v, dict)
                else v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
