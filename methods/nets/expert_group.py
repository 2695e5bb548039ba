"""K copies of one backbone held as stacked parameters, run one by one or all at once.

The parameters of the K experts live in one tensor per parameter name with a leading K axis
(the layout ``torch.func.stack_module_state`` produces). Expert ``k`` is the template module
called with slice ``k`` (``torch.func.functional_call``); :meth:`ExpertGroup.all` runs all K
in one vectorised call with ``torch.func.vmap``. Both paths read the same tensors, so the plain
loop is an exact oracle for the batched path.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class ExpertGroup(nn.Module):
    def __init__(self, factory: Callable[[], nn.Module], k: int, init: str = "independent"):
        super().__init__()
        if init not in ("independent", "shared"):
            raise ValueError(f"expert_init must be 'independent' or 'shared', got {init!r}")
        experts = [factory() for _ in range(k if init == "independent" else 1)]
        experts += [copy.deepcopy(experts[0]) for _ in range(k - len(experts))]
        params, buffers = stack_module_state(experts)
        if buffers:
            raise ValueError("ExpertGroup supports buffer-free backbones only")
        self.k = k
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.names])
        template = copy.deepcopy(experts[0]).to("meta")
        object.__setattr__(self, "template", template)  # not a submodule: its (meta) parameters are not ours

    def train(self, mode: bool = True):
        super().train(mode)
        self.template.train(mode)
        return self

    def params(self, k: int | None = None) -> dict[str, torch.Tensor]:
        return {n: (p if k is None else p[k]) for n, p in zip(self.names, self.stacked)}

    def one(self, k: int, *args, **kwargs):
        """Expert ``k`` on ``args``."""
        return functional_call(self.template, self.params(k), args, kwargs)

    def all(self, *args, in_dims: tuple = ()):
        """All experts at once; ``in_dims`` gives each arg's expert axis (0) or None (shared)."""
        dims = in_dims or (None,) * len(args)

        def call(params, *a):
            return functional_call(self.template, params, a)

        return vmap(call, in_dims=(0, *dims), randomness="different")(self.params(), *args)

    @contextmanager
    def segments(self, n: int):
        """Tell layers that compute batch statistics (MoE load balancing) that rows hold ``n`` stacked passes."""
        layers = [m for m in self.template.modules() if hasattr(m, "segments")]
        for m in layers:
            m.segments = n
        try:
            yield
        finally:
            for m in layers:
                m.segments = 1

    def expert_state(self, k: int) -> dict[str, torch.Tensor]:
        return {n: p[k].detach() for n, p in zip(self.names, self.stacked)}
