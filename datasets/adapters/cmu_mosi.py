"""CMU-MOSI sentiment regression (I2MoE, ICML 2025): vision, audio and text feature sequences.

Expected files (``<data root>/cmu-mosi/``, the folder the I2MoE reference reads as ``data/cmu-mosi``):

- ``cmu-mosi`` (variant ``data``, the default): ``mosi_data.pkl``, the file the reference reads
  (``src/common/datasets/mosi.py``, ``load_and_preprocess_data_mosi_regression``): the word-aligned
  CMU-MOSI features of Multimodal-Transformer (MulT), 50 time steps, FACET vision 20, COVAREP
  audio 5, GloVe text 300 features per step.
- ``cmu-mosi:raw``: ``mosi_raw.pkl``, MultiBench's processed CMU-MOSI (50 steps, vision 35,
  audio 74, text 300), the other pickle the MultiBench affect loaders take.

Both are one pickled dict ``{"train", "valid", "test"}``, each a dict of NumPy arrays:
``vision`` (N, 50, Fv), ``audio`` (N, 50, Fa), ``text`` (N, 50, 300), ``labels`` (N, 1, 1)
float sentiment in [-3, 3] and ``id`` (N, ...) the segment id (one string or an array of string
parts per row, joined here with ``_``). Obtain them through the links of MultiBench
(github.com/pliang279/MultiBench, README "Affective computing"), as the I2MoE README says; the
features are CMU-MultimodalSDK's CMU-MOSI features, aligned and padded to 50 steps by
MulT/MultiBench. Nothing is downloaded.

**Pickle.** The file is read with :mod:`pickle`, which can run code: read it only from your own
data root, from a copy you obtained yourself. The loader is restricted (``_NumpyUnpickler``) to
NumPy arrays and plain containers; any other class named in the file is refused and reported.

Task: ``sentiment``, regression of the label in [-3, 3] (``sign_metric``: the scorer also reports
the CMU-MOSI Acc-2 sign accuracy over non-zero targets, as the reference's ``(pred > 0) ==
(label > 0)`` validation accuracy). Split: the official CMU-MOSI train/valid/test split stored in
the pickle (1284/229/686 segments in the standard release); the split seed changes nothing.

What is done to the arrays, and where it departs from the reference:

- **Empty text dropped** (as the reference's ``drop_entry``): a segment whose ``text`` array sums
  to 0 is removed from its split; the dropped ids are listed in ``spec.params["dropped_empty_text"]``.
- **Non-finite features** (named behaviour ``nonfinite="zero"``, the default): NaN and +-Inf in
  ``vision``/``audio``/``text`` are replaced by 0 and counted per split and modality in
  ``spec.params["nonfinite_replaced"]`` (a warning says how many). This is MulT's and MultiBench's
  ``audio[audio == -inf] = 0``; the reference's ``np.nan_to_num`` also maps NaN to 0 but +-Inf to
  +-float max, which overflows back to +-Inf in float32, so we use 0 there. ``nonfinite="error"``
  (keyword of the builder) reports every such value as a problem instead.
- **Per-feature standardisation, fitted on the training split only** (departure: the reference
  feeds raw features to a GRU). The shared encoder is a per-token MLP and COVAREP/FACET features
  span very different scales, so each feature is z-scored with the mean/std of the *training*
  split's non-padding steps; padding steps (all-zero text, MulT's front padding) stay exactly 0.
  The regression target's mean/std are also taken from the training split (``build_data``).
- Malformed data (unreadable pickle, missing split or key, shape mismatches, labels outside
  [-3, 3] or non-finite, an id repeated within or across splits) is reported all at once
  (``DatasetProblems``), each problem naming the file, split key and row.
"""
from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import numpy as np

from ..data import MultimodalData
from ..prepare import build_data
from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetNotFound, DatasetSpec, ModalitySpec, TaskSpec

NAME = "cmu-mosi"
FOLDER = "cmu-mosi"
#: variant -> (file name, features per step of each modality)
VARIANTS = {
    "data": ("mosi_data.pkl", {"vision": 20, "audio": 5, "text": 300}),
    "raw": ("mosi_raw.pkl", {"vision": 35, "audio": 74, "text": 300}),
}
DEFAULT_VARIANT = "data"
STEPS = 50
MODALITIES = ("vision", "audio", "text")
#: our split name -> the pickle's key
SPLIT_KEYS = {"train": "train", "val": "valid", "test": "test"}
LABEL_MIN, LABEL_MAX = -3.0, 3.0
NONFINITE_POLICIES = ("zero", "error")
OBTAIN = ("the MultiBench CMU-MOSI links (github.com/pliang279/MultiBench, README 'Affective computing'; "
          "the I2MoE reference reads data/cmu-mosi/mosi_data.pkl)")


def _variant(variant: str | None) -> str:
    return variant or DEFAULT_VARIANT


def _file(root: str | None, variant: str | None) -> Path:
    base = data_root(root)
    fname, _ = VARIANTS[_variant(variant)]
    path = base / FOLDER / fname
    if not path.is_file():
        raise DatasetNotFound(
            f"{NAME}: missing {fname} in {base / FOLDER} (data root {base}, set with --data-root or "
            f"BENCH_DATA_ROOT); obtain it from {OBTAIN} (nothing is downloaded)")
    return path


def check(root: str | None, variant: str | None = DEFAULT_VARIANT) -> Path:
    return _file(root, variant)


def input_files(root: str | None, variant: str | None = DEFAULT_VARIANT) -> tuple[list[Path], Path]:
    path = _file(root, variant)
    return [path], path.parent


def modality_names(root: str | None = None, variant: str | None = DEFAULT_VARIANT) -> list[str]:
    return list(MODALITIES)


def spec_for(variant: str | None) -> DatasetSpec:
    v = _variant(variant)
    fname, dims = VARIANTS[v]
    return DatasetSpec(
        name=f"{NAME}:{v}",
        modalities=tuple(ModalitySpec(m, "sequence", (STEPS, dims[m])) for m in MODALITIES),
        tasks=(TaskSpec("sentiment", "regression", 1, sign_metric=True),),
        split_rule="official CMU-MOSI train/valid/test split stored in the pickle (the split seed changes nothing)",
        source=f"CMU-MOSI, {fname} (MulT/MultiBench processing), as read by the I2MoE reference",
    )


# ------------------------------------------------------------------ reading


class _NumpyUnpickler(pickle.Unpickler):
    """Only what a pickled dict of NumPy arrays needs; any other global is refused."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"), ("builtins", "bytearray"), ("_codecs", "encode"),
        ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "object"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED and not (module == "numpy.dtypes" and name.endswith("DType")):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays and plain "
                                         "containers are read)")
        return super().find_class(module, name)


def _load_pickle(path: Path, problems: Problems) -> object | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        return _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # truncated, corrupted, or not a pickle: all reported the same way
        problems.add(path.name, f"cannot be read as a pickle of NumPy arrays (truncated or corrupted?): "
                                f"{type(exc).__name__}: {exc}")
        return None


def _id_text(entry) -> str:
    def one(x) -> str:
        if isinstance(x, bytes):
            return x.decode("utf-8", "replace").strip()
        return str(x).strip()

    if isinstance(entry, np.ndarray):
        return "_".join(one(x) for x in entry.ravel().tolist() if one(x))
    return one(entry)


def _read_split(alldata: dict, key: str, fname: str, dims: dict[str, int], policy: str, problems: Problems,
                replaced: dict[str, int]) -> dict | None:
    where = f"{fname} [{key!r}]"
    if key not in alldata:
        problems.add(fname, f"missing split key {key!r} (has {sorted(map(str, alldata))})")
        return None
    part = alldata[key]
    if not isinstance(part, dict):
        problems.add(where, f"is a {type(part).__name__}, expected a dict of arrays")
        return None
    out: dict = {}
    n_rows: dict[str, int] = {}
    for k in (*MODALITIES, "labels", "id"):
        if k not in part:
            problems.add(where, f"missing key {k!r} (has {sorted(map(str, part))})")
            continue
        try:
            arr = np.asarray(part[k]) if k == "id" else np.asarray(part[k], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            problems.add(f"{where}[{k!r}]", f"is not a numeric array: {exc}")
            continue
        if arr.ndim == 0:
            problems.add(f"{where}[{k!r}]", "is a scalar, expected one row per sample")
            continue
        n_rows[k] = arr.shape[0]
        if k in MODALITIES:
            expected = (STEPS, dims[k])
            if arr.shape[1:] != expected:
                problems.add(f"{where}[{k!r}]", f"has shape {arr.shape}, expected (N, {STEPS}, {dims[k]})")
                continue
            bad = ~np.isfinite(arr)
            if bad.any():
                if policy == "error":
                    for r in np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1)).tolist():
                        problems.add(f"{where}[{k!r}] row {r}", f"{int(bad[r].sum())} NaN/Inf values")
                else:
                    replaced[k] = replaced.get(k, 0) + int(bad.sum())
                    arr = np.where(bad, 0.0, arr)
        elif k == "labels":
            if arr.size != arr.shape[0]:
                problems.add(f"{where}['labels']", f"has shape {arr.shape}, expected one value per row (N, 1, 1)")
                continue
            arr = arr.reshape(-1)
            for r in np.flatnonzero(~np.isfinite(arr)).tolist():
                problems.add(f"{where}['labels'] row {r}", f"label {arr[r]} is not finite")
            for r in np.flatnonzero(np.isfinite(arr) & ((arr < LABEL_MIN) | (arr > LABEL_MAX))).tolist():
                problems.add(f"{where}['labels'] row {r}", f"label {arr[r]:g} is outside [{LABEL_MIN:g}, {LABEL_MAX:g}]")
        else:
            arr = np.array([_id_text(e) for e in arr], dtype=object)
        out[k] = arr
    if len(set(n_rows.values())) > 1:
        problems.add(where, "arrays have different numbers of rows: "
                            + ", ".join(f"{k} {v}" for k, v in n_rows.items()))
    return out  # possibly partial: its ids are still checked; problems were reported for the rest


def read_mosi(path: Path, variant: str | None, nonfinite: str = "zero") -> tuple[dict, dict]:
    """Read and check the pickle: ``({split: arrays}, info)``; raises DatasetProblems listing every problem."""
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    fname, dims = VARIANTS[_variant(variant)]
    problems = Problems()
    alldata = _load_pickle(path, problems)
    parts: dict[str, dict] = {}
    replaced: dict[str, dict[str, int]] = {}
    if alldata is not None and not isinstance(alldata, dict):
        problems.add(fname, f"holds a {type(alldata).__name__}, expected a dict with keys train/valid/test")
    elif alldata is not None:
        for split, key in SPLIT_KEYS.items():
            replaced[split] = {}
            part = _read_split(alldata, key, fname, dims, nonfinite, problems, replaced[split])
            if part is not None:
                parts[split] = part
    # ids: unique within and across splits
    seen: dict[str, tuple[str, int]] = {}
    for split, part in parts.items():
        for r, i in enumerate(part.get("id", np.array([], object)).tolist()):
            if not i:
                problems.add(f"{fname} [{SPLIT_KEYS[split]!r}]['id'] row {r}", "empty segment id")
                continue
            if i in seen:
                s0, r0 = seen[i]
                problems.add(f"{fname} [{SPLIT_KEYS[split]!r}]['id'] row {r}",
                             f"id {i!r} repeats [{SPLIT_KEYS[s0]!r}] row {r0}")
            else:
                seen[i] = (split, r)
    problems.raise_if_any(NAME)
    info = {"nonfinite_replaced": {s: c for s, c in replaced.items() if c}}
    return parts, info


# ------------------------------------------------------------------ building


def _standardise(inputs: dict[str, np.ndarray], pad: np.ndarray, train: np.ndarray) -> dict[str, np.ndarray]:
    """Z-score every feature with the training split's non-padding steps; padding steps stay 0."""
    out = {}
    for m, x in inputs.items():
        rows = x[train][~pad[train]]  # (train steps, F)
        mu = rows.mean(axis=0) if len(rows) else np.zeros(x.shape[-1])
        sd = rows.std(axis=0) if len(rows) else np.ones(x.shape[-1])
        sd = np.where(sd > 1e-8, sd, 1.0)
        z = (x - mu) / sd
        z[pad] = 0.0
        out[m] = z.astype(np.float32)
    return out


@register_dataset(NAME, "CMU-MOSI sentiment, vision/audio/text feature sequences (I2MoE, ICML 2025)",
                  variants=tuple(VARIANTS), default_variant=DEFAULT_VARIANT, embedded=False,
                  modalities="3 sequences: vision, audio, text (50 steps)", tasks="regression in [-3, 3] (+ sign acc.)",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, nonfinite: str = "zero") -> MultimodalData:
    path = _file(data_root, variant)
    parts, info = read_mosi(path, variant, nonfinite)
    dropped: dict[str, list[str]] = {}
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in (*MODALITIES, "labels")}
    ids: list[str] = []
    splits: dict[str, np.ndarray] = {}
    for split in SPLIT_KEYS:
        part = parts[split]
        keep = part["text"].reshape(len(part["text"]), -1).sum(axis=1) != 0  # the reference's drop_entry
        if (~keep).any():
            dropped[split] = part["id"][~keep].tolist()
        splits[split] = np.arange(len(ids), len(ids) + int(keep.sum()))
        ids += part["id"][keep].tolist()
        for k in arrays:
            arrays[k].append(part[k][keep])
    cat = {k: np.concatenate(v) for k, v in arrays.items()}
    total = {s: sum(c.values()) for s, c in info["nonfinite_replaced"].items()}
    if total:
        warnings.warn(f"{NAME}: replaced non-finite feature values by 0 (nonfinite='zero'): "
                      + ", ".join(f"{s} {info['nonfinite_replaced'][s]}" for s in total), stacklevel=2)
    pad = np.all(cat["text"] == 0, axis=-1)  # (N, steps): MulT's front padding
    inputs = _standardise({m: cat[m] for m in MODALITIES}, pad, splits["train"])
    spec = spec_for(variant)
    spec = DatasetSpec(spec.name, spec.modalities, spec.tasks, spec.split_rule, spec.source,
                       params={"file": path.name, "dropped_empty_text": dropped,
                               "nonfinite": nonfinite, "nonfinite_replaced": info["nonfinite_replaced"]})
    return build_data(spec, inputs, {"sentiment": cat["labels"].astype(np.float32)}, split_seed, ids=ids,
                      splits=splits)
