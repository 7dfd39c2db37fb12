/* exec/adapter.h — the plain HTTP JSON step adapter: turns a step's bound inputs into a request
 * for its catalog service and a response into an outcome.
 *
 * Requests: POST/PUT/PATCH carry the inputs as a JSON body; GET/DELETE carry them as a query
 * string (scalars as text, objects/arrays as compact JSON). Every call carries X-Workflow-Id,
 * X-Step-Id and Idempotency-Key "<workflow>:<step>:<attempt>".
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

#define X4_ADAPTER_MAX_HEADERS 8

typedef struct {
    x4_httpc_req req;
    x4_httpc_header headers[X4_ADAPTER_MAX_HEADERS];
    x4_buf url;
    x4_buf body;
    char idem[256];
} x4_adapter_call;

/* Fills call (free with x4_adapter_call_free). -1 with err if the service has no URL. */
int x4_adapter_http_build(x4_adapter_call *call, const x4_service *svc, const json_t *inputs, const char *workflow_id,
                          const char *step_id, int attempt, long connect_timeout_ms, long timeout_ms,
                          size_t max_response, char *err, size_t errlen);
void x4_adapter_call_free(x4_adapter_call *call);

/* Classifies a response. On OK *output is a new reference. *retry_after_ms is set (>= 0) when
 * the service asked for a delay. err holds the reason for RETRY/FAIL. */
x4_outcome x4_adapter_http_classify(const x4_httpc_resp *resp, json_t **output, int64_t *retry_after_ms, char *err,
                                    size_t errlen);

#endif
