"""Typed settings with defaults, read from initializationOptions and
workspace/didChangeConfiguration.

Keys may be camelCase (`maxTokens`) or snake_case (`max_tokens`), at the top
level or under a "ditto" section. A value of the wrong type or out of range
is reported (the caller shows it with window/showMessage) and the setting
keeps its current value; the other settings are applied.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any

from ..engine.next_edit import FORMATS as NEXT_EDIT_FORMATS
from ..engine.options import DEFAULT_CTX, DEFAULT_KV_TYPE, DEFAULT_PRECISION, DRAFTER_NAMES, KV_TYPES, PRECISIONS

NO_DRAFTER = "none"                                 # speculation off
STYLES = ("auto", "single", "multi")
DRAFTERS = ("doc", NO_DRAFTER)                      # completions draft from the document's index only
REWRITE_DRAFTERS = (*DRAFTER_NAMES, NO_DRAFTER)


@dataclass(frozen=True)
class Settings:
    # model (changing these reloads the model)
    model: str | None = None            # GGUF path; None = the embedded default
    threads: int | None = None          # None = one per physical core
    ctx: int = DEFAULT_CTX              # context size per sequence
    n_seq: int = 4                      # sequence slots (documents kept hot in the KV cache)
    precision: str = DEFAULT_PRECISION  # one of the kernels' PRECISIONS
    kv_type: str = DEFAULT_KV_TYPE      # one of KV_TYPES: the KV cache's element type (auto: by precision)
    # completion
    max_tokens: int = 16                # tokens per completion
    time_budget_ms: int = 2000          # after this, return what exists
    prefill_budget_ms: int | None = None    # prompt evaluation a completion may wait for; None: a quarter of time_budget_ms
    completion_style: str = "auto"      # auto | single | multi
    prompt_tokens: int = 1536           # prefix budget (tokens before the cursor)
    suffix_tokens: int = 256            # text after the cursor (FIM models, drafter)
    extra_chunks: int = 4               # chunks of other files in the prompt (0 = off)
    chunk_lines: int = 32
    completion_cache: bool = True       # typing through a suggestion needs no model call
    prefetch: bool = True               # compute the next suggestion after one is shown
    # drafting
    drafter: str = "doc"                # doc | none
    draft_max: int = 16
    # rewrite
    rewrite_max_tokens: int | None = None   # None: 1.5x the file + 64
    rewrite_drafter: str = "auto"       # one of REWRITE_DRAFTERS
    # next-edit suggestions
    next_edit_format: str = "auto"      # one of engine.next_edit.FORMATS (auto: sweep when the model has <|file_sep|>)
    next_edit_time_budget_ms: int = 10_000
    # memory
    saved_sessions_mb: int = 1024       # RAM for sessions saved out of the KV cache

    MODEL_KEYS = ("model", "threads", "ctx", "n_seq", "precision", "kv_type")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


_LIMITS: dict[str, tuple[Any, Any]] = {
    "threads": (1, 256), "ctx": (256, 1 << 20), "n_seq": (2, 64), "max_tokens": (1, 4096),
    "time_budget_ms": (1, 600_000), "prefill_budget_ms": (1, 600_000),
    "prompt_tokens": (16, 1 << 20), "suffix_tokens": (0, 1 << 16),
    "extra_chunks": (0, 64), "chunk_lines": (1, 1000), "draft_max": (1, 256),
    "rewrite_max_tokens": (1, 1 << 20), "saved_sessions_mb": (0, 1 << 20),
    "next_edit_time_budget_ms": (1, 600_000),
}
_CHOICES = {"completion_style": STYLES, "precision": PRECISIONS, "kv_type": KV_TYPES, "drafter": DRAFTERS,
            "rewrite_drafter": REWRITE_DRAFTERS, "next_edit_format": NEXT_EDIT_FORMATS}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_TYPES = typing.get_type_hints(Settings)   # name -> the annotation, e.g. int | None


def check_setting(name: str, value: Any) -> Any:
    """The value if it is valid for the setting `name`, else raises ValueError saying why."""
    kinds = typing.get_args(_TYPES[name]) or (_TYPES[name],)
    if value is None:
        if type(None) in kinds:
            return None
        raise ValueError("must not be null")
    kind = next(k for k in kinds if k is not type(None))
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        lo, hi = _LIMITS.get(name, (None, None))
        if lo is not None and not lo <= value <= hi:
            raise ValueError(f"must be in [{lo}, {hi}]")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(f"must be one of {', '.join(_CHOICES[name])}")
    return value


def parse_settings(options: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a JSON object, plus one message per invalid or unknown key."""
    base = base or Settings()
    errors: list[str] = []
    if options is None:
        return base, errors
    if not isinstance(options, dict):
        return base, [f"ditto settings must be an object, got {type(options).__name__}"]
    if isinstance(options.get("ditto"), dict):
        options = options["ditto"]
    names = set(Settings.field_names())
    values: dict[str, Any] = {}
    for key, value in options.items():
        name = _snake(str(key))
        if name not in names:
            errors.append(f"unknown ditto setting {key!r} (ignored)")
            continue
        try:
            values[name] = check_setting(name, value)
        except ValueError as e:
            errors.append(f"invalid ditto setting {key}={value!r}: {e}; keeping {getattr(base, name)!r}")
    return dataclasses.replace(base, **values), errors
