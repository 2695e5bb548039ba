"""Read the run store into tidy pandas frames (results/ never trains anything, never imports torch).

Only a few small columns of the ``runs`` table are read (identity, ``metrics``, ``catalogue``,
``label_fields``), never the whole records, so a store of 10,000 runs loads in well under a second
(``python -m bench perf leaderboard`` measures it). The metric catalogue stored with each run
says which metrics are headline ones and which direction is better, so this module needs none of
the code that computed them.

``runs_frame``: one row per (run, split, task, metric) with the run's ``config_id`` and ``label``,
so that results group by configuration, never by method name alone. By default only the newest
run of each request is kept (``latest``): a run redone after a code or data change replaces the
stale one instead of being averaged with it.
``cases_frame``: the stored per-case test predictions of the selected runs, for paired tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from bench.store import RESULT_PURPOSES, RunStore

RUN_COLUMNS = ["key", "config_id", "label", "method", "dataset", "seed", "split_seed", "preset", "code_version",
               "purpose", "split", "task", "metric", "value", "higher"]
CONFIG_COLUMNS = ["config_id", "method", "dataset", "label", "label_fields", "code_version", "differs"]
#: key fields never shown as what tells two configurations apart (the seed is not part of one)
_NOT_SHOWN = {"seed", "method", "dataset", "key", "config_id", "request_id", "label_fields",
              "code_version"}   # the label says "(code v)" for that (results.leaderboard)


@dataclass
class Results:
    """Runs as a long frame plus one row per configuration (its label fields, for labels)."""

    frame: pd.DataFrame
    configs: pd.DataFrame
    #: (dataset, task) -> the task's primary metric (from the runs' catalogues), e.g. accuracy
    primary: dict = field(default_factory=dict)


def load_results(store: RunStore, split: str | None = None, headline_only: bool = False, latest: bool = True,
                 datasets: list[str] | None = None, keys=None, purposes: tuple[str, ...] = RESULT_PURPOSES,
                 suite: str | None = None) -> Results:
    """Finished runs of ``purposes`` as a :class:`Results`; ``split`` keeps one split's metrics,
    ``headline_only`` the catalogue's headline metrics of each task, ``suite`` the runs its sweeps stored."""
    rows = store.result_rows(purposes=purposes, datasets=datasets, keys=keys, suite=suite)
    if latest:
        newest: dict[str, tuple] = {}
        for r in rows:
            rid = r[2] or r[0]
            if rid not in newest or (r[11] or "") > (newest[rid][11] or ""):
                newest[rid] = r
        rows = list(newest.values())
    # a fixed order, whatever order the runs were stored in (which worker finished first): the same
    # runs always give the same row order and the same floating-point sums, to the last bit
    rows.sort(key=lambda r: (r[6], r[1] or r[0], r[7], r[0]))
    parsed: dict[str, dict] = {}   # catalogue / label_fields strings repeat across runs: parse each once

    def parse(text: str | None) -> dict:
        if not text:
            return {}
        if text not in parsed:
            parsed[text] = json.loads(text)
        return parsed[text]

    out, configs, primary = [], {}, {}
    for (key, config_id, _rid, label, label_fields, method, dataset, seed, split_seed, preset, code_version, _created,
         purpose, metrics_text, catalogue_text) in rows:
        config_id = config_id or key
        catalogue = parse(catalogue_text)
        tasks, higher = catalogue.get("tasks", {}), catalogue.get("higher", {})
        for task, info in tasks.items():
            if info.get("primary") and (dataset, task) not in primary:
                primary[(dataset, task)] = info["primary"]
        base = (key, config_id, label or method, method, dataset, seed, split_seed, preset, code_version, purpose)
        for split_name, by_task in json.loads(metrics_text or "{}").items():
            if split is not None and split_name != split:
                continue
            for task, values in by_task.items():
                shown = tasks.get(task, {}).get("headline") if headline_only else None
                for metric in (shown if shown is not None else values):
                    if metric in values:
                        out.append((*base, split_name, task, metric, float(values[metric]), higher.get(metric)))
        if config_id not in configs:
            configs[config_id] = [config_id, method, dataset, label or method, parse(label_fields), code_version, {},
                                  key]
    _tell_apart(store, configs)
    frame = pd.DataFrame(out, columns=RUN_COLUMNS)
    return Results(frame, pd.DataFrame([c[:-1] for c in configs.values()], columns=CONFIG_COLUMNS), primary)


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _tell_apart(store: RunStore, configs: dict[str, list]) -> None:
    """For configurations whose method and label fields are the same (they differ only in a key
    field the label leaves out: threads, device, data or code), fill ``differs`` with the key
    fields that tell them apart, e.g. ``{"threads": 2}``, so a leaderboard says ``late[threads=2]``
    instead of a config id. Reads one whole record per such configuration only (rare)."""
    groups: dict[tuple, list[list]] = {}
    for row in configs.values():
        groups.setdefault((row[2], row[1], json.dumps(row[4], sort_keys=True, default=str)), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        fields = {}
        for row in group:
            record = store.get(row[-1])
            fields[row[0]] = _flat({k: v for k, v in (record.config if record else {}).items()
                                    if k not in _NOT_SHOWN}) if record else {}
        names = sorted({k for f in fields.values() for k in f})
        differ = [k for k in names if len({json.dumps(f.get(k), default=str) for f in fields.values()}) > 1]
        for row in group:
            row[6] = {k: fields[row[0]].get(k) for k in differ}


def runs_frame(store: RunStore, split: str | None = None, headline_only: bool = False, latest: bool = True,
               datasets: list[str] | None = None, keys=None) -> pd.DataFrame:
    """The long frame of :func:`load_results`."""
    return load_results(store, split, headline_only, latest, datasets, keys).frame


def cases_frame(store: RunStore, keys: list[str]) -> pd.DataFrame:
    frames = []
    for key in keys:
        rec = store.get(key)
        df = store.cases(key)
        if rec is None or df.empty:
            continue
        frames.append(df.assign(key=key, config_id=rec.config_id, label=rec.label or rec.method, method=rec.method,
                                dataset=rec.dataset, seed=rec.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
