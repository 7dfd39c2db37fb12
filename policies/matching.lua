-- policies/matching.lua — the default ranking of candidate services for a step.
--
-- rank(candidates, step) orders candidates by score (higher first), then price (cheaper
-- first, atomic units as strings or numbers), then id for a stable order. Candidates whose
-- price is over step.maxPrice (when given) are dropped. The engine gets back its own candidate
-- records in the returned order; only the order and the selection count.

local x = require "x402r"

local function price(c)
  return x.amount(c.price) or 0
end

function rank(candidates, step)
  local max_price = type(step) == "table" and x.amount(step.maxPrice) or nil
  local list = {}
  for _, c in ipairs(candidates) do
    if not max_price or price(c) <= max_price then list[#list + 1] = c end
  end
  table.sort(list, function(a, b)
    local sa, sb = tonumber(a.score) or 0, tonumber(b.score) or 0
    if sa ~= sb then return sa > sb end
    local pa, pb = price(a), price(b)
    if pa ~= pb then return pa < pb end
    return tostring(a.id) < tostring(b.id)
  end)
  return list
end
