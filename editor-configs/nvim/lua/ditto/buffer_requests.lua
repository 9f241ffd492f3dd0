-- What the ghost text (init.lua) and the next-edit suggestions (next_edit.lua)
-- both keep per buffer: the request in flight, a debounce timer, and keys
-- that fall back to their plain meaning when there is nothing to act on.
local M = {}

local function call(client, method, ...)
  return require("ditto").call(client, method, ...)
end

--- One request in flight per buffer, and a debounce timer per buffer.
function M.new()
  local self = { pending = {}, timers = {} }

  --- Remembers the request a buffer waits for (call's ok, id).
  function self.track(bufnr, client, ok, id)
    if ok then
      self.pending[bufnr] = { client = client, id = id }
    end
  end

  --- The answer to request `id` arrived: it is no longer in flight.
  function self.answered(bufnr, id)
    if self.pending[bufnr] and self.pending[bufnr].id == id then
      self.pending[bufnr] = nil
    end
  end

  function self.cancel(bufnr)
    local p = self.pending[bufnr]
    if p then
      pcall(call, p.client, "cancel_request", p.id)
      self.pending[bufnr] = nil
    end
  end

  --- Runs fn() once `ms` pass without another call for this buffer, if the
  --- buffer is still the current one and no completion menu is open or filling.
  function self.debounce(bufnr, ms, fn)
    local timer = self.timers[bufnr] or vim.uv.new_timer()
    self.timers[bufnr] = timer
    timer:stop()
    timer:start(ms, 0, vim.schedule_wrap(function()
      if vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_get_current_buf() == bufnr
        and vim.fn.pumvisible() == 0 and vim.fn.complete_info({ "mode" }).mode == "" then
        fn()
      end
    end))
  end

  --- The buffer is gone.
  function self.forget(bufnr)
    self.pending[bufnr] = nil
    if self.timers[bufnr] then
      self.timers[bufnr]:close()
      self.timers[bufnr] = nil
    end
  end

  return self
end

--- Maps lhs (buffer-local) to fn(bufnr); when fn returns false and `fallback`
--- is set, the key does what it does without the mapping.
function M.map(modes, lhs, bufnr, fn, fallback, desc)
  if not lhs or lhs == "" then
    return
  end
  vim.keymap.set(modes, lhs, function()
    if not fn(bufnr) and fallback then
      vim.api.nvim_feedkeys(vim.keycode(lhs), "n", false)
    end
  end, { buffer = bufnr, desc = desc })
end

return M
