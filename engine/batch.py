"""Batch rewrites: one instruction over many files, decoded together.

Each of the context's sequences is a slot; a slot holds one file's rewrite,
and every forward pass carries the pending token and draft of every busy
slot (continuous batching: a finished file's slot is refilled at once).
Because the forward pass is batch-invariant, each file's output equals its
single-file rewrite token for token.

A file is written only when its answer is complete, atomically, and only if
it still holds the text the run read; otherwise it is reported as a
conflict and left alone.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .journal import Journal, text_hash
from .rewrite import RewriteError, RewriteJob, build_prompt, default_max_tokens, finish, language_for, \
    make_request, write_atomic


@dataclass
class FileResult:
    path: Path
    status: str            # written | unchanged | changed (dry run) | failed | conflict | cancelled | resumed
    message: str = ""
    source: str = ""
    output: str | None = None
    stats: dict = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)   # the generated token ids


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


class Committer:
    """Turns a finished rewrite into a change on disk (when writing): only if
    the file still holds the text the run read, atomically, then journalled.
    Without `write` results pass through untouched (a dry run)."""

    def __init__(self, write: bool = False, journal: Journal | None = None) -> None:
        self.write, self.journal = write, journal

    def commit(self, r: FileResult) -> FileResult:
        if not self.write or r.status not in ("changed", "unchanged"):
            return r
        if r.status == "changed":
            try:
                current = r.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                current = None
            if current != r.source:
                r.status, r.message = "conflict", "changed on disk during the run; not overwritten"
                return r
            try:
                write_atomic(r.path, r.output)
            except OSError as e:
                r.status, r.message = "failed", f"cannot write: {e}"
                return r
            r.status = "written"
        if self.journal is not None:
            self.journal.record(r.path, r.status, r.output, source_sha256=text_hash(r.source))
        return r


class BatchRewrite:
    def __init__(self, llm, instruction: str, *, speculate: bool = True, drafter: str = "auto",
                 committer: Committer | None = None, resume: bool = False,
                 max_tokens: int | None = None, read: Callable[[Path], str] | None = None,
                 on_result: Callable[[FileResult], None] | None = None,
                 on_tokens: Callable[[BatchTotals], None] | None = None) -> None:
        self.llm = llm
        self.instruction = instruction
        self.speculate, self.drafter = speculate, drafter
        self.committer = committer or Committer()
        self.resume = resume
        self.max_tokens = max_tokens
        self.read = read or (lambda p: p.read_text(encoding="utf-8"))
        self.on_result = on_result or (lambda r: None)
        self.on_tokens = on_tokens or (lambda t: None)
        self.totals = BatchTotals()

    # ---- one file ------------------------------------------------------------
    def _start(self, path: Path, slot: int) -> _Slot | FileResult:
        try:
            source = self.read(path)
        except (OSError, UnicodeDecodeError) as e:
            return FileResult(path, "failed", f"cannot read: {e}")
        journal = self.committer.journal
        if self.resume and journal is not None and journal.finished(path, source):
            return FileResult(path, "resumed", "finished by an earlier run", source=source, output=source)
        job = RewriteJob(source=source, instruction=self.instruction, language=language_for(path),
                         path=str(path))
        build_prompt(self.llm, job)
        room = self.llm.ctx.n_ctx - len(job.prompt) - 1
        if room < len(job.source_tokens) + 8:
            return FileResult(path, "failed",
                              f"too large for the context ({len(job.prompt)} prompt tokens, "
                              f"context {self.llm.ctx.n_ctx}); raise --ctx", source=source)

        def progress(_job, tokens: list[int]) -> None:
            self.totals.generated += len(tokens)
            self.on_tokens(self.totals)

        make_request(self.llm, job, seq=slot, speculate=self.speculate, drafter_name=self.drafter,
                     max_tokens=min(self.max_tokens or default_max_tokens(job), room), on_text=progress)
        return _Slot(path, source, job)

    def _complete(self, s: _Slot) -> FileResult:
        finish(s.job)
        req = s.job.request
        self.totals.drafted += req.stats.drafted
        self.totals.accepted += req.stats.accepted
        stats = req.stats.as_dict()
        try:
            output = s.job.result()
        except RewriteError as e:
            return FileResult(s.path, "failed", str(e), s.source, None, stats, req.output)
        status = "unchanged" if output == s.source else "changed"
        return self.committer.commit(FileResult(s.path, status, "", s.source, output, stats, req.output))

    # ---- the run ----------------------------------------------------------------
    def run(self, files: list[Path], should_stop: Callable[[], bool] = lambda: False) -> list[FileResult]:
        if self.resume and self.committer.journal is not None:
            self.committer.journal.load()
        self.totals = BatchTotals(files=len(files))
        queue = deque(files)
        active: dict[int, _Slot] = {}
        results: list[FileResult] = []

        def report(r: FileResult) -> None:
            results.append(r)
            self.totals.done += 1
            self.on_result(r)

        decoder = self.llm.decoder
        while queue or active:
            if should_stop():
                for s in active.values():
                    report(FileResult(s.path, "cancelled", "cancelled before completion", s.source))
                for p in queue:
                    report(FileResult(p, "cancelled", "not started"))
                break
            fresh = []
            for slot in range(self.llm.ctx.n_seq):
                while slot not in active and queue:
                    started = self._start(queue.popleft(), slot)
                    if isinstance(started, FileResult):
                        report(started)
                    else:
                        active[slot] = started
                        fresh.append(started.job.request)
            if fresh:
                decoder.prefill(fresh)
            live = [s.job.request for s in active.values() if not s.job.request.done]
            if live:
                decoder.step(live)
            for slot in [k for k, s in active.items() if s.job.request.done]:
                report(self._complete(active.pop(slot)))
        return results
