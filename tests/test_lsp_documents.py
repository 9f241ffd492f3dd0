"""Document sync and positions: the server's copy of each document is the
editor's, in every position encoding, or the server says it is not and
computes nothing from it until it has the full text again."""
from __future__ import annotations

import pytest
from pygls.workspace.position_codec import PositionCodec

from ditto.lsp.positions import PositionError, apply_change, end_position, offset_of, position_of
from lsp_helpers import INIT_OPTIONS, RawServer

ENCODINGS = ["utf-8", "utf-16", "utf-32"]
# Non-ASCII identifiers, an emoji (4 UTF-8 bytes, 2 UTF-16 units), CRLF and a lone CR line
# ending, and a last line without a newline.
TEXTS = ['größe = "😋"\nnaïve_😋 = größe\r\n\tλ = 1\rlast_ünïcode = "😋😋"',
         "", "a", "\n", "x\r\n", "😋", "ascii only\nlines\n"]


def units(text: str, encoding: str) -> int:
    """Code units of `text` in an encoding, counted independently of ditto."""
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le" if encoding == "utf-16" else "utf-8", "surrogatepass")) // (
        2 if encoding == "utf-16" else 1)


def lines_with_offsets(text: str):
    """(line number, offset of the line start, line content) by the LSP's line endings."""
    number, start, i = 0, 0, 0
    while i <= len(text):
        if i == len(text) or text[i] in "\r\n":
            yield number, start, text[start:i]
            if i == len(text):
                return
            i += 2 if text.startswith("\r\n", i) else 1
            number, start = number + 1, i
        else:
            i += 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_positions_and_offsets_follow_the_negotiated_encoding(encoding):
    codec = PositionCodec(encoding)
    for text in TEXTS:
        for line, start, content in lines_with_offsets(text):
            for k in range(len(content) + 1):
                pos = position_of(text, start + k, codec)
                assert (pos.line, pos.character) == (line, units(content[:k], encoding)), (text, k)
                assert offset_of(text, pos, codec) == start + k
        end = end_position(text, codec)
        last = list(lines_with_offsets(text))[-1]
        assert (end.line, end.character) == (last[0], units(last[2], encoding))


def test_positions_inside_a_character_or_past_the_document_are_errors():
    from lsprotocol.types import Position

    text = 'x = "😋"\nlast'
    with pytest.raises(PositionError, match="inside a character"):
        offset_of(text, Position(0, 6), PositionCodec("utf-16"))     # between the surrogates
    with pytest.raises(PositionError, match="inside a character"):
        offset_of(text, Position(0, 7), PositionCodec("utf-8"))      # inside the 4 bytes
    with pytest.raises(PositionError, match="past the end of the document"):
        offset_of(text, Position(2, 0), PositionCodec("utf-16"))
    # The LSP: a character past the end of its line means the end of the line.
    assert offset_of(text, Position(1, 99), PositionCodec("utf-16")) == len(text)


def test_change_ranges_are_validated():
    from lsprotocol.types import Position, Range, TextDocumentContentChangePartial as Partial

    codec = PositionCodec("utf-16")
    text = "a = 1\nb = 2\n"
    assert apply_change(text, Partial(Range(Position(1, 0), Position(1, 1)), "c"), codec) == "a = 1\nc = 2\n"
    with pytest.raises(PositionError, match="ends .* before it starts"):
        apply_change(text, Partial(Range(Position(1, 0), Position(0, 0)), ""), codec)
    with pytest.raises(PositionError, match="past the end"):
        apply_change(text, Partial(Range(Position(7, 0), Position(7, 0)), "x"), codec)


# ---- the running server -------------------------------------------------------------------------

def start(encoding: str | None = None, on_request=None, options=INIT_OPTIONS) -> RawServer:
    server = RawServer(on_request=on_request)
    caps = {"general": {"positionEncodings": [encoding]}} if encoding else {}
    result = server.initialize(options, caps, rootUri="file:///tmp")
    assert result["capabilities"].get("positionEncoding", "utf-16") == (encoding or "utf-16")
    return server


def edit_range(text: str, start: int, end: int, encoding: str) -> dict:
    codec = PositionCodec(encoding)
    as_json = lambda p: {"line": p.line, "character": p.character}  # noqa: E731
    return {"start": as_json(position_of(text, start, codec)), "end": as_json(position_of(text, end, codec))}


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_completion_range_starts_at_the_word_in_the_negotiated_encoding(encoding):
    text = 'def größe_berechnen(breite, höhe):\n    return breite * höhe\n\n\nx = "😋"; größe_be'
    server = start(encoding)
    try:
        server.open("file:///workspace/units.py", text)
        line, column = text.count("\n"), units(text[text.rindex("\n") + 1:], encoding)
        reply = server.complete("file:///workspace/units.py", line, column)
        item = reply["result"]["items"][0]
        word_start = text.rindex("größe_be")
        expected_start = edit_range(text, word_start, word_start, encoding)["start"]
        assert item["textEdit"]["range"] == {"start": expected_start, "end": {"line": line, "character": column}}
        assert item["textEdit"]["newText"].startswith("größe_be")
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_rewrite_range_ends_at_the_end_of_the_file_in_the_negotiated_encoding(encoding):
    edits = []

    def on_request(message):
        if message["method"] == "workspace/applyEdit":
            edits.append(message["params"]["edit"])
            return {"applied": True}
        return None

    text = 'x = 1\ny = "😋größe"'          # the last line has no newline and is not ASCII
    server = start(encoding, on_request)
    try:
        server.open("file:///workspace/end.py", text)
        result = server.call("workspace/executeCommand", {
            "command": "ditto.rewriteFile", "arguments": ["file:///workspace/end.py", "Rename x to z."]})
        assert result["applied"], result
        (edit,) = edits
        (change,) = edit["changes"]["file:///workspace/end.py"]
        assert change["range"] == edit_range(text, 0, len(text), encoding)
    finally:
        server.close()


UNAPPLICABLE = {
    "a reversed range": lambda text: {"range": edit_range(text, 10, 2, "utf-16"), "text": "x"},
    "a line past the end": lambda text: {"range": {"start": {"line": 40, "character": 0},
                                                   "end": {"line": 40, "character": 0}}, "text": "x"},
    "a position inside a character": lambda text: {
        "range": {"start": {"line": 0, "character": 6}, "end": {"line": 0, "character": 6}}, "text": "x"},
    "a change that does not fit the schema": lambda text: {"range": edit_range(text, 0, 0, "utf-16"), "text": 5},
}


@pytest.mark.slow
def test_change_that_cannot_be_applied_puts_the_document_out_of_sync_until_its_full_text_comes():
    uri = "file:///workspace/sync.py"
    text = 'x = "😋"\ndef add(a, b):\n    return a + b\n'
    edits = []
    server = start(on_request=lambda m: edits.append(m) or {"applied": True})
    try:
        version = 1
        for case, change in UNAPPLICABLE.items():
            server.open(uri, text, version)         # (re)open: in sync again
            assert "result" in server.complete(uri, 2, 4), case
            version += 1
            server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                     "contentChanges": [change(text)]})
            reply = server.complete(uri, 2, 4)
            assert "out of sync" in reply.get("error", {}).get("message", ""), f"{case}: {reply}"
            # A valid partial change cannot bring it back: the base text is unknown.
            version += 1
            server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                     "contentChanges": [{"range": edit_range(text, 0, 0, "utf-16"),
                                                                         "text": "#"}]})
            reply = server.response(server.request("workspace/executeCommand", {
                "command": "ditto.rewriteFile", "arguments": [uri, "Rename add to plus."]}))
            assert "out of sync" in reply.get("error", {}).get("message", ""), f"{case}: {reply}"
            assert not [m for m in edits if m["method"] == "workspace/applyEdit"]
            server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        assert any("lost track" in n["params"]["message"] for n in server.notifications
                   if n["method"] == "window/showMessage")
        # A full-text change brings the document back.
        server.open(uri, text, 1)
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                 "contentChanges": [UNAPPLICABLE["a reversed range"](text)]})
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                                 "contentChanges": [{"text": text}]})
        assert "result" in server.complete(uri, 2, 4)
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_incremental_changes_keep_the_editors_text_in_every_encoding(encoding):
    """After edits around non-ASCII text the server completes exactly as it
    does on a document opened with the editor's final text."""
    text = 'größe = "😋"\r\nnaïve = größe\n\ndef scale(v):\n    return v'
    edits = [("😋", '"😋😋"'), ("naïve = ", "naïve_λ = "), ("return v", "return v * größe"), ("\r\n", "\n")]
    server = start(encoding, options={**INIT_OPTIONS, "extraChunks": 0})   # each prompt: its own document
    try:
        server.open("file:///workspace/edited.py", text)
        for version, (old, new) in enumerate(edits, 2):
            at = text.index(old)
            server.notify("textDocument/didChange", {
                "textDocument": {"uri": "file:///workspace/edited.py", "version": version},
                "contentChanges": [{"range": edit_range(text, at, at + len(old), encoding), "text": new}]})
            text = text[:at] + new + text[at + len(old):]
        server.open("file:///workspace/fresh.py", text)
        end = edit_range(text, len(text), len(text), encoding)["end"]
        edited = server.complete("file:///workspace/edited.py", end["line"], end["character"])
        fresh = server.complete("file:///workspace/fresh.py", end["line"], end["character"])
        assert "result" in edited and "result" in fresh
        assert edited["result"]["items"] == [] or edited["result"]["items"][0]["data"]["text"] == \
            fresh["result"]["items"][0]["data"]["text"]
        assert len(edited["result"]["items"]) == len(fresh["result"]["items"])
    finally:
        server.close()


@pytest.mark.slow
def test_a_document_whose_uri_has_percent_escapes_is_found():
    """Editors escape spaces and colons in URIs; pygls stores documents by the unescaped URI."""
    uri = "file:///workspace/with%20a%20space.py"
    text = "def add(a, b):\n    return a + b\n"
    server = start()
    try:
        server.open(uri, text)
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                 "contentChanges": [{"range": edit_range(text, 0, 0, "utf-16"),
                                                                     "text": "# math\n"}]})
        reply = server.complete(uri, 2, 4)
        assert "result" in reply, reply
    finally:
        server.close()
