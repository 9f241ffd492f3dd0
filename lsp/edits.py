"""What both rewrite commands send the client: work-done progress and the edit."""
from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

from .positions import end_position
from .scheduler import CancelToken

if TYPE_CHECKING:
    from .server import DittoServer

PROGRESS_CREATE_TIMEOUT = 10   # seconds the client may take to accept a progress token


async def begin_progress(ls: DittoServer, cancel: CancelToken | None, title: str) -> str | None:
    """A work-done progress, or None when the client has none; with `cancel`
    it is cancellable, and cancelling it from the editor cancels `cancel`."""
    caps = ls.client_capabilities
    if not (caps and caps.window and caps.window.work_done_progress):
        return None
    token = f"ditto-{uuid.uuid4()}"
    try:
        await asyncio.wait_for(ls.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT)
    except Exception:
        return None
    ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
        title=title, cancellable=cancel is not None, percentage=0, message="starting"))
    fut = ls.work_done_progress.tokens.get(token)
    if fut is not None and cancel is not None:
        fut.add_done_callback(lambda f: cancel.cancel("cancelled from the editor") if f.cancelled() else None)
    return token


def report_progress(ls: DittoServer, token: str | None, message: str, percentage: int) -> None:
    if token is not None:
        ls.work_done_progress.report(token, types.WorkDoneProgressReport(
            message=message, percentage=percentage, cancellable=True))


def end_progress(ls: DittoServer, token: str | None, message: str) -> None:
    if token is not None:
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))


def whole_document(text: str, ls: DittoServer) -> types.Range:
    """The range of all of `text`, in the client's position encoding."""
    return types.Range(types.Position(0, 0), end_position(text, ls.position_codec))


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
