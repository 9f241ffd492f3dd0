"""`ditto/didFocus`: the editor says which document is in front and where its
cursor is ({textDocument: {uri}, position}), when a document becomes active
or its cursor goes far; the prompt of a completion there is prefilled
(Suggestions.prefill), since didOpen carries no cursor."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from .custom_params import document_position
from .feature import LanguageFeature
from .suggestions import Suggestions

if TYPE_CHECKING:
    from .server import DittoServer

METHOD = "ditto/didFocus"


class Focus(LanguageFeature):
    def __init__(self, server: DittoServer, suggestions: Suggestions) -> None:
        super().__init__(server)
        self.suggestions = suggestions

    def register(self) -> None:
        @self.server.feature(METHOD)
        def did_focus(ls: DittoServer, params: Any) -> None:
            try:
                uri, position = document_position(params, METHOD)
                doc = ls.document(uri)
                offset = ls.offset(doc, position)
            except JsonRpcInvalidParams as e:     # a notification gets no answer: say why it is ignored
                ls.log(f"ignored a focus notification: {e.message}", types.MessageType.Warning)
                return
            self.suggestions.prefill(uri, doc.source, offset, position.line, "the document got the focus again")
