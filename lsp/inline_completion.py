"""textDocument/inlineCompletion (LSP 3.18): the suggestion as ghost text at the cursor
(the suggestion itself comes from suggestions.Suggestions)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from .feature import LanguageFeature
from .suggestions import Suggestions

if TYPE_CHECKING:
    from .server import DittoServer


class InlineCompletion(LanguageFeature):
    def __init__(self, server: DittoServer, suggestions: Suggestions) -> None:
        super().__init__(server)
        self.suggestions = suggestions

    def register(self) -> None:
        @self.server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
        async def inline_completion(ls: DittoServer,
                                    params: types.InlineCompletionParams) -> types.InlineCompletionList:
            result, _offset, _text = await self.suggestions.suggest(params.text_document.uri, params.position)
            if result is None or not result.text.strip():
                return types.InlineCompletionList(items=[])
            item = types.InlineCompletionItem(
                insert_text=result.text,
                range=types.Range(start=params.position, end=params.position),
                filter_text=result.text,
            )
            return types.InlineCompletionList(items=[item])
