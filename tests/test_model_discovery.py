"""`ditto model list` and --model NAME: GGUFs in fake Hugging Face, Ollama, LM
Studio and ditto folders, laid out as each tool lays them out."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ditto.engine import model_discovery as md
from ditto.engine import model_store as ms

HOSTILE_DIGEST = "sha256:../../../../etc/passwd"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty home with ditto's cache inside; the tools' variables unset."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DITTO_CACHE_DIR", str(home / ".cache" / "ditto"))
    for var in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "OLLAMA_MODELS", "LMSTUDIO_MODELS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def tiny(tiny_model_path) -> Path:
    return Path(tiny_model_path("llama"))


def _hf_snapshot(hub: Path, repo: str, rev: str, name: str, src: Path) -> Path:
    """As huggingface_hub stores a file: a blob, and a snapshot symlink to it."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    data = src.read_bytes()
    blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo_dir / "snapshots" / rev / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(blob)
    return link


def _ollama_model(root: Path, host: str, namespace: str, model: str, tag: str, src: Path | None,
                  digest: str | None = None) -> None:
    data = src.read_bytes() if src else b""
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    if src:
        blob = root / "blobs" / digest.replace(":", "-")
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
    manifest = root / "manifests" / host / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64},
        {"mediaType": md.OLLAMA_MODEL_LAYER, "digest": digest, "size": len(data)}]}))


def test_each_tool_layout_is_found(home, tiny):
    hub = home / ".cache" / "huggingface" / "hub"
    _hf_snapshot(hub, "org/Tiny-GGUF", "rev1", "tiny-q4_1.gguf", tiny)
    (hub / "models--org--Tiny-GGUF" / "refs").mkdir()
    (hub / "models--org--Tiny-GGUF" / "refs" / "main").write_text("rev1")
    _hf_snapshot(hub, "org/Tiny-GGUF", "old", "stale.gguf", tiny)     # not what refs/main names
    ollama = home / ".ollama" / "models"
    _ollama_model(ollama, "registry.ollama.ai", "library", "tiny", "latest", tiny)
    _ollama_model(ollama, "registry.ollama.ai", "someone", "tiny", "q4", tiny)
    lm = home / ".lmstudio" / "models" / "pub" / "repo"
    lm.mkdir(parents=True)
    shutil.copy(tiny, lm / "tiny.gguf")
    ms.models_dir().mkdir(parents=True)
    shutil.copy(tiny, ms.default_model_path())

    names = [m.name for m in md.discover()]
    assert names == ["ditto:smollm2-135m", "hf:org/Tiny-GGUF/tiny-q4_1.gguf", "lmstudio:pub/repo/tiny.gguf",
                     "ollama:someone/tiny:q4", "ollama:tiny:latest"]


def test_tool_environment_variables_move_the_folders(home, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("LMSTUDIO_MODELS_DIR", str(tmp_path / "lms"))
    _hf_snapshot(tmp_path / "hf" / "hub", "a/b", "r", "m.gguf", tiny)
    _ollama_model(tmp_path / "ollama", "example.com", "team", "m", "v1", tiny)
    (tmp_path / "lms" / "p" / "r").mkdir(parents=True)
    shutil.copy(tiny, tmp_path / "lms" / "p" / "r" / "m.gguf")
    assert [m.name for m in md.discover()] == ["hf:a/b/m.gguf", "lmstudio:p/r/m.gguf",
                                               "ollama:example.com/team/m:v1"]


def test_broken_ollama_manifests_are_skipped(home, tiny):
    root = home / ".ollama" / "models"
    _ollama_model(root, "registry.ollama.ai", "library", "gone", "latest", None)        # blob missing
    _ollama_model(root, "registry.ollama.ai", "library", "evil", "latest", None, digest=HOSTILE_DIGEST)
    bad = root / "manifests" / "registry.ollama.ai" / "library" / "junk" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("[not json")
    assert md.discover() == []


def test_report_says_what_runs_and_why_not(home, tiny, tmp_path):
    good = md.report(md.FoundModel("lmstudio:p/r/tiny.gguf", "lmstudio", tiny))
    assert good.runnable and good.architecture == "llama" and good.quant and good.reason == ""
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny.read_bytes()[:5000])
    bad = md.report(md.FoundModel("lmstudio:p/r/cut.gguf", "lmstudio", truncated))
    assert not bad.runnable and "truncated" in bad.reason


def test_model_option_accepts_found_names(home, tiny):
    root = home / ".ollama" / "models"
    _ollama_model(root, "registry.ollama.ai", "library", "tiny", "latest", tiny)
    _ollama_model(root, "registry.ollama.ai", "someone", "tiny", "latest", tiny)
    blob = ms.resolve_model("ollama:tiny:latest")
    assert blob.read_bytes() == tiny.read_bytes() and blob.parent.name == "blobs"
    assert ms.resolve_model("tiny:latest") == blob           # the short name, when only one model has it
    with pytest.raises(ms.ModelNotFound, match="model list"):
        ms.resolve_model("no-such-model")
    assert ms.resolve_model(str(tiny)) == tiny               # a path still wins


def test_ambiguous_short_name_is_refused(home, tiny):
    lm = home / ".lmstudio" / "models"
    for sub in ("a", "b"):
        (lm / sub).mkdir(parents=True)
    shutil.copy(tiny, lm / "a" / "m.gguf")
    hub = home / ".cache" / "huggingface" / "hub"
    _hf_snapshot(hub, "x/y", "r", "m.gguf", tiny)
    (lm / "x" / "y").mkdir(parents=True)
    shutil.copy(tiny, lm / "x" / "y" / "m.gguf")
    with pytest.raises(ms.ModelNotFound, match="several models"):
        ms.resolve_model("x/y/m.gguf")


def test_catalog_names_resolve_to_pulled_files(home):
    with pytest.raises(ms.ModelNotFound, match="ditto model pull gemma3-270m"):
        ms.resolve_model("gemma3-270m")


def test_model_list_command(home, tiny):
    lm = home / ".lmstudio" / "models" / "p" / "r"
    lm.mkdir(parents=True)
    shutil.copy(tiny, lm / "tiny.gguf")
    res = subprocess.run([sys.executable, "-m", "ditto.lsp.cli", "model", "list", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ["lmstudio:p/r/tiny.gguf"]
    assert rows[0]["runnable"] and rows[0]["architecture"] == "llama"
    plain = subprocess.run([sys.executable, "-m", "ditto.lsp.cli", "model", "list"],
                           capture_output=True, text=True, timeout=120)
    assert "lmstudio:p/r/tiny.gguf" in plain.stdout and "llama" in plain.stdout
