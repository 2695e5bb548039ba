"""MM-IMDb movie genres (I2MoE, ICML 2025): plot-text and poster-image feature vectors, 23 genres.

Expected file: ``<data root>/mm-imdb/multimodal_imdb.hdf5``, the Fuel-format release of
Arevalo et al. ("Gated Multimodal Units for Information Fusion", github.com/johnarevalo/gmu-mmimdb,
README "Make dataset": the ready-to-use ``multimodal_imdb.hdf5``; MultiBench links the same file),
which the I2MoE reference reads as ``data/mm-imdb/multimodal_imdb.hdf5``
(``src/common/datasets/mmimdb.py``). Of its datasets four are read (the 8 GB ``images``,
``sequences``, ``three_grams`` and ``word_grams`` are not touched):

- ``features`` (N, 300) float32: mean word2vec of the plot -> modality ``text`` (the reference's
  ``language``), kind ``embedding``;
- ``vgg_features`` (N, 4096) float32: VGG-16 fc7 of the poster -> modality ``image`` (the
  reference's ``img``), kind ``embedding``;
- ``genres`` (N, 23) int 0/1, with attribute ``target_names`` (JSON list) -> task ``genres``,
  multilabel over, in this order (the release's, most frequent first): Drama, Comedy, Romance,
  Thriller, Crime, Action, Adventure, Horror, Documentary, Mystery, Sci-Fi, Fantasy, Family,
  Biography, War, History, Music, Animation, Musical, Western, Sport, Short, Film-Noir;
- ``imdb_ids`` (N,) ``S7``: the sample ids.

Split: the official MM-IMDb split, train 15552 / dev 2608 / test 7799 movies stored in that order.
It is read from the file's Fuel ``split`` attribute (rows ``train``/``dev``/``test`` with
start/stop per source, dev = our ``val``); without that attribute the reference's fixed ranges
[0, 15552), [15552, 18160), [18160, 25959) are used, which needs exactly 25959 rows. A file of
25959 rows whose attribute disagrees with those ranges is refused. The split seed changes nothing.

Reading needs the optional ``h5py`` package (imported only here; a one-line error names it).

Departures from the reference, and why:

- The reference feeds the raw features to MaxOut MLPs; here both feature vectors are z-scored per
  feature with statistics of the **training split only** (``build_data``), like every vector
  modality of the harness.
- Non-finite feature rows (named behaviour ``nonfinite="mask"``, the default): a row of
  ``features`` or ``vgg_features`` holding NaN/Inf (e.g. a plot with no word2vec word averages to
  NaN) marks that modality *missing* for that movie, counted in ``spec.params["nonfinite_masked"]``
  with a warning; the reference's ``np.nan_to_num`` would turn it into zeros (NaN) or +-float max
  (Inf) and use it as data. ``nonfinite="error"`` (builder keyword) reports each such row instead.
- Malformed data (unreadable/truncated file, a missing dataset, shape mismatches, genre values
  other than 0/1, other ``target_names``, an id repeated within or across splits, overlapping or
  incomplete split ranges) is reported all at once (``DatasetProblems``), naming file, dataset and row.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..data import MultimodalData
from ..prepare import build_data
from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetError, DatasetNotFound, DatasetSpec, ModalitySpec, TaskSpec

NAME = "mmimdb"
FOLDER = "mm-imdb"
FILE = "multimodal_imdb.hdf5"
GENRES = ("Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
          "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation", "Musical",
          "Western", "Sport", "Short", "Film-Noir")
#: modality -> (hdf5 dataset, features)
MODALITIES = {"text": ("features", 300), "image": ("vgg_features", 4096)}
LABELS_KEY, IDS_KEY = "genres", "imdb_ids"
#: our split name -> the Fuel split name
SPLIT_NAMES = {"train": "train", "val": "dev", "test": "test"}
#: the reference's fixed ranges (src/common/datasets/mmimdb.py), used when the file has no split attribute
REFERENCE_RANGES = {"train": (0, 15552), "val": (15552, 18160), "test": (18160, 25959)}
RELEASE_ROWS = 25959
NONFINITE_POLICIES = ("mask", "error")
OBTAIN = ("the MM-IMDb release of github.com/johnarevalo/gmu-mmimdb (README 'Make dataset': the ready-to-use "
          "multimodal_imdb.hdf5), also linked from MultiBench")


def _file(root: str | None) -> Path:
    base = data_root(root)
    path = base / FOLDER / FILE
    if not path.is_file():
        raise DatasetNotFound(
            f"{NAME}: missing {FILE} in {base / FOLDER} (data root {base}, set with --data-root or BENCH_DATA_ROOT); "
            f"obtain it from {OBTAIN} (nothing is downloaded)")
    return path


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DatasetError(f"{NAME}: reading {FILE} needs the optional package h5py (pip install h5py)") from None
    return h5py


def check(root: str | None, variant: str | None = None) -> Path:
    path = _file(root)
    _h5py()
    return path


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    path = _file(root)
    return [path], path.parent


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return list(MODALITIES)


def spec() -> DatasetSpec:
    return DatasetSpec(
        name=NAME,
        modalities=tuple(ModalitySpec(m, "embedding", (d,)) for m, (_, d) in MODALITIES.items()),
        tasks=(TaskSpec("genres", "multilabel", len(GENRES), labels=GENRES),),
        split_rule="official MM-IMDb train/dev/test split (the file's Fuel split attribute, or rows "
                   "[0,15552)/[15552,18160)/[18160,25959)); the split seed changes nothing",
        source="MM-IMDb multimodal_imdb.hdf5 (Arevalo et al. 2017), as read by the I2MoE reference",
    )


# ------------------------------------------------------------------ reading


def _text(x) -> str:
    return x.decode("utf-8", "replace").strip() if isinstance(x, bytes) else str(x).strip()


def _fuel_splits(f, n: int, problems: Problems) -> dict[str, tuple[int, int]] | None:
    """The (start, stop) of each split from the Fuel ``split`` attribute, checked, or None."""
    if "split" not in f.attrs:
        if n != RELEASE_ROWS:
            problems.add(f"{FILE} attribute 'split'", f"is absent and the file has {n} rows, not the release's "
                                                      f"{RELEASE_ROWS}: cannot place rows in the official split")
            return None
        return dict(REFERENCE_RANGES)
    try:
        table = np.asarray(f.attrs["split"])
        rows = [(_text(r["split"]), _text(r["source"]), int(r["start"]), int(r["stop"])) for r in table]
    except Exception as exc:
        problems.add(f"{FILE} attribute 'split'", f"is not a Fuel split table: {type(exc).__name__}: {exc}")
        return None
    wanted = {k for k, _ in MODALITIES.values()} | {LABELS_KEY, IDS_KEY}
    out: dict[str, tuple[int, int]] = {}
    for ours, fuel in SPLIT_NAMES.items():
        ranges = {src: (a, b) for s, src, a, b in rows if s == fuel and src in wanted}
        missing = sorted(wanted - set(ranges))
        if missing:
            problems.add(f"{FILE} attribute 'split'", f"split {fuel!r} has no range for {', '.join(missing)}")
            continue
        if len(set(ranges.values())) > 1:
            problems.add(f"{FILE} attribute 'split'", f"split {fuel!r} gives different ranges per source: {ranges}")
            continue
        a, b = next(iter(ranges.values()))
        if not 0 <= a < b <= n:
            problems.add(f"{FILE} attribute 'split'", f"split {fuel!r} range [{a}, {b}) is empty or outside the {n} rows")
            continue
        out[ours] = (a, b)
    if len(out) != len(SPLIT_NAMES):
        return None
    order = sorted(out.items(), key=lambda kv: kv[1])
    for (s1, (a1, b1)), (s2, (a2, b2)) in zip(order, order[1:]):
        if a2 < b1:
            problems.add(f"{FILE} attribute 'split'", f"rows {a2}..{min(b1, b2) - 1} are in both "
                                                      f"{SPLIT_NAMES[s1]!r} and {SPLIT_NAMES[s2]!r}")
    if n == RELEASE_ROWS and out != REFERENCE_RANGES:
        problems.add(f"{FILE} attribute 'split'", f"ranges {out} differ from the official (reference) ranges "
                                                  f"{REFERENCE_RANGES} of the {RELEASE_ROWS}-row release")
    return out


def read_mmimdb(path: Path, nonfinite: str = "mask") -> tuple[dict, dict]:
    """Read and check the file: ``(arrays, info)``; raises DatasetProblems listing every problem."""
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    h5py = _h5py()
    problems = Problems()
    arrays: dict[str, np.ndarray] = {}
    splits = None
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        problems.add(FILE, f"cannot be opened as HDF5 (truncated or corrupted?): {type(exc).__name__}: {exc}")
        problems.raise_if_any(NAME)
    with f:
        expected = {key: (d,) for key, d in MODALITIES.values()}
        expected.update({LABELS_KEY: (len(GENRES),), IDS_KEY: ()})
        for key, tail in expected.items():
            if key not in f:
                problems.add(FILE, f"missing dataset {key!r} (has {sorted(f.keys())})")
                continue
            ds = f[key]
            if not hasattr(ds, "shape") or ds.ndim != 1 + len(tail) or tuple(ds.shape[1:]) != tail:
                problems.add(f"{FILE} [{key!r}]", f"has shape {getattr(ds, 'shape', None)}, expected (N, {', '.join(map(str, tail))})"
                             if tail else f"has shape {getattr(ds, 'shape', None)}, expected (N,)")
                continue
            try:
                arrays[key] = ds[()]
            except Exception as exc:
                problems.add(f"{FILE} [{key!r}]", f"cannot be read (truncated or corrupted?): {type(exc).__name__}: {exc}")
        if LABELS_KEY in f and "target_names" in f[LABELS_KEY].attrs:
            try:
                names = tuple(json.loads(_text(f[LABELS_KEY].attrs["target_names"])))
            except (ValueError, TypeError) as exc:
                names = None
                problems.add(f"{FILE} [{LABELS_KEY!r}] attribute 'target_names'", f"is not a JSON list: {exc}")
            if names is not None and names != GENRES:
                problems.add(f"{FILE} [{LABELS_KEY!r}] attribute 'target_names'",
                             f"is {list(names)}, expected the release's {list(GENRES)}")
        rows = {k: len(v) for k, v in arrays.items()}
        if len(set(rows.values())) > 1:
            problems.add(FILE, "datasets have different numbers of rows: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
        elif arrays:
            splits = _fuel_splits(f, next(iter(rows.values())), problems)
    info: dict = {"nonfinite_masked": {}}
    mask: dict[str, np.ndarray] = {}
    if LABELS_KEY in arrays:
        y = np.asarray(arrays[LABELS_KEY])
        bad = ~np.isin(y, (0, 1))
        for r in np.flatnonzero(bad.any(axis=1)).tolist():
            cols = ", ".join(f"{GENRES[c]}={y[r, c]}" for c in np.flatnonzero(bad[r]).tolist())
            problems.add(f"{FILE} [{LABELS_KEY!r}] row {r}", f"genre values must be 0 or 1 ({cols})")
    for m, (key, _) in MODALITIES.items():
        if key not in arrays:
            continue
        x = np.asarray(arrays[key], dtype=np.float32)
        arrays[key] = x
        bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        mask[m] = np.ones(len(x), bool)
        if len(bad_rows):
            if nonfinite == "error":
                for r in bad_rows.tolist():
                    problems.add(f"{FILE} [{key!r}] row {r}", "holds NaN/Inf values")
            else:
                mask[m][bad_rows] = False
                info["nonfinite_masked"][m] = len(bad_rows)
    if IDS_KEY in arrays:
        ids = [_text(i) for i in arrays[IDS_KEY].tolist()]
        arrays[IDS_KEY] = np.array(ids, dtype=object)
        where = {}
        if splits:
            for s, (a, b) in splits.items():
                for r in range(a, b):
                    where.setdefault(r, SPLIT_NAMES[s])
        seen: dict[str, int] = {}
        for r, i in enumerate(ids):
            if not i:
                problems.add(f"{FILE} [{IDS_KEY!r}] row {r}", "empty imdb id")
            elif i in seen:
                r0 = seen[i]
                problems.add(f"{FILE} [{IDS_KEY!r}] row {r}",
                             f"id {i!r} ({where.get(r, '?')}) repeats row {r0} ({where.get(r0, '?')})")
            else:
                seen[i] = r
    problems.raise_if_any(NAME)
    info["splits"] = splits
    info["mask"] = mask
    return arrays, info


@register_dataset(NAME, "MM-IMDb movie genres from plot and poster features (I2MoE, ICML 2025)", embedded=False,
                  modalities="2 embeddings: text (300), image (4096)", tasks="multilabel (23 genres)",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, nonfinite: str = "mask") -> MultimodalData:
    path = _file(data_root)
    arrays, info = read_mmimdb(path, nonfinite)
    if info["nonfinite_masked"]:
        warnings.warn(f"{NAME}: rows with NaN/Inf features marked missing (nonfinite='mask'): "
                      + ", ".join(f"{m} {c}" for m, c in info["nonfinite_masked"].items()), stacklevel=2)
    splits = {s: np.arange(a, b) for s, (a, b) in info["splits"].items()}
    used = np.sort(np.concatenate(list(splits.values())))
    # rows outside every split (none in the release) are left out, as the reference's slicing does
    remap = np.full(len(arrays[IDS_KEY]), -1)
    remap[used] = np.arange(len(used))
    splits = {s: remap[idx] for s, idx in splits.items()}
    inputs = {m: arrays[key][used] for m, (key, _) in MODALITIES.items()}
    mask = {m: v[used] for m, v in info["mask"].items()}
    s = spec()
    s = DatasetSpec(s.name, s.modalities, s.tasks, s.split_rule, s.source,
                    params={"file": FILE, "nonfinite": nonfinite, "nonfinite_masked": info["nonfinite_masked"]})
    return build_data(s, inputs, {"genres": np.asarray(arrays[LABELS_KEY])[used].astype(np.float32)}, split_seed,
                      ids=arrays[IDS_KEY][used].tolist(), mask=mask, splits=splits)
