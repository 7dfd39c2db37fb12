-- tests/lua/matching_test.lua — unit tests of policies/matching.lua
local t = require "testlib"
local matching = require "matching"

local function ids(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.id end
  return table.concat(out, ",")
end

function test_score_then_price_then_id()
  local c = {
    { id = "a", score = 0.5, price = "300" },
    { id = "b", score = 0.9, price = "900" },
    { id = "c", score = 0.5, price = "100" },
    { id = "d", score = 0.9, price = 900 },
  }
  t.eq(ids(matching.rank(c, {})), "b,d,c,a")
end

function test_missing_score_and_price()
  local c = { { id = "x" }, { id = "y", score = 1 }, { id = "z", price = "5" } }
  t.eq(ids(matching.rank(c, {})), "y,x,z")
end

function test_max_price_filters()
  local c = { { id = "cheap", score = 0.1, price = "10" }, { id = "dear", score = 0.9, price = "10000" } }
  t.eq(ids(matching.rank(c, { maxPrice = "1000" })), "cheap")
  t.eq(#matching.rank({}, {}), 0)
end

-- weights: the shipped policy keeps the built-in weights (returns no change)
function test_weights_keep_the_defaults()
  local defaults = { bm25_k1 = 1.2, context_weight = 1.0, wire_bonus = 0.3, step_cost = 0.7 }
  local w = matching.weights(defaults)
  t.eq(type(w), "table")
  t.eq(next(w), nil, "no weight changed")
end

-- score is optional: the shipped policy leaves the built-in rank alone
function test_no_score_hook_by_default()
  t.eq(matching.score, nil)
end
