"""The framing reader on its own (lsp/framing.py): bounded headers, ids of
oversized messages, and recovery after garbage on stdio."""
from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ditto.lsp.framing import FrameReader, FramingError, Oversized, top_level_id


def reader_over(data: bytes, max_message: int = 1 << 20) -> FrameReader:
    view = memoryview(data)
    pos = 0

    async def read_some(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos:pos + min(n, 7)])   # small reads: every boundary gets crossed
        pos += len(chunk)
        return chunk
    return FrameReader(read_some, max_message)


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_all(frames: FrameReader) -> list[bytes]:
    """What a stdio server reads: bodies, skipping what is broken."""
    out = []
    while True:
        try:
            body = await frames.next_message()
        except Oversized as e:
            if not await frames.skip(e.length):
                return out
            continue
        except FramingError:
            if not await frames.resync():
                return out
            continue
        if body is None:
            return out
        out.append(body)


def test_top_level_id_is_the_messages_own_not_a_nested_one():
    assert top_level_id(b'{"jsonrpc": "2.0", "params": {"id": 5}, "id": 3, "method": "x", "params": {"te') == 3
    assert top_level_id(b'{"id": "abc", "params": {"text": "trunc') == "abc"
    assert top_level_id(b'{"method": "x", "params": {"text": "truncated before the id') is None
    assert top_level_id(b'{"id": true}') is None
    assert top_level_id(b'[{"id": 1}]') is None


def test_oversized_message_reports_its_id_without_reading_the_body():
    frames = reader_over(b'Content-Length: 999999999999\r\n\r\n{"jsonrpc": "2.0", "id": 9, "method": "m"',
                         max_message=100)

    async def first():
        try:
            await frames.next_message()
        except Oversized as e:
            return e
    e = asyncio.run(first())
    assert e.msg_id == 9 and e.length == 999999999999 and "limit of 100 bytes" in str(e)


bodies = st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=3).map(
    lambda d: json.dumps(d).encode()), min_size=1, max_size=5)
garbage = st.binary(max_size=200).filter(lambda b: b"content-length" not in b.lower())


@settings(max_examples=200, deadline=None)
@given(bodies, st.lists(garbage, min_size=5, max_size=5))
def test_garbage_between_messages_costs_only_itself(messages, junk):
    """Whatever bytes come between well-framed messages (short of a header
    of their own), every message is read back exactly."""
    stream = b"".join(j + frame(m) for j, m in zip(junk, messages))
    assert asyncio.run(read_all(reader_over(stream))) == messages
