"""ditto/nextEdit: after an edit, the same kind of change where it is due next.

Request params: {textDocument: {uri}, position: {line, character}}.
Result: null (no suggestion), or {range, newText, jump} where range and
newText replace whole lines of the document (the smallest changed range
inside the 21-line window around the cursor) and jump is where to put the
cursor. The feature keeps its own state: each document's edit history, fed
by documents.py on every incremental change, and its counters for
ditto.status. A request runs on the model thread at URGENT priority within
its time budget, and the next keystroke in its document cancels it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.workspace.position_codec import PositionCodec

from ..engine.next_edit import EditHistory, NextEditJob, Suggestion, choose_format, lines_of
from ..engine.rewrite import RewriteError
from .completer import REWRITE_CHUNK, run_request
from .positions import end_position
from .prompt import uri_name
from .scheduler import URGENT, CancelToken, Cancelled
from .server import DittoServer

METHOD = "ditto/nextEdit"


@dataclass
class NextEditFeature:
    """Per-document edit history, the request in flight, and the counters."""
    histories: dict[str, EditHistory] = field(default_factory=dict)
    inflight: dict[str, CancelToken] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("requests", "suggestions", "no_suggestion", "cancelled", "drafted", "accepted"), 0))

    def record(self, uri: str, before: str, after: str) -> None:
        """didChange hook: a document's text before and after a change. It is
        also the next keystroke that makes a suggestion in flight stale."""
        self.histories.setdefault(uri, EditHistory()).record(before, after, time.monotonic())
        tok = self.inflight.pop(uri, None)
        if tok is not None:
            tok.cancel("document changed")

    def forget(self, uri: str) -> None:
        self.histories.pop(uri, None)
        tok = self.inflight.pop(uri, None)
        if tok is not None:
            tok.cancel("document closed")

    def describe(self) -> dict[str, Any]:
        c = self.counts
        return {**c, "acceptance": round(c["accepted"] / c["drafted"], 3) if c["drafted"] else None,
                "hunks": {uri: len(h.recent()) for uri, h in self.histories.items()}}


def as_dicts(value: Any) -> Any:
    """pygls hands a custom method's params over as nested namedtuples: back to dicts."""
    if hasattr(value, "_asdict"):
        return {k: as_dicts(v) for k, v in value._asdict().items()}
    return value


def parse_params(params: Any) -> tuple[str, types.Position]:
    """(uri, position) from {textDocument: {uri}, position: {line, character}}."""
    params = as_dicts(params)
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams(f"{METHOD} takes {{textDocument: {{uri}}, position: {{line, character}}}}")
    doc, pos = params.get("textDocument"), params.get("position")
    uri = doc.get("uri") if isinstance(doc, dict) else None
    if not isinstance(uri, str) or not uri:
        raise JsonRpcInvalidParams(f"{METHOD}: textDocument.uri must be a non-empty string")
    if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int) and not isinstance(pos.get(k), bool)
                                            and 0 <= pos[k] < 2**31 for k in ("line", "character")):
        raise JsonRpcInvalidParams(f"{METHOD}: position must be {{line, character}} with non-negative integers")
    return uri, types.Position(line=pos["line"], character=pos["character"])


def as_result(codec: PositionCodec, text: str, s: Suggestion) -> dict:
    """The suggestion as whole-line LSP positions (a range ending at the start
    of the line after it, or at the end of the text)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = lines_of(text)
    new_text = "".join(line + newline for line in s.new_lines)
    if s.end_line < len(lines):
        end = {"line": s.end_line, "character": 0}
    else:   # the range runs to the end of a text without a final newline
        e = end_position(text, codec)
        end = {"line": e.line, "character": e.character}
        new_text = new_text.removesuffix(newline)
    jump_line = lines[s.jump_line] if s.jump_line < len(lines) else ""
    jump = codec.position_to_client_units(
        lines, types.Position(line=s.jump_line, character=min(s.jump_character, len(jump_line))))
    return {"range": {"start": {"line": s.start_line, "character": 0}, "end": end},
            "newText": new_text, "jump": {"line": jump.line, "character": jump.character}}


def run_next_edit(engine, job, uri: str, nej: NextEditJob) -> tuple[Suggestion | None, int, int]:
    """On the model thread: the decode in the document's own next-edit slot;
    (suggestion or None, tokens drafted, tokens accepted)."""
    llm = engine.llm
    slot = engine.slots.acquire(("next-edit", uri), pin=True)
    try:
        req = nej.make_request(llm, seq=slot, speculate=engine.settings.drafter != "none")
        run_request(llm, req, job.should_stop, REWRITE_CHUNK)
        engine.stats.add_drafter("next-edit", req.stats.drafted, req.stats.accepted)
        return nej.suggestion(), req.stats.drafted, req.stats.accepted
    finally:
        engine.slots.unpin(slot)


def register(server: DittoServer) -> None:
    feature = server.next_edit = NextEditFeature()

    @server.feature(METHOD)
    async def next_edit(ls: DittoServer, params: Any):
        uri, position = parse_params(params)
        doc = ls.document(uri)
        ls.offset(doc, position)        # an invalid position is an error, not a guess
        text, settings = doc.source, ls.settings
        history = feature.histories.get(uri, EditHistory()).recent()
        feature.counts["requests"] += 1
        previous = feature.inflight.get(uri)
        if previous is not None:
            previous.cancel("superseded")
        token = feature.inflight[uri] = CancelToken()

        def run(engine, job):
            fmt = choose_format(settings.next_edit_format, engine.llm.tokenizer)
            # The model sees LF; as_result gives the document's own line ending back.
            nej = NextEditJob(uri_name(uri), lines_of(text), position.line, history, fmt)
            return run_next_edit(engine, job, uri, nej)

        deadline = time.monotonic() + settings.next_edit_time_budget_ms / 1000
        try:
            suggestion, drafted, accepted = await ls.run_job(run, priority=URGENT, token=token, deadline=deadline,
                                                             name="next-edit")
        except Cancelled as e:
            if token.cancelled:
                feature.counts["cancelled"] += 1
                return None
            raise JsonRpcInternalError(str(e)) from None
        except (RewriteError, OverflowError, ValueError) as e:
            raise JsonRpcInternalError(f"{METHOD}: {e}") from None
        finally:
            if feature.inflight.get(uri) is token:
                del feature.inflight[uri]
        feature.counts["drafted"] += drafted     # counted here, on the event loop, not on the model thread
        feature.counts["accepted"] += accepted
        if suggestion is None:
            feature.counts["no_suggestion"] += 1
            return None
        feature.counts["suggestions"] += 1
        return as_result(ls.position_codec, text, suggestion)
