-- tests/lua/approval_test.lua — unit tests of policies/approval.lua
local t = require "testlib"
local approval = require "approval"

function test_nothing_is_auto_approved_by_default()
  local d = approval.decide({}, "1", {})
  t.eq(d.action, "manual")
  t.eq(d.expiresMs, 15 * 60 * 1000)
  t.eq(approval.decide({}, "0", { approvalTtlMs = 60000 }).expiresMs, 60000)
end

function test_threshold()
  t.eq(approval.decide({}, "150", { autoApproveBelow = "200" }).action, "auto")
  t.eq(approval.decide({}, 0, { autoApproveBelow = "1", maxCost = "5000000" }).action, "auto")
  t.eq(approval.decide({}, "250", { autoApproveBelow = 200 }).action, "manual")
  t.eq(approval.decide({}, "200", { autoApproveBelow = 200 }).action, "manual") -- strictly under
end

function test_limits()
  local d = approval.decide({}, "6000000", { maxCost = "5000000" })
  t.eq(d.action, "deny")
  t.ok(d.reason:find("limit"), "reason names the limit")
  t.eq(approval.decide({}, "5000000", { maxCost = "5000000" }).action, "manual") -- at the limit is allowed
  -- unaffordable is never auto: the user may top up and approve
  local u = approval.decide({}, "100", { available = "50", autoApproveBelow = "1000" })
  t.eq(u.action, "manual")
  t.ok(u.reason:find("top up"), "reason says what to do")
  t.eq(approval.decide({}, "100", { available = "100", autoApproveBelow = "1000" }).action, "auto")
end

function test_garbage_estimate_is_denied()
  t.eq(approval.decide({}, "-5", {}).action, "deny")
  t.eq(approval.decide({}, "1.5", {}).action, "deny")
  t.eq(approval.decide({}, nil, nil).action, "deny")
end
