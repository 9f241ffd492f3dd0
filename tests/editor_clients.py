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


# The Lua of a headless Neovim session driven by a coroutine that timers
# resume, so Neovim's main loop runs between steps and processes typed keys:
# `co` (the driver sets it), resume() (calls the driver's write(ok, err) and
# quits when it ends or fails), wait(pred, ms, what), feed(keys), check(cond, msg).
NVIM_SESSION = r"""local co
local function resume()
  local ok, err = coroutine.resume(co)
  if not ok then
    write(false, debug.traceback(co, tostring(err)))
    vim.cmd("cquit 1")
  elseif coroutine.status(co) == "dead" then
    write(true)
    vim.cmd("qa!")
  end
end
local function wait(pred, ms, what)
  local start = vim.uv.now()
  while not pred() do
    if vim.uv.now() - start > ms then
      error("timed out waiting for " .. what)
    end
    vim.defer_fn(resume, 30)
    coroutine.yield()
  end
end
local function feed(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), "m", false)
  wait(function() return vim.fn.getchar(1) == 0 and vim.fn.state("t") == "" end, 5000, "typeahead: " .. keys)
end
local function check(cond, msg)
  if not cond then error(msg, 2) end
end
"""
