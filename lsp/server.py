"""The pygls server: lifecycle, settings, document sync, and the features.

Handlers run on the event loop and never block it: they validate the
request, take a snapshot of the document, and hand the model work to the
scheduler thread (scheduler.py), awaiting an asyncio future.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from .prompt import ChunkRing
from .scheduler import URGENT, CancelToken, Cancelled, JobContext, Scheduler
from .settings import Settings, parse_settings

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MAX_DOCUMENT_CHARS = 4 << 20     # larger documents are refused


class ServerError(Exception):
    """Turned into an LSP error response (InvalidParams) by the handlers."""


def invalid(message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(message)


class DittoProtocol(LanguageServerProtocol):
    """pygls's protocol with two fixes: a second `initialize` (which would
    replace the workspace and lose every open document) is refused, and a
    $/cancelRequest for workspace/executeCommand reaches the command."""

    _initialized_once = False

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        """pygls runs a command's coroutine as a nested handler under a fresh
        id, so cancelling the request only cancels the outer future; tie the
        nested one to it so the command itself sees the cancellation."""
        outer = getattr(callback, "keywords", {}).get("result_future")
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        inner = self._request_futures.get(msg_id)
        if outer is not None and inner is not None and inner is not outer:
            outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        if self._initialized_once:
            raise JsonRpcInvalidRequest("the server is already initialized")
        self._initialized_once = True
        return (yield from super().lsp_initialize(params))


class DittoServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("ditto", VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=DittoProtocol)
        self.settings = Settings()
        self.scheduler = Scheduler()
        self.engine_error: str | None = None
        self._engine_future: asyncio.Future | None = None
        self.inflight: dict[str, CancelToken] = {}      # uri -> the completion in flight
        self.prefetching: dict[str, CancelToken] = {}
        self.rewrites: dict[str, CancelToken] = {}      # progress token -> cancel
        self.chunks = ChunkRing()
        self.edit_line: dict[str, int] = {}             # uri -> line of its last edit
        self.last_uri: str | None = None                # document of the last completion
        self.started = time.monotonic()

    # ---- messages ----------------------------------------------------------------------------
    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        log.info(message)
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # no transport yet (tests constructing the server)
            pass

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        log.warning(message)
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:
            pass

    def report_server_error(self, error: Exception, source) -> None:
        # Bad client input must not flood the user with popups: log it.
        self.log(f"{source.__name__}: {error}", types.MessageType.Error)

    # ---- settings and engine ----------------------------------------------------------------------------
    def apply_settings(self, options: Any) -> bool:
        """Parses options over the current settings; True if the model must be reloaded."""
        new, errors = parse_settings(options, self.settings)
        for e in errors:
            self.show(e)
        reload = any(getattr(new, k) != getattr(self.settings, k) for k in Settings.MODEL_KEYS)
        self.settings = new
        return reload

    def load_engine(self) -> asyncio.Future:
        """(Re)loads the model on the scheduler thread."""
        settings = self.settings

        def load(job: JobContext):
            from .completer import Engine

            self.scheduler.state = None
            try:
                engine = Engine(settings)
            except Exception as e:
                self.engine_error = f"cannot load the model: {e}"
                raise
            self.engine_error = None
            self.scheduler.state = engine
            return engine

        fut = self.scheduler.submit(load, priority=URGENT, name="load", nestable=False)
        self._engine_future = fut

        def done(f: asyncio.Future) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                self.show(self.engine_error or str(f.exception()), types.MessageType.Error)
            else:
                e = f.result()
                self.log(f"ditto: loaded {e.llm.name} in {e.load_seconds:.1f}s "
                         f"(n_ctx {e.llm.ctx.n_ctx}, {e.llm.ctx.n_seq} sequences, fim: {e.has_fim})",
                         types.MessageType.Info)
        fut.add_done_callback(done)
        return fut

    def push_settings(self) -> None:
        """Settings that do not need a reload reach the engine on its thread."""
        settings = self.settings

        def update(job: JobContext):
            if job.state is not None:
                job.state.settings = settings
        self.scheduler.submit(update, priority=URGENT, name="settings")

    async def run_job(self, fn, *, priority: int = URGENT, token: CancelToken | None = None,
                      deadline: float | None = None, name: str = "") -> Any:
        """Runs fn(job) on the model thread; a cancelled request cancels the job."""
        if self._engine_future is None:
            self.load_engine()
        token = token or CancelToken()
        fut = self.scheduler.submit(self._with_engine(fn), priority=priority, token=token,
                                    deadline=deadline, name=name)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            token.cancel("$/cancelRequest")
            raise

    def _with_engine(self, fn):
        def run(job: JobContext):
            if job.state is None:
                raise Cancelled(self.engine_error or "the model is not loaded")
            return fn(job.state, job)
        return run

    # ---- documents ------------------------------------------------------------------------------------
    def document(self, uri: Any):
        if not isinstance(uri, str):
            raise invalid("textDocument.uri must be a string")
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            raise invalid(f"unknown document {uri!r}: open it with textDocument/didOpen first")
        if len(doc.source) > MAX_DOCUMENT_CHARS:
            raise invalid(f"document {uri!r} is too large ({len(doc.source)} characters)")
        return doc

    def offset(self, doc, position: types.Position) -> int:
        """Character offset of an LSP position; invalid positions are errors (no clamping)."""
        return offset_of(doc.source, position, self.position_encoding)

    @property
    def position_encoding(self) -> str:
        try:
            enc = self.server_capabilities.position_encoding
        except Exception:
            enc = None
        return str(getattr(enc, "value", enc) or "utf-16")


def offset_of(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    line, character = position.line, position.character
    if line < 0 or character < 0:
        raise invalid(f"negative position {line}:{character}")
    start = 0
    for _ in range(line):
        i = text.find("\n", start)
        if i < 0:
            raise invalid(f"line {line} is past the end of the document")
        start = i + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    content = text[start:end]
    if content.endswith("\r"):
        content = content[:-1]
    units = 0
    for i, ch in enumerate(content):
        if units == character:
            return start + i
        if units > character:
            raise invalid(f"character {character} on line {line} splits a character ({encoding} offsets)")
        cp = ord(ch)
        if encoding == "utf-8":
            units += len(ch.encode("utf-8", "surrogatepass"))
        elif encoding == "utf-32":
            units += 1
        else:
            units += 2 if cp > 0xFFFF else 1
    if units == character:
        return start + len(content)
    if units > character:
        raise invalid(f"character {character} on line {line} splits a character ({encoding} offsets)")
    raise invalid(f"character {character} is past the end of line {line} ({units} {encoding} units)")


def create_server() -> DittoServer:
    from . import completion, documents, inline_completion, rewrite_command, rewrite_workspace, status

    server = DittoServer()
    documents.register(server)
    completion.register(server)
    inline_completion.register(server)
    rewrite_command.register(server)
    rewrite_workspace.register(server)
    status.register(server)
    return server
