"""Every method and command of ditto's language server, for the Neovim and
VS Code client capability presets, on the real default model."""
from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_helpers import INIT_OPTIONS, SAMPLE, SCRIPTED_CMD, SERVER_CMD, lsp_session, open_doc, position_at

# One server per client preset for the whole module: the model loads once per preset.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

client = lsp_session(SERVER_CMD, INIT_OPTIONS, scope="module")
# Rewrites whose answer is known (scripted_model.py: it follows "Rename old to new."), so
# that the edit must be applied and be exactly the expected text.
scripted = lsp_session(SCRIPTED_CMD, INIT_OPTIONS, scope="module")


URI = "file:///workspace/sample.py"


async def test_capabilities(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    sync = caps.text_document_sync
    assert getattr(sync, "change", sync) == types.TextDocumentSyncKind.Incremental
    assert {"ditto.rewriteFile", "ditto.rewriteWorkspace", "ditto.status"} <= set(
        caps.execute_command_provider.commands)


async def test_completion_and_inline(client: LanguageClient):
    text = SAMPLE
    open_doc(client, URI, text)
    offset = text.index("    return len(") + len("    return len(")
    pos = position_at(text, offset)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=pos))
    assert result.items, "the model suggests something"
    item = result.items[0]
    assert item.text_edit.new_text.endswith(item.data["text"])
    assert "\n" not in item.data["text"].strip()  # single line in the middle of a line
    inline = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=pos,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    assert inline.items[0].insert_text == item.data["text"]   # same prompt, same answer (from cache or model)


async def test_incremental_change_and_cache(client: LanguageClient):
    text = SAMPLE
    open_doc(client, URI, text)
    offset = text.index("def count_lines(path):\n") + len("def count_lines(path):\n")
    # an incremental edit: insert a line, then complete after it
    ins = "    n = 0\n"
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(position_at(text, offset), position_at(text, offset)), text=ins)]))
    text = text[:offset] + ins + text[offset:]
    offset += len(ins)
    first = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=position_at(text, offset)))
    assert first.items
    shown = first.items[0].data["text"]
    assert first.items[0].data["source"] == "model"
    # type the first character of the suggestion: served from the cache
    typed = shown[0]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=3),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(position_at(text, offset), position_at(text, offset)), text=typed)]))
    text = text[:offset] + typed + text[offset:]
    offset += 1
    second = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=position_at(text, offset)))
    if len(shown.strip()) > 1:
        assert second.items[0].data["source"] == "cache"
        assert second.items[0].data["text"] == shown[1:]


async def test_status(client: LanguageClient):
    open_doc(client, URI, SAMPLE)
    await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(4, 4)))
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))
    assert status["model"]["name"].endswith(".gguf")
    assert status["model"]["n_seq"] == 3
    assert any(s["uri"] == URI for s in status["sessions"])
    assert "doc" in status["stats"]["drafters"]


def applied_text(client: LanguageClient, uri: str) -> str:
    """The new text of the one edit the client applied, which must replace the whole document."""
    [edit] = client.applied_edits
    [(target, [change])] = (edit.changes.items() if edit.changes else
                            [(c.text_document.uri, c.edits) for c in edit.document_changes])
    assert target == uri
    assert change.range.start == types.Position(0, 0)
    return change.new_text


async def rewrite_file(client: LanguageClient, uri: str, text: str, instruction: str) -> dict:
    """Opens `text` as `uri`, runs ditto.rewriteFile on it, and returns the command's result."""
    client.applied_edits.clear()
    open_doc(client, uri, text)
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="ditto.rewriteFile", arguments=[uri, instruction]))


async def test_rewrite_file_applies_the_answer(scripted: LanguageClient):
    uri = "file:///workspace/add.py"
    out = await rewrite_file(scripted, uri, "def add(a, b):\n    return a + b\n", "Rename the function add to plus.")
    assert out["applied"] is True and out["changed"] is True, out
    assert "reason" not in out and out["stats"]["generated"] > 0
    assert applied_text(scripted, uri) == "def plus(a, b):\n    return a + b\n"


async def test_rewrite_file_already_as_asked_is_applied_unchanged(scripted: LanguageClient):
    uri = "file:///workspace/same.py"
    out = await rewrite_file(scripted, uri, "total = 1\n", "Keep it as it is.")
    assert out["applied"] is True and out["changed"] is False, out
    assert applied_text(scripted, uri) == "total = 1\n"


async def test_rewrite_workspace_applies_each_file_and_writes_none(scripted: LanguageClient):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="ditto-ws-", dir="/tmp"))
    sources = {"one.py": "def add(a, b):\n    return a + b\n",
               "two.py": "def sub(a, b):\n    return a - b\n",
               "notes.txt": "not python\n"}
    for name, text in sources.items():
        (folder / name).write_text(text)
    scripted.applied_edits.clear()
    out = await scripted.workspace_execute_command_async(types.ExecuteCommandParams(
        command="ditto.rewriteWorkspace", arguments=[f"{folder.name}/*.py", "Rename the parameter a to x."]))
    assert out["files"] == 2 and out["applied"] == 2, out
    assert {r["uri"]: r["status"] for r in out["results"]} == {
        (folder / "one.py").as_uri(): "applied", (folder / "two.py").as_uri(): "applied"}
    assert sorted(edit_texts(e)[0] for e in scripted.applied_edits) == [
        "def add(x, b):\n    return x + b\n", "def sub(x, b):\n    return x - b\n"]
    for name, text in sources.items():   # only the client applies edits; the server never writes
        assert (folder / name).read_text() == text
    with pytest.raises(Exception):
        await scripted.workspace_execute_command_async(types.ExecuteCommandParams(
            command="ditto.rewriteWorkspace", arguments=["../*.py", "x"]))


async def test_rewrite_not_applied_when_document_changes(scripted: LanguageClient):
    text = "x = 1\ny = 2\n"
    uri = "file:///workspace/xy.py"
    scripted.applied_edits.clear()
    open_doc(scripted, uri, text)
    # The change reaches the server after its snapshot, before the model starts.
    scripted.before_progress_create = lambda: scripted.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="x = 3\n")]))
    try:
        out = await scripted.workspace_execute_command_async(types.ExecuteCommandParams(
            command="ditto.rewriteFile", arguments=[uri, "Rename x to z."]))
    finally:
        scripted.before_progress_create = None
    assert out["applied"] is False and "changed during the rewrite" in out["reason"], out
    assert scripted.applied_edits == []
    assert any("changed during the rewrite" in m.message for m in scripted.messages)


async def wait_until(predicate, what: str, timeout: float = 120) -> None:
    """Waits for a condition on what the client received (no assumption on speed)."""
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def test_rewrite_cancelled(client: LanguageClient):
    text = SAMPLE
    uri = "file:///workspace/cancel.py"
    client.applied_edits.clear()
    open_doc(client, uri, text)
    earlier = set(client.progress_reports)
    params = types.ExecuteCommandParams(command="ditto.rewriteFile", arguments=[uri, "Add type hints."])
    task = asyncio.ensure_future(client.protocol.send_request_async(
        types.WORKSPACE_EXECUTE_COMMAND, params, msg_id="rewrite-to-cancel"))

    def reporting() -> bool:   # the model is running: it reported its first tokens
        return any(isinstance(r, types.WorkDoneProgressReport)
                   for token, reports in client.progress_reports.items() if token not in earlier
                   for r in reports)
    await wait_until(reporting, "the rewrite's first progress report")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="rewrite-to-cancel"))
    with pytest.raises(Exception, match="cancel"):
        await task
    # a completion waits behind nothing: the rewrite stopped
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(4, 4)))
    assert result is not None
    assert client.applied_edits == []


async def test_errors(client: LanguageClient):
    with pytest.raises(Exception, match="unknown document"):
        await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri="file:///nope.py"), position=types.Position(0, 0)))
    open_doc(client, URI, SAMPLE)
    with pytest.raises(Exception, match="past the end"):
        await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(999, 0)))
    with pytest.raises(Exception, match="not defined"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.nope"))
    with pytest.raises(Exception, match="takes"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="ditto.rewriteFile", arguments=[1]))


async def test_settings_invalid_reported(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"ditto": {"maxTokens": "lots", "completionStyle": "single"}}))
    await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    assert any("maxTokens" in m.message for m in client.messages)


def edit_texts(edit: types.WorkspaceEdit) -> list[str]:
    if edit.changes:
        return [e.new_text for edits in edit.changes.values() for e in edits]
    return [e.new_text for change in edit.document_changes for e in change.edits]


def only_crlf(text: str) -> bool:
    return "\n" in text and text.count("\n") == text.count("\r\n")


async def test_rewrite_file_keeps_crlf_line_endings(client: LanguageClient):
    """The model sees LF text; the edit gives the answer back in the document's CRLF."""
    out = await rewrite_file(client, "file:///workspace/crlf.py", "value = 10\r\nprint(value)\r\n",
                             "Rename value to amount.")
    assert out["applied"] and out["changed"], out
    [new_text] = edit_texts(client.applied_edits[0])
    assert only_crlf(new_text), repr(new_text)


async def test_rewrite_workspace_keeps_crlf_line_endings(client: LanguageClient):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="ditto-crlf-", dir="/tmp"))
    (folder / "crlf.py").write_bytes(b"value = 10\r\nprint(value)\r\n")
    client.applied_edits.clear()
    out = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="ditto.rewriteWorkspace", arguments=[f"{folder.name}/*.py", "Rename value to amount."]))
    assert [r["status"] for r in out["results"]] == ["applied"], out
    [new_text] = edit_texts(client.applied_edits[0])
    assert only_crlf(new_text), repr(new_text)
