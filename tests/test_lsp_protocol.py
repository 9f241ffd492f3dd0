"""Message handling of ditto's language server over raw JSON-RPC: every
request gets exactly one response whatever its params, nothing is coerced,
and the server's copy of a document is the editor's or is declared out of
sync."""
from __future__ import annotations

import attrs
import pytest
from lsprotocol import types

from lsp_helpers import INIT_OPTIONS, MISSING, RawServer

pytestmark = pytest.mark.slow

URI = "file:///workspace/protocol.py"
TEXT = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600


@pytest.fixture
def server():
    raw = RawServer()
    raw.initialize(INIT_OPTIONS)
    raw.open(URI, TEXT)
    yield raw
    raw.close()


def registered_requests() -> list[str]:
    """Every request method (not notification) the server answers."""
    from ditto.lsp.server import create_server

    fm = create_server().protocol.fm
    methods = set(fm.features) | set(fm.builtin_features)
    return sorted(m for m in methods if m in types.METHOD_TO_TYPES
                  and "id" in attrs.fields_dict(types.METHOD_TO_TYPES[m][0]))


def registered_commands() -> list[str]:
    from ditto.lsp.server import create_server

    return sorted(create_server().protocol.fm.commands)


# Params that fit no request's schema: every method takes an object or nothing.
SCHEMA_INVALID_FOR_ALL = [[1, 2], "here", 7, True, {"textDocument": {}, "position": None}]

position = lambda line, character: {"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}  # noqa: E731
# The cases found in the issue, for completion and inline completion.
SCHEMA_INVALID_POSITIONS = {
    "negative line": position(-1, 0), "negative character": position(0, -5),
    "line 2^31": position(2**31, 0), "line 2^64": position(2**64, 0), "line 1e30": position(1e30, 0),
    "a string position": {"textDocument": {"uri": URI}, "position": "here"},
    "a null position": {"textDocument": {}, "position": None},
    "a boolean line": position(True, 0), "a fractional line": position(1.5, 0),
    "a string line": position("1", 0), "a numeric uri": {"textDocument": {"uri": 7}, "position": position(0, 0)["position"]},
    "missing params": MISSING, "params as a list": [URI, 0, 0],
}


def test_every_request_with_schema_invalid_params_gets_one_invalid_params_error(server: RawServer):
    methods = registered_requests()
    assert {"initialize", "shutdown", "textDocument/completion", "textDocument/inlineCompletion",
            "workspace/executeCommand"} <= set(methods)
    sent: dict[str, tuple[str, str]] = {}       # id -> (what was sent, what the error must name)
    for method in methods:
        for params in SCHEMA_INVALID_FOR_ALL:
            sent[server.request(method, params)] = (f"{method} with params {params!r}", "params")
    for method in ("textDocument/completion", "textDocument/inlineCompletion"):
        for case, params in SCHEMA_INVALID_POSITIONS.items():
            if method.endswith("inlineCompletion") and isinstance(params, dict):
                params = {**params, "context": {"triggerKind": 1}}
            sent[server.request(method, params)] = (f"{method} with {case}", "params")
    sent[server.request("textDocument/inlineCompletion", position(0, 0))] = ("inline without context", "context")
    for command in registered_commands():
        for arguments in ("abc", {"a": 1}, 5):
            sent[server.request("workspace/executeCommand", {"command": command, "arguments": arguments})] = \
                (f"{command} with arguments {arguments!r}", "arguments")
        # an array no command takes: each command checks its own arguments
        sent[server.request("workspace/executeCommand", {"command": command, "arguments": [[1], None, True, 1.5]})] = \
            (f"{command} with four odd arguments", command)
    sent[server.request("workspace/executeCommand", {"command": 5})] = ("a numeric command", "command")
    for msg_id, (what, named) in sent.items():
        reply = server.response(msg_id, timeout=60)
        assert reply.get("error", {}).get("code") == INVALID_PARAMS, f"{what}: {reply}"
        assert named in reply["error"]["message"], f"{what}: {reply['error']['message']}"
    # A request sent after all of them is answered after them: no response is left to come.
    assert server.call("workspace/executeCommand", {"command": "ditto.status"})["model"]["name"]
    duplicates = {msg_id: server.responses[msg_id] for msg_id in sent if len(server.responses[msg_id]) != 1}
    assert not duplicates
    # The server still works: shutdown with bad params did not shut it down.
    assert "result" in server.complete(URI, 4, 0)


def test_schema_errors_say_what_was_wrong(server: RawServer):
    cases = {
        "negative line": (position(-1, 0), "position"),
        "a boolean line": (position(True, 0), "position.line: expected an integer, got a boolean"),
        "a fractional line": (position(1.5, 0), "position.line: expected an integer, got a number 1.5"),
        "a numeric uri": ({"textDocument": {"uri": 7}, "position": position(0, 0)["position"]},
                          "textDocument.uri: expected a string, got an integer"),
        "missing params": (MISSING, "params: required field missing"),
    }
    for case, (params, expected) in cases.items():
        reply = server.response(server.request("textDocument/completion", params), timeout=60)
        assert expected in reply["error"]["message"], f"{case}: {reply['error']['message']}"
    reply = server.response(server.request("textDocument/inlineCompletion", position(0, 0)), timeout=60)
    assert "context: required field missing" in reply["error"]["message"]


def test_requests_with_a_bad_envelope_are_answered_with_invalid_request(server: RawServer):
    bad = [
        {"jsonrpc": "2.0", "id": 1.5, "method": "textDocument/completion", "params": position(0, 0)},
        {"jsonrpc": "2.0", "id": True, "method": "shutdown"},
        {"jsonrpc": "2.0", "id": None, "method": "shutdown"},
        {"jsonrpc": "2.0", "id": {"an": "object"}, "method": "shutdown"},
    ]
    for message in bad:
        server.send(message)
    server.send([{"jsonrpc": "2.0", "id": "in-a-batch", "method": "shutdown"}])
    server.send({"jsonrpc": "1.0", "id": "old-version", "method": "shutdown"})
    server.send({"jsonrpc": "2.0", "id": "numeric-method", "method": 5})
    for msg_id in ("in-a-batch", "old-version", "numeric-method"):
        assert server.response(msg_id, timeout=60)["error"]["code"] == INVALID_REQUEST
    server.wait_for(lambda: len(server.responses.get(None, [])) == len(bad), 60, "one response per unusable id")
    assert all(r["error"]["code"] == INVALID_REQUEST for r in server.responses[None])
    assert "result" in server.complete(URI, 4, 0)


def test_an_object_inside_params_is_never_taken_for_a_message(server: RawServer):
    """pygls structured every nested object that had a "jsonrpc" key as a message."""
    nested = {"jsonrpc": "2.0", "id": "inner", "method": "shutdown"}
    # ditto.status takes one options object: this one must reach it as the object it is.
    status = server.call("workspace/executeCommand", {"command": "ditto.status", "arguments": [nested]})
    assert status["model"]["name"]
    assert "inner" not in server.responses
    assert "result" in server.complete(URI, 4, 0)


def test_requests_after_shutdown_are_answered(server: RawServer):
    assert server.call("shutdown") is None
    reply = server.response(server.request("textDocument/completion", position(0, 0)), timeout=60)
    assert reply["error"]["code"] == INVALID_REQUEST and "shut down" in reply["error"]["message"]
