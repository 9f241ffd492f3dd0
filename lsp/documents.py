"""Lifecycle, settings and document sync (incremental; pygls applies the edits)."""
from __future__ import annotations

from lsprotocol import types

from .server import DittoServer


def register(server: DittoServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: DittoServer, params: types.InitializeParams) -> None:
        ls.apply_settings(params.initialization_options)

    @server.feature(types.INITIALIZED)
    def initialized(ls: DittoServer, params: types.InitializedParams) -> None:
        ls.log("ditto: loading the model", types.MessageType.Info)
        ls.load_engine()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: DittoServer, params: types.DidChangeConfigurationParams) -> None:
        if ls.apply_settings(params.settings):
            ls.log("ditto: model settings changed, reloading", types.MessageType.Info)
            ls.load_engine()
        else:
            ls.push_settings()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DittoServer, params: types.TextDocumentDidOpenParams) -> None:
        doc = params.text_document
        ls.chunks.add(doc.uri, doc.text, 0, ls.settings.chunk_lines)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DittoServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                ls.edit_line[uri] = change.range.start.line
        # A suggestion being prefetched for the old text is of no use now.
        tok = ls.prefetching.pop(uri, None)
        if tok is not None:
            tok.cancel("document changed")

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: DittoServer, params: types.DidSaveTextDocumentParams) -> None:
        doc = ls.workspace.text_documents.get(params.text_document.uri)
        if doc is not None:
            ls.chunks.add(doc.uri, doc.source, ls.edit_line.get(doc.uri, 0), ls.settings.chunk_lines)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DittoServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.edit_line.pop(uri, None)
        for table in (ls.inflight, ls.prefetching):
            tok = table.pop(uri, None)
            if tok is not None:
                tok.cancel("document closed")

        def close(engine, job):
            engine.close(uri)
        ls.scheduler.submit(ls._with_engine(close), name="close")

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: DittoServer, params) -> None:
        for table in (ls.inflight, ls.prefetching, ls.rewrites):
            for tok in table.values():
                tok.cancel("shutdown")
        ls.scheduler.stop()
