"""Batch rewrites: one instruction over many files, decoded together.

Each of the context's sequences is a slot; a slot holds one file's rewrite,
and every forward pass carries the pending token and draft of every busy
slot (continuous batching: a finished file's slot is refilled at once).
Because the forward pass is batch-invariant, each file's output equals its
single-file rewrite token for token.

A file is written only when its answer is complete, atomically, and only if
it still holds the bytes the run read; otherwise it is reported as a
conflict and left alone (engine/writeback.py).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .decode import Request
from .rewrite import RewriteError, RewriteJob, Status, language_for, make_request
from .source_text import UnsafeText
from .writeback import Committer, FileResult


@dataclass
class _Slot:
    path: Path
    source: str
    job: RewriteJob


@dataclass
class BatchTotals:
    files: int = 0
    done: int = 0
    generated: int = 0
    drafted: int = 0
    accepted: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class BatchRewrite:
    def __init__(self, llm, instruction: str, *, speculate: bool = True, drafter: str = "auto",
                 committer: Committer | None = None, resume: bool = False,
                 max_tokens: int | None = None, open: Callable[[Path], str | FileResult] | None = None,
                 on_result: Callable[[FileResult], None] | None = None,
                 on_tokens: Callable[[BatchTotals], None] | None = None) -> None:
        self.llm = llm
        self.instruction = instruction
        self.speculate, self.drafter = speculate, drafter
        self.committer = committer or Committer()
        self.resume = resume
        self.max_tokens = max_tokens
        self.open = open or (lambda p: self.committer.open(p, resume=self.resume))
        self.on_result = on_result or (lambda r: None)
        self.on_tokens = on_tokens or (lambda t: None)
        self.totals = BatchTotals()

    # ---- one file ------------------------------------------------------------
    def _start(self, path: Path, slot: int) -> _Slot | FileResult:
        source = self.open(path)
        if isinstance(source, FileResult):
            return source

        def progress(_job, tokens: list[int]) -> None:
            self.totals.generated += len(tokens)
            self.on_tokens(self.totals)

        try:
            job = RewriteJob(source=source, instruction=self.instruction, language=language_for(path),
                             path=str(path))
            make_request(self.llm, job, seq=slot, speculate=self.speculate, drafter_name=self.drafter,
                         max_tokens=self.max_tokens, on_text=progress)
        except (RewriteError, UnsafeText) as e:
            return FileResult(path, Status.FAILED, str(e), source)
        return _Slot(path, source, job)

    def _complete(self, s: _Slot) -> FileResult:
        req = s.job.request
        self.totals.drafted += req.stats.drafted
        self.totals.accepted += req.stats.accepted
        outcome = s.job.outcome()
        result = FileResult(s.path, outcome.status, outcome.message, s.source, outcome.output,
                            req.stats.as_dict(), req.output)
        return self.committer.commit(result)

    # ---- the run ----------------------------------------------------------------
    def run(self, files: list[Path], should_stop: Callable[[], bool] = lambda: False) -> list[FileResult]:
        self.committer.begin(self.resume)
        self.totals = BatchTotals(files=len(files))
        self._queue = deque(files)
        self._active: dict[int, _Slot] = {}
        self._results: list[FileResult] = []
        if not should_stop():
            # Between forward passes, finished files are reported and their slots refilled.
            self.llm.decoder.run(self._refill(), should_stop, between=self._refill)
        for s in self._active.values():
            self._report(FileResult(s.path, Status.CANCELLED, "cancelled before completion", s.source))
        for p in self._queue:
            self._report(FileResult(p, Status.CANCELLED, "not started"))
        return self._results

    def _refill(self) -> list[Request]:
        """Reports the files whose decode ended and starts queued files in the
        freed slots; returns the new requests."""
        for slot in [k for k, s in self._active.items() if s.job.request.done]:
            self._report(self._complete(self._active.pop(slot)))
        fresh = []
        for slot in range(self.llm.ctx.n_seq):
            while slot not in self._active and self._queue:
                started = self._start(self._queue.popleft(), slot)
                if isinstance(started, FileResult):
                    self._report(started)
                else:
                    self._active[slot] = started
                    fresh.append(started.job.request)
        return fresh

    def _report(self, result: FileResult) -> None:
        self._results.append(result)
        self.totals.done += 1
        self.on_result(result)
