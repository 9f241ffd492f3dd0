"""LSP base-protocol framing with bounds: the one reader every transport uses.

A message is header lines (`Content-Length: N`, optionally `Content-Type`),
a blank line, then N bytes of JSON. Everything the peer controls is bounded:
the length of a header line, the number of header lines and the body size,
so no header can make the server allocate what it was told to. Anything
else is a `FramingError` that says what was wrong; the caller decides
whether to resynchronise (stdio) or close the connection (sockets).
"""
from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from .server import MAX_DOCUMENT_CHARS

# The largest document the server accepts, JSON-escaped in the worst case
# (6 bytes per character), plus room for the rest of the message.
MAX_MESSAGE_BYTES = 6 * MAX_DOCUMENT_CHARS + (1 << 20)
MAX_HEADER_LINE = 1024
MAX_HEADER_LINES = 8
ID_SCAN_BYTES = 64 << 10        # how much of an oversized body may be read to find its id
CHUNK = 64 << 10

_HTTP_REQUEST_LINE = re.compile(rb"^[A-Z]+ \S* HTTP/\d")
_HEADER_MARK = b"Content-Length:"


class FramingError(Exception):
    """The byte stream is not LSP framing; the message says how."""


class Oversized(FramingError):
    """A message above the size limit; its body is still unread."""

    def __init__(self, length: int, limit: int, msg_id: int | str | None) -> None:
        super().__init__(f"message of {length} bytes is larger than the limit of {limit} bytes")
        self.length = length            # body bytes still to skip
        self.msg_id = msg_id


class FrameReader:
    """Reads framed messages from `read_some(n)` (up to n bytes, b"" at end of stream)."""

    def __init__(self, read_some: Callable[[int], Awaitable[bytes]], max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._read_some = read_some
        self._buf = bytearray()
        self._eof = False
        self.max_message = max_message

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await self._read_some(CHUNK)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    async def _peek_line(self) -> bytes | None:
        """The next line, not consumed; None at end of stream."""
        while True:
            end = self._buf.find(b"\n", 0, MAX_HEADER_LINE)
            if end >= 0:
                return bytes(self._buf[:end + 1])
            if len(self._buf) >= MAX_HEADER_LINE:
                raise FramingError(f"header line longer than {MAX_HEADER_LINE} bytes")
            if not await self._fill():
                if self._buf:
                    raise FramingError("the stream ended inside a header line")
                return None

    async def _find_id(self, limit: int) -> int | str | None:
        """The id of the message whose body starts the buffer, read from at most
        `limit` bytes and only as far as needed (nothing is consumed)."""
        while (msg_id := top_level_id(bytes(self._buf[:limit]))) is None:
            if len(self._buf) >= limit or not await self._fill():
                return None
        return msg_id

    async def _take(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not await self._fill():
                return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def next_message(self) -> bytes | None:
        """The next message body; None at end of stream between messages."""
        length: int | None = None
        for count in range(MAX_HEADER_LINES + 1):
            line = await self._peek_line()
            if line is None:
                if count:
                    raise FramingError("the stream ended inside the headers")
                return None
            if _HTTP_REQUEST_LINE.match(line):
                raise FramingError(f"an HTTP request ({line[:40]!r}), not an LSP message")
            if line == b"\r\n":
                del self._buf[:len(line)]
                break
            length = _header_value(line, length)
            del self._buf[:len(line)]
        else:
            raise FramingError(f"more than {MAX_HEADER_LINES} header lines")
        if length is None:
            raise FramingError("a message without a Content-Length header")
        if length > self.max_message:
            raise Oversized(length, self.max_message, await self._find_id(min(length, ID_SCAN_BYTES)))
        body = await self._take(length)
        if body is None:
            raise FramingError(f"the stream ended inside a message of {length} bytes")
        return body

    async def skip(self, n: int) -> bool:
        """Discards n bytes, holding at most one chunk; False if the stream ended first."""
        while n > 0:
            if not self._buf and not await self._fill():
                return False
            taken = min(n, len(self._buf))
            del self._buf[:taken]
            n -= taken
        return True

    async def resync(self) -> bool:
        """Drops bytes up to the next `Content-Length:` after the current position,
        so that one broken message costs only itself; False at end of stream."""
        start = 1
        while True:
            i = self._buf.find(_HEADER_MARK, start)
            if i >= 0:
                del self._buf[:i]
                return True
            keep = len(_HEADER_MARK) - 1
            del self._buf[:max(0, len(self._buf) - keep)]
            start = 0
            if not await self._fill():
                return False


def _header_value(line: bytes, length: int | None) -> int | None:
    """Validates one header line; returns the Content-Length seen so far."""
    if not line.endswith(b"\r\n"):
        raise FramingError(f"header line not ended by CRLF: {line[:60]!r}")
    name, colon, value = line[:-2].partition(b":")
    if not colon:
        raise FramingError(f"malformed header line {line[:60]!r}")
    name, value = name.strip().lower(), value.strip()
    if name == b"content-type":
        return length
    if name != b"content-length":
        raise FramingError(f"unknown header {name[:40]!r} (only Content-Length and Content-Type)")
    if length is not None:
        raise FramingError("two Content-Length headers")
    if not (value.isdigit() and len(value) <= 20):
        raise FramingError(f"Content-Length must be a decimal number of bytes, got {value[:40]!r}")
    return int(value)


def top_level_id(start: bytes) -> int | str | None:
    """The "id" of a JSON-RPC message from the start of its body, if the
    members before it are complete there; None when it cannot be known."""
    text = start.decode("utf-8", "ignore")
    decoder = json.JSONDecoder()
    i = _skip_space(text, 0)
    if text[i:i + 1] != "{":
        return None
    i += 1
    try:
        while True:
            i = _skip_space(text, i)
            key, i = decoder.raw_decode(text, i)
            i = _skip_space(text, i)
            if text[i:i + 1] != ":":
                return None
            value, i = decoder.raw_decode(text, _skip_space(text, i + 1))
            if key == "id":
                ok = isinstance(value, (int, str)) and not isinstance(value, bool)
                return value if ok else None
            i = _skip_space(text, i)
            if text[i:i + 1] != ",":
                return None
            i += 1
    except (json.JSONDecodeError, ValueError):
        return None


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def error_frame(msg_id: int | str | None, code: int, message: str) -> bytes:
    """A framed JSON-RPC error response."""
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body
