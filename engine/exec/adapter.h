/* exec/adapter.h — the plain HTTP JSON step adapter: turns a step's bound inputs into a request
 * for its catalog service and a response into an outcome. It is also the request builder the
 * Lua step adapters (exec/step_adapter.h) go through, so the engine's headers are set in one
 * place whoever shapes the request.
 *
 * Requests: POST/PUT/PATCH carry the inputs as a JSON body (compact, keys sorted); GET/DELETE
 * carry them as a query string in key order (scalars as text, objects/arrays as compact JSON
 * with sorted keys).
 * Every call carries Content-Type and Accept (application/json unless a plugin set them),
 * X-Workflow-Id, X-Step-Id and Idempotency-Key "<workflow>:<step>:<attempt>"; the last three,
 * the payment headers and the framing headers (x4_adapter_header_reserved) cannot be set by a
 * plugin. At least two header slots stay free after a build, for the payment header.
 *
 * Outcomes: 2xx with a JSON body → OK (the parsed body is the output); network errors,
 * timeouts, 5xx and 429 → RETRY (429/503 with Retry-After give the delay); 402 →
 * PAYMENT_REQUIRED, the seam where the x402 payment path plugs in (until it does, the step
 * fails with a clear reason); every other status or a non-JSON 2xx → FAIL. */
#ifndef X4_EXEC_ADAPTER_H
#define X4_EXEC_ADAPTER_H

#include <jansson.h>
#include <stdint.h>

#include "core/util.h"
#include "exec/httpc.h"
#include "plan/catalog.h"

typedef enum { X4_OUT_OK, X4_OUT_RETRY, X4_OUT_FAIL, X4_OUT_PAYMENT_REQUIRED } x4_outcome;

#define X4_ADAPTER_MAX_HEADERS 32       /* engine + plugin headers + room for the payment header */
#define X4_ADAPTER_EXTRA_HEADERS 16     /* at most this many headers from a plugin */

typedef struct {
    x4_httpc_req req;
    x4_httpc_header headers[X4_ADAPTER_MAX_HEADERS];
    x4_buf url;
    x4_buf body;
    char idem[256];
    char method[8];
    char *owned[2 * X4_ADAPTER_EXTRA_HEADERS]; /* copies of the plugin's header names and values */
    size_t nowned;
} x4_adapter_call;

/* A request shaped by someone else (a Lua plugin), already validated by the caller except
 * where noted; x4_adapter_build copies everything it keeps. */
typedef struct {
    const char *method;              /* GET POST PUT PATCH DELETE */
    const char *url;                 /* http(s) URL */
    const json_t *query;             /* object appended as a query string in key order, or NULL */
    const char *body;                /* sent as is (NULL: no body) */
    size_t body_len;
    const x4_httpc_header *headers;  /* extra headers (<= X4_ADAPTER_EXTRA_HEADERS); a name equal
                                        to Content-Type/Accept replaces the default; reserved
                                        names are refused (-1) */
    size_t nheaders;
} x4_adapter_spec;

/* Fills call (free with x4_adapter_call_free). -1 with err if the service has no URL. */
int x4_adapter_http_build(x4_adapter_call *call, const x4_service *svc, const json_t *inputs, const char *workflow_id,
                          const char *step_id, int attempt, long connect_timeout_ms, long timeout_ms,
                          size_t max_response, char *err, size_t errlen);
void x4_adapter_call_free(x4_adapter_call *call);

/* Fills call from a spec plus the engine's headers. -1 with err (nothing to free) on a reserved
 * or malformed header, too many headers, or out of memory. */
int x4_adapter_build(x4_adapter_call *call, const x4_adapter_spec *spec, const char *workflow_id, const char *step_id,
                     int attempt, long connect_timeout_ms, long timeout_ms, size_t max_response, char *err,
                     size_t errlen);

/* 1 if a plugin may not set this request header (case-insensitive): X-Workflow-Id, X-Step-Id,
 * Idempotency-Key, X-PAYMENT, PAYMENT-SIGNATURE, Host, Content-Length, Transfer-Encoding,
 * Connection, Expect, Upgrade, TE, Trailer, Keep-Alive, Proxy-*. */
int x4_adapter_header_reserved(const char *name);

/* Appends obj's members to url as "?k=v&..." in key order with the rules above. 0 or -1 (OOM). */
int x4_adapter_append_query(x4_buf *url, const json_t *obj);

/* Classifies a response. On OK *output is a new reference. *retry_after_ms is set (>= 0) when
 * the service asked for a delay. err holds the reason for RETRY/FAIL. */
x4_outcome x4_adapter_http_classify(const x4_httpc_resp *resp, json_t **output, int64_t *retry_after_ms, char *err,
                                    size_t errlen);

#endif
