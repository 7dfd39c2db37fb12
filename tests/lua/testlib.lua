-- tests/lua/testlib.lua — assertions for the Lua unit tests (loaded with require "testlib").
local M = {}

function M.eq(got, want, msg)
  if got ~= want then
    error((msg and msg .. ": " or "") .. "expected " .. tostring(want) .. ", got " .. tostring(got), 2)
  end
end

function M.ok(cond, msg)
  if not cond then error(msg or "assertion failed", 2) end
end

return M
