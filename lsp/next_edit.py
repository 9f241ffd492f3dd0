"""ditto/nextEdit: after an edit, the same kind of change where it is due next.

Request params: {textDocument: {uri}, position: {line, character}}.
Result: null (no suggestion), or {range, newText, jump} where range and
newText replace whole lines of the document (the smallest changed range
inside the 21-line window around the cursor) and jump is where to put the
cursor. The feature keeps its own state: each document's last text and edit
history, fed by its document hooks on every incremental change, and its
counters for ditto.status. A request runs on the model thread at URGENT priority within
its time budget, and the next keystroke in its document cancels it.

Acceptance needs nothing from the client: a suggestion counts as applied
when the document's next change makes exactly the text it would give.
The method is advertised as capabilities.experimental.ditto.nextEdit.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError
from pygls.workspace.position_codec import PositionCodec

from ..engine.decode import DecodeStats
from ..engine.next_edit import EditHistory, NextEditJob, Suggestion, choose_format, lines_of
from ..engine.rewrite import RewriteError
from .completer import REWRITE_CHUNK
from .custom_params import document_position
from .feature import LanguageFeature
from .positions import end_position, range_offsets
from .prompt import uri_name
from .results import NextEditResult, to_json
from .scheduler import URGENT, CancelToken, Cancelled

if TYPE_CHECKING:
    from .server import DittoServer

METHOD = "ditto/nextEdit"


class NextEditFeature(LanguageFeature):
    """Per-document last text and edit history, the request in flight, and the counters."""
    status_key = "next_edit"
    experimental = {"nextEdit": True}

    def __init__(self, server: DittoServer) -> None:
        super().__init__(server)
        self.texts: dict[str, str] = {}
        self.histories: dict[str, EditHistory] = {}
        self.inflight: dict[str, CancelToken] = {}
        self.shown: dict[str, str] = {}      # uri -> the text its last suggestion would make
        self.counts = dict.fromkeys(("requests", "suggestions", "applied", "no_suggestion", "cancelled",
                                     "generated", "forward_passes", "drafted", "accepted"), 0)

    # ---- document events -------------------------------------------------------------------
    def did_open(self, uri: str, text: str) -> None:
        self.texts[uri] = text

    def did_change(self, uri: str, text: str, edited_line: int | None) -> None:
        """An edit (not a full-text resync) goes into the history; any change
        makes a suggestion in flight stale."""
        before = self.texts.get(uri)
        self.texts[uri] = text
        if self.shown.pop(uri, None) == text:      # the first change after a suggestion decides
            self.counts["applied"] += 1
        if before is not None and edited_line is not None:
            self.histories.setdefault(uri, EditHistory()).record(before, text, time.monotonic())
        self._cancel(uri, "document changed")

    def did_close(self, uri: str) -> None:
        self.texts.pop(uri, None)
        self.histories.pop(uri, None)
        self.shown.pop(uri, None)
        self._cancel(uri, "document closed")

    def stop(self, reason: str) -> None:
        for token in self.inflight.values():
            token.cancel(reason)

    def _cancel(self, uri: str, reason: str) -> None:
        token = self.inflight.pop(uri, None)
        if token is not None:
            token.cancel(reason)

    def describe(self) -> dict[str, Any]:
        c = self.counts
        return {**c, "acceptance": round(c["accepted"] / c["drafted"], 3) if c["drafted"] else None,
                "applied_rate": round(c["applied"] / c["suggestions"], 3) if c["suggestions"] else None,
                "tokens_per_pass": round(c["generated"] / c["forward_passes"], 2) if c["forward_passes"] else None,
                "hunks": {uri: len(h.recent()) for uri, h in self.histories.items()}}

    # ---- the request ----------------------------------------------------------------------------
    def register(self) -> None:
        @self.server.feature(METHOD)
        async def next_edit(ls: DittoServer, params: Any):
            return await self.suggest(params)

    async def suggest(self, params: Any) -> dict | None:
        ls = self.server
        uri, position = document_position(params, METHOD)
        doc = ls.document(uri)
        ls.offset(doc, position)        # an invalid position is an error, not a guess
        text, settings = doc.source, ls.settings
        history = self.histories.get(uri, EditHistory()).recent()
        self.counts["requests"] += 1
        self._cancel(uri, "superseded")
        token = self.inflight[uri] = CancelToken()

        def run(engine, job):
            fmt = choose_format(settings.next_edit_format, engine.llm.tokenizer)
            # The model sees LF; as_result gives the document's own line ending back.
            nej = NextEditJob(uri_name(uri), lines_of(text), position.line, history, fmt)
            return run_next_edit(engine, job, uri, nej)

        deadline = time.monotonic() + settings.next_edit_time_budget_ms / 1000
        try:
            suggestion, stats = await ls.run_job(run, priority=URGENT, token=token, deadline=deadline,
                                                 name="next-edit")
        except Cancelled as e:
            if token.cancelled:
                self.counts["cancelled"] += 1
                return None
            raise JsonRpcInternalError(str(e)) from None
        except (RewriteError, OverflowError, ValueError) as e:
            raise JsonRpcInternalError(f"{METHOD}: {e}") from None
        finally:
            if self.inflight.get(uri) is token:
                del self.inflight[uri]
        for key in ("generated", "forward_passes", "drafted", "accepted"):
            self.counts[key] += getattr(stats, key)     # counted here, on the event loop, not on the model thread
        if suggestion is None:
            self.counts["no_suggestion"] += 1
            return None
        self.counts["suggestions"] += 1
        result = as_result(ls.position_codec, text, suggestion)
        start, end = range_offsets(text, result.range, ls.position_codec)
        self.shown[uri] = text[:start] + result.newText + text[end:]
        return to_json(result)


def as_result(codec: PositionCodec, text: str, s: Suggestion) -> NextEditResult:
    """The suggestion as whole-line LSP positions (a range ending at the start
    of the line after it, or at the end of the text)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = lines_of(text)
    new_text = "".join(line + newline for line in s.new_lines)
    if s.end_line < len(lines):
        end = types.Position(line=s.end_line, character=0)
    else:   # the range runs to the end of a text without a final newline
        end = end_position(text, codec)
        new_text = new_text.removesuffix(newline)
    jump_line = lines[s.jump_line] if s.jump_line < len(lines) else ""
    jump = codec.position_to_client_units(
        lines, types.Position(line=s.jump_line, character=min(s.jump_character, len(jump_line))))
    return NextEditResult(range=types.Range(start=types.Position(line=s.start_line, character=0), end=end),
                          newText=new_text, jump=jump)


def run_next_edit(engine, job, uri: str, nej: NextEditJob) -> tuple[Suggestion | None, DecodeStats]:
    """On the model thread: the decode in the document's own next-edit slot;
    (suggestion or None, the decode's statistics)."""
    llm = engine.llm
    slot = engine.slots.acquire(("next-edit", uri), pin=True)
    try:
        req = nej.make_request(llm, seq=slot, speculate=engine.settings.drafter != "none")
        llm.decoder.run([req], job.should_stop, prefill_chunk=REWRITE_CHUNK)
        engine.stats.add_drafter("next-edit", req.stats.drafted, req.stats.accepted)
        return nej.suggestion(), req.stats
    finally:
        engine.slots.unpin(slot)
