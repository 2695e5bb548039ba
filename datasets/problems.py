"""Collect every problem in a dataset before refusing it, instead of stopping at the first.

Users fixing a table want the whole list at once (``bench data check`` prints it, one line per
problem, each naming the file, row and column). A job that meets bad data raises
:class:`DatasetProblems`, whose message is still one line: the count, the first problems, and
the ``bench data check`` command that lists them all.
"""
from __future__ import annotations

from .spec import DatasetFormatError

#: problems quoted in a one-line error message (the rest are counted)
SHOWN = 3


class DatasetProblems(DatasetFormatError):
    """Malformed data with one or more problems; ``problems`` holds every one of them."""

    def __init__(self, name: str, problems: list[str], hint: str = ""):
        self.name, self.problems, self.hint = name, list(problems), hint
        shown = "; ".join(self.problems[:SHOWN])
        more = f"; and {len(self.problems) - SHOWN} more" if len(self.problems) > SHOWN else ""
        count = f"{len(self.problems)} problems: " if len(self.problems) > 1 else ""
        super().__init__(f"{name}: {count}{shown}{more}" + (f" ({hint})" if hint else ""))


class Problems:
    """An ordered, de-duplicated list of problem lines; ``where`` is e.g. ``table.csv row 12 (id 'p7'), column 'dx'``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, what: str) -> None:
        line = f"{where}: {what}" if where else what
        if line not in self.lines:
            self.lines.append(line)

    def extend(self, lines: list[str]) -> None:
        for line in lines:
            self.add("", line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def raise_if_any(self, name: str, hint: str = "") -> None:
        if self.lines:
            raise DatasetProblems(name, self.lines, hint)
