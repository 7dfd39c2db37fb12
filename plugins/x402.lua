-- plugins/x402.lua — the step adapter of paid (x402) services: the default for a catalog record
-- with a price.
--
-- The money is the engine's: when the service answers 402 the C payment path reads the
-- requirements, checks the price against the approved one, signs and sends the same request
-- again with the payment header (X-PAYMENT / PAYMENT-SIGNATURE), and records the settlement.
-- Lua never sees the 402, the payment header or a key. What is left is the plain JSON request
-- and response, so this adapter is the http one (plugins/http.lua, loaded with require).

local http = require "http"

function prepare(step, ctx) return http.prepare(step, ctx) end

function parse(response, ctx) return http.parse(response, ctx) end

function compensate(step, ctx) return http.compensate(step, ctx) end
