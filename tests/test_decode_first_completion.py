"""The first completion after opening a file is a real one: didOpen prefills
the document's first prompt window in the background (no logits, PREFETCH
priority), the completion is served from that cache, and a completion that
arrives while the model still loads waits for it instead of spending its
time budget on the load. `ditto/didFocus` does the same for the window
around a cursor that the open prefill did not reach. A completion whose
prompt is not cached beyond its prefill budget is answered from the lines
nearest the cursor that fit, and the next ones from the whole window."""
from __future__ import annotations

import asyncio
import os

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import SERVER_CMD, cold_completion_text, cold_llm, open_doc, position_at  # noqa: F401

from ditto.lsp.completer import URGENT_CHUNK, cold_completion
from ditto.lsp.prompt import build_prompt, line_starts

pytestmark = pytest.mark.slow

# A generous budget: what is tested is where the time goes, not how fast it is.
OPTIONS = {"maxTokens": 8, "timeBudgetMs": 120000, "promptTokens": 512, "nSeq": 2,
           "prefetch": False, "extraChunks": 0}
# A prefill budget no machine evaluates more than one chunk in: the short window is
# then bounded by the one-chunk floor, whatever the speed.
COLD_OPTIONS = {**OPTIONS, "prefillBudgetMs": 1}
WAIT = 600      # seconds: a bound for a shared, loaded machine, not a speed claim


def abc_source() -> str:
    return open(os.path.join(os.path.dirname(os.__file__), "abc.py"), encoding="utf-8").read()


def real_file() -> tuple[str, int]:
    """The head of the standard library's abc.py and a cursor inside a call's
    parentheses (where the model answers with something)."""
    text = abc_source()
    doc = text[:text.index("\n", 1100) + 1]
    return doc, doc.index("my_abstract_method(") + len("my_abstract_method(")


def focus(client: LanguageClient, uri: str, text: str, offset: int) -> None:
    client.protocol.notify("ditto/didFocus", {"textDocument": {"uri": uri},
                                              "position": lsp_position(position_at(text, offset))})


def lsp_position(position: types.Position) -> dict:
    return {"line": position.line, "character": position.character}


def server_with(options: dict):
    """A fixture: a client of a fresh server initialized with `options`."""
    @pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD))
    async def session(lsp_client: LanguageClient):
        await lsp_client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("visual_studio_code"), initialization_options=options))
        yield
        await lsp_client.shutdown_session()
    return session


client = server_with(OPTIONS)
cold_client = server_with(COLD_OPTIONS)


async def complete(client: LanguageClient, uri: str, text: str, offset: int):
    result = await asyncio.wait_for(client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position_at(text, offset))), WAIT)
    assert result is not None and result.items, "the first completion came back empty"
    return result.items[0].data


async def prefilled(client: LanguageClient, uri: str, line: int | None = None) -> int:
    """Waits for the server's word that the prefill of `uri` on open (or for
    a cursor on `line`, 1-based) finished."""
    end = f" of {uri}" if line is None else f" of {uri} at line {line}"
    async def said() -> int:
        while True:
            for m in client.log_messages:
                if m.message.startswith("ditto: prefilled ") and m.message.endswith(end):
                    return int(m.message.split()[2])
            await client.wait_for_notification(types.WINDOW_LOG_MESSAGE)
    return await asyncio.wait_for(said(), WAIT)


async def logged(client: LanguageClient, start: str) -> str:
    """Waits for a window/logMessage that starts with `start`."""
    async def said() -> str:
        while True:
            for m in client.log_messages:
                if m.message.startswith(start):
                    return m.message
            await client.wait_for_notification(types.WINDOW_LOG_MESSAGE)
    return await asyncio.wait_for(said(), WAIT)


async def test_first_completion_is_served_from_the_open_prefill(client: LanguageClient, cold_llm):
    doc, cursor = real_file()
    uri = "file:///workspace/abc_open_prefill.py"
    open_doc(client, uri, doc)
    held = await prefilled(client, uri)
    assert held > 100
    data = await complete(client, uri, doc, cursor)
    assert data["source"] == "model"
    # Everything before the cursor came from the prefill (the last prompt token
    # is always evaluated; the cursor splits a word at most once).
    assert data["prompt_tokens"] - 3 <= data["reused_tokens"] < data["prompt_tokens"]
    assert data["text"] == cold_completion_text(cold_llm, doc, cursor, OPTIONS)
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))
    session = next(s for s in status["sessions"] if s["uri"] == uri)
    assert session["prefilled_tokens"] == held


async def test_first_completion_right_after_open_is_real(client: LanguageClient, cold_llm):
    """Sent at once after didOpen, while the model may still be loading."""
    doc, cursor = real_file()
    uri = "file:///workspace/abc_cold_start.py"
    open_doc(client, uri, doc)
    data = await complete(client, uri, doc, cursor)
    assert data["source"] == "model" and data["finish_reason"] != "cancelled"
    assert data["text"] == cold_completion_text(cold_llm, doc, cursor, OPTIONS)


async def test_focus_prefills_the_window_at_the_cursor(client: LanguageClient, cold_llm):
    """A cursor far below the first window: the open prefill shares nothing
    with a completion there (its window starts lower), the focus prefill
    shares everything before the cursor, and the answer is the cold one."""
    doc = abc_source()
    cursor = doc.index("def update_abstractmethods(cls):") + len("def update_abstractmethods(")
    assert cursor > 2 * OPTIONS["promptTokens"] * 3     # beyond the first window (3 characters a token)
    uri = "file:///workspace/abc_focus.py"
    open_doc(client, uri, doc)
    await prefilled(client, uri)
    focus(client, uri, doc, cursor)
    held = await prefilled(client, uri, line=doc.count("\n", 0, cursor) + 1)
    data = await complete(client, uri, doc, cursor)
    assert data["source"] == "model"
    assert held >= data["prompt_tokens"] - 3
    assert data["prompt_tokens"] - 3 <= data["reused_tokens"] < data["prompt_tokens"]
    assert data["text"] == cold_completion_text(cold_llm, doc, cursor, OPTIONS)


async def test_a_focus_in_the_first_window_keeps_the_whole_window(client: LanguageClient):
    """A file just opened has its cursor at the top: the focus there must not
    trade the open prefill for a prompt of nothing."""
    doc, _cursor = real_file()
    uri = "file:///workspace/abc_focus_top.py"
    open_doc(client, uri, doc)
    held = await prefilled(client, uri)
    focus(client, uri, doc, 0)
    assert await prefilled(client, uri, line=1) == held


async def test_a_focus_on_an_unknown_document_is_ignored_with_a_reason(client: LanguageClient):
    doc, cursor = real_file()
    focus(client, "file:///workspace/never_opened.py", doc, cursor)
    message = await logged(client, "ignored a focus notification")
    assert "unknown document" in message
    uri = "file:///workspace/abc_after_bad_focus.py"     # and the server goes on serving
    open_doc(client, uri, doc)
    client.protocol.notify("ditto/didFocus", {"textDocument": {"uri": uri}, "position": {"line": -1}})
    assert "position must be" in await logged(client, "ignored a focus notification: ditto/didFocus")
    assert (await complete(client, uri, doc, cursor))["source"] == "model"


class FakeEngine:
    """Stands in for the loaded model: a completion's `seconds` carry its job's deadline."""

    def complete(self, job, uri, text, offset, chunks):
        from ditto.lsp.completer import CompletionResult

        return CompletionResult(text=" x", multiline=False, source="model", seconds=job.deadline)


async def test_time_budget_starts_when_the_model_is_loaded():
    """A completion that arrives while the model loads gets its whole budget
    after the load (plumbing: a scripted load and engine, no model)."""
    import dataclasses
    import threading
    import time

    from pygls.workspace import Workspace

    from ditto.lsp.scheduler import URGENT
    from ditto.lsp.server import create_server
    from ditto.lsp.suggestions import Suggestions

    ls = create_server()
    ls.protocol._workspace = Workspace(None)
    ls.workspace.put_text_document(types.TextDocumentItem(uri="file:///a.py", language_id="python",
                                                          version=1, text="import os\n"))
    budget_ms = 2000
    ls.settings = dataclasses.replace(ls.settings, time_budget_ms=budget_ms, prefetch=False, extra_chunks=0)
    loaded = threading.Event()

    def load(job):
        loaded.wait(WAIT)
        ls.scheduler.state = FakeEngine()

    ls._engine_future = ls.scheduler.submit(load, priority=URGENT, name="load", nestable=False)
    try:
        suggestions = next(f for f in ls.language_features if isinstance(f, Suggestions))
        asked = asyncio.ensure_future(suggestions.suggest("file:///a.py", types.Position(1, 0)))
        for _ in range(20):        # the request is in, waiting on the load
            await asyncio.sleep(0)
        load_end = time.monotonic()
        loaded.set()
        result, _offset, _text = await asyncio.wait_for(asked, WAIT)
        assert result.seconds >= load_end + budget_ms / 1000    # the deadline, counted from the load's end
    finally:
        ls.scheduler.stop()


def far_cursor() -> tuple[str, int]:
    """abc.py and a cursor whose prompt window shares nothing with the first one."""
    doc = abc_source()
    return doc, doc.index("def update_abstractmethods(cls):") + len("def update_abstractmethods(")


def cold_text_from_line(llm, doc: str, cursor: int, line: int) -> str:
    """The cold completion of a prompt whose window starts at `line` (0-based)."""
    prompt, _below = build_prompt(llm.tokenizer, doc, cursor, prompt_tokens=OPTIONS["promptTokens"],
                                  suffix_tokens=256, style="auto", start=line_starts(doc)[line])
    return cold_completion(llm, prompt, OPTIONS["maxTokens"])


async def test_an_uncached_prompt_beyond_the_budget_is_answered_from_a_short_window(
        cold_client: LanguageClient, cold_llm):
    """Asked at once after didOpen (the model may still load): the answer comes
    from the lines nearest the cursor within the budget, then the whole window
    is prefilled and the next completion is served from it."""
    client = cold_client
    doc, cursor = far_cursor()
    uri = "file:///workspace/abc_short_window.py"
    open_doc(client, uri, doc)
    first = await complete(client, uri, doc, cursor)
    assert first["source"] == "model" and first["text"].strip()
    assert first["window"] == "short"
    assert first["uncached_tokens"] > first["budget_tokens"] >= URGENT_CHUNK      # the rule chose it
    assert first["prompt_tokens"] - first["reused_tokens"] <= first["budget_tokens"]   # and it fits
    assert first["text"] == cold_text_from_line(cold_llm, doc, cursor, first["window_line"])

    line = doc.count("\n", 0, cursor)
    held = await prefilled(client, uri, line=line + 1)    # the whole window, behind the answer
    typed = "x" if not first["text"].startswith("x") else "y"    # off the suggestion: no cache hit
    doc2 = doc[:cursor] + typed + doc[cursor:]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=position_at(doc, cursor), end=position_at(doc, cursor)), text=typed)]))
    second = await complete(client, uri, doc2, cursor + 1)
    assert second["source"] == "model" and second["window"] == "full"
    assert second["prompt_tokens"] - 3 <= second["reused_tokens"] < second["prompt_tokens"] <= held + 3
    assert second["text"] == cold_completion_text(cold_llm, doc2, cursor + 1, OPTIONS)

    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))
    session = next(s for s in status["sessions"] if s["uri"] == uri)
    assert session["short_windows"] == 1 and session["window"]["window"] == "full"
    assert status["stats"]["short_windows"] == 1
    assert status["prefill"]["tokens_per_second"] > 0 and status["prefill"]["budget_ms"] == 1
    assert not any("short window" in (slot["owner"] or "") for slot in status["slots"]["slots"])


async def test_completions_while_the_model_loads_are_all_answered(cold_client: LanguageClient, cold_llm):
    """Two completions and a status sent at once after didOpen: every request
    gets its answer; the superseded completion may come back empty, the last
    one is the model's."""
    client = cold_client
    doc, cursor = far_cursor()
    uri = "file:///workspace/abc_loading.py"
    open_doc(client, uri, doc)
    params = types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                                    position=position_at(doc, cursor))
    answers = await asyncio.wait_for(asyncio.gather(
        client.text_document_completion_async(params), client.text_document_completion_async(params),
        client.workspace_execute_command_async(types.ExecuteCommandParams(command="ditto.status"))), WAIT)
    superseded, last, status = answers
    assert superseded is not None and status["model"]["name"]
    assert last.items, "the last completion came back empty"
    data = last.items[0].data
    assert data["source"] == "model" and data["window"] == "short"
    assert data["text"] == cold_text_from_line(cold_llm, doc, cursor, data["window_line"])
