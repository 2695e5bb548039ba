"""Reading a user's configuration files (dataset.yaml of a folder, suites, claims) with one-line
errors that name the file, and :class:`ConfigError`, the error of a bad configuration value.

They live here, in the lowest package that reads such files (``datasets/folder``), so that
``datasets`` imports nothing from ``bench``; ``bench.config`` and ``bench.yaml_files`` re-export
them for the suite and claims readers (docs/design.md "Layers")."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value; the message names the field and the valid choices."""



def load_yaml_file(path: str | Path, kind: str, fix: str = "fix the YAML") -> Any:
    """The parsed YAML of ``path``; an unreadable file or a syntax error is one ConfigError line
    naming the ``kind`` of file, the path, the line and column, and ``fix`` (what to do)."""
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{kind} file {where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        line = Path(path).read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{kind} file {where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at line {line}); "
                          f"save the file as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{kind} file {where}: YAML syntax error{at}: {problem}; {fix}") from None


def field_error(kind: str, where: str, fieldname: str, problem: str, todo: str) -> ConfigError:
    """The one-line error of a bad field: ``<kind> file <path>: <field>: <problem>; <what to do>``."""
    return ConfigError(f"{kind} file {where}: {fieldname}: {problem}; {todo}")


def describe(value: Any) -> str:
    """A YAML value as an error message shows it: its type, and the value when it is a scalar."""
    if value is None:
        return "nothing"
    if isinstance(value, (list, tuple)) and not value:
        return "an empty list"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def check_keys(raw: dict, allowed: tuple[str, ...], fail, where: str, fieldname: str) -> None:
    """Refuse the first key of ``raw`` not in ``allowed`` with ``fail`` (a file kind's field_error)."""
    for key in raw:
        if key not in allowed:
            raise fail(where, f"{fieldname}.{key}" if fieldname else str(key), "unknown key",
                       f"use only: {', '.join(allowed)}")
