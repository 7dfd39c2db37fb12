-- examples/plugins/graphql.lua — a step adapter for GraphQL services, written the way an
-- operator would write one for their own catalog. Copy it into PLUGIN_DIR (plugins/) and give
-- the services {"adapter": "graphql"} in their catalog records.
--
-- A GraphQL service has one URL and takes {query, variables, operationName?} as a JSON POST;
-- it answers 200 even when the operation failed, with {data, errors}. So:
--   prepare     the query comes from QUERIES (keyed by the catalog record's id) or from the
--               step's inputs (`query`, plus `operationName`); every other input is a
--               variable. Always a POST with a JSON body and the GraphQL response media type.
--   parse       `errors` decide: a RATE_LIMITED / SERVICE_UNAVAILABLE code is retried (with
--               extensions.retryAfterMs when given), any other error fails the step with the
--               first message; otherwise `data` is the output. 429/5xx are retried like http.
--   compensate  services with an undo mutation in UNDO get it called with variables taken
--               from the step's output (a created order is cancelled).
-- The engine still adds X-Workflow-Id, X-Step-Id and Idempotency-Key, and pays if the service
-- answers 402; none of that is this file's business.

local x = require "x402r"

-- Queries of the services this adapter serves, by catalog id.
QUERIES = {
  ["countries.country"] = "query Country($code: ID!) { country(code: $code) { name capital currency } }",
  ["shop.order"] = "mutation Order($sku: String!, $qty: Int!) { createOrder(sku: $sku, qty: $qty) { id total } }",
}

-- Undo mutations: the variables are read from the step's output by `from` (a key path).
UNDO = {
  ["shop.order"] = { query = "mutation Cancel($id: ID!) { cancelOrder(id: $id) { id } }",
                     variables = { id = { "createOrder", "id" } } },
}

local RETRY_CODES = { RATE_LIMITED = true, SERVICE_UNAVAILABLE = true }

local function graphql_request(query, variables, operation)
  -- cjson keeps an empty table an object, so {} variables stay {} on the wire
  local body, err = x.json.encode({ query = query, variables = variables, operationName = operation })
  if not body then return { error = "graphql: cannot encode the request: " .. err } end
  return {
    method = "POST",
    headers = { ["Content-Type"] = "application/json",
                ["Accept"] = "application/graphql-response+json, application/json" },
    body = body,
  }
end

function prepare(step, ctx)
  local inputs = step.inputs
  local query = QUERIES[step.service.id] or inputs.query
  if type(query) ~= "string" or query == "" then
    return { error = "graphql: no query for service " .. step.service.id .. " (add it to QUERIES or pass `query`)" }
  end
  local variables = {}
  for k, v in pairs(inputs) do
    if k ~= "query" and k ~= "operationName" then variables[k] = v end
  end
  return graphql_request(query, variables, inputs.operationName)
end

local function first_error(errors)
  local e = errors[1]
  if type(e) ~= "table" then return "unknown error", nil end
  local code = type(e.extensions) == "table" and e.extensions.code or nil
  return tostring(e.message or "unknown error"), code, type(e.extensions) == "table" and e.extensions.retryAfterMs or nil
end

function parse(response, ctx)
  local status, body = response.status, response.body
  if status == 429 or status >= 500 then
    return { retry = true, error = "graphql service answered HTTP " .. status }
  end
  if not response.json or type(body) ~= "table" then
    return { error = "graphql service answered HTTP " .. status .. " without a JSON body" }
  end
  if type(body.errors) == "table" and #body.errors > 0 then
    local msg, code, after = first_error(body.errors)
    if RETRY_CODES[code] then
      return { retry = true, delay = type(after) == "number" and after or nil, error = "graphql: " .. msg }
    end
    return { error = "graphql: " .. msg .. (code and (" (" .. code .. ")") or "") }
  end
  if status < 200 or status >= 300 then
    return { error = "graphql service answered HTTP " .. status }
  end
  if body.data == nil then return { error = "graphql: the answer has neither data nor errors" } end
  return { output = body.data }
end

local function dig(v, path)
  for _, k in ipairs(path) do
    if type(v) ~= "table" then return nil end
    v = v[k]
  end
  return v
end

function compensate(step, ctx)
  local undo = UNDO[step.service.id]
  if not undo then return nil end
  local variables = {}
  for name, path in pairs(undo.variables) do
    local v = dig(step.output, path)
    if v == nil then
      x.log.warn("graphql: cannot undo step", step.id, "- its output has no", table.concat(x.copy(path), "."))
      return nil
    end
    variables[name] = v
  end
  local r = graphql_request(undo.query, variables, nil)
  r.url = step.service.url
  r.method = nil
  return r
end
