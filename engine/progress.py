"""Progress display for rewrites on stderr: tokens, tok/s, draft acceptance."""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class RewriteProgress:
    """A rich progress bar; estimated total = the original file's token count."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} tok"),
            TextColumn("{task.fields[rate]:.0f} tok/s"), TextColumn("accepted {task.fields[accept]:.0%}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True, disable=not self.enabled)
        self.tasks: dict[int, int] = {}
        self.started: dict[int, float] = {}

    def __enter__(self) -> "RewriteProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, job) -> None:
        name = job.path or "rewrite"
        self.tasks[id(job)] = self.progress.add_task(name, total=max(1, len(job.source_tokens)),
                                                     rate=0.0, accept=0.0)
        self.started[id(job)] = time.perf_counter()

    def update(self, job, tokens: list[int]) -> None:
        task = self.tasks.get(id(job))
        if task is None:
            return
        s = job.request.stats
        elapsed = time.perf_counter() - self.started[id(job)]
        self.progress.update(task, completed=s.generated, rate=s.generated / elapsed if elapsed else 0.0,
                             accept=s.acceptance_rate)
