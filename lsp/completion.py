"""textDocument/completion: the model's continuation as one completion item
(the suggestion itself comes from suggestions.Suggestions)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from .completer import CompletionResult
from .feature import LanguageFeature
from .positions import position_of
from .suggestions import Suggestions

if TYPE_CHECKING:
    from .server import DittoServer

_WORD = re.compile(r"[\w$]*$")


def word_before(text: str, offset: int) -> str:
    line_start = text.rfind("\n", 0, offset) + 1
    m = _WORD.search(text[line_start:offset])
    return m.group(0) if m else ""


class Completion(LanguageFeature):
    def __init__(self, server: DittoServer, suggestions: Suggestions) -> None:
        super().__init__(server)
        self.suggestions = suggestions

    def register(self) -> None:
        @self.server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(
            trigger_characters=[".", "(", " ", "\n"], resolve_provider=False))
        async def completion(ls: DittoServer, params: types.CompletionParams) -> types.CompletionList:
            result, offset, text = await self.suggestions.suggest(params.text_document.uri, params.position)
            if result is None or not result.text.strip():
                return types.CompletionList(is_incomplete=True, items=[])
            return types.CompletionList(is_incomplete=True, items=[
                completion_item(result, text, offset, params.position, ls.position_codec)])


def completion_item(result: CompletionResult, text: str, offset: int, cursor: types.Position,
                    codec) -> types.CompletionItem:
    """The suggestion as an item that replaces the word before the cursor with itself."""
    word = word_before(text, offset)
    start = position_of(text, offset - len(word), codec)
    first = result.text.strip().split("\n", 1)[0]
    label = (word + result.text).strip().split("\n", 1)[0] if word else first
    return types.CompletionItem(
        label=label[:80] or first[:80],
        kind=types.CompletionItemKind.Text,
        detail="ditto",
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                          value=f"```\n{word + result.text}\n```"),
        filter_text=word + result.text,
        sort_text="0",
        preselect=True,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start=start, end=cursor), new_text=word + result.text),
        data={"source": result.source, "prompt_tokens": result.prompt_tokens,
              "reused_tokens": result.reused_tokens, "generated": result.generated,
              "finish_reason": result.finish_reason, "text": result.text,
              "ms": round(result.seconds * 1000, 1),
              **(result.window.as_dict() if result.window is not None else {})},
    )
