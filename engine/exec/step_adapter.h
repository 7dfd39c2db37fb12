/* exec/step_adapter.h — step adapters: the one seam between the scheduler and the Lua plugins
 * in PLUGIN_DIR (plugins/NAME.lua, docs/lua.md "Step adapters"). A step's adapter is its catalog
 * record's "adapter", else "x402" for a priced service, else "http" (x4_step_adapter).
 *
 * Who decides what:
 *   prepare  plugins/<adapter>.lua prepare(step, ctx) shapes the request ({method?, url?,
 *            headers?, query?, body?, inputs_as?}) or answers without one ({output = v}, a pure
 *            step such as "transform") or refuses ({error = "why"}). method defaults to the
 *            service's (POST), url to the service's; query is a table encoded in key order; body
 *            a string sent as is or a value sent as compact JSON (keys sorted); inputs_as =
 *            "body"/"query" sends the bound inputs encoded by C exactly as the built-in adapter
 *            does (JSON nulls, {} and big integers survive). C validates the shape, keeps its own
 *            headers (X-Workflow-Id, X-Step-Id, Idempotency-Key, the payment header) and builds
 *            the request through x4_adapter_build. When the plugin is not loaded, "http" and
 *            "x402" use the built-in C request (exec/adapter.h); any other adapter fails the step.
 *            A failing prepare (error, budget, bad shape) of "http"/"x402" falls back to the
 *            built-in request; for any other adapter the step fails (not retried).
 *   parse    transport errors, timeouts and cut-off bodies are classified in C, and a 402 is
 *            always the C payment path (PAYMENT_REQUIRED, Lua never sees it, whatever the
 *            adapter). Any other response goes to parse(response, ctx), which returns
 *            {output = v} or {output_from = "body"} (OK; the latter takes the JSON body as C
 *            decoded it), {retry = true, delay? = ms, error? = why} (RETRY; delay capped at
 *            X4_STEP_MAX_DELAY_MS) or {error = why} (FAIL). No parse function, or a failing one for "http"/"x402": the
 *            built-in classification; a failing one for another adapter: FAIL.
 *   undo     compensate(step, ctx) for a succeeded step → {url, method?, headers?, body?} or nil.
 *
 * Views given to Lua (read-only): step = {id, workflowId, attempt, adapter, inputs, service =
 * x4_service_to_json(svc), output (compensate only)}; ctx = {workflowId, stepId, attempt,
 * idempotencyKey, adapter, service} (idempotencyKey "<workflow>:<step>:<attempt>", and
 * "<workflow>:<step>:compensate" for compensate); response = {status, headers = {lower-case
 * name = value, repeated headers joined with ", "}, body (the decoded JSON when the body is
 * JSON, else the text; absent when it is not UTF-8, then binary = true), json = bool}.
 * All functions run synchronously on the loop thread under the runtime's budget; rt may be NULL
 * (no Lua: built-in behaviour). Nothing here blocks or allocates per call beyond the request.
 * When the loaded http/x402 plugin is the shipped file, the calls whose plugin answer is known
 * (the request; a 2xx answer with an empty or JSON body) are answered in C without Lua, with
 * the same result (x4_step_adapter_shipped). */
#ifndef X4_EXEC_STEP_ADAPTER_H
#define X4_EXEC_STEP_ADAPTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/adapter.h"
#include "exec/httpc.h"
#include "lua/lua.h"
#include "plan/catalog.h"

#define X4_STEP_MAX_BODY ((size_t)1 << 20) /* bytes of a plugin-built request body */
#define X4_STEP_MAX_URL 8192               /* bytes of a plugin-built URL, query included */
#define X4_STEP_MAX_DELAY_MS 300000        /* a parse() retry delay is capped like Retry-After */

typedef struct {
    const x4_service *svc;
    const char *workflow_id;
    const char *step_id;
    int attempt;              /* the attempt number that goes into the Idempotency-Key */
    const json_t *inputs;     /* the bound inputs */
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_response;
} x4_step_in;

/* The adapter name for a service: the record's, or the default. Never NULL. */
const char *x4_step_adapter(const x4_service *svc);

/* 1 if the adapter has a built-in C fallback ("http", "x402"). */
int x4_step_adapter_builtin(const char *adapter);

/* 1 if the runtime runs the shipped plugins/<adapter>.lua ("http", or "x402" with its
 * require "http" found in plugins/ and shipped too), recognised by the hash of the loaded
 * source: then prepare and the 2xx parse skip Lua where the plugin's answer is provably the
 * built-in one (step_adapter.c, "the shipped plugins"). 0 for any other file or adapter. */
int x4_step_adapter_shipped(const x4_lua_rt *rt, const char *adapter);
/* The hex BLAKE2b-256 of the shipped plugins/<adapter>.lua x4_step_adapter_shipped recognises
 * ("http", "x402"); NULL for any other adapter. */
const char *x4_step_shipped_hash(const char *adapter);

/* 0: *call is filled (send call->req, then x4_adapter_call_free; a payment header may be
 *    appended to call->headers/req.nheaders — there are always free slots);
 * 1: no request, *output (new reference) is the step's output;
 * -1: err says why; the step fails and is not retried (*call needs no free). */
int x4_step_prepare(x4_lua_rt *rt, const x4_step_in *in, x4_adapter_call *call, json_t **output, char *err,
                    size_t errlen);

/* Classifies a response to the request x4_step_prepare built (in->inputs is not used here and
 * may be NULL; in->attempt goes into ctx). On OK *output is a new reference;
 * *retry_after_ms >= 0 when the service or the plugin asked for a delay; err holds the reason
 * for RETRY/FAIL/PAYMENT_REQUIRED. */
x4_outcome x4_step_parse(x4_lua_rt *rt, const x4_step_in *in, const x4_httpc_resp *resp, json_t **output,
                         int64_t *retry_after_ms, char *err, size_t errlen);

/* The adapter's undo request for a succeeded step (output: what the step returned).
 * 1: *req (new reference) = {url, method, headers?, body?} — url http(s), method upper-case,
 *    headers an object of strings checked like prepare's, body any JSON value or absent;
 * 0: the adapter has nothing to undo (no plugin, no compensate function, or it returned nil);
 * -1: err (the function failed or returned a bad shape; logged). */
int x4_step_compensation(x4_lua_rt *rt, const x4_step_in *in, const json_t *output, json_t **req, char *err,
                         size_t errlen);

#endif
