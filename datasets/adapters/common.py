"""Reading helpers shared by the I2MoE benchmark adapters (ADNI, MIMIC-IV, ENRICO).

Each collects problems into a :class:`datasets.problems.Problems` (file, row and column named)
instead of raising at the first, and fits anything data-dependent on the training split only.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..problems import Problems
from ..spec import DatasetNotFound
from ..splits import split_indices

#: keys of the reference's ``PTID_splits*.json`` files -> our split names
SPLIT_KEYS = {"training": "train", "validation": "val", "testing": "test"}


def not_found(name: str, base: Path, root: Path, missing: list[str], obtain: str) -> DatasetNotFound:
    return DatasetNotFound(
        f"{name}: missing {', '.join(missing)} in {base} (data root {root}, set with --data-root or "
        f"BENCH_DATA_ROOT); obtain it from {obtain} (nothing is downloaded)")


def read_csv(path: Path, problems: Problems, **kw) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, **kw)
    except Exception as e:  # noqa: BLE001  (any parse failure is a problem of that file)
        problems.add(str(path), f"cannot be read as CSV ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        return None


def read_table(path: Path, problems: Problems, columns: tuple[str, ...] | list[str], **kw) -> pd.DataFrame | None:
    """A CSV that must have ``columns``: the frame, or None with one problem (unreadable, or the
    missing columns named next to the ones the file has)."""
    df = read_csv(path, problems, **kw)
    if df is None:
        return None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        problems.add(str(path), f"has no column {', '.join(map(repr, missing))} (columns: {', '.join(map(str, df.columns))})")
        return None
    return df


def read_split_json(path: Path, index: dict, problems: Problems, id_name: str = "PTID") -> dict[str, list[int]] | None:
    """Row indices per split from a {"training","validation","testing"} JSON of ids (ids not in
    ``index`` are ignored, as in the reference); a patient listed in two splits is a problem."""
    try:
        raw = json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001
        problems.add(str(path), f"cannot be read as JSON ({type(e).__name__}: {e})")
        return None
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), list) for k in SPLIT_KEYS):
        problems.add(str(path), f"needs the lists {', '.join(map(repr, SPLIT_KEYS))}")
        return None
    owner: dict[str, str] = {}
    out: dict[str, list[int]] = {s: [] for s in SPLIT_KEYS.values()}
    for key, split in SPLIT_KEYS.items():
        for pid in raw[key]:
            k = str(pid)
            if k in owner and owner[k] != key:
                problems.add(str(path), f"{id_name} {k!r} is in both {owner[k]!r} and {key!r}")
                continue
            if k in owner:
                continue
            owner[k] = key
            if k in index:
                out[split].append(index[k])
    return out


def make_splits(n_rows: int, labels: np.ndarray, split_seed: int, fixed: dict[str, list[int]] | None,
                keep: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows kept (``keep`` and, with a fixed split, listed) and the splits as indices into them."""
    if fixed is not None:
        listed = np.zeros(n_rows, bool)
        for rows in fixed.values():
            listed[rows] = True
        keep = keep & listed
    rows = np.flatnonzero(keep)
    new = -np.ones(n_rows, np.int64)
    new[rows] = np.arange(len(rows))
    if fixed is not None:
        splits = {s: np.sort(new[[r for r in fixed[s] if keep[r]]]) for s in ("train", "val", "test")}
    else:
        splits = split_indices(len(rows), split_seed, stratify=labels[rows])
    return rows, splits


def fill_from_train(x: np.ndarray, present: np.ndarray, train: np.ndarray, how: str = "mean") -> np.ndarray:
    """Fill NaN cells of present rows with the training split's column mean (or mode)."""
    x = x.astype(np.float64, copy=True)
    rows = train[present[train]]
    fill = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        col = x[rows, j]
        col = col[np.isfinite(col)]
        if not len(col):
            continue
        if how == "mode":
            vals, counts = np.unique(col, return_counts=True)
            fill[j] = vals[np.argmax(counts)]
        else:
            fill[j] = col.mean()
    nan = np.isnan(x) & present[:, None]
    x[nan] = np.take(fill, np.nonzero(nan)[1])
    return x


def numeric_features(df: pd.DataFrame, where: str, id_name: str, problems: Problems) -> np.ndarray:
    """The frame as float64; non-numeric cells and +-Inf are problems naming row, id and column."""
    out = np.full(df.shape, np.nan)
    for j, col in enumerate(df.columns):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna()
        for i in np.flatnonzero(bad.to_numpy())[:5]:
            problems.add(f"{where} row {i + 1} ({id_name} {str(df.index[i])!r}), column {col!r}",
                         f"{df[col].iloc[i]!r} is not a number")
        vals = num.to_numpy(np.float64)
        for i in np.flatnonzero(np.isinf(vals))[:5]:
            problems.add(f"{where} row {i + 1} ({id_name} {str(df.index[i])!r}), column {col!r}", "is +-Inf")
        out[:, j] = vals
    return out


def duplicate_ids(index, where: str, id_name: str, problems: Problems) -> None:
    seen: set[str] = set()
    for i, k in enumerate(map(str, index)):
        if k in seen:
            problems.add(f"{where} row {i + 1}", f"{id_name} {k!r} appears more than once")
        seen.add(k)
