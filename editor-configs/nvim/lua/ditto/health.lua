-- :checkhealth ditto
local M = {}

local health = vim.health

function M.check()
  health.start("ditto: Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. tostring(vim.version()) .. (vim.fn.has("nvim-0.11") == 1 and " (vim.lsp.config / vim.lsp.enable)" or " (vim.lsp.start)"))
  else
    health.error("Neovim 0.10 or newer is needed (found " .. tostring(vim.version()) .. ")")
  end

  local ok, ditto = pcall(require, "ditto")
  if not ok then
    health.error("require('ditto') failed: " .. tostring(ditto))
    return
  end

  health.start("ditto: server")
  local cmd = ditto.config.cmd or { "ditto", "serve" }
  local exe = cmd[1]
  if vim.fn.executable(exe) == 1 then
    health.ok("server executable: " .. vim.fn.exepath(exe))
    local res = vim.system({ exe, "serve", "--help" }, { text = true }):wait(20000)
    if res.code == 0 then
      health.ok("`" .. exe .. " serve --help` works")
    else
      health.error("`" .. exe .. " serve --help` failed (exit " .. tostring(res.code) .. "): " .. vim.trim(res.stderr or ""),
        { "Is this ditto with the language server? pip install --upgrade ditto", "Or set cmd in require('ditto').setup{ cmd = { '/path/to/ditto', 'serve' } }" })
    end
  else
    health.error("`" .. exe .. "` is not executable or not on $PATH",
      { "pip install ditto", "or require('ditto').setup{ cmd = { '/path/to/venv/bin/ditto', 'serve' } }" })
  end

  local settings = ditto.config.settings or {}
  local keys = vim.tbl_keys(settings)
  table.sort(keys)
  if #keys == 0 then
    health.info("server settings: the server's defaults")
  else
    local parts = {}
    for _, k in ipairs(keys) do
      table.insert(parts, k .. "=" .. vim.inspect(settings[k]))
    end
    health.info("server settings: " .. table.concat(parts, ", ") .. " (the server reports invalid ones with a message)")
  end

  health.start("ditto: client")
  local clients = vim.lsp.get_clients({ name = "ditto" })
  if #clients == 0 then
    health.warn("no ditto client is running (open a file; it starts on FileType)")
  else
    for _, c in ipairs(clients) do
      local caps = c.server_capabilities or {}
      local cmds = vim.tbl_get(caps, "executeCommandProvider", "commands") or {}
      health.ok(string.format("client %d: %d buffer(s), inline completion %s, commands %s", c.id,
        vim.tbl_count(c.attached_buffers or {}), caps.inlineCompletionProvider and "yes" or "no",
        table.concat(cmds, ", ")))
    end
  end
end

return M
