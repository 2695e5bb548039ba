"""Model-size presets shared by every method so sizes are comparable across methods.

``tiny`` is for CPU tests (seconds), ``small`` for the quick suite on a laptop CPU (minutes),
``paper`` is the width used in the papers' settings (I2MoE: 256 hidden, 16 tokens). A preset
only sets hparams the method declares in ``defaults()``; ``--set`` overrides win over presets.
"""
from __future__ import annotations

PRESETS: dict[str, dict[str, object]] = {
    "tiny": {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.0},
    "small": {"hidden": 32, "layers": 1, "heads": 4, "dropout": 0.1},
    "paper": {"hidden": 256, "layers": 2, "heads": 8, "dropout": 0.1},
}


def resolve_hparams(defaults: dict, preset: str, overrides: dict) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    out = dict(defaults)
    out.update({k: v for k, v in PRESETS[preset].items() if k in defaults})
    out.update(overrides)
    return out
