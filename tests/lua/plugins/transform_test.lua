-- tests/lua/plugins/transform_test.lua — plugins/transform.lua operations.
local t = require "testlib"
local tr = require "transform"
local x = require "x402r"

local doc = { user = { name = "Ada", city = "London", age = 36 }, items = { { sku = "a", n = 2 }, { sku = "b", n = 5 } } }

local function fails(op, pattern)
  local out, why = tr.run(op)
  t.eq(out, nil)
  t.ok(why and why:find(pattern, 1, true), "expected an error with '" .. pattern .. "', got " .. tostring(why))
end

function test_get_with_paths_and_default()
  t.eq(tr.run({ op = "get", from = doc, path = "user.name" }), "Ada")
  t.eq(tr.run({ op = "get", from = doc, path = "items[1].sku" }), "b")
  t.eq(tr.run({ op = "get", from = doc, path = "items[9].sku", default = "none" }), "none")
  t.eq(tr.run({ op = "get", from = doc, path = "user.name.first" }), nil)
  fails({ op = "get", from = doc, path = "items[x]" }, "bad path")
  fails({ op = "get", from = doc, path = "user." }, "ends with")
  fails({ op = "get", from = doc }, "path must be")
end

function test_pick_omit_rename()
  local p = tr.run({ op = "pick", from = doc.user, fields = { "name", "missing" } })
  t.eq(p.name, "Ada")
  t.eq(p.city, nil)
  local o = tr.run({ op = "omit", from = doc.user, fields = { "age" } })
  t.eq(o.age, nil)
  t.eq(o.city, "London")
  local r = tr.run({ op = "rename", from = doc.user, map = { name = "fullName" } })
  t.eq(r.fullName, "Ada")
  t.eq(r.name, nil)
  t.eq(r.city, "London")
  fails({ op = "pick", from = "text", fields = { "a" } }, "from must be an object")
  fails({ op = "rename", from = doc.user, map = { name = 5 } }, "map values must be strings")
end

function test_merge_later_wins()
  local m = tr.run({ op = "merge", from = { { a = 1, b = 1 }, { b = 2, c = 3 } } })
  t.eq(m.a, 1)
  t.eq(m.b, 2)
  t.eq(m.c, 3)
  fails({ op = "merge", from = { { a = 1 }, 7 } }, "element 1 is not an object")
end

function test_shape_and_template()
  local s = tr.run({ op = "shape", from = doc, fields = { who = "user.name", first = "items[0].sku" } })
  t.eq(s.who, "Ada")
  t.eq(s.first, "a")
  t.eq(tr.run({ op = "template", from = doc, template = "${user.name} (${user.age}) buys ${items[1].n}x ${items[1].sku}" }),
       "Ada (36) buys 5x b")
  t.eq(tr.run({ op = "template", from = doc, template = "u=${user}" }):sub(1, 3), "u={")
  fails({ op = "template", from = doc, template = "${nope}" }, "${nope} is not set")
end

function test_map_and_pipe()
  local skus = tr.run({ op = "map", from = doc.items, apply = { op = "get", path = "sku" } })
  t.eq(#skus, 2)
  t.eq(skus[1], "a")
  t.eq(skus[2], "b")
  local line = tr.run({ op = "pipe", from = doc, steps = {
    { op = "get", path = "items" },
    { op = "map", apply = { op = "template", template = "${sku}:${n}" } } } })
  t.eq(line[2], "b:5")
  fails({ op = "map", from = doc.items, apply = { op = "get", from = 1, path = "a" } }, "without from")
  fails({ op = "map", from = "abc", apply = { op = "get", path = "a" } }, "must be an array")
end

function test_bad_operations()
  fails({ op = "explode", from = doc }, "unknown op 'explode'")
  fails("just text", "must be an operation")
  local deep = { op = "get", path = "a" }
  for _ = 1, 10 do deep = { op = "pipe", steps = { deep } } end
  deep.from = {}
  fails(deep, "nested more than 8")
end

function test_prepare_answers_without_a_request()
  local r = tr.prepare({ inputs = { op = "get", from = doc, path = "user.city" } }, {})
  t.eq(r.output, "London")
  t.eq(tr.prepare({ inputs = { op = "get", from = doc, path = "nope" } }, {}).output, x.null)
  local bad = tr.prepare({ inputs = { op = "nope" } }, {})
  t.ok(bad.error:find("transform: unknown op"), bad.error)
end
