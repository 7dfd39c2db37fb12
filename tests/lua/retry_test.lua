-- tests/lua/retry_test.lua — unit tests of policies/retry.lua, run by tests/unit/test_lua_policies.c
local t = require "testlib"
local retry = require "retry"

function test_network_errors_retry_with_bounded_jitter()
  math.randomseed(7)
  local seen = {}
  for _ = 1, 50 do
    local d = retry.decide({}, { class = "network" }, 1)
    t.eq(d.action, "retry")
    t.ok(d.delayMs >= 0 and d.delayMs <= 500, "first delay within [0, 500]")
    seen[d.delayMs] = true
  end
  local distinct = 0
  for _ in pairs(seen) do distinct = distinct + 1 end
  t.ok(distinct > 5, "delays are jittered")
end

function test_ceiling_grows_and_is_capped()
  local max4, max20 = 0, 0
  for _ = 1, 200 do
    max4 = math.max(max4, retry.decide({ maxAttempts = 30 }, { class = "timeout" }, 4).delayMs)
    max20 = math.max(max20, retry.decide({ maxAttempts = 30 }, { class = "timeout" }, 20).delayMs)
  end
  t.ok(max4 > 500 and max4 <= 4000, "attempt 4 ceiling is 4000 ms")
  t.ok(max20 > 4000 and max20 <= 30000, "ceiling capped at 30 s")
end

function test_status_classes()
  t.eq(retry.decide({}, { class = "status", status = 503 }, 1).action, "retry")
  t.eq(retry.decide({}, { class = "status", status = 429 }, 1).action, "retry")
  t.eq(retry.decide({}, { class = "status", status = 400 }, 1).action, "giveup")
  t.eq(retry.decide({}, { class = "status", status = 404 }, 1).action, "giveup")
  t.eq(retry.decide({}, { class = "status" }, 1).action, "giveup")
  t.eq(retry.decide({}, { class = "payment" }, 1).action, "giveup")
  t.eq(retry.decide({}, { class = "bogus" }, 1).action, "giveup")
  t.eq(retry.decide({}, nil, 1).action, "giveup")
end

function test_retry_after_is_honoured()
  local d = retry.decide({}, { class = "status", status = 429, retryAfterMs = 12000 }, 1)
  t.eq(d.action, "retry")
  t.ok(d.delayMs >= 12000, "never sooner than Retry-After")
  t.eq(retry.decide({}, { class = "status", status = 503, retryAfterMs = 3600000 }, 1).action, "giveup")
end

function test_max_attempts()
  t.eq(retry.decide({}, { class = "network" }, 2).action, "retry")
  t.eq(retry.decide({}, { class = "network" }, 3).action, "giveup")
  t.eq(retry.decide({ maxAttempts = 1 }, { class = "network" }, 1).action, "giveup")
  t.eq(retry.decide({ maxAttempts = 10 }, { class = "network" }, 9).action, "retry")
end
