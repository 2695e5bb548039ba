"""Suites: named sweeps, read from YAML files.

A suite is a name, a description and a list of **entries**; each entry is methods x datasets x
seeds at a preset, with optional training overrides (``train:``) and method hparams (``set:``,
the same keys as ``--set``). The shipped suites are the ``*.yaml`` files in ``bench/suite_files``
(``quick``, ``full-offline``, ``seg-quick`` and the paper suites); ``bench sweep --suite
path/to/my.yaml`` reads a user's own file. Format::

    name: my-suite                 # optional for a user's file (default: the file name)
    description: what it is for
    entries:
      - methods: [single, early, attention]
        datasets: [wdbc, synthetic-pid:synergy]
        seeds: [0, 1, 2]           # default 0 1 2
        preset: small              # default small
        train: {epochs: 20, patience: 5}    # optional TrainConfig fields
        set: {hidden: 48}          # optional method hparams / training fields, as --set
        description: why this entry is here (optional)

``single`` in a method list expands to ``single:<modality>`` for every modality of each
dataset, so the best single-modality model is always in the table.

Every problem in a file (YAML syntax, an unknown key, an unknown method, dataset or preset, a
wrong type, an empty list, a bad seed) is a one-line :class:`ConfigError` naming the file and
the field. A dataset whose data is missing is not an error here: :func:`suite_jobs` returns its
jobs as :class:`UnavailableJob` rows (with the dataset's one-line reason), so a sweep runs what
it can and ``--dry-run`` lists the rest as unavailable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, format_value
from .execution import Execution
from .yaml_files import check_keys, field_error, load_yaml_file
from .yaml_files import describe as _kind

SUITE_DIR = Path(__file__).resolve().parent / "suite_files"
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_PRESET = "small"
_SUITE_KEYS = ("name", "description", "entries")
_ENTRY_KEYS = ("methods", "datasets", "seeds", "preset", "train", "set", "description")


@dataclass(frozen=True)
class SuiteEntry:
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    preset: str = DEFAULT_PRESET
    train: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def summary(self) -> str:
        """``8 methods x 8 datasets x seeds 0-2 @small, epochs=20 patience=5``."""
        seeds = (f"{self.seeds[0]}-{self.seeds[-1]}" if list(self.seeds) == list(range(self.seeds[0], self.seeds[-1] + 1))
                 and len(self.seeds) > 1 else " ".join(map(str, self.seeds)))
        text = (f"{_names_or_count(self.methods, 'method')} x {_names_or_count(self.datasets, 'dataset')} "
                f"x seeds {seeds} @{self.preset}")
        if self.train:
            text += "; train " + " ".join(f"{k}={v}" for k, v in self.train.items())
        if self.sets:
            text += "; set " + " ".join(f"{k}={v}" for k, v in self.sets.items())
        return text


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    entries: tuple[SuiteEntry, ...]
    source: str = ""   # the YAML file it was read from

    # one-entry views, kept for callers written when a suite was a single grid
    @property
    def methods(self) -> tuple[str, ...]:
        return _union(e.methods for e in self.entries)

    @property
    def datasets(self) -> tuple[str, ...]:
        return _union(e.datasets for e in self.entries)

    @property
    def seeds(self) -> tuple[int, ...]:
        return _union(e.seeds for e in self.entries)

    @property
    def preset(self) -> str:
        return self._only("preset")

    @property
    def train(self) -> dict[str, Any]:
        return self._only("train")

    def _only(self, name: str):
        values = [getattr(e, name) for e in self.entries]
        if any(v != values[0] for v in values):
            raise ValueError(f"suite {self.name!r}: its entries differ in {name}; read suite.entries")
        return values[0]


@dataclass(frozen=True)
class UnavailableJob:
    """A job of a suite whose dataset cannot be read here: it has no key (its modality names and
    data fingerprint need the data), only what it would be."""
    method: str
    dataset: str
    seed: int
    label: str
    why: str
    state: str = "unavailable"
    job: None = None   # as a PlannedJob's, which has the RunConfig


def _names_or_count(names: tuple[str, ...], word: str) -> str:
    return f"({', '.join(names)})" if len(names) <= 5 else f"{len(names)} {word}s"


def _union(groups) -> tuple:
    out: list = []
    for group in groups:
        out += [x for x in group if x not in out]
    return tuple(out)


# ------------------------------------------------------------------------------------ loading

def shipped_suite_files() -> dict[str, Path]:
    """The shipped suite files by name: the offline suites first, then the rest by name."""
    first = ("quick", "full-offline", "seg-quick")
    files = sorted(SUITE_DIR.glob("*.yaml"), key=lambda p: (first.index(p.stem) if p.stem in first else len(first), p.stem))
    return {p.stem: p for p in files}


def suites() -> dict[str, Suite]:
    """Every shipped suite, by name."""
    return {name: load_suite_file(path) for name, path in shipped_suite_files().items()}


def __getattr__(name: str):
    if name == "SUITES":  # read lazily: loading checks method and dataset names against the registries
        return suites()
    raise AttributeError(name)


def get_suite(name: str) -> Suite:
    """A shipped suite by name, or a user's suite file by path (``.yaml``/``.yml`` or a path
    with a directory). Raises ConfigError (a KeyError subclass is not used: the CLI shows it)."""
    files = shipped_suite_files()
    if name in files:
        return load_suite_file(files[name])
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or path.is_file():
        if not path.is_file():
            raise ConfigError(f"suite file {name}: no such file; give a shipped suite name ({', '.join(files)}) "
                              "or the path of a YAML suite file")
        return load_suite_file(path)
    raise ConfigError(f"unknown suite {name!r}; choose one of: {', '.join(files)}, or give the path of a YAML suite file")


def load_suite_file(path: str | Path) -> Suite:
    """Read and check one suite file (every problem is one ConfigError line naming the file and field)."""
    path = Path(path)
    where = str(path)
    raw = load_yaml_file(path, "suite", 'fix the YAML (see README "Suites" for the format)')
    return parse_suite(raw, where, default_name=path.stem)


def _fail(where: str, fieldname: str, problem: str, todo: str) -> ConfigError:
    return field_error("suite", where, fieldname, problem, todo)


def parse_suite(raw: Any, where: str, default_name: str = "") -> Suite:
    if not isinstance(raw, dict):
        raise _fail(where, "top level", f"expected a mapping with keys {', '.join(_SUITE_KEYS)}, got "
                    f"{_kind(raw)}", "write name:, description: and entries: (see README \"Suites\")")
    _check_keys(raw, _SUITE_KEYS, where, "top level")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "name", f"expected a non-empty string, got {_kind(name)}", "give the suite a name")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, "description", f"expected a string, got {_kind(description)}", "quote the description")
    entries = raw.get("entries")
    if not isinstance(entries, list) or not entries:
        raise _fail(where, "entries", f"expected a non-empty list, got {_kind(entries)}",
                    "list one or more entries, each with methods: and datasets:")
    return Suite(name.strip(), description.strip(),
                 tuple(_parse_entry(e, where, f"entries[{i}]") for i, e in enumerate(entries)), where)


def _check_keys(raw: dict, allowed: tuple[str, ...], where: str, fieldname: str) -> None:
    check_keys(raw, allowed, _fail, where, fieldname)


def _names(raw: dict, key: str, where: str, fieldname: str) -> tuple[str, ...]:
    value = raw.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(where, f"{fieldname}.{key}", f"expected a non-empty list of names, got {_kind(value)}",
                    f"list at least one {key[:-1]}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _fail(where, f"{fieldname}.{key}", f"expected names (strings), got {_kind(item)}",
                        f"quote each {key[:-1]} name")
    if len(set(value)) != len(value):
        dup = next(v for v in value if value.count(v) > 1)
        raise _fail(where, f"{fieldname}.{key}", f"{dup!r} appears twice", "list each name once")
    return tuple(value)


def _parse_entry(raw: Any, where: str, fieldname: str) -> SuiteEntry:
    from datasets import DatasetError, parse_name
    from methods import PRESETS, UnknownMethod, method_info

    from .config import TrainConfig, coerce
    from .jobs import MAX_SEED

    if not isinstance(raw, dict):
        raise _fail(where, fieldname, f"expected a mapping, got {_kind(raw)}",
                    f"write the entry as keys {', '.join(_ENTRY_KEYS)}")
    _check_keys(raw, _ENTRY_KEYS, where, fieldname)
    methods = _names(raw, "methods", where, fieldname)
    classes = {}
    for m in methods:
        try:
            classes[m] = method_info(m)[0]  # the static table: a suite is checked without importing methods
        except UnknownMethod as exc:
            raise _fail(where, f"{fieldname}.methods", str(exc).rstrip("."), "see `bench list methods`") from None
    datasets = _names(raw, "datasets", where, fieldname)
    for d in datasets:
        try:
            parse_name(d)
        except DatasetError as exc:
            raise _fail(where, f"{fieldname}.datasets", str(exc).rstrip("."), "see `bench list datasets`") from None

    seeds = raw.get("seeds", list(DEFAULT_SEEDS))
    if not isinstance(seeds, list) or not seeds:
        raise _fail(where, f"{fieldname}.seeds", f"expected a non-empty list of integers, got {_kind(seeds)}",
                    "write e.g. seeds: [0, 1, 2]")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise _fail(where, f"{fieldname}.seeds", f"bad seed {s!r}", f"a seed is an integer in 0..{MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise _fail(where, f"{fieldname}.seeds", "a seed appears twice", "list each seed once")

    preset = raw.get("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise _fail(where, f"{fieldname}.preset", f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")

    base = dataclasses.asdict(TrainConfig())
    train_raw = raw.get("train") or {}
    if not isinstance(train_raw, dict):
        raise _fail(where, f"{fieldname}.train", f"expected a mapping of training fields, got {_kind(train_raw)}",
                    "write e.g. train: {epochs: 20, patience: 5}")
    train: dict[str, Any] = {}
    for key, value in train_raw.items():
        if key not in base:
            raise _fail(where, f"{fieldname}.train.{key}", "not a training field", f"use one of: {', '.join(base)}")
        train[key] = _typed(value, key, base[key], where, f"{fieldname}.train.{key}", coerce)
    try:
        dataclasses.replace(TrainConfig(), **train).validate()
    except ConfigError as exc:
        raise _fail(where, f"{fieldname}.train", str(exc), "fix the value") from None

    sets_raw = raw.get("set") or {}
    if not isinstance(sets_raw, dict):
        raise _fail(where, f"{fieldname}.set", f"expected a mapping of hparams, got {_kind(sets_raw)}",
                    "write e.g. set: {hidden: 48}")
    sets: dict[str, str] = {}
    for key, value in sets_raw.items():
        if not isinstance(key, str):
            raise _fail(where, f"{fieldname}.set", f"key {key!r} is not a name", "quote it")
        if isinstance(value, (dict, list)) or value is None:
            raise _fail(where, f"{fieldname}.set.{key}", f"expected a single value, got {_kind(value)}",
                        "give one value (a list hparam is a comma-separated string, e.g. \"2,2,2,2\")")
        text = format_value(value)
        for m, cls in classes.items():
            defaults = cls.defaults()
            if key in base:
                _typed(value, key, base[key], where, f"{fieldname}.set.{key}", coerce)
            elif key in defaults:
                _typed(value, key, defaults[key], where, f"{fieldname}.set.{key}", coerce)
            else:
                raise _fail(where, f"{fieldname}.set.{key}", f"method {m!r} has no hparam {key!r}",
                            "set it in an entry of its own methods (see `bench list methods`)")
        sets[key] = text

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, f"{fieldname}.description", f"expected a string, got {_kind(description)}", "quote it")
    return SuiteEntry(methods, datasets, tuple(seeds), preset, train, sets, description.strip())


def _typed(value: Any, key: str, default: Any, where: str, fieldname: str, coerce) -> Any:
    """A YAML value as the type of the field's default (ints stay ints, so keys match ``--set``)."""
    if isinstance(value, (dict, list)) or value is None:
        raise _fail(where, fieldname, f"expected a single value, got {_kind(value)}", "give one value")
    if isinstance(default, bool) and not isinstance(value, bool):
        raise _fail(where, fieldname, f"expected true or false, got {_kind(value)}", "write true or false")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, bool):
        raise _fail(where, fieldname, f"expected a number, got {_kind(value)}", "write a number")
    if isinstance(default, str) and not isinstance(value, str):
        raise _fail(where, fieldname, f"expected a string, got {_kind(value)}", "quote the value")
    text = format_value(value)
    try:
        return coerce(key, text, default)
    except ConfigError as exc:
        raise _fail(where, fieldname, str(exc).split(": ", 1)[-1], "fix the value") from None


# ---------------------------------------------------------------------------------- expansion

def dataset_unavailable(dataset: str, data_root: str | None) -> str | None:
    """The dataset's one-line DatasetError when its data cannot be read here, else None."""
    from datasets import DatasetError, parse_name

    try:
        entry, variant = parse_name(dataset)
        if entry.check is not None:
            entry.check(data_root, variant)
    except DatasetError as exc:
        return " ".join(str(exc).split())
    return None


def suite_jobs(suite: Suite, seeds: list[int] | None = None, preset: str | None = None,
               sets: dict[str, str] | None = None, split_seed: int = 0, device: str = "cpu",
               data_root: str | None = None, threads: int | None = None,
               execution: Execution | None = None) -> list[RunConfig | UnavailableJob]:
    """Every job of the suite in entry order: a RunConfig per job whose dataset is readable
    here (``bench.sweep.expand`` per entry and dataset), an UnavailableJob per job whose dataset
    is not. ``seeds``/``preset``/``sets`` (the command line's) override each entry's."""
    from datasets import DatasetError

    from .sweep import expand

    out: list[RunConfig | UnavailableJob] = []
    reasons: dict[str, str | None] = {}
    for i, entry in enumerate(suite.entries):
        entry_seeds = list(seeds or entry.seeds)
        entry_preset = preset or entry.preset
        entry_sets = {**entry.sets, **(sets or {})}
        for dataset in entry.datasets:
            if dataset not in reasons:
                reasons[dataset] = dataset_unavailable(dataset, data_root)
            why = reasons[dataset]
            if why is None:
                try:
                    out += expand(list(entry.methods), [dataset], entry_seeds, preset=entry_preset, sets=entry_sets,
                                  train=entry.train, split_seed=split_seed, device=device, data_root=data_root,
                                  threads=threads, execution=execution)
                    continue
                except DatasetError as exc:   # data that passes the check but cannot be listed or read
                    why = reasons[dataset] = " ".join(str(exc).split())
                except ConfigError as exc:
                    raise ConfigError(f"suite {suite.name} ({suite.source}) entries[{i}] on {dataset}: {exc}") from None
            out += [UnavailableJob(m, dataset, s, _label(m, dataset, entry_preset, entry_sets, entry.train), why)
                    for m in entry.methods for s in entry_seeds]
    return out


def _label(method: str, dataset: str, preset: str, sets: dict[str, str], train: dict[str, Any]) -> str:
    """What the job's label would be (the real one needs the data): preset and overrides."""
    from datasets import parse_name

    from .config import config_label
    from .jobs import protocol_defaults

    protocol = dataclasses.asdict(protocol_defaults(parse_name(dataset)[0].segmentation, preset))
    fields: dict[str, Any] = {"preset": preset} if preset != DEFAULT_PRESET else {}
    fields.update({k: v for k, v in train.items() if protocol.get(k) != v})
    fields.update(sets)
    return config_label(method, fields)
