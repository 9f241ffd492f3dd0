"""A rewrite gives every file back byte-exact except where the answer changed
it, or refuses it with a reason: line endings and BOM kept, code fences in
the file do not end the answer, bytes the model cannot encode refused,
read-only files left alone, a resumed run never applies an instruction
twice, only the run's own temporaries removed, and the journal never
followed through a link nor trusted when malformed.

Most tests are about plumbing, so the model's answer is scripted (a
stand-in decoder that emits the tokens of a chosen answer, then end of
turn) on the real tokenizer; the data-safety test at the end runs the real
CLI with the real model.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ditto.engine import commands
from ditto.engine.batch import BatchRewrite, Committer
from ditto.engine.journal import Journal
from ditto.lsp import cli

INSTRUCTION = "Make the change."


@pytest.fixture(scope="module")
def llm(default_model_path):
    from ditto.engine.llm import LLM

    return LLM(default_model_path, n_ctx=1024, n_seq=1)


class ScriptedDecoder:
    """Stands in for the model: each request 'generates' the tokens of
    answer(file text as the prompt shows it), then end of turn."""

    def __init__(self, llm, answer, during=lambda: None) -> None:
        self.llm, self.answer, self.during = llm, answer, during

    def run(self, requests, should_stop=lambda: False, *, prefill_chunk=None, between=lambda: None) -> None:
        """Decoder.run's contract: every request ends, and between() may add more."""
        tok = self.llm.tokenizer
        while requests:
            for req in requests:
                shown = re.search(r"(`{3,})\w*\n(.*?)\n\1\n", tok.decode(req.prompt), re.S).group(2) + "\n"
                self.during()
                req._emit(tok.encode(self.answer(shown)) + [tok.eos_id])
            requests = list(between() or ())


def run_scripted(llm, files, answer, *, committer=None, resume=False, during=lambda: None):
    real = llm.decoder
    llm.decoder = ScriptedDecoder(llm, answer, during)
    try:
        batch = BatchRewrite(llm, INSTRUCTION, committer=committer or Committer(True), resume=resume)
        return batch.run([Path(f) for f in files])
    finally:
        llm.decoder = real


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry below root: file bytes, or a symlink's target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = ("->" + os.readlink(p)) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return out


# ---- 1. line endings ------------------------------------------------------------------

@pytest.mark.slow
def test_crlf_mixed_and_bom_files_keep_their_line_endings(llm, tmp_path):
    crlf = tmp_path / "crlf.py"
    crlf.write_bytes(b"a = 1\r\nb = 2\r\n")
    mixed = tmp_path / "mixed.py"
    mixed.write_bytes(b"a = 1\r\nb = 2\nc = 3\r\n")
    bom = tmp_path / "bom.py"
    bom.write_bytes("\ufeffa = 1\r\nb = 2\r\n".encode())
    answers = {"a = 1\nb = 2\n": "a = 1\nb = 20\nd = 4\n", "a = 1\nb = 2\nc = 3\n": "a = 1\nb = 20\nc = 3\nd = 4\n"}
    results = run_scripted(llm, [crlf, mixed, bom], lambda shown: answers[shown])
    assert [str(r.status) for r in results] == ["written"] * 3, [r.message for r in results]
    assert crlf.read_bytes() == b"a = 1\r\nb = 20\r\nd = 4\r\n"
    # kept lines keep their own ending; a changed line takes the one it replaces, a new one its neighbour's
    assert mixed.read_bytes() == b"a = 1\r\nb = 20\nc = 3\r\nd = 4\r\n"
    assert bom.read_bytes() == "\ufeffa = 1\r\nb = 20\r\nd = 4\r\n".encode()


@pytest.mark.slow
def test_switch_between_lf_and_crlf_during_the_run_is_a_conflict(llm, tmp_path):
    f = tmp_path / "a.py"
    f.write_bytes(b"a = 1\nb = 2\n")
    results = run_scripted(llm, [f], lambda shown: "a = 10\nb = 2\n",
                           during=lambda: f.write_bytes(b"a = 1\r\nb = 2\r\n"))
    assert str(results[0].status) == "conflict"
    assert f.read_bytes() == b"a = 1\r\nb = 2\r\n"


@pytest.mark.slow
def test_tokenize_and_prompt_file_keep_carriage_returns(default_model_path, tmp_path):
    from ditto.engine.gguf_model import load_model_file
    from ditto.engine.tokenizer import Tokenizer

    f = tmp_path / "crlf.txt"
    f.write_bytes(b"x = 1\r\ny = 2\r\n")
    assert commands.read_text_arg(None, str(f)) == "x = 1\r\ny = 2\r\n"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["tokenize", "--ids", str(f), "--model", default_model_path]) == 0
    tok = Tokenizer(load_model_file(default_model_path).tokenizer)
    assert json.loads(out.getvalue()) == tok.encode("x = 1\r\ny = 2\r\n")


line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.tuples(line_text, st.sampled_from(["\n", "\r\n"])), max_size=12),
       last=line_text, bom=st.booleans(), edits=st.lists(st.tuples(st.integers(0, 12), line_text), max_size=4))
def test_line_endings_rule_restores_every_unchanged_line(lines, last, bom, edits):
    """The rule, for any text: the unchanged answer gives the text back byte
    for byte; any answer comes back with only the text's own endings, and
    with its line endings stripped it is the answer."""
    from ditto.engine.source_text import SourceText

    text = ("\ufeff" if bom else "") + "".join(a + e for a, e in lines) + last
    src = SourceText.from_str(text)
    assert src.original() == text
    answer_lines = src.text.split("\n")
    for at, new in edits:
        answer_lines.insert(min(at, len(answer_lines)), new)
    answer = "\n".join(answer_lines)
    restored = src.restore(answer)
    assert restored.removeprefix("\ufeff").replace("\r\n", "\n") == answer
    endings = {e for _, e in lines}
    if endings == {"\r\n"}:
        assert restored.count("\n") == restored.count("\r\n")
    if endings <= {"\n"}:
        assert "\r" not in restored


def test_lone_carriage_return_and_bad_utf8_are_refused_with_their_line():
    from ditto.engine.source_text import SourceText, UnsafeText

    with pytest.raises(UnsafeText, match="line 2 holds a carriage return"):
        SourceText.from_str("a\nb\rc\n")
    with pytest.raises(UnsafeText, match="byte 0xFF on line 3"):
        SourceText.from_bytes(b"a\nb\n\xff\n")


# ---- 2. code fences in the file -----------------------------------------------------------

MARKDOWN = "# Notes\n\nTeh example:\n\n```python\nprint(1)\n```\n\nAnd ````four```` too.\n\nThe end.\n"


@pytest.mark.slow
def test_a_file_with_code_fences_comes_back_whole(llm, tmp_path):
    f = tmp_path / "README.md"
    f.write_text(MARKDOWN)
    fixed = MARKDOWN.replace("Teh", "The")
    results = run_scripted(llm, [f], lambda shown: fixed)
    assert str(results[0].status) == "written", results[0].message
    assert f.read_text() == fixed


@pytest.mark.slow
def test_an_answer_that_runs_on_into_the_prompt_is_refused(llm, tmp_path):
    """A small model that does not close the longer fence echoes the prompt's
    last words, then ends its turn: that is not the file."""
    f = tmp_path / "README.md"
    f.write_text(MARKDOWN)
    echo = MARKDOWN + "\n" + INSTRUCTION + "\nAnswer with the complete updated file in a single code block.\n"
    results = run_scripted(llm, [f], lambda shown: echo)
    assert str(results[0].status) == "failed" and "prompt" in results[0].message
    assert f.read_text() == MARKDOWN


def test_only_the_answers_own_fence_closes_it():
    """The rule: the fence is longer than every backtick run of the file, and
    the answer ends only at a line that is exactly that fence."""
    from ditto.engine.rewrite import RewriteJob

    job = RewriteJob(source=MARKDOWN, instruction=INSTRUCTION)
    assert job.fence == "`" * 5
    assert not job.closes_answer(MARKDOWN)            # the file's own fences do not close it
    assert not job.closes_answer("``````\nmore\n")    # a longer run is not the fence
    assert not job.closes_answer("`````")             # not yet: the next character decides
    assert job.closes_answer("\n")


@given(st.text(st.sampled_from("`a\n"), max_size=40))
def test_no_line_of_a_file_can_close_its_answer(text):
    from ditto.engine.rewrite import RewriteJob

    job = RewriteJob(source=text, instruction=INSTRUCTION)
    assert not job.closes_answer("x" + text + "x")


# ---- 3. bytes the model cannot encode -------------------------------------------------------

@pytest.mark.slow
def test_bytes_the_model_cannot_encode_are_refused(llm, tmp_path):
    f = tmp_path / "ctl.py"
    data = b"a = 1\nsep = '|\x1d|'\n"
    f.write_bytes(data)
    results = run_scripted(llm, [f], lambda shown: shown.replace("1", "2"))
    assert str(results[0].status) == "failed"
    assert "0x1D" in results[0].message and "line 2" in results[0].message
    assert f.read_bytes() == data


@pytest.mark.slow
def test_completion_prompt_with_unencodable_bytes_is_refused(llm):
    from ditto.lsp.prompt import build_prompt

    for text, byte in [("a = 1\nsep = '|\x04|'\nb = ", "0x04"), ("a = 1\nc = '\U00050000'\nb = ", "0xF1")]:
        with pytest.raises(ValueError, match=f"{byte}.*line 2"):   # a control byte, a UTF-8 lead byte
            build_prompt(llm.tokenizer, text, len(text), prompt_tokens=256, suffix_tokens=16, style="auto")


# ---- 4. read-only files ----------------------------------------------------------------

@pytest.mark.slow
def test_read_only_file_is_refused_unless_allowed_and_keeps_mode_and_owner(llm, tmp_path):
    f = tmp_path / "ro.py"
    f.write_bytes(b"a = 1\n")
    f.chmod(0o444)
    results = run_scripted(llm, [f], lambda shown: "a = 2\n")
    assert str(results[0].status) == "failed" and "read-only" in results[0].message
    assert f.read_bytes() == b"a = 1\n"
    if os.geteuid() == 0:
        os.chown(f, 4321, 4321)    # as root, check that the owner is kept too
    before = f.stat()
    results = run_scripted(llm, [f], lambda shown: "a = 2\n", committer=Committer(True, allow_read_only=True))
    assert str(results[0].status) == "written"
    after = f.stat()
    assert f.read_bytes() == b"a = 2\n"
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == \
        (stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid)


# ---- 5. resume after an interrupt ------------------------------------------------------------

class Killed(BaseException):
    """The process dies here."""


@pytest.mark.slow
def test_resume_after_interrupt_between_rename_and_journal_write_does_not_apply_twice(llm, tmp_path, monkeypatch):
    f = tmp_path / "a.py"
    f.write_bytes(b"a = 1\n")
    append_line = lambda shown: shown + "b = 2\n"  # noqa: E731  applying twice would add two lines
    record = Journal.record

    def killed_after_rename(self, path, status, *args, **kw):
        if status == "written":
            raise Killed
        return record(self, path, status, *args, **kw)

    monkeypatch.setattr(Journal, "record", killed_after_rename)
    with pytest.raises(Killed):
        run_scripted(llm, [f], append_line, committer=Committer(True, Journal(tmp_path, INSTRUCTION)))
    assert f.read_bytes() == b"a = 1\nb = 2\n"      # renamed, not journalled as written
    monkeypatch.setattr(Journal, "record", record)
    results = run_scripted(llm, [f], append_line, committer=Committer(True, Journal(tmp_path, INSTRUCTION)),
                           resume=True)
    assert str(results[0].status) == "resumed"
    assert f.read_bytes() == b"a = 1\nb = 2\n"


# ---- 6. stale temporaries ----------------------------------------------------------------------

def test_only_the_run_files_own_stale_temporaries_are_removed(tiny_model_path, tmp_path):
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "b.py").write_text("b = 1\n")
    (tmp_path / "sub").mkdir()
    own = tmp_path / ".a.py.k3j5h2g1.ditto-tmp"
    others = [tmp_path / ".b.py.abcdefgh.ditto-tmp", tmp_path / "sub" / ".c.py.abcdefgh.ditto-tmp",
              tmp_path / ".a.py.notours.ditto-tmp"]
    for p in [own, *others]:
        p.write_text("half-written")
    cli.main(["rewrite", str(tmp_path / "a.py"), "-i", INSTRUCTION, "--write", "-q", "--max-tokens", "2",
              "--model", tiny_model_path()])
    assert not own.exists()
    assert all(p.exists() for p in others)


# ---- 7. the journal --------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["journal", "folder"])
def test_journal_is_never_written_through_a_symlink(tiny_model_path, tmp_path, link, capsys):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (home / ".bashrc").write_text("export PATH=/usr/bin\n")
    (project / "a.py").write_text("a = 1\n")
    if link == "journal":
        (project / ".ditto").mkdir()
        (project / ".ditto" / "journal.jsonl").symlink_to(home / ".bashrc")
    else:
        (project / ".ditto").symlink_to(home, target_is_directory=True)
    before = snapshot(tmp_path)
    code = cli.main(["rewrite", str(project), "-i", INSTRUCTION, "--write", "-q", "--max-tokens", "2",
                     "--model", tiny_model_path()])
    assert code == 1
    assert "symlink" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_journal_link_is_not_followed_by_the_batch_path(llm, tmp_path):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (home / ".bashrc").write_text("export PATH=/usr/bin\n")
    (project / ".ditto").mkdir()
    (project / ".ditto" / "journal.jsonl").symlink_to(home / ".bashrc")
    (project / "a.py").write_text("a = 1\n")
    with contextlib.suppress(ValueError):
        run_scripted(llm, [project / "a.py"], lambda shown: "a = 2\n",
                     committer=Committer(True, Journal(project, INSTRUCTION)))
    assert (home / ".bashrc").read_text() == "export PATH=/usr/bin\n"


@pytest.mark.parametrize("content, complaint", [
    ("[]\n", "line 1 .* is not a journal entry"),
    ('{"instruction": "x", "path": "a.py", "status": "written"}\n', "no result_sha256"),
    ("not json\n{}\n", "line 1 .* is not JSON"),
])
def test_malformed_journal_is_refused_with_a_clear_message(tiny_model_path, tmp_path, capsys, content, complaint):
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / ".ditto").mkdir()
    (tmp_path / ".ditto" / "journal.jsonl").write_text(content)
    code = cli.main(["rewrite", str(tmp_path), "-i", INSTRUCTION, "--write", "--resume", "-q",
                     "--max-tokens", "2", "--model", tiny_model_path()])
    err = capsys.readouterr().err
    assert code == 1 and re.search(complaint, err), err
    assert (tmp_path / "a.py").read_text() == "a = 1\n"


def test_journal_folder_and_file_are_private(tmp_path):
    journal = Journal(tmp_path, INSTRUCTION)
    journal.record(tmp_path / "a.py", "written", b"a", b"b")
    assert stat.S_IMODE((tmp_path / ".ditto").stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((tmp_path / ".ditto" / "journal.jsonl").stat().st_mode) & 0o077 == 0


# ---- the whole CLI over a hostile tree, with the real model -----------------------------------

TREE = {
    "crlf.py": b"def add(a, b):\r\n    return a + b\r\n",
    "mixed.py": b"value = 10\r\nprint(value)\nprint(value * 2)\r\n",
    "README.md": MARKDOWN.encode(),
    "ctl.py": b"x = 1\nsep = '|\x1d|'\n",
    "readonly.py": b"value = 10\nprint(value)\n",
    "latin1.py": b"name = 'caf\xe9'\n",
    "empty.py": b"",
    "lone_cr.py": b"a = 1\rb = 2\n",
}


@pytest.mark.slow
def test_write_is_byte_exact_or_the_answer_over_a_hostile_tree(default_model_path, tmp_path):
    """ditto rewrite --write over CRLF, mixed-ending, Markdown-with-fences,
    control-byte, read-only, non-UTF-8, empty and symlinked files, with a
    symlinked .ditto: every file is unchanged or exactly the model's answer
    (from --json) in its own line endings, and nothing outside the tree
    changes."""
    tree, home = tmp_path / "tree", tmp_path / "home"
    tree.mkdir()
    home.mkdir()
    (home / ".bashrc").write_bytes(b"export PATH=/usr/bin\n")
    (home / "secret.py").write_bytes(b"value = 10\nprint(value)\n")
    for name, data in TREE.items():
        (tree / name).write_bytes(data)
    (tree / "readonly.py").chmod(0o444)
    (tree / "link.py").symlink_to(home / "secret.py")
    (tree / ".ditto").symlink_to(home, target_is_directory=True)
    (tree / "vendor").mkdir()
    (tree / "vendor" / ".ditto").symlink_to(home, target_is_directory=True)
    (tree / "vendor" / "lib.py").write_bytes(b"value = 10\r\nprint(value)\r\n")
    command = [sys.executable, "-m", "ditto.lsp.cli", "rewrite", str(tree), "-i",
               "Rename the variable value to amount and fix any typos.", "--write", "--json", "-q",
               "--model", default_model_path, "--max-tokens", "200"]

    before = snapshot(tmp_path)
    refused = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert refused.returncode == 1 and "symlink" in refused.stderr and "Traceback" not in refused.stderr
    assert snapshot(tmp_path) == before      # a linked .ditto: the run refuses before touching anything

    (tree / ".ditto").unlink()
    before = snapshot(tmp_path)
    res = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert "Traceback" not in res.stderr, res.stderr
    results = {os.path.relpath(r["file"], tmp_path): r for r in map(json.loads, res.stdout.splitlines())}
    after = snapshot(tmp_path)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(k in results or k.startswith("tree/.ditto") for k in changed), changed   # nothing else moved
    for name, r in results.items():
        now, old = after[name], before[name]
        if r["status"] == "written":
            assert now == r["output"].encode("utf-8"), name
            assert set(re.findall(rb"\r?\n", now)) <= set(re.findall(rb"\r?\n", old)), name   # its own endings
            assert now.replace(b"\r\n", b"\n").count(b"\r") == 0, name
        else:
            assert now == old, name
    assert results["tree/ctl.py"]["status"] == "failed" and "0x1D" in results["tree/ctl.py"]["error"]
    assert results["tree/readonly.py"]["status"] == "failed" and "read-only" in results["tree/readonly.py"]["error"]
    assert results["tree/lone_cr.py"]["status"] == "failed" and "carriage return" in results["tree/lone_cr.py"]["error"]
    assert not {"tree/latin1.py", "tree/empty.py", "tree/link.py"} & set(results)
    assert "skipped" in res.stderr and "not UTF-8" in res.stderr
    assert stat.S_IMODE((tree / ".ditto").lstat().st_mode) == 0o700
    assert any(r["status"] == "written" for r in results.values()), results   # the rule was exercised
