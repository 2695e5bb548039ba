"""The leaderboard pipeline: the one place a board is built (``bench leaderboard``, the board that
closes ``bench sweep``, and anything else that prints one).

``build_board(store, BoardOptions(...))`` reads the store and returns a :class:`Board`: the runs
(:func:`results.frame.load_results`, newest run of each job unless ``all_versions``), filtered by
dataset / suite / job keys / method or label / metric; the ``single:<modality>`` baselines reduced
to the one that is best on validation per dataset, labelled ``best single (<modality>)``
(:func:`results.leaderboard.keep_best_singles`, unless ``all_singles``); the summary (mean ± std
over seeds per configuration, :func:`results.leaderboard.summarize`); the † marks of
:func:`results.significance.worse_than_best` (unless ``tests`` is off); the summary CIs with
``ci``; the ``--control`` analysis (:func:`results.control.control_analysis`); with
``robustness`` the intact / removed / noisy table instead (:mod:`results.robustness`).

``render_board(board, fmt)`` writes it as ``text`` (plain, column-aligned tables for a terminal,
no Markdown escapes; the same content as ``md``), ``md``, ``latex``, ``html``, ``csv`` or
``json``. What only one format needs is computed when that format is rendered, once: the CI and
comparison columns of csv/json, the robustness section of the HTML page, the cost columns of
LaTeX. No torch here (the store is read, never a model); heavy modules load on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .frame import Results, load_results
from .leaderboard import keep_best_singles, label_best_singles, summarize

# the options and formats live in results/options.py (no pandas: the CLI checks them, and answers
# an empty store, before this module loads)
from .options import FORMATS, MACHINE_FORMATS, ROBUSTNESS_FORMATS, BoardOptions  # noqa: E402,F401


@dataclass
class Board:
    """A built leaderboard: what every format renders (see the module docstring).

    ``results`` are the runs shown (one split, the metrics kept); ``summary`` the table rows (with
    ``ci_low``/``ci_high``/``ci_over`` when ``options.ci``); ``chosen`` dataset -> the config id of
    its best single modality; ``significance`` the marks (None without tests); ``control`` the
    control analysis (None without ``options.control``); ``robustness`` the robustness summary
    (a ``robustness`` board; for others filled in when the HTML page needs it)."""

    options: BoardOptions
    store: object
    results: Results
    summary: pd.DataFrame
    commons: dict = field(default_factory=dict)
    chosen: dict = field(default_factory=dict)
    significance: object | None = None
    control: object | None = None
    robustness: pd.DataFrame | None = None
    missing_paths: dict | None = None
    #: the runs before one split was kept (the robustness splits live there)
    all_splits: Results | None = None
    #: the per-case tables read so far (results.significance.CaseCache), shared by the tests and CIs
    case_cache: object | None = None
    _rendered: dict = field(default_factory=dict, repr=False)

    @property
    def case_store(self):
        """Where the per-case tables are: the store on the test split; on val there are none (the
        tests and CIs are over seeds)."""
        return self.store if self.options.split == "test" else None

    def machine_summary(self) -> pd.DataFrame:
        """The summary of csv/json: with tests, every cell's CI and its comparison with the best."""
        if "machine" not in self._rendered:
            summary = self.summary
            if self.significance is not None:
                from .significance import summary_ci, with_significance

                if "ci_low" not in summary.columns:
                    summary = summary_ci(self.results, self.case_store, self.options.split, summary,
                                         case_cache=self._cache())
                summary = with_significance(summary, self.significance)
            self._rendered["machine"] = summary
        return self._rendered["machine"]

    def page_robustness(self) -> pd.DataFrame | None:
        """The robustness summary the HTML page shows under the tables (test split only)."""
        if self.options.split != "test" or self.all_splits is None:
            return None
        if self.robustness is None:
            from .robustness import robustness_summary

            self.robustness = robustness_summary(self.all_splits, self.options.metrics)
        return self.robustness

    def _cache(self):
        if self.case_cache is None:
            from .significance import CaseCache

            self.case_cache = CaseCache(self.case_store)
        return self.case_cache


def _runs(store, options: BoardOptions) -> tuple[Results, dict[str, str]]:
    """The runs a board shows, every split (the validation split chooses the best single), and the
    best single of each dataset."""
    # the validation split is read too: it chooses the best single-modality row of each dataset
    split = None if not options.all_singles or options.robustness else options.split
    results = load_results(store, split=split, headline_only=True, latest=not options.all_versions,
                           datasets=options.datasets, keys=options.keys, suite=options.suite)
    if options.methods:
        frame = results.frame
        results = Results(frame[frame["method"].isin(options.methods) | frame["label"].isin(options.methods)],
                          results.configs, results.primary)
    chosen: dict[str, str] = {}
    if not options.all_singles:
        results, chosen = keep_best_singles(results, "val")
    return results, chosen


def build_board(store, options: BoardOptions | None = None) -> Board:
    """The board of ``store`` under ``options`` (see the module docstring)."""
    options = (options or BoardOptions()).check()
    results, chosen = _runs(store, options)
    if options.robustness:   # reads the test[...] condition splits, so before one split is kept
        from .robustness import missing_paths, robustness_summary

        return Board(options, store, results, pd.DataFrame(), chosen=chosen,
                     robustness=robustness_summary(results, options.metrics),
                     missing_paths=missing_paths(store, results), all_splits=results)
    all_splits = results
    frame = results.frame
    keep = frame["split"] == options.split
    if options.metrics:
        keep &= frame["metric"].isin(options.metrics)
    results = Results(frame[keep], results.configs, results.primary)
    summary, commons = summarize(results, options.split)
    summary = label_best_singles(summary, chosen)
    board = Board(options, store, results, summary, commons, chosen, all_splits=all_splits)
    if summary.empty:
        return board
    if options.tests:
        from .significance import worse_than_best

        board.significance = worse_than_best(results, board.case_store, summary, options.split, alpha=options.alpha,
                                             test=options.test, case_cache=board._cache())
    if options.ci:
        from .significance import summary_ci

        # with tests, the per-case tables they read serve the CIs too
        board.summary = summary_ci(results, board.case_store, options.split, summary, case_cache=board.case_cache)
    if options.control:
        from .control import control_analysis

        board.control = control_analysis(board.summary, results.primary, options.control, options.metrics,
                                         alpha=options.alpha)
    return board


def render_board(board: Board, fmt: str = "text") -> str:
    """``board`` as ``text``, ``md``, ``latex``, ``html``, ``csv`` or ``json`` (the control analysis
    is shown in text, md, latex and html; csv/json carry the summary's columns)."""
    options = board.options.check(fmt)
    if options.robustness:
        from .robustness import render

        if fmt == "html":
            from .html import robustness_page

            return robustness_page(board.robustness, board.missing_paths)
        return render(board.robustness, fmt, board.missing_paths)
    ci = options.ci
    if fmt in MACHINE_FORMATS:
        from .leaderboard import render

        return render(board.machine_summary(), fmt)
    if fmt == "latex":
        from .latex import to_latex

        costs = None
        if options.cost and not board.summary.empty:
            from .costs import cost_frame

            costs = cost_frame(board.store, set(board.summary["config_id"]))
        return to_latex(board.summary, board.commons, options.split, board.significance, costs,
                        standalone=not options.fragment, layout=options.layout, ci=ci, control=board.control)
    if fmt == "html":
        from .html import html_report

        return html_report(board.results, board.store, options.split, board.significance, summary=board.summary,
                           commons=board.commons, ci=ci, control=board.control, robustness=board.page_robustness())
    from .leaderboard import STYLES, to_tables

    style = STYLES[fmt]
    text = to_tables(board.summary, board.commons, options.split, board.significance, ci, style)
    if board.control is not None:
        from .control import to_tables as control_tables

        text += "\n\n" + control_tables(board.control, style)
    return text

