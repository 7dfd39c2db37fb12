-- policies/matching.lua — how services are chosen: the offline planner's weights and scoring,
-- and the order of candidate services for a step.
--
-- weights(defaults) — called once per plan by the offline planner. `defaults` holds the
-- built-in weights by name; return a table with the ones to change (any subset; an unknown name
-- or a value out of range rejects the whole table and the built-in weights stay):
--   bm25_k1, bm25_b     BM25 saturation (0..10) and length normalisation (0..1)
--   match_min           least rank for a clause to get a service at all
--   name_bonus          × share of the service's name words the clause mentions
--   context_weight      × the service's relevance to the whole task
--   chain_bonus         × share of its required inputs earlier steps output (same name)
--   cost_weight         × price / highest price among the candidates (a penalty)
--   sim_min, sim_typed  least name+description similarity (0..1) to wire an output into an
--                       input: untyped output / both sides typed
--   wire_bonus          joint choice: × share of its inputs the other chosen services feed
--   fill_bonus          joint choice: × share of its inputs the task or those services provide
--   step_cost           joint choice: what a clause's own step costs (× the share of its words
--                       the catalog knows); a clause whose best service, with the two bonuses,
--                       is worth less gets no step (0: every clause that matches gets one)
--   link_bonus          joint choice: for a service that shares a parameter name few services
--                       use (at most 15 in the catalog) with one chosen for an earlier clause
--
-- score(f) — optional (not defined here: the built-in rank is used). When defined, the planner
-- calls it for the 6 best services of each clause by the built-in rank, with f = {service,
-- clause, price (atomic units, a string), bm25, name_share, context, fed, price_rel, rank (the
-- built-in value)}, and uses the number it returns instead of rank. Higher is better; below
-- match_min the service is not chosen for that clause. For example, to prefer cheap services
-- more strongly:  function score(f) return f.rank - 0.5 * f.price_rel end
--
-- rank(candidates, step) orders candidates by score (higher first), then price (cheaper
-- first, atomic units as strings or numbers), then id for a stable order. Candidates whose
-- price is over step.maxPrice (when given) are dropped. The engine gets back its own candidate
-- records in the returned order; only the order and the selection count.

local x = require "x402r"

function weights(defaults)
  -- the built-in weights, tuned on NesTools dev (bench/planner/RESULTS.md); change any here
  return {}
end

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
