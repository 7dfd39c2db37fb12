-- tests/lua/plugins/http_test.lua — the shipped http and x402 adapters (plugins/http.lua,
-- plugins/x402.lua), run by tests/unit/test_step_adapter.c in the real sandbox.
local t = require "testlib"
local http = require "http"
local x402 = require "x402"

local function step(method)
  return { id = "s1", workflowId = "wf_1", attempt = 1, inputs = { q = "a" },
           service = { id = "svc", url = "http://h/x", method = method } }
end

function test_post_sends_inputs_as_json_body()
  local r = http.prepare(step("POST"), {})
  t.eq(r.method, "POST")
  t.eq(r.inputs_as, "body")
  t.eq(r.query, nil)
end

function test_get_and_delete_send_a_query()
  t.eq(http.prepare(step("GET"), {}).inputs_as, "query")
  t.eq(http.prepare(step("DELETE"), {}).inputs_as, "query")
  t.eq(http.prepare(step("PUT"), {}).inputs_as, "body")
  t.eq(http.prepare(step(nil), {}).method, "POST")
end

function test_2xx_json_is_the_output()
  t.eq(http.parse({ status = 200, headers = {}, body = { a = 1 }, json = true }, {}).output_from, "body")
  t.eq(http.parse({ status = 204, headers = {}, body = "", json = false }, {}).output_from, "body")
  local r = http.parse({ status = 200, headers = {}, body = "<html>", json = false }, {})
  t.ok(r.error:find("not JSON"), r.error)
end

function test_retry_after_on_429_and_503()
  local r = http.parse({ status = 429, headers = { ["retry-after"] = "7" }, body = "slow down", json = false }, {})
  t.eq(r.retry, true)
  t.eq(r.delay, 7000)
  t.ok(r.error:find("429"), r.error)
  t.eq(http.parse({ status = 503, headers = { ["retry-after"] = "9999" }, body = "", json = false }, {}).delay, 300000)
  t.eq(http.parse({ status = 503, headers = { ["retry-after"] = "Wed, 21 Oct 2015" }, body = "", json = false }, {}).delay, nil)
  local r500 = http.parse({ status = 500, headers = { ["retry-after"] = "3" }, body = { e = "x" }, json = true }, {})
  t.eq(r500.retry, true)
  t.eq(r500.delay, nil) -- only 429/503 carry a Retry-After, as in the C adapter
end

function test_other_4xx_fail()
  local r = http.parse({ status = 404, headers = {}, body = "no\nsuch", json = false }, {})
  t.eq(r.retry, nil)
  t.ok(r.error:find("HTTP 404: no such"), r.error)
end

function test_compensate_uses_the_catalog_endpoint()
  local s = step("POST")
  t.eq(http.compensate(s, {}), nil)
  s.service.compensate = { url = "http://h/undo", method = "DELETE" }
  s.output = { orderId = 7 }
  local c = http.compensate(s, {})
  t.eq(c.url, "http://h/undo")
  t.eq(c.method, "DELETE")
  t.eq(c.body.workflowId, "wf_1")
  t.eq(c.body.stepId, "s1")
  t.eq(c.body.output.orderId, 7)
end

function test_x402_is_http()
  t.eq(x402.prepare(step("GET"), {}).inputs_as, "query")
  t.eq(x402.parse({ status = 502, headers = {}, body = "", json = false }, {}).retry, true)
  t.eq(x402.compensate(step("POST"), {}), nil)
end
