"""Next-edit suggestions, engine side: hunks, window, prompt formats, answer
parsing, the seeded drafter and lossless decoding with it."""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as Q
from hypothesis import given, settings
from hypothesis import strategies as st

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import EditAwareDrafter
from ditto.engine.drafters.simulate import simulate
from ditto.engine.gguf_model import load_model_file
from ditto.engine.next_edit import (
    LINE_TOLERANCE, EditHistory, Hunk, NextEditJob, instruct_message, lines_of, original_window, parse_answer,
    sweep_prompt, window_bounds,
)
from speculation import plain

TEXT = "def area(width, height):\n    w = width\n    return w * height\n"


def replace_in(text: str, line: int, old: str, new: str) -> str:
    """text with `old` replaced by `new` on one line."""
    lines = text.split("\n")
    lines[line] = lines[line].replace(old, new, 1)
    return "\n".join(lines)


def test_one_edit_makes_one_hunk_of_its_lines():
    history = EditHistory()
    after = replace_in(TEXT, 0, "width", "size")
    history.record(TEXT, after, now=0.0)
    assert history.recent() == [Hunk(0, ["def area(width, height):"], ["def area(size, height):"], 0.0)]


def test_keystrokes_on_one_line_group_into_one_hunk():
    """Deleting a word and typing its replacement key by key is one edit."""
    history, text = EditHistory(), TEXT
    for t, typed in enumerate(["", "s", "si", "siz", "size"]):
        after = TEXT.replace("area(width", "area(" + typed, 1)
        history.record(text, after, now=0.1 * t)
        text = after
    assert [(h.original, h.updated) for h in history.recent()] == \
        [(["def area(width, height):"], ["def area(size, height):"])]


def test_distant_or_late_edits_make_separate_hunks_and_the_oldest_go():
    history, text = EditHistory(), "\n".join(f"x{i} = {i}" for i in range(40))
    for k, line in enumerate(range(0, 40, 4)):
        after = replace_in(text, line, "=", ":=")
        history.record(text, after, now=float(k))
        text = after
    hunks = history.recent()
    assert len(hunks) == 8
    assert [h.start for h in hunks] == list(range(8, 40, 4))
    after = replace_in(text, 39, "=", "==")
    history.record(text, after, now=100.0)
    assert history.recent()[-1].start == 39 and len(history.recent()) == 8


def test_an_edit_typed_and_undone_leaves_no_hunk():
    history = EditHistory()
    after = replace_in(TEXT, 1, "w =", "ww =")
    history.record(TEXT, after, now=0.0)
    history.record(after, TEXT, now=0.5)
    assert history.recent() == []


def test_an_inserted_line_is_a_hunk_with_no_original_lines_and_typing_on_it_extends_it():
    history = EditHistory()
    after = TEXT.replace("    w = width\n", "    w = width\n    h = \n")
    history.record(TEXT, after, now=0.0)
    assert history.recent() == [Hunk(2, [], ["    h = "], 0.0)]
    history.record(after, after.replace("h = ", "h = height"), now=1.0)
    assert [(h.start, h.original, h.updated) for h in history.recent()] == [(2, [], ["    h = height"])]


def test_a_hunk_is_found_from_the_texts_alone_whatever_the_edit_event():
    """A whole-document change gives the same hunk as an incremental one."""
    before = "\n".join(f"x{i} = {i}" for i in range(30))
    after = replace_in(before, 12, "x12", "y12")
    history = EditHistory()
    history.record(before, after, now=0.0)
    assert history.recent() == [Hunk(12, ["x12 = 12"], ["y12 = 12"], 0.0)]


@given(n=st.integers(1, 200), cursor=st.integers(0, 199))
def test_window_is_21_lines_around_the_cursor_inside_the_text(n, cursor):
    cursor = min(cursor, n - 1)
    start, end = window_bounds(n, cursor)
    assert 0 <= start <= cursor < end <= n
    assert end - start == min(21, n)


def test_window_ends_at_the_last_line_not_after_the_final_newline():
    """The model's answer ends its last line with a newline before the closing
    fence; a window with the empty string after the final newline in it would
    make every answer seem to delete that line."""
    for cursor in (0, 2, 3):
        job = NextEditJob("a.py", lines_of("a\nb\nc\n"), cursor, [])
        assert (job.window, job.window_text) == (["a", "b", "c"], "a\nb\nc\n")
    assert NextEditJob("a.py", lines_of("a\nb"), 1, []).window == ["a", "b"]
    assert NextEditJob("a.py", lines_of(""), 0, []).window == [""]


def test_original_window_undoes_the_last_hunk():
    lines = ["a", "b(size)", "c"]
    hunk = Hunk(1, ["b(width)"], ["b(size)"])
    assert original_window(lines, 0, 3, [hunk]) == ["a", "b(width)", "c"]
    assert original_window(lines, 2, 3, [hunk]) == ["c"]


def test_sweep_prompt_is_the_published_format():
    hunks = [Hunk(0, ["def area(width, height):"], ["def area(size, height):"])]
    prompt = sweep_prompt("geo.py", hunks, ["def area(width, height):", "    w = width"],
                          ["def area(size, height):", "    w = width"])
    assert prompt == ("<|file_sep|>geo.py.diff\n"
                      "original:\ndef area(width, height):\n"
                      "updated:\ndef area(size, height):\n"
                      "<|file_sep|>original/geo.py\ndef area(width, height):\n    w = width\n"
                      "<|file_sep|>current/geo.py\ndef area(size, height):\n    w = width\n"
                      "<|file_sep|>updated/geo.py\n")


def test_instruct_message_shows_the_edits_as_a_diff_then_the_window():
    hunks = [Hunk(0, ["def area(width, height):"], ["def area(size, height):"])]
    message = instruct_message(hunks, ["def area(size, height):", "    w = width"], "```", "python")
    assert message.startswith("My recent edits:\n```diff\n-def area(width, height):\n+def area(size, height):\n```\n\n"
                              "The code around my cursor:\n```python\ndef area(size, height):\n    w = width\n```\n\n")
    assert "same kind of change" in message


def test_answer_is_reduced_to_the_smallest_changed_line_range_and_a_jump():
    window = ["def area(size, height):", "    w = width", "    return w * height"]
    s = parse_answer(window, "def area(size, height):\n    w = size\n    return w * height\n", 10)
    assert (s.start_line, s.end_line, s.new_lines, s.jump_line, s.jump_character) == (11, 12, ["    w = size"], 11, 8)


def test_inserted_and_deleted_lines_are_a_range():
    window = ["a", "b", "c"]
    s = parse_answer(window, "a\nb\nb2\nc\n", 0)
    assert (s.start_line, s.end_line, s.new_lines) == (2, 2, ["b2"])
    s = parse_answer(window, "a\nc\n", 0)
    assert (s.start_line, s.end_line, s.new_lines) == (1, 2, [])


@given(window=st.lists(st.text("ab \n", max_size=4).map(lambda s: s.replace("\n", "")), min_size=1, max_size=8),
       answer=st.lists(st.text("ab ", max_size=4), min_size=1, max_size=8))
def test_applying_the_suggestion_to_the_window_gives_the_answer(window, answer):
    s = parse_answer(window, "\n".join(answer) + "\n", 0)
    if answer == window or abs(len(answer) - len(window)) > LINE_TOLERANCE:
        assert s is None
        return
    assert window[:s.start_line] + s.new_lines + window[s.end_line:] == answer


def test_no_suggestion_for_an_equal_answer_or_one_that_is_not_the_window():
    window = [f"line {i}" for i in range(10)]
    assert parse_answer(window, "\n".join(window) + "\n", 0) is None
    assert parse_answer(window, "line 0\nline 1\n", 0) is None
    assert parse_answer(window, "", 0) is None


def rename_tokens() -> tuple[list[int], list[int], tuple[list[int], list[int]]]:
    """A window with token 7 in several places, the answer with 7 -> 8 9, and the hunk that taught it."""
    window = [1, 2, 7, 3, 4, 5, 7, 6, 1, 2, 3, 7, 4, 5, 6, 7, 1]
    answer = []
    for t in window:
        answer += [8, 9] if t == 7 else [t]
    return window, answer, ([20, 7, 21], [20, 8, 9, 21])


def test_seeded_drafter_drafts_the_recent_substitution_ahead():
    """The first occurrence is drafted right too: the rule comes from the hunk,
    not from the model writing it once."""
    window, answer, hunk = rename_tokens()
    prompt = [99, 98]
    plain_stats = simulate(EditAwareDrafter(window), prompt + answer, len(prompt), 8)
    seeded = EditAwareDrafter(window)
    seeded.seed([hunk])
    seeded_stats = simulate(seeded, prompt + answer, len(prompt), 8)
    assert seeded_stats.calls < plain_stats.calls
    assert seeded_stats.drafted - seeded_stats.accepted < plain_stats.drafted - plain_stats.accepted


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_seeded_drafter_is_lossless_on_a_tiny_model(tiny_model_path, seed):
    model = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    rng = np.random.default_rng(seed)
    window = [int(t) for t in rng.integers(0, model.n_vocab, 30)]
    original = [int(t) for t in rng.integers(0, model.n_vocab, 6)]
    updated = original[:2] + [int(t) for t in rng.integers(0, model.n_vocab, 3)] + original[3:]
    prompt = window + original + updated + window[:4]
    truth = plain(model, prompt, 40)
    drafter = EditAwareDrafter(window)
    drafter.seed([(original, updated)])
    req = Request(prompt=prompt, max_tokens=40, drafter=drafter)
    Decoder(Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)).run([req])
    assert req.output == truth
    assert req.stats.accepted <= req.stats.drafted
