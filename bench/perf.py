"""``bench perf --method i2moe``: training-step cost of I2MoE's loop vs batched implementation.

For M = 2, 3, 4 modalities at two sizes — ``quick`` (the quick suite's size: ``small`` preset,
width 32, one 8-feature vector token per modality, batch 64) and ``paper`` (width 256, 16
tokens per modality, batch 32, as in the I2MoE paper's settings) — it measures in one process:

- the median time of one training step (forward, losses, backward; the optimiser step is the
  same for all implementations and left out) of ``impl=loop`` (the oracle), ``per-expert`` and
  ``vmap``; ``batched`` is whichever of the last two ``impl=batched`` picks for that
  configuration, and ``loop/batched`` its speed-up;
- memory: CUDA peak allocated on GPU; on CPU the bytes of tensors saved for backward
  (activation memory, measured with ``torch.autograd.graph.saved_tensors_hooks``), because a
  process's peak RSS cannot be reset between measurements;
- a lower bound: one forward + backward of a **single** backbone over K·(M+1)·B rows — the
  same backbone FLOPs as a training step with none of the per-pass overhead — and the batched
  step's ratio to it.

Inputs are random tensors of the right shapes; dropout is on, as in training.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec
from methods import parse_method, resolve_hparams
from methods.backbones import build_backbone

SIZES = {
    "quick": {"preset": "small", "tokens": 1, "features": 8, "batch": 64, "overrides": {}},
    "paper": {"preset": "paper", "tokens": 16, "features": 256, "batch": 32,
              "overrides": {"hidden": 256, "layers": 1, "fusion_layers": 1}},
}


@dataclass
class PerfRow:
    size: str
    modalities: int
    experts: int
    batch: int
    hidden: int
    tokens: int
    loop_ms: float
    per_expert_ms: float
    vmap_ms: float
    batched_ms: float
    batched_impl: str
    speedup: float
    bound_ms: float
    batched_over_bound: float
    loop_mem_mb: float
    batched_mem_mb: float
    bound_mem_mb: float


def _spec(m: int, tokens: int, features: int) -> DatasetSpec:
    kind, shape = ("tabular", (features,)) if tokens == 1 else ("sequence", (tokens, features))
    return DatasetSpec(name=f"perf-m{m}", modalities=tuple(ModalitySpec(f"m{i + 1}", kind, shape) for i in range(m)),
                       tasks=(TaskSpec("label", "binary", 2),), split_rule="-", source="random tensors for bench perf")


def _batch(spec: DatasetSpec, b: int, device: torch.device) -> dict:
    return {"index": torch.arange(b), "id": [str(i) for i in range(b)],
            "inputs": {m.name: torch.randn(b, *m.shape, device=device) for m in spec.modalities},
            "mask": {m.name: torch.ones(b, dtype=torch.bool, device=device) for m in spec.modalities},
            "targets": {"label": torch.randint(0, 2, (b,), device=device)},
            "target_mask": {"label": torch.ones(b, dtype=torch.bool, device=device)}}


class _SavedBytes:
    """Counts bytes of distinct tensors autograd saves for backward."""

    def __init__(self):
        self.bytes, self.seen = 0, set()

    def pack(self, t: torch.Tensor):
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in self.seen:
            self.seen.add(key)
            self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self):
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)


def _time(step, device: torch.device, reps: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated(device) - base
    else:
        with _SavedBytes() as counter:
            step()
        mem = counter.bytes
    return statistics.median(times) * 1e3, mem / 2**20


def measure(size: str, m: int, device: torch.device, reps: int = 20, warmup: int = 3, backbone: str = "attention") -> PerfRow:
    cfg = SIZES[size]
    spec = _spec(m, cfg["tokens"], cfg["features"])
    cls, _ = parse_method("i2moe")
    results = {}
    for impl in ("loop", "per-expert", "vmap"):
        torch.manual_seed(0)
        hp = resolve_hparams(cls.defaults(), cfg["preset"], {**cfg["overrides"], "impl": impl, "backbone": backbone})
        model = cls(spec, hp).to(device).train()
        batch = _batch(spec, cfg["batch"], device)

        def step():
            model.zero_grad(set_to_none=True)
            total, _ = model.loss(model(batch), batch)
            total.backward()

        results[impl] = _time(step, device, reps, warmup)
    k, rows = m + 2, (m + 2) * (m + 1) * cfg["batch"]
    torch.manual_seed(0)
    bb = build_backbone(backbone, spec, hp, {s.name: cfg["tokens"] for s in spec.modalities}).to(device).train()
    hidden = int(hp["hidden"])
    tokens = {s.name: torch.randn(rows, cfg["tokens"], hidden, device=device, requires_grad=True) for s in spec.modalities}
    mask = {s.name: torch.ones(rows, dtype=torch.bool, device=device) for s in spec.modalities}
    target = torch.randint(0, 2, (rows,), device=device)

    def bound_step():
        bb.zero_grad(set_to_none=True)
        preds, aux, _ = bb(tokens, mask)
        (torch.nn.functional.cross_entropy(preds["label"], target) + aux).backward()

    bound = _time(bound_step, device, reps, warmup)
    (loop_ms, loop_mem) = results["loop"]
    picked = batched_choice(model, cfg, m, device)
    (bat_ms, bat_mem) = results[picked]
    return PerfRow(size, m, k, cfg["batch"], hidden, cfg["tokens"], loop_ms, results["per-expert"][0], results["vmap"][0],
                   bat_ms, picked, loop_ms / bat_ms, bound[0], bat_ms / bound[0], loop_mem, bat_mem, bound[1])


def batched_choice(model, cfg: dict, m: int, device: torch.device) -> str:
    """Which implementation ``impl=batched`` runs for this configuration (see methods/i2moe.py)."""
    from methods.i2moe import VMAP_MAX_ELEMENTS

    size = (m + 1) * cfg["batch"] * cfg["tokens"] * int(model.hparams["hidden"])
    return "vmap" if device.type == "cuda" or size <= VMAP_MAX_ELEMENTS else "per-expert"


def run_perf(device: str = "cpu", sizes=("quick", "paper"), modalities=(2, 3, 4), reps: int = 20,
             progress=None) -> list[PerfRow]:
    dev = torch.device(device)
    rows = []
    for size in sizes:
        for m in modalities:
            rows.append(measure(size, m, dev, reps))
            if progress:
                progress(rows[-1])
    return rows


def as_dicts(rows: list[PerfRow]) -> list[dict]:
    return [asdict(r) for r in rows]
