/* http/server.h — the HTTP/1.1 and WebSocket server: h2o (libuv build) + wslay on the engine's
 * loop, one port for both (LIBRARY-NOTES.md says why not libwebsockets).
 *
 * h2o buffers each request body (chunked bodies de-chunked, Expect: 100-continue answered,
 * bodies over max_body answered 413 by h2o itself), then calls the one handler with an x4_req.
 * The handler answers exactly once, now or later from another callback (the answer to a
 * pipelined request is sent in order by h2o). If the client vanished meanwhile, the answer is
 * dropped and the x4_req freed: x4_req stays valid until it is answered, never longer.
 *
 * WebSocket: x4_req_upgrade() turns a handshake request into an x4_ws. Each x4_ws has its own
 * bounded send queue (framed messages not yet written, counted): a send that would exceed
 * ws_queue_max messages or ws_queue_max_bytes closes that connection (1008 "send queue full")
 * and returns -1, so a slow reader can never stall the others; it may reconnect and resume with
 * ?since=. A send only queues: what a connection queued during one loop turn is written at the
 * end of that turn, in one send(2) when the socket can take it (server.c). close_cb
 * runs exactly once per x4_ws, never from inside x4_ws_send()/x4_ws_close(), always later on
 * the loop; the x4_ws is invalid after it returns. */
#ifndef X4_HTTP_SERVER_H
#define X4_HTTP_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct x4_http x4_http;
typedef struct x4_req x4_req;
typedef struct x4_ws x4_ws;

typedef void (*x4_http_handler)(x4_req *req, void *ud);
typedef void (*x4_ws_msg_cb)(x4_ws *ws, const char *data, size_t len, void *ud);
typedef void (*x4_ws_close_cb)(x4_ws *ws, void *ud);

typedef struct {
    const char *bind;          /* "0.0.0.0", "127.0.0.1", "::" */
    int port;                  /* 0 = ephemeral; see x4_http_port() */
    int reuseport;             /* SO_REUSEPORT so several processes share the port */
    size_t max_body;           /* request body cap, 413 above it */
    size_t ws_queue_max;       /* messages queued per WebSocket before it is dropped */
    size_t ws_queue_max_bytes; /* bytes queued per WebSocket before it is dropped */
    x4_http_handler handler;
    void *ud;
} x4_http_opts;

/* The request as the handler sees it; pointers are valid until the request is answered. */
struct x4_req {
    const char *method;
    size_t method_len;
    const char *path;          /* without the query string, not percent-decoded */
    size_t path_len;
    const char *query;         /* after '?', NULL if none */
    size_t query_len;
    const char *body;          /* NULL if none */
    size_t body_len;
    const char *remote_addr;   /* "1.2.3.4" */
    void *priv;                /* server-private */
};

int x4_http_open(x4_http **out, uv_loop_t *loop, const x4_http_opts *opts, char *err, size_t errlen);
int x4_http_port(const x4_http *h);
size_t x4_http_ws_count(const x4_http *h);
/* Stops listening, closes WebSockets (1001) and idle connections. Run the loop afterwards. */
void x4_http_close(x4_http *h);

/* Request helpers. */
int x4_req_method_is(const x4_req *r, const char *m);
/* Case-insensitive header lookup; returns a pointer valid until the answer, and its length. */
const char *x4_req_header(const x4_req *r, const char *name, size_t *len);
int x4_req_gone(const x4_req *r);                       /* client disconnected */
void x4_req_add_header(x4_req *r, const char *name, const char *value); /* before answering */
/* Answers and releases the request. Both copy the body. */
void x4_req_respond(x4_req *r, int status, const char *content_type, const char *body, size_t len);
void x4_req_respond_json(x4_req *r, int status, json_t *body); /* steals the reference */

int x4_req_is_websocket(const x4_req *r);
/* Upgrades (answers 101) and releases the request; NULL if it is not a valid handshake (the
 * request has then been answered 400). */
x4_ws *x4_req_upgrade(x4_req *r, x4_ws_msg_cb on_msg, x4_ws_close_cb on_close, void *ud);

/* WebSocket. */
int x4_ws_send_text(x4_ws *ws, const char *data, size_t len); /* 0, or -1 (closed/closing/full) */
void x4_ws_close(x4_ws *ws, uint16_t code, const char *reason);
size_t x4_ws_queued(const x4_ws *ws);
void *x4_ws_data(const x4_ws *ws);

#endif
