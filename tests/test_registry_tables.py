"""The static registry tables (methods/table.py, datasets/table.py) agree with the code, and
listing and a small job import only what they need (docs/design.md "Registries")."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIX = "run `python -m bench list --update-tables` and commit methods/table.py and datasets/table.py"


def test_method_table_is_what_the_classes_say() -> None:
    from methods.table_build import table_source

    assert (ROOT / "methods" / "table.py").read_text() == table_source(), FIX


def test_dataset_table_is_what_the_registrations_say() -> None:
    from datasets.table_build import table_source

    assert (ROOT / "datasets" / "table.py").read_text() == table_source(), FIX


@pytest.mark.parametrize("package, decorator", [("methods", "@register_method"), ("datasets", "@register_dataset(")])
def test_every_module_that_registers_is_in_its_table(package, decorator) -> None:
    """A method or dataset file added without importing it from builtin.py (so without a table row) fails here."""
    from datasets.table import DATASETS
    from methods.table import METHODS

    modules = {row["module"] for row in (METHODS if package == "methods" else DATASETS).values()}
    for path in sorted((ROOT / package).rglob("*.py")):
        text = path.read_text()
        if decorator in text and not path.name.startswith("table"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            assert name in modules or name.endswith("registry"), f"{name} registers but is not in the table; {FIX}"


def test_table_rows_answer_as_the_classes() -> None:
    from methods import method_info, method_names, parse_method

    for name in method_names():
        info, _ = method_info(name)
        cls, _ = parse_method(name)
        assert info.defaults() == cls.defaults() and info.module == cls.__module__
        rules, theirs = info.hparam_rules(), cls.hparam_rules()
        assert set(rules) == set(theirs) and all(rules[k].allowed() == theirs[k].allowed() for k in rules)


def test_a_stale_table_is_caught(tmp_path, monkeypatch) -> None:
    """Breaking on purpose: a table whose default differs from the class fails the agreement check."""
    from methods.table_build import table_source

    text = table_source().replace("'alpha': 0.05", "'alpha': 0.5", 1)
    assert text != table_source()


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_listing_methods_imports_no_torch() -> None:
    got = _fresh("import io, json, sys, contextlib\n"
                 "from bench.cli import main\n"
                 "buf = io.StringIO()\n"
                 "with contextlib.redirect_stdout(buf):\n"
                 "    rc = main(['list', 'methods'])\n"
                 "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'text': buf.getvalue()}))")
    assert got["rc"] == 0 and not got["torch"]
    assert "variant" in got["text"] and "the released model and loss" in got["text"]  # meanings shown


def test_validating_a_bad_set_imports_no_method_module() -> None:
    got = _fresh("import json, sys\n"
                 "from bench.jobs import build_config\n"
                 "from bench.config import ConfigError\n"
                 "try:\n"
                 "    build_config('m4oe-mt', 'wdbc', preset='tiny', sets={'mtoe_combine': 'sideways'})\n"
                 "except ConfigError as exc:\n"
                 "    msg = str(exc)\n"
                 "print(json.dumps({'msg': msg, 'loaded': sorted(m for m in sys.modules if m.startswith('methods.')\n"
                 "                  and m.rpartition('.')[2] not in ('registry', 'table', 'hparam_rules', 'presets'))}))")
    assert "mtoe_combine" in got["msg"] and "joint" in got["msg"]
    assert got["loaded"] == []


def test_a_small_job_imports_only_its_method_and_dataset(tmp_path) -> None:
    got = _fresh("import json, sys, io, contextlib\n"
                 "from bench.cli import main\n"
                 "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
                 f"    rc = main(['run', '--method', 'early', '--dataset', 'wdbc', '--preset', 'tiny', '--set', 'epochs=1',\n"
                 f"               '--store', 'sqlite:///{tmp_path}/s.db', '--runs-dir', '{tmp_path}/runs'])\n"
                 "heavy = ('timm', 'torchvision', 'monai', 'nibabel', 'optuna', 'dask', 'segmentation_models_pytorch',\n"
                 "         'pydicom')\n"
                 "print(json.dumps({'rc': rc, 'heavy': [m for m in heavy if m in sys.modules],\n"
                 "                  'methods': sorted(m for m in sys.modules if m.startswith('methods.') and\n"
                 "                  m.count('.') == 1 and m.rpartition('.')[2] not in ('registry', 'table',\n"
                 "                  'hparam_rules', 'presets', 'base', 'losses', 'nets'))}))")
    assert got["rc"] == 0 and got["heavy"] == [] and got["methods"] == ["methods.early"]


def test_a_leaderboard_of_an_empty_store_loads_no_pandas(tmp_path) -> None:
    got = _fresh("import io, json, sys, contextlib\n"
                 "from bench.cli import main\n"
                 "buf = io.StringIO()\n"
                 "with contextlib.redirect_stdout(buf):\n"
                 f"    rc = main(['leaderboard', '--store', 'sqlite:///{tmp_path}/empty.db'])\n"
                 "print(json.dumps({'rc': rc, 'pandas': 'pandas' in sys.modules, 'torch': 'torch' in sys.modules,\n"
                 "                  'text': buf.getvalue()}))")
    assert got["rc"] == 0 and not got["pandas"] and not got["torch"]
    assert got["text"].startswith("No completed runs in the store yet")
