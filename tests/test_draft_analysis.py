"""bench/draft_analysis.py: where drafts were rejected, from a TracingDrafter's records."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import draft_analysis  # noqa: E402
import draft_replay  # noqa: E402
from ditto.engine.drafters import DraftRecord, EditAwareDrafter, TracingDrafter, simulate  # noqa: E402

NL = 0
TEXT = {NL: "\n", 99: "X", 98: "Y"}


def decode(ids):
    return "".join(TEXT.get(t, f"t{t} ") for t in ids)


PROMPT_LEN = 3
SOURCE = list(range(10, 30))
# The answer copies the source, but writes 99 98 where the source has 14 and
# (after a newline) starts its third line with 99.
OUTPUT = [10, 11, 12, 13, 99, 98, NL, 16, 17, 18, 19, 20, 21, 22, 23, NL, 99]


def test_rejections_say_where_whose_and_what_instead():
    records = [
        DraftRecord(PROMPT_LEN + 0, "edit", [10, 11, 12, 13, 14, 15], 4),   # cut at 14 (line 1)
        DraftRecord(PROMPT_LEN + 7, "doc", [16, 17, 18], 3),                # all kept
        DraftRecord(PROMPT_LEN + 15, "doc", [NL, 24, 25], 1),               # cut at 24 (line 3)
    ]
    rejects = draft_analysis.rejections(records, PROMPT_LEN, OUTPUT, SOURCE, decode)
    assert [(r["line"], r["output_pos"], r["drafter"], r["accepted"], r["wasted"]) for r in rejects] == [
        (1, 4, "edit", 4, 2), (3, 16, "doc", 1, 2)]
    assert (rejects[0]["drafted"], rejects[0]["model"]) == ("t14 t15 ", "XY")
    assert (rejects[1]["drafted_token"], rejects[1]["model_token"]) == ("t24 ", "X")
    # 10..13 is a 4-token run: too short to count as the answer following the original
    assert not rejects[0]["copying"]

    groups = draft_analysis.group_rejections(rejects + [dict(rejects[0], line=9)])
    assert [(g["drafter"], g["count"], g["wasted"]) for g in groups] == [("edit", 2, 4), ("doc", 1, 2)]
    assert [e["line"] for e in groups[0]["examples"]] == [1, 9]

    per = draft_analysis.per_drafter(records)
    assert per["doc"] == {"drafts": 2, "drafted": 6, "accepted": 4, "acceptance": round(4 / 6, 4),
                          "tokens_per_pass": 3.0}
    assert draft_analysis.merge_per_drafter([per, per])["edit"]["drafted"] == 12


def test_acceptance_where_copying_counts_drafts_inside_long_copied_runs():
    n = draft_analysis.MIN_COPIED_RUN
    source = list(range(100, 100 + 3 * n))
    output = source[:n] + [1, 2] + source[n:2 * n - 1]      # a long run, an edit, a shorter run
    copied = draft_analysis.copied_positions(source, output)
    assert copied == [True] * n + [False] * (2 + n - 1)
    records = [DraftRecord(PROMPT_LEN + 1, "edit", source[1:n - 1] + [7, 7], n - 2),   # cut inside the run
               DraftRecord(PROMPT_LEN + n + 2, "edit", source[n:n + 4], 4)]         # outside any run
    assert draft_analysis.acceptance_where_copying(records, PROMPT_LEN, output, source) == {
        "drafted": n, "accepted": n - 2, "acceptance": round((n - 2) / n, 4)}


def test_where_copying_counts_every_pass_of_a_looping_answer():
    """The answer copies the same 2n tokens of the original three times; a
    monotone alignment (difflib's matching blocks) saw only the first."""
    n = draft_analysis.MIN_COPIED_RUN
    source = list(range(100, 100 + 4 * n))
    part = source[n:3 * n]
    output = part + [1] + part + [2] + part
    assert draft_analysis.copied_positions(source, output) == [True] * (2 * n) + [False] + [True] * (2 * n) \
        + [False] + [True] * (2 * n)
    records = [DraftRecord(PROMPT_LEN + 2 * n + 1 + 3, "doc", part[3:3 + n], n)]    # inside the second pass
    assert draft_analysis.acceptance_where_copying(records, PROMPT_LEN, output, source)["accepted"] == n


def test_where_copying_leaves_out_a_tail_cut_where_the_answer_departs():
    """A draft of the original that runs past the end of a copied run is cut
    where the answer departs: no draft of the original could be accepted
    there, so its tail is not counted as copying."""
    n = draft_analysis.MIN_COPIED_RUN
    source = list(range(100, 100 + 3 * n))
    output = source[:n] + [1, 2, 3]
    records = [DraftRecord(PROMPT_LEN + n - 2, "doc", source[n - 2:n + 6], 2)]      # 2 kept, 6 past the run
    assert draft_analysis.acceptance_where_copying(records, PROMPT_LEN, output, source) == {
        "drafted": 2, "accepted": 2, "acceptance": 1.0}


def test_a_traced_replay_reports_the_rename_it_missed():
    source = [1, 2, 3, 500, 4, 5, NL] * 30
    output = [1, 2, 3, 501, 4, 5, NL] * 30                  # 500 renamed to 501
    prompt = [90001, 90002]
    trace = TracingDrafter(EditAwareDrafter(source))
    simulate(trace, prompt + output, len(prompt), 16)
    rejects = draft_analysis.rejections(trace.records, len(prompt), output, source, decode)
    assert rejects and rejects[0]["line"] == 1 and rejects[0]["model_token"] == "t501 "
    # learned after the first occurrence: later ones are drafted as 501
    assert all(r["line"] <= 2 for r in rejects)


# -- bench/draft_replay.py: kept streams replayed offline ----------------------


class _WordTokenizer:
    """One token per character: enough to check what the ideal answer holds."""

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_ideal_answer_renames_whole_words_and_closes_the_fence():
    tok = _WordTokenizer()
    source = "def walk(x):\n    return walker(walk(x))\n"
    entry = {"path": "a.py", "instruction": "Rename the function walk to walk_impl.",
             "tokens": {"source": tok.encode(source)}}
    assert tok.decode(draft_replay.ideal_answer(tok, entry)) == (
        "def walk_impl(x):\n    return walker(walk_impl(x))\n```\n")
    entry["instruction"] = "Add type hints."
    with pytest.raises(SystemExit, match="not a rename instruction"):
        draft_replay.ideal_answer(tok, entry)


def test_modelled_speedup_counts_passes_and_fed_tokens():
    # plain: 100 tokens x (3 + 1); speculative: 10 passes x 3 + 90 drafted + 10 fed pending tokens
    assert draft_replay.modelled_speedup(100, 10, 90, 3.0) == round(400 / 130, 3)
    assert draft_replay.modelled_speedup(100, 100, 0, 3.0) == 1.0


def test_replay_matches_a_simulated_decode():
    source = [1, 2, 3, 500, 4, 5, NL] * 30
    output = [1, 2, 3, 501, 4, 5, NL] * 30
    prompt = [90001, 90002]
    run = draft_replay.replay("edit", prompt, source, output, decode, 3.0)
    stats = simulate(EditAwareDrafter(source), prompt + output, len(prompt))
    assert (run["drafted"], run["accepted"], run["forward_passes"]) == (stats.drafted, stats.accepted, stats.calls)
    assert run["per_drafter"]["edit"]["drafted"] == stats.drafted
    assert run["_rejections"] and run["_rejections"][0]["model_token"] == "t501 "
    total = draft_replay.total([run, run], 3.0)
    assert total["drafted"] == 2 * stats.drafted and total["modelled_speedup"] == run["modelled_speedup"]
