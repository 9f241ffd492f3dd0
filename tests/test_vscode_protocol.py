"""The VS Code extension (editor-configs/vscode).

- Its package.json declares every server setting (lsp/settings.Settings)
  with the server's default, and nothing the server does not know.
- It type-checks (tsc --noEmit) and packages (@vscode/vsce package).
- Its protocol path, driven from Node with VS Code's own protocol stack
  (vscode-languageserver-protocol + vscode-jsonrpc; VS Code itself cannot be
  installed here): test/protocol.mjs starts `ditto serve` with the server
  options the extension computes (out/config.js), initializes with
  vscode-languageclient's capabilities, asks for inline completions, runs
  ditto.rewriteFile and answers workspace/applyEdit as VS Code does, and
  cancels a rewrite from the progress notification. test/next_edit.mjs
  does the same for ditto/nextEdit against a server whose model follows a
  script (tests/scripted_model.py), so the applied text is exact.

The npm parts are skipped when node or npm is missing; `npm ci` runs when
node_modules is missing (it needs the npm registry).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ditto.lsp.settings import Settings
from editor_clients import ditto_command, scripted_ditto_command

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "editor-configs" / "vscode"
FIXTURE = EXT / "test" / "fixtures" / "calc.py"
CLIENT_ONLY = ("server.", "inlineCompletion.", "nextEdit.", "statusBar.", "trace.")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _package() -> dict:
    return json.loads((EXT / "package.json").read_text())


def _server_properties() -> dict[str, dict]:
    props = _package()["contributes"]["configuration"]["properties"]
    out = {}
    for key, spec in props.items():
        assert key.startswith("ditto."), key
        name = key[len("ditto."):]
        if not name.startswith(CLIENT_ONLY):
            out[name] = spec
    return out


# ---- package.json vs the server's settings (no Node needed) ----------------------------------------


def test_configuration_has_every_server_setting_with_its_default():
    props = _server_properties()
    by_field = {_snake(name): (name, spec) for name, spec in props.items()}
    fields = Settings.field_names()
    defaults = Settings()
    assert sorted(by_field) == sorted(fields), (
        f"missing in package.json: {sorted(set(fields) - set(by_field))}; "
        f"unknown to the server: {sorted(set(by_field) - set(fields))}")
    for field in fields:
        name, spec = by_field[field]
        default = getattr(defaults, field)
        assert "default" in spec, f"ditto.{name} has no default"
        assert spec["default"] == default and type(spec["default"]) is type(default), (
            f"ditto.{name}: package.json default {spec['default']!r}, server default {default!r}")
        assert spec.get("description", "").strip(), f"ditto.{name} has no description"


def test_configuration_types_and_choices_agree_with_the_server():
    from ditto.lsp import settings as server_settings

    defaults = Settings()
    for name, spec in _server_properties().items():
        field = _snake(name)
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        default = getattr(defaults, field)
        if isinstance(default, bool):
            assert types == ["boolean"], name
        elif isinstance(default, int):
            assert "integer" in types, name
        if field in server_settings._CHOICES:
            assert spec.get("enum") == list(server_settings._CHOICES[field]), f"ditto.{name} enum"
        if field in server_settings._LIMITS:
            lo, hi = server_settings._LIMITS[field]
            assert (spec.get("minimum"), spec.get("maximum")) == (lo, hi), f"ditto.{name} range"
        # Every package.json default is accepted by the server as it is sent.
        parsed, errors = server_settings.parse_settings({"ditto": {name: spec["default"]}})
        assert not errors, errors


def test_contributed_commands():
    pkg = _package()
    titles = {c["command"]: f"{c.get('category', '')}: {c['title']}" for c in pkg["contributes"]["commands"]}
    assert set(titles.values()) == {
        "ditto: Rewrite File with Instruction…", "ditto: Rewrite Files in Workspace…",
        "ditto: Show Status", "ditto: Restart Server", "ditto: Suggest the Next Edit",
        "ditto: Jump to / Apply the Next Edit", "ditto: Dismiss the Next Edit"}
    source = (EXT / "src" / "extension.ts").read_text()
    source += (EXT / "src" / "next_edit.ts").read_text()
    for command in titles:
        assert f"registerCommand('{command}'" in source, command
    # Tab and Escape belong to next edit only while one is shown and no menu or ghost text is.
    for binding in pkg["contributes"]["keybindings"]:
        assert binding["command"] in titles and "ditto.nextEditVisible" in binding["when"], binding
        assert "!suggestWidgetVisible" in binding["when"], binding
    assert pkg["main"] == "./out/extension.js"
    assert pkg["engines"]["vscode"]
    assert "vscode-languageclient" in pkg["dependencies"]
    for dev in ("@vscode/vsce", "typescript", "@types/vscode", "vscode-languageserver-protocol", "vscode-jsonrpc"):
        assert dev in pkg["devDependencies"], dev


# ---- Node: type-check, package, protocol ---------------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=EXT, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def npm_ready() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed")
    if not (EXT / "node_modules" / ".package-lock.json").exists():
        r = _run(["npm", "ci", "--no-audit", "--no-fund"], timeout=600)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return EXT / "node_modules"


def test_typecheck(npm_ready):
    r = _run([str(npm_ready / ".bin" / "tsc"), "-p", ".", "--noEmit"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_package_vsix(npm_ready, tmp_path):
    vsix = tmp_path / "ditto.vsix"
    r = _run([str(npm_ready / ".bin" / "vsce"), "package", "--out", str(vsix)], timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = set(zipfile.ZipFile(vsix).namelist())
    for needed in ("extension/package.json", "extension/out/extension.js", "extension/out/config.js",
                   "extension/node_modules/vscode-languageclient/package.json"):
        assert needed in names, needed
    assert not any(n.startswith(("extension/src/", "extension/test/", "extension/node_modules/typescript/"))
                   for n in names)


@pytest.fixture(scope="module")
def protocol_run(npm_ready, tmp_path_factory, default_model_path) -> dict:
    tmp = tmp_path_factory.mktemp("vscode")
    r = _run([str(npm_ready / ".bin" / "tsc"), "-p", "."], timeout=300)   # out/config.js
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, DITTO_SERVER_PATH=ditto_command(tmp),
               DITTO_VSCODE_SETTINGS=json.dumps({"model": default_model_path}))
    r = _run(["node", "test/protocol.mjs", str(FIXTURE)], timeout=420, env=env)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1]
    result = json.loads(line)
    print(json.dumps(result, indent=1))
    return result


@pytest.mark.slow
def test_protocol_path(protocol_run):
    """The checks themselves are in protocol.mjs (it exits 1 on the first failure)."""
    r = protocol_run
    assert r["ok"]
    assert r["command"][1:3] == ["serve", "--stdio"]
    assert r["inline"]["text"].strip()
    assert "prefilled" in r["focusPrefill"]
    assert r["cancelledByProgress"]["applied"] is False
    assert r["rewrite"]["result"]["applied"] is True
    assert r["rewrite"]["progressReports"] >= 2
    assert r["serverExit"] == 0


@pytest.mark.slow
def test_cancel_request_stops_a_rewrite(protocol_run):
    assert protocol_run["cancelRequest"]["honoured"], protocol_run["cancelRequest"]


@pytest.mark.slow
def test_next_edit_protocol_path(npm_ready, tmp_path, default_model_path):
    """ditto/nextEdit as the extension sends it: the suggestion for the next use
    of a renamed parameter, shown with decorations (not on the cursor's line),
    applied as VS Code applies an edit, counted applied by the server."""
    r = _run([str(npm_ready / ".bin" / "tsc"), "-p", "."], timeout=300)   # out/next_edit_plan.js
    assert r.returncode == 0, r.stdout + r.stderr
    settings = {"model": default_model_path, "nextEditFormat": "instruct", "prefetch": False,
                "nextEditTimeBudgetMs": 300_000}
    env = dict(os.environ, DITTO_SERVER_PATH=scripted_ditto_command(tmp_path), DITTO_VSCODE_SETTINGS=json.dumps(settings))
    r = _run(["node", "test/next_edit.mjs", str(EXT / "test" / "fixtures" / "scale.py")], timeout=420, env=env)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    out = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert out["before"].split("\n")[0] == "def scale(items, factor):"
    assert out["result"] == {"range": {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 0}},
                             "newText": "    for v in items:\n", "jump": {"line": 2, "character": 13}}
    assert out["plan"] == {"kind": "decorate", "deleted": [{"line": 2, "start": 13, "end": 18}],
                           "added": ["    for v in items:"], "afterLine": 2}
    assert out["after"] == out["before"].replace("in values", "in items")
    assert (out["counts"]["suggestions"], out["counts"]["applied"]) == (1, 1)
    assert out["serverExit"] == 0
