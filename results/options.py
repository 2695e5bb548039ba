"""What a leaderboard shows (:class:`BoardOptions`) and the formats it renders in: kept apart from
``results.pipeline`` so that checking options, and answering an empty store, loads no pandas."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

#: what an empty board says, per style
EMPTY = {"md": "No completed runs in the store yet: run `python -m bench sweep --suite quick` first.",
         "text": "No completed runs in the store yet: run 'python -m bench sweep --suite quick' first."}
#: every format a board renders in; ``text`` is the terminal default
FORMATS = ("text", "md", "latex", "html", "csv", "json")
#: the formats of a ``robustness`` board
ROBUSTNESS_FORMATS = ("text", "md", "csv", "json", "html")
#: formats that carry every summary column (CIs and comparisons with the best) for machines
MACHINE_FORMATS = ("csv", "json")


@dataclass
class BoardOptions:
    """What a board shows (the options of ``bench leaderboard``; see its ``--help``)."""

    split: str = "test"                       # which split's metrics: test or val
    metrics: list[str] | None = None          # only these metrics
    methods: list[str] | None = None          # only these methods or labels
    datasets: list[str] | None = None         # only these datasets
    suite: str | None = None                  # only runs stored by this suite's sweeps
    keys: Collection[str] | None = None       # only these job keys (a sweep's own jobs)
    all_singles: bool = False                 # keep every single:<modality> row
    tests: bool = True                        # † marks, CI / comparison columns in csv/json
    test: str = "seeds"                       # seeds (seed-aware) or cases (conditional on the models)
    alpha: float = 0.05                       # level of the marks and of the control analysis
    ci: bool = False                          # show mean [CI] in the tables
    control: str | None = None                # Friedman + Wilcoxon-Holm vs this configuration
    robustness: bool = False                  # the intact / removed / noisy table instead
    all_versions: bool = False                # also runs superseded by a newer run of their job
    cost: bool = False                        # latex: parameter / training-time / FLOPs columns
    layout: str = "tables"                    # latex: tables (one per dataset and task) or grouped
    fragment: bool = False                    # latex: the table environments only

    def check(self, fmt: str | None = None) -> BoardOptions:
        """Refuse options (and a format) that cannot make a board: one-line ConfigError."""
        problem = self.problem(fmt)
        if problem:
            # only on the way out: bench.config imports more than the store needs
            from bench.config import ConfigError

            raise ConfigError(problem)
        return self

    def problem(self, fmt: str | None = None) -> str | None:
        """Why these options (and ``fmt``) cannot make a board; None when they can."""
        if not 0 < self.alpha < 1:
            return f"--alpha must lie between 0 and 1 (got {self.alpha})"
        for name, value, allowed in (("split", self.split, ("test", "val")), ("test", self.test, ("seeds", "cases")),
                                     ("layout", self.layout, ("tables", "grouped"))):
            if value not in allowed:
                return f"--{name} must be one of {', '.join(allowed)} (got {value!r})"
        if fmt is not None and fmt not in FORMATS:
            return f"unknown leaderboard format {fmt!r}; choose one of: {', '.join(FORMATS)}"
        if fmt is not None and self.robustness and fmt not in ROBUSTNESS_FORMATS:
            return f"--robustness is shown as text, md, csv, json or html (not {fmt})"
        return None
