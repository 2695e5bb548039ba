"""Cost of a model, measured the same way for every method (docs/protocol.md "Cost").

- parameters: total and trainable (sparse MoE methods add their active-per-sample count via
  ``active_parameters()`` when they define it);
- forward FLOPs per sample: ``torch.utils.flop_counter.FlopCounterMode`` on one batch, divided
  by its size (counts matmul/conv FLOPs, as the field reports them);
- peak memory: CUDA max allocated on GPU; on CPU the process's peak resident set size (VmHWM),
  which includes the interpreter and data, so compare it between methods, not to a GPU figure;
- time per training step (median after warm-up) comes from the runner; inference latency per
  sample and throughput from a timed pass over the test split here.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode


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
