"""Typing through a real file keystroke by keystroke with completions in
flight (some superseded, one cancelled with $/cancelRequest), closing and
reopening the document, and checking that every answer equals a fresh cold
evaluation of the same prompt: the prompt caches never serve stale state."""
from __future__ import annotations

import asyncio
import os

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_helpers import SERVER_CMD, cold_completion_text, cold_llm, lsp_session, open_doc, position_at  # noqa: F401

pytestmark = pytest.mark.slow

OPTIONS = {"maxTokens": 8, "timeBudgetMs": 120000, "promptTokens": 512, "nSeq": 2,
           "prefetch": False, "completionCache": True, "extraChunks": 0}
KEYSTROKES = 10


def real_file() -> tuple[str, int]:
    """The head of the standard library's abc.py and a cursor at a line start."""
    text = open(os.path.join(os.path.dirname(os.__file__), "abc.py"), encoding="utf-8").read()
    cut = text.index("\n", 1100) + 1
    doc = text[:cut]
    cursor = doc.rindex("\n", 0, 700) + 1
    return doc, cursor


def cold(llm, text: str, offset: int) -> str:
    return cold_completion_text(llm, text, offset, OPTIONS)


client = lsp_session(SERVER_CMD, OPTIONS)


def completion(client: LanguageClient, uri: str, text: str, offset: int, msg_id: str | None = None):
    params = types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                                    position=position_at(text, offset))
    # a task, so the request is on the wire before the caller awaits it
    return asyncio.ensure_future(
        client.protocol.send_request_async(types.TEXT_DOCUMENT_COMPLETION, params, msg_id=msg_id))


def answer(result) -> tuple[str, str] | None:
    if result is None or not result.items:
        return None
    return result.items[0].data["text"], result.items[0].data["source"]


async def test_typing_matches_cold_evaluation(client: LanguageClient, cold_llm):
    doc, cursor = real_file()
    uri = "file:///workspace/abc_typing.py"
    target = doc[cursor:cursor + KEYSTROKES]          # the file's own next characters
    text = doc[:cursor] + doc[cursor + KEYSTROKES:]   # start with them removed
    open_doc(client, uri, text)
    checked = 0
    superseded = []
    states: list[tuple[str, int]] = []                # (text, offset) after each keystroke
    version = 1
    for i, ch in enumerate(target):
        offset = cursor + i
        version += 1
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(position_at(text, offset), position_at(text, offset)), text=ch)]))
        text = text[:offset] + ch + text[offset:]
        offset += 1
        states.append((text, offset))
        if i % 3 == 1:
            # left in flight: the next keystroke's request supersedes it
            superseded.append(completion(client, uri, text, offset))
            await asyncio.sleep(0.1)
            continue
        if i == 3:
            # cancelled by the client
            fut = completion(client, uri, text, offset, msg_id=f"cancel-me-{i}")
            await asyncio.sleep(0.05)
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"cancel-me-{i}"))
            try:
                await fut
            except Exception:
                pass
            continue
        got = answer(await completion(client, uri, text, offset))
        expected = cold(cold_llm, text, offset)
        if got is None:
            assert not expected.strip()
            continue
        got_text, source = got
        if source == "model":
            assert got_text == expected, f"keystroke {i}: stale answer"
        else:
            # typed through an earlier suggestion (maybe one computed for a
            # request the client superseded): the rest of it, no model call.
            # It must be the rest of a cold answer at some earlier keystroke.
            assert source == "cache"
            assert any(cold(cold_llm, t, o) == text[o:offset] + got_text for t, o in reversed(states[:-1])), \
                f"keystroke {i}: the cached answer is no earlier suggestion's rest"
        checked += 1
    for fut in superseded:
        result = await fut       # answered (maybe empty), never an error
        assert result is None or isinstance(result, types.CompletionList)
    assert checked >= KEYSTROKES // 2

    # close and reopen with different text above the cursor: nothing stale survives
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    text = "# reopened\n" + text
    open_doc(client, uri, text)
    offset = cursor + len(target) + len("# reopened\n")
    got = answer(await completion(client, uri, text, offset))
    expected = cold(cold_llm, text, offset)
    assert (got[0] if got else "") == (expected if expected.strip() else "")


async def test_sessions_saved_and_restored(client: LanguageClient, cold_llm):
    """More documents than sequence slots: evicted sessions are saved and
    loaded back, and their answers still equal cold evaluations."""
    doc, cursor = real_file()
    docs = {f"file:///workspace/s{i}.py": f"# file {i}\n" + doc[:cursor] for i in range(3)}  # nSeq = 2
    for uri, text in docs.items():
        open_doc(client, uri, text)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"completionCache": False}))
    for _round in range(2):
        for uri, text in docs.items():
            got = answer(await completion(client, uri, text, len(text)))
            expected = cold(cold_llm, text, len(text))
            assert (got[0] if got else "") == (expected if expected.strip() else "")
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))
    assert status["slots"]["saves"] >= 2 and status["slots"]["loads"] >= 1
