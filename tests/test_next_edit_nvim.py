""":DittoNextEdit in a real headless Neovim: after a rename typed into the
buffer, the plugin asks ditto/nextEdit and the buffer becomes exactly what
the server returned (unchanged when it returned null), with the cursor at
the jump position."""
from __future__ import annotations

import pytest

from editor_clients import ditto_command
from test_nvim import PLUGIN, nvim, run_driver  # noqa: F401  (nvim is a fixture)

pytestmark = pytest.mark.slow

SOURCE = ("def scale(values, factor):\n"
          "    out = []\n"
          "    for v in values:\n"
          "        out.append(v * factor)\n"
          "    return out\n")

DRIVER = r"""
local PLUGIN, SERVER, FILE, OUT, MODEL = unpack(vim.g.ditto_test)
vim.opt.rtp:prepend(PLUGIN)
vim.opt.swapfile = false
vim.cmd("filetype on")
local function finish(result)
  local f = io.open(OUT, "w")
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd("qa!")
end
local ditto = require("ditto")
ditto.setup({ cmd = { SERVER, "serve" }, settings = { model = MODEL, nextEditTimeBudgetMs = 120000 },
              inline = { enable = false } })
vim.cmd.edit(vim.fn.fnameescape(FILE))
local buf = vim.api.nvim_get_current_buf()
if not vim.wait(60000, function()
  local c = vim.lsp.get_clients({ bufnr = buf, name = "ditto" })[1]
  return c ~= nil and c.initialized
end, 50) then return finish({ ok = false, error = "the ditto client did not attach" }) end
-- The rename at the definition, as an edit of the buffer (an incremental didChange).
vim.api.nvim_buf_set_text(buf, 0, 10, 0, 16, { "items" })
vim.api.nvim_win_set_cursor(0, { 1, 15 })
local before = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
local answer
ditto.next_edit({ on_done = function(err, result) answer = { err = err, result = result } end })
if not vim.wait(150000, function() return answer ~= nil end, 50) then
  return finish({ ok = false, error = "no answer to ditto/nextEdit" })
end
finish({ ok = answer.err == nil, error = answer.err and answer.err.message, result = answer.result,
         before = before, after = vim.api.nvim_buf_get_lines(buf, 0, -1, false),
         cursor = vim.api.nvim_win_get_cursor(0) })
"""


def apply_lines(lines: list[str], result: dict) -> list[str]:
    """The buffer's lines after the whole-line edit the server returned."""
    start, end = result["range"]["start"]["line"], result["range"]["end"]["line"]
    new = result["newText"].split("\n")
    if result["newText"].endswith("\n"):
        new = new[:-1]
    return lines[:start] + new + lines[end:]


def test_next_edit_command_applies_what_the_server_returned(nvim, tmp_path, default_model_path):
    source = tmp_path / "scale.py"
    source.write_text(SOURCE)
    out = tmp_path / "result.json"
    r = run_driver(nvim, tmp_path, DRIVER, [str(PLUGIN), ditto_command(tmp_path), str(source), str(out),
                                            default_model_path], out)
    assert r["ok"], r["error"]
    assert r["before"][0] == "def scale(items, factor):"
    if r.get("result") is None:      # JSON null arrives as a missing key from vim.json
        assert r["after"] == r["before"]
    else:
        assert r["after"] == apply_lines(r["before"], r["result"])
        assert r["cursor"][0] == r["result"]["jump"]["line"] + 1
