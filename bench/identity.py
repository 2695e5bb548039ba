"""What a result was computed *by* and *from*: code and data fingerprints for the job key.

A stored run is reused only when its key matches, so the key must change whenever the code or
the data behind a number changes (docs/identity.md):

* **Code**: the source files a job can execute, found by following the ``import`` statements
  (module level and inside functions) from the runner, the method's module and the dataset's
  module through bench's own packages. The registration hubs (``methods.builtin``,
  ``datasets.builtin``) are not followed: they import every method and dataset only to register
  them, so editing one method leaves the runs of the others valid. The versions of the numeric
  libraries (torch, NumPy, SciPy, scikit-learn, timm, smp, MONAI, nibabel) are hashed too.
  ``tests/test_identity.py`` runs jobs under a profiler and checks that every bench function
  that executes lives in a fingerprinted file.
* **Data**: for datasets read from files (external data, and the CSVs scikit-learn ships), the
  name and SHA-256 of every input file's contents, cached by path, size, modification and change
  time and inode (``datasets.file_hashes``), so unchanged data costs one ``stat`` per file and a change
  that keeps the size and modification time (``cp -p``, ``rsync -a``, a restore) is still seen.
  Generated datasets are covered by the code fingerprint.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

# the fingerprints of file lists live with the data readers that report them
# (datasets/fingerprints.py); re-exported here, where the job key is put together
from datasets.fingerprints import cached_content_fingerprint, content_fingerprint, files_fingerprint  # noqa: F401

#: bench's own top-level packages; imports of anything else are library imports (versioned below)
PACKAGES = ("bench", "methods", "datasets", "results")
#: modules that import every method/dataset only to register them (not followed)
HUBS = frozenset({"methods.builtin", "datasets.builtin", "methods.table", "datasets.table", "methods.table_build",
                  "datasets.table_build"})
#: modules that only persist runs, coordinate workers or accept/refuse configurations: they never
#: compute a number, so editing them does not make stored runs stale (not followed; the profiler
#: test allows them)
NOT_RESULT_CODE = ("bench.store", "bench.errors", "methods.hparam_rules")
#: the entry point of every job: the runner and everything it imports
RUNNER_MODULE = "bench.runner"
#: libraries whose version can change a number
NUMERIC_LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "timm", "segmentation-models-pytorch", "monai",
                     "nibabel")


@functools.lru_cache(maxsize=1)
def _roots() -> dict[str, Path]:
    """Package name -> its folder (wherever it is installed)."""
    here = Path(__file__).resolve().parent.parent
    return {p: here / p for p in PACKAGES if (here / p / "__init__.py").is_file()}


def module_file(name: str) -> Path | None:
    """The source file of one of bench's modules, or None (a library, or not a module)."""
    head = name.split(".")[0]
    root = _roots().get(head)
    if root is None:
        return None
    rel = Path(*name.split(".")[1:])
    for candidate in (root / rel / "__init__.py", (root / rel).with_suffix(".py") if rel.parts else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.lru_cache(maxsize=None)
def _imports_of(name: str) -> frozenset[str]:
    """bench modules named by the import statements anywhere in ``name`` (relative ones resolved)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # ``from pkg import submodule``
    return frozenset(m for m in found if module_file(m) is not None)


def module_closure(roots: Iterable[str]) -> frozenset[str]:
    """Every bench module reachable from ``roots`` by imports (parents included; hubs and
    ``NOT_RESULT_CODE`` neither followed nor included)."""
    seen: set[str] = set()
    todo = [m for r in roots for m in (*_parents(r), r)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None or name in HUBS or _excluded(name):
            continue
        seen.add(name)
        todo.extend(m for dep in _imports_of(name) for m in (*_parents(dep), dep))
    return frozenset(seen)


def _excluded(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in NOT_RESULT_CODE)


@functools.lru_cache(maxsize=None)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {}
    for lib in NUMERIC_LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def code_fingerprint(modules: Sequence[str]) -> str:
    """Hash of the sources reachable from the runner and ``modules`` plus the library versions.
    Computed once per process and set of modules: a running process executes the code it imported,
    whatever happens to the files afterwards."""
    return _code_fingerprint(tuple(modules))


@functools.lru_cache(maxsize=None)
def _code_fingerprint(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in sorted(module_closure((RUNNER_MODULE, *modules))):
        path = module_file(name)
        st = path.stat()
        h.update(f"{name}\0{_file_digest(path, st.st_size, st.st_mtime_ns)}\n".encode())
    h.update(json.dumps(library_versions(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def data_fingerprint(dataset: str, data_root: str | None = None) -> str | None:
    """Fingerprint of a dataset's input files' *contents* (:func:`cached_content_fingerprint`),
    or None for datasets generated by code. Raises the dataset's DatasetNotFound when its files
    are absent."""
    from datasets import parse_name

    entry, variant = parse_name(dataset)
    if entry.input_files is None:
        return None
    files, root = entry.input_files(data_root, variant)
    return cached_content_fingerprint(files, root)[0]
