"""Settings: an invalid value is reported and changes nothing else."""
from __future__ import annotations

import dataclasses

import pytest

from ditto.lsp.settings import _CHOICES, _LIMITS, Settings, parse_settings
from lsp_helpers import INIT_OPTIONS, RawServer


def non_default(field: dataclasses.Field):
    """A valid value for a setting that differs from its default."""
    if field.name in _CHOICES:
        return next(c for c in _CHOICES[field.name] if c != field.default)
    if field.name in _LIMITS:
        return _LIMITS[field.name][0] + 1
    if isinstance(field.default, bool):
        return not field.default
    assert field.name == "model", f"no test value for {field.name}"
    return "other.gguf"


def test_an_invalid_setting_keeps_its_current_value_and_the_others_apply():
    current = Settings(n_seq=2, max_tokens=8)
    new, errors = parse_settings({"nSeq": "many", "maxTokens": -4, "drafter": "none"}, current)
    assert (new.n_seq, new.max_tokens, new.drafter) == (2, 8, "none")
    assert len(errors) == 2
    assert "nSeq" in errors[0] and "keeping 2" in errors[0]
    assert "maxTokens" in errors[1] and "keeping 8" in errors[1]


@pytest.mark.parametrize("invalid", [[1, 2], {"an": "object"}, "not a valid value", -1, 1.5, 10**9])
def test_every_setting_keeps_its_value_when_the_new_one_is_invalid(invalid):
    fields = dataclasses.fields(Settings)
    current = Settings(**{f.name: non_default(f) for f in fields})
    for f in fields:
        new, errors = parse_settings({f.name: invalid}, current)
        if errors:
            assert new == current, f"{f.name}={invalid!r} changed the settings"
            assert f.name in errors[0] and "keeping" in errors[0]
        else:   # a valid value for this setting (e.g. a model path string)
            assert new == dataclasses.replace(current, **{f.name: invalid})


@pytest.mark.slow
def test_invalid_settings_from_the_editor_do_not_reload_the_model_with_defaults():
    server = RawServer()
    try:
        server.initialize(INIT_OPTIONS)          # nSeq 3, maxTokens 8
        server.notify("workspace/didChangeConfiguration", {"settings": {"ditto": {"nSeq": "many", "maxTokens": -4}}})
        status = server.call("workspace/executeCommand", {"command": "ditto.status"})
        assert status["model"]["n_seq"] == INIT_OPTIONS["nSeq"]
        assert status["server"]["settings"]["max_tokens"] == INIT_OPTIONS["maxTokens"]
        warnings = [n["params"]["message"] for n in server.notifications if n["method"] == "window/showMessage"]
        assert any("nSeq" in w for w in warnings) and any("maxTokens" in w for w in warnings)
    finally:
        server.close()
