"""One seed for everything random in a job, and the determinism switches (docs/protocol.md "Seeds and determinism").

``seed_everything`` seeds Python, NumPy and torch (CPU and all CUDA devices).
``configure_determinism`` turns on ``torch.use_deterministic_algorithms`` in ``warn_only`` mode
(an op without a deterministic implementation warns instead of crashing the method), cuDNN
deterministic mode and ``CUBLAS_WORKSPACE_CONFIG`` (also set when ``bench`` is imported, before
CUDA can start); the runner calls it by default, and on CPU the same job run twice then gives
bit-identical metrics. :class:`NondeterminismLog` records which ops warned, so a run can say
that it was not fully deterministic. Batch order comes from a ``torch.Generator`` seeded from the
job seed and saved in checkpoints, so a resumed run continues the same order.
"""
from __future__ import annotations

import os
import random
import re
import sys
import warnings

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def configure_determinism(enabled: bool) -> None:
    """Deterministic algorithms on or off. On, an op that has no deterministic implementation
    (on this device) warns and runs its nondeterministic kernel (``warn_only=True``); run the job
    inside :class:`NondeterminismLog` to record which. ``CUBLAS_WORKSPACE_CONFIG`` only takes effect
    if set before CUDA initialises: ``bench/__init__.py`` sets it at import, this is a fallback."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if hasattr(torch._C, "_set_deterministic_algorithms") and "torch._inductor.config" not in sys.modules:
        # what torch.use_deterministic_algorithms does, less importing torch._inductor (2 s of every
        # job's start) to set its compile flag: bench.execution.prepare_model sets that flag when it compiles
        torch._C._set_deterministic_algorithms(enabled, warn_only=True)
    else:
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


#: torch's warning for an op without a deterministic implementation under ``warn_only=True``
#: ("put_ does not have a deterministic implementation, but you set ..."); group 1 is the op
NONDETERMINISTIC_WARNING = re.compile(r"\s*(.*?)\s+does not have a deterministic implementation")


class NondeterminismLog:
    """Context manager recording the ops that ran without a deterministic implementation.

    ``with NondeterminismLog() as log: ...`` then ``log.ops``: the sorted, deduplicated op names
    parsed from torch's "<op> does not have a deterministic implementation" warnings raised while
    the block ran (empty when none, or when deterministic mode is off). Memory stays bounded: one
    set of names, no warning objects. Those warnings are shown ``"always"`` inside the block
    (Python would otherwise show each only once per code location, and an ``error`` filter would
    turn it into an exception) and recorded instead of printed; every other warning goes to the
    ``warnings.showwarning`` that was in place on entry, under the filters in place on entry.
    Warnings raised in an autograd backward reach the calling thread at the end of ``backward()``.
    Like ``warnings.catch_warnings``, which it uses, it is not thread-safe: one log per process at
    a time.
    """

    def __init__(self) -> None:
        self._ops: set[str] = set()
        self._catch: warnings.catch_warnings | None = None

    @property
    def ops(self) -> list[str]:
        return sorted(self._ops)

    def __enter__(self) -> NondeterminismLog:
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        original = warnings.showwarning
        warnings.filterwarnings("always", message=NONDETERMINISTIC_WARNING.pattern)

        def showwarning(message, category, filename, lineno, file=None, line=None):
            match = NONDETERMINISTIC_WARNING.match(str(message))
            if match:
                self._ops.add(match.group(1))
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        return self

    def __exit__(self, *exc) -> None:
        catch, self._catch = self._catch, None
        if catch is not None:
            catch.__exit__(*exc)


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rng_state() -> dict:
    """Every global RNG state, made of tensors and plain values only, so that checkpoints holding
    it load with ``torch.load(weights_only=True)`` (``bench.checkpoint``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
