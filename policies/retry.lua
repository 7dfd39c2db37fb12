-- policies/retry.lua — the default retry policy: should a failed step be tried again, and when?
--
-- decide(step, err, attempt) is called after attempt number `attempt` (1 for the first try)
-- failed. err.class is "network", "timeout", "status" (err.status holds the HTTP code) or
-- "payment"; err.retryAfterMs carries a server's Retry-After. Network errors, timeouts, 5xx and
-- 429 are retried with exponential backoff and full jitter (AWS "full jitter": a uniform delay
-- in [0, min(cap, base * 2^(attempt-1))]), never sooner than Retry-After; other 4xx and payment
-- failures are final (the payment path reconciles with the chain before any retry of its own).
-- At most step.maxAttempts attempts (default 3). The engine passes its RETRY_BASE_MS,
-- RETRY_FACTOR and RETRY_MAX_DELAY_MS as step.backoff {baseMs, factor, maxDelayMs}; the
-- constants below apply when it does not. Edit them (or this function) to tune.

local x = require "x402r"

local BASE_MS = 500                -- first backoff ceiling
local CAP_MS = 30000               -- backoff ceiling never exceeds this
local MAX_RETRY_AFTER_MS = 600000  -- a Retry-After longer than 10 minutes ends the step
local DEFAULT_MAX_ATTEMPTS = 3

local function classify(err)
  if type(err) ~= "table" then return false, "unknown error" end
  local class = err.class
  if class == "network" or class == "timeout" then return true end
  if class == "status" then
    local status = tonumber(err.status)
    if not status then return false, "HTTP error without a status" end
    if status == 429 or (status >= 500 and status <= 599) then return true end
    return false, "HTTP " .. status .. " is not retryable"
  end
  if class == "payment" then return false, "payment failed" end
  return false, "unknown error class " .. tostring(class)
end

function decide(step, err, attempt)
  attempt = tonumber(attempt) or 1
  local max = tonumber(type(step) == "table" and step.maxAttempts or nil) or DEFAULT_MAX_ATTEMPTS
  local ok, why = classify(err)
  if not ok then return x.giveup(why) end
  if attempt >= max then return x.giveup("gave up after " .. attempt .. " attempts") end

  local b = type(step) == "table" and step.backoff or nil
  local base = tonumber(b and b.baseMs) or BASE_MS
  local factor = tonumber(b and b.factor) or 2
  local cap = tonumber(b and b.maxDelayMs) or CAP_MS
  local ceiling = math.min(cap, base * factor ^ (attempt - 1))
  local delay = math.random(0, math.floor(ceiling))
  local retry_after = tonumber(err.retryAfterMs)
  if retry_after and retry_after > 0 then
    if retry_after > MAX_RETRY_AFTER_MS then
      return x.giveup("server asked to wait " .. retry_after .. " ms")
    end
    delay = math.max(delay, math.ceil(retry_after))
  end
  return x.retry(delay)
end
