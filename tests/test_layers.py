"""The layers of docs/design.md: datasets/ and methods/ import nothing from bench/ or results/
(not even inside a function), and results/ never imports torch or a method."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package, forbidden", [("datasets", ("bench", "results", "methods")),
                                                ("methods", ("bench", "results")),
                                                ("results", ("torch", "methods"))])
def test_imports_point_one_way(package, forbidden) -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in sorted((ROOT / package).rglob("*.py")) for line, name in _imports(p)
           if name.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)
