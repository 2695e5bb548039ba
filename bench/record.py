"""The :class:`RunRecord`: everything a result depends on, so every table traces back to runs.

Identity fields (docs/identity.md): ``key`` (everything that can change the result),
``config_id`` (the key without the seed: results group by it), ``request_id`` (the key without
the code and data fingerprints: two records sharing it but not the key mean the older one is
stale) and ``label`` (a readable name of the configuration, e.g. ``early[epochs=2]``).
``purpose`` says why the run exists: ``eval`` (a benchmark run), ``trial`` (a tuning trial) or
``imported`` (results from elsewhere). ``catalogue`` is the metric catalogue
(``bench.catalogue``) that ``results/`` reads instead of importing bench's metric code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "failed", "skipped", "pruned")
PURPOSES = ("eval", "trial", "imported")


@dataclass
class RunRecord:
    key: str
    method: str
    dataset: str
    seed: int
    split_seed: int
    preset: str
    code_version: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # split -> task -> metric -> value
    cost: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # epochs run, best epoch, selection score, dataset-level aux
    error: str | None = None
    reason: str | None = None
    checkpoint: str | None = None
    created_at: str = ""
    config_id: str = ""
    request_id: str = ""
    label: str = ""
    label_fields: dict[str, Any] = field(default_factory=dict)
    purpose: str = "eval"
    suite: str | None = None
    catalogue: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose {self.purpose!r} is not one of {PURPOSES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def dumps(value: Any) -> str:
    """JSON as the store keeps it: sorted keys, NaN allowed, numpy/torch scalars as numbers."""
    return json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
