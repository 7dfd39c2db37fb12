-- policies/approval.lua — the default approval policy: run a planned workflow at once, ask the
-- user, or refuse.
--
-- decide(workflow, estimate, limits) is called once a plan is stored (workflow.awaiting_approval).
-- workflow is {id, userId, input, plan, estimatedCost, maxCost}; estimate the plan's cost in
-- atomic units (string); limits:
--   maxCost           the user's cap for this workflow (absent: none)
--   available         what the user's escrow can still spend (atomic units)
--   autoApproveBelow  AUTO_APPROVE_BELOW: estimates under it need no human (default 0: never)
--   approvalTtlMs     APPROVAL_TTL_MS: how long a manual approval stays open
-- Over maxCost: deny. Under the auto threshold and affordable: auto (the escrow hold is still
-- taken, exactly as for a manual approve). Otherwise manual, expiring after approvalTtlMs; an
-- estimate over the available balance stays manual (the user may top up, then approve).

local x = require "x402r"

local DEFAULT_TTL_MS = 15 * 60 * 1000

function decide(workflow, estimate, limits)
  limits = limits or {}
  local cost = x.amount(estimate)
  if not cost then return x.deny("the estimate is not an amount") end

  local max_cost = x.amount(limits.maxCost)
  if max_cost and cost > max_cost then
    return x.deny("estimate " .. estimate .. " exceeds the workflow limit " .. limits.maxCost)
  end
  local ttl = x.amount(limits.approvalTtlMs) or DEFAULT_TTL_MS
  if ttl < 1000 then ttl = 1000 end
  local available = x.amount(limits.available)
  if available and cost > available then
    return x.approve_manual(ttl, "estimate " .. estimate .. " exceeds the available balance " ..
                            tostring(limits.available) .. ": top up, then approve")
  end
  local auto_below = x.amount(limits.autoApproveBelow) or 0
  if cost < auto_below then
    return x.approve_auto("under the auto-approval threshold")
  end
  return x.approve_manual(ttl, "needs the user's approval")
end
