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
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.files import select_files
from ..engine.rewrite import RewriteError
from .positions import end_position
from .rewrite_command import begin_progress, rewrite_on_engine, text_edit
from .scheduler import BACKGROUND, CancelToken, Cancelled
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


def register(server: DittoServer) -> None:
    @server.command(COMMAND)
    async def rewrite_workspace(ls: DittoServer, *args):
        pattern, instruction = parse_args(args)
        roots = workspace_roots(ls)
        selection = select_files([str(root / pattern) for root in roots])
        files = selection.files
        summary: dict[str, Any] = {"files": len(files), "applied": 0, "results": [],
                                   "skipped": [{"path": p, "reason": r} for p, r in selection.skipped]}
        if not files:
            ls.show(f"ditto: no files match {pattern!r}", types.MessageType.Info)
            return summary
        cancel = CancelToken()
        progress = await begin_progress(ls, cancel, title="ditto: rewrite workspace")
        settings = ls.settings
        try:
            for i, path in enumerate(files):
                if cancel.cancelled:
                    summary["results"].append({"uri": path.as_uri(), "status": "cancelled"})
                    continue
                if progress is not None:
                    ls.work_done_progress.report(progress, types.WorkDoneProgressReport(
                        message=f"{i + 1}/{len(files)} {path.name}", percentage=100 * i // len(files),
                        cancellable=True))
                result = await _rewrite_one(ls, path, instruction, settings, cancel)
                summary["results"].append(result)
                summary["applied"] += result["status"] == "applied"
        except asyncio.CancelledError:
            ls.show("ditto: workspace rewrite cancelled; finished files stay applied", types.MessageType.Info)
            raise
        finally:
            if progress is not None:
                ls.rewrites.pop(str(progress), None)
                ls.work_done_progress.end(progress, types.WorkDoneProgressEnd(
                    message=f"{summary['applied']} of {len(files)} files changed"))
        failed = [r for r in summary["results"] if r["status"] not in ("applied", "unchanged")]
        if failed:
            ls.show(f"ditto: {len(failed)} of {len(files)} files not rewritten (see ditto.rewriteWorkspace's result)",
                    types.MessageType.Warning)
        return summary


async def _rewrite_one(ls: DittoServer, path: Path, instruction: str, settings, cancel: CancelToken) -> dict:
    uri = path.as_uri()
    open_doc = ls.open_document(uri)
    if (problem := ls.sync_problem(uri)) is not None:
        return {"uri": uri, "status": "failed", "reason": f"out of sync with the editor ({problem})"}
    try:
        text = open_doc.source if open_doc is not None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return {"uri": uri, "status": "failed", "reason": f"cannot read: {e}"}
    version = open_doc.version if open_doc is not None else None

    def run(engine, job):
        return rewrite_on_engine(engine, job, ("rewrite", uri), text, instruction, path.name, settings,
                                 on_text=None)

    try:
        rjob = await ls.run_job(run, priority=BACKGROUND, token=cancel, name=f"rewrite {path.name}")
        if rjob.request.finish_reason == "cancelled" or cancel.cancelled:
            return {"uri": uri, "status": "cancelled"}
        new = rjob.result()
    except Cancelled:
        return {"uri": uri, "status": "cancelled"}
    except (RewriteError, OverflowError) as e:
        return {"uri": uri, "status": "failed", "reason": str(e)}
    if new == text:
        return {"uri": uri, "status": "unchanged"}
    current = ls.open_document(uri)
    try:
        now = current.source if current is not None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        now = None
    if now != text or (current is not None and current.version != version):
        return {"uri": uri, "status": "conflict", "reason": "changed during the rewrite; not applied"}
    rng = types.Range(types.Position(0, 0), end_position(text, ls.position_codec))
    edit = text_edit(ls, uri, version, rng, new, annotation=f"ditto: {instruction[:60]}")
    applied = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"ditto: {instruction[:60]} ({path.name})"))
    if not applied.applied:
        return {"uri": uri, "status": "refused", "reason": applied.failure_reason or "the editor refused the edit"}
    return {"uri": uri, "status": "applied", "stats": rjob.request.stats.as_dict()}
