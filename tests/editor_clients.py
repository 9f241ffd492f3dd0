"""Helpers shared by the editor-client tests (test_nvim.py, test_vscode_protocol.py, test_next_edit_nvim.py)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def ditto_command(tmp_path: Path) -> str:
    """An executable that behaves as the `ditto` console script with its `serve`
    command: the installed script if it has `serve`, else a wrapper that runs
    this interpreter's ditto.lsp.cli (an editable install made before the entry
    point moved to ditto.lsp.cli keeps a stale script)."""
    exe = shutil.which("ditto")
    if exe:
        r = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            return exe
    return wrapper(tmp_path / "bin" / "ditto", [sys.executable, "-m", "ditto.lsp.cli"])


def scripted_ditto_command(tmp_path: Path) -> str:
    """An executable `ditto` whose model follows the script of scripted_model.py."""
    return wrapper(tmp_path / "bin" / "scripted-ditto", [sys.executable, str(Path(__file__).with_name("scripted_ditto.py"))])


def wrapper(path: Path, command: list[str]) -> str:
    """A shell script at `path` that runs `command` with its own arguments after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(c) for c in command) + ' "$@"\n')
    path.chmod(0o755)
    return str(path)
