-- plugins/http.lua — the plain HTTP JSON step adapter (the default for a service without a price).
--
-- It does in Lua what the engine's built-in adapter (engine/exec/adapter.h) does in C, so the
-- two give the same request and the same outcome; copy it as the starting point of your own
-- adapter (docs/lua.md, "Step adapters").
--   prepare: the service's method (POST when unset); POST/PUT/PATCH send the bound inputs as a
--            JSON body, GET/DELETE as a query string. inputs_as lets C encode them, so JSON
--            nulls, empty objects and large integers reach the service unchanged. The engine
--            adds X-Workflow-Id, X-Step-Id and Idempotency-Key itself.
--   parse:   2xx with a JSON (or empty) body → the body is the output; 429 and 5xx → retry
--            (Retry-After in seconds honoured for 429/503, capped at 300 s); anything else →
--            the step fails. A 402 never gets here: the engine's payment path handles it.
--   compensate: the catalog record's compensate endpoint, if it declares one, with the body
--            {workflowId, stepId, output} (the same default as policies/rollback.lua).
-- The engine recognises this file, byte for byte, and then answers the calls whose result it
-- knows (the request, and a 2xx answer with a JSON or empty body) in C without running it
-- (engine/exec/step_adapter.c, "the shipped plugins"); any edit makes it run as Lua again.

local x = require "x402r"

function prepare(step, ctx)
  local method = step.service.method or "POST"
  if method == "GET" or method == "DELETE" then
    return { method = method, inputs_as = "query" }
  end
  return { method = method, inputs_as = "body" }
end

-- Retry-After as delta-seconds (an HTTP-date is left to the engine's own backoff).
local function retry_after_ms(headers)
  local v = headers["retry-after"]
  local s = v and tonumber(v:match("^%s*(%d+)%s*$"))
  if not s then return nil end
  if s > 300 then s = 300 end
  return s * 1000
end

local function snippet(response)
  local text = response.body
  if response.json then text = x.json.encode(response.body) or "" end
  if type(text) ~= "string" then return "" end
  return (text:sub(1, 160):gsub("[^\32-\126]", " "))
end

function parse(response, ctx)
  local status = response.status
  if status >= 200 and status < 300 then
    if response.json or response.body == "" then return { output_from = "body" } end
    return { error = "service answered " .. status .. " with a body that is not JSON" }
  end
  local why = "service answered HTTP " .. status .. ": " .. snippet(response)
  if status == 429 or status >= 500 then
    local delay = nil
    if status == 429 or status == 503 then delay = retry_after_ms(response.headers) end
    return { retry = true, delay = delay, error = why }
  end
  return { error = why }
end

function compensate(step, ctx)
  local c = step.service.compensate
  if not c then return nil end
  return { url = c.url, method = c.method or "POST",
           body = { workflowId = step.workflowId, stepId = step.id, output = step.output } }
end
