"""Lifecycle, settings and document sync (incremental, every change validated)."""
from __future__ import annotations

from lsprotocol import types

from .positions import PositionError, apply_change
from .server import DittoServer


def apply_changes(ls: DittoServer, uri: str, text: str, changes) -> tuple[str, str | None]:
    """The text after a didChange's changes, and why it is not the editor's (None if it is).

    A change that cannot be applied loses sync; the partial changes after it
    cannot be followed either, and only a change with the full text restores it.
    """
    lost = ls.sync_problem(uri)
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            text, lost = change.text, None
        elif lost is None:
            try:
                before, text = text, apply_change(text, change, ls.position_codec)
            except PositionError as e:
                lost = f"a didChange could not be applied: {e}"
                continue
            ls.next_edit.record(uri, before, text)
            ls.edit_line[uri] = change.range.start.line
    return text, lost


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
        ls.regain_sync(doc.uri)
        ls.chunks.add(doc.uri, doc.text, 0, ls.settings.chunk_lines)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DittoServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = ls.open_document(uri)
        if doc is None:
            ls.log(f"ignored a didChange for {uri!r}, which is not open", types.MessageType.Warning)
            return
        text, lost = apply_changes(ls, uri, doc.source, params.content_changes)
        if lost is None:
            ls.regain_sync(uri)
        else:
            ls.lose_sync(uri, lost)
        ls.workspace.update_text_document(params.text_document,
                                          types.TextDocumentContentChangeWholeDocument(text=text))
        # A suggestion being prefetched for the old text is of no use now.
        tok = ls.prefetching.pop(uri, None)
        if tok is not None:
            tok.cancel("document changed")

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: DittoServer, params: types.DidSaveTextDocumentParams) -> None:
        doc = ls.open_document(params.text_document.uri)
        if doc is not None:
            ls.chunks.add(doc.uri, doc.source, ls.edit_line.get(doc.uri, 0), ls.settings.chunk_lines)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DittoServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.edit_line.pop(uri, None)
        ls.next_edit.forget(uri)
        ls.regain_sync(uri)
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
