/* http/api.h — the REST routes (docs/api.md): routing, authentication, body validation and
 * the handlers. Every handler answers with {success:false, error, details?} on failure and
 * never writes anything before the whole request has been validated. */
#ifndef X4_HTTP_API_H
#define X4_HTTP_API_H

#include "core/engine.h"
#include "http/auth.h"
#include "http/server.h"

void x4_api_handle(x4_req *req, void *engine);

/* Streams (http/stream.c). */
int x4_streams_open(x4_engine *e);
void x4_streams_close(x4_engine *e);
/* GET /workflows/:id/stream: x4_streams_pending() registers the subscription before the route
 * sends x4_streams_first_read() (the ownership check and the first catch-up read in one query),
 * so no event published meanwhile is missed; then x4_streams_attach() upgrades the request and
 * sends that read's rows, or x4_streams_cancel() drops it (404, error). NULL: out of memory. */
void *x4_streams_pending(x4_engine *e, const x4_principal *who, const char *workflow_id, long long since);
void x4_streams_attach(x4_req *req, void *pending, void *first_read_result);
void x4_streams_cancel(void *pending);
/* The SQL of the ownership check + first catch-up read ($1 workflow, $2 since, $3 user, $4 admin). */
const char *x4_streams_first_read(void);
/* Takes over an upgraded WebSocket for GET /stream: subscriptions by message (http/stream.c). */
void x4_streams_attach_mux(x4_engine *e, x4_req *req, const x4_principal *who);
size_t x4_streams_count(const x4_engine *e);

#endif
