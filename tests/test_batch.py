"""Batch rewrites on a copy of a real multi-file codebase (email/mime from
the Python standard library): dry runs change nothing, --write writes
exactly the answer of each file whose answer changes it, a run killed with
SIGKILL leaves every file old or new and --resume finishes the rest,
batched output equals single-file output, and paths outside the roots or
behind symlinks are refused. Where a test must see files written, the
model's answer is scripted (scripted_model.py: the real model, tokenizer and
decode loop, with the answer's tokens chosen to follow the rename); the
rest run the real default model as it answers."""
from __future__ import annotations

import email
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ditto.engine.files import select_files
from scripted_model import scripted_answer

MIME = Path(email.__file__).parent / "mime"
INSTRUCTION = "Rename the class MIMEBase to MimeBase."
FILES = ["base.py", "message.py", "nonmultipart.py", "text.py"]
MAX_TOKENS = "300"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def codebase(tmp_path):
    root = tmp_path / "mime"
    root.mkdir()
    for name in FILES:
        shutil.copy(MIME / name, root / name)
    return root


SCRIPTED_DITTO = str(Path(__file__).with_name("scripted_ditto.py"))


def ditto(*args, model, scripted=False, **kw):
    cmd = [sys.executable, *([SCRIPTED_DITTO] if scripted else ["-m", "ditto.lsp.cli"]), *args, "--model", model]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


def relative(result: dict, root: Path) -> str:
    return str(Path(result["file"]).relative_to(root.resolve()))


# ---- selection (no model) ---------------------------------------------------------

def test_symlinks_and_outside_paths_are_refused(tmp_path):
    root = tmp_path / "proj"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.py").write_text("x = 1\n")
    (root / "a.py").write_text("a = 1\n")
    (root / "link.py").symlink_to(outside / "secret.py")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    sel = select_files([str(root)])
    assert sel.files == [root / "a.py"]
    sel = select_files([str(root / "link.py")])
    assert sel.files == [] and "symlink" in sel.skipped[0][1]
    sel = select_files([str(root / "linkdir" / "secret.py")])
    assert sel.files == []


def test_gitignore_binary_oversized_and_temporaries_are_skipped(tmp_path):
    (tmp_path / ".gitignore").write_text("build/\n*.log\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_text("g = 1\n")
    (tmp_path / "run.log").write_text("log\n")
    (tmp_path / "img.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "big.py").write_text("x = 1\n" * 20000)
    (tmp_path / ".ok.py.abc.ditto-tmp").write_text("half")
    (tmp_path / "ok.py").write_text("ok = 1\n")
    sel = select_files([str(tmp_path)])
    assert [p.name for p in sel.files] == ["ok.py"]
    reasons = dict((Path(p).name, r) for p, r in sel.skipped)
    assert reasons["img.bin"] == "binary" and reasons["big.py"].startswith("too large")


def test_missing_path_is_reported(tmp_path):
    sel = select_files([str(tmp_path / "nope.py")])
    assert sel.files == [] and sel.skipped


# ---- with the model ---------------------------------------------------------------------

@pytest.mark.slow
def test_dry_run_prints_diffs_and_changes_nothing(codebase, default_model_path):
    before = snapshot(codebase)
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "-j", "4", model=default_model_path, scripted=True)
    assert snapshot(codebase) == before
    diffed = sorted(line.split("/")[-1] for line in res.stdout.splitlines() if line.startswith("--- a/"))
    assert diffed == ["base.py", "nonmultipart.py"], res.stdout[:2000]
    assert "+class MimeBase(message.Message):" in res.stdout.splitlines()
    assert "files in" in res.stderr


@pytest.mark.slow
def test_real_model_dry_run_changes_nothing(codebase, default_model_path):
    before = snapshot(codebase)
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "-j", "4", "--max-tokens", MAX_TOKENS,
                model=default_model_path)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert snapshot(codebase) == before


@pytest.mark.slow
def test_write_writes_exactly_the_answers_that_change_files(codebase, default_model_path):
    before = snapshot(codebase)
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "-j", "4", "--write", "--json",
                model=default_model_path, scripted=True)
    results = {relative(r, codebase): r for r in map(json.loads, res.stdout.splitlines())}
    assert set(results) == set(FILES), res.stderr[-2000:]
    for name in FILES:
        old = before[name].decode()
        expected = scripted_answer(old, INSTRUCTION)
        assert results[name]["status"] == ("written" if expected != old else "unchanged"), results[name]
        assert (codebase / name).read_text() == expected
    assert {r["status"] for r in results.values()} == {"written", "unchanged"}   # the test tells them apart
    assert not list(codebase.glob(".*.ditto-tmp"))


@pytest.mark.slow
def test_batched_output_equals_single_file_output(codebase, default_model_path):
    from ditto.engine.batch import BatchRewrite
    from ditto.engine.llm import LLM

    files = sorted(codebase.glob("*.py"))
    batched = BatchRewrite(LLM(default_model_path, n_seq=4), INSTRUCTION, max_tokens=120).run(files)
    single_llm = LLM(default_model_path, n_seq=1)
    for r in batched:
        alone = BatchRewrite(single_llm, INSTRUCTION, max_tokens=120).run([r.path])[0]
        assert alone.tokens == r.tokens, r.path
        assert alone.status == r.status


@pytest.mark.slow
def test_sigkill_leaves_files_old_or_new_and_resume_finishes(codebase, default_model_path):
    before = snapshot(codebase)
    args = ["rewrite", str(codebase), "-i", INSTRUCTION, "--write", "--json", "-j", "1"]
    proc = subprocess.Popen([sys.executable, SCRIPTED_DITTO, *args, "--model", default_model_path],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = json.loads(proc.stdout.readline())      # one file finished
    proc.send_signal(signal.SIGKILL)                # wherever the next one is
    proc.wait()
    after = snapshot(codebase)
    name = relative(first, codebase)
    for f, data in after.items():
        if f.startswith(".ditto/"):
            continue
        if f.endswith(".ditto-tmp"):
            continue  # an unrenamed temporary: the real file is intact (checked below)
        assert data == before[f] or (f == name and data.decode() == first.get("output")), f
    res = ditto(*args, "--resume", model=default_model_path, scripted=True)
    results = {relative(r, codebase): r for r in map(json.loads, res.stdout.splitlines())}
    assert set(results) == set(FILES)
    assert first["status"] in ("written", "unchanged")
    assert results[name]["status"] == "resumed"
    for f in FILES:     # every file ends as its answer, the killed run's file applied once
        assert (codebase / f).read_text() == scripted_answer(before[f].decode(), INSTRUCTION), f
    assert not list(codebase.glob(".*.ditto-tmp"))


@pytest.mark.slow
def test_ray_backend_matches_local_run(codebase, default_model_path):
    """Two actors on a local Ray instance (loopback): same outputs as a local
    run, and only the driver writes."""
    pytest.importorskip("ray")
    local = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "--json", "--max-tokens", "120",
                  model=default_model_path)
    on_ray = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "--json", "--max-tokens", "120",
                   "--ray", "local", "--actors", "2", model=default_model_path)
    assert on_ray.returncode == local.returncode, on_ray.stderr[-2000:]
    by_file = lambda out: {r["file"]: (r["status"], r.get("output")) for r in map(json.loads, out.splitlines())}  # noqa: E731
    assert by_file(on_ray.stdout) == by_file(local.stdout)
