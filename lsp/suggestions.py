"""Suggestions at the cursor, shared by completion and inline completion.

`Suggestions.suggest` validates the request, takes a snapshot of the
document, supersedes the document's previous request (it stops within one
forward pass), runs the completion on the model thread with the time budget
as deadline, then queues a prefetch of the next suggestion. The feature
keeps what suggestions need between requests: the request and prefetch in
flight per document, chunks of recently edited files, and each document's
last edited line.

On didOpen the document's first prompt window is prefilled in the
background (no logits), so the first completion there is served from the
cache; `ditto/didFocus` (focus.py) prefills the prompt of a completion at
the editor's cursor the same way, chunks of other files included. A
completion that comes before its prompt is cached, and cannot evaluate it
within its prefill budget, is answered from a short window (completer.py)
and the whole window is prefilled after it.
Those jobs run at PREFETCH priority: a completion never waits behind one
(it gives way between forward passes as soon as more urgent work waits,
and is submitted again afterwards, going on from what is cached). Its
cancel token sits in `prefetching` with the document's other speculative
work, so a change, a close, a new focus or a completion cancels it; a
completion of the same document then goes on from what it evaluated.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError

from .completer import CompletionResult
from .feature import LanguageFeature
from .prompt import ChunkRing, uri_name
from .scheduler import PREFETCH, URGENT, CancelToken, Cancelled

if TYPE_CHECKING:
    from .server import DittoServer


class Suggestions(LanguageFeature):
    def __init__(self, server: DittoServer) -> None:
        super().__init__(server)
        self.inflight: dict[str, CancelToken] = {}      # uri -> the completion in flight
        self.prefetching: dict[str, CancelToken] = {}   # uri -> the prefetch in flight
        self.chunks = ChunkRing()
        self.edit_line: dict[str, int] = {}             # uri -> line of its last edit
        self.last_uri: str | None = None                # document of the last completion

    # ---- document events -------------------------------------------------------------------
    def did_open(self, uri: str, text: str) -> None:
        self.chunks.add(uri, text, 0, self.server.settings.chunk_lines)
        self.prefill(uri, text, None, 0, "the document was opened again")

    def did_change(self, uri: str, text: str, edited_line: int | None) -> None:
        if edited_line is not None:
            self.edit_line[uri] = edited_line
        # A suggestion being prefetched for the old text is of no use now.
        self._cancel(self.prefetching, uri, "document changed")

    def did_save(self, uri: str, text: str) -> None:
        self.chunks.add(uri, text, self.edit_line.get(uri, 0), self.server.settings.chunk_lines)

    def did_close(self, uri: str) -> None:
        self.edit_line.pop(uri, None)
        for table in (self.inflight, self.prefetching):
            self._cancel(table, uri, "document closed")
        self.server.scheduler.submit(self.server.with_engine(lambda engine, job: engine.close(uri)),
                                     name="close")

    def stop(self, reason: str) -> None:
        for table in (self.inflight, self.prefetching):
            for token in table.values():
                token.cancel(reason)

    @staticmethod
    def _cancel(table: dict[str, CancelToken], uri: str, reason: str) -> None:
        token = table.pop(uri, None)
        if token is not None:
            token.cancel(reason)

    # ---- requests -----------------------------------------------------------------------------
    async def suggest(self, uri, position: types.Position) -> tuple[CompletionResult | None, int, str]:
        """(result or None if superseded/empty, cursor offset, document text)."""
        ls = self.server
        doc = ls.document(uri)
        offset = ls.offset(doc, position)
        text = doc.source
        settings = ls.settings
        previous = self.inflight.get(uri)
        if previous is not None:
            previous.cancel("superseded")
        for tok in self.prefetching.values():
            tok.cancel("a completion waits")
        self.prefetching.clear()
        chunks = self._chunks(uri, text, position.line) if settings.extra_chunks > 0 else ()
        self.last_uri = uri
        token = CancelToken()
        self.inflight[uri] = token
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
            if self.inflight.get(uri) is token:
                del self.inflight[uri]
        if result.source == "cancelled":
            return None, offset, text
        window = result.window
        short = "" if window is None or not window.short else (
            f", a short window from line {window.line + 1} ({window.uncached_tokens} tokens of the whole "
            f"window uncached, {window.budget_tokens} within the prefill budget)")
        ls.log(f"completion {uri_name(uri)} {result.source}: {len(result.text)} chars, "
               f"{result.prompt_tokens} prompt tokens ({result.reused_tokens} reused), "
               f"{result.generated} generated, {result.seconds * 1000:.0f} ms{short}")
        if short:       # the next completions get the whole window
            self.prefill(uri, text, offset, position.line, "a completion was answered from a short window")
        elif settings.prefetch and result.source in ("model", "prefetch") and result.text:
            self._start_prefetch(uri, text, offset, result.text, chunks)
        return result, offset, text

    def _chunks(self, uri: str, text: str, line: int) -> tuple[str, ...]:
        """Chunks of other files for the prompt, the last completed document's included."""
        ls, settings = self.server, self.server.settings
        other = ls.open_document(self.last_uri) if self.last_uri not in (None, uri) else None
        if other is not None:
            self.chunks.add(self.last_uri, other.source, self.edit_line.get(self.last_uri, 0),
                            settings.chunk_lines)
        half = settings.chunk_lines // 2
        around = "\n".join(text.split("\n")[max(0, line - half): line + half])
        return self.chunks.select(uri, around, settings.extra_chunks)

    def _start_prefetch(self, uri: str, text: str, offset: int, shown: str, chunks) -> None:
        token = CancelToken()
        self.prefetching[uri] = token

        def run(engine, job):
            return engine.prefetch(job, uri, text, offset, shown, chunks)

        fut = self.server.scheduler.submit(self.server.with_engine(run), priority=PREFETCH, token=token,
                                           name="prefetch")

        def done(f):
            if self.prefetching.get(uri) is token:
                del self.prefetching[uri]
            if not f.cancelled():
                f.exception()  # consumed: a failed prefetch only costs the cache
        fut.add_done_callback(done)

    def prefill(self, uri: str, text: str, offset: int | None, line: int, reason: str) -> None:
        """Prefills the prompt of a completion at `offset` (None: the end of
        the first window) on `line`, replacing the document's speculative work."""
        self._cancel(self.prefetching, uri, reason)
        if self.server.sync_problem(uri) is not None:
            return
        chunks = self._chunks(uri, text, line) if self.server.settings.extra_chunks > 0 else ()
        token = self.prefetching[uri] = CancelToken()
        where = "" if offset is None else f" at line {line + 1}"
        self._submit_prefill(uri, text, offset, chunks, token, f"prompt tokens of {uri}{where}")

    def _submit_prefill(self, uri: str, text: str, offset: int | None, chunks, token: CancelToken,
                        what: str) -> None:
        ls = self.server

        def run(engine, job):
            return engine.prefill_document(job, uri, text, offset, chunks)

        def done(f) -> None:
            finished = not f.cancelled() and f.exception() is None and not token.cancelled
            if finished and f.result() is None:     # gave way to more urgent work: go on after it
                self._submit_prefill(uri, text, offset, chunks, token, what)
                return
            if self.prefetching.get(uri) is token:
                del self.prefetching[uri]
            if finished:    # otherwise cancelled, or no model: only the head start is lost
                ls.log(f"ditto: prefilled {f.result()} {what}")

        fut = ls.scheduler.submit(ls.with_engine(run), priority=PREFETCH, token=token, name="prefill")
        fut.add_done_callback(done)
