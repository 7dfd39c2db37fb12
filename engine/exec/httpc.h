/* exec/httpc.h — outgoing HTTP on libcurl's multi interface, driven by the libuv loop.
 *
 * One x4_httpc per process (one curl multi handle, connection reuse across calls). A call
 * copies everything it is given; its callback runs exactly once on the loop — with the
 * response, a transport error, a timeout, or X4_HTTPC_CANCELLED after x4_httpc_cancel().
 * Response bodies are capped (max_response bytes; larger is an error, never a truncation).
 * The multi socket/timer pair follows LIBRARY-NOTES.md: the timer function only arms a uv
 * timer and never calls curl_multi_socket_action itself. */
#ifndef X4_EXEC_HTTPC_H
#define X4_EXEC_HTTPC_H

#include <stddef.h>
#include <uv.h>

typedef struct x4_httpc x4_httpc;
typedef struct x4_httpc_call x4_httpc_call;

typedef enum {
    X4_HTTPC_OK = 0,         /* got a complete HTTP response (any status) */
    X4_HTTPC_NETWORK,        /* DNS, connect, reset, TLS ... (retryable) */
    X4_HTTPC_TIMEOUT,        /* connect or total timeout (retryable) */
    X4_HTTPC_TOO_LARGE,      /* response body over the cap */
    X4_HTTPC_CANCELLED,      /* x4_httpc_cancel() */
    X4_HTTPC_INTERNAL        /* allocation or curl setup failure */
} x4_httpc_status;

typedef struct {
    const char *name;
    const char *value;
} x4_httpc_header;

typedef struct {
    const char *method;               /* "GET", "POST", ... */
    const char *url;
    const x4_httpc_header *headers;   /* request headers */
    size_t nheaders;
    const char *body;                 /* may be NULL */
    size_t body_len;
    long connect_timeout_ms;
    long timeout_ms;                  /* total */
    size_t max_response;              /* body cap in bytes */
} x4_httpc_req;

typedef struct {
    x4_httpc_status status;
    long code;                        /* HTTP status, 0 if none */
    char *body;                       /* NUL-terminated, owned by the call, valid in the callback */
    size_t body_len;
    x4_httpc_header *headers;         /* response headers (names lower-cased), valid in the callback */
    size_t nheaders;
    char error[256];                  /* human-readable reason when status != OK */
    double total_ms;
} x4_httpc_resp;

typedef void (*x4_httpc_cb)(const x4_httpc_resp *resp, void *ud);

int x4_httpc_open(x4_httpc **out, uv_loop_t *loop);
/* Returns the call handle (valid until its callback has run) or NULL if it could not start —
 * in that case cb has already been called with X4_HTTPC_INTERNAL. */
x4_httpc_call *x4_httpc_request(x4_httpc *h, const x4_httpc_req *req, x4_httpc_cb cb, void *ud);
/* Aborts a call in flight; its callback runs (synchronously) with X4_HTTPC_CANCELLED. */
void x4_httpc_cancel(x4_httpc_call *call);
const char *x4_httpc_header_get(const x4_httpc_resp *resp, const char *name); /* case-insensitive */
size_t x4_httpc_inflight(const x4_httpc *h);
/* A copy of resp that outlives its callback (one allocation: free() it). */
x4_httpc_resp *x4_httpc_resp_dup(const x4_httpc_resp *resp);
void x4_httpc_close(x4_httpc *h); /* cancels everything in flight */

#endif
