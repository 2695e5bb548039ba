"""``bench list methods``: each method with, per hparam, what it means, what it may be and the
value each preset gives, from the static method table (``methods/table.py``): no method module
and no torch is imported."""
from __future__ import annotations

from typing import Any

from methods import PRESETS, method_infos, resolve_hparams
from methods.hparam_meanings import meaning


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def method_rows() -> list[dict[str, Any]]:
    """One dict per method: name, description, defaults (the unpreset values, as before) and
    ``hparams``: name, meaning, allowed, and the value at each preset."""
    rows = []
    for info in method_infos():
        defaults = info.defaults()
        rules = info.hparam_rules()
        presets = {p: resolve_hparams(defaults, p, {}) for p in PRESETS}
        hparams = [{"name": k, "meaning": meaning(info.name, k),
                    "allowed": rules[k].allowed() if k in rules else "",
                    "presets": {p: presets[p][k] for p in PRESETS}}
                   for k in defaults if k != "sizes" and k != info.name_arg]
        rows.append({"name": info.name, "description": info.description, "missing_modality": info.missing_modality,
                     "defaults": defaults, "hparams": hparams})
    return rows


def hparam_lines(hparams: list[dict[str, Any]]) -> list[str]:
    """The hparams as an aligned table: name, value per preset (one value when all agree), allowed, meaning."""
    if not hparams:
        return []
    names = list(PRESETS)
    rows = [("hparam", "/".join(names), "allowed", "meaning")]
    for h in hparams:
        values = [_show(h["presets"][p]) for p in names]
        shown = values[0] if len(set(values)) == 1 else " / ".join(values)
        rows.append((h["name"], shown, h["allowed"], h["meaning"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
