"""ditto/nextEdit: a scripted decode gives an exact suggestion; the real
server answers a rename with a well-formed suggestion or null, refuses bad
params with a message, cancels on the next keystroke and counts in ditto.status;
a server whose model follows a script advertises the method, returns the exact
suggestion and counts it applied when the next change makes its text."""
from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from ditto.engine.next_edit import EditHistory, NextEditJob, Suggestion, choose_format
from ditto.lsp.next_edit import NextEditFeature, as_result
from ditto.lsp.results import to_json
from ditto.lsp.scheduler import CancelToken
from lsp_helpers import SCRIPTED_CMD, RawServer
from test_rewrite_safety import ScriptedDecoder

SOURCE = ("def scale(values, factor):\n"
          "    out = []\n"
          "    for v in values:\n"
          "        out.append(v * factor)\n"
          "    return out\n")
RENAMED = SOURCE.replace("def scale(values,", "def scale(items,", 1)


@pytest.fixture(scope="module")
def llm(default_model_path):
    from ditto.engine.llm import LLM

    return LLM(default_model_path, n_ctx=2048, n_seq=1)


def rename_job() -> NextEditJob:
    history = EditHistory()
    history.record(SOURCE, RENAMED, now=0.0)
    return NextEditJob("scale.py", RENAMED.split("\n"), 0, history.recent(), "instruct")


def scripted_suggestion(llm, answer):
    """The suggestion for a decode that 'generates' answer(the window as shown), then ends its turn."""
    job, real = rename_job(), llm.decoder
    llm.decoder = ScriptedDecoder(llm, lambda _first_block: answer(job.window_text))
    try:
        llm.decoder.run([job.make_request(llm, speculate=False)])
    finally:
        llm.decoder = real
    return job, job.suggestion()


def test_instruct_answer_becomes_the_smallest_range_and_a_jump(llm):
    assert choose_format("auto", llm.tokenizer) == "instruct"    # the default model has no <|file_sep|>
    job, s = scripted_suggestion(llm, lambda shown: shown.replace("for v in values", "for v in items"))
    assert job.window[:5] == RENAMED.split("\n")[:5]
    assert (s.start_line, s.end_line, s.new_lines, s.jump_line, s.jump_character) == \
        (2, 3, ["    for v in items:"], 2, 13)


def test_instruct_answer_equal_to_the_window_is_no_suggestion(llm):
    assert scripted_suggestion(llm, lambda shown: shown)[1] is None


def test_instruct_answer_that_is_not_the_window_is_no_suggestion(llm):
    assert scripted_suggestion(llm, lambda shown: "return out\n")[1] is None


def test_result_keeps_the_documents_line_endings_and_whole_lines():
    codec = PositionCodec(types.PositionEncodingKind.Utf16)
    text = SOURCE.replace("\n", "\r\n")
    s = Suggestion(2, 3, ["    for v in items:"], 2, 13)
    assert to_json(as_result(codec, text, s)) == {
        "range": {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 0}},
        "newText": "    for v in items:\r\n", "jump": {"line": 2, "character": 13}}
    unterminated = "a = 1\nb = 1"
    result = as_result(codec, unterminated, Suggestion(1, 2, ["b = 2"], 1, 4))
    assert result.range.end == types.Position(line=1, character=5)
    assert result.newText == "b = 2"


def test_crlf_edits_make_hunks_without_carriage_returns():
    history = EditHistory()
    history.record(SOURCE.replace("\n", "\r\n"), RENAMED.replace("\n", "\r\n"), now=0.0)
    assert history.recent()[0].original == ["def scale(values, factor):"]


def test_sweep_prompt_keeps_its_separators_as_special_tokens(llm):
    """On a model without <|file_sep|> the text is still encoded; the format is chosen by setting."""
    job = rename_job()
    job.format = "sweep"
    assert llm.tokenizer.decode(job.prompt(llm)).endswith("<|file_sep|>updated/scale.py\n")


@pytest.fixture(scope="module")
def server():
    s = RawServer()
    s.initialize({"nSeq": 2, "prefetch": False, "nextEditTimeBudgetMs": 600_000})
    yield s
    s.close()


URI = "file:///workspace/scale.py"


def rename_param(server: RawServer, version: int) -> None:
    server.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": version},
        "contentChanges": [{"range": {"start": {"line": 0, "character": 10}, "end": {"line": 0, "character": 16}},
                            "text": "items"}]})


def test_next_edit_after_a_rename_is_a_well_formed_suggestion_or_null(server):
    server.open(URI, SOURCE)
    rename_param(server, 2)
    result = server.call("ditto/nextEdit", {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 15}},
                         timeout=600)
    if result is not None:
        lines = RENAMED.split("\n")
        start, end = result["range"]["start"], result["range"]["end"]
        assert start["character"] == 0 and 0 <= start["line"] <= end["line"] <= len(lines)
        assert isinstance(result["newText"], str)
        assert start["line"] <= result["jump"]["line"] <= max(end["line"], start["line"])
    status = server.call("workspace/executeCommand", {"command": "ditto.status", "arguments": []})
    counts = status["next_edit"]
    assert counts["requests"] >= 1 and counts["suggestions"] + counts["no_suggestion"] + counts["cancelled"] >= 1
    assert counts["accepted"] <= counts["drafted"]
    assert counts["hunks"][URI] == 1     # the rename reached the history through didChange


@pytest.mark.parametrize("params, complaint", [
    ({"position": {"line": 0, "character": 0}}, "textDocument.uri"),
    ({"textDocument": {"uri": URI}, "position": {"line": -1, "character": 0}}, "position"),
    ({"textDocument": {"uri": "file:///workspace/never-opened.py"}, "position": {"line": 0, "character": 0}},
     "open it with textDocument/didOpen"),
    ({"textDocument": {"uri": URI}, "position": {"line": 99, "character": 0}}, "line"),
])
def test_bad_next_edit_params_get_a_clear_error(server, params, complaint):
    server.open(URI, SOURCE)
    reply = server.response(server.request("ditto/nextEdit", params), timeout=120)
    assert complaint in reply["error"]["message"]


def test_the_next_keystroke_cancels_a_next_edit_in_flight_in_its_document_only():
    from ditto.lsp.server import DittoServer

    feature = NextEditFeature(DittoServer())
    feature.did_open("a.py", SOURCE)
    here, there = feature.inflight["a.py"], feature.inflight["b.py"] = CancelToken(), CancelToken()
    feature.did_change("a.py", RENAMED, edited_line=0)
    assert here.cancelled and not there.cancelled
    assert feature.histories["a.py"].recent()[0].updated == ["def scale(items, factor):"]


def test_scripted_server_advertises_returns_and_counts_the_applied_suggestion():
    s = RawServer(SCRIPTED_CMD)
    try:
        init = s.initialize({"nSeq": 2, "prefetch": False, "nextEditTimeBudgetMs": 600_000})
        assert init["capabilities"]["experimental"] == {"ditto": {"nextEdit": True}}
        s.open(URI, SOURCE)
        rename_param(s, 2)
        result = s.call("ditto/nextEdit", {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 15}},
                        timeout=600)
        assert result == {"range": {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 0}},
                          "newText": "    for v in items:\n", "jump": {"line": 2, "character": 13}}
        s.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": 3},
                                            "contentChanges": [{"range": result["range"], "text": result["newText"]}]})
        counts = s.call("workspace/executeCommand", {"command": "ditto.status", "arguments": []})["next_edit"]
        assert (counts["suggestions"], counts["applied"], counts["applied_rate"]) == (1, 1, 1.0)
    finally:
        s.close()


def test_a_change_other_than_the_suggestion_is_not_counted_applied():
    from ditto.lsp.server import DittoServer

    feature = NextEditFeature(DittoServer())
    feature.did_open("a.py", RENAMED)
    feature.shown["a.py"] = RENAMED.replace("in values", "in items")
    feature.did_change("a.py", RENAMED + "# typed\n", edited_line=5)
    feature.did_change("a.py", RENAMED.replace("in values", "in items"), edited_line=2)
    assert feature.counts["applied"] == 0 and "a.py" not in feature.shown
