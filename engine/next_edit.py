"""Next-edit suggestions: recent edits -> prompt -> the window as the model rewrites it.

After the user changes one place, the model is shown the recent edits (as
hunks: original lines -> updated lines) and the window of lines around the
cursor, and writes the window again with the same kind of change applied.
The answer is reduced to the smallest changed line range and a position to
jump to. Two prompt formats:

- `sweep`: the raw-text format Sweep's next-edit GGUFs are trained on,
  built as their published client builds it (sweepai/cursortab.nvim,
  server/provider/sweep/sweep.go: diff sections, then original/current/
  updated sections of the window; stop at <|file_sep|>).
- `instruct`: a chat prompt for ordinary instruction models; the answer's
  opening code fence is in the prompt (as engine/rewrite.py does), so the
  answer is the window itself and the drafter follows it from token one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .decode import Request
from .drafters.edit import EditAwareDrafter
from .rewrite import RewriteError, RewriteJob, language_for

WINDOW_LINES = 21          # Sweep's models are trained on 21-line windows
MAX_HUNKS = 8
MAX_HUNK_LINES = 12        # lines kept of each side of a hunk
GROUP_LINES = 1            # an edit this close to the last hunk's lines extends it
GROUP_SECONDS = 3.0        # ... if it comes this soon after it
LINE_TOLERANCE = 3         # an answer may add or drop this many lines, no more
FILE_SEP = "<|file_sep|>"
FORMATS = ("auto", "sweep", "instruct")
INSTRUCTION = ("Above are my recent edits and the code around my cursor. Apply the same kind of "
               "change wherever it is still needed in this code (for example the same rename, or the "
               "same new argument). Answer with the complete code above, changed, in a single code block.")


@dataclass
class Hunk:
    """Lines start..start+len(original) of the text before the edits became `updated`."""
    start: int
    original: list[str]
    updated: list[str]
    time: float = 0.0

    @property
    def changed(self) -> bool:
        return self.original != self.updated

    def clipped(self) -> "Hunk":
        return Hunk(self.start, self.original[:MAX_HUNK_LINES], self.updated[:MAX_HUNK_LINES], self.time)


@dataclass
class EditHistory:
    """One document's recent edits, grouped into hunks: consecutive edits on
    the same or adjacent lines, close in time, make one hunk."""
    hunks: list[Hunk] = field(default_factory=list)

    def record(self, before: str, after: str, now: float) -> None:
        """`before` became `after` by one edit (a keystroke, a paste, a didChange):
        its lines are those between the lines both texts begin and end with,
        so any edit event will do and no range has to be trusted."""
        old, new = lines_of(before), lines_of(after)
        grown = len(new) - len(old)
        lo = 0
        while lo < min(len(old), len(new)) and old[lo] == new[lo]:
            lo += 1
        tail = 0
        while tail < min(len(old), len(new)) - lo and old[-1 - tail] == new[-1 - tail]:
            tail += 1
        hi = len(old) - tail                            # the edit's lines in `before`: lo..hi
        last = self.hunks[-1] if self.hunks else None
        if last is not None and now - last.time <= GROUP_SECONDS \
                and lo <= last.start + len(last.updated) + GROUP_LINES and hi >= last.start - GROUP_LINES:
            # The union of both edits' lines in `before`; lines of it outside the
            # last hunk were not touched by it, so they are original too.
            s, n = last.start, len(last.updated)
            lo2, hi2 = min(lo, s), max(hi, s + n)
            original = old[lo2:s] + last.original + old[s + n:hi2]
            self.hunks[-1] = Hunk(lo2, original, new[lo2:hi2 + grown], now)
        else:
            self.hunks.append(Hunk(lo, old[lo:hi], new[lo:hi + grown], now))
            del self.hunks[:-MAX_HUNKS]
        if not self.hunks[-1].changed:
            self.hunks.pop()   # typed and undone: nothing to learn from

    def recent(self) -> list[Hunk]:
        return [h.clipped() for h in self.hunks if h.changed]


def lines_of(text: str) -> list[str]:
    """The text's lines as the model sees them (LF; a CRLF document has as many lines)."""
    return text.replace("\r\n", "\n").split("\n")


def window_bounds(n_lines: int, cursor_line: int, size: int = WINDOW_LINES) -> tuple[int, int]:
    """size lines centred on the cursor, shifted to stay inside the text."""
    start = max(0, min(cursor_line - size // 2, n_lines - size))
    return start, min(n_lines, start + size)


def original_window(lines: list[str], start: int, end: int, hunks: list[Hunk]) -> list[str]:
    """The window as it was before the latest hunk (undone where it lies in
    the window); Sweep's client shows the file before the recent edits."""
    window = lines[start:end]
    if not hunks:
        return window
    h = hunks[-1]
    s, e = h.start - start, h.start + len(h.updated) - start
    if s < 0 or e > len(window):
        return window
    return window[:s] + h.original + window[e:]


def sweep_prompt(path: str, hunks: list[Hunk], original: list[str], current: list[str]) -> str:
    """Sweep's format, section for section as cursortab.nvim's sweep.go builds it."""
    parts = [f"{FILE_SEP}{path}.diff\noriginal:\n" + "\n".join(h.original)
             + "\nupdated:\n" + "\n".join(h.updated) + "\n" for h in hunks]
    parts.append(f"{FILE_SEP}original/{path}\n" + "\n".join(original) + "\n")
    parts.append(f"{FILE_SEP}current/{path}\n" + "\n".join(current) + "\n")
    parts.append(f"{FILE_SEP}updated/{path}\n")
    return "".join(parts)


def instruct_message(hunks: list[Hunk], window: list[str], fence: str, language: str) -> str:
    """The user message of the instruct format: the edits as small diffs, then the window."""
    diffs = []
    for h in hunks:
        diffs += [f"-{line}" for line in h.original] + [f"+{line}" for line in h.updated] + [""]
    edits = f"{fence}diff\n" + "\n".join(diffs).rstrip("\n") + f"\n{fence}\n\n" if hunks else ""
    code = "\n".join(window)
    return f"My recent edits:\n{edits}The code around my cursor:\n{fence}{language}\n{code}\n{fence}\n\n{INSTRUCTION}"


@dataclass
class Suggestion:
    """Replace lines start_line..end_line (exclusive) with new_lines; jump to (jump_line, jump_character)."""
    start_line: int
    end_line: int
    new_lines: list[str]
    jump_line: int
    jump_character: int


def parse_answer(window: list[str], answer: str, window_start: int) -> Suggestion | None:
    """The smallest changed line range between the window and the answer;
    None when they are equal or the answer is not a window (line count off
    by more than LINE_TOLERANCE)."""
    if not answer:
        return None
    new = (answer[:-1] if answer.endswith("\n") else answer).split("\n")
    if abs(len(new) - len(window)) > LINE_TOLERANCE:
        return None
    head = 0
    while head < min(len(new), len(window)) and new[head] == window[head]:
        head += 1
    if head == len(new) == len(window):
        return None
    tail = 0
    while tail < min(len(new), len(window)) - head and new[-1 - tail] == window[-1 - tail]:
        tail += 1
    old_line = window[head] if head < len(window) else ""
    new_line = new[head] if head < len(new) else ""
    column = next((i for i, (a, b) in enumerate(zip(old_line, new_line)) if a != b),
                  min(len(old_line), len(new_line)))
    return Suggestion(window_start + head, window_start + len(window) - tail,
                      new[head:len(new) - tail], window_start + head, column)


def choose_format(setting: str, tokenizer) -> str:
    """auto: sweep when the vocabulary has <|file_sep|> (Qwen2.5-Coder based), else instruct."""
    if setting not in FORMATS:
        raise ValueError(f"next-edit format must be one of {', '.join(FORMATS)}, not {setting!r}")
    if setting == "auto":
        return "sweep" if tokenizer.token_id(FILE_SEP) is not None else "instruct"
    return setting


@dataclass
class NextEditJob:
    """One next-edit decode: prompt, window, and reading the answer."""
    path: str
    lines: list[str]           # the document's lines (LF)
    cursor_line: int
    hunks: list[Hunk]
    format: str = "instruct"

    def __post_init__(self) -> None:
        # A text ending in a newline has no line after it: the empty string
        # split() leaves there is not shown, or the answer (which ends with a
        # newline before its fence, like the rewrite's) would seem to drop it.
        n_lines = len(self.lines) - (len(self.lines) > 1 and self.lines[-1] == "")
        self.start, self.end = window_bounds(n_lines, self.cursor_line)
        self.window = self.lines[self.start:self.end]
        self.window_text = "\n".join(self.window) + "\n"
        # Reuses the rewrite's fence and closing-fence detection for the instruct answer.
        self.rewrite = RewriteJob(source=self.window_text, instruction=INSTRUCTION,
                                  language=language_for(self.path), path=self.path)
        self.text = ""
        self.request: Request | None = None

    def prompt(self, llm) -> list[int]:
        if self.format == "sweep":
            original = original_window(self.lines, self.start, self.end, self.hunks)
            text = sweep_prompt(self.path, self.hunks, original, self.window)
            return llm.tokenizer.bos_prefix() + llm.tokenizer.encode_with_specials(text)
        rj = self.rewrite
        content = instruct_message(self.hunks, self.window, rj.fence, rj.language)
        return llm.encode_chat([{"role": "user", "content": content}]) + \
            llm.tokenizer.encode(f"{rj.fence}{rj.language}\n")

    def drafter(self, llm) -> EditAwareDrafter:
        """Follows the window, with the hunks' substitutions learned up front."""
        encode = llm.tokenizer.encode
        drafter = EditAwareDrafter(encode(self.window_text))
        drafter.seed([(encode("\n".join(h.original)), encode("\n".join(h.updated))) for h in self.hunks])
        return drafter

    def make_request(self, llm, *, seq: int = 0, speculate: bool = True) -> Request:
        prompt = self.prompt(llm)
        budget = min(2 * len(llm.tokenizer.encode(self.window_text)) + 32, llm.ctx.n_ctx - len(prompt) - 1)
        if budget <= 0:
            raise RewriteError(f"the next-edit prompt ({len(prompt)} tokens) does not fit the context")
        req = llm.request(prompt, max_tokens=budget, seq=seq, drafter=self.drafter(llm) if speculate else None)
        stream = llm.tokenizer.stream_decoder()
        sep = llm.tokenizer.token_id(FILE_SEP)

        def is_final(token: int) -> bool:
            piece = stream.feed(token)
            self.text += piece
            if self.format == "sweep":
                return token == sep or FILE_SEP in self.text
            return self.rewrite.closes_answer(piece)
        req.is_final = is_final
        self.request = self.rewrite.request = req
        return req

    def answer(self) -> str | None:
        """The window as the model wrote it, or None (incomplete, or text outside it)."""
        req = self.request
        if req is None or req.finish_reason != "stop":
            return None
        if self.format == "sweep":
            return self.text.split(FILE_SEP, 1)[0]
        try:
            return self.rewrite.answer()
        except RewriteError:
            return None

    def suggestion(self) -> Suggestion | None:
        answer = self.answer()
        return None if answer is None else parse_answer(self.window, answer, self.start)

