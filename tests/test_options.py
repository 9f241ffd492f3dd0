"""Names and defaults shared by the CLI, the server's settings and the editor
clients (engine/options.py) agree with the code that owns them."""
from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from ditto import _native
from ditto.engine.options import (DEFAULT_CTX, DEFAULT_KV_TYPE, DEFAULT_PRECISION, DRAFTER_NAMES, KV_TYPE_HELP, KV_TYPES,
                                  PRECISION_HELP, PRECISIONS, VERSION, resolve_kv_type)
from ditto.lsp.settings import Settings, check_setting, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def package_json() -> dict:
    return json.loads((ROOT / "editor-configs" / "vscode" / "package.json").read_text())


def test_one_version_everywhere():
    tomllib = pytest.importorskip("tomllib")
    from ditto.lsp.server import create_server

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == VERSION
    meson = re.search(r"project\([^)]*?\bversion:\s*'([^']+)'", (ROOT / "meson.build").read_text())
    assert meson and meson.group(1) == VERSION
    assert package_json()["version"] == VERSION
    assert create_server().version == VERSION
    assert importlib.metadata.version("ditto") == VERSION   # as installed


def test_precisions_are_the_kernels_names():
    assert PRECISIONS == tuple(_native.PRECISIONS)
    assert DEFAULT_PRECISION in PRECISIONS
    assert tuple(PRECISION_HELP) == PRECISIONS


def test_settings_accept_exactly_the_engines_names():
    for name in PRECISIONS:
        assert check_setting("precision", name) == name
    for name in DRAFTER_NAMES:
        assert check_setting("rewrite_drafter", name) == name
    for setting in ("precision", "rewrite_drafter", "drafter"):
        with pytest.raises(ValueError, match="must be one of"):
            check_setting(setting, "guess")
    defaults = Settings()
    assert (defaults.ctx, defaults.precision) == (DEFAULT_CTX, DEFAULT_PRECISION)


def test_settings_types_come_from_the_annotations():
    # Optional settings take null; the others refuse it, whatever their default.
    new, errors = parse_settings({"model": None, "threads": None, "rewriteMaxTokens": None})
    assert not errors and (new.model, new.threads, new.rewrite_max_tokens) == (None, None, None)
    for name in ("ctx", "precision", "prefetch", "drafter"):
        with pytest.raises(ValueError, match="must not be null"):
            check_setting(name, None)
    with pytest.raises(ValueError, match="must be a string"):
        check_setting("model", 3)


def test_kv_types_are_the_kernels_names():
    assert KV_TYPES == ("auto",) + tuple(_native.KV_TYPES)
    assert DEFAULT_KV_TYPE in KV_TYPES and tuple(KV_TYPE_HELP) == KV_TYPES
    for name in KV_TYPES:
        assert check_setting("kv_type", name) == name
    with pytest.raises(ValueError, match="must be one of"):
        check_setting("kv_type", "f8")
    assert [resolve_kv_type("auto", p) for p in ("exact", "fast", "q16")] == ["f16", "bf16", "f16"]
    assert resolve_kv_type("f32", "fast") == "f32"
    spec = package_json()["contributes"]["configuration"]["properties"]["ditto.kvType"]
    assert spec["enum"] == list(KV_TYPES)
    assert spec["enumDescriptions"] == [KV_TYPE_HELP[k] for k in KV_TYPES]


@pytest.mark.parametrize("precision,kv_type,want", [("fast", "auto", "bf16"), ("q16", "auto", "f16"),
                                                     ("fast", "f16", "f16"), ("exact", "bf16", "bf16")])
def test_llm_opens_the_kv_type_auto_stands_for(default_model_path, precision, kv_type, want):
    from ditto.engine.llm import LLM

    llm = LLM(default_model_path, n_ctx=256, n_threads=1, precision=precision, kv_type=kv_type)
    assert (llm.ctx.precision, llm.ctx.kv_type) == (precision, want)


def test_vscode_describes_each_precision_as_the_engine_does():
    spec = package_json()["contributes"]["configuration"]["properties"]["ditto.precision"]
    assert spec["enum"] == list(PRECISIONS)
    assert spec["enumDescriptions"] == [PRECISION_HELP[p] for p in PRECISIONS]
