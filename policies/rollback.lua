-- policies/rollback.lua — the default compensation plan for a failed or cancelled workflow.
--
-- plan(workflow) returns one compensation per succeeded step that declares how to undo it
-- (step.compensate = {url, method?, body?}, from the service's catalog record or an adapter),
-- in reverse dependency order: a step is undone only after every step that depends on it,
-- directly or through other steps. Among independent steps, later steps (in plan order) go
-- first. The default body tells the service what to undo: {workflowId, stepId, output}.
-- O(steps + dependencies): one depth-first pass.

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
