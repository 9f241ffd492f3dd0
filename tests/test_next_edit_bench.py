"""bench/next_edit.py's edit sequences: a commit's diff, applied hunk by hunk
to the text before it, gives the text after it; a next-edit result applied to
a text replaces exactly its range."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import next_edit as bench  # noqa: E402

BEFORE = "".join(f"line {i} uses values\n" if i % 4 == 0 else f"line {i}\n" for i in range(30))
AFTER = (BEFORE.replace("line 0 uses values", "line 0 uses items")
         .replace("line 8 uses values\n", "line 8 uses items\nline 8b\n")
         .replace("line 13\n", "").replace("line 20 uses values", "line 20 uses items"))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def test_hunks_replayed_one_by_one_give_the_commit(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "m.py").write_text(BEFORE)
    git(tmp_path, "add", "m.py")
    git(tmp_path, "commit", "-qm", "before")
    (tmp_path / "m.py").write_text(AFTER)
    git(tmp_path, "commit", "-qam", "after")
    [seq] = bench.edit_sequences(tmp_path, commits=5, max_hunks=6, max_hunk_lines=4)
    assert seq.before == BEFORE and len(seq.hunks) == 4
    lines, delta, texts = BEFORE.rstrip("\n").split("\n"), 0, []
    for hunk in seq.hunks:
        _, delta = bench.apply_hunk(lines, hunk, delta)
        texts.append(bench.text_of(lines))
    assert texts[-1] == AFTER
    assert texts[0] == BEFORE.replace("line 0 uses values", "line 0 uses items")


def test_a_result_replaces_its_whole_lines():
    result = {"range": {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 0}},
              "newText": "b = 2\n", "jump": {"line": 1, "character": 4}}
    assert bench.apply_result("a = 1\nb = 1\nc = 1\n", result) == "a = 1\nb = 2\nc = 1\n"
