-- policies/approval.lua — the default approval policy: run a planned workflow at once, ask the
-- user, or refuse.
--
-- decide(workflow, estimate, limits): estimate is the plan's cost in atomic units (string or
-- number); limits.maxCost is the user's cap for this workflow, limits.available what the user
-- can still spend (both optional), limits.autoApproveBelow the threshold under which no human
-- is asked (default 1 USDC = 1000000 atomic units). Over either limit: deny. Under the
-- threshold: auto (the escrow hold is still taken). Otherwise: manual, expiring in 15 minutes.

local x = require "x402r"

local DEFAULT_AUTO_BELOW = 1000000   -- atomic units (USDC has 6 decimals)
local MANUAL_EXPIRY_MS = 15 * 60 * 1000

function decide(workflow, estimate, limits)
  limits = limits or {}
  local cost = x.amount(estimate)
  if not cost then return x.deny("the estimate is not an amount") end

  local max_cost = x.amount(limits.maxCost)
  if max_cost and cost > max_cost then
    return x.deny("estimate " .. estimate .. " exceeds the workflow limit " .. limits.maxCost)
  end
  local available = x.amount(limits.available)
  if available and cost > available then
    return x.deny("estimate " .. estimate .. " exceeds the available balance " .. limits.available)
  end

  local auto_below = x.amount(limits.autoApproveBelow) or DEFAULT_AUTO_BELOW
  if cost < auto_below then
    return x.approve_auto("under the auto-approval threshold")
  end
  return x.approve_manual(MANUAL_EXPIRY_MS, "needs the user's approval")
end
