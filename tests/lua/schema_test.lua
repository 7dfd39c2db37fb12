-- tests/lua/schema_test.lua — the x402r library: schema.check, json, decisions
local t = require "testlib"
local x = require "x402r"

function test_schema_types_and_required()
  local s = { type = "object", required = { "isbn" },
              properties = { isbn = { type = "string" }, n = { type = "integer", minimum = 1, maximum = 10 },
                             tags = { type = "array", items = { type = "string" } },
                             mode = { enum = { "fast", "slow" } } } }
  t.ok(x.schema.check({ isbn = "123", n = 3, tags = { "a" }, mode = "fast" }, s))
  local ok, err = x.schema.check({ n = 3 }, s)
  t.eq(ok, false)
  t.eq(err, "value.isbn: required")
  ok, err = x.schema.check({ isbn = "1", n = 11 }, s)
  t.ok(not ok and err:find("maximum"), err)
  ok, err = x.schema.check({ isbn = "1", n = 1.5 }, s)
  t.ok(not ok and err:find("integer"), err)
  ok, err = x.schema.check({ isbn = "1", tags = { "a", 2 } }, s)
  t.eq(err, "value.tags[2]: expected string")
  ok, err = x.schema.check({ isbn = "1", mode = "medium" }, s)
  t.ok(not ok and err:find("allowed"), err)
  t.ok(x.schema.check(5, { type = { "string", "number" } }))
  t.eq(x.schema.check({ 1, 2 }, { type = "object" }), false)
end

function test_json_roundtrip()
  local s = x.json.encode({ a = { 1, 2, 3 } })
  t.eq(s, '{"a":[1,2,3]}')
  local v = x.json.decode(s)
  t.eq(v.a[3], 3)
  local bad, err = x.json.decode("{")
  t.eq(bad, nil)
  t.ok(type(err) == "string")
end

function test_decisions()
  t.eq(x.retry(10.4).delayMs, 10)
  t.eq(x.giveup("no").action, "giveup")
  t.eq(x.approve_manual(60000).expiresMs, 60000)
  t.eq(x.deny("over").reason, "over")
  t.eq(x.compensate("https://s/undo").method, "POST")
  t.ok(not pcall(x.retry, -1), "negative delay refused")
  t.ok(not pcall(x.compensate, "ftp://x"), "non-http url refused")
  t.eq(x.amount("1500000"), 1500000)
  t.eq(x.amount("1.5"), nil)
end
