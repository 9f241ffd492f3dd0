"""workspace/executeCommand ditto.rewriteWorkspace (glob, instruction): the
same instruction over every matching file of the workspace.

Files are chosen as `ditto rewrite` chooses them (inside the workspace
folders, .gitignore respected, no symlinks out, text files only) and
rewritten one after another on the model thread at background priority.
Each finished file reaches the client as its own workspace/applyEdit, so
the user can undo file by file; clients that support change annotations
are asked to confirm each edit first (a preview). A file whose text changed
meanwhile (in the editor or on disk) is left alone and reported.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.files import select_files
from ..engine.rewrite import RewriteError, Status
from ..engine.source_text import UnsafeText, decode
from ..engine.writeback import holds
from .edits import begin_progress, end_progress, report_progress, text_edit, whole_document
from .results import FileResult, RewriteWorkspaceResult, SkippedFile, to_json
from .rewriting import RewriteFeature, rewrite_on_engine
from .scheduler import BACKGROUND, CancelToken, Cancelled

if TYPE_CHECKING:
    from .server import DittoServer

COMMAND = "ditto.rewriteWorkspace"


def parse_args(args: tuple) -> tuple[str, str]:
    """(glob, instruction) positionally, or one object with those keys."""
    if len(args) == 1 and isinstance(args[0], dict):
        pattern, instruction = args[0].get("glob"), args[0].get("instruction")
    elif len(args) == 2:
        pattern, instruction = args
    else:
        raise JsonRpcInvalidParams(f"{COMMAND} takes (glob, instruction), got {len(args)} arguments")
    if not isinstance(pattern, str) or not pattern.strip():
        raise JsonRpcInvalidParams(f"{COMMAND}: glob must be a non-empty string such as 'src/**/*.py'")
    if os.path.isabs(pattern) or ".." in Path(pattern).parts:
        raise JsonRpcInvalidParams(f"{COMMAND}: the glob must be relative to the workspace, without '..'")
    if not isinstance(instruction, str) or not instruction.strip():
        raise JsonRpcInvalidParams(f"{COMMAND}: instruction must be a non-empty string")
    return pattern, instruction


def workspace_roots(ls: DittoServer) -> list[Path]:
    folders = ls.workspace.folders or {}
    uris = [f.uri for f in folders.values()] or ([ls.workspace.root_uri] if ls.workspace.root_uri else [])
    roots = [Path(unquote(urlparse(u).path)) for u in uris if u and u.startswith("file:")]
    if not roots:
        raise JsonRpcInvalidParams(f"{COMMAND}: the client opened no workspace folder")
    return roots


class RewriteWorkspace(RewriteFeature):
    def register(self) -> None:
        @self.server.command(COMMAND)
        async def rewrite_workspace(*args):   # pygls passes a command's arguments positionally
            pattern, instruction = parse_args(args)
            cancel = CancelToken()
            self.running.add(cancel)
            try:
                return to_json(await self.rewrite(pattern, instruction, cancel))
            finally:
                self.running.discard(cancel)

    async def rewrite(self, pattern: str, instruction: str, cancel: CancelToken) -> RewriteWorkspaceResult:
        ls = self.server
        roots = workspace_roots(ls)
        selection = select_files([str(root / pattern) for root in roots])
        files = selection.files
        summary = RewriteWorkspaceResult(files=len(files),
                                         skipped=[SkippedFile(str(p), r) for p, r in selection.skipped])
        if not files:
            ls.show(f"ditto: no files match {pattern!r}", types.MessageType.Info)
            return summary
        progress = await begin_progress(ls, cancel, title="ditto: rewrite workspace")
        settings = ls.settings
        try:
            for i, path in enumerate(files):
                if cancel.cancelled:
                    summary.results.append(FileResult(path.as_uri(), Status.CANCELLED))
                    continue
                report_progress(ls, progress, f"{i + 1}/{len(files)} {path.name}", 100 * i // len(files))
                result = await _rewrite_one(ls, path, instruction, settings, cancel)
                summary.results.append(result)
                summary.applied += result.status is Status.APPLIED
        except asyncio.CancelledError:
            ls.show("ditto: workspace rewrite cancelled; finished files stay applied", types.MessageType.Info)
            raise
        finally:
            end_progress(ls, progress, f"{summary.applied} of {len(files)} files changed")
        failed = [r for r in summary.results if not r.status.ok]
        if failed:
            ls.show(f"ditto: {len(failed)} of {len(files)} files not rewritten (see ditto.rewriteWorkspace's result)",
                    types.MessageType.Warning)
        return summary


async def _rewrite_one(ls: DittoServer, path: Path, instruction: str, settings, cancel: CancelToken) -> FileResult:
    uri = path.as_uri()
    open_doc = ls.open_document(uri)
    if (problem := ls.sync_problem(uri)) is not None:
        return FileResult(uri, Status.FAILED, f"out of sync with the editor ({problem})")
    version = open_doc.version if open_doc is not None else None
    try:
        text = open_doc.source if open_doc is not None else decode(path.read_bytes())
    except UnsafeText as e:
        return FileResult(uri, Status.FAILED, str(e))
    except OSError as e:
        return FileResult(uri, Status.FAILED, f"cannot read: {e.strerror or e}")

    def run(engine, job):
        return rewrite_on_engine(engine, job, ("rewrite", uri), text, instruction, path.name, settings,
                                 on_text=None)

    try:
        rjob = await ls.run_job(run, priority=BACKGROUND, token=cancel, name=f"rewrite {path.name}")
    except Cancelled:
        return FileResult(uri, Status.CANCELLED)
    except (RewriteError, UnsafeText, OverflowError) as e:
        return FileResult(uri, Status.FAILED, str(e))
    result = rjob.outcome()
    if cancel.cancelled:
        return FileResult(uri, Status.CANCELLED)
    if result.status is not Status.CHANGED:
        return FileResult(uri, result.status, result.message or None)
    if not _still_holds(ls, uri, path, text, version):
        return FileResult(uri, Status.CONFLICT, "changed during the rewrite; not applied")
    edit = text_edit(ls, uri, version, whole_document(text, ls), result.output,
                     annotation=f"ditto: {instruction[:60]}")
    applied = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"ditto: {instruction[:60]} ({path.name})"))
    if not applied.applied:
        return FileResult(uri, Status.REFUSED, applied.failure_reason or "the editor refused the edit")
    return FileResult(uri, Status.APPLIED, stats=rjob.request.stats.as_dict())


def _still_holds(ls: DittoServer, uri: str, path: Path, text: str, version: int | None) -> bool:
    """The conflict check: the open document at the same version and text,
    or (closed) the file on disk with exactly the bytes of `text`."""
    current = ls.open_document(uri)
    if current is not None:
        return current.version == version and current.source == text
    return holds(path, text.encode("utf-8"))
