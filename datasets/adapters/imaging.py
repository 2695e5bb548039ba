"""Image helpers shared by the M4oE-MT adapters (EMBED, RSNA, VinDr-Mammo, GAMMA).

These datasets do not fit in memory as float tensors, so every image is preprocessed **once**
into a cache and then served from disk:

* ``<cache>/m4oe-mt/<dataset>/images/<k[:2]>/<k>.npy``: one preprocessed image (float16), where
  ``k`` hashes the source file(s)' absolute path, size and mtime and the preprocessing parameters
  (change any of them and the image is preprocessed again);
* ``<cache>/m4oe-mt/<dataset>/arrays/<a>/<modality>.npy``: the (N, C, H, W) stack of one modality
  (float16, absent rows zeros) and ``<modality>.finite.npy`` (per-row finiteness), where ``a``
  hashes the per-row keys. A second build with unchanged files only ``stat``s the sources and
  memory-maps this stack: no DICOM/JPG is decoded.

:class:`LazyRows` wraps the memory-mapped stack so that ``inputs[m][idx]`` reads only the rows
asked for and returns a float32 tensor (what :meth:`MultimodalData.batch` needs). ``cache`` is
``cache_dir`` or ``$BENCH_CACHE_DIR`` or ``runs/cache``.

DICOM (via the optional package ``pydicom``): rescale slope/intercept, then the VOI LUT sequence
(pydicom's ``apply_voi_lut``, then min-max) or the first WindowCenter/WindowWidth pair (DICOM
LINEAR / LINEAR_EXACT / SIGMOID formulas, into [0, 1]) when present, else min-max to [0, 1];
MONOCHROME1 is inverted (1 - x) so that dense tissue is bright in every image; then a bilinear
(antialiased) resize to size x size. Aspect ratio is not kept (the paper feeds 224 x 224).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..file_hashes import files_sha256, save_hashes
from ..problems import Problems
from ..spec import DatasetError, DatasetNotFound

STORE_DTYPE = np.float16
CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------- location
def locate(name: str, root: Path, folders: Sequence[str], required: Sequence[str], obtain: str) -> Path:
    """The first of ``folders`` under ``root`` holding every ``required`` path (a trailing '/' means a
    folder); else DatasetNotFound naming the folder searched, the missing files and the source."""
    best: tuple[Path, list[str]] | None = None
    for folder in folders:
        base = root / folder
        missing = [r for r in required if not ((base / r).is_dir() if r.endswith("/") else (base / r).is_file())]
        if not missing:
            return base
        if base.is_dir() and best is None:
            best = (base, missing)
    base, missing = best or (root / folders[0], list(required))
    others = f" (also looked in {', '.join(str(root / f) for f in folders if root / f != base)})" if len(folders) > 1 else ""
    raise DatasetNotFound(
        f"{name}: missing {', '.join(missing)} in {base}{others} (data root {root}, set with --data-root or "
        f"BENCH_DATA_ROOT); obtain it from {obtain} (nothing is downloaded)")


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir or os.environ.get("BENCH_CACHE_DIR") or Path("runs") / "cache")


# ---------------------------------------------------------------------------------------- reading
def require_pydicom():
    try:
        import pydicom
    except ImportError:
        raise DatasetError("reading DICOM files needs the package pydicom, which is not installed "
                           "(pip install pydicom)") from None
    return pydicom


def _first(value) -> float:
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except TypeError:
        return float(value)


def window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The DICOM VOI windowing (PS3.3 C.11.2.1.2) into [0, 1]."""
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / max(width, 1e-6) + 0.5, 0.0, 1.0)
    return np.clip((x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)


def minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def resize2d(x: np.ndarray, size: int | tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize a 2-D float array to (H, W) = size (bilinear, antialiased; nearest for label maps)."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    im = Image.fromarray(np.ascontiguousarray(x, np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR), np.float32)


def dicom_image(path: Path, size: int) -> np.ndarray:
    """A DICOM file as a (1, size, size) float32 array in [0, 1] (see the module docstring)."""
    pydicom = require_pydicom()
    ds = pydicom.dcmread(str(path))
    raw = ds.pixel_array
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raw = raw[0]  # multi-frame: the first frame
    if raw.ndim != 2:
        raise ValueError(f"expected a grayscale image, got pixel data of shape {raw.shape}")
    if "VOILUTSequence" in ds:
        try:
            from pydicom.pixels import apply_voi_lut
        except ImportError:  # pydicom < 3
            from pydicom.pixel_data_handlers.util import apply_voi_lut
        y = minmax(np.asarray(apply_voi_lut(raw, ds, index=0), np.float64))
    else:
        x = raw.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
            y = window(x, _first(ds.WindowCenter), _first(ds.WindowWidth), str(ds.get("VOILUTFunction", "LINEAR")))
        else:
            y = minmax(x)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        y = 1.0 - y
    return resize2d(y, size)[None]


def rgb_image(path: Path, size: int) -> np.ndarray:
    """A colour image file as (3, size, size) float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0


def gray_image(path: Path, size: tuple[int, int] | int, nearest: bool = False) -> np.ndarray:
    """A grayscale image file (raw 0..255 values) resized to (H, W)."""
    from PIL import Image

    with Image.open(path) as im:
        return resize2d(np.asarray(im.convert("L"), np.float32), size, nearest=nearest)


def describe_error(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------------------------------- cache
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_key(files: Sequence[Path], params: dict) -> str:
    """Hash of the files' absolute paths and content hashes (cached: docs/identity.md; the caller
    saves the hash cache) and the preprocessing parameters."""
    stats = [[str(Path(f).resolve()), h] for f, h in zip(files, files_sha256(files))]
    return _digest({"v": CACHE_VERSION, "files": stats, "params": params})


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def cached_stack(base: Path, modality: str, rows: Sequence[Sequence[Path] | None], shape: tuple[int, ...],
                 params: dict, loader: Callable[[Sequence[Path]], np.ndarray], problems: Problems,
                 dtype=STORE_DTYPE) -> "LazyRows | None":
    """The (N, *shape) stack of one modality, preprocessed once and memory-mapped.

    ``rows[i]`` is the file(s) row ``i`` is read from (None: absent, zeros); ``loader(files)``
    returns the preprocessed array. A file that cannot be read or gives a wrong shape or
    non-finite values is a problem (named by file) and the stack is not written; None is then
    returned and the caller raises after collecting every problem.
    """
    keys: list[str] = []
    for files in rows:
        if files is None:
            keys.append("")
            continue
        try:
            keys.append(file_key(files, params))
        except OSError as e:
            problems.add(str(files[0]), f"cannot be read ({describe_error(e)})")
            keys.append("?")
    save_hashes()
    if "?" in keys:
        return None
    folder = base / "arrays" / _digest({"m": modality, "shape": shape, "dtype": np.dtype(dtype).str, "rows": keys})
    final, finite_path = folder / f"{modality}.npy", folder / f"{modality}.finite.npy"
    if final.is_file() and finite_path.is_file():
        return LazyRows(np.load(final, mmap_mode="r"), np.load(finite_path), final)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{modality}.{os.getpid()}.tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(rows), *shape))
    finite = np.ones(len(rows), bool)
    ok = True
    for i, (files, key) in enumerate(zip(rows, keys)):
        if files is None:
            continue
        one = base / "images" / key[:2] / f"{key}.npy"
        arr = None
        if one.is_file():
            try:
                arr = np.load(one)
            except Exception:  # noqa: BLE001  (a damaged cache entry is recomputed)
                arr = None
        if arr is None:
            try:
                arr = np.asarray(loader(files), np.float32)
            except DatasetError:
                raise
            except Exception as e:  # noqa: BLE001  (any decoding failure is a problem of that file)
                problems.add(str(files[0]), f"cannot be read ({describe_error(e)})")
                ok = False
                continue
            if tuple(arr.shape) != tuple(shape):
                problems.add(str(files[0]), f"gives an array of shape {arr.shape}, expected {shape}")
                ok = False
                continue
            if not np.isfinite(arr).all():
                problems.add(str(files[0]), "has NaN/Inf pixel values")
                ok = False
                continue
            arr = arr.astype(dtype)
            _save_atomic(one, arr)
        out[i] = arr
        finite[i] = bool(np.isfinite(arr).all())
    out.flush()
    del out
    if not ok:
        tmp.unlink(missing_ok=True)
        return None
    _save_atomic(finite_path, finite)
    os.replace(tmp, final)
    return LazyRows(np.load(final, mmap_mode="r"), finite, final)


# ---------------------------------------------------------------------------------------- lazy rows
def _rows(idx, n: int) -> np.ndarray | int:
    if isinstance(idx, torch.Tensor):
        idx = idx.numpy()
    if isinstance(idx, (int, np.integer)):
        return int(idx) % n if idx < 0 else int(idx)
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    idx = np.asarray(idx)
    if idx.dtype == bool:
        return np.flatnonzero(idx)
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


class LazyRows:
    """A memory-mapped (N, *shape) modality that reads only the rows indexed.

    ``x[idx]`` (int, slice, index array/tensor, bool mask) returns a float32 tensor of those rows;
    ``x.shape``/``x.dtype`` look like a tensor's; ``x.clone()`` and ``x[rows] = value`` write into a
    per-row overlay, never into the cache (robustness perturbations); ``torch.isfinite(x.reshape(n, -1))
    .all(dim=1)`` (what :meth:`MultimodalData.problems` asks) answers from the finiteness recorded when
    the cache was written. Any other torch function materialises the whole array (memory!).
    """

    lazy_rows = True

    def __init__(self, array: np.ndarray, finite: np.ndarray, path: Path | None = None,
                 overlay: dict[int, torch.Tensor] | None = None):
        self.array, self.finite, self.path = array, np.asarray(finite, bool), path
        self.overlay: dict[int, torch.Tensor] = overlay or {}

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.array.shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def dim(self) -> int:
        return self.array.ndim

    def __len__(self) -> int:
        return self.array.shape[0]

    def __repr__(self) -> str:
        return f"LazyRows(shape={tuple(self.array.shape)}, path={self.path})"

    def __getitem__(self, idx) -> torch.Tensor:
        rows = _rows(idx, len(self))
        if isinstance(rows, int):
            if rows in self.overlay:
                return self.overlay[rows].clone()
            return torch.from_numpy(np.array(self.array[rows], np.float32))
        order = np.argsort(rows, kind="stable")  # read the file forwards
        out = np.empty((len(rows), *self.array.shape[1:]), np.float32)
        if len(rows):
            out[order] = self.array[rows[order]]
        t = torch.from_numpy(out)
        for k, r in enumerate(rows.tolist()):
            if r in self.overlay:
                t[k] = self.overlay[r]
        return t

    def __setitem__(self, idx, value) -> None:
        rows = _rows(idx, len(self))
        rows = [rows] if isinstance(rows, int) else rows.tolist()
        value = torch.as_tensor(value, dtype=torch.float32)
        full = value.expand(len(rows), *self.array.shape[1:]) if value.dim() < self.array.ndim else value
        for k, r in enumerate(rows):
            self.overlay[r] = full[k].clone()

    def clone(self) -> "LazyRows":
        return LazyRows(self.array, self.finite, self.path, dict(self.overlay))

    def row_finite(self) -> torch.Tensor:
        ok = self.finite.copy()
        for r, v in self.overlay.items():
            ok[r] = bool(torch.isfinite(v).all())
        return torch.from_numpy(ok)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        if len(shape) == 2 and shape[0] == len(self):
            return _FlatRows(self)
        return self.materialize().reshape(*shape)

    def materialize(self) -> torch.Tensor:
        return self[np.arange(len(self))]

    def numpy(self) -> np.ndarray:
        return self.materialize().numpy()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a.astype(dtype) if dtype is not None else a

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.isfinite and args and isinstance(args[0], _FlatRows):
            return _RowAll(args[0].rows.row_finite())

        def real(a):
            if isinstance(a, LazyRows):
                return a.materialize()
            if isinstance(a, _FlatRows):
                return a.rows.materialize().reshape(len(a.rows), -1)
            if isinstance(a, (list, tuple)):
                return type(a)(real(b) for b in a)
            return a
        return func(*real(args), **{k: real(v) for k, v in kwargs.items()})


class _FlatRows:
    """``LazyRows.reshape(n, -1)``: only ``torch.isfinite`` is answered without reading the rows."""

    def __init__(self, rows: LazyRows):
        self.rows = rows

    __torch_function__ = LazyRows.__torch_function__


class _RowAll:
    def __init__(self, ok: torch.Tensor):
        self.ok = ok

    def all(self, dim: int | None = None):
        return self.ok if dim == 1 else self.ok.all()


# ---------------------------------------------------------------------------------------- mammography
#: breast density A-D -> classes 0..3 (all three mammography sets)
DENSITY = ("A", "B", "C", "D")
#: the 3 BI-RADS classes [ours, the paper does not say how it grouped them]: 1 -> negative,
#: 2 and 3 -> benign, 0 (recall / incomplete), 4, 5, 6 -> recall-or-suspicious
BIRADS3 = ("negative", "benign", "recall-or-suspicious")
BIRADS_TO_3 = {0: 2, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2}


def breast_views(name: str, base: Path, cache_dir, order: list, files: dict, views: Sequence[str], ids: list[str],
                 size: int, problems: Problems, listed_in: str) -> tuple[dict[str, LazyRows], dict[str, np.ndarray]]:
    """The mammography adapters' common step: every image the table lists must exist (each missing
    one is a problem naming ``listed_in``), then each view's cached stack (:func:`build_views`) and
    its presence mask per breast; raises :class:`DatasetProblems` if anything is wrong."""
    for key in order:
        for f in files[key].values():
            if not f.is_file():
                problems.add(str(f), f"is missing (listed in {listed_in})")
    view_files = {v: [files[k].get(v) for k in order] for v in views}
    stacks = build_views(name, base, cache_dir, ids, view_files, size, problems)
    problems.raise_if_any(name)
    return stacks, {v: np.array([f is not None for f in view_files[v]]) for v in views}


def class_tasks(spec: Sequence[tuple[str, Sequence[str]]], values: Callable[[str], list]) -> dict:
    """``{task: (class names, (N,) int64 labels, (N,) labelled mask)}`` from per-breast values (None = unlabelled)."""
    out = {}
    for task, names in spec:
        vals = values(task)
        out[task] = (names, np.array([0 if v is None else v for v in vals], np.int64),
                     np.array([v is not None for v in vals]))
    return out


def build_views(name: str, base: Path, cache_dir, ids: list[str], view_files: dict[str, list[Path | None]],
                size: int, problems: Problems) -> dict[str, LazyRows] | None:
    """Each view's DICOMs as a cached, memory-mapped (N, 1, size, size) stack (None on problems)."""
    params = {"reader": "dicom", "size": size, "window": "voi-lut|window|minmax", "monochrome1": "inverted"}
    out: dict[str, LazyRows] = {}
    root = cache_root(cache_dir) / "m4oe-mt" / name
    for view, files in view_files.items():
        stack = cached_stack(root, view, [None if f is None else [f] for f in files], (1, size, size), params,
                             lambda fs: dicom_image(fs[0], size), problems)
        if stack is not None:
            out[view] = stack
    return out if len(out) == len(view_files) else None


def mammo_data(name: str, description: str, base: Path, views: dict[str, LazyRows], present: dict[str, np.ndarray],
               ids: list[str], groups: np.ndarray, tasks: dict[str, tuple[tuple[str, ...], np.ndarray, np.ndarray]],
               split_seed: int, split_rule: str, splits: dict[str, np.ndarray] | None, params: dict):
    """Assemble a multi-view mammography dataset; ``tasks[t] = (labels, y, has_label)``."""
    from ..prepare import build_data
    from ..spec import DatasetSpec, ModalitySpec, TaskSpec
    from ..splits import split_indices

    size = params["image_size"]
    spec = DatasetSpec(
        name, tuple(ModalitySpec(v, "image2d", (1, size, size)) for v in views),
        tuple(TaskSpec(t, "binary" if len(labels) == 2 else "multiclass", len(labels), labels)
              for t, (labels, _, _) in tasks.items()),
        split_rule, f"{description} read from {base}", params=params)
    if splits is None:
        splits = split_indices(len(ids), split_seed, groups=groups)
    return build_data(spec, dict(views), {t: y for t, (_, y, _) in tasks.items()}, split_seed, ids=ids,
                      mask=present, target_mask={t: m for t, (_, _, m) in tasks.items()}, groups=groups,
                      splits=splits)
