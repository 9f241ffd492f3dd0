"""Over 1,000 malformed or hostile requests and notifications to a real
server over stdio: every request gets exactly one response (each waited for
with a timeout), the document it was fed bad changes for is declared out of
sync, and afterwards a normal completion equals a cold evaluation of the
same prompt."""
from __future__ import annotations

import json
import random

import pytest

from lsp_helpers import MISSING, SAMPLE, RawServer, cold_completion_text, cold_llm  # noqa: F401

pytestmark = pytest.mark.slow

OPTIONS = {"maxTokens": 8, "timeBudgetMs": 60000, "promptTokens": 512, "nSeq": 2, "completionCache": False,
           "prefetch": False, "extraChunks": 0}
URI = "file:///workspace/flood.py"
VICTIM = "file:///workspace/victim.py"        # fed changes that cannot be applied
EMOJI = "file:///workspace/emoji.py"
EMOJI_TEXT = 'x = "😋"\nλ = x'


def pos(line, character) -> dict:
    return {"line": line, "character": character}


def at(uri, line, character, **extra) -> dict:
    return {"textDocument": {"uri": uri}, "position": pos(line, character), **extra}


def rng(start, end) -> dict:
    return {"start": start, "end": end}


INLINE = {"context": {"triggerKind": 1}}
REQUESTS = [
    # positions that are not in the document (semantic errors)
    ("textDocument/completion", at("file:///missing.py", 0, 0)),
    ("textDocument/completion", at(URI, 10**6, 0)),
    ("textDocument/completion", at(URI, 0, 10**6)),
    ("textDocument/inlineCompletion", at(URI, 99999, 1, **INLINE)),
    # positions inside a character, in the negotiated utf-16 (item 10)
    ("textDocument/completion", at(EMOJI, 0, 6)),
    ("textDocument/inlineCompletion", at(EMOJI, 0, 6, **INLINE)),
    # schema-invalid params (item 8)
    ("textDocument/completion", at(URI, -1, -5)),
    ("textDocument/completion", at(URI, 2**31, 0)),
    ("textDocument/completion", at(URI, 2**64, 0)),
    ("textDocument/completion", at(URI, 1e30, 0)),
    ("textDocument/completion", at(URI, True, 0)),
    ("textDocument/completion", at(URI, 1.5, 0)),
    ("textDocument/completion", {"textDocument": {"uri": URI}, "position": "here"}),
    ("textDocument/completion", {"textDocument": {"uri": URI}}),
    ("textDocument/completion", {"textDocument": {}, "position": None}),
    ("textDocument/completion", {"textDocument": {"uri": 7}, "position": pos(0, 0)}),
    ("textDocument/completion", MISSING),
    ("textDocument/completion", [URI, 0, 0]),
    ("textDocument/inlineCompletion", at(URI, 0, 0)),
    ("textDocument/inlineCompletion", at(URI, 0, 0, context="no")),
    ("workspace/executeCommand", {"command": 5}),
    ("workspace/executeCommand", {"command": "ditto.status", "arguments": "abc"}),
    ("shutdown", [1, 2]),
    ("initialize", {"capabilities": "none"}),
    # wrong or unknown commands and methods
    ("workspace/executeCommand", {"command": "ditto.nope"}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile"}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [1, 2, 3, 4]}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": ["file:///missing.py", "x"]}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [URI, ""]}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile",
                                  "arguments": [URI, "x", rng(pos(5, 0), pos(1, 0))]}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [URI, "x", rng("a", None)]}),
    ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [VICTIM, "Rename x to y."]}),
    ("workspace/executeCommand", {"command": "ditto.status", "arguments": [1, 2]}),
    ("no/such/method", {}),
    ("textDocument/hover", at(URI, 0, 0)),
    ("initialize", {"capabilities": {}}),
]
NOTIFICATIONS = [
    # changes that cannot be applied (item 11), all to VICTIM
    ("textDocument/didChange", {"textDocument": {"uri": VICTIM, "version": 2},
                                "contentChanges": [{"range": rng(pos(1, 0), pos(0, 0)), "text": "x"}]}),
    ("textDocument/didChange", {"textDocument": {"uri": VICTIM, "version": 2},
                                "contentChanges": [{"range": rng(pos(90, 0), pos(90, 0)), "text": "x"}]}),
    ("textDocument/didChange", {"textDocument": {"uri": VICTIM, "version": 2},
                                "contentChanges": [{"range": rng(pos(0, 0), pos(0, 0)), "text": 5}]}),
    ("textDocument/didChange", {"textDocument": {"uri": VICTIM, "version": 2}, "contentChanges": "bad"}),
    # other bad notifications
    ("textDocument/didChange", {"textDocument": {"uri": "file:///missing.py", "version": 2},
                                "contentChanges": [{"text": "x"}]}),
    ("textDocument/didOpen", {"textDocument": {"uri": 3, "text": None}}),
    ("textDocument/didClose", {"textDocument": {"uri": "file:///never-opened.py"}}),
    ("workspace/didChangeConfiguration", {"settings": {"maxTokens": -4, "nSeq": "many", "bogus": 1}}),
    ("workspace/didChangeConfiguration", {"settings": [1, 2, 3]}),
    ("$/cancelRequest", {"id": "nothing-with-this-id"}),
    ("$/cancelRequest", {"id": None}),
    ("$/unknownNotification", {"x": 1}),
    ("window/workDoneProgress/cancel", {"token": "no-such-token"}),
    ("exit", [1]),
]
# Requests whose id cannot be answered to (the response carries id null), and bodies without one.
BAD_ENVELOPES = [
    {"jsonrpc": "2.0", "id": 1.5, "method": "textDocument/completion", "params": at(URI, 0, 0)},
    {"jsonrpc": "2.0", "id": None, "method": "shutdown"},
    {"jsonrpc": "2.0", "id": [1], "method": "shutdown"},
]
BODIES = [b"{not json", b"[]", b"42", b'"string"', b"null", b'{"jsonrpc": "2.0"}', b"{}",
          b'\xff\xfe\xfd invalid utf-8', b'{"jsonrpc": "2.0", "id": "x", "method": "m", "params": "\xc3\x28"}']


def flood(server: RawServer, rng_: random.Random, count: int) -> tuple[list, int]:
    """Sends `count` messages; returns the ids of the requests and how many can only get id null."""
    ids, null_ids, i = [], 0, 0
    while i < count:
        roll = rng_.random()
        if roll < 0.55:
            method, params = rng_.choice(REQUESTS)
            ids.append(server.request(method, params, msg_id=f"bad-{i}"))
        elif roll < 0.9:
            server.notify(*rng_.choice(NOTIFICATIONS))
        elif roll < 0.95:
            server.send(rng_.choice(BAD_ENVELOPES))
            null_ids += 1
        elif roll < 0.97:
            ids.append(f"batched-{i}")
            server.send([{"jsonrpc": "2.0", "id": f"batched-{i}", "method": "shutdown"}])
        else:
            server.send_bytes(rng_.choice(BODIES))
            null_ids += 1
        i += 1
    return ids, null_ids


def test_bad_traffic_then_correct_completion(cold_llm):
    server = RawServer()
    try:
        server.initialize(OPTIONS)
        server.open(URI, SAMPLE)
        server.open(VICTIM, "x = 1\n")
        server.open(EMOJI, EMOJI_TEXT)
        server.notify(*NOTIFICATIONS[0])         # VICTIM is out of sync from the start
        ids, null_ids = flood(server, random.Random(4), 1200)
        assert len(ids) >= 500
        for msg_id in ids:
            server.response(msg_id, timeout=60)
        server.wait_for(lambda: len(server.responses.get(None, [])) >= null_ids, 60, "the id-null responses")
        # Nothing is left to come: a request sent now is answered after all of them.
        status = server.call("workspace/executeCommand", {"command": "ditto.status"})
        assert [i for i in ids if len(server.responses[i]) != 1] == []
        assert len(server.responses[None]) == null_ids
        errors = [r["error"] for replies in server.responses.values() for r in replies if "error" in r]
        assert not [e for e in errors if "Traceback" in json.dumps(e)]      # messages, not tracebacks
        assert status["model"]["n_seq"] == OPTIONS["nSeq"]            # invalid settings changed nothing
        # The document fed bad changes is out of sync until its full text comes.
        assert "out of sync" in server.complete(VICTIM, 0, 0)["error"]["message"]
        server.notify("textDocument/didChange", {"textDocument": {"uri": VICTIM, "version": 3},
                                                 "contentChanges": [{"text": "x = 1\n"}]})
        assert "result" in server.complete(VICTIM, 1, 0)
        # A huge document is refused, not evaluated.
        server.open("file:///workspace/huge.py", "x = 1\n" * 800_000)
        assert "too large" in server.complete("file:///workspace/huge.py", 0, 0)["error"]["message"]
        # The server is alive and its answer is the model's cold answer.
        offset = SAMPLE.index("    return len(") + len("    return len(")
        line, character = SAMPLE.count("\n", 0, offset), len("    return len(")
        after = server.complete(URI, line, character)["result"]["items"]
        expected = cold_completion_text(cold_llm, SAMPLE, offset, OPTIONS)
        assert expected.strip() and after and after[0]["data"]["source"] == "model"
        assert after[0]["data"]["text"] == expected
    finally:
        server.close()


def test_bodies_that_are_not_messages_get_an_id_null_error():
    """A body that is not JSON (parse error) or not a JSON-RPC message (invalid
    request) has no id to answer to: JSON-RPC answers it with id null, once,
    and the server keeps serving."""
    server = RawServer()
    try:
        server.initialize(OPTIONS)
        for body in BODIES:
            server.send_bytes(body)
        server.send_bytes(json.dumps({"jsonrpc": "2.0", "id": "after", "method": "shutdown"}).encode())
        assert "result" in server.response("after", timeout=60)
        codes = [r["error"]["code"] for r in server.responses.get(None, [])]
        assert len(codes) == len(BODIES)
        assert codes.count(-32700) == 3 and set(codes) == {-32700, -32600}
    finally:
        server.close()
