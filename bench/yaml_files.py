"""Reading a user's YAML file (suites, claims) with one-line errors that name the file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError


def load_yaml_file(path: str | Path, kind: str, fix: str = "fix the YAML") -> Any:
    """The parsed YAML of ``path``; an unreadable file or a syntax error is one ConfigError line
    naming the ``kind`` of file, the path, the line and column, and ``fix`` (what to do)."""
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{kind} file {where}: cannot read it ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{kind} file {where}: YAML syntax error{at}: {problem}; {fix}") from None
