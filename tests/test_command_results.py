"""The command results are declared once (lsp/results.py): the VS Code
extension's mirror (src/lsp_ext.ts) declares exactly the same fields, and
the VS Code and Neovim clients read only fields that exist."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ditto.engine.decode import DecodeStats
from ditto.engine.rewrite import Status
from ditto.lsp import results

ROOT = Path(__file__).resolve().parents[1]
LSP_EXT = ROOT / "editor-configs" / "vscode" / "src" / "lsp_ext.ts"
EXTENSION = ROOT / "editor-configs" / "vscode" / "src" / "extension.ts"
INIT_LUA = ROOT / "editor-configs" / "nvim" / "lua" / "ditto" / "init.lua"
# The clients' next-edit code, which reads ditto/nextEdit's result.
NEXT_EDIT_CLIENTS = [ROOT / "editor-configs" / "vscode" / "src" / "next_edit.ts",
                     ROOT / "editor-configs" / "vscode" / "src" / "next_edit_plan.ts",
                     ROOT / "editor-configs" / "nvim" / "lua" / "ditto" / "next_edit.lua"]

RESULT_TYPES = [t for t in vars(results).values() if dataclasses.is_dataclass(t) and t.__module__ == results.__name__]
RESULT_FIELDS = {f.name for t in RESULT_TYPES for f in dataclasses.fields(t)}
STATS_FIELDS = set(DecodeStats().as_dict())
# Where the client functions that read command results start.
TS_READERS = ["async function rewriteFile(", "async function rewriteWorkspace(", "function summarize("]
LUA_READERS = ["function M.rewrite(", "function M.rewrite_workspace("]


def ts_interfaces(source: str) -> dict[str, dict[str, bool]]:
    """interface name -> {field: optional}."""
    out = {}
    for name, body in re.findall(r"export interface (\w+) \{(.*?)\n\}", source, re.S):
        out[name] = {f: bool(q) for f, q in re.findall(r"^\s+(\w+)(\?)?:", body, re.M)}
    return out


def body(source: str, start: str, end: str) -> str:
    i = source.index(start)
    return source[i:source.index(end, i)]


def test_lsp_ext_mirrors_every_result_field_and_which_may_be_absent():
    declared = ts_interfaces(LSP_EXT.read_text())
    for t in RESULT_TYPES:
        fields = {f.name: "None" in str(f.type) for f in dataclasses.fields(t)}
        assert declared.get(t.__name__) == fields, f"lsp_ext.ts {t.__name__} differs from lsp/results.py"
    assert set(declared) == {t.__name__ for t in RESULT_TYPES}


def test_lsp_ext_file_statuses_are_the_engines():
    union = re.search(r"export type FileStatus =(.*?);", LSP_EXT.read_text(), re.S).group(1)
    assert set(re.findall(r"'(\w+)'", union)) == {s.value for s in Status}


def reads(code: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, code))


def test_vscode_reads_only_result_fields_that_exist():
    source = EXTENSION.read_text()
    for start in TS_READERS:
        code = body(source, start, "\n}\n")
        # read through lsp_ext's types, never an ad hoc shape
        assert not re.search(r"\bas (Record<|\{)", code), f"{start}: a result cast to its own shape"
        assert reads(code, r"\b(?:r|result|f)\??\.(\w+)") <= RESULT_FIELDS, start
        assert reads(code, r"\bstats\??\.(\w+)") <= STATS_FIELDS, start


def test_neovim_reads_only_result_fields_that_exist():
    source = INIT_LUA.read_text()
    for start in LUA_READERS:
        code = body(source, start, "\nend\n")
        assert reads(code, r"\b(?:r|result|f)\.(\w+)") <= RESULT_FIELDS, start
        assert reads(code, r"\bstats\.(\w+)") <= STATS_FIELDS, start


def test_the_reads_are_found():
    """The checks above see the clients' reads (a renamed variable must not hide them)."""
    ts = "".join(body(EXTENSION.read_text(), s, "\n}\n") for s in TS_READERS)
    lua = "".join(body(INIT_LUA.read_text(), s, "\nend\n") for s in LUA_READERS)
    assert {"applied", "changed", "stats", "results", "status", "files", "skipped"} <= reads(
        ts, r"\b(?:r|result|f)\??\.(\w+)")
    assert {"applied", "stats", "results", "status", "files", "skipped"} <= reads(lua, r"\b(?:r|result|f)\.(\w+)")


def test_next_edit_clients_read_only_its_result_fields():
    fields = {f.name for f in dataclasses.fields(results.NextEditResult)}
    seen = set()
    for path in NEXT_EDIT_CLIENTS:
        read = reads(path.read_text(), r"\bresult\??\.(\w+)")
        assert read <= fields, f"{path.name} reads {read - fields}"
        seen |= read
    assert seen == fields       # the reads are found

def test_results_reach_the_client_without_absent_fields():
    result = results.RewriteWorkspaceResult(files=1, results=[results.FileResult("file:///a.py", Status.APPLIED)])
    assert results.to_json(result) == {"files": 1, "applied": 0, "skipped": [],
                                       "results": [{"uri": "file:///a.py", "status": "applied"}]}


def test_next_edit_result_is_lsp_json():
    from lsprotocol import types

    at = types.Position(line=2, character=13)
    result = results.NextEditResult(types.Range(start=types.Position(line=2, character=0), end=types.Position(line=3, character=0)),
                                    "    for v in items:\n", at)
    assert results.to_json(result) == {"range": {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 0}},
                                       "newText": "    for v in items:\n", "jump": {"line": 2, "character": 13}}
