-- tests/lua/rollback_test.lua — unit tests of policies/rollback.lua
local t = require "testlib"
local rollback = require "rollback"

local function steps_of(plan)
  local ids = {}
  for i, c in ipairs(plan) do ids[i] = c.step end
  return table.concat(ids, ",")
end

local function undo(url) return { url = url } end

function test_chain_is_undone_last_first()
  local wf = { id = "wf_1", steps = {
    { id = "a", status = "succeeded", compensate = undo("http://s/a") },
    { id = "b", status = "succeeded", dependsOn = { "a" }, compensate = undo("http://s/b") },
    { id = "c", status = "succeeded", dependsOn = { "b" }, compensate = undo("http://s/c") },
  } }
  t.eq(steps_of(rollback.plan(wf)), "c,b,a")
end

function test_dependency_order_beats_list_order()
  local wf = { id = "wf_2", steps = {
    { id = "late", status = "succeeded", dependsOn = { "early" }, compensate = undo("http://s/l") },
    { id = "early", status = "succeeded", compensate = undo("http://s/e") },
  } }
  t.eq(steps_of(rollback.plan(wf)), "late,early")
end

function test_transitive_through_uncompensable_steps()
  local wf = { id = "wf_3", steps = {
    { id = "a", status = "succeeded", compensate = undo("http://s/a") },
    { id = "m", status = "succeeded", dependsOn = { "a" } },              -- cannot be undone
    { id = "z", status = "succeeded", dependsOn = { "m" }, compensate = undo("http://s/z") },
    { id = "b", status = "succeeded", compensate = undo("http://s/b") },
  } }
  local p = rollback.plan(wf)
  t.eq(steps_of(p), "b,z,a")
end

function test_only_succeeded_steps_and_defaults()
  local wf = { id = "wf_4", steps = {
    { id = "a", status = "succeeded", output = { ticket = "T1" }, compensate = { url = "http://s/a", method = "delete" } },
    { id = "b", status = "failed", compensate = undo("http://s/b") },
    { id = "c", status = "cancelled", compensate = undo("http://s/c") },
    { id = "d", status = "succeeded", compensate = { url = "http://s/d", body = { custom = true } } },
  } }
  local p = rollback.plan(wf)
  t.eq(steps_of(p), "d,a")
  t.eq(p[2].method, "DELETE")
  t.eq(p[2].body.workflowId, "wf_4")
  t.eq(p[2].body.output.ticket, "T1")
  t.eq(p[1].method, "POST")
  t.eq(p[1].body.custom, true)
end

function test_empty_and_cyclic()
  t.eq(#rollback.plan({ id = "wf_5" }), 0)
  local wf = { id = "wf_6", steps = {
    { id = "a", status = "succeeded", dependsOn = { "b" }, compensate = undo("http://s/a") },
    { id = "b", status = "succeeded", dependsOn = { "a" }, compensate = undo("http://s/b") },
  } }
  t.eq(#rollback.plan(wf), 2) -- a cycle is cut, both are still undone
end

local backoff = { baseMs = 100, factor = 2, maxDelayMs = 1000 }

function test_retry_transient_failures_within_the_bound()
  local st = { id = "a", maxAttempts = 4, backoff = backoff }
  local d = rollback.retry(st, { class = "status", status = 503 }, 1)
  t.eq(d.action, "retry")
  t.ok(d.delayMs >= 0 and d.delayMs <= 100, "first delay within base")
  t.eq(rollback.retry(st, { class = "network" }, 3).action, "retry")
  t.eq(rollback.retry(st, { class = "timeout" }, 4).action, "giveup")
  t.eq(rollback.retry(st, { class = "status", status = 429, retryAfterMs = 5000 }, 1).delayMs, 5000)
end

function test_retry_refusals_are_final()
  local st = { id = "a", maxAttempts = 4, backoff = backoff }
  t.eq(rollback.retry(st, { class = "status", status = 400 }, 1).action, "giveup")
  t.eq(rollback.retry(st, { class = "status", status = 402 }, 1).action, "giveup")
  t.eq(rollback.retry(st, { class = "status", status = 404 }, 1).action, "giveup")
end
