"""Whole-file rewrites: prompt, speculative decode, and a checked result.

The prompt gives the model the file first and the instruction after it, then
opens the assistant's answer with a code fence, so the answer is the new
file itself and the edit-aware drafter can follow the original from its
first token. A result counts only when the model closed the fence (or ended
its turn) within the token budget: a truncated or empty file is refused, so
nothing half-written ever replaces a user's file.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .decode import Request
from .drafters import make_drafter
from .drafters.base import Drafter
from .files import TEMP_SUFFIX

FENCE = "```"
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
    """The model's answer is not a complete file; the message says why."""


def language_for(path: str | os.PathLike | None) -> str:
    return LANGUAGES.get(Path(path).suffix.lower(), "") if path else ""


@dataclass
class RewriteJob:
    """One file to rewrite: its text, the prompt built for it, and its result."""
    source: str
    instruction: str
    language: str = ""
    path: str | None = None
    prompt: list[int] = field(default_factory=list)
    source_tokens: list[int] = field(default_factory=list)
    text: str = ""                  # decoded answer so far
    finished: bool = False          # the closing fence or end of turn was seen
    request: Request | None = None

    def result(self) -> str:
        """The rewritten file, or RewriteError if the answer is incomplete."""
        if not self.finished:
            reason = self.request.finish_reason if self.request else "not run"
            raise RewriteError(f"the rewrite is incomplete ({reason}): no closing code fence "
                               f"within the token budget; nothing was written")
        body = self.text.split("\n" + FENCE, 1)[0] if ("\n" + FENCE) in self.text else self.text
        if not body.strip():
            raise RewriteError("the model returned an empty file; nothing was written")
        if len(body) * MIN_KEPT_FRACTION < len(self.source):
            raise RewriteError(f"the answer ({len(body)} characters) is less than 1/{MIN_KEPT_FRACTION} of the "
                               f"file ({len(self.source)}): it looks like a fragment, not the whole file; "
                               f"nothing was written")
        if self.source.endswith("\n") and not body.endswith("\n"):
            body += "\n"
        return body


def build_prompt(llm, job: RewriteJob) -> None:
    """Chat prompt: the code, then the instruction; the answer opens with a fence."""
    content = (f"{FENCE}{job.language}\n{job.source.rstrip(chr(10))}\n{FENCE}\n\n"
               f"{job.instruction.strip()}\n"
               f"Answer with the complete updated file in a single code block.")
    opening = f"{FENCE}{job.language}\n"
    job.prompt = llm.encode_chat([{"role": "user", "content": content}]) + llm.tokenizer.encode(opening)
    job.source_tokens = llm.tokenizer.encode(job.source)


def default_max_tokens(job: RewriteJob) -> int:
    """Room for the file to grow by half, plus the closing fence."""
    return int(len(job.source_tokens) * 1.5) + 64


def make_request(llm, job: RewriteJob, *, seq: int = 0, speculate: bool = True,
                 drafter_name: str = "auto", max_tokens: int | None = None,
                 drafter: Drafter | None = None,
                 on_text: Callable[[RewriteJob, list[int]], None] | None = None) -> Request:
    """A decode request that stops when the answer's code fence closes."""
    if not job.prompt:
        build_prompt(llm, job)
    if speculate and drafter is None:
        drafter = make_drafter(drafter_name, source_tokens=job.source_tokens)
    decoder = llm.tokenizer.stream_decoder()

    def closes_answer(token: int) -> bool:
        """Per token, so speculative and plain runs stop at the same token."""
        job.text += decoder.feed(token)
        if ("\n" + FENCE) in job.text or job.text.startswith(FENCE):
            job.finished = True
        return job.finished

    req = llm.request(job.prompt, max_tokens=max_tokens or default_max_tokens(job), seq=seq,
                      drafter=drafter if speculate else None,
                      on_tokens=(lambda tokens: on_text(job, tokens)) if on_text else None)
    req.is_final = closes_answer
    job.request = req
    return req


def finish(job: RewriteJob) -> None:
    """After decoding: an end of turn also closes the answer."""
    if job.request is not None and job.request.finish_reason == "stop":
        job.finished = True


def rewrite(llm, job: RewriteJob, **kwargs) -> RewriteJob:
    """Runs one rewrite to the end (see make_request for the options)."""
    req = make_request(llm, job, **kwargs)
    llm.decoder.run([req])
    finish(job)
    return job


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replaces a file with `text` at once: temporary file, fsync, rename.

    A crash at any moment leaves either the old file or the new one. The
    file keeps its permission bits.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
