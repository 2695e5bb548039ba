"""``methods.hparam_meanings``: every hparam of every method has a meaning, none is stale, and the
module stays data only (``bench list methods`` reads it)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from methods import method_classes
from methods.hparam_meanings import MEANINGS, METHOD_MEANINGS, meaning

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "methods" / "hparam_meanings.py"
#: the longest meaning line (they are printed after the hparam name)
MAX_LEN = 110


def _declared() -> dict[str, set[str]]:
    return {cls.name: set(cls.defaults()) for cls in method_classes()}


@pytest.mark.parametrize("cls", method_classes(), ids=lambda c: c.name)
def test_every_hparam_has_a_meaning(cls):
    missing = [k for k in cls.defaults() if not meaning(cls.name, k).strip()]
    assert not missing, f"{cls.name}: no meaning for {missing}"


def test_no_stale_shared_meanings():
    declared = set().union(*_declared().values())
    assert sorted(set(MEANINGS) - declared) == []


def test_every_shared_meaning_is_used_by_some_method():
    """A shared line that every declaring method overrides would never be shown."""
    used = {k for name, keys in _declared().items() for k in keys if k not in METHOD_MEANINGS.get(name, {})}
    assert sorted(set(MEANINGS) - used) == []


def test_no_stale_method_meanings():
    declared = _declared()
    assert sorted(set(METHOD_MEANINGS) - set(declared)) == []
    stale = {m: sorted(set(over) - declared[m]) for m, over in METHOD_MEANINGS.items() if set(over) - declared[m]}
    assert stale == {}


def test_overrides_differ_from_the_shared_line():
    same = [(m, k) for m, over in METHOD_MEANINGS.items() for k, v in over.items() if MEANINGS.get(k) == v]
    assert same == []


def test_lines_are_short_plain_and_untrimmed():
    lines = [("*", k, v) for k, v in MEANINGS.items()]
    lines += [(m, k, v) for m, over in METHOD_MEANINGS.items() for k, v in over.items()]
    for method, key, text in lines:
        assert isinstance(text, str) and text.strip(), (method, key)
        assert text == text.strip() and "\n" not in text, (method, key, text)
        assert len(text) <= MAX_LEN, (method, key, len(text))
        assert not text.endswith("."), (method, key, text)


def test_meaning_lookup_order():
    method, key = next((m, k) for m, over in METHOD_MEANINGS.items() for k in over)
    assert meaning(method, key) == METHOD_MEANINGS[method][key]
    assert meaning("no-such-method", key) == MEANINGS.get(key, "")
    assert meaning(method, "no_such_hparam") == ""
    assert meaning("no-such-method", "no_such_hparam") == ""


def test_module_imports_only_future_annotations():
    tree = ast.parse(MODULE.read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, [a.name for a in n.names]) for n in imports if isinstance(n, ast.ImportFrom)] == [
        ("__future__", ["annotations"])]
    assert not [n for n in imports if isinstance(n, ast.Import)]


def test_module_loads_without_torch_or_method_modules():
    """``import methods.hparam_meanings`` runs the package's ``__init__``, which imports torch, so the
    module is loaded from its file on its own: nothing it does may pull in torch or ``methods``."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('hparam_meanings', {str(MODULE)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "assert mod.MEANINGS and mod.meaning('attention', 'hidden')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'methods'))\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
