"""Cost of a model, measured the same way for every method (docs/protocol.md "Cost").

- parameters: total and trainable (sparse MoE methods add their active-per-sample count via
  ``active_parameters()`` when they define it);
- forward FLOPs per sample: ``torch.utils.flop_counter.FlopCounterMode`` on one batch, divided
  by its size (counts matmul/conv FLOPs, as the field reports them);
- peak memory: CUDA max allocated on GPU; on CPU the process's peak resident set size (VmHWM),
  which includes the interpreter and data, so compare it between methods, not to a GPU figure;
- time per training step (median after warm-up) comes from the runner; inference latency per
  sample and throughput from a timed pass over the test split here;
- achieved training FLOP/s: 3 x forward FLOPs per sample x batch / step time (backward costs
  about twice the forward), and on a GPU whose peak is known (:data:`PEAK_TFLOPS`) its share of
  the dense peak at the run's precision.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

#: dense (no sparsity) peak TFLOP/s by GPU name fragment and precision, from the vendors' data
#: sheets (SXM parts); "fp32" is plain IEEE fp32, "tf32" the tensor-core path fp32 matmuls may take
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def peak_tflops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak at ``precision`` (``tf32`` for fp32 with TF32 on), or None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment in name:
            return peaks.get(precision)
    return None


def training_throughput(flops_per_sample: float, batch_size: int, step_time_s: float, device: torch.device,
                        precision: str) -> dict[str, float | None]:
    """``train_tflops_per_s`` achieved by a training step and its ``peak_share`` (None when the
    device's peak is unknown, e.g. on CPU)."""
    rate = 3.0 * flops_per_sample * batch_size / step_time_s / 1e12 if step_time_s > 0 else float("nan")
    peak = peak_tflops(device, precision)
    return {"train_tflops_per_s": rate, "peak_share": rate / peak if peak else None}


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = {"params_total": int(total), "params_trainable": int(trainable)}
    active = getattr(model, "active_parameters", None)
    out["params_active"] = int(active()) if callable(active) else int(total)
    return out


def flops_per_sample(model: torch.nn.Module, batch: dict) -> float:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(batch)
        return float(counter.get_total_flops()) / max(1, len(batch["index"]))
    finally:
        model.train(was_training)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's counter, or on Linux the process's VmHWM (``clear_refs`` 5), so
    several measurements in one process (``bench cost`` over methods) do not inherit each other's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def timed_inference(run: Callable[[dict], object], batches: Iterable[dict], device: torch.device) -> dict[str, float]:
    n, elapsed = 0, 0.0
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - start
        n += len(batch["index"])
    return {"inference_s_per_sample": elapsed / max(1, n), "throughput_samples_s": n / elapsed if elapsed else float("nan")}


#: ``bench cost`` measures on the meta device by itself (no weights allocated, no timing) above this
#: many parameters on CPU: a paper-size model (M4oE-MT: 2.3 B) would need ~9 GB for fp32 weights alone
META_AUTO_PARAMS = 500_000_000


def meta_model(cls, spec, hparams: dict) -> torch.nn.Module:
    """The model built on the ``meta`` device: parameters have shapes but no storage."""
    with torch.device("meta"):
        return cls(spec, hparams)


def meta_batch(spec, batch_size: int = 1) -> dict:
    """A batch of meta tensors with the spec's shapes (every modality present, every label)."""
    dev = torch.device("meta")
    inputs = {m.name: torch.empty(batch_size, *m.shape, device=dev) for m in spec.modalities}
    mask = {m.name: torch.ones(batch_size, dtype=torch.bool, device=dev) for m in spec.modalities}
    targets = {t.name: torch.zeros(batch_size, dtype=torch.long, device=dev) for t in spec.tasks}
    tmask = {t.name: torch.ones(batch_size, dtype=torch.bool, device=dev) for t in spec.tasks}
    return {"index": torch.arange(batch_size), "inputs": inputs, "mask": mask, "targets": targets,
            "target_mask": tmask, "id": [str(i) for i in range(batch_size)]}


def meta_cost(cls, spec, hparams: dict, batch_size: int = 1) -> dict:
    """Parameters and forward FLOPs per sample without allocating weights: the model and one batch
    on the ``meta`` device, FLOPs from ``FlopCounterMode`` (shape-only, the same counter as
    :func:`flops_per_sample`). Step time, latency and memory are not measured (NaN);
    ``weights_bytes`` is the fp32 size of the parameters; ``meta_s`` the time this took."""
    start = time.perf_counter()
    model = meta_model(cls, spec, hparams)
    counts = parameter_counts(model)
    flops = flops_per_sample(model, meta_batch(spec, batch_size))
    nan = float("nan")
    return {**counts, "flops_per_sample": flops, "step_time_s": nan, "inference_s_per_sample": nan,
            "throughput_samples_s": nan, "peak_memory_bytes": nan, "weights_bytes": 4 * counts["params_total"],
            "meta": True, "meta_s": time.perf_counter() - start}


def with_images(spec, images: str):
    """``spec`` with its image modalities replaced by N image views of shape C x H x W (``images`` =
    "NxCxHxW", e.g. "4x3x224x224": the M4oE-MT paper's four 224 px views), for meta cost only."""
    import dataclasses

    from datasets.spec import ModalitySpec

    try:
        n, c, h, w = (int(v) for v in images.lower().split("x"))
    except ValueError:
        raise ValueError(f"--images must be NxCxHxW (e.g. 4x3x224x224), got {images!r}") from None
    others = tuple(m for m in spec.modalities if m.kind != "image2d")
    views = tuple(ModalitySpec(f"v{i + 1}", "image2d", (c, h, w)) for i in range(n))
    params = dict(spec.params) if isinstance(spec.params, dict) else {}
    params.pop("task_views", None)
    return dataclasses.replace(spec, modalities=views + others, params=params)
