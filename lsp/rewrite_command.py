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
import uuid
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.rewrite import RewriteError, RewriteJob, Status, language_for, make_request
from ..engine.source_text import UnsafeText
from .completer import REWRITE_CHUNK
from .positions import end_position
from .prompt import uri_name
from .scheduler import BACKGROUND, CancelToken, Cancelled
from .server import DittoServer
from .settings import NO_DRAFTER

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


def register(server: DittoServer) -> None:
    @server.command(COMMAND)
    async def rewrite_file(ls: DittoServer, *args):
        uri, instruction, rng = parse_args(args)
        doc = ls.document(uri)
        text, version = doc.source, doc.version
        if rng is not None:
            start, end = ls.range_offsets(doc, rng)
        else:
            start, end = 0, len(text)
            rng = types.Range(types.Position(0, 0), end_position(text, ls.position_codec))
        source = text[start:end]
        if not source.strip():
            raise JsonRpcInvalidParams(f"{COMMAND}: nothing to rewrite (the text is empty)")
        settings = ls.settings
        loop = asyncio.get_running_loop()
        cancel = CancelToken()
        progress = await begin_progress(ls, cancel)
        name = uri_name(uri)
        started = time.perf_counter()
        last_report = [0.0]

        def report(message: str, percentage: int) -> None:
            if progress is not None:
                ls.work_done_progress.report(progress, types.WorkDoneProgressReport(
                    message=message, percentage=percentage, cancellable=True))

        def on_text(rj: RewriteJob, tokens: list[int]) -> None:
            now = time.perf_counter()
            if now - last_report[0] < PROGRESS_INTERVAL:
                return
            last_report[0] = now
            req = rj.request
            rate = req.stats.generated / max(1e-9, req.stats.decode_seconds + req.stats.prefill_seconds)
            pct = min(99, int(100 * len(rj.text) / max(1, len(source))))
            loop.call_soon_threadsafe(report, f"{name}: {req.stats.generated} tokens, {rate:.1f} tok/s", pct)

        def run(engine, job):
            return rewrite_on_engine(engine, job, ("rewrite", uri), source, instruction, name, settings, on_text)

        outcome: dict[str, Any] = {"applied": False}
        try:
            try:
                rjob = await ls.run_job(run, priority=BACKGROUND, token=cancel, name="rewrite")
            except Cancelled as e:
                raise RewriteError(f"cancelled ({e})") from None
            req = rjob.request
            outcome["stats"] = req.stats.as_dict()
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
            outcome["applied"] = bool(applied.applied)
            if not applied.applied:
                raise RewriteError(f"the editor refused the edit ({applied.failure_reason or 'no reason given'})")
            outcome["changed"] = new != source
            ls.log(f"rewrite {name}: applied in {time.perf_counter() - started:.1f}s, {req.stats.as_dict()}",
                   types.MessageType.Info)
            return outcome
        except (RewriteError, UnsafeText, OverflowError) as e:
            outcome["reason"] = str(e)
            ls.show(f"ditto: rewrite of {name} not applied: {e}", types.MessageType.Warning)
            return outcome
        except asyncio.CancelledError:
            ls.show(f"ditto: rewrite of {name} cancelled; nothing was changed", types.MessageType.Info)
            raise
        finally:
            if progress is not None:
                ls.rewrites.pop(str(progress), None)
                ls.work_done_progress.end(progress, types.WorkDoneProgressEnd(
                    message="applied" if outcome.get("applied") else "not applied"))


def rewrite_on_engine(engine, job, key, source: str, instruction: str, name: str, settings,
                      on_text) -> RewriteJob:
    """On the model thread: one rewrite in a pinned slot, yielding to waiting
    completions between forward passes. RewriteError or UnsafeText when the
    text cannot be rewritten safely (the message says why); the finished
    job's outcome() tells the rest."""
    slot = engine.slots.acquire(key, pin=True)
    try:
        rjob = RewriteJob(source=source, instruction=instruction, language=language_for(name), path=name)
        drafter = settings.rewrite_drafter
        req = make_request(engine.llm, rjob, seq=slot, speculate=drafter != NO_DRAFTER,
                           drafter_name=drafter if drafter != NO_DRAFTER else "auto",
                           max_tokens=settings.rewrite_max_tokens, on_text=on_text)
        engine.stats.rewrites += 1
        engine.llm.decoder.run([req], job.should_stop, prefill_chunk=REWRITE_CHUNK, between=job.yield_point)
        engine.stats.add_drafter(f"rewrite:{drafter}", req.stats.drafted, req.stats.accepted)
        return rjob
    finally:
        engine.slots.unpin(slot)
        engine.slots.forget(key)


async def begin_progress(ls: DittoServer, cancel: CancelToken, title: str = "ditto: rewrite"):
    caps = ls.client_capabilities
    if not (caps and caps.window and caps.window.work_done_progress):
        return None
    token = f"ditto-rewrite-{uuid.uuid4()}"
    try:
        await asyncio.wait_for(ls.work_done_progress.create_async(token), 10)
    except Exception:
        return None
    ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
        title=title, cancellable=True, percentage=0, message="starting"))
    ls.rewrites[token] = cancel
    fut = ls.work_done_progress.tokens.get(token)
    if fut is not None:
        fut.add_done_callback(lambda f: cancel.cancel("cancelled from the editor") if f.cancelled() else None)
    return token


def text_edit(ls: DittoServer, uri: str, version: int | None, rng: types.Range, new: str,
              annotation: str | None = None) -> types.WorkspaceEdit:
    """One replacement as a WorkspaceEdit in the richest form the client takes;
    with `annotation`, a change the client asks the user to confirm first
    (a preview) where it supports change annotations."""
    caps = ls.client_capabilities
    we = caps.workspace.workspace_edit if caps and caps.workspace else None
    annotated = annotation is not None and we is not None and we.change_annotation_support is not None
    edit = (types.AnnotatedTextEdit(range=rng, new_text=new, annotation_id="ditto")
            if annotated else types.TextEdit(range=rng, new_text=new))
    annotations = ({"ditto": types.ChangeAnnotation(label=annotation, needs_confirmation=True)}
                   if annotated else None)
    if we is not None and we.document_changes:
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version),
            edits=[edit])], change_annotations=annotations)
    return types.WorkspaceEdit(changes={uri: [edit]}, change_annotations=annotations)
