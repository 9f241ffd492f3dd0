"""Whole-file rewrites: prompt, speculative decode, and one checked outcome.

The prompt gives the model the file first and the instruction after it, then
opens the assistant's answer with a code fence, so the answer is the new
file itself and the edit-aware drafter can follow the original from its
first token. The fence is longer than any run of backticks in the file, so
a code block inside the file (Markdown) cannot end the answer early. A
result counts only when the model closed the fence (or ended its turn)
within the token budget: a truncated or empty file is refused, so nothing
half-written ever replaces a user's file. The model sees the file's text
with LF line endings (engine/source_text.py); the result is given back in
the file's own. Every front end (CLI, batch, Ray, the editor commands)
reads a finished decode through `RewriteJob.outcome()`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .decode import Request
from .drafters import make_drafter
from .drafters.base import Drafter
from .source_text import SourceText, UnsafeText, check_encodable

MIN_FENCE = 3
ASK = "Answer with the complete updated file in a single code block."
# The answer must have room for at least the whole file and its closing fence.
ANSWER_SLACK = 8
# An answer shorter than 1/4 of the original is taken for a fragment (small
# models like to answer with one function): refused rather than written.
MIN_KEPT_FRACTION = 4

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "tsx",
    ".jsx": "jsx", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".rs": "rust",
    ".go": "go", ".java": "java", ".rb": "ruby", ".lua": "lua", ".sh": "bash", ".json": "json",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown", ".html": "html",
    ".css": "css", ".sql": "sql", ".kt": "kotlin", ".swift": "swift", ".php": "php", ".cs": "csharp",
}


class RewriteError(ValueError):
    """The model's answer is not a complete file, or the file cannot be
    rewritten; the message says why."""


class Status(str, Enum):
    """What became of one file's rewrite, in every front end."""
    CHANGED = "changed"        # a complete answer that differs (a dry run shows it)
    UNCHANGED = "unchanged"    # a complete answer equal to the file
    WRITTEN = "written"        # the answer replaced the file on disk
    APPLIED = "applied"        # the editor applied the answer
    RESUMED = "resumed"        # an earlier run finished this file (journal)
    FAILED = "failed"          # no complete answer, or the file cannot be rewritten safely
    CONFLICT = "conflict"      # the file changed during the run: left alone
    REFUSED = "refused"        # the editor refused the edit
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def ok(self) -> bool:
        return self not in (Status.FAILED, Status.CONFLICT, Status.REFUSED, Status.CANCELLED)


@dataclass
class Outcome:
    status: Status
    message: str = ""
    output: str | None = None    # the new text, in the source's own line endings


def language_for(path: str | os.PathLike | None) -> str:
    return LANGUAGES.get(Path(path).suffix.lower(), "") if path else ""


def fence_for(text: str) -> str:
    """A code fence longer than any run of backticks in `text`: only a fence
    at least as long closes a block (CommonMark), so no line of the file can
    pass for the end of the answer."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    return "`" * max(MIN_FENCE, longest + 1)


@dataclass
class RewriteJob:
    """One file to rewrite: its text, the prompt built for it, and its result."""
    source: str                     # the text as given (its own line endings, BOM)
    instruction: str
    language: str = ""
    path: str | None = None
    prompt: list[int] = field(default_factory=list)
    source_tokens: list[int] = field(default_factory=list)
    text: str = ""                  # decoded answer so far
    request: Request | None = None

    def __post_init__(self) -> None:
        self.original = SourceText.from_str(self.source)    # UnsafeText if it cannot come back exactly
        self.fence = fence_for(self.original.text)
        # The answer ends at a line that is exactly the fence: not at a longer
        # run of backticks, and (while decoding) only once the next character
        # shows the run is over.
        self._closing = re.compile(f"(?:^|\n){self.fence}(?!`)")
        self._closed_by = re.compile(f"(?:^|\n){self.fence}(?=[^`])")
        self._scanned = 0

    def closes_answer(self, piece: str) -> bool:
        """Adds decoded text; True once the answer's closing fence is seen."""
        self.text += piece
        found = self._closed_by.search(self.text, self._scanned)
        self._scanned = max(0, len(self.text) - len(self.fence) - 1)
        return found is not None

    def answer(self) -> str:
        """The rewritten file as the model wrote it (LF), or RewriteError."""
        req = self.request
        if req is None or req.finish_reason != "stop":
            reason = req.finish_reason if req else "not run"
            raise RewriteError(f"the rewrite is incomplete ({reason}): no closing code fence "
                               f"within the token budget; nothing was written")
        closing = self._closing.search(self.text)
        body = self.text[:closing.start()] if closing else self.text
        source = self.original.text
        if not body.strip():
            raise RewriteError("the model returned an empty file; nothing was written")
        if ASK in body and ASK not in source:
            raise RewriteError("the answer runs on past the file into the words of the prompt (the model did "
                               "not close its code block); nothing was written")
        if len(body) * MIN_KEPT_FRACTION < len(source):
            raise RewriteError(f"the answer ({len(body)} characters) is less than 1/{MIN_KEPT_FRACTION} of the "
                               f"file ({len(source)}): it looks like a fragment, not the whole file; "
                               f"nothing was written")
        if source.endswith("\n") and not body.endswith("\n"):
            body += "\n"
        return body

    def result(self) -> str:
        """The rewritten file in the source's own line endings, or RewriteError/UnsafeText."""
        return self.original.restore(self.answer())

    def outcome(self) -> Outcome:
        """The one reading of a finished decode: cancelled, failed (with the
        reason), or a complete answer that changes the file or not."""
        if self.request is not None and self.request.finish_reason == "cancelled":
            return Outcome(Status.CANCELLED, "cancelled before the answer was complete; nothing was changed")
        try:
            output = self.result()
        except (RewriteError, UnsafeText) as e:
            return Outcome(Status.FAILED, str(e))
        return Outcome(Status.UNCHANGED if output == self.source else Status.CHANGED, "", output)


def build_prompt(llm, job: RewriteJob) -> None:
    """Chat prompt: the code, then the instruction; the answer opens with a
    fence. Refuses (UnsafeText) a file holding bytes the model cannot encode."""
    source = job.original.text
    check_encodable(llm.tokenizer, source, "the file")
    content = (f"{job.fence}{job.language}\n{source.rstrip(chr(10))}\n{job.fence}\n\n"
               f"{job.instruction.strip()}\n"
               f"{ASK}")
    opening = f"{job.fence}{job.language}\n"
    job.prompt = llm.encode_chat([{"role": "user", "content": content}]) + llm.tokenizer.encode(opening)
    job.source_tokens = llm.tokenizer.encode(source)


def default_max_tokens(job: RewriteJob) -> int:
    """Room for the file to grow by half, plus the closing fence."""
    return int(len(job.source_tokens) * 1.5) + 64


def answer_budget(llm, job: RewriteJob, max_tokens: int | None) -> int:
    """The token budget for the answer; RewriteError when the context cannot
    hold the prompt and at least the file again (the one capacity rule)."""
    n_ctx = llm.ctx.n_ctx
    room = n_ctx - len(job.prompt) - 1
    if room < len(job.source_tokens) + ANSWER_SLACK:
        raise RewriteError(f"too large for the context: a {len(job.prompt)}-token prompt and a "
                           f"{len(job.source_tokens)}-token answer do not fit {n_ctx} tokens; raise the "
                           f"context size (--ctx, or the ctx setting)")
    return min(max_tokens or default_max_tokens(job), room)


def make_request(llm, job: RewriteJob, *, seq: int = 0, speculate: bool = True,
                 drafter_name: str = "auto", max_tokens: int | None = None,
                 drafter: Drafter | None = None,
                 on_text: Callable[[RewriteJob, list[int]], None] | None = None) -> Request:
    """A decode request that stops when the answer's code fence closes."""
    if not job.prompt:
        build_prompt(llm, job)
    budget = answer_budget(llm, job, max_tokens)
    if speculate and drafter is None:
        drafter = make_drafter(drafter_name, source_tokens=job.source_tokens)
    decoder = llm.tokenizer.stream_decoder()
    req = llm.request(job.prompt, max_tokens=budget, seq=seq,
                      drafter=drafter if speculate else None,
                      on_tokens=(lambda tokens: on_text(job, tokens)) if on_text else None)
    # Per token, so speculative and plain runs stop at the same token.
    req.is_final = lambda token: job.closes_answer(decoder.feed(token))
    job.request = req
    return req


def rewrite(llm, job: RewriteJob, **kwargs) -> RewriteJob:
    """Runs one rewrite to the end (see make_request for the options)."""
    req = make_request(llm, job, **kwargs)
    llm.decoder.run([req])
    return job
