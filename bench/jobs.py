"""Building one job's :class:`RunConfig` from names, a preset and ``--set`` values, checked.

Everything that cannot work is refused here, before anything runs, with one line naming the
field (``ConfigError``, exit status 2 in the CLI): unknown names, badly typed or non-finite
values, training values out of range, method hparams outside their rules
(``methods.check_hparams``), hparams set for modalities the dataset does not have, and seeds
outside NumPy's range. The config also gets its identity here: CPU threads, the code
fingerprint and the data fingerprint (``bench.identity``, docs/identity.md).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from datasets import canonical_name, load_dataset, parse_name
from methods import check_hparams, method_info, resolve_hparams

from . import __version__
from .config import SEG_EPOCHS_BY_PRESET, SEG_TRAIN_DEFAULTS, ConfigError, RunConfig, TrainConfig, split_overrides
from .execution import Execution, ExecutionError
from .identity import code_fingerprint, data_fingerprint

if TYPE_CHECKING:
    from datasets import MultimodalData

#: seeds go to NumPy's legacy seeding, which takes 0 .. 2**32 - 1
MAX_SEED = 2 ** 32 - 1
DEFAULT_PRESET = "small"


@functools.lru_cache(maxsize=4)
def load_data(dataset: str, split_seed: int, data_root: str | None, cache_dir: str | None = None) -> MultimodalData:
    """Datasets are immutable once built; a sweep reuses them across methods and seeds.
    Datasets that preprocess files (segmentation, the mammography adapters: any builder with a
    ``cache_dir`` parameter) write into and reuse ``cache_dir``."""
    entry, _ = parse_name(dataset)
    options = {} if entry.embedded else {"data_root": data_root}
    if entry.segmentation or entry.takes_cache_dir:
        options["cache_dir"] = cache_dir
    return load_dataset(dataset, split_seed, **options)


def modality_kinds(dataset: str, split_seed: int = 0, data_root: str | None = None) -> set[str] | None:
    """The dataset's modality kinds, without preprocessing anything: segmentation datasets are
    volumes; embedded datasets are built (cheap, cached); None when unknown without the data."""
    entry, _ = parse_name(dataset)
    if entry.segmentation:
        return {"volume3d"}
    if entry.embedded:
        return {m.kind for m in load_data(dataset, split_seed, None).spec.modalities}
    return None


def modality_names(dataset: str, split_seed: int = 0, data_root: str | None = None) -> list[str]:
    """Names that ``single:<name>`` accepts on this dataset (segmentation: the image channels)."""
    entry, variant = parse_name(dataset)
    if entry.modality_names is not None:
        return entry.modality_names(data_root, variant)
    return load_data(dataset, split_seed, data_root).spec.modality_names


def protocol_defaults(segmentation: bool, preset: str) -> TrainConfig:
    """The training protocol a job gets when nothing is overridden."""
    seg = {**SEG_TRAIN_DEFAULTS, "epochs": SEG_EPOCHS_BY_PRESET[preset]} if segmentation else {}
    return TrainConfig(**seg)


def _check_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"--{name.replace('_', '-')} {value}: a seed must be an integer in 0..{MAX_SEED}")


def default_threads() -> int:
    import torch

    return torch.get_num_threads()


def build_config(method: str, dataset: str, seed: int = 0, split_seed: int = 0, preset: str = DEFAULT_PRESET,
                 sets: dict[str, str] | None = None, train: dict[str, Any] | None = None, device: str = "cpu",
                 deterministic: bool = True, data_root: str | None = None, threads: int | None = None,
                 hparams: dict[str, Any] | None = None, purpose: str = "eval",
                 execution: Execution | None = None) -> RunConfig:
    """Resolve names, preset and ``--set`` overrides into a checked :class:`RunConfig` (raises ConfigError).

    ``sets`` are strings (from the command line), typed by each key's default; ``train`` and
    ``hparams`` are already typed (suites, tuning) and go through the same checks. ``purpose``
    ``trial`` makes a tuning trial's config, whose key differs from any benchmark run's.
    ``execution``: precision, TF32, channels-last, compile, data workers (``bench.execution``)."""
    _check_seed("seed", seed)
    try:
        execution = dataclasses.replace(execution or Execution()).validate()
    except ExecutionError as exc:
        raise ConfigError(str(exc)) from None
    _check_seed("split_seed", split_seed)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    cls, from_name = method_info(method)  # the static table: no method module is imported to plan a job
    defaults = cls.defaults()
    train_over, hp_over = split_overrides(sets or {}, defaults)
    unknown = sorted(set(hparams or {}) - set(defaults))
    if unknown:
        raise ConfigError(f"{cls.name}: unknown hparam(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}")
    typed = dict(hparams or {})
    try:
        hparams = resolve_hparams(defaults, preset, {**from_name, **typed, **hp_over})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    entry, _ = parse_name(dataset)
    full = canonical_name(dataset)
    try:
        check_hparams(cls, hparams, explicit=set(hp_over), modality_kinds=modality_kinds(full, split_seed, data_root))
    except ValueError as exc:
        raise ConfigError(f"{cls.name} on {full}: {exc}") from None
    arg = getattr(cls, "name_arg", None)
    name = f"{cls.name}:{hparams[arg]}" if arg and hparams.get(arg) else cls.name
    protocol = protocol_defaults(entry.segmentation, preset)
    try:
        tc = dataclasses.replace(protocol, **{**(train or {}), **train_over}).validate()
    except TypeError as exc:
        raise ConfigError(f"bad training setting: {exc}") from None
    cfg = RunConfig(method=name, dataset=full, seed=seed, split_seed=split_seed, preset=preset, hparams=hparams,
                    train=tc, device=device, deterministic=deterministic, data_root=data_root,
                    threads=(threads or default_threads()) if device.startswith("cpu") else None,
                    code_version=f"{__version__}+{code_fingerprint([cls.module, entry.builder.__module__])}",
                    data_fingerprint=_data_fingerprint(full, data_root), purpose=purpose, execution=execution)
    cfg.label_fields = label_fields(cls, cfg, protocol)
    return cfg


def _data_fingerprint(dataset: str, data_root: str | None) -> str | None:
    try:
        return data_fingerprint(dataset, data_root)
    except OSError as exc:  # a file vanished between listing and stat
        raise ConfigError(f"{dataset}: cannot read its input files ({exc}); check the data root") from None


def hparam_overrides(cls, cfg: RunConfig) -> dict[str, Any]:
    """hparams that differ from the method's defaults at the run's preset (the name argument,
    e.g. ``single:left``, is already in the method name)."""
    base = resolve_hparams(cls.defaults(), cfg.preset, {})
    arg = getattr(cls, "name_arg", None)
    return {k: v for k, v in cfg.hparams.items() if k != arg and base.get(k) != v}


def label_fields(cls, cfg: RunConfig, protocol: TrainConfig) -> dict[str, Any]:
    """What makes this configuration differ from the protocol defaults: the preset (when not
    ``small``), hparam and training overrides, split seed / device / determinism when set, and the
    execution options that are part of the key (precision, tf32, channels_last, compile)."""
    fields: dict[str, Any] = {}
    if cfg.preset != DEFAULT_PRESET:
        fields["preset"] = cfg.preset
    fields.update(hparam_overrides(cls, cfg))
    base = dataclasses.asdict(protocol)
    fields.update({k: v for k, v in dataclasses.asdict(cfg.train).items() if base[k] != v})
    if cfg.split_seed:
        fields["split_seed"] = cfg.split_seed
    if not cfg.device.startswith("cpu"):
        fields["device"] = cfg.device
    if not cfg.deterministic:
        fields["deterministic"] = False
    fields.update(cfg.execution.key_fields())
    return fields
