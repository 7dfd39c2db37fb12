-- examples/plugins/test/graphql_test.lua — the example adapter's test, as its author would write it:
-- plain Lua with require "testlib" (t.eq, t.ok), run in the real sandbox by
-- tests/unit/test_step_adapter.c (ctest -R test_step_adapter).
local t = require "testlib"
local x = require "x402r"
local gql = require "graphql"

local function step(id, inputs, output)
  return { id = "s1", workflowId = "wf_1", attempt = 1, inputs = inputs or {}, output = output,
           service = { id = id, url = "https://api.example/graphql" } }
end

local function json_response(status, body)
  return { status = status, headers = {}, body = body, json = true }
end

function test_prepare_uses_the_catalog_query_and_variables()
  local r = gql.prepare(step("countries.country", { code = "FR" }), {})
  t.eq(r.method, "POST")
  t.ok(r.headers.Accept:find("graphql%-response%+json"))
  local body = x.json.decode(r.body)
  t.ok(body.query:find("country%(code: %$code%)"))
  t.eq(body.variables.code, "FR")
end

function test_prepare_takes_the_query_from_inputs()
  local r = gql.prepare(step("other", { query = "{ ping }", operationName = "P" }), {})
  local body = x.json.decode(r.body)
  t.eq(body.query, "{ ping }")
  t.eq(body.operationName, "P")
  t.eq(body.variables.query, nil)
  t.ok(r.body:find('"variables":{}', 1, true), r.body) -- an object, not []
end

function test_prepare_refuses_without_a_query()
  local r = gql.prepare(step("other", { code = "FR" }), {})
  t.ok(r.error and r.error:find("no query for service other"), r.error)
end

function test_parse_data_is_the_output()
  local r = gql.parse(json_response(200, { data = { country = { name = "France" } } }), {})
  t.eq(r.output.country.name, "France")
end

function test_parse_errors_fail_or_retry()
  local r = gql.parse(json_response(200, { errors = { { message = "no such country", extensions = { code = "NOT_FOUND" } } } }), {})
  t.eq(r.error, "graphql: no such country (NOT_FOUND)")
  local rl = gql.parse(json_response(200, { errors = { { message = "slow down",
                                                          extensions = { code = "RATE_LIMITED", retryAfterMs = 1500 } } } }), {})
  t.eq(rl.retry, true)
  t.eq(rl.delay, 1500)
  t.eq(gql.parse({ status = 503, headers = {}, body = "", json = false }, {}).retry, true)
  t.ok(gql.parse({ status = 200, headers = {}, body = "<html>", json = false }, {}).error:find("without a JSON body"))
  t.ok(gql.parse(json_response(200, {}), {}).error:find("neither data nor errors"))
end

function test_compensate_cancels_a_created_order()
  local c = gql.compensate(step("shop.order", { sku = "a", qty = 1 }, { createOrder = { id = "o-42", total = 10 } }), {})
  t.eq(c.url, "https://api.example/graphql")
  local body = x.json.decode(c.body)
  t.ok(body.query:find("cancelOrder"))
  t.eq(body.variables.id, "o-42")
  t.eq(gql.compensate(step("countries.country", {}, {}), {}), nil)      -- a query has nothing to undo
  t.eq(gql.compensate(step("shop.order", {}, { unexpected = true }), {}), nil)
end
