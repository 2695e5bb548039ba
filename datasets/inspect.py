"""What ``bench data check`` reports for a per-sample dataset: every problem, or a summary.

Used for ``folder:PATH`` datasets and for registered datasets read from the data root (the I2MoE
adapters, ``bench data check adni --data-root R``): building the dataset runs every check
training would run; a :class:`~datasets.problems.DatasetProblems` carries the full list.
"""
from __future__ import annotations

from .problems import DatasetProblems
from .registry import load_dataset, parse_name


def summarize_data(data) -> dict:
    """Samples, modalities with their missing counts, tasks, split sizes and rule, meta columns."""
    n = len(data)
    return {
        "name": data.spec.name, "samples": n,
        "modalities": [{"name": m.name, "kind": m.kind, "shape": list(m.shape),
                        "missing": int(n - int(data.mask[m.name].sum()))} for m in data.spec.modalities],
        "tasks": [{"name": t.name, "kind": t.kind, "classes": list(t.labels),
                   "labelled": int(data.target_mask[t.name].sum())} for t in data.spec.tasks],
        "splits": {s: int(len(v)) for s, v in data.splits.items()},
        "split_rule": data.spec.split_rule,
        "meta": sorted(data.meta),
    }


def check_named(full: str, data_root: str | None = None, split_seed: int = 0) -> tuple[list[str], dict | None]:
    """(every problem, summary or None) of the registered per-sample dataset ``full``; a dataset
    whose files are absent gives its one-line not-found message as the only problem."""
    entry, variant = parse_name(full)
    if entry.segmentation:
        raise ValueError(f"{full} is segmentation data: check its nnU-Net folder with bench data check PATH")
    options = {} if entry.embedded else {"data_root": data_root}
    try:
        data = load_dataset(full, split_seed, **options)
    except DatasetProblems as exc:
        return exc.problems, None
    except Exception as exc:  # noqa: BLE001 - DatasetNotFound and the like: one line
        return [str(exc)], None
    summary = summarize_data(data)
    if entry.input_files is not None:
        from .fingerprints import cached_content_fingerprint

        files, root = entry.input_files(data_root, variant)
        summary.update(files=len(files), fingerprint=cached_content_fingerprint(files, root)[0])
    return [], summary
