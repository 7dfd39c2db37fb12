-- tests/lua/approval_test.lua — unit tests of policies/approval.lua
local t = require "testlib"
local approval = require "approval"

function test_small_estimates_are_auto_approved()
  t.eq(approval.decide({}, "999999", {}).action, "auto")
  t.eq(approval.decide({}, 0, { maxCost = "5000000" }).action, "auto")
end

function test_threshold_and_expiry()
  local d = approval.decide({}, "1000000", {})
  t.eq(d.action, "manual")
  t.eq(d.expiresMs, 15 * 60 * 1000)
  t.eq(approval.decide({}, "150", { autoApproveBelow = "200" }).action, "auto")
  t.eq(approval.decide({}, "250", { autoApproveBelow = 200 }).action, "manual")
end

function test_limits_deny()
  local d = approval.decide({}, "6000000", { maxCost = "5000000" })
  t.eq(d.action, "deny")
  t.ok(d.reason:find("limit"), "reason names the limit")
  t.eq(approval.decide({}, "100", { available = "50" }).action, "deny")
  t.eq(approval.decide({}, "5000000", { maxCost = "5000000" }).action, "manual") -- at the limit is allowed
end

function test_garbage_estimate_is_denied()
  t.eq(approval.decide({}, "-5", {}).action, "deny")
  t.eq(approval.decide({}, "1.5", {}).action, "deny")
  t.eq(approval.decide({}, nil, nil).action, "deny")
end
