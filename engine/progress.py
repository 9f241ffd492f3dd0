"""Progress display for rewrites on stderr: files, tokens/s, draft acceptance, ETA."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn


class BatchProgress:
    """One bar over the files; live tokens/s and acceptance of the whole run.
    Shown only on a terminal, so pipes and CI logs stay clean."""

    def __init__(self, n_files: int, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("rewriting"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
            TextColumn("{task.fields[rate]:.0f} tok/s"), TextColumn("accepted {task.fields[accept]:.0%}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            disable=not (enabled and sys.stderr.isatty()))
        self.task = self.progress.add_task("rewrite", total=n_files, rate=0.0, accept=0.0)

    def __enter__(self) -> "BatchProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def tokens(self, totals) -> None:
        self.progress.update(self.task, rate=totals.tokens_per_second, accept=totals.acceptance_rate)

    def file_done(self, _result) -> None:
        self.progress.advance(self.task)
