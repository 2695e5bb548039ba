"""bench's results: tidy frames from the run store, summaries and leaderboards (no torch)."""
from .frame import Results, cases_frame, load_results, runs_frame
from .leaderboard import leaderboard, md_escape, render, summarize, to_markdown

__all__ = ["Results", "cases_frame", "load_results", "runs_frame", "leaderboard", "md_escape", "render", "summarize",
           "to_markdown"]
