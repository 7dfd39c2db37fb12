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
/* Takes over an upgraded WebSocket for workflow_id (its owner already checked), replaying events
 * after `since`. */
void x4_streams_attach(x4_engine *e, x4_req *req, const x4_principal *who, const char *workflow_id, long long since);
/* Takes over an upgraded WebSocket for GET /stream: subscriptions by message (http/stream.c). */
void x4_streams_attach_mux(x4_engine *e, x4_req *req, const x4_principal *who);
size_t x4_streams_count(const x4_engine *e);

#endif
