-- Next-edit suggestions (ditto/nextEdit) shown in place.
--
-- After an edit pauses (debounced; never while the completion menu is open)
-- the plugin asks the server for the next edit the recent ones call for. The
-- answer replaces whole lines: the text it would delete is highlighted with
-- extmarks and its new lines are shown as virtual lines below. <Tab> jumps to
-- it, a second <Tab> applies it (at once when the cursor is already there);
-- <Esc> in normal mode, or any other edit, dismisses it.
local buffer_requests = require("ditto.buffer_requests")

local M = {}

local ns = vim.api.nvim_create_namespace("ditto_next_edit")
local METHOD = "ditto/nextEdit"

-- bufnr -> { result, tick, encoding, jumped }: the suggestion shown
local shown = {}
local requests = buffer_requests.new()
local attached = {}

local function ditto()
  return require("ditto")
end

local function options()
  return ditto().config.next_edit
end

function M.clear(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
  shown[bufnr] = nil
end

--- The suggestion shown in the buffer (a NextEditResult of lsp_ext.ts), or nil.
function M.suggestion(bufnr)
  local s = shown[bufnr or vim.api.nvim_get_current_buf()]
  return s and s.result or nil
end

local function new_lines(result)
  local lines = vim.split(result.newText, "\n", { plain = true })
  if result.newText:sub(-1) == "\n" then
    table.remove(lines)
  end
  return lines
end

-- The old lines' changed parts highlighted, the new lines as virtual lines after them.
local function render(bufnr, result)
  local opts = options()
  local first, last = result.range.start.line, result.range["end"].line
  if result.range["end"].character > 0 then
    last = last + 1 -- the range runs to the end of a text without a final newline
  end
  local old = vim.api.nvim_buf_get_lines(bufnr, first, last, false)
  local new = new_lines(result)
  for i, line in ipairs(old) do
    local other = new[i] or ""
    local head = 0
    while head < math.min(#line, #other) and line:byte(head + 1) == other:byte(head + 1) do
      head = head + 1
    end
    local tail = 0
    while tail < math.min(#line, #other) - head and line:byte(#line - tail) == other:byte(#other - tail) do
      tail = tail + 1
    end
    if new[i] == nil then
      head, tail = 0, 0
    end
    if #line - tail > head then
      vim.api.nvim_buf_set_extmark(bufnr, ns, first + i - 1, head,
        { end_col = #line - tail, hl_group = opts.hl_delete, priority = 200 })
    end
  end
  local virt = {}
  for _, line in ipairs(new) do
    table.insert(virt, { { line, opts.hl_add } })
  end
  if #virt > 0 then
    local anchor = math.max(first, last - 1)
    vim.api.nvim_buf_set_extmark(bufnr, ns, math.min(anchor, vim.api.nvim_buf_line_count(bufnr) - 1), 0,
      { virt_lines = virt, virt_lines_above = #old == 0 })
  end
end

--- Asks for the next edit at the cursor; the answer is shown if the buffer did not change meanwhile.
--- on_done(err, result) gets the server's answer (nil: no suggestion).
function M.request(bufnr, on_done)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = ditto().client(bufnr)
  if not client then
    return false
  end
  requests.cancel(bufnr)
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding or "utf-16")
  local ok, id = ditto().call(client, "request", METHOD, params, function(err, result)
    requests.answered(bufnr, id)
    if result == vim.NIL then
      result = nil
    end
    if not err and result and vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_buf_get_changedtick(bufnr) == tick then
      M.clear(bufnr)
      shown[bufnr] = { result = result, tick = tick, encoding = client.offset_encoding or "utf-16" }
      render(bufnr, result)
    end
    if on_done then
      on_done(err, result)
    end
  end, bufnr)
  requests.track(bufnr, client, ok, id)
  return ok
end

local function jump_position(bufnr, s)
  local jump = s.result.jump
  local line = vim.api.nvim_buf_get_lines(bufnr, jump.line, jump.line + 1, false)[1] or ""
  return jump.line + 1, ditto().byte_col(line, jump.character, s.encoding)
end

--- <Tab>: jump to the suggestion, or apply it when the cursor is there. False if none is shown.
function M.tab(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = shown[bufnr]
  if not s or vim.api.nvim_buf_get_changedtick(bufnr) ~= s.tick then
    return false
  end
  local row, col = jump_position(bufnr, s)
  local cursor = vim.api.nvim_win_get_cursor(0)
  if not s.jumped and (cursor[1] ~= row or cursor[2] ~= col) then
    s.jumped = true
    vim.api.nvim_win_set_cursor(0, { row, col })
    return true
  end
  M.clear(bufnr)
  vim.lsp.util.apply_text_edits({ { range = s.result.range, newText = s.result.newText } }, bufnr, s.encoding)
  row, col = jump_position(bufnr, s)
  vim.api.nvim_win_set_cursor(0, { row, col })
  return true
end

--- <Esc>: dismisses the suggestion shown. False if none is.
function M.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  requests.cancel(bufnr)
  local had = shown[bufnr] ~= nil
  M.clear(bufnr)
  return had
end

function M.attach(bufnr)
  if attached[bufnr] then
    return
  end
  attached[bufnr] = true
  local group = vim.api.nvim_create_augroup("ditto_next_edit_" .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ "TextChanged", "TextChangedI" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      requests.cancel(bufnr)
      M.clear(bufnr)
      if options().auto then
        requests.debounce(bufnr, options().debounce_ms, function()
          if not ditto().inline.visible(bufnr) then -- Tab belongs to the ghost text then
            M.request(bufnr)
          end
        end)
      end
    end,
  })
  vim.api.nvim_create_autocmd("BufLeave", {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd("BufWipeout", {
    group = group,
    buffer = bufnr,
    callback = function()
      attached[bufnr], shown[bufnr] = nil, nil
      requests.forget(bufnr)
    end,
  })
  local keys = options().keys
  -- In insert mode the ghost text's accept key comes first and falls back to M.tab (init.lua).
  local inline = ditto().config.inline
  local insert_taken = inline.enable and (inline.keys or {}).accept == keys.accept
  buffer_requests.map(insert_taken and "n" or { "n", "i" }, keys.accept, bufnr, M.tab, true,
    "ditto: jump to the next edit, then apply it")
  buffer_requests.map("n", keys.dismiss, bufnr, M.dismiss, true, "ditto: dismiss the next edit")
end

return M
