"""textDocument/completion: the model's continuation as one completion item.

`suggest` is shared with inline completion: it validates the request, takes
a snapshot of the document, supersedes the document's previous request (it
stops within one forward pass), runs the completion on the model thread with
the time budget as deadline, then queues a prefetch of the next suggestion.
"""
from __future__ import annotations

import re
import time

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError

from .completer import CompletionResult
from .positions import position_of
from .scheduler import PREFETCH, URGENT, CancelToken, Cancelled
from .server import DittoServer

_WORD = re.compile(r"[\w$]*$")


async def suggest(ls: DittoServer, uri, position: types.Position) -> tuple[CompletionResult | None, int, str]:
    """(result or None if superseded/empty, cursor offset, document text)."""
    doc = ls.document(uri)
    offset = ls.offset(doc, position)
    text = doc.source
    settings = ls.settings
    previous = ls.inflight.get(uri)
    if previous is not None:
        previous.cancel("superseded")
    for tok in ls.prefetching.values():
        tok.cancel("a completion waits")
    ls.prefetching.clear()
    chunks: tuple[str, ...] = ()
    if settings.extra_chunks > 0:
        other = ls.open_document(ls.last_uri) if ls.last_uri not in (None, uri) else None
        if other is not None:
            ls.chunks.add(ls.last_uri, other.source, ls.edit_line.get(ls.last_uri, 0), settings.chunk_lines)
        line = position.line
        around = "\n".join(text.split("\n")[max(0, line - settings.chunk_lines // 2): line + settings.chunk_lines // 2])
        chunks = ls.chunks.select(uri, around, settings.extra_chunks)
    ls.last_uri = uri
    token = CancelToken()
    ls.inflight[uri] = token
    try:
        await ls.model_loaded()     # the time budget starts once the model is there
        deadline = time.monotonic() + settings.time_budget_ms / 1000
        result: CompletionResult = await ls.run_job(
            lambda engine, job: engine.complete(job, uri, text, offset, chunks),
            priority=URGENT, token=token, deadline=deadline, name="completion")
    except Cancelled as e:
        if token.cancelled:
            return None, offset, text
        raise JsonRpcInternalError(str(e)) from None
    except (OverflowError, ValueError) as e:
        raise JsonRpcInternalError(str(e)) from None
    finally:
        if ls.inflight.get(uri) is token:
            del ls.inflight[uri]
    if result.source == "cancelled":
        return None, offset, text
    ls.log(f"completion {uri_short(uri)} {result.source}: {len(result.text)} chars, "
           f"{result.prompt_tokens} prompt tokens ({result.reused_tokens} reused), "
           f"{result.generated} generated, {result.seconds * 1000:.0f} ms")
    if settings.prefetch and result.source in ("model", "prefetch") and result.text:
        start_prefetch(ls, uri, text, offset, result.text, chunks)
    return result, offset, text


def start_prefetch(ls: DittoServer, uri: str, text: str, offset: int, shown: str, chunks) -> None:
    token = CancelToken()
    ls.prefetching[uri] = token

    def run(engine, job):
        return engine.prefetch(job, uri, text, offset, shown, chunks)

    fut = ls.scheduler.submit(ls._with_engine(run), priority=PREFETCH, token=token, name="prefetch")

    def done(f):
        if ls.prefetching.get(uri) is token:
            del ls.prefetching[uri]
        if not f.cancelled():
            f.exception()  # consumed: a failed prefetch only costs the cache
    fut.add_done_callback(done)


def uri_short(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def word_before(text: str, offset: int) -> str:
    line_start = text.rfind("\n", 0, offset) + 1
    m = _WORD.search(text[line_start:offset])
    return m.group(0) if m else ""


def register(server: DittoServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[".", "(", " ", "\n"], resolve_provider=False))
    async def completion(ls: DittoServer, params: types.CompletionParams) -> types.CompletionList:
        result, offset, text = await suggest(ls, params.text_document.uri, params.position)
        if result is None or not result.text.strip():
            return types.CompletionList(is_incomplete=True, items=[])
        word = word_before(text, offset)
        start = position_of(text, offset - len(word), ls.position_codec)
        first = result.text.strip().split("\n", 1)[0]
        label = (word + result.text).strip().split("\n", 1)[0] if word else first
        item = types.CompletionItem(
            label=label[:80] or first[:80],
            kind=types.CompletionItemKind.Text,
            detail="ditto",
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                              value=f"```\n{word + result.text}\n```"),
            filter_text=word + result.text,
            sort_text="0",
            preselect=True,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start=start, end=params.position),
                                     new_text=word + result.text),
            data={"source": result.source, "prompt_tokens": result.prompt_tokens,
                  "reused_tokens": result.reused_tokens, "generated": result.generated,
                  "finish_reason": result.finish_reason, "text": result.text,
                  "ms": round(result.seconds * 1000, 1)},
        )
        return types.CompletionList(is_incomplete=True, items=[item])
