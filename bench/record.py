"""The :class:`RunRecord`: everything a result depends on, so every table traces back to runs."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "failed", "skipped", "pruned")


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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=_json_default, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
