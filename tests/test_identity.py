"""The code fingerprint covers every bench function a job executes, and nothing it does not need."""
from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

import bench.identity as identity
from bench.jobs import load_data
from bench.runner import build_config, run_job
from datasets import parse_name
from methods import parse_method


def _executed_files(fn) -> set[str]:
    """Source files of every Python function called while ``fn`` runs (all threads)."""
    files: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            files.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return files


def _module_of(path: str) -> str | None:
    p = Path(path).resolve()
    for pkg, root in identity._roots().items():
        if p.is_relative_to(root):
            rel = p.relative_to(root).with_suffix("")
            parts = [pkg, *rel.parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


@pytest.mark.parametrize("method, dataset, sets", [
    ("early", "wdbc", {}),
    ("i2moe", "synthetic-pid:mixed", {}),
    ("late", "digits-halves", {"image_encoder": "vit"}),
    ("unet", "synthetic-organs:liver", {"batch_size": "8", "max_steps": "2"}),
])
def test_every_executed_bench_function_is_in_the_fingerprint(tmp_path, method, dataset, sets):
    cfg = build_config(method, dataset, preset="tiny", sets={"epochs": "1", **sets})
    load_data.cache_clear()   # the dataset's builder must run under the profiler too
    files = _executed_files(lambda: run_job(cfg, None, tmp_path, progress=False))
    executed = {m for m in map(_module_of, files) if m}
    cls, _ = parse_method(method)
    entry, _ = parse_name(dataset)
    covered = identity.module_closure([identity.RUNNER_MODULE, cls.__module__, entry.builder.__module__])
    allowed = {m for m in executed if m in identity.HUBS or identity._excluded(m)}
    assert executed - covered - allowed == set(), "code ran that the job's fingerprint does not cover"
    assert cls.__module__ in executed and entry.builder.__module__ in executed


def test_excluding_a_module_the_job_runs_is_caught(tmp_path, monkeypatch):
    """The test above can fail: pretend the encoders never compute a number."""
    monkeypatch.setattr(identity, "NOT_RESULT_CODE", (*identity.NOT_RESULT_CODE, "methods.nets.encoders"))
    identity._imports_of.cache_clear()
    identity._code_fingerprint.cache_clear()
    covered = identity.module_closure([identity.RUNNER_MODULE, "methods.early", "datasets.embedded.wdbc"])
    assert "methods.nets.encoders" not in covered
    cfg = build_config("early", "wdbc", preset="tiny", sets={"epochs": "1"})
    executed = {m for m in map(_module_of, _executed_files(lambda: run_job(cfg, None, tmp_path, progress=False))) if m}
    assert "methods.nets.encoders" in executed - covered


@pytest.fixture
def copied_packages(tmp_path, monkeypatch):
    """A copy of bench's packages that the fingerprint reads instead of the installed ones."""
    roots = {}
    for pkg, root in identity._roots().items():
        shutil.copytree(root, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        roots[pkg] = tmp_path / pkg
    monkeypatch.setattr(identity, "_roots", lambda: roots)
    identity._imports_of.cache_clear()
    identity._code_fingerprint.cache_clear()
    yield tmp_path
    identity._imports_of.cache_clear()
    identity._code_fingerprint.cache_clear()


def _fp(method_module="methods.early", dataset_module="datasets.embedded.wdbc"):
    identity._imports_of.cache_clear()
    identity._code_fingerprint.cache_clear()
    return identity.code_fingerprint([method_module, dataset_module])


def _touch(path: Path, text: str = "\n# changed\n") -> None:
    path.write_text(path.read_text() + text)


def test_editing_code_the_job_uses_changes_its_fingerprint(copied_packages):
    before = _fp()
    _touch(copied_packages / "methods" / "nets" / "encoders.py")
    assert _fp() != before
    mid = _fp()
    _touch(copied_packages / "bench" / "training.py")
    assert _fp() != mid
    late = _fp()
    _touch(copied_packages / "datasets" / "embedded" / "wdbc.py")
    assert _fp() != late


def test_editing_another_method_or_adding_one_leaves_the_fingerprint(copied_packages):
    before = _fp()
    _touch(copied_packages / "methods" / "late.py")
    _touch(copied_packages / "methods" / "m4oe.py")
    _touch(copied_packages / "bench" / "cli.py")
    _touch(copied_packages / "bench" / "store" / "runstore.py")
    _touch(copied_packages / "results" / "leaderboard.py")
    (copied_packages / "methods" / "newmethod.py").write_text("from .base import Method\n")
    _touch(copied_packages / "methods" / "builtin.py", "\nfrom . import newmethod  # noqa\n")
    assert _fp() == before


def test_library_versions_are_part_of_the_fingerprint(monkeypatch):
    before = _fp()
    monkeypatch.setattr(identity, "library_versions", lambda: {"torch": "0.0.0"})
    assert _fp() != before


def test_files_fingerprint_sees_any_rewrite(tmp_path):
    a = tmp_path / "a.nii.gz"
    a.write_bytes(b"x" * 10)
    first = identity.files_fingerprint([a], tmp_path)
    assert first.startswith("1:")
    import os

    st = a.stat()
    a.write_bytes(b"y" * 10)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert identity.files_fingerprint([a], tmp_path) != first
    moved = tmp_path / "sub"
    moved.mkdir()
    (moved / "a.nii.gz").write_bytes(b"y" * 10)
    os.utime(moved / "a.nii.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert identity.files_fingerprint([moved / "a.nii.gz"], moved) == identity.files_fingerprint([a], tmp_path)
    c1 = identity.content_fingerprint([a], tmp_path)
    a.write_bytes(b"z" * 10)
    assert identity.content_fingerprint([a], tmp_path) != c1


def test_file_backed_datasets_declare_their_files():
    from bench.identity import data_fingerprint

    for name in ("wdbc", "digits-halves", "diabetes-views"):
        assert data_fingerprint(name) is not None
    assert data_fingerprint("synthetic-pid:mixed") is None   # generated: the code fingerprint covers it


def test_data_fingerprint_sees_an_edit_that_keeps_size_and_mtime(tmp_path, capsys):
    """Edit one value, restore the modification time (what cp -p, rsync -a or a restore do): the
    job key must change, so a dry run says 'to run', not 'done'. Unchanged data is not re-read."""
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_folder_dataset import make_folder, study

    from bench.cli import main

    doc, rows, files = study(30)
    folder = make_folder(tmp_path / "toy", doc, rows, files)
    name = f"folder:{folder}"
    first = identity.data_fingerprint(name)
    again, read = identity.cached_content_fingerprint(*_files_of(name))
    assert again == first and read == 0           # cached: one stat per file, nothing read
    args = ["sweep", "--methods", "early", "--datasets", name, "--seeds", "0", "--preset", "tiny", "--set",
            "epochs=1", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-leaderboard"]
    assert main(args) == 0
    table = folder / "table.csv"
    st = table.stat()
    text = table.read_text()
    table.write_text(text.replace("site1", "site9", 1))          # same size
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns))         # same modification time
    assert table.stat().st_size == st.st_size and table.stat().st_mtime_ns == st.st_mtime_ns
    assert identity.files_fingerprint(*_files_of(name)) == identity.files_fingerprint(*_files_of(name))
    changed, read = identity.cached_content_fingerprint(*_files_of(name))
    assert changed != first and read == st.st_size                # only the edited file was re-read
    capsys.readouterr()
    assert main([*args, "--dry-run", "--json"]) == 0
    import json

    assert [r["state"] for r in json.loads(capsys.readouterr().out)] == ["stale"]


def _files_of(name):
    from datasets import parse_name

    entry, variant = parse_name(name)
    return entry.input_files(None, variant)


def _keep_size_and_mtime_edit(path: Path) -> None:
    """Flip one byte in place and restore the modification time (cp -p, rsync -a, a restore)."""
    import os

    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_preprocessing_caches_see_an_edit_that_keeps_size_and_mtime(tmp_path):
    """The image and segmentation preprocessing caches are keyed by content too: otherwise the
    job key would change (test above) while the rerun read the old preprocessed arrays."""
    from datasets.adapters.imaging import file_key
    from datasets.segmentation.preprocess import cache_key
    from datasets.segmentation.sources import SegSource, SegSourceCase

    img, lab = tmp_path / "c1_0000.nii.gz", tmp_path / "c1.nii.gz"
    img.write_bytes(b"image bytes " * 100)
    lab.write_bytes(b"label bytes " * 100)
    source = SegSource("toy", "MR", {0: "background", 1: "organ"}, ("t1",), (SegSourceCase("c1", (img,), lab),),
                       tmp_path)
    seg_before, img_before = cache_key(source, ["c1"]), file_key([img], {"size": 8})
    assert cache_key(source, ["c1"]) == seg_before                 # deterministic, cached
    _keep_size_and_mtime_edit(img)
    assert file_key([img], {"size": 8}) != img_before
    assert cache_key(source, ["c1"]) != seg_before
    seg_mid = cache_key(source, ["c1"])
    _keep_size_and_mtime_edit(lab)
    assert cache_key(source, ["c1"]) != seg_mid
