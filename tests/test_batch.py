"""Batch rewrites on a copy of a real multi-file codebase (email/mime from
the Python standard library) with the real default model: dry runs change
nothing, --write changes exactly the files whose answer is complete, a run
killed with SIGKILL leaves every file old or new and --resume finishes the
rest, batched output equals single-file output, and paths outside the roots
or behind symlinks are refused."""
from __future__ import annotations

import email
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ditto.engine.files import select_files

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


def ditto(*args, model, **kw):
    cmd = [sys.executable, "-m", "ditto.lsp.cli", *args, "--model", model]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


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


# ---- with the real model -------------------------------------------------------------

@pytest.mark.slow
def test_dry_run_prints_diffs_and_changes_nothing(codebase, default_model_path):
    before = snapshot(codebase)
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "-j", "4", "--max-tokens", MAX_TOKENS,
                model=default_model_path)
    assert snapshot(codebase) == before
    assert res.stdout.startswith("--- a/") or res.stdout == ""
    assert "files in" in res.stderr


@pytest.mark.slow
def test_write_changes_exactly_the_complete_files(codebase, default_model_path):
    before = snapshot(codebase)
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "-j", "4", "--max-tokens", MAX_TOKENS,
                "--write", "--json", model=default_model_path)
    results = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(results) == len(FILES)
    for r in results:
        name = str(Path(r["file"]).relative_to(codebase.resolve()))
        now = (codebase / name).read_text()
        if r["status"] == "written":
            assert now == r["output"]
        else:
            assert r["status"] in ("failed", "unchanged")
            assert now.encode() == before[name]
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
    cmd = [sys.executable, "-m", "ditto.lsp.cli", "rewrite", str(codebase), "-i", INSTRUCTION,
           "--write", "--json", "-j", "1", "--max-tokens", MAX_TOKENS, "--model", default_model_path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = json.loads(proc.stdout.readline())      # one file finished
    time.sleep(0.5)                                   # the next one is mid-decode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = snapshot(codebase)
    name = str(Path(first["file"]).relative_to(codebase.resolve()))
    for f, data in after.items():
        if f.startswith(".ditto/"):
            continue
        if f.endswith(".ditto-tmp"):
            continue  # an unrenamed temporary: the real file is intact (checked below)
        assert data == before[f] or (f == name and data.decode() == first.get("output")), f
    res = ditto("rewrite", str(codebase), "-i", INSTRUCTION, "--write", "--json", "-j", "1",
                "--max-tokens", MAX_TOKENS, "--resume", model=default_model_path)
    results = {str(Path(r["file"]).relative_to(codebase.resolve())): r
               for r in map(json.loads, res.stdout.splitlines())}
    assert set(results) == set(FILES)
    if first["status"] in ("written", "unchanged"):
        assert results[name]["status"] == "resumed"
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
