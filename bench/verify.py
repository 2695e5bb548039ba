"""``bench verify FILE``: read a claims file, find or run the jobs each claim needs, test the claims.

A claims file (``claims/*.yaml``; format in README "Verifying claims" and docs/claims.md) states
a paper's headline claims in checkable form: method, baseline, dataset(s), metric, direction,
claimed size and the source. Each claim's jobs are the method and the baseline on each dataset
over the protocol's seeds, built exactly as ``bench sweep`` builds them (``bench.sweep.expand``,
or a shipped suite's entry), so a claim reuses the runs a sweep stored and the printed
``bench sweep`` lines reproduce them. Jobs not yet in the store are run (``run_sweep``); a dataset
whose data is missing here (the registry's ``check`` raises ``DatasetError``), or a method or
dataset the registry does not have (declared under ``unregistered:``), makes that claim **not
checkable here**, with what is missing, and runs nothing for it. The statistics and verdicts are
:mod:`results.claims`'.

Every problem in a file is one :class:`ConfigError` line naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, format_value
from .yaml_files import check_keys, field_error, load_yaml_file
from .yaml_files import describe as _kind

_TOP_KEYS = ("title", "paper", "source", "alpha", "min_seeds", "protocol", "unregistered", "claims")
_CLAIM_KEYS = ("id", "claim", "method", "baseline", "dataset", "datasets", "task", "metric", "direction", "size",
               "source", "protocol", "note", "min_seeds", "relative", "ratio", "margin", "split", "baseline_split",
               "over", "at_least", "all_of")
#: directions that name the method's value instead of "better/worse" (cost claims: "fewer parameters")
_LOWER = ("fewer", "less", "lower", "smaller", "faster")
_HIGHER = ("more", "higher", "larger")
_PROTOCOL_KEYS = ("suite", "preset", "seeds", "set", "split_seed")
_SIDE_KEYS = ("name", "set")


@dataclass(frozen=True)
class Side:
    """One side of a claim: a method name and its own ``--set`` overrides."""
    name: str
    sets: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        return self.name + (f"[{','.join(f'{k}={v}' for k, v in self.sets)}]" if self.sets else "")


@dataclass(frozen=True)
class Protocol:
    suite: str | None = None
    preset: str = "small"
    seeds: tuple[int, ...] = (0, 1, 2)
    sets: tuple[tuple[str, str], ...] = ()
    split_seed: int = 0
    seeds_given: bool = False

    def text(self) -> str:
        seeds = " ".join(map(str, self.seeds))
        if self.suite:
            return f"suite {self.suite}" + (f", seeds {seeds}" if self.seeds_given else "")
        return (f"preset {self.preset}, seeds {seeds}" + (f", split seed {self.split_seed}" if self.split_seed else "")
                + (", set " + " ".join(f"{k}={v}" for k, v in self.sets) if self.sets else ""))


@dataclass
class Claim:
    id: str
    text: str
    method: Side | None
    baseline: Side | None
    datasets: tuple[str, ...]
    metric: str
    higher: bool
    tasks: tuple[str | None, ...] = (None,)
    direction: str = "better"
    size: float | None = None
    source: str = ""
    protocol: Protocol = field(default_factory=Protocol)
    field_name: str = ""   # claims[i], for error messages
    min_seeds: int = 3
    kind: str = "difference"
    relative: bool = False
    ratio: float | None = None
    margin: float | None = None
    value: float | None = None       # kind value: the number quoted from the paper (no baseline runs)
    split: str = "test"
    baseline_split: str = "test"
    over: str | int = "every"
    parts: tuple[str, ...] = ()      # kind all_of

    def sides(self) -> tuple[Side, ...]:
        return tuple(x for x in (self.method, self.baseline) if x is not None)


@dataclass
class ClaimsFile:
    path: str
    title: str
    alpha: float
    claims: list[Claim]
    unregistered_datasets: dict[str, str] = field(default_factory=dict)
    unregistered_methods: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------- parsing
def _fail(where: str, fieldname: str, problem: str, todo: str) -> ConfigError:
    return field_error("claims", where, fieldname, problem, todo)


def _check_keys(raw: dict, allowed: tuple[str, ...], where: str, fieldname: str) -> None:
    check_keys(raw, allowed, _fail, where, fieldname)


def _text(raw: dict, key: str, where: str, fieldname: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, fieldname, f"expected a non-empty string, got {_kind(value)}",
                    "write it as text (quote it if needed)")
    return " ".join(value.split())


def _sets(raw: Any, where: str, fieldname: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(where, fieldname, f"expected a mapping of settings, got {_kind(raw)}", "write e.g. set: {epochs: 10}")
    out = []
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, (dict, list)) or value is None:
            raise _fail(where, f"{fieldname}.{key}", f"expected a single value, got {_kind(value)}", "give one value")
        out.append((key, format_value(value)))
    return tuple(sorted(out))


def _protocol(raw: Any, base: Protocol | None, where: str, fieldname: str) -> Protocol:
    from methods import PRESETS

    from .jobs import MAX_SEED

    if raw is None:
        return base or Protocol()
    if not isinstance(raw, dict):
        raise _fail(where, fieldname, f"expected a mapping, got {_kind(raw)}",
                    "write e.g. protocol: {preset: tiny, seeds: [0, 1, 2], set: {epochs: 10}} or {suite: NAME}")
    _check_keys(raw, _PROTOCOL_KEYS, where, fieldname)
    p = dataclasses.replace(base) if base else Protocol()
    if "suite" in raw:
        if any(k in raw for k in ("preset", "set", "split_seed")):
            raise _fail(where, fieldname, "suite: takes its preset and settings from the suite",
                        "give suite: (and optionally seeds:) or preset:/set:, not both")
        from .suites import get_suite

        try:
            suite = get_suite(str(raw["suite"]))
        except ConfigError as exc:
            raise _fail(where, f"{fieldname}.suite", str(exc), "see `bench list suites`") from None
        p = Protocol(suite=suite.name)
    elif any(k in raw for k in ("preset", "set", "split_seed")):
        p = dataclasses.replace(p, suite=None)
    if "preset" in raw:
        if raw["preset"] not in PRESETS:
            raise _fail(where, f"{fieldname}.preset", f"unknown preset {raw['preset']!r}", f"choose one of: {', '.join(PRESETS)}")
        p = dataclasses.replace(p, preset=raw["preset"])
    if "seeds" in raw:
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int)
                                                           or not 0 <= s <= MAX_SEED for s in seeds):
            raise _fail(where, f"{fieldname}.seeds", f"expected a non-empty list of seeds, got {_kind(seeds)}",
                        f"write e.g. seeds: [0, 1, 2] (integers in 0..{MAX_SEED})")
        if len(set(seeds)) != len(seeds):
            raise _fail(where, f"{fieldname}.seeds", "a seed appears twice", "list each seed once")
        p = dataclasses.replace(p, seeds=tuple(seeds), seeds_given=True)
    if "set" in raw:
        p = dataclasses.replace(p, sets=_sets(raw["set"], where, f"{fieldname}.set"))
    if "split_seed" in raw:
        s = raw["split_seed"]
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise _fail(where, f"{fieldname}.split_seed", f"bad seed {s!r}", f"an integer in 0..{MAX_SEED}")
        p = dataclasses.replace(p, split_seed=s)
    return p


def _min_seeds(raw: Any, default: int, where: str, fieldname: str) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 2:
        raise _fail(where, fieldname, f"expected an integer >= 2, got {_kind(raw)}",
                    "write e.g. min_seeds: 3 (seeds each side needs before a claim can be supported or refuted)")
    return raw


def _side(raw: Any, where: str, fieldname: str, unregistered: dict[str, str]) -> Side:
    from methods import UnknownMethod, method_info

    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise _fail(where, fieldname, f"expected a method name or {{name: ..., set: {{...}}}}, got {_kind(raw)}",
                    "write e.g. method: attention, or method: {name: i2moe, set: {backbone: late}}")
    _check_keys(raw, _SIDE_KEYS, where, fieldname)
    name = raw["name"].strip()
    sets = _sets(raw.get("set"), where, f"{fieldname}.set")
    if name in unregistered:
        return Side(name, sets)
    if name == "single":
        raise _fail(where, fieldname, "'single' stands for every modality", "name one, e.g. single:left")
    try:
        cls, _ = method_info(name)
    except UnknownMethod as exc:
        raise _fail(where, fieldname, str(exc).rstrip("."), "see `bench list methods`, or declare it under "
                    "unregistered.methods") from None
    _check_set_keys(sets, cls, where, f"{fieldname}.set")
    return Side(name, sets)


def _check_set_keys(sets, cls, where: str, fieldname: str) -> None:
    from .config import TrainConfig

    base, defaults = dataclasses.asdict(TrainConfig()), cls.defaults()
    for key, _ in sets:
        if key not in base and key not in defaults:
            raise _fail(where, f"{fieldname}.{key}", f"method {cls.name!r} has no hparam or training field {key!r}",
                        "see `bench list methods`")


def load_claims(path: str | Path) -> ClaimsFile:
    """Read and check a claims file (every problem: one ConfigError line naming the file and field)."""

    where = str(path)
    raw = load_yaml_file(path, "claims")
    if not isinstance(raw, dict):
        raise _fail(where, "top level", f"expected a mapping, got {_kind(raw)}",
                    "write title:, protocol: and claims: (see docs/claims.md)")
    _check_keys(raw, _TOP_KEYS, where, "")
    title = _text(raw, "title", where, "title") or _text(raw, "paper", where, "paper") or Path(path).stem
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise _fail(where, "alpha", f"expected a number in (0, 1), got {_kind(alpha)}", "write e.g. alpha: 0.05")
    from results.claims import MIN_SEEDS

    min_seeds = _min_seeds(raw.get("min_seeds"), MIN_SEEDS, where, "min_seeds")
    unreg = raw.get("unregistered") or {}
    if not isinstance(unreg, dict):
        raise _fail(where, "unregistered", f"expected a mapping, got {_kind(unreg)}",
                    "write unregistered: {datasets: {NAME: what is missing}, methods: {NAME: ...}}")
    _check_keys(unreg, ("datasets", "methods"), where, "unregistered")
    missing: dict[str, dict[str, str]] = {}
    for kind in ("datasets", "methods"):
        part = unreg.get(kind) or {}
        if not isinstance(part, dict) or any(not isinstance(k, str) or not isinstance(v, str) or not v.strip()
                                             for k, v in part.items()):
            raise _fail(where, f"unregistered.{kind}", "expected a mapping of name: what is missing (text)",
                        "write e.g. adni: \"ADNI is not in the registry (credentialed access)\"")
        missing[kind] = {k: " ".join(v.split()) for k, v in part.items()}
    protocol = _protocol(raw.get("protocol"), None, where, "protocol")
    items = raw.get("claims")
    if not isinstance(items, list) or not items:
        raise _fail(where, "claims", f"expected a non-empty list, got {_kind(items)}", "list one or more claims")
    claims, ids = [], set()
    for i, item in enumerate(items):
        fn = f"claims[{i}]"
        if not isinstance(item, dict):
            raise _fail(where, fn, f"expected a mapping, got {_kind(item)}", f"write keys {', '.join(_CLAIM_KEYS)}")
        cid = item.get("id")
        if not isinstance(cid, str) or not cid.strip():
            raise _fail(where, f"{fn}.id", f"expected a non-empty string, got {_kind(cid)}", "give every claim an id")
        fn = f"claims[{i}] ({cid})"
        _check_keys(item, _CLAIM_KEYS, where, fn)
        if cid in ids:
            raise _fail(where, f"{fn}.id", "appears twice", "give each claim its own id")
        ids.add(cid)
        text = _text(item, "claim", where, f"{fn}.claim", required=True)
        claim_min_seeds = _min_seeds(item.get("min_seeds"), min_seeds, where, f"{fn}.min_seeds")
        if "all_of" in item:
            claims.append(_all_of(item, cid.strip(), text, where, fn, claim_min_seeds))
            continue
        claim = _claim(item, cid.strip(), text, where, fn, missing, protocol, claim_min_seeds)
        registered = tuple(d for d in claim.datasets if d not in missing["datasets"])
        for side, which in ((claim.method, "method"), (claim.baseline, "baseline")):
            if side is not None and claim.protocol.suite and side.name not in missing["methods"]:
                _suite_entry(claim, side, where, f"{fn}.{which}", registered)
        claims.append(claim)
    known = {c.id: c for c in claims}
    for c in claims:
        for part in c.parts:
            if part not in known or part == c.id or known[part].kind == "all_of":
                raise _fail(where, f"{c.field_name}.all_of", f"{part!r} is not another (simple) claim of this file",
                            f"name claims of this file: {', '.join(k for k in known if k != c.id)}")
    return ClaimsFile(where, title, float(alpha), claims, missing["datasets"], missing["methods"])


def _number(item: dict, key: str, where: str, fn: str, todo: str, positive: bool = False) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise _fail(where, f"{fn}.{key}", f"expected a number {'>' if positive else '>='} 0, got {_kind(value)}", todo)
    return float(value)


def _split(item: dict, key: str, where: str, fn: str) -> str:
    from .robustness import parse_split

    value = item.get(key, "test")
    if not isinstance(value, str) or (value != "test" and parse_split(value) is None):
        raise _fail(where, f"{fn}.{key}", f"expected test, test[-MODALITY] or test[noise:MODALITY@LEVEL], "
                    f"got {_kind(value)}", "e.g. split: test[-image] (the stored robustness splits)")
    return value


def _all_of(item: dict, cid: str, text: str, where: str, fn: str, min_seeds: int) -> Claim:
    """A compound claim ("comparable accuracy with fewer parameters"): it holds when every named
    claim of the file holds."""
    extra = sorted(set(item) - {"id", "claim", "all_of", "source", "note", "min_seeds"})
    if extra:
        raise _fail(where, fn, f"a claim with all_of: takes no {', '.join(extra)}",
                    "put the method, metric and datasets in the claims it names")
    parts = item["all_of"]
    if not isinstance(parts, list) or len(parts) < 2 or any(not isinstance(p, str) for p in parts) \
            or len(set(parts)) != len(parts):
        raise _fail(where, f"{fn}.all_of", f"expected a list of at least two distinct claim ids, got {_kind(parts)}",
                    "e.g. all_of: [comparable-accuracy, fewer-parameters]")
    return Claim(cid, text, None, None, (), "", True, kind="all_of", parts=tuple(parts), field_name=fn,
                 source=_source(item, where, fn), min_seeds=min_seeds)


def _source(item: dict, where: str, fn: str) -> str:
    source = item.get("source")
    if isinstance(source, dict):
        _check_keys(source, ("quote", "page", "where"), where, f"{fn}.source")
        source = "; ".join(f"{k} {' '.join(str(v).split())}" if k != "quote" else f"\"{' '.join(str(v).split())}\""
                           for k, v in source.items())
    elif source is not None and not isinstance(source, str):
        raise _fail(where, f"{fn}.source", f"expected text or {{quote, page, where}}, got {_kind(source)}",
                    "quote the paper and give the page")
    return " ".join((source or "").split())


def _claim(item: dict, cid: str, text: str, where: str, fn: str, missing: dict, protocol: Protocol,
           min_seeds: int) -> Claim:
    """One simple claim: the kind follows from its fields (docs/claims.md "Claim kinds")."""
    from results.claims import COST_METRICS

    from .catalogue import direction

    if "method" not in item or "baseline" not in item:
        raise _fail(where, fn, f"missing {'method' if 'method' not in item else 'baseline'}",
                    "give method: and baseline: (a method, or {value: NUMBER} for a number quoted from the paper)")
    method = _side(item["method"], where, f"{fn}.method", missing["methods"])
    value, baseline = None, None
    if isinstance(item["baseline"], dict) and "value" in item["baseline"]:
        _check_keys(item["baseline"], ("value",), where, f"{fn}.baseline")
        v = item["baseline"]["value"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _fail(where, f"{fn}.baseline.value", f"expected a number, got {_kind(v)}",
                        "write the number the paper reports, e.g. baseline: {value: 0.90}")
        value = float(v)
    else:
        baseline = _side(item["baseline"], where, f"{fn}.baseline", missing["methods"])
    split = _split(item, "split", where, fn)
    baseline_split = _split(item, "baseline_split", where, fn) if "baseline_split" in item else split
    if method == baseline and split == baseline_split:
        raise _fail(where, fn, "method and baseline are the same",
                    "compare two different configurations, or one configuration on two splits (split:, baseline_split:)")
    datasets = _datasets(item, where, fn, missing["datasets"])
    metric = item.get("metric")
    higher = COST_METRICS[metric][0] if metric in COST_METRICS else \
        (direction(metric) if isinstance(metric, str) else None)
    if higher is None:
        raise _fail(where, f"{fn}.metric", f"expected a metric with a direction, got {_kind(metric)}",
                    "e.g. accuracy, auroc, macro_f1, mae, dice, dice_<organ>, hd95, agreement, or a cost field: "
                    + ", ".join(COST_METRICS))
    if metric in COST_METRICS and (split != "test" or baseline_split != "test"):
        raise _fail(where, f"{fn}.split", "a cost field belongs to the run, not to an evaluation split",
                    "leave split: out of cost claims")
    task = item.get("task")
    tasks = task if isinstance(task, list) else [task]
    if not tasks or any(t is not None and (not isinstance(t, str) or not t.strip()) for t in tasks) \
            or (isinstance(task, list) and None in tasks) or len(set(tasks)) != len(tasks):
        raise _fail(where, f"{fn}.task", f"expected a task name or a list of distinct task names, got {_kind(task)}",
                    "e.g. task: label, or task: [flare22, atlas23] (the claim must hold on every one)")
    dirn = item.get("direction", "better")
    if dirn in _LOWER or dirn in _HIGHER:   # "fewer parameters": the method's value is lower
        dirn = "better" if (dirn in _HIGHER) == bool(higher) else "worse"
    if dirn not in ("better", "worse", "noninferior", "equivalent"):
        raise _fail(where, f"{fn}.direction", f"expected better, worse, noninferior, equivalent, "
                    f"{', '.join(_LOWER)} or {', '.join(_HIGHER)}, got {_kind(dirn)}",
                    "better: the method beats the baseline in the metric's direction; fewer/faster/...: its value is lower")
    size = _number(item, "size", where, fn, "e.g. size: 0.0345 for 3.45 Dice points (relative: true for 3.45%)")
    ratio = _number(item, "ratio", where, fn, "e.g. ratio: 0.3 for \"uses 30% of the parameters\"", positive=True)
    margin = _number(item, "margin", where, fn, "e.g. margin: 0.01 (1 point; relative: true for 1%)")
    relative = item.get("relative", False)
    if not isinstance(relative, bool):
        raise _fail(where, f"{fn}.relative", f"expected true or false, got {_kind(relative)}",
                    "relative: true makes size / margin a fraction of the baseline (0.0345 = 3.45%)")
    kind = "value" if value is not None else "difference"
    if dirn in ("noninferior", "equivalent"):
        if margin is None or size is not None or ratio is not None:
            raise _fail(where, f"{fn}.margin", f"direction {dirn} needs margin: (and no size: or ratio:)",
                        "e.g. margin: 0.01: the method is at most 1 point worse (noninferior) or within ±1 point")
        if dirn == "equivalent" and relative:
            raise _fail(where, f"{fn}.relative", "equivalence margins are absolute", "give margin: in the metric's units")
        if value is not None:
            raise _fail(where, f"{fn}.baseline", f"direction {dirn} compares two configurations",
                        "name a baseline method")
        kind = dirn
    elif margin is not None:
        raise _fail(where, f"{fn}.margin", "margin: goes with direction: noninferior or equivalent",
                    "use size: for a claimed advantage")
    if ratio is not None:
        if size is not None or relative or value is not None:
            raise _fail(where, f"{fn}.ratio", "ratio: is a claim of its own (method / baseline)",
                        "give ratio: alone, e.g. ratio: 0.3 with direction: fewer")
        kind = "ratio"
    elif relative and kind == "difference":
        if size is None:
            raise _fail(where, f"{fn}.relative", "relative: true needs size:", "e.g. size: 0.0345 for +3.45%")
        kind = "relative"
    elif relative and kind == "value" and size is None:
        raise _fail(where, f"{fn}.relative", "relative: true needs size:", "e.g. size: 0.05 for 5% above the number")
    over = item.get("over", "every")
    if "at_least" in item:
        k = item["at_least"]
        if "over" in item or isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(datasets):
            raise _fail(where, f"{fn}.at_least", f"expected an integer in 1..{len(datasets)} (and no over:), "
                        f"got {_kind(k)}", "e.g. at_least: 2 for \"on at least 2 of 3 datasets\"")
        over = k
    elif over not in ("every", "mean"):
        raise _fail(where, f"{fn}.over", f"expected every or mean, got {_kind(over)}",
                    "every: the claim must hold on each dataset; mean: on the mean over the datasets; "
                    "or at_least: k")
    if over == "mean" and (len(datasets) < 2 or len(tasks) > 1):
        raise _fail(where, f"{fn}.over", "over: mean needs two or more datasets and one task",
                    "list the datasets under datasets:")
    return Claim(cid, text, method, baseline, datasets, metric, bool(higher),
                 tuple(t.strip() if t else None for t in tasks), dirn, size, _source(item, where, fn),
                 _protocol(item.get("protocol"), protocol, where, f"{fn}.protocol"), fn, min_seeds,
                 kind=kind, relative=relative, ratio=ratio, margin=margin, value=value, split=split,
                 baseline_split=baseline_split, over=over)


def _datasets(item: dict, where: str, fn: str, unregistered: dict[str, str]) -> tuple[str, ...]:
    from datasets import DatasetError, parse_name

    if ("dataset" in item) == ("datasets" in item):
        raise _fail(where, fn, "give dataset: (one) or datasets: (a list; the claim must hold on every one)",
                    "not both, and not neither")
    value = item.get("datasets", item.get("dataset"))
    value = [value] if "dataset" in item else value
    if not isinstance(value, list) or not value or any(not isinstance(d, str) or not d for d in value):
        raise _fail(where, f"{fn}.datasets", f"expected dataset names, got {_kind(value)}", "see `bench list datasets`")
    if len(set(value)) != len(value):
        raise _fail(where, f"{fn}.datasets", "a dataset appears twice", "list each dataset once")
    for d in value:
        if d in unregistered:
            continue
        try:
            parse_name(d)
        except DatasetError as exc:
            raise _fail(where, f"{fn}.datasets", str(exc).rstrip("."), "see `bench list datasets`, or declare it "
                        "under unregistered.datasets") from None
    return tuple(value)


def _suite_entry(claim: Claim, side: Side, where: str, fieldname: str, registered: tuple[str, ...] | None = None):
    """The entry of the claim's suite that runs this side (same method name and ``set:``) on the
    claim's registered datasets (``registered``; all of them when None)."""
    from .suites import get_suite

    suite = get_suite(claim.protocol.suite)
    datasets = claim.datasets if registered is None else registered
    for entry in suite.entries:
        if side.name in entry.methods and tuple(sorted(entry.sets.items())) == side.sets \
                and all(d in entry.datasets for d in datasets):
            return entry
    raise _fail(where, fieldname, f"suite {suite.name} has no entry running {side.label()}"
                + (f" on {', '.join(datasets)}" if datasets else ""),
                "name the method and set: as an entry of the suite does (see `bench list suites`)")


# --------------------------------------------------------------------------------- jobs
@dataclass
class Planned:
    """What the claims need: per claim and dataset the jobs of each side (or why none)."""
    checks: dict[tuple[str, str], dict] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)     # key -> RunConfig
    suites: dict[str, str | None] = field(default_factory=dict)   # key -> suite name
    commands: dict[str, list[str]] = field(default_factory=dict)  # claim id -> sweep lines


def _side_jobs(claim: Claim, side: Side, dataset: str, device: str, data_root: str | None, threads: int | None):
    from .sweep import expand

    p = claim.protocol
    if p.suite:
        entry = _suite_entry(claim, side, "", "", (dataset,))
        seeds = list(p.seeds) if p.seeds_given else list(entry.seeds)
        return expand([side.name], [dataset], seeds, preset=entry.preset, sets=dict(entry.sets), train=entry.train,
                      split_seed=0, device=device, data_root=data_root, threads=threads)
    return expand([side.name], [dataset], list(p.seeds), preset=p.preset, sets={**dict(p.sets), **dict(side.sets)},
                  split_seed=p.split_seed, device=device, data_root=data_root, threads=threads)


def plan_claims(cf: ClaimsFile, device: str = "cpu", data_root: str | None = None, threads: int | None = None,
                workers: int = 1, runs_args: str = "") -> Planned:
    from datasets import DatasetError

    from .suites import dataset_unavailable

    out = Planned()
    reasons: dict[str, str | None] = {}
    for claim in cf.claims:
        for dataset in claim.datasets:
            why = []
            for side in claim.sides():
                if side.name in cf.unregistered_methods:
                    why.append(f"method {side.name}: {cf.unregistered_methods[side.name]}")
            if dataset in cf.unregistered_datasets:
                why.append(f"dataset {dataset}: {cf.unregistered_datasets[dataset]}")
            else:
                if dataset not in reasons:
                    reasons[dataset] = dataset_unavailable(dataset, data_root)
                if reasons[dataset]:
                    why.append(f"dataset {dataset}: {reasons[dataset]}")
            entry: dict = {"missing": "; ".join(why), "method": [], "baseline": []}
            if not why:
                try:
                    for side, which in ((claim.method, "method"), (claim.baseline, "baseline")):
                        if side is None:   # a number quoted from the paper: nothing to run
                            continue
                        jobs = _side_jobs(claim, side, dataset, device, data_root, threads)
                        entry[which] = [j.key() for j in jobs]
                        for j in jobs:
                            out.jobs[j.key()] = j
                            out.suites[j.key()] = claim.protocol.suite
                except DatasetError as exc:   # data that passes the check but cannot be read
                    entry = {"missing": f"dataset {dataset}: {' '.join(str(exc).split())}", "method": [], "baseline": []}
                except ConfigError as exc:
                    raise ConfigError(f"claims file {cf.path}: {claim.field_name} on {dataset}: {exc}") from None
            out.checks[(claim.id, dataset)] = entry
        if claim.kind != "all_of":
            out.commands[claim.id] = _commands(claim, cf, device, data_root, threads, workers, runs_args)
    return out


def _commands(claim: Claim, cf: ClaimsFile, device: str, data_root: str | None, threads: int | None, workers: int,
              runs_args: str) -> list[str]:
    """``bench sweep`` lines that run (or find) exactly this claim's jobs, then ``bench verify``."""
    common = f" --workers {workers}" + (f" --threads {threads}" if threads else "") \
        + (f" --device {shlex.quote(device)}" if device != "cpu" else "") \
        + (f" --data-root {shlex.quote(data_root)}" if data_root else "") + runs_args
    p = claim.protocol
    sides = [s for s in claim.sides() if s.name not in cf.unregistered_methods]
    datasets = [d for d in claim.datasets if d not in cf.unregistered_datasets]
    lines = []
    if sides and datasets:
        ds = " ".join(shlex.quote(d) for d in datasets)
        if p.suite:
            lines.append(f"python -m bench sweep --suite {shlex.quote(p.suite)}"
                         + (f" --seeds {' '.join(map(str, p.seeds))}" if p.seeds_given else "") + common
                         + f"   # the whole suite; this claim needs {' and '.join(s.label() for s in sides)}")
        else:
            groups: dict[tuple, list[str]] = {}
            for s in sides:
                groups.setdefault(tuple(sorted({**dict(p.sets), **dict(s.sets)}.items())), []).append(s.name)
            for sets, names in groups.items():
                lines.append(f"python -m bench sweep --methods {' '.join(shlex.quote(n) for n in names)} --datasets {ds} "
                             f"--seeds {' '.join(map(str, p.seeds))} --preset {p.preset}"
                             + (f" --split-seed {p.split_seed}" if p.split_seed else "")
                             + "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in sets) + common)
    lines.append(f"python -m bench verify {shlex.quote(cf.path)}" + common)
    return lines


# --------------------------------------------------------------------------------- the command
def verify(path: str, store, runs_dir: str, data_root: str | None = None, device: str = "cpu",
           threads: int | None = None, workers: int = 1, dry_run: bool = False, progress: bool = True,
           runs_args: str = "", say=None):
    """Plan, run what is missing (unless ``dry_run``) and evaluate; returns (Report, failed
    job lines) or, for ``dry_run``, (None, plan rows)."""
    from results.claims import Check, ClaimReport, Report, evaluate

    from .sweep import plan, run_sweep

    say = say or (lambda line: None)
    cf = load_claims(path)
    planned = plan_claims(cf, device, data_root, threads, workers, runs_args)
    jobs = list(planned.jobs.values())
    states = {p.job.key(): p for p in plan(jobs, store)} if jobs else {}
    if dry_run:
        rows = []
        for claim in cf.claims:
            for dataset in claim.datasets:
                entry = planned.checks[(claim.id, dataset)]
                if entry["missing"]:
                    rows.append({"claim": claim.id, "dataset": dataset, "configuration": "", "seed": None,
                                 "state": "not checkable here", "why": entry["missing"], "key": None})
                for which in ("method", "baseline"):
                    for key in entry[which]:
                        p = states[key]
                        rows.append({"claim": claim.id, "dataset": dataset, "configuration": p.job.label(),
                                     "seed": p.job.seed, "state": p.state, "why": p.why, "key": key})
        return None, rows
    failed: list[str] = []
    todo = [j for j in jobs if states[j.key()].state not in ("done", "skipped", "failed")]
    say(f"{len(jobs)} jobs needed, {len(jobs) - len(todo)} already in the store, {len(todo)} to run")
    by_suite: dict[str | None, list] = {}
    for j in todo:
        by_suite.setdefault(planned.suites[j.key()], []).append(j)
    for suite, group in by_suite.items():
        report = run_sweep(group, store, runs_dir, progress=progress, workers=workers, suite=suite)
        failed += report.failed + report.bad_data + report.unavailable
    reports = []
    for claim in cf.claims:
        checks = []
        for dataset in claim.datasets:
            entry = planned.checks[(claim.id, dataset)]
            missing = entry["missing"]
            if not missing:
                bad = [f"{planned.jobs[k].label()} seed {planned.jobs[k].seed}: {store.status(k) or 'not run'}"
                       for k in entry["method"] + entry["baseline"] if store.status(k) != "ok"]
                skipped = [b for b in bad if b.endswith(": skipped")]
                if skipped:
                    missing = f"the method cannot run on {dataset} (skipped: {'; '.join(skipped)})"
                elif bad:
                    say(f"{claim.id} on {dataset}: jobs without a result: {'; '.join(bad)}")
            checks += [Check(claim.id, dataset, claim.metric, task, list(entry["method"]), list(entry["baseline"]),
                             missing, split=claim.split, baseline_split=claim.baseline_split) for task in claim.tasks]
        reports.append(ClaimReport(claim.id, claim.text, claim.method.label() if claim.method else "",
                                   claim.baseline.label() if claim.baseline else "", claim.metric,
                                   claim.higher, claim.direction, claim.size, claim.source,
                                   claim.protocol.text() if claim.kind != "all_of" else "",
                                   checks, planned.commands.get(claim.id, []), min_seeds=claim.min_seeds,
                                   kind=claim.kind, relative=claim.relative, ratio=claim.ratio, margin=claim.margin,
                                   value=claim.value, split=claim.split, baseline_split=claim.baseline_split,
                                   over=claim.over, parts=list(claim.parts)))
    report = Report(cf.path, cf.title, cf.alpha, reports)
    report.tests = evaluate(reports, store, cf.alpha)
    return report, failed


def print_plan(rows: list[dict], out=None) -> None:
    from collections import Counter

    from tabulate import tabulate

    print(tabulate([[r["claim"], r["dataset"], r["configuration"], "" if r["seed"] is None else r["seed"], r["state"],
                     r["why"], r["key"] or "-"] for r in rows],
                   headers=["claim", "dataset", "configuration", "seed", "state", "why", "key"], tablefmt="github"),
          file=out or sys.stdout)
    counts = Counter(r["state"] for r in rows)
    print("dry run: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "; nothing was run", file=sys.stderr)
