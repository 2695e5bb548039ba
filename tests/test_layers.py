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


def _graph() -> dict[str, set[str]]:
    """Module -> the bench/methods/datasets/results modules it imports anywhere (inside functions
    too; not under ``if TYPE_CHECKING``); ``from pkg import sub`` counts as importing ``pkg.sub``."""
    mods = {}
    for package in ("bench", "methods", "datasets", "results"):
        for p in (ROOT / package).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            mods[name] = p
    graph = {}
    for name, p in mods.items():
        tree = ast.parse(p.read_text(), str(p))
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
        base = name if p.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
                continue
            parts = base.split(".")
            mod = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
            deps.update(subs if len(subs) == len(node.names) else [mod, *subs])
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[str]:
    """One circle through each module that has one, as ``a -> b -> a``."""
    circles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            if start in graph[node]:
                circles.append(" -> ".join([*path, start]))
                break
            for dep in graph[node] - seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return circles


def test_no_import_circle_between_files() -> None:
    """No module reaches itself through imports, lazy ones included (they are circles a reader follows too)."""
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_circle_check_sees_a_lazy_circle() -> None:
    """Breaking on purpose: a function-level import back from bench.worker to bench.sweep is a circle."""
    graph = _graph()
    assert "bench.worker" in graph["bench.sweep"]
    graph["bench.worker"].add("bench.sweep")
    assert any(c.startswith("bench.sweep -> ") for c in _circles(graph))
