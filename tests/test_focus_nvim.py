"""ditto/didFocus from the Neovim plugin, in a real headless Neovim: a file
opened with the cursor far below its first prompt window gets that cursor's
prompt prefilled when its buffer is attached (BufEnter has passed) and again
when its window comes back in front with the cursor moved; the completion
there then reuses it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from editor_clients import ditto_command
from test_nvim import PLUGIN, nvim, run_driver  # noqa: F401  (nvim is a fixture)

pytestmark = pytest.mark.slow

DRIVER = r"""
local PLUGIN, SERVER, FILE, OTHER, LINE, OUT, MODEL = unpack(vim.g.ditto_test)
vim.opt.rtp:prepend(PLUGIN)
vim.opt.swapfile = false
vim.cmd("filetype on")
local function finish(result)
  local f = io.open(OUT, "w")
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd("qa!")
end
local logs = {}
vim.lsp.handlers["window/logMessage"] = function(_, params)
  table.insert(logs, params.message)
end
local function logged(text)
  for _, m in ipairs(logs) do
    if m:sub(-#text) == text and m:find("ditto: prefilled ", 1, true) == 1 then
      return m
    end
  end
end
local ditto = require("ditto")
ditto.setup({ cmd = { SERVER, "serve" }, inline = { enable = false },
              settings = { model = MODEL, maxTokens = 8, timeBudgetMs = 120000, promptTokens = 512,
                           prefetch = false, extraChunks = 0 } })
vim.cmd("edit +" .. LINE .. " " .. vim.fn.fnameescape(FILE))
local buf = vim.api.nvim_get_current_buf()
local uri = vim.uri_from_bufnr(buf)
local client
if not vim.wait(60000, function()
  client = vim.lsp.get_clients({ bufnr = buf, name = "ditto" })[1]
  return client ~= nil and client.initialized
end, 50) then return finish({ ok = false, error = "the ditto client did not attach" }) end
local at_line = " of " .. uri .. " at line " .. LINE
if not vim.wait(150000, function() return logged(at_line) ~= nil end, 50) then
  return finish({ ok = false, error = "no prefill at the cursor after attaching", logs = logs })
end
-- Another window in front, this one's cursor moved meanwhile, and back: BufEnter sends the new cursor.
local win = vim.api.nvim_get_current_win()
vim.cmd("split " .. vim.fn.fnameescape(OTHER))
vim.api.nvim_win_set_cursor(win, { LINE + 40, 0 })
vim.api.nvim_set_current_win(win)
local again = " of " .. uri .. " at line " .. (LINE + 40)
if not vim.wait(150000, function() return logged(again) ~= nil end, 50) then
  return finish({ ok = false, error = "no prefill at the new cursor after BufEnter", logs = logs })
end
local res = client:request_sync("textDocument/completion",
  vim.lsp.util.make_position_params(0, client.offset_encoding), 150000, buf)
if not res or res.err or not res.result then
  return finish({ ok = false, error = "completion: " .. vim.inspect(res), logs = logs })
end
local items = res.result.items or res.result
finish({ ok = true, first = logged(at_line), again = logged(again), data = items[1] and items[1].data })
"""


def test_attach_and_buf_enter_prefill_the_prompt_at_the_cursor(nvim, tmp_path, default_model_path):
    source = (Path(os.__file__).parent / "abc.py").read_text(encoding="utf-8")
    file = tmp_path / "abc_copy.py"
    file.write_text(source)
    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    line = source[:source.index("def update_abstractmethods(cls):")].count("\n") - 40
    out = tmp_path / "result.json"
    r = run_driver(nvim, tmp_path, DRIVER, [str(PLUGIN), ditto_command(tmp_path), str(file), str(other), line,
                                            str(out), default_model_path], out)
    assert r["ok"], f"{r.get('error')}\nlogs: {r.get('logs')}"
    data = r["data"]
    assert data is not None, "the completion came back empty"
    # The cursor is at a line start: its whole prompt was prefilled but the last token.
    assert data["prompt_tokens"] - 3 <= data["reused_tokens"] < data["prompt_tokens"]
    assert int(r["again"].split()[2]) >= data["prompt_tokens"] - 3
