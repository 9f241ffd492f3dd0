"""Completion prompts: a stable window of the prefix, FIM when the model has
it, chunks of other files, and the stop rule for single- or multi-line style.

Everything here is a pure function of the document text, the cursor and the
settings, so a test can rebuild the exact prompt a completion used and
evaluate it cold.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from ..engine.source_text import check_encodable

BLOCK_LINES = 32      # the window's first line moves in steps of this many lines
CHARS_PER_TOKEN = 3   # estimate for code, to place the window without tokenizing
HARD_FACTOR = 2       # tokens beyond prompt_tokens * HARD_FACTOR are cut from the front
MAX_TOKEN_CHARS = 16  # a window search looks no further up than this many characters a token


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    window_start: int     # character offset of the window's first character
    prefix: str           # document text from window_start to the cursor
    multiline: bool
    indent: int           # indentation of the cursor's line (multi-line stop rule)


def line_starts(text: str) -> list[int]:
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts


def window_start(text: str, offset: int, prompt_tokens: int) -> int:
    """Start of the prompt window: a line start, moved in blocks of lines so
    that it stays put while the user types (prefix reuse needs that)."""
    budget = prompt_tokens * CHARS_PER_TOKEN
    if offset <= budget:
        return 0
    starts = line_starts(text[:offset])
    # first line whose start is within the budget
    lo = 0
    for i, s in enumerate(starts):
        if offset - s <= budget:
            lo = i
            break
    else:
        lo = len(starts) - 1
    line = (lo // BLOCK_LINES) * BLOCK_LINES
    return starts[line]


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def completion_style(style: str, line_before: str) -> bool:
    """True for multi-line: by setting, or (auto) when the cursor starts a line."""
    if style == "single":
        return False
    if style == "multi":
        return True
    return line_before.strip() == ""


def nearest_lines_start(tokenizer, text: str, offset: int, max_tokens: int) -> int:
    """Start of the window of the lines nearest the cursor whose text up to the
    cursor encodes to at most `max_tokens` tokens. It holds the cursor's line
    at least (and the line above, when nothing but blanks precedes the cursor
    on its own), whatever that costs."""
    starts = line_starts(text[:offset])
    floor = len(starts) - 1
    if floor > 0 and not text[starts[floor]:offset].strip():
        floor -= 1
    # Lines further up than MAX_TOKEN_CHARS characters a token would not fit code (CHARS_PER_TOKEN on average).
    lo, hi = 0, floor
    while lo < hi and offset - starts[lo] > max(0, max_tokens) * MAX_TOKEN_CHARS:
        lo += 1
    # Binary search for the first line that fits; hi always names one that does (or the floor).
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.encode(text[starts[mid]:offset])) <= max_tokens:
            hi = mid
        else:
            lo = mid + 1
    return starts[hi]


def frame_tokens(tokenizer, below: list[int]) -> int:
    """Tokens of a prompt that are not document text before the cursor: BOS,
    and with FIM the three markers and the text below the cursor."""
    fim = 3 + len(below) if tokenizer.fim.can_infill else 0
    return len(tokenizer.bos_prefix()) + fim


def build_prompt(tokenizer, text: str, offset: int, *, prompt_tokens: int, suffix_tokens: int,
                 style: str, chunks: tuple[str, ...] = (), start: int | None = None) -> tuple[Prompt, list[int]]:
    """The prompt for a completion at `offset`, and the tokens below the cursor
    (for the drafter). Raw prefix for plain models; prefix/suffix/middle
    (llama.cpp's PSM order) whenever the vocabulary has the three FIM tokens.
    The window starts at `start` if given (a line start), else where
    `window_start` puts it for `prompt_tokens`. UnsafeText if the document
    text in the prompt holds a byte the model cannot encode."""
    if start is None:
        start = window_start(text, offset, prompt_tokens)
    prefix = text[start:offset]
    line_start = text.rfind("\n", 0, offset) + 1
    line_before = text[line_start:offset]
    multiline = completion_style(style, line_before)
    suffix_text = text[offset:offset + max(0, suffix_tokens) * 4]
    # A byte the vocabulary lacks would vanish from the prompt unseen: refuse instead.
    check_encodable(tokenizer, text[start:offset + len(suffix_text)], "the document",
                    first_line=text.count("\n", 0, start) + 1)
    extra = "".join(chunks)
    prefix_tokens = tokenizer.encode(extra + prefix) if (extra or prefix) else []
    hard = prompt_tokens * HARD_FACTOR
    if len(prefix_tokens) > hard:
        prefix_tokens = prefix_tokens[-hard:]
    below = tokenizer.encode(suffix_text)[:suffix_tokens] if suffix_text else []
    fim = tokenizer.fim   # from the GGUF's keys, else found by token text (engine/fim.py)
    if fim.can_infill:
        tokens = tokenizer.bos_prefix() + [fim.pre] + prefix_tokens + [fim.suf] + below + [fim.mid]
    else:
        tokens = tokenizer.bos_prefix() + prefix_tokens
    if not tokens:
        # An empty document: start from a newline so there is something to condition on.
        tokens = tokenizer.encode("\n")
    return Prompt(tokens, start, prefix, multiline, indent_of(line_before)), below


class StopRule:
    """Decides, token by token, where a suggestion ends; `text` is the kept part.

    Single-line: at the end of the first line that has content. Multi-line:
    at a blank line, or at a line indented less than the cursor's line.
    """

    MAX_LINES = 12

    def __init__(self, tokenizer, multiline: bool, indent: int) -> None:
        self.multiline = multiline
        self.indent = indent
        self.raw = ""
        self.text = ""
        self.stopped = False
        self._decoder = tokenizer.stream_decoder()

    def feed(self, token: int) -> bool:
        """Adds a token's text; True when the suggestion is complete."""
        if self.stopped:
            return True
        self.raw += self._decoder.feed(token)
        cut = self._cut(self.raw)
        if cut is not None:
            self.text, self.stopped = self.raw[:cut], True
        else:
            # Without a stop yet, the suggestion is all the text so far.
            self.text = self.raw
        return self.stopped

    def finish(self) -> str:
        """The suggestion when decoding ended without a stop (length, budget, EOG)."""
        if not self.stopped:
            self.raw += self._decoder.flush()
            cut = self._cut(self.raw)
            self.text = self.raw[:cut] if cut is not None else self.raw
        return self.text.rstrip(" \t") if "\n" not in self.text else self.text.rstrip()

    def _cut(self, s: str) -> int | None:
        if not self.multiline:
            i = s.find("\n")
            while i >= 0:
                if s[:i].strip():
                    return i
                i = s.find("\n", i + 1)
            return None
        lines = s.split("\n")
        pos = 0
        for n, line in enumerate(lines[:-1]):  # the last one may be incomplete
            if n > 0 and not line.strip():
                return max(0, pos - 1)          # a blank line ends the block
            if n > 0 and indent_of(line) < self.indent:
                return max(0, pos - 1)          # dedent
            if n >= self.MAX_LINES:
                return max(0, pos - 1)
            pos += len(line) + 1
        return None


# ---- chunks of other files ---------------------------------------------------------------

def uri_name(uri: str) -> str:
    try:
        return os.path.basename(unquote(urlparse(uri).path)) or uri
    except ValueError:
        return uri


def _comment(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return "#" if ext in (".py", ".pyi", ".sh", ".rb", ".toml", ".yaml", ".yml", ".r", ".pl") else "//"


def _similarity(a: str, b: str) -> float:
    la = {l.strip() for l in a.splitlines() if l.strip()}
    lb = {l.strip() for l in b.splitlines() if l.strip()}
    if not la or not lb:
        return 0.0
    return len(la & lb) / len(la | lb)


class ChunkRing:
    """Recently seen pieces of other files (llama.vim's ring buffer)."""

    def __init__(self, size: int = 16) -> None:
        self.chunks: deque[tuple[str, str]] = deque(maxlen=size)   # (uri, text)

    def add(self, uri: str, text: str, line: int, chunk_lines: int) -> None:
        lines = text.splitlines(keepends=True)
        if not lines:
            return
        lo = max(0, min(line, len(lines) - 1) - chunk_lines // 2)
        body = "".join(lines[lo:lo + chunk_lines])
        if not body.strip():
            return
        # A chunk too like one already held replaces it.
        for i, (u, t) in enumerate(self.chunks):
            if u == uri and _similarity(t, body) > 0.5:
                del self.chunks[i]
                break
        self.chunks.append((uri, body))

    def select(self, uri: str, around_cursor: str, n: int) -> tuple[str, ...]:
        """Up to n recent chunks of other files, skipping those too similar to the cursor's surroundings."""
        out: list[str] = []
        for u, text in reversed(self.chunks):
            if len(out) >= n:
                break
            if u == uri or _similarity(text, around_cursor) > 0.5:
                continue
            name = uri_name(u)
            out.append(f"{_comment(name)} {name}\n{text.rstrip()}\n\n")
        return tuple(reversed(out))
