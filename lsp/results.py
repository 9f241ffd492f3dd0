"""The results of ditto's commands and of its own request ditto/nextEdit, declared once.

Clients read these shapes: editor-configs/vscode/src/lsp_ext.ts mirrors them
field for field (as rust-analyzer's lsp_ext.ts mirrors its server), and a
test checks that the mirror and every client's reads match these fields.
A field that is None is left out of the JSON; LSP types are lsprotocol's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import attrs
from lsprotocol import converters, types

from ..engine.rewrite import Status

LSP_CONVERTER = converters.get_converter()


def to_json(result: Any) -> Any:
    """A result as the JSON the client receives: dataclasses as objects, None fields left out."""
    if dataclasses.is_dataclass(result):
        return {f.name: to_json(getattr(result, f.name)) for f in dataclasses.fields(result)
                if getattr(result, f.name) is not None}
    if isinstance(result, list):
        return [to_json(item) for item in result]
    if isinstance(result, Status):
        return str(result)
    if attrs.has(type(result)):         # an LSP type (lsprotocol's attrs classes)
        return LSP_CONVERTER.unstructure(result)
    return result


@dataclass
class RewriteFileResult:
    """ditto.rewriteFile: whether the edit was applied, and why not."""
    applied: bool = False
    changed: bool | None = None         # applied: did the text change (False: already as asked)
    reason: str | None = None           # not applied: why
    stats: dict | None = None           # the decode's statistics (DecodeStats.as_dict)


@dataclass
class FileResult:
    """One file of ditto.rewriteWorkspace."""
    uri: str
    status: Status
    reason: str | None = None           # a status that is not ok: why
    stats: dict | None = None           # applied: the decode's statistics


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class RewriteWorkspaceResult:
    """ditto.rewriteWorkspace: one result per matching file, and what was not even tried."""
    files: int                          # files that matched the glob
    applied: int = 0                    # files whose edit the editor applied
    results: list[FileResult] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


@dataclass
class NextEditResult:
    """ditto/nextEdit (null: no suggestion): replace `range`, whole lines, with
    `newText`, and put the cursor at `jump`."""
    range: types.Range
    newText: str
    jump: types.Position
