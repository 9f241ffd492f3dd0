"""A file's text as the model sees it, and the way back to the file's own form.

The model reads and writes LF text without a byte-order mark. A file may
have CRLF line endings, a mix of LF and CRLF, or a UTF-8 BOM: `SourceText`
takes those off for the model and `restore` puts them back on the answer, so
every byte the answer did not change comes back as it was. What cannot be
mapped back exactly (invalid UTF-8, a carriage return that does not end a
line, a byte the model's vocabulary cannot encode) is refused with a message
that names the line, never guessed at or dropped.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

BOM = "\ufeff"
LF, CRLF = "\n", "\r\n"
_LONE_CR = re.compile(r"\r(?!\n)")


class UnsafeText(ValueError):
    """Text ditto cannot rewrite byte-exactly; the message says why and where."""


def line_of(text: str | bytes, index: int) -> int:
    """1-based line number of a character (or byte) index."""
    return text.count("\n" if isinstance(text, str) else b"\n", 0, index) + 1


def decode(data: bytes) -> str:
    """Strict UTF-8, with the first invalid byte and its line in the error."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnsafeText(f"not UTF-8 text: byte 0x{data[e.start]:02X} on line {line_of(data, e.start)} "
                         f"is not valid UTF-8; ditto only rewrites UTF-8 files") from None


@dataclass(frozen=True)
class SourceText:
    text: str                   # what the model sees: LF line endings, no BOM
    endings: tuple[str, ...]    # the original ending of each line that has one, in order
    bom: str = ""

    @classmethod
    def from_bytes(cls, data: bytes) -> SourceText:
        return cls.from_str(decode(data))

    @classmethod
    def from_str(cls, text: str) -> SourceText:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:   # from bad UTF-16 in an editor's JSON
            raise UnsafeText(f"line {line_of(text, e.start)} holds an unpaired surrogate "
                             f"(U+{ord(text[e.start]):04X}), which is not valid Unicode text") from None
        bom = BOM if text.startswith(BOM) else ""
        body = text[len(bom):]
        lone = _LONE_CR.search(body)
        if lone:
            raise UnsafeText(f"line {line_of(body, lone.start())} holds a carriage return that does not end "
                             f"a CRLF line ending; ditto cannot give it back exactly, so it does not rewrite "
                             f"this text")
        endings = tuple(CRLF if line.endswith("\r") else LF for line in body.split("\n")[:-1])
        return cls(body.replace(CRLF, LF), endings, bom)

    def original(self) -> str:
        """The text as it was read (restore of the unchanged text)."""
        return self.restore(self.text)

    def restore(self, answer: str) -> str:
        """The model's LF answer in this text's own line endings and BOM.

        A uniformly CRLF text gets CRLF on every line; in a mixed text each
        line the answer kept keeps its ending, and a new or changed line takes
        the ending of the line it replaces (or follows)."""
        if "\r" in answer:
            raise UnsafeText(f"the answer holds a carriage return on line {line_of(answer, answer.index(chr(13)))};"
                             f" ditto restores line endings itself, so it does not write such an answer")
        kinds = set(self.endings)
        if kinds <= {LF}:
            body = answer
        elif kinds == {CRLF}:
            body = answer.replace(LF, CRLF)
        else:
            body = self._restore_mixed(answer)
        return self.bom + body

    def _restore_mixed(self, answer: str) -> str:
        old, new = self.text.split(LF), answer.split(LF)
        last = len(self.endings) - 1
        pieces: list[str] = []
        matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            for k in range(j2 - j1):
                if tag == "equal":
                    source_line = i1 + k
                elif tag == "replace":
                    source_line = min(i1 + k, i2 - 1)
                else:  # an inserted line: the ending of the line before it
                    source_line = max(i1 - 1, 0)
                pieces.append(new[j1 + k])
                pieces.append(self.endings[min(source_line, last)])
        pieces.pop()  # the last piece of a split has no line ending after it
        return "".join(pieces)


def check_encodable(tokenizer, text: str, what: str = "the text", first_line: int = 1) -> None:
    """UnsafeText naming the first byte of `text` the model's vocabulary has no
    token for (byte-level BPE drops such bytes silently), and its line
    (counted from `first_line`, for a piece of a longer text)."""
    if tokenizer.can_round_trip(text):
        return
    lossy = [i for i in (text.find(c) for c in tokenizer.lossy_chars) if i >= 0]
    if lossy:
        index = min(lossy)
        raise UnsafeText(f"{what} holds {text[index]!r} (U+{ord(text[index]):04X}) on line "
                         f"{first_line - 1 + line_of(text, index)}, which the model's tokenizer reads as a "
                         f"space: it would be changed, so the text is refused")
    data = text.encode("utf-8", "surrogatepass")
    index = min(i for i in (data.find(bytes([b])) for b in tokenizer.missing_bytes) if i >= 0)
    start = index
    while start > 0 and data[start] & 0xC0 == 0x80:
        start -= 1
    char = data[start:start + 4].decode("utf-8", errors="ignore")[:1]
    line = first_line - 1 + line_of(data, index)
    raise UnsafeText(f"{what} holds byte 0x{data[index]:02X} ({char!r}) on line {line}, which the model's "
                     f"vocabulary cannot encode: it would be dropped, so the text is refused")
