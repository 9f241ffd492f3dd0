"""Helpers shared by the editor-client tests (test_nvim.py, test_vscode_protocol.py)."""
from __future__ import annotations

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
    wrapper = tmp_path / "bin" / "ditto"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ditto.lsp.cli "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)
