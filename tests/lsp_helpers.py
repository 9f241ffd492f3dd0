"""Shared pieces of the language-server tests (pytest-lsp, real default model)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

PRESETS = ["neovim@v0.11.0", "visual_studio_code"]
SERVER_CMD = [sys.executable, "-m", "ditto.lsp.cli", "serve", "--threads", "2", "--ctx", "2048"]
# The same server whose rewrites answer from a script (scripted_model.py): the edit is known.
SCRIPTED_CMD = [sys.executable, str(Path(__file__).with_name("scripted_ditto.py")), *SERVER_CMD[3:]]
# Small budgets: the suite runs on 2 shared cores.
INIT_OPTIONS = {"maxTokens": 8, "timeBudgetMs": 60000, "promptTokens": 512, "nSeq": 3, "prefetch": False}

SAMPLE = '''import os


def read_lines(path):
    """Return the lines of a file."""
    with open(path) as f:
        return f.read().splitlines()


def count_lines(path):
    return len(read_lines(path))


def main():
    for name in os.listdir("."):
        print(name, count_lines(name))
'''


def lsp_session(server_command: list[str], options: dict, **fixture_kwargs):
    """A pytest-lsp client fixture, once per client preset, connected to
    `server_command` and initialized with `options`. The client applies every
    workspace/applyEdit and keeps it in `applied_edits`; `before_progress_create`
    (if set) runs before it answers the server's window/workDoneProgress/create,
    which the server awaits after its snapshot of the document and before any
    model work."""
    @pytest_lsp.fixture(params=PRESETS, config=ClientServerConfig(server_command=server_command), **fixture_kwargs)
    async def client(request, lsp_client: LanguageClient):
        lsp_client.applied_edits = []

        @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams):
            lsp_client.applied_edits.append(params.edit)
            return types.ApplyWorkspaceEditResult(applied=True)

        lsp_client.before_progress_create = None
        create_progress = lsp_client.protocol.fm.features[types.WINDOW_WORK_DONE_PROGRESS_CREATE]

        def before_create(params: types.WorkDoneProgressCreateParams):
            if lsp_client.before_progress_create is not None:
                lsp_client.before_progress_create()
            return create_progress(params)
        lsp_client.protocol.fm.features[types.WINDOW_WORK_DONE_PROGRESS_CREATE] = before_create

        lsp_client.init_result = await lsp_client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities(request.param), initialization_options=options,
            root_uri="file:///tmp"))
        yield
        await lsp_client.shutdown_session()
    return client


def open_doc(client, uri: str, text: str, version: int = 1, language: str = "python") -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def position_at(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return types.Position(line, len(text[offset - col:offset].encode("utf-16-le")) // 2)


@pytest.fixture(scope="module")
def cold_llm():
    """The real default model alone, for cold evaluations (import it into a test module)."""
    from ditto.engine.llm import LLM

    return LLM(None, n_ctx=2048, n_seq=1, n_threads=2)


def cold_completion_text(llm, text: str, offset: int, options: dict) -> str:
    """What the model answers for a completion at `offset` from scratch (no cache,
    no speculation): the reference every server answer must equal. `options`
    are the server's settings (camelCase) with extraChunks 0."""
    from ditto.lsp.completer import cold_completion
    from ditto.lsp.prompt import build_prompt

    prompt, _below = build_prompt(llm.tokenizer, text, offset, prompt_tokens=options["promptTokens"],
                                  suffix_tokens=256, style="auto")
    return cold_completion(llm, prompt, options["maxTokens"])


MISSING = object()   # a request or notification without params


class RawServer:
    """`ditto serve` over stdio driven with raw JSON-RPC framing: it sends
    anything (malformed messages too) and records every message the server
    writes, so a test can count the responses to each request id.

    Requests from the server (progress tokens, applyEdit) are answered by
    `on_request(message) -> result`, by default with null."""

    def __init__(self, cmd=None, on_request=None) -> None:
        self.stderr = tempfile.TemporaryFile()      # the server logs every refusal: never a full pipe
        self.proc = subprocess.Popen(cmd or SERVER_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.on_request = on_request or (lambda message: None)
        self.responses: dict = {}                   # id -> every response with that id
        self.notifications: list[dict] = []
        self.server_requests: list[dict] = []
        self.changed = threading.Condition()
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    # ---- sending -------------------------------------------------------------------------------
    def send_bytes(self, body: bytes) -> None:
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def send(self, message) -> None:
        self.send_bytes(json.dumps(message).encode())

    def request(self, method: str, params=MISSING, msg_id=None):
        """Sends a request (params left out if MISSING) and returns its id."""
        if msg_id is None:
            self.next_id += 1
            msg_id = f"raw-{self.next_id}"
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not MISSING:
            message["params"] = params
        self.send(message)
        return msg_id

    def notify(self, method: str, params=MISSING) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not MISSING:
            message["params"] = params
        self.send(message)

    # ---- receiving ------------------------------------------------------------------------------
    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line in (b"\r\n", b"\n"):
                    break
            message = json.loads(out.read(length))
            if "method" in message and "id" in message:
                self.server_requests.append(message)
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": self.on_request(message)})
            with self.changed:
                if "method" in message:
                    self.notifications.append(message)
                else:
                    msg_id = message.get("id")
                    key = msg_id if msg_id is None or isinstance(msg_id, (int, str)) else json.dumps(msg_id)
                    self.responses.setdefault(key, []).append(message)
                self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = 120, what: str = "a message"):
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def response(self, msg_id, timeout: float = 120) -> dict:
        self.wait_for(lambda: msg_id in self.responses, timeout, f"the response to {msg_id!r}")
        return self.responses[msg_id][0]

    def call(self, method: str, params=MISSING, timeout: float = 120):
        """A request's result; an AssertionError with the error message if it failed."""
        reply = self.response(self.request(method, params), timeout)
        assert "error" not in reply, f"{method} failed: {reply['error']}"
        return reply.get("result")

    # ---- session --------------------------------------------------------------------------------
    def initialize(self, options=None, capabilities=None, **params) -> dict:
        result = self.call("initialize", {"processId": None, "rootUri": None,
                                          "capabilities": capabilities or {},
                                          "initializationOptions": options or {}, **params})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": version, "text": text}})

    def complete(self, uri: str, line: int, character: int, timeout: float = 120) -> dict:
        """The completion's response (result or error)."""
        return self.response(self.request("textDocument/completion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character}}), timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.response(self.request("shutdown"), timeout=60)
                self.notify("exit")
                self.proc.wait(timeout=60)
        except (OSError, AssertionError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()

