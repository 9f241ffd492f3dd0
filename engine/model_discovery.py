"""GGUF models already on the user's disk: ditto's own store, the Hugging Face
hub cache, Ollama's store and LM Studio's models folder.

Each found file gets a name that `--model` and the `model` setting accept:

  ditto:smollm2-135m                       a model `ditto model pull` fetched
  hf:Qwen/Qwen2.5-Coder-1.5B-GGUF/x.gguf   a file of a hub repository's snapshot
  ollama:qwen2.5-coder:1.5b                an Ollama model (its manifest names the blob)
  lmstudio:lmstudio-community/repo/x.gguf  a file under LM Studio's models folder

Locations follow each tool's own environment variables (HF_HUB_CACHE /
HF_HOME, OLLAMA_MODELS, LMSTUDIO_MODELS_DIR) and default folders. Nothing here
opens more than a file's header.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import model_store

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_HOST = "registry.ollama.ai"
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class FoundModel:
    name: str          # what --model accepts, e.g. "ollama:qwen2.5-coder:1.5b"
    source: str        # ditto | huggingface | ollama | lmstudio
    path: Path

    @property
    def short_name(self) -> str:
        """The name without its source prefix."""
        return self.name.split(":", 1)[1]


@dataclass(frozen=True)
class ModelReport:
    """What ditto makes of a found file."""
    model: FoundModel
    size: int
    architecture: str | None
    quant: str | None
    runnable: bool
    reason: str        # why not, when not runnable

    def as_dict(self) -> dict:
        return {"name": self.model.name, "source": self.model.source, "path": str(self.model.path),
                "size": self.size, "architecture": self.architecture, "quant": self.quant,
                "runnable": self.runnable, "reason": self.reason}


def discover(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[FoundModel]:
    """Every GGUF found in the known places, sorted by name."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    found = [*_ditto_store(), *_huggingface(env, home), *_ollama(env, home), *_lmstudio(env, home)]
    return sorted(found, key=lambda m: m.name)


def find(name: str, env: Mapping[str, str] | None = None, home: Path | None = None) -> FoundModel | None:
    """The found model called `name` (with or without its source prefix).
    Raises model_store.ModelNotFound when a short name fits several."""
    models = discover(env, home)
    exact = [m for m in models if m.name == name]
    if exact:
        return exact[0]
    short = [m for m in models if m.short_name == name]
    if len(short) > 1:
        raise model_store.ModelNotFound(f"{name!r} names several models: "
                                        f"{', '.join(m.name for m in short)}; use the full name")
    return short[0] if short else None


def report(model: FoundModel) -> ModelReport:
    """Architecture, quantization and whether ditto can run the file (and why not)."""
    from .gguf_model import GGUFError, load_model_file
    from .gguf_reader import read_gguf

    try:
        size = model.path.stat().st_size
    except OSError as e:
        return ModelReport(model, 0, None, None, False, f"cannot read: {e.strerror}")
    try:
        header = read_gguf(model.path)
    except GGUFError as e:
        return ModelReport(model, size, None, None, False, str(e))
    arch_field = header.fields.get("general.architecture")
    arch = arch_field.value.decode("utf-8", "replace") if arch_field and isinstance(arch_field.value, bytes) else None
    quant = _quant_name(header)
    try:
        load_model_file(model.path)
    except GGUFError as e:
        return ModelReport(model, size, arch, quant, False, str(e))
    return ModelReport(model, size, arch, quant, True, "")


def _quant_name(header) -> str | None:
    """general.file_type's name (Q4_K_M, ...), else the type holding the most bytes."""
    from gguf import GGMLQuantizationType, LlamaFileType

    field = header.fields.get("general.file_type")
    if field is not None and isinstance(field.value, int):
        try:
            return LlamaFileType(field.value).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    by_type: Counter[int] = Counter()
    for t in header.tensors.values():
        by_type[t.type] += t.nbytes
    if not by_type:
        return None
    return GGMLQuantizationType(by_type.most_common(1)[0][0]).name


# ---- the places ---------------------------------------------------------------------

def _ggufs(folder: Path) -> list[Path]:
    """*.gguf files below folder (following the hub's snapshot symlinks), sorted."""
    if not folder.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(".gguf")]
    return out


def _ditto_store() -> list[FoundModel]:
    names = {entry.filename: entry.name for entry in model_store.CATALOG.values()}
    return [FoundModel(f"ditto:{names.get(p.name, p.name)}", "ditto", p)
            for p in _ggufs(model_store.models_dir()) if p.is_file()]


def _hub_cache(env: Mapping[str, str], home: Path) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    return cache / "huggingface" / "hub"


def _huggingface(env: Mapping[str, str], home: Path) -> list[FoundModel]:
    """models--ORG--REPO/snapshots/REV/FILE: the revision refs/main names, else every revision."""
    out = []
    hub = _hub_cache(env, home)
    if not hub.is_dir():
        return out
    for repo_dir in sorted(hub.glob("models--*")):
        repo = repo_dir.name[len("models--"):].replace("--", "/")
        snapshots = repo_dir / "snapshots"
        main = _read_small(repo_dir / "refs" / "main")
        revisions = [snapshots / main.strip()] if main and (snapshots / main.strip()).is_dir() else \
            sorted(p for p in snapshots.glob("*") if p.is_dir())
        seen: set[str] = set()
        for rev in revisions:
            for f in _ggufs(rev):
                rel = f.relative_to(rev).as_posix()
                if rel not in seen and f.is_file():   # is_file follows the link into blobs/
                    seen.add(rel)
                    out.append(FoundModel(f"hf:{repo}/{rel}", "huggingface", f))
    return out


def _ollama(env: Mapping[str, str], home: Path) -> list[FoundModel]:
    """manifests/HOST/NAMESPACE/MODEL/TAG (JSON) -> the model layer's blob."""
    root = Path(env["OLLAMA_MODELS"]) if env.get("OLLAMA_MODELS") else home / ".ollama" / "models"
    manifests = root / "manifests"
    out = []
    if not manifests.is_dir():
        return out
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        blob = _ollama_blob(root, manifest)
        if blob is None:
            continue
        name = f"{model}:{tag}" if (host, namespace) == (OLLAMA_DEFAULT_HOST, "library") else \
            f"{namespace}/{model}:{tag}" if host == OLLAMA_DEFAULT_HOST else f"{host}/{namespace}/{model}:{tag}"
        out.append(FoundModel(f"ollama:{name}", "ollama", blob))
    return out


def _ollama_blob(root: Path, manifest: Path) -> Path | None:
    text = _read_small(manifest)
    try:
        layers = json.loads(text or "").get("layers", [])
    except (ValueError, AttributeError):
        return None
    for layer in layers if isinstance(layers, list) else []:
        digest = layer.get("digest", "") if isinstance(layer, dict) else ""
        if layer.get("mediaType") == OLLAMA_MODEL_LAYER and digest.startswith("sha256:"):
            hexdigest = digest.split(":", 1)[1]
            if len(hexdigest) == 64 and all(c in "0123456789abcdef" for c in hexdigest):
                blob = root / "blobs" / f"sha256-{hexdigest}"
                return blob if blob.is_file() else None
    return None


def _lmstudio(env: Mapping[str, str], home: Path) -> list[FoundModel]:
    """PUBLISHER/REPO/FILE.gguf under LM Studio's models folder (new and old default places)."""
    roots = [Path(env["LMSTUDIO_MODELS_DIR"])] if env.get("LMSTUDIO_MODELS_DIR") else \
        [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    out = []
    for root in roots:
        out += [FoundModel(f"lmstudio:{f.relative_to(root).as_posix()}", "lmstudio", f)
                for f in _ggufs(root) if f.is_file()]
    return out


def _read_small(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_MANIFEST_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
