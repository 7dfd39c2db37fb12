-- lua/x402r.lua — the library policy and plugin authors load with `require "x402r"`.
--
-- One table per concern (json, log, time, schema) plus decision constructors, in the manner of
-- OpenResty's ngx.*: small, documented in docs/lua.md, no engine pointers anywhere. The C half
-- (x402r.core, registered by engine/lua/lua.c) does JSON through lua-cjson, logging and time;
-- everything else is plain Lua so authors can read what a constructor builds. The returned
-- table is frozen by `require`, so one policy cannot change the library under another.
-- Cost: constructors validate their arguments (a few comparisons); schema.check walks the
-- value once.

local core = require "x402r.core"

local M = {}

M.null = core.null
M.json = { encode = core.json_encode, decode = core.json_decode, null = core.null }
M.log = { debug = core.log_debug, info = core.log_info, warn = core.log_warn, error = core.log_error }
M.time = { now_ms = core.now_ms }
M.copy = core.copy
M.is_view = core.is_view

local floor, huge = math.floor, math.huge

local function is_integer(v)
  return type(v) == "number" and v == floor(v) and v > -huge and v < huge
end

-- Atomic amounts arrive as decimal strings ("1500000") or numbers; nil if neither.
function M.amount(v)
  if type(v) == "number" then
    if is_integer(v) and v >= 0 then return v end
    return nil
  end
  if type(v) == "string" and v:match("^%d+$") and #v <= 15 then return tonumber(v) end
  return nil
end

---------------------------------------------------------------------------- schema

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n == #t
end

local function type_matches(v, want)
  local tv = type(v)
  if want == "null" then return v == nil or v == core.null end
  if want == "integer" then return is_integer(v) end
  if want == "number" then return tv == "number" end
  if want == "string" or want == "boolean" then return tv == want end
  if want == "array" then return tv == "table" and is_array(v) end
  if want == "object" then return tv == "table" and (next(v) == nil or not is_array(v)) end
  return false
end

local function check(v, s, path)
  if type(s) ~= "table" then return true end
  if s.type ~= nil then
    local ok = false
    if type(s.type) == "table" then
      for _, t in ipairs(s.type) do ok = ok or type_matches(v, t) end
    else
      ok = type_matches(v, s.type)
    end
    if not ok then
      local want = type(s.type) == "table" and table.concat(M.copy(s.type), "|") or s.type
      return false, path .. ": expected " .. want
    end
  end
  if s.enum ~= nil then
    local found = false
    for _, e in ipairs(s.enum) do found = found or e == v end
    if not found then return false, path .. ": not one of the allowed values" end
  end
  if type(v) == "number" then
    if s.minimum ~= nil and v < s.minimum then return false, path .. ": below the minimum " .. s.minimum end
    if s.maximum ~= nil and v > s.maximum then return false, path .. ": above the maximum " .. s.maximum end
  end
  if type(v) == "table" then
    if s.required ~= nil then
      for _, k in ipairs(s.required) do
        if v[k] == nil then return false, path .. "." .. k .. ": required" end
      end
    end
    if s.properties ~= nil then
      for k, sub in pairs(s.properties) do
        if v[k] ~= nil then
          local ok, err = check(v[k], sub, path .. "." .. k)
          if not ok then return false, err end
        end
      end
    end
    if s.items ~= nil and is_array(v) then
      for i = 1, #v do
        local ok, err = check(v[i], s.items, path .. "[" .. i .. "]")
        if not ok then return false, err end
      end
    end
  end
  return true
end

-- schema.check(value, schema) → true | false, "path: problem"
M.schema = {
  check = function(value, schema) return check(value, schema, "value") end,
}

---------------------------------------------------------------------------- decisions

local function need(cond, msg)
  if not cond then error(msg, 3) end
end

function M.retry(delay_ms)
  need(type(delay_ms) == "number" and delay_ms >= 0 and delay_ms < huge, "retry: delay_ms must be a number >= 0")
  return { action = "retry", delayMs = floor(delay_ms + 0.5) }
end

function M.giveup(reason)
  need(type(reason) == "string" and reason ~= "", "giveup: reason must be a non-empty string")
  return { action = "giveup", reason = reason }
end

function M.approve_auto(reason)
  need(reason == nil or type(reason) == "string", "approve_auto: reason must be a string")
  return { action = "auto", reason = reason }
end

function M.approve_manual(expires_ms, reason)
  need(is_integer(expires_ms) and expires_ms >= 1000, "approve_manual: expires_ms must be an integer >= 1000")
  need(reason == nil or type(reason) == "string", "approve_manual: reason must be a string")
  return { action = "manual", expiresMs = expires_ms, reason = reason }
end

function M.deny(reason)
  need(type(reason) == "string" and reason ~= "", "deny: reason must be a non-empty string")
  return { action = "deny", reason = reason }
end

local methods = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

function M.compensate(url, method, body)
  need(type(url) == "string" and (url:match("^https?://") ~= nil), "compensate: url must be an http(s) URL")
  method = method and string.upper(method) or "POST"
  need(methods[method], "compensate: method must be GET, POST, PUT, PATCH or DELETE")
  return { url = url, method = method, body = body }
end

return M
