"""Character offsets in a document <-> LSP positions: the one place that counts
position units.

Units are those of the position encoding negotiated at `initialize` (pygls's
`PositionCodec`: utf-8 bytes, utf-16 code units or code points). Lines end at
"\\n", "\\r\\n" or "\\r", as the LSP defines them. A character past the end
of its line means the end of the line (the LSP says so); a line past the end
of the document, or a character that falls inside a character (half a UTF-16
surrogate pair, the middle of a UTF-8 sequence) is an error, never guessed.
"""
from __future__ import annotations

import re

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

_EOL = re.compile(r"\r\n|\r|\n")


class PositionError(ValueError):
    """A position or range that does not exist in the document."""


def _line_span(text: str, line: int) -> tuple[int, int]:
    """(start, end) offsets of line `line`'s content, without its line ending."""
    if line < 0:
        raise PositionError(f"negative line {line}")
    start = 0
    if line > 0:
        for n, eol in enumerate(_EOL.finditer(text), 1):
            if n == line:
                start = eol.end()
                break
        else:
            lines = len(_EOL.findall(text)) + 1
            raise PositionError(f"line {line} is past the end of the document ({lines} lines)")
    eol = _EOL.search(text, start)
    return start, eol.start() if eol else len(text)


def offset_of(text: str, position: types.Position, codec: PositionCodec) -> int:
    """The offset in `text` of an LSP position."""
    if position.character < 0:
        raise PositionError(f"negative character {position.character}")
    start, end = _line_span(text, position.line)
    content = text[start:end]
    if content.isascii():
        return start + min(position.character, len(content))
    units = 0
    for i, ch in enumerate(content):
        if units >= position.character:
            if units > position.character:
                raise PositionError(f"character {position.character} on line {position.line} falls inside "
                                    f"a character ({codec.encoding} units)")
            return start + i
        units += codec.client_num_units(ch)
    if units > position.character:
        raise PositionError(f"character {position.character} on line {position.line} falls inside "
                            f"a character ({codec.encoding} units)")
    return end


def position_of(text: str, offset: int, codec: PositionCodec) -> types.Position:
    """The LSP position of an offset in `text` (0 <= offset <= len(text))."""
    line = len(_EOL.findall(text, 0, offset))
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    return types.Position(line=line, character=codec.client_num_units(text[line_start:offset]))


def end_position(text: str, codec: PositionCodec) -> types.Position:
    """The position just after the last character: the end of a whole-file range."""
    return position_of(text, len(text), codec)


def range_offsets(text: str, rng: types.Range, codec: PositionCodec) -> tuple[int, int]:
    """(start, end) offsets of a range; a range that ends before it starts is an error."""
    start, end = offset_of(text, rng.start, codec), offset_of(text, rng.end, codec)
    if end < start:
        raise PositionError(f"the range ends ({rng.end.line}:{rng.end.character}) before it starts "
                            f"({rng.start.line}:{rng.start.character})")
    return start, end


def apply_change(text: str, change: types.TextDocumentContentChangeEvent, codec: PositionCodec) -> str:
    """The text after one didChange content change."""
    if isinstance(change, types.TextDocumentContentChangeWholeDocument):
        return change.text
    start, end = range_offsets(text, change.range, codec)
    return text[:start] + change.text + text[end:]
