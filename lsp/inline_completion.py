"""textDocument/inlineCompletion (LSP 3.18): the suggestion as ghost text at the cursor."""
from __future__ import annotations

from lsprotocol import types

from .completion import suggest
from .server import DittoServer


def register(server: DittoServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: DittoServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        result, _offset, _text = await suggest(ls, params.text_document.uri, params.position)
        if result is None or not result.text.strip():
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=result.text,
            range=types.Range(start=params.position, end=params.position),
            filter_text=result.text,
        )
        return types.InlineCompletionList(items=[item])
