"""``bench perf i2moe``: training-step cost of I2MoE's implementations, with their spread.

For M = 2, 3, 4 modalities at two sizes — ``quick`` (the quick suite's size: ``small`` preset,
width 32, one 8-feature vector token per modality, batch 64) and ``paper`` (width 256, 16
tokens per modality, batch 32, as in the I2MoE paper's settings) — it times one training step
(forward, losses, backward; the optimiser step is the same for all and left out) of:

- ``impl=loop`` (the reference's nested loop, the oracle), ``per-expert`` and ``vmap``;
  ``batched`` is the one ``impl=batched`` runs (:func:`methods.i2moe.batched_impl`);
- ``fused``: one forward + backward of a **single** backbone over K·(M+1)·B rows, i.e. the same
  backbone FLOPs as a training step in one call with one set of weights (no encoders, gate or
  interaction losses). It is a reference figure, not a bound: a step can beat it (K smaller
  matmuls may run faster than one large one).

Shared machines are noisy, so timings are taken as **repetitions**: each repetition times one
step of every implementation back to back (in a rotating order), and the ratios (loop/batched,
per-expert/vmap, batched/fused) are formed within a repetition, where slow periods of the machine
hit both sides. Reported: the median time of each implementation and the min / median / max of
each ratio over the R repetitions.

Memory: CUDA peak allocated on GPU; on CPU the bytes of tensors saved for backward (activation
memory, measured with ``torch.autograd.graph.saved_tensors_hooks``), because a process's peak
RSS cannot be reset between measurements. Inputs are random tensors of the right shapes;
dropout is on, as in training.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec
from methods import parse_method, resolve_hparams
from methods.nets.backbones import build_backbone

SIZES = {
    "quick": {"preset": "small", "tokens": 1, "features": 8, "batch": 64, "overrides": {}},
    "paper": {"preset": "paper", "tokens": 16, "features": 256, "batch": 32,
              "overrides": {"hidden": 256, "layers": 1, "fusion_layers": 1}},
}
IMPLS = ("loop", "per-expert", "vmap")


@dataclass
class PerfRow:
    size: str
    modalities: int
    experts: int
    batch: int
    hidden: int
    tokens: int
    reps: int
    loop_ms: float  # medians over the repetitions
    per_expert_ms: float
    vmap_ms: float
    batched_ms: float
    batched_impl: str
    fused_ms: float
    speedup_min: float  # loop / batched, within a repetition: min / median / max over repetitions
    speedup_median: float
    speedup_max: float
    per_expert_over_vmap_min: float  # > 1: vmap faster
    per_expert_over_vmap_median: float
    per_expert_over_vmap_max: float
    batched_over_fused_min: float  # < 1: the step beat one fused backbone pass
    batched_over_fused_median: float
    batched_over_fused_max: float
    loop_mem_mb: float
    batched_mem_mb: float
    fused_mem_mb: float
    # --compile: the batched implementation under torch.compile, and its ratio to the (eager) fused pass
    compiled_ms: float = float("nan")
    compiled_over_fused_min: float = float("nan")
    compiled_over_fused_median: float = float("nan")
    compiled_over_fused_max: float = float("nan")


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_mb(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with _SavedBytes() as counter:
        step()
    return counter.bytes / 2**20


def time_interleaved(steps: dict[str, Callable[[], None]], device: torch.device, reps: int,
                     warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each step, ``reps`` repetitions; within a repetition every step runs
    once, back to back, starting one further along the list each time (so no step always runs
    first or after the same neighbour)."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            _sync(device)
            t0 = time.perf_counter()
            steps[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def _ratios(num: list[float], den: list[float]) -> tuple[float, float, float]:
    return spread([a / b for a, b in zip(num, den)])


def measure(size: str, m: int, device: torch.device, reps: int = 20, warmup: int = 2,
            backbone: str = "attention", compile: bool = False) -> PerfRow:
    """One row; ``compile`` also times the batched implementation under ``torch.compile`` (the
    usual cure for a launch-bound step on a GPU; warm-up then includes compilation)."""
    from methods.i2moe import batched_impl

    cfg = SIZES[size]
    spec = _spec(m, cfg["tokens"], cfg["features"])
    cls, _ = parse_method("i2moe")
    steps: dict[str, Callable[[], None]] = {}
    picked = batched_impl(device.type == "cuda", (m + 1) * cfg["batch"] * cfg["tokens"] * int(
        resolve_hparams(cls.defaults(), cfg["preset"], cfg["overrides"])["hidden"]))
    for impl in (*IMPLS, "compiled") if compile else IMPLS:
        torch.manual_seed(0)
        hp = resolve_hparams(cls.defaults(), cfg["preset"], {**cfg["overrides"], "backbone": backbone,
                                                             "impl": picked if impl == "compiled" else impl})
        model = cls(spec, hp).to(device).train()
        if impl == "compiled":
            model.compile()
        batch = _batch(spec, cfg["batch"], device)

        def step(model=model, batch=batch):
            model.zero_grad(set_to_none=True)
            total, _ = model.loss(model(batch), batch)
            total.backward()

        steps[impl] = step
    k, rows = m + 2, (m + 2) * (m + 1) * cfg["batch"]
    torch.manual_seed(0)
    bb = build_backbone(backbone, spec, hp, {s.name: cfg["tokens"] for s in spec.modalities}).to(device).train()
    hidden = int(hp["hidden"])
    tokens = {s.name: torch.randn(rows, cfg["tokens"], hidden, device=device, requires_grad=True) for s in spec.modalities}
    mask = {s.name: torch.ones(rows, dtype=torch.bool, device=device) for s in spec.modalities}
    target = torch.randint(0, 2, (rows,), device=device)

    def fused_step():
        bb.zero_grad(set_to_none=True)
        preds, aux, _ = bb(tokens, mask)
        (torch.nn.functional.cross_entropy(preds["label"], target) + aux).backward()

    steps["fused"] = fused_step
    times = time_interleaved(steps, device, reps, warmup)
    memory = {name: _memory_mb(step, device) for name, step in steps.items()}
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    speedup = _ratios(times["loop"], times[picked])
    pe_vmap = _ratios(times["per-expert"], times["vmap"])
    over_fused = _ratios(times[picked], times["fused"])
    compiled = (med["compiled"], *_ratios(times["compiled"], times["fused"])) if compile else ()
    return PerfRow(size, m, k, cfg["batch"], hidden, cfg["tokens"], reps, med["loop"], med["per-expert"], med["vmap"],
                   med[picked], picked, med["fused"], *speedup, *pe_vmap, *over_fused, memory["loop"], memory[picked],
                   memory["fused"], *compiled)


def run_perf(device: str = "cpu", sizes=("quick", "paper"), modalities=(2, 3, 4), reps: int = 20,
             progress=None, warmup: int = 2, compile: bool = False) -> list[PerfRow]:
    dev = torch.device(device)
    rows = []
    for size in sizes:
        for m in modalities:
            rows.append(measure(size, m, dev, reps, warmup, compile=compile))
            if progress:
                progress(rows[-1])
    return rows


def as_dicts(rows: list[PerfRow]) -> list[dict]:
    return [asdict(r) for r in rows]
