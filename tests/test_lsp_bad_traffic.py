"""Over 1,000 malformed or hostile requests and notifications, then a normal
completion that still gives the same answer as before the flood."""
from __future__ import annotations

import json
import random

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import PRESETS, SAMPLE, SERVER_CMD, open_doc

pytestmark = pytest.mark.slow

OPTIONS = {"maxTokens": 8, "timeBudgetMs": 60000, "promptTokens": 512, "completionCache": False,
           "prefetch": False}
URI = "file:///tmp/flood.py"


@pytest_lsp.fixture(params=PRESETS, config=ClientServerConfig(server_command=SERVER_CMD))
async def client(request, lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(request.param), initialization_options=OPTIONS))
    yield
    await lsp_client.shutdown_session()


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def hostile_messages(rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    pos = lambda line, ch: {"line": line, "character": ch}  # noqa: E731
    td = {"uri": URI}
    bodies = [
        b"{not json", b"[]", b"42", b'"string"', b"null", b'{"jsonrpc": "2.0"}', b"{}",
        b'{"jsonrpc": "2.0", "id": 1}', b'\xff\xfe\xfd invalid utf-8',
        b'{"jsonrpc": "2.0", "method": "textDocument/completion", "id": "x", "params": "\xc3\x28"}',
    ]
    out += [frame(b) for b in bodies]
    requests = [
        ("textDocument/completion", {"textDocument": {"uri": "file:///missing.py"}, "position": pos(0, 0)}),
        ("textDocument/completion", {"textDocument": td, "position": pos(10**6, 0)}),
        ("textDocument/completion", {"textDocument": td, "position": pos(0, 10**6)}),
        ("textDocument/completion", {"textDocument": td, "position": pos(-1, -5)}),
        ("textDocument/completion", {"textDocument": td, "position": "here"}),
        ("textDocument/completion", {"textDocument": td}),
        ("textDocument/completion", None),
        ("textDocument/completion", {"textDocument": {"uri": 7}, "position": pos(0, 0)}),
        ("textDocument/completion", {"textDocument": {"uri": "file:///tmp/emoji.py"}, "position": pos(0, 6)}),
        ("textDocument/inlineCompletion", {"textDocument": td, "position": pos(99999, 1),
                                           "context": {"triggerKind": 1}}),
        ("textDocument/inlineCompletion", {"textDocument": td, "position": pos(0, 0), "context": "no"}),
        ("workspace/executeCommand", {"command": "ditto.nope"}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile"}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [1, 2, 3, 4]}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": ["file:///missing.py", "x"]}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile", "arguments": [URI, ""]}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile",
                                      "arguments": [URI, "x", {"start": pos(5, 0), "end": pos(1, 0)}]}),
        ("workspace/executeCommand", {"command": "ditto.rewriteFile",
                                      "arguments": [URI, "x", {"start": "a", "end": None}]}),
        ("workspace/executeCommand", {"command": "ditto.status", "arguments": [1, 2]}),
        ("no/such/method", {}),
        ("textDocument/hover", {"textDocument": td, "position": pos(0, 0)}),
        ("initialize", {"capabilities": {}}),
    ]
    notifications = [
        ("textDocument/didChange", {"textDocument": {"uri": "file:///missing.py", "version": 2},
                                    "contentChanges": [{"text": "x"}]}),
        ("textDocument/didChange", {"textDocument": {"uri": URI, "version": 2}, "contentChanges": "bad"}),
        ("textDocument/didChange", {"textDocument": {"uri": URI}, "contentChanges": [
            {"range": {"start": pos(0, 0), "end": pos(0, 0)}, "text": 5}]}),
        ("textDocument/didOpen", {"textDocument": {"uri": 3, "text": None}}),
        ("textDocument/didClose", {"textDocument": {"uri": "file:///never-opened.py"}}),
        ("workspace/didChangeConfiguration", {"settings": {"maxTokens": -4, "nSeq": "many", "bogus": 1}}),
        ("workspace/didChangeConfiguration", {"settings": [1, 2, 3]}),
        ("$/cancelRequest", {"id": "nothing-with-this-id"}),
        ("$/cancelRequest", {"id": None}),
        ("$/unknownNotification", {"x": 1}),
        ("window/workDoneProgress/cancel", {"token": "no-such-token"}),
    ]
    i = 0
    while len(out) < 1100:
        if rng.random() < 0.6:
            method, params = rng.choice(requests)
            msg = {"jsonrpc": "2.0", "id": f"bad-{i}", "method": method}
        else:
            method, params = rng.choice(notifications)
            msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        out.append(frame(json.dumps(msg).encode()))
        if rng.random() < 0.05:
            out.append(frame(rng.choice(bodies)))
        i += 1
    return out


async def complete(client: LanguageClient, line: int, ch: int):
    return await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line, ch)))


async def test_bad_traffic_then_correct_completion(client: LanguageClient):
    open_doc(client, URI, SAMPLE)
    open_doc(client, "file:///tmp/emoji.py", 'x = "😋"\n')
    line = SAMPLE.split("\n").index("def count_lines(path):") + 1
    before = await complete(client, line, 4)
    assert before.items and before.items[0].data["source"] == "model"
    messages = hostile_messages(random.Random(4))
    assert len(messages) >= 1000
    writer = client.protocol.writer
    for m in messages:
        writer.write(m)
    # A huge document is refused, not evaluated.
    open_doc(client, "file:///tmp/huge.py", "x = 1\n" * 800_000)
    with pytest.raises(Exception, match="too large"):
        await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri="file:///tmp/huge.py"),
            position=types.Position(0, 0)))
    # The server is alive, the document intact, and the answer is the same as before.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"maxTokens": 8}))
    after = await complete(client, line, 4)
    assert after.items and after.items[0].data["source"] == "model"
    assert after.items[0].data["text"] == before.items[0].data["text"]
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))
    assert status["model"]["name"]
