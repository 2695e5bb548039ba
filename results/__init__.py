"""bench's results: tidy frames from the run store, summaries and leaderboards."""
from .frame import cases_frame, runs_frame
from .leaderboard import render, summarize, to_markdown

__all__ = ["cases_frame", "runs_frame", "render", "summarize", "to_markdown"]
