"""The pygls server: settings, the model thread, the documents, and the list of features.

Each feature (feature.LanguageFeature) registers its own handlers and keeps
its own state; the server tells every feature about document events and
the end of the session. Handlers run on the event loop and never block it:
they validate the request, take a snapshot of the document, and hand the
model work to the scheduler thread (scheduler.py), awaiting an asyncio future.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.workspace.position_codec import PositionCodec

from ..engine.options import VERSION
from .completion import Completion
from .documents import DocumentSync
from .edits import begin_progress, end_progress
from .feature import LanguageFeature
from .focus import Focus
from .inline_completion import InlineCompletion
from .next_edit import NextEditFeature
from .positions import PositionError, offset_of, range_offsets
from .protocol import DittoProtocol, json_type, strict_converter
from .rewrite_command import RewriteFile
from .rewrite_workspace import RewriteWorkspace
from .scheduler import URGENT, CancelToken, Cancelled, JobContext, Scheduler
from .settings import Settings, parse_settings
from .status import StatusCommand
from .suggestions import Suggestions

log = logging.getLogger(__name__)

MAX_DOCUMENT_CHARS = 4 << 20     # larger documents are refused


def invalid(message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(message)


class DittoServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("ditto", VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=DittoProtocol, converter_factory=strict_converter)
        self.settings = Settings()
        self.scheduler = Scheduler()
        self.engine_error: str | None = None
        self._engine_future: asyncio.Future | None = None
        self.out_of_sync: dict[str, str] = {}           # uri -> why the server's copy is not the editor's
        self.language_features: list[LanguageFeature] = []

    # ---- features ----------------------------------------------------------------------------
    def add_feature(self, feature: LanguageFeature) -> None:
        feature.register()
        self.language_features.append(feature)

    def tell_features(self, event: Callable[[LanguageFeature], None]) -> None:
        """Calls event(feature) for every feature, in the order they were added."""
        for feature in self.language_features:
            event(feature)

    def experimental_capabilities(self) -> dict:
        """capabilities.experimental: ditto's own methods, as the features advertise them."""
        return {"ditto": {k: v for f in self.language_features for k, v in (f.experimental or {}).items()}}

    def stop_all(self, reason: str) -> None:
        """The session ends: every feature stops its work, then the model thread stops."""
        self.tell_features(lambda f: f.stop(reason))
        self.scheduler.stop()

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
        try:
            asyncio.get_running_loop().create_task(self._progress_while_loading(fut, settings.model))
        except RuntimeError:
            pass    # no event loop (a server built in a test): nobody to tell
        return fut

    async def _progress_while_loading(self, load: asyncio.Future, model: str | None) -> None:
        """$/progress from the start of a model load to its end."""
        token = await begin_progress(self, None, f"ditto: loading {model or 'the default model'}")
        await asyncio.wait([load])
        failed = load.cancelled() or load.exception() is not None
        end_progress(self, token, "the model could not be loaded" if failed else "loaded")

    def push_settings(self) -> None:
        """Settings that do not need a reload reach the engine on its thread."""
        settings = self.settings

        def update(job: JobContext):
            if job.state is not None:
                job.state.settings = settings
        self.scheduler.submit(update, priority=URGENT, name="settings")

    async def model_loaded(self) -> None:
        """Returns once the model is loaded, or its load failed (run_job then says why)."""
        if self._engine_future is None:
            self.load_engine()
        await asyncio.wait([self._engine_future])

    async def run_job(self, fn, *, priority: int = URGENT, token: CancelToken | None = None,
                      deadline: float | None = None, name: str = "") -> Any:
        """Runs fn(job) on the model thread; a cancelled request cancels the job."""
        if self._engine_future is None:
            self.load_engine()
        token = token or CancelToken()
        fut = self.scheduler.submit(self.with_engine(fn), priority=priority, token=token,
                                    deadline=deadline, name=name)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            token.cancel("$/cancelRequest")
            raise

    def with_engine(self, fn):
        """fn(engine, job) as a scheduler job; Cancelled while no model is loaded."""
        def run(job: JobContext):
            if job.state is None:
                raise Cancelled(self.engine_error or "the model is not loaded")
            return fn(job.state, job)
        return run

    # ---- documents ------------------------------------------------------------------------------------
    def document(self, uri: Any):
        """The open document to compute an answer from; an error if there is none to trust."""
        if not isinstance(uri, str):
            raise invalid("textDocument.uri must be a string")
        doc = self.open_document(uri)
        if doc is None:
            raise invalid(f"unknown document {uri!r}: open it with textDocument/didOpen first")
        if (problem := self.sync_problem(uri)) is not None:
            raise invalid(f"document {uri!r} is out of sync with the editor ({problem}); "
                          f"send its full text (a full didChange, or reopen it) first")
        if len(doc.source) > MAX_DOCUMENT_CHARS:
            raise invalid(f"document {uri!r} is too large ({len(doc.source)} characters)")
        return doc

    def open_document(self, uri: str):
        """The open document with this uri, or None. pygls keys documents by the
        unquoted uri, so "a%20b.py" and "a b.py" name the same document."""
        try:
            documents = self.workspace.text_documents
        except RuntimeError:        # not initialized yet
            return None
        return documents.get(unquote(uri))

    def sync_problem(self, uri: str) -> str | None:
        """Why the server's copy of a document is not the editor's, or None."""
        return self.out_of_sync.get(unquote(uri))

    def lose_sync(self, uri: str, reason: str) -> None:
        """The editor's copy changed in a way the server could not follow: say so and
        refuse answers from this document until its full text comes again."""
        if self.sync_problem(uri) is None:
            self.show(f"ditto: lost track of {uri} ({reason}); suggestions and rewrites for it are off "
                      f"until it is reopened or its full text is sent")
        self.out_of_sync[unquote(uri)] = reason

    def regain_sync(self, uri: str) -> None:
        self.out_of_sync.pop(unquote(uri), None)

    def refused_message(self, data: Any, reason: str) -> None:
        """A notification or response that did not fit the protocol: no answer is possible
        (JSON-RPC), so log it; a didChange the server could not read leaves its document stale."""
        method = data.get("method") if isinstance(data, dict) else None
        self.log(f"ignored {method or json_type(data)} message: {reason}", types.MessageType.Warning)
        if method == types.TEXT_DOCUMENT_DID_CHANGE:
            params = data.get("params")
            doc = params.get("textDocument") if isinstance(params, dict) else None
            uri = doc.get("uri") if isinstance(doc, dict) else None
            if isinstance(uri, str) and self.open_document(uri) is not None:
                self.lose_sync(uri, f"a didChange did not fit the protocol: {reason}")

    @property
    def position_codec(self) -> PositionCodec:
        return self.workspace.position_codec

    def offset(self, doc, position: types.Position) -> int:
        """Character offset of an LSP position in a document; invalid positions are errors."""
        try:
            return offset_of(doc.source, position, self.position_codec)
        except PositionError as e:
            raise invalid(str(e)) from None

    def range_offsets(self, doc, rng: types.Range) -> tuple[int, int]:
        try:
            return range_offsets(doc.source, rng, self.position_codec)
        except PositionError as e:
            raise invalid(str(e)) from None


def create_server() -> DittoServer:
    server = DittoServer()
    suggestions = Suggestions(server)
    for feature in (DocumentSync(server), suggestions, Completion(server, suggestions),
                    InlineCompletion(server, suggestions), Focus(server, suggestions), RewriteFile(server),
                    RewriteWorkspace(server), NextEditFeature(server), StatusCommand(server)):
        server.add_feature(feature)
    return server
