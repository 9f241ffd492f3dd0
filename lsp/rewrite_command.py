"""workspace/executeCommand ditto.rewriteFile: a speculative rewrite of a
document (or a range of it) with work-done progress.

The rewrite runs on the model thread at background priority and lets
waiting completions go first between forward passes. Its result reaches the
client as one workspace/applyEdit, only when complete: a cancelled or failed
rewrite, or one whose document changed meanwhile, applies nothing and the
user is told with window/showMessage.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.rewrite import RewriteError, RewriteJob, Status
from ..engine.source_text import UnsafeText
from .edits import begin_progress, end_progress, report_progress, text_edit, whole_document
from .prompt import uri_name
from .results import RewriteFileResult, to_json
from .rewriting import RewriteFeature, rewrite_on_engine
from .scheduler import BACKGROUND, CancelToken, Cancelled

COMMAND = "ditto.rewriteFile"
PROGRESS_INTERVAL = 0.2   # seconds between $/progress reports


def parse_args(args: tuple) -> tuple[str, str, Any]:
    """(uri, instruction[, range]) positionally, or one object with those keys."""
    if len(args) == 1 and isinstance(args[0], dict):
        obj = args[0]
        uri, instruction, rng = obj.get("uri"), obj.get("instruction"), obj.get("range")
    elif 2 <= len(args) <= 3:
        uri, instruction = args[0], args[1]
        rng = args[2] if len(args) == 3 else None
    else:
        raise JsonRpcInvalidParams(f"{COMMAND} takes (uri, instruction[, range]), got {len(args)} arguments")
    if not isinstance(uri, str) or not uri:
        raise JsonRpcInvalidParams(f"{COMMAND}: uri must be a non-empty string")
    if not isinstance(instruction, str) or not instruction.strip():
        raise JsonRpcInvalidParams(f"{COMMAND}: instruction must be a non-empty string")
    if rng is not None:
        try:
            rng = types.Range(start=types.Position(**_pos(rng["start"])), end=types.Position(**_pos(rng["end"])))
        except (KeyError, TypeError, ValueError) as e:
            raise JsonRpcInvalidParams(f"{COMMAND}: range must be {{start: {{line, character}}, end: ...}} ({e})")
    return uri, instruction, rng


def _pos(p) -> dict:
    if not isinstance(p, dict) or set(p) != {"line", "character"}:
        raise ValueError("a position is {line, character}")
    line, ch = p["line"], p["character"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 for v in (line, ch)):
        raise ValueError("line and character must be non-negative integers")
    return {"line": line, "character": ch}


class RewriteFile(RewriteFeature):
    def register(self) -> None:
        @self.server.command(COMMAND)
        async def rewrite_file(*args):   # pygls passes a command's arguments positionally
            uri, instruction, rng = parse_args(args)
            cancel = CancelToken()
            self.running.add(cancel)
            try:
                return to_json(await self.rewrite(uri, instruction, rng, cancel))
            finally:
                self.running.discard(cancel)

    async def rewrite(self, uri: str, instruction: str, rng: types.Range | None,
                      cancel: CancelToken) -> RewriteFileResult:
        ls = self.server
        doc = ls.document(uri)
        text, version = doc.source, doc.version
        if rng is not None:
            start, end = ls.range_offsets(doc, rng)
        else:
            start, end = 0, len(text)
            rng = whole_document(text, ls)
        source = text[start:end]
        if not source.strip():
            raise JsonRpcInvalidParams(f"{COMMAND}: nothing to rewrite (the text is empty)")
        settings = ls.settings
        loop = asyncio.get_running_loop()
        progress = await begin_progress(ls, cancel, title="ditto: rewrite")
        name = uri_name(uri)
        started = time.perf_counter()
        last_report = [0.0]

        def on_text(rj: RewriteJob, tokens: list[int]) -> None:
            now = time.perf_counter()
            if now - last_report[0] < PROGRESS_INTERVAL:
                return
            last_report[0] = now
            req = rj.request
            rate = req.stats.generated / max(1e-9, req.stats.decode_seconds + req.stats.prefill_seconds)
            pct = min(99, int(100 * len(rj.text) / max(1, len(source))))
            loop.call_soon_threadsafe(report_progress, ls, progress,
                                      f"{name}: {req.stats.generated} tokens, {rate:.1f} tok/s", pct)

        def run(engine, job):
            return rewrite_on_engine(engine, job, ("rewrite", uri), source, instruction, name, settings, on_text)

        outcome = RewriteFileResult()
        try:
            try:
                rjob = await ls.run_job(run, priority=BACKGROUND, token=cancel, name="rewrite")
            except Cancelled as e:
                raise RewriteError(f"cancelled ({e})") from None
            req = rjob.request
            outcome.stats = req.stats.as_dict()
            result = rjob.outcome()
            if result.status is Status.CANCELLED or cancel.cancelled:
                raise RewriteError("cancelled; nothing was changed")
            if result.status is Status.FAILED:
                raise RewriteError(result.message)
            new = result.output
            current = ls.open_document(uri)
            if current is None or current.version != version or current.source != text:
                raise RewriteError("the document changed during the rewrite; the edit was not applied")
            edit = text_edit(ls, uri, version, rng, new)
            applied = await ls.workspace_apply_edit_async(
                types.ApplyWorkspaceEditParams(edit=edit, label=f"ditto: {instruction[:60]}"))
            outcome.applied = bool(applied.applied)
            if not applied.applied:
                raise RewriteError(f"the editor refused the edit ({applied.failure_reason or 'no reason given'})")
            outcome.changed = new != source
            ls.log(f"rewrite {name}: applied in {time.perf_counter() - started:.1f}s, {req.stats.as_dict()}",
                   types.MessageType.Info)
            return outcome
        except (RewriteError, UnsafeText, OverflowError) as e:
            outcome.reason = str(e)
            ls.show(f"ditto: rewrite of {name} not applied: {e}", types.MessageType.Warning)
            return outcome
        except asyncio.CancelledError:
            ls.show(f"ditto: rewrite of {name} cancelled; nothing was changed", types.MessageType.Info)
            raise
        finally:
            end_progress(ls, progress, "applied" if outcome.applied else "not applied")
