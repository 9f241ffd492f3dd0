"""Lifecycle, settings and document sync (incremental, every change validated).

The server's copy of each document is kept here; every feature hears of
opens, changes, saves and closes through its LanguageFeature hooks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from .feature import LanguageFeature
from .positions import PositionError, apply_change

if TYPE_CHECKING:
    from .server import DittoServer


def apply_changes(ls: DittoServer, uri: str, text: str, changes) -> tuple[str, str | None, int | None]:
    """The text after a didChange's changes, why it is not the editor's (None
    if it is), and the line of the last partial change applied (None if none).

    A change that cannot be applied loses sync; the partial changes after it
    cannot be followed either, and only a change with the full text restores it.
    """
    lost = ls.sync_problem(uri)
    edited_line = None
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            text, lost = change.text, None
        elif lost is None:
            try:
                text = apply_change(text, change, ls.position_codec)
            except PositionError as e:
                lost = f"a didChange could not be applied: {e}"
                continue
            edited_line = change.range.start.line
    return text, lost, edited_line


class DocumentSync(LanguageFeature):
    def register(self) -> None:
        server = self.server

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
            ls.tell_features(lambda f: f.did_open(doc.uri, doc.text))

        @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
        def did_change(ls: DittoServer, params: types.DidChangeTextDocumentParams) -> None:
            uri = params.text_document.uri
            doc = ls.open_document(uri)
            if doc is None:
                ls.log(f"ignored a didChange for {uri!r}, which is not open", types.MessageType.Warning)
                return
            text, lost, edited_line = apply_changes(ls, uri, doc.source, params.content_changes)
            if lost is None:
                ls.regain_sync(uri)
            else:
                ls.lose_sync(uri, lost)
            ls.workspace.update_text_document(params.text_document,
                                              types.TextDocumentContentChangeWholeDocument(text=text))
            ls.tell_features(lambda f: f.did_change(uri, text, edited_line))

        @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
        def did_save(ls: DittoServer, params: types.DidSaveTextDocumentParams) -> None:
            doc = ls.open_document(params.text_document.uri)
            if doc is not None:
                ls.tell_features(lambda f: f.did_save(doc.uri, doc.source))

        @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
        def did_close(ls: DittoServer, params: types.DidCloseTextDocumentParams) -> None:
            uri = params.text_document.uri
            ls.regain_sync(uri)
            ls.tell_features(lambda f: f.did_close(uri))

        @server.feature(types.SHUTDOWN)
        def shutdown(ls: DittoServer, params) -> None:
            ls.stop_all("shutdown")
