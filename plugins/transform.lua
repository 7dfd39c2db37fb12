-- plugins/transform.lua — the "transform" step adapter: reshapes values (usually outputs of
-- earlier steps, bound into this step's inputs) in pure Lua. No network, no payment, nothing to
-- undo. Use it with a catalog record {"id": "...", "adapter": "transform"} (no url, no price).
--
-- The step's inputs are one operation: {op = NAME, from = VALUE, ...}. Paths are dot-separated
-- keys with [n] for array positions counted from 0: "user.address.city", "items[0].name".
--   get      {op="get", from=v, path="a.b[0]", default?=d}   the value at path (default if absent)
--   pick     {op="pick", from=obj, fields=["a","b"]}         only these keys (absent ones skipped)
--   omit     {op="omit", from=obj, fields=["a"]}             every key but these
--   rename   {op="rename", from=obj, map={old="new"}}        the object with keys renamed
--   merge    {op="merge", from=[obj1, obj2, ...]}            shallow merge, later objects win
--   shape    {op="shape", from=v, fields={out="path", ...}}  a new object, each field read by path
--   template {op="template", from=v, template="Hi ${name}"}  a string; ${path} is read from `from`
--                                                            (tables as JSON; absent: an error)
--   map      {op="map", from=[...], apply={op=...}}          apply (an operation without `from`)
--                                                            to each element
--   pipe     {op="pipe", from=v, steps=[{op=...}, ...]}      each operation applied to the result
--                                                            of the one before
-- The result is the step's output. A bad operation fails the step with a reason naming it.
-- Limits: operations nest (map, pipe) at most 8 deep; the runtime's instruction budget and
-- memory cap bound the rest. JSON null reads as absent; an empty object comes out as [].

local x = require "x402r"

local MAX_DEPTH = 8

local function fail(msg) error({ transform = msg }, 0) end

local function is_table(v) return type(v) == "table" end

-- "a.b[0].c" → { "a", "b", 1, "c" } (array positions become Lua indexes)
local function split_path(path)
  if type(path) ~= "string" or path == "" then fail("path must be a non-empty string") end
  local parts, pos = {}, 1
  while pos <= #path do
    local key, rest = path:match("^([^%.%[%]]+)()", pos)
    if key then
      parts[#parts + 1] = key
      pos = rest
    else
      local n, after = path:match("^%[(%d+)%]()", pos)
      if not n then fail("bad path '" .. path .. "' at position " .. pos) end
      parts[#parts + 1] = tonumber(n) + 1
      pos = after
    end
    if pos <= #path then
      if path:sub(pos, pos) == "." then
        pos = pos + 1
        if pos > #path then fail("bad path '" .. path .. "': ends with '.'") end
      elseif path:sub(pos, pos) ~= "[" then
        fail("bad path '" .. path .. "' at position " .. pos)
      end
    end
  end
  return parts
end

local function get_path(v, path)
  for _, k in ipairs(split_path(path)) do
    if not is_table(v) then return nil end
    v = v[k]
    if v == x.null then return nil end
  end
  return v
end

local function need_object(v, op)
  if not is_table(v) then fail(op .. ": from must be an object") end
  return v
end

local function need_list(v, what)
  if not is_table(v) then fail(what .. " must be an array") end
  for k in pairs(v) do
    if type(k) ~= "number" then fail(what .. " must be an array") end
  end
  return v
end

local function copy_of(v)
  if is_table(v) then return x.copy(v) end
  return v
end

local apply

local ops = {}

function ops.get(t)
  local v = get_path(t.from, t.path)
  if v == nil then return t.default end
  return copy_of(v)
end

function ops.pick(t)
  local from, out = need_object(t.from, "pick"), {}
  for _, f in ipairs(need_list(t.fields, "pick: fields")) do
    if type(f) ~= "string" then fail("pick: fields must be strings") end
    if from[f] ~= nil then out[f] = copy_of(from[f]) end
  end
  return out
end

function ops.omit(t)
  local from, drop, out = need_object(t.from, "omit"), {}, {}
  for _, f in ipairs(need_list(t.fields, "omit: fields")) do drop[f] = true end
  for k, v in pairs(from) do
    if not drop[k] then out[k] = copy_of(v) end
  end
  return out
end

function ops.rename(t)
  local from, map, out = need_object(t.from, "rename"), t.map, {}
  if not is_table(map) then fail("rename: map must be an object {old = \"new\"}") end
  for k, v in pairs(from) do
    local to = map[k]
    if to ~= nil and type(to) ~= "string" then fail("rename: map values must be strings") end
    out[to or k] = copy_of(v)
  end
  return out
end

function ops.merge(t)
  local out = {}
  for i, o in ipairs(need_list(t.from, "merge: from")) do
    if not is_table(o) then fail("merge: element " .. (i - 1) .. " is not an object") end
    for k, v in pairs(o) do out[k] = copy_of(v) end
  end
  return out
end

function ops.shape(t)
  if not is_table(t.fields) then fail("shape: fields must be an object {out = \"path\"}") end
  local out = {}
  for k, path in pairs(t.fields) do out[k] = copy_of(get_path(t.from, path)) end
  return out
end

function ops.template(t)
  if type(t.template) ~= "string" then fail("template: template must be a string") end
  return (t.template:gsub("%${([^}]*)}", function(path)
    local v = get_path(t.from, path)
    if v == nil then fail("template: ${" .. path .. "} is not set") end
    if is_table(v) then return x.json.encode(v) end
    if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%d", v)
    end
    return tostring(v)
  end))
end

local function with_from(op, from)
  if not is_table(op) or op.from ~= nil then fail("a nested operation must be an object without from") end
  local t = x.copy(op)
  t.from = from
  return t
end

function ops.map(t, depth)
  local out = {}
  for i, v in ipairs(need_list(t.from, "map: from")) do
    if v == x.null then v = nil end
    out[i] = apply(with_from(t.apply, v), depth + 1)
    if out[i] == nil then out[i] = x.null end
  end
  return out
end

function ops.pipe(t, depth)
  local v = t.from
  for _, step in ipairs(need_list(t.steps, "pipe: steps")) do v = apply(with_from(step, v), depth + 1) end
  return v
end

apply = function(t, depth)
  if depth > MAX_DEPTH then fail("operations nested more than " .. MAX_DEPTH .. " deep") end
  if not is_table(t) then fail("the inputs must be an operation {op = ..., from = ...}") end
  local f = ops[t.op]
  if not f then fail("unknown op '" .. tostring(t.op) .. "'") end
  return f(t, depth)
end

-- run(operation) → result | nil, why — for tests and for other plugins (require "transform").
function run(op)
  local ok, res = pcall(apply, op, 1)
  if ok then return res end
  if type(res) == "table" and res.transform then return nil, res.transform end
  error(res, 0)
end

function prepare(step, ctx)
  local out, why = run(step.inputs)
  if why then return { error = "transform: " .. why } end
  if out == nil then out = x.null end
  return { output = out }
end
