"""Next-edit suggestions in a real headless Neovim, through the plugin's own
code (editor-configs/nvim/lua/ditto/next_edit.lua): a parameter renamed at
its definition by typed keys, the debounced request after the pause, the
suggestion shown in place (deleted text highlighted, new line as a virtual
line) covering the next use, <Esc> dismissing it, <Tab> jumping to it and a
second <Tab> applying it; the buffer then equals what ditto/nextEdit
returned, and ditto.status counts the suggestion applied.

The server's model follows a script (scripted_model.py: the real model file,
tokenizer, prompt, decode loop and drafter run; only the answer's tokens come
from the script), because the default 135M model writes no usable next edit.
"""
from __future__ import annotations

import pytest

from editor_clients import NVIM_SESSION
from lsp_helpers import SCRIPTED_CMD
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
local R = { steps = {} }
local function write(ok, err)
  R.ok, R.error = ok, err
  local f = io.open(OUT, "w")
  f:write(vim.json.encode(R))
  f:close()
end
local ditto = require("ditto")
local next_edit = require("ditto.next_edit")
ditto.setup({ cmd = vim.split(SERVER, "\t"),
              settings = { model = MODEL, nextEditFormat = "instruct", nextEditTimeBudgetMs = 120000, prefetch = false },
              inline = { enable = false }, next_edit = { debounce_ms = 100 } })

""" + NVIM_SESSION + r"""local function lines() return vim.api.nvim_buf_get_lines(0, 0, -1, false) end
local ns = vim.api.nvim_create_namespace("ditto_next_edit")
local function marks()
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local d = m[4]
    local virt = {}
    for _, vl in ipairs(d.virt_lines or {}) do table.insert(virt, vl[1][1]) end
    table.insert(out, { row = m[2], col = m[3], end_col = d.end_col, hl = d.hl_group, virt_lines = virt })
  end
  return out
end
local function status()
  ditto.last_status = nil
  ditto.status({ silent = true })
  wait(function() return ditto.last_status ~= nil end, 120000, "ditto.status")
  return ditto.last_status
end
local function suggestion_shown()
  wait(function() return next_edit.suggestion() ~= nil end, 120000, "a next-edit suggestion")
  return next_edit.suggestion()
end

co = coroutine.create(function()
  vim.cmd.edit(vim.fn.fnameescape(FILE))
  local buf = vim.api.nvim_get_current_buf()
  wait(function()
    local c = vim.lsp.get_clients({ bufnr = buf, name = "ditto" })[1]
    return c ~= nil and c.initialized
  end, 60000, "the ditto client to attach")
  local client = ditto.client(buf)
  R.steps.experimental = client.server_capabilities.experimental
  status()     -- the model is loaded

  -- The rename at the definition, typed; the request goes after the pause.
  vim.api.nvim_win_set_cursor(0, { 1, 10 })
  feed("ciwitems<Esc>")
  R.steps.before = lines()
  local result = suggestion_shown()
  R.steps.result = result
  R.steps.marks = marks()
  R.steps.cursor_shown = vim.api.nvim_win_get_cursor(0)

  -- <Esc> dismisses it and changes nothing; :DittoNextEdit asks again.
  feed("<Esc>")
  check(next_edit.suggestion() == nil and #marks() == 0, "<Esc> left the suggestion shown")
  check(vim.deep_equal(lines(), R.steps.before), "<Esc> changed the buffer")
  vim.cmd("DittoNextEdit")
  local again = suggestion_shown()
  check(vim.deep_equal(again, result), "a second request answered differently")

  feed("<Tab>")
  R.steps.cursor_jumped = vim.api.nvim_win_get_cursor(0)
  check(vim.deep_equal(lines(), R.steps.before), "the first <Tab> changed the buffer")
  ditto.config.next_edit.auto = false   -- the request below must not be superseded
  feed("<Tab>")
  R.steps.after = lines()
  R.steps.marks_after = marks()
  -- A request names the buffer, so Neovim sends its pending didChange first.
  local asked = false
  next_edit.request(buf, function() asked = true end)
  wait(function() return asked end, 120000, "the request after the apply")
  R.steps.status = status().next_edit
end)

vim.defer_fn(function()
  write(false, "the session timed out")
  vim.cmd("cquit 2")
end, 160000)
vim.schedule(resume)
"""


def apply_lines(lines: list[str], result: dict) -> list[str]:
    """The buffer's lines after the whole-line edit the server returned."""
    start, end = result["range"]["start"]["line"], result["range"]["end"]["line"]
    new = result["newText"].split("\n")
    if result["newText"].endswith("\n"):
        new = new[:-1]
    return lines[:start] + new + lines[end:]


def test_rename_then_tab_tab_applies_the_shown_next_edit(nvim, tmp_path, default_model_path):
    source = tmp_path / "scale.py"
    source.write_text(SOURCE)
    out = tmp_path / "result.json"
    r = run_driver(nvim, tmp_path, DRIVER, [str(PLUGIN), "\t".join(SCRIPTED_CMD), str(source), str(out),
                                            default_model_path], out)
    assert r["ok"], r["error"]
    s = r["steps"]
    assert s["experimental"] == {"ditto": {"nextEdit": True}}
    assert s["before"][0] == "def scale(items, factor):"
    result = s["result"]
    # It covers the next use, inside the 21-line window around the cursor.
    assert result["range"]["start"]["line"] <= 2 < result["range"]["end"]["line"] <= 21
    assert "    for v in items:" in result["newText"].split("\n")
    # Shown in place: "value" of "values" on line 3 highlighted (the "s:" after it
    # stays: "items:" ends so too), the new line as a virtual line.
    assert {"row": 2, "col": 13, "end_col": 18, "hl": "DittoNextEditDelete", "virt_lines": []} in s["marks"]
    assert any("    for v in items:" in m["virt_lines"] for m in s["marks"])
    assert s["cursor_jumped"] == [result["jump"]["line"] + 1, result["jump"]["character"]]
    assert s["after"] == apply_lines(s["before"], result)
    assert s["after"][2] == "    for v in items:"
    assert s["marks_after"] == []
    # Two suggestions shown (before and after <Esc>), one applied; a request sent
    # while the rename was still being typed may have been answered too.
    assert s["status"]["suggestions"] >= 2 and s["status"]["applied"] == 1
