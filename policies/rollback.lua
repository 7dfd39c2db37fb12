-- policies/rollback.lua — the default compensation plan for a failed or cancelled workflow.
--
-- plan(workflow) returns one compensation per succeeded step that declares how to undo it
-- (step.compensate = {url, method?, body?}, from the service's catalog record or an adapter),
-- in reverse dependency order: a step is undone only after every step that depends on it,
-- directly or through other steps. Among independent steps, later steps (in plan order) go
-- first. The default body tells the service what to undo: {workflowId, stepId, output}.
-- O(steps + dependencies): one depth-first pass.
--
-- retry(step, err, attempt) decides about a compensation attempt that failed, with the same
-- arguments and decisions as retry.decide (x.retry(ms) or x.giveup(reason)). Undoing matters
-- more than running did: network errors, timeouts, 408, 429 and 5xx are retried up to
-- step.maxAttempts (COMPENSATE_MAX_ATTEMPTS) with backoff, never sooner than Retry-After; any
-- other answer is final (a 4xx means the service refuses, a 402 that it wants to be paid, and
-- the engine never pays to undo).

local x = require "x402r"

function plan(workflow)
  local steps = workflow.steps or {}
  local index = {}
  for i, s in ipairs(steps) do index[s.id] = i end

  -- topological order, dependencies first (a cycle, which the planner forbids, is cut)
  local state, order = {}, {}
  local function visit(i)
    if state[i] then return end
    state[i] = "visiting"
    for _, dep in ipairs(steps[i].dependsOn or {}) do
      local j = index[dep]
      if j then visit(j) end
    end
    state[i] = "done"
    order[#order + 1] = i
  end
  for i = 1, #steps do visit(i) end

  local out = {}
  for k = #order, 1, -1 do
    local s = steps[order[k]]
    local comp = s.compensate
    if s.status == "succeeded" and type(comp) == "table" and comp.url then
      local c = x.compensate(comp.url, comp.method,
                             comp.body or { workflowId = workflow.id, stepId = s.id, output = s.output })
      c.step = s.id
      out[#out + 1] = c
    end
  end
  return out
end

local function retryable(err)
  if type(err) ~= "table" then return false end
  if err.class == "network" or err.class == "timeout" then return true end
  local status = tonumber(err.status)
  return err.class == "status" and status ~= nil and (status == 408 or status == 429 or (status >= 500 and status <= 599))
end

function retry(step, err, attempt)
  attempt = tonumber(attempt) or 1
  local max = tonumber(type(step) == "table" and step.maxAttempts or nil) or 5
  if not retryable(err) then
    return x.giveup("the compensation endpoint refused (" .. tostring(err and (err.status or err.class)) .. ")")
  end
  if attempt >= max then return x.giveup("gave up after " .. attempt .. " attempts") end
  local b = type(step) == "table" and step.backoff or nil
  local base = tonumber(b and b.baseMs) or 500
  local factor = tonumber(b and b.factor) or 2
  local cap = tonumber(b and b.maxDelayMs) or 30000
  local delay = math.random(0, math.floor(math.min(cap, base * factor ^ (attempt - 1))))
  local retry_after = tonumber(err.retryAfterMs)
  if retry_after and retry_after > delay then delay = math.ceil(retry_after) end
  return x.retry(delay)
end
