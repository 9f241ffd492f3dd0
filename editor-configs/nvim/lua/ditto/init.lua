-- ditto for Neovim: the `ditto serve` language server as an LSP client.
--
--   require("ditto").setup {
--     cmd = { "ditto", "serve" },            -- the server command
--     -- socket = "$XDG_RUNTIME_DIR/ditto.sock", -- or connect to `ditto serve --socket PATH`
--     settings = { maxTokens = 24 },          -- any server setting (camelCase or snake_case)
--     inline = { keys = { accept = "<Tab>" } },
--   }
--
-- Completion comes through Neovim's LSP completion (omnifunc, <C-x><C-o>, and
-- vim.lsp.completion on 0.11); inline ghost text is drawn with extmarks from
-- textDocument/inlineCompletion, which the plugin requests itself (no Neovim
-- release advertises the capability). Next-edit suggestions are shown in
-- place after an edit pauses (lua/ditto/next_edit.lua). Commands: :DittoRewrite
-- {instruction}, :DittoRewriteWorkspace {glob} {instruction}, :DittoCancel,
-- :DittoNextEdit, :DittoStatus.
local M = {}

local NAME = "ditto"
local ns = vim.api.nvim_create_namespace("ditto_ghost")
local has_011 = vim.fn.has("nvim-0.11") == 1

-- The plugin's own options; every other key given to setup() is a server setting.
local defaults = {
  cmd = { "ditto", "serve" },
  -- Connect to a running `ditto serve --socket PATH` instead of starting `cmd`
  -- (false: start `cmd` over stdio). Only the user who started it can connect.
  socket = false,
  cmd_env = nil,
  filetypes = nil, -- nil: every filetype
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod", "Makefile" },
  settings = {}, -- server settings, sent as initializationOptions and workspace/didChangeConfiguration
  completion = {
    enable = true, -- vim.lsp.completion (0.11) or omnifunc
    autotrigger = false, -- open the menu on the server's trigger characters (0.11)
    -- Neovim inserts only the first word of a plain-text item (up to a space);
    -- insert the rest of ditto's suggestion too when it is accepted.
    insert_full = true,
  },
  inline = {
    enable = true,
    auto = true, -- request ghost text while typing in insert mode
    debounce_ms = 150,
    hl_group = "DittoGhost",
    keys = {
      accept = "<Tab>", -- falls back to a plain <Tab> when no ghost text is shown
      accept_line = "<M-l>",
      accept_word = "<M-w>",
      dismiss = "<C-]>",
      next = "<M-]>", -- ask again (also when auto is off)
    },
  },
  next_edit = {
    enable = true,
    auto = true, -- ask after an edit pauses (never while the completion menu is open)
    debounce_ms = 500,
    hl_delete = "DittoNextEditDelete", -- text the suggestion would delete
    hl_add = "DittoNextEditAdd", -- its new lines (virtual lines)
    keys = {
      accept = "<Tab>", -- jump to the suggestion, then apply it; a plain <Tab> when none is shown
      dismiss = "<Esc>", -- normal mode; a plain <Esc> when none is shown
    },
  },
  progress = true, -- echo $/progress of rewrites
}

M.config = vim.deepcopy(defaults)
M.last_rewrite = nil -- the last ditto.rewriteFile / ditto.rewriteWorkspace answer (or error)
M.rewrites = {} -- progress token -> { begun, cancel_requested, title, message, percentage }

-- ---- helpers that work on 0.10 and 0.11 ---------------------------------------------------

local function call(client, method, ...)
  if has_011 then
    return client[method](client, ...)
  end
  return client[method](...)
end
M.call = call

local function notify(msg, level)
  vim.notify("ditto: " .. msg, level or vim.log.levels.INFO)
end

function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = NAME, bufnr = bufnr })
  if #clients == 0 and bufnr == nil then
    return nil
  end
  return clients[1] or vim.lsp.get_clients({ name = NAME })[1]
end

local function server_settings()
  local settings = vim.deepcopy(M.config.settings)
  -- An empty Lua table encodes as a JSON array; the server wants an object.
  return next(settings) == nil and vim.empty_dict() or settings
end

-- ---- setup and the client ------------------------------------------------------------------

-- Options whose default is nil are no keys of `defaults`: name them too.
local own_keys = { cmd_env = true, filetypes = true }
for k in pairs(defaults) do
  own_keys[k] = true
end

local function on_attach(client, bufnr)
  if M.config.completion.enable then
    if has_011 and vim.lsp.completion then
      vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = M.config.completion.autotrigger })
    end
    vim.bo[bufnr].omnifunc = "v:lua.vim.lsp.omnifunc"
    if M.config.completion.insert_full then
      vim.api.nvim_create_autocmd("CompleteDone", {
        group = vim.api.nvim_create_augroup("ditto_complete_" .. bufnr, { clear = true }),
        buffer = bufnr,
        callback = function()
          M.complete_rest(bufnr, client.id)
        end,
      })
    end
  end
  if M.config.inline.enable then
    M.inline.attach(bufnr)
  end
  if M.config.next_edit.enable then
    require("ditto.next_edit").attach(bufnr)
  end
  M.focus_attach(client, bufnr)
end

-- ---- ditto/didFocus: the buffer in front and its cursor ----------------------------------
-- When a buffer becomes the current one, the server prefills the prompt of a
-- completion at its cursor, so the first keystroke there is answered from the
-- cache (didOpen carries no cursor: it prefills the top of the file).

function M.send_focus(client, bufnr)
  if vim.api.nvim_get_current_buf() ~= bufnr or call(client, "is_stopped") then
    return
  end
  call(client, "notify", "ditto/didFocus", vim.lsp.util.make_position_params(0, client.offset_encoding))
end

function M.focus_attach(client, bufnr)
  vim.api.nvim_create_autocmd("BufEnter", {
    group = vim.api.nvim_create_augroup("ditto_focus_" .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      M.send_focus(client, bufnr)
    end,
  })
  M.send_focus(client, bufnr) -- attached while in front: BufEnter has passed
end

--- After a ditto item was accepted from the menu: Neovim inserted its `word`
--- (the text edit up to the first space); insert the rest of the suggestion.
function M.complete_rest(bufnr, client_id)
  local item = vim.v.completed_item
  if type(item) ~= "table" or (vim.v.event.reason or "accept") ~= "accept" then
    return
  end
  local nvim_data = vim.tbl_get(item, "user_data", "nvim", "lsp") or {}
  local lsp_item = nvim_data.completion_item
  if not lsp_item or nvim_data.client_id ~= client_id or lsp_item.insertTextFormat == 2 then
    return
  end
  local full = vim.tbl_get(lsp_item, "textEdit", "newText") or lsp_item.insertText or lsp_item.label
  local word = item.word or ""
  if type(full) ~= "string" or #full <= #word or full:sub(1, #word) ~= word then
    return
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  if line:sub(col - #word + 1, col) ~= word then
    return -- not where the word went in
  end
  local lines = vim.split(full:sub(#word + 1), "\n", { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1) and (col + #lines[1]) or #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
end

-- How Neovim reaches the server: a command over stdio, or the Unix socket.
local function server_cmd()
  if not M.config.socket then
    return M.config.cmd
  end
  local connect = has_011 and vim.lsp.rpc.connect or vim.lsp.rpc.domain_socket_connect
  return connect(vim.fs.normalize(M.config.socket))
end

local function lsp_config()
  local cfg = {
    name = NAME,
    cmd = server_cmd(),
    cmd_env = M.config.cmd_env,
    init_options = server_settings(),
    settings = { ditto = server_settings() },
    on_attach = on_attach,
    handlers = {},
  }
  if M.config.filetypes then
    cfg.filetypes = M.config.filetypes
  end
  return cfg
end

-- The project root: a root marker above the file, else the working directory
-- if the file is under it, else the file's directory (ditto.rewriteWorkspace
-- needs a workspace folder).
local function root_of(bufnr)
  local root = vim.fs.root(bufnr, M.config.root_markers)
  if root then
    return root
  end
  local fname = vim.api.nvim_buf_get_name(bufnr)
  local cwd = vim.uv.cwd()
  if fname == "" or vim.startswith(vim.fs.normalize(fname), vim.fs.normalize(cwd) .. "/") then
    return cwd
  end
  return vim.fs.dirname(fname)
end

local function start_010(bufnr)
  if vim.bo[bufnr].buftype ~= "" then
    return
  end
  local ft = vim.bo[bufnr].filetype
  if M.config.filetypes and not vim.tbl_contains(M.config.filetypes, ft) then
    return
  end
  local cfg = lsp_config()
  cfg.root_dir = root_of(bufnr)
  vim.lsp.start(cfg, { bufnr = bufnr })
end

function M.setup(opts)
  opts = opts or {}
  local settings = vim.deepcopy(opts.settings or {})
  for k, v in pairs(opts) do
    if not own_keys[k] then
      settings[k] = v
    end
  end
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts)
  for k in pairs(opts) do
    if not own_keys[k] then
      M.config[k] = nil
    end
  end
  M.config.settings = settings
  if type(M.config.cmd) == "string" then
    M.config.cmd = { M.config.cmd, "serve" }
  end

  vim.api.nvim_set_hl(0, "DittoGhost", { link = "Comment", default = true })
  vim.api.nvim_set_hl(0, "DittoNextEditDelete", { link = "DiffDelete", default = true })
  vim.api.nvim_set_hl(0, "DittoNextEditAdd", { link = "DiffAdd", default = true })
  M.create_commands()
  M.setup_progress()

  if has_011 and vim.lsp.config and vim.lsp.enable then
    local cfg = lsp_config()
    cfg.root_dir = function(bufnr, on_dir)
      on_dir(root_of(bufnr))
    end
    vim.lsp.config(NAME, cfg)
    vim.lsp.enable(NAME)
  else
    local group = vim.api.nvim_create_augroup("ditto_start", { clear = true })
    vim.api.nvim_create_autocmd("FileType", {
      group = group,
      callback = function(ev)
        start_010(ev.buf)
      end,
    })
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.bo[buf].filetype ~= "" then
        start_010(buf)
      end
    end
  end
end

--- Changes server settings live (workspace/didChangeConfiguration).
function M.update_settings(settings)
  M.config.settings = vim.tbl_extend("force", M.config.settings, settings or {})
  for _, client in ipairs(vim.lsp.get_clients({ name = NAME })) do
    client.config.settings = { ditto = server_settings() }
    call(client, "notify", "workspace/didChangeConfiguration", { settings = { ditto = server_settings() } })
  end
end

-- ---- inline ghost text ------------------------------------------------------------------------

local inline = {}
M.inline = inline

-- bufnr -> { text, row, col (0-based bytes), tick, extmark }
local state = {}
local requests = require("ditto.buffer_requests").new()

local function byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col
  if has_011 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return ok and col or #line
end
M.byte_col = byte_col

function inline.clear(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
  state[bufnr] = nil
end

local function render(bufnr)
  local s = state[bufnr]
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  if not s or s.text == "" then
    return
  end
  local lines = vim.split(s.text, "\n", { plain = true })
  local hl = M.config.inline.hl_group
  local opts = {
    virt_text = { { lines[1], hl } },
    virt_text_pos = "inline",
    hl_mode = "combine",
  }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], hl } })
    end
  end
  s.extmark = vim.api.nvim_buf_set_extmark(bufnr, ns, s.row, s.col, opts)
end

--- The ghost text shown in the buffer (nil if none).
function inline.suggestion(bufnr)
  local s = state[bufnr or vim.api.nvim_get_current_buf()]
  return s and s.text or nil
end

function inline.visible(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = state[bufnr]
  if not s or s.text == "" then
    return false
  end
  local cur = vim.api.nvim_win_get_cursor(0)
  return cur[1] - 1 == s.row and cur[2] == s.col and vim.api.nvim_buf_get_changedtick(bufnr) == s.tick
end

--- Sends textDocument/inlineCompletion for the cursor position; the answer is drawn as ghost text.
function inline.request(bufnr, on_done)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    return false
  end
  requests.cancel(bufnr)
  local win = vim.api.nvim_get_current_win()
  local cursor = vim.api.nvim_win_get_cursor(win)
  local row, col = cursor[1] - 1, cursor[2]
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local encoding = client.offset_encoding or "utf-16"
  local params = vim.lsp.util.make_position_params(win, encoding)
  params.context = { triggerKind = 2 } -- Automatic
  local ok, id = call(client, "request", "textDocument/inlineCompletion", params, function(err, result)
    requests.answered(bufnr, id)
    local text
    if not err and result then
      local items = result.items or result
      local item = items and items[1]
      if item then
        text = type(item.insertText) == "table" and item.insertText.value or item.insertText
        -- A range starting before the cursor covers text already typed: drop that part.
        if text and item.range and item.range.start.line == row then
          local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
          local start = byte_col(line, item.range.start.character, encoding)
          local typed = line:sub(start + 1, col)
          if start < col and text:sub(1, #typed) == typed then
            text = text:sub(#typed + 1)
          end
        end
      end
    end
    local fresh = vim.api.nvim_buf_is_valid(bufnr)
      and vim.api.nvim_buf_get_changedtick(bufnr) == tick
      and vim.api.nvim_get_current_buf() == bufnr
    if fresh then
      local cur = vim.api.nvim_win_get_cursor(0)
      fresh = cur[1] - 1 == row and cur[2] == col
    end
    if fresh and text and text ~= "" and vim.trim(text) ~= "" then
      state[bufnr] = { text = text, row = row, col = col, tick = tick }
      render(bufnr)
    end
    if on_done then
      on_done(err, text)
    end
  end, bufnr)
  requests.track(bufnr, client, ok, id)
  return ok
end

-- Inserts the first `n` bytes of the suggestion at the cursor; the rest stays as ghost text.
local function take(bufnr, part)
  local s = state[bufnr]
  if not s or not inline.visible(bufnr) or part == "" then
    return false
  end
  local lines = vim.split(part, "\n", { plain = true })
  vim.api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, s.col, lines)
  local row = s.row + #lines - 1
  local col = (#lines == 1) and (s.col + #lines[1]) or #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { row + 1, col })
  local rest = s.text:sub(#part + 1)
  if rest == "" then
    inline.clear(bufnr)
  else
    state[bufnr] = { text = rest, row = row, col = col, tick = vim.api.nvim_buf_get_changedtick(bufnr) }
    render(bufnr)
  end
  return true
end

function inline.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = state[bufnr]
  return s ~= nil and take(bufnr, s.text)
end

-- Accepts the part of the shown suggestion that `pick(text)` returns.
local function accept_part(bufnr, pick)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = state[bufnr]
  if not s then
    return false
  end
  return take(bufnr, pick(s.text) or s.text)
end

function inline.accept_line(bufnr)
  return accept_part(bufnr, function(text)
    return text:match("^\n[^\n]*") or text:match("^[^\n]*")
  end)
end

function inline.accept_word(bufnr)
  return accept_part(bufnr, function(text)
    return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text:match("^%s+")
  end)
end

function inline.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  requests.cancel(bufnr)
  local had = state[bufnr] ~= nil
  inline.clear(bufnr)
  return had
end

local attached = {}

function inline.attach(bufnr)
  if attached[bufnr] then
    return
  end
  attached[bufnr] = true
  local group = vim.api.nvim_create_augroup("ditto_inline_" .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ "TextChangedI", "CursorMovedI" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if inline.visible(bufnr) then
        return -- our own accept moved the cursor onto the rest of the suggestion
      end
      requests.cancel(bufnr)
      inline.clear(bufnr)
      if M.config.inline.auto and vim.fn.pumvisible() == 0 then
        -- Not while the completion menu is open or being filled: the server keeps
        -- one request per document, and this one would supersede the menu's.
        requests.debounce(bufnr, M.config.inline.debounce_ms, function()
          if vim.fn.mode() == "i" then
            inline.request(bufnr)
          end
        end)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      inline.dismiss(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd("BufWipeout", {
    group = group,
    buffer = bufnr,
    callback = function()
      attached[bufnr] = nil
      state[bufnr] = nil
      requests.forget(bufnr)
    end,
  })
  local keys = M.config.inline.keys or {}
  local function map(lhs, fn, fallback, desc)
    require("ditto.buffer_requests").map("i", lhs, bufnr, fn, fallback, desc)
  end
  map(keys.accept, function(b)
    return inline.accept(b) or (M.config.next_edit.enable and require("ditto.next_edit").tab(b))
  end, true, "ditto: accept the suggestion (or jump to / apply the next edit)")
  map(keys.accept_line, inline.accept_line, false, "ditto: accept a line of the suggestion")
  map(keys.accept_word, inline.accept_word, false, "ditto: accept a word of the suggestion")
  map(keys.dismiss, inline.dismiss, true, "ditto: dismiss the suggestion")
  map(keys.next, function(b)
    return inline.request(b)
  end, false, "ditto: ask for a suggestion")
end

-- ---- commands ----------------------------------------------------------------------------------

local function execute(client, command, arguments, bufnr, handler)
  return call(client, "request", "workspace/executeCommand", { command = command, arguments = arguments }, handler, bufnr)
end

--- Rewrites the buffer (or lines line1..line2) with an instruction; one workspace/applyEdit when done.
function M.rewrite(instruction, opts)
  opts = opts or {}
  local bufnr = opts.bufnr or vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    notify("no ditto server attached to this buffer", vim.log.levels.ERROR)
    return false
  end
  if not instruction or vim.trim(instruction) == "" then
    notify("give an instruction: :DittoRewrite add type hints", vim.log.levels.ERROR)
    return false
  end
  inline.dismiss(bufnr)
  local args = { vim.uri_from_bufnr(bufnr), instruction }
  if opts.line1 and opts.line2 then
    local last = vim.api.nvim_buf_get_lines(bufnr, opts.line2 - 1, opts.line2, false)[1] or ""
    local encoding = client.offset_encoding or "utf-16"
    local character = has_011 and vim.str_utfindex(last, encoding) or select(encoding == "utf-16" and 2 or 1, vim.str_utfindex(last))
    table.insert(args, { start = { line = opts.line1 - 1, character = 0 }, ["end"] = { line = opts.line2 - 1, character = character } })
  end
  M.last_rewrite = { running = true, instruction = instruction }
  local name = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(bufnr), ":t")
  execute(client, "ditto.rewriteFile", args, bufnr, function(err, result)
    M.last_rewrite = { running = false, err = err, result = result, instruction = instruction }
    if err then
      notify("rewrite of " .. name .. " failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif result and result.applied then
      local stats = result.stats or {}
      local rate = stats.drafted and stats.drafted > 0 and string.format(", %.0f%% of drafts accepted", 100 * stats.accepted / stats.drafted) or ""
      notify(string.format("rewrote %s%s", name, rate))
    end
    -- not applied: the server says why (window/showMessage)
    if opts.on_done then
      opts.on_done(err, result)
    end
  end)
  return true
end

function M.rewrite_workspace(glob, instruction, opts)
  opts = opts or {}
  local client = M.client(vim.api.nvim_get_current_buf()) or M.client()
  if not client then
    notify("the ditto server is not running", vim.log.levels.ERROR)
    return false
  end
  local commands = vim.tbl_get(client.server_capabilities or {}, "executeCommandProvider", "commands") or {}
  if not vim.tbl_contains(commands, "ditto.rewriteWorkspace") then
    notify("this server has no ditto.rewriteWorkspace command; update ditto", vim.log.levels.ERROR)
    return false
  end
  M.last_rewrite = { running = true, glob = glob, instruction = instruction }
  execute(client, "ditto.rewriteWorkspace", { glob, instruction }, nil, function(err, result)
    M.last_rewrite = { running = false, err = err, result = result, glob = glob, instruction = instruction }
    if err then
      notify("workspace rewrite failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    else
      local r = type(result) == "table" and result or {}
      local counts = {}
      for _, f in ipairs(r.results or {}) do
        counts[f.status] = (counts[f.status] or 0) + 1
      end
      local parts = {}
      for status, n in pairs(counts) do
        table.insert(parts, n .. " " .. status)
      end
      notify(string.format("workspace rewrite of %s: %s file(s)%s%s", glob, tostring(r.files or "?"),
        #parts > 0 and ", " .. table.concat(parts, ", ") or "",
        r.skipped and #r.skipped > 0 and (", " .. #r.skipped .. " skipped") or ""))
    end
    if opts.on_done then
      opts.on_done(err, result)
    end
  end)
  return true
end

--- Cancels the running rewrites (window/workDoneProgress/cancel: the server stops and applies nothing;
--- $/cancelRequest would stop them too, but the progress token is what this plugin already follows).
function M.cancel()
  local n = 0
  for token, r in pairs(M.rewrites) do
    if not r.done then
      r.cancel_requested = true
      if r.begun and not r.cancel_sent then
        r.cancel_sent = true
        call(r.client, "notify", "window/workDoneProgress/cancel", { token = token })
      end
      n = n + 1
    end
  end
  M.cancel_next = (M.last_rewrite and M.last_rewrite.running and n == 0) or nil
  return n
end

function M.status(opts)
  opts = opts or {}
  local client = M.client(vim.api.nvim_get_current_buf()) or M.client()
  if not client then
    notify("the ditto server is not running", vim.log.levels.ERROR)
    return false
  end
  execute(client, "ditto.status", {}, nil, function(err, result)
    M.last_status = err and { err = err } or result
    if opts.on_done then
      opts.on_done(err, result)
    end
    if opts.silent then
      return
    end
    if err then
      notify("status: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    local stats = result.stats or {}
    local rate = (stats.drafted or 0) > 0 and string.format("%.1f%%", 100 * stats.accepted / stats.drafted) or "-"
    local lines = {
      "ditto " .. vim.tbl_get(result, "server", "version") .. ": " .. tostring(vim.tbl_get(result, "model", "name")),
      string.format("completions %d, cache hits %d, rewrites %d, draft acceptance %s",
        stats.completions or 0, stats.cache_hits or 0, stats.rewrites or 0, rate),
      "",
    }
    vim.list_extend(lines, vim.split(vim.inspect(result), "\n"))
    local buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].filetype = "lua"
    vim.cmd("botright split")
    vim.api.nvim_win_set_buf(0, buf)
    vim.api.nvim_win_set_height(0, math.min(#lines, 20))
  end)
  return true
end

--- Asks for the next edit at the cursor (ditto/nextEdit) now and shows it in
--- place (<Tab> jumps to it, <Tab> again applies it). opts.on_done(err, result)
--- is called with the server's answer (nil: no suggestion).
function M.next_edit(opts)
  opts = opts or {}
  if not require("ditto.next_edit").request(nil, opts.on_done) then
    notify("the ditto server is not running", vim.log.levels.ERROR)
    return false
  end
  return true
end

-- ---- progress -----------------------------------------------------------------------------------

function M.setup_progress()
  local group = vim.api.nvim_create_augroup("ditto_progress", { clear = true })
  vim.api.nvim_create_autocmd("LspProgress", {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if not client or client.name ~= NAME then
        return
      end
      local token, value = ev.data.params.token, ev.data.params.value
      if type(value) ~= "table" then
        return
      end
      local r = M.rewrites[token]
      if value.kind == "begin" then
        r = { client = client, begun = true, title = value.title, percentage = 0 }
        M.rewrites[token] = r
        if M.cancel_next then
          M.cancel_next = nil
          r.cancel_requested = true
        end
        if r.cancel_requested then
          r.cancel_sent = true
          call(client, "notify", "window/workDoneProgress/cancel", { token = token })
        end
      elseif not r then
        return
      end
      r.message = value.message or r.message
      r.percentage = value.percentage or r.percentage
      if value.kind == "end" then
        r.done = true
        M.rewrites[token] = nil
      end
      if M.config.progress then
        local text = value.kind == "end" and string.format("%s: %s", r.title or "ditto", value.message or "done")
          or string.format("%s %d%% %s", r.title or "ditto", r.percentage or 0, r.message or "")
        vim.api.nvim_echo({ { text, "MoreMsg" } }, false, {})
      end
    end,
  })
end

--- The running rewrites' progress, for a statusline: "ditto: rewrite 42%" or "".
function M.progress()
  for _, r in pairs(M.rewrites) do
    if not r.done then
      return string.format("%s %d%%", r.title or "ditto", r.percentage or 0)
    end
  end
  return ""
end

function M.create_commands()
  vim.api.nvim_create_user_command("DittoRewrite", function(o)
    local opts = {}
    if o.range > 0 then
      opts.line1, opts.line2 = o.line1, o.line2
    end
    M.rewrite(o.args, opts)
  end, { nargs = "+", range = true, desc = "ditto: rewrite the buffer (or the range) with an instruction" })
  vim.api.nvim_create_user_command("DittoRewriteWorkspace", function(o)
    local glob, instruction = o.args:match("^(%S+)%s+(.+)$")
    if not glob then
      notify("usage: :DittoRewriteWorkspace {glob} {instruction}", vim.log.levels.ERROR)
      return
    end
    M.rewrite_workspace(glob, instruction)
  end, { nargs = "+", desc = "ditto: rewrite the files matching a glob with an instruction" })
  vim.api.nvim_create_user_command("DittoCancel", function()
    M.cancel()
  end, { desc = "ditto: cancel the running rewrites" })
  vim.api.nvim_create_user_command("DittoNextEdit", function()
    M.next_edit()
  end, { desc = "ditto: show the next edit the recent edits call for (<Tab> jumps to it, <Tab> applies it)" })
  vim.api.nvim_create_user_command("DittoStatus", function()
    M.status()
  end, { desc = "ditto: model, memory, sessions and drafter statistics" })
end

return M
