"""Markdown tables of the registries, embedded in the README between markers.

``python -m bench list --markdown`` prints them; a test asserts the README holds exactly this
text, so the README's tables can never drift from the code.
"""
from __future__ import annotations

from tabulate import tabulate

START, END = "<!-- registry-tables:start -->", "<!-- registry-tables:end -->"


def registry_tables() -> str:
    from datasets import dataset_entries
    from methods import method_classes

    methods = [[f"`{c.name}`", c.description, getattr(c, "missing_modality", "-")] for c in method_classes()]
    data = [[f"`{e.name}`", e.description, e.modalities, e.tasks,
             ", ".join(f"`{v}`" for v in e.variants) or "-", "embedded" if e.embedded else (f"{e.open_variant} after `:`" if e.open_variant else "needs `--data-root`")]
            for e in dataset_entries()]
    return ("#### Methods\n\n" + tabulate(methods, headers=["name", "what it is", "missing modality"], tablefmt="github")
            + "\n\n#### Datasets\n\n"
            + tabulate(data, headers=["name", "what it is", "modalities", "tasks", "variants", "data"], tablefmt="github"))


def update_readme(path) -> bool:
    """Rewrite the block between the markers in ``path``; return True when it changed."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{p}: no {START} ... {END} block to update")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = f"{head}{START}\n{registry_tables()}\n{END}{tail}"
    if new != text:
        p.write_text(new)
    return new != text
