/* http/server.c — see server.h. h2o 2.2.5 (libuv build) + wslay on the caller's loop.
 *
 * Ownership, as read from the h2o 2.2.5 sources (lib/http1.c, lib/websocket.c,
 * lib/common/socket/uv-binding.c.h, lib/core/context.c):
 *
 * - Each accepted connection is a `struct conn` (our uv_tcp_t) handed to h2o with
 *   h2o_uv_socket_create(); h2o closes it (HTTP/1 close, or h2o_websocket_close after an upgrade)
 *   and libuv then calls on_conn_closed(), which frees it. `h->handles` counts these, the
 *   listener and the per-WebSocket timers: x4_http is disposed once it drops to zero.
 * - HTTP/1 handles one request per connection at a time and stops reading while the handler
 *   runs, so a pipelined request waits for the answer to the one before it. The h2o_req_t lives
 *   in the connection and is disposed (its pool cleared) when the answer has been written or the
 *   connection dies; a shared pool allocation with a dispose callback (`struct req_link`) tells
 *   the x4_req that it is gone.
 * - WebSocket: h2o_upgrade_to_websocket() returns a conn whose socket is attached only when the
 *   101 has been written (conn->sock stays NULL until then; if that write fails the callback gets
 *   arg == NULL with sock still NULL). With arg == NULL h2o expects *us* to call
 *   h2o_websocket_close(), and it may call that callback from inside h2o_websocket_proceed(),
 *   i.e. from inside x4_ws_send_text(), or several times. So the callback only marks the x4_ws
 *   dead and queues it; the reaper (a uv_idle) calls h2o_websocket_close() and close_cb on a later
 *   loop turn, then the x4_ws is freed when its timer handle has closed.
 * - h2o_context_dispose() runs a nested uv_run(NOWAIT) (to reap its timer handles), which would
 *   run unrelated callbacks of other modules from inside ours; ctx_dispose() below does the same
 *   work without it, and the handles it closes (embedded in x4_http) are reaped by freeing x4_http
 *   two close-batches later.
 *
 * Sending (the fan-out path, bench/wsscale). h2o 2.2.5's WebSocket send path writes one frame per
 * h2o_socket_write (a uv_write: one write(2), its completion through libuv's pending queue, and
 * an epoll_ctl when libuv drops POLLOUT again) and sends the next frame only after that
 * completion. So data messages do not go through wslay: x4_ws_send_text frames them itself (a
 * server frame is a 2-10 byte header and the unmasked payload) into the x4_ws's own buffer and
 * marks it dirty; once per loop turn, just before the loop polls (a uv_prepare), each dirty
 * socket gets everything queued to it in one send(2) straight on the descriptor when nothing of
 * h2o's is being written (libuv's write queue is then empty, as for uv_try_write), and only a
 * remainder the kernel did not take goes through h2o_socket_write (libuv waits for POLLOUT).
 * wslay keeps the receive side and the control frames (pong, close), which go out between our
 * writes, never inside one (wslay hands h2o whole frames, and its writes and ours both wait for
 * h2o_socket_is_writing() to clear). Closing discards data not yet handed to the socket, as
 * wslay's control-first queue did: the close frame goes next. */
#include "http/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <h2o.h>
#include <h2o/websocket.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "core/log.h"

#define MOD "http"
#define REQ_MAGIC 0x78347271u /* "x4rq" */
#define WS_CLOSE_GRACE_MS 1000 /* after our close frame, wait this long for the peer's */
#define WS_UPGRADE_RETRY_MS 50

enum { WS_OPEN = 0, WS_CLOSING, WS_DEAD };

struct handler {
    h2o_handler_t super;
    x4_http *h;
};

struct conn {
    uv_tcp_t tcp; /* stream->data belongs to h2o */
    x4_http *h;
};

struct x4_http {
    uv_loop_t *loop;
    x4_http_opts opts;
    uv_tcp_t listener;
    uv_idle_t reaper; /* finalizes dead WebSockets */
    uv_prepare_t flusher; /* writes what the dirty WebSockets queued, once per loop turn */
    uv_idle_t final;  /* last handle closed before free() */
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    int port;
    int h2o_ready, closing, finished;
    size_t handles;
    x4_ws *ws_head;
    size_t nws;
    x4_ws *pend_head, *pend_tail;
    x4_ws *dirty_head; /* WebSockets with data to write (doubly linked through dprev/dnext) */
    int flusher_on;
};

struct req_link {
    struct req_impl *r;
};

struct req_impl {
    x4_req pub;
    unsigned magic;
    int gone;
    x4_http *h;
    h2o_req_t *req;
    struct req_link *link;
    char addr[INET6_ADDRSTRLEN];
    char clen[24]; /* x4_req_header("content-length") */
};

struct x4_ws {
    x4_http *h;
    h2o_websocket_conn_t *conn;
    x4_ws_msg_cb on_msg;
    x4_ws_close_cb on_close;
    void *ud;
    int state;
    int dispatching;    /* inside on_msg, i.e. inside wslay_event_recv: queue only */
    int upgrade_failed; /* the 101 could not be written; conn has no socket */
    int pending;        /* on the reaper list */
    uv_timer_t timer;   /* close grace period */
    x4_ws *prev, *next; /* h->ws_head */
    x4_ws *pnext;       /* h->pend_head */
    /* data frames (see the top comment) */
    char *out;          /* framed messages not yet handed to the socket */
    size_t out_len, out_cap, out_msgs;
    char *wbuf;         /* our h2o_socket_write in flight (NULL: none) */
    size_t wbuf_len, wbuf_msgs;
    int dirty;          /* on h->dirty_head */
    int fd;             /* the socket's descriptor (-1: not plain TCP; -2: not looked up yet) */
    x4_ws *dprev, *dnext;
};

static void maybe_finish(x4_http *h);

/* ---------------------------------------------------------------------------------------- */
/* Small helpers. */

static const char *reason_phrase(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Entity";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: break;
    }
    if (status >= 200 && status < 300) return "OK";
    if (status >= 300 && status < 400) return "Redirect";
    if (status >= 400 && status < 500) return "Client Error";
    return "Server Error";
}

/* Answers on h2o's request directly (no x4_req involved). */
static void send_plain(h2o_req_t *req, int status, const char *body, int close_conn) {
    size_t len = strlen(body);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    if (close_conn) req->http1_is_persistent = 0;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; charset=utf-8"));
    h2o_send_inline(req, body, len);
}

/* Same as h2o_context_dispose() of h2o 2.2.5 minus its nested uv_run(); see the top comment. */
static void ctx_dispose(h2o_context_t *ctx) {
    h2o_globalconf_t *config = ctx->globalconf;
    for (size_t i = 0; config->hosts[i] != NULL; ++i) {
        h2o_hostconf_t *hostconf = config->hosts[i];
        for (size_t j = 0; j != hostconf->paths.size; ++j)
            h2o_context_dispose_pathconf_context(ctx, hostconf->paths.entries + j);
        h2o_context_dispose_pathconf_context(ctx, &hostconf->fallback_path);
    }
    free(ctx->_pathconfs_inited.entries);
    free(ctx->_module_configs);
    h2o_timeout_dispose(ctx->loop, &ctx->zero_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->one_sec_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->hundred_ms_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->handshake_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http1.req_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http2.idle_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http2.graceful_shutdown_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->proxy.io_timeout);
    h2o_filecache_destroy(ctx->filecache);
    ctx->filecache = NULL;
    for (size_t i = 0; i != ctx->storage.size; ++i) {
        h2o_context_storage_item_t *item = ctx->storage.entries + i;
        if (item->dispose != NULL) item->dispose(item->data);
    }
    free(ctx->storage.entries);
    h2o_multithread_unregister_receiver(ctx->queue, &ctx->receivers.hostinfo_getaddr);
    h2o_multithread_destroy_queue(ctx->queue);
    if (ctx->_timestamp_cache.value != NULL) h2o_mem_release_shared(ctx->_timestamp_cache.value);
}

/* ---------------------------------------------------------------------------------------- */
/* WebSocket. */

static void ws_kick(x4_ws *ws) {
    /* Inside on_msg we are inside h2o_websocket_proceed(): its loop sends what we queued. */
    if (!ws->dispatching && ws->conn != NULL && ws->conn->sock != NULL && ws->state != WS_DEAD)
        h2o_websocket_proceed(ws->conn);
}

static void reaper_cb(uv_idle_t *idle);

static void ws_schedule_finalize(x4_ws *ws) {
    x4_http *h = ws->h;
    if (ws->pending) return;
    ws->pending = 1;
    ws->pnext = NULL;
    if (h->pend_tail) h->pend_tail->pnext = ws;
    else h->pend_head = ws;
    h->pend_tail = ws;
    uv_idle_start(&h->reaper, reaper_cb);
}

static void ws_mark_dead(x4_ws *ws) {
    if (ws->state == WS_DEAD) return;
    ws->state = WS_DEAD;
    uv_timer_stop(&ws->timer);
    if (ws->conn->sock != NULL) h2o_socket_read_stop(ws->conn->sock);
    ws_schedule_finalize(ws);
}

static void on_ws_timer_closed(uv_handle_t *handle) {
    x4_ws *ws = handle->data;
    x4_http *h = ws->h;
    free(ws);
    h->handles--;
    maybe_finish(h);
}

static void ws_dirty_unlink(x4_ws *ws) {
    if (!ws->dirty) return;
    if (ws->dprev) ws->dprev->dnext = ws->dnext;
    else ws->h->dirty_head = ws->dnext;
    if (ws->dnext) ws->dnext->dprev = ws->dprev;
    ws->dprev = ws->dnext = NULL;
    ws->dirty = 0;
}

static void ws_out_discard(x4_ws *ws) {
    free(ws->out);
    ws->out = NULL;
    ws->out_len = ws->out_cap = ws->out_msgs = 0;
}

static void ws_finalize(x4_ws *ws) {
    x4_http *h = ws->h;
    /* h2o_socket_close() clears the socket's write callback and libuv never touches the bytes of a
     * cancelled write again, so an in-flight wbuf can go with it */
    h2o_websocket_close(ws->conn); /* closes the socket, frees the wslay context and the conn */
    ws->conn = NULL;
    ws_dirty_unlink(ws);
    ws_out_discard(ws);
    free(ws->wbuf);
    ws->wbuf = NULL;
    if (ws->prev) ws->prev->next = ws->next;
    else h->ws_head = ws->next;
    if (ws->next) ws->next->prev = ws->prev;
    ws->prev = ws->next = NULL;
    h->nws--;
    if (ws->on_close) ws->on_close(ws, ws->ud);
    uv_close((uv_handle_t *)&ws->timer, on_ws_timer_closed);
}

static void reaper_cb(uv_idle_t *idle) {
    x4_http *h = idle->data;
    x4_ws *list = h->pend_head; /* those queued by the close_cbs below wait for the next turn */
    h->pend_head = h->pend_tail = NULL;
    while (list) {
        x4_ws *ws = list;
        list = ws->pnext;
        ws_finalize(ws);
    }
    if (h->pend_head == NULL) uv_idle_stop(&h->reaper);
}

static void ws_grace_cb(uv_timer_t *t) {
    x4_ws *ws = t->data;
    if (ws->state != WS_CLOSING) return;
    if (ws->conn->sock == NULL && !ws->upgrade_failed) {
        /* the 101 is still being written: h2o still owns the conn, wait for it */
        uv_timer_start(&ws->timer, ws_grace_cb, WS_UPGRADE_RETRY_MS, 0);
        return;
    }
    ws_mark_dead(ws);
}

static void ws_start_close(x4_ws *ws, uint16_t code, const char *reason) {
    if (ws->state != WS_OPEN) return;
    ws->state = WS_CLOSING;
    ws_out_discard(ws); /* the close frame goes next (an in-flight write of ours completes first) */
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 120) rlen = 120;
    wslay_event_queue_close(ws->conn->ws_ctx, code, (const uint8_t *)reason, rlen);
    uv_timer_start(&ws->timer, ws_grace_cb, WS_CLOSE_GRACE_MS, 0);
    ws_kick(ws);
}

/* Messages and bytes waiting for this socket: ours (buffered and in flight) and wslay's. */
static size_t ws_queued_msgs(const x4_ws *ws) {
    size_t n = ws->out_msgs + ws->wbuf_msgs;
    if (ws->conn) n += wslay_event_get_queued_msg_count(ws->conn->ws_ctx);
    return n;
}

static size_t ws_queued_bytes(const x4_ws *ws) {
    size_t n = ws->out_len + ws->wbuf_len;
    if (ws->conn) n += wslay_event_get_queued_msg_length(ws->conn->ws_ctx);
    return n;
}

/* Appends one unfragmented, unmasked text frame (RFC 6455 5.2) to ws->out. */
static int ws_out_append(x4_ws *ws, const char *data, size_t len) {
    uint8_t hdr[10];
    size_t hl;
    hdr[0] = 0x81; /* FIN, text */
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        hl = 2;
    } else if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    if (len > SIZE_MAX - hl - ws->out_len) return -1;
    size_t need = ws->out_len + hl + len;
    if (need > ws->out_cap) {
        size_t cap = ws->out_cap ? ws->out_cap : 256;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *p = realloc(ws->out, cap);
        if (p == NULL) return -1;
        ws->out = p;
        ws->out_cap = cap;
    }
    memcpy(ws->out + ws->out_len, hdr, hl);
    if (len) memcpy(ws->out + ws->out_len + hl, data, len);
    ws->out_len = need;
    ws->out_msgs++;
    return 0;
}

static void flusher_cb(uv_prepare_t *p);

static void ws_mark_dirty(x4_ws *ws) {
    x4_http *h = ws->h;
    if (ws->dirty) return;
    ws->dirty = 1;
    ws->dprev = NULL;
    ws->dnext = h->dirty_head;
    if (h->dirty_head) h->dirty_head->dprev = ws;
    h->dirty_head = ws;
    if (!h->flusher_on) {
        h->flusher_on = 1;
        uv_prepare_start(&h->flusher, flusher_cb);
    }
}

static void on_ws_write_done(h2o_socket_t *sock, const char *err) {
    h2o_websocket_conn_t *conn = sock->data;
    x4_ws *ws = conn->data;
    free(ws->wbuf);
    ws->wbuf = NULL;
    ws->wbuf_len = ws->wbuf_msgs = 0;
    if (err != NULL) { /* what h2o's own write completion does: the connection is over */
        ws_mark_dead(ws);
        return;
    }
    if (ws->state == WS_DEAD) return;
    ws_kick(ws); /* wslay's frames that waited for our write (a pong, the close) */
    if (ws->out_len && ws->state != WS_DEAD) ws_mark_dirty(ws);
}

/* Hands ws->out to the socket: one send(2) when the socket is idle, h2o for what is left. */
static void ws_flush(x4_ws *ws) {
    if (ws->state == WS_DEAD || ws->conn == NULL || ws->out_len == 0) return;
    h2o_socket_t *sock = ws->conn->sock;
    if (sock == NULL) { /* the 101 is still being written */
        if (!ws->upgrade_failed) ws_mark_dirty(ws);
        return;
    }
    if (h2o_socket_is_writing(sock)) {
        /* ours: its completion marks us dirty again; wslay's: try again next turn */
        if (ws->wbuf == NULL) ws_mark_dirty(ws);
        return;
    }
    size_t off = 0;
    if (ws->fd == -2) ws->fd = sock->ssl == NULL ? h2o_socket_get_fd(sock) : -1;
    int fd = ws->fd;
    if (fd >= 0) {
        ssize_t n;
        do n = send(fd, ws->out, ws->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { /* reset, broken pipe: over */
            ws_out_discard(ws);
            ws_mark_dead(ws);
            return;
        }
        if (n > 0) off = (size_t)n;
        sock->bytes_written += off;
    }
    if (off == ws->out_len) {
        ws->out_len = ws->out_msgs = 0;
        /* keep a small buffer for the next event; a catch-up page's is given back (20,000 idle
         * streams must not each hold one) */
        if (ws->out_cap > 512) ws_out_discard(ws);
        return;
    }
    /* the kernel's send buffer is full: the rest waits for POLLOUT in h2o/libuv */
    if (off) memmove(ws->out, ws->out + off, ws->out_len - off);
    ws->wbuf = ws->out;
    ws->wbuf_len = ws->out_len - off;
    ws->wbuf_msgs = ws->out_msgs;
    ws->out = NULL;
    ws->out_len = ws->out_cap = ws->out_msgs = 0;
    h2o_iovec_t buf = h2o_iovec_init(ws->wbuf, ws->wbuf_len);
    h2o_socket_write(sock, &buf, 1, on_ws_write_done);
}

/* The loop's prepare phase: after this turn's callbacks, right before it polls. WebSockets are
 * finalized only in the reaper (an idle callback), never from here, so the detached list stays
 * valid while it is walked. */
static void flusher_cb(uv_prepare_t *p) {
    x4_http *h = p->data;
    x4_ws *ws = h->dirty_head;
    h->dirty_head = NULL;
    while (ws) {
        x4_ws *next = ws->dnext;
        ws->dirty = 0;
        ws->dprev = ws->dnext = NULL;
        ws_flush(ws); /* may put ws back on h->dirty_head for the next turn */
        ws = next;
    }
    if (h->dirty_head == NULL) {
        h->flusher_on = 0;
        uv_prepare_stop(&h->flusher);
    }
}

/* h2o's message callback; arg == NULL when the connection is over. */
static void on_ws_event(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg) {
    x4_ws *ws = conn->data;
    if (arg == NULL) {
        if (conn->sock == NULL) ws->upgrade_failed = 1;
        ws_mark_dead(ws);
        return;
    }
    if (ws->state != WS_OPEN) return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (ws->on_msg) {
            ws->dispatching = 1;
            ws->on_msg(ws, (const char *)arg->msg, arg->msg_length, ws->ud);
            ws->dispatching = 0;
        }
        break;
    case WSLAY_BINARY_FRAME:
        ws->dispatching = 1;
        ws_start_close(ws, 1003, "text frames only");
        ws->dispatching = 0;
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay queues the reply itself; proceed() reports the end with arg == NULL */
        ws->state = WS_CLOSING;
        uv_timer_start(&ws->timer, ws_grace_cb, WS_CLOSE_GRACE_MS, 0);
        return;
    default: /* ping (wslay queues the pong), pong */
        break;
    }
    /* A peer that sends pings but never reads grows the queue with pongs. (Our own sends stay
     * within the caps, the single oversized message aside: hence strictly over, and count > 1.) */
    const x4_http_opts *o = &ws->h->opts;
    size_t count = ws_queued_msgs(ws);
    size_t bytes = ws_queued_bytes(ws);
    if (ws->state == WS_OPEN && ((o->ws_queue_max && count > o->ws_queue_max) ||
                                 (o->ws_queue_max_bytes && count > 1 && bytes > o->ws_queue_max_bytes))) {
        ws->dispatching = 1;
        ws_start_close(ws, 1008, "send queue full");
        ws->dispatching = 0;
    }
}

int x4_ws_send_text(x4_ws *ws, const char *data, size_t len) {
    if (ws == NULL || ws->state != WS_OPEN) return -1;
    const x4_http_opts *o = &ws->h->opts;
    /* Our data only: wslay's queue holds control frames, capped in on_ws_event (and reading it
     * would touch one more cache line per delivery). */
    size_t count = ws->out_msgs + ws->wbuf_msgs;
    size_t bytes = ws->out_len + ws->wbuf_len;
    /* One message bigger than the byte cap still goes into an empty queue: refusing it would
     * drop a healthy client over and over again. (0 = no cap.) */
    if ((o->ws_queue_max && count + 1 > o->ws_queue_max) ||
        (o->ws_queue_max_bytes && count > 0 && bytes + len > o->ws_queue_max_bytes)) {
        x4_info(MOD, "websocket send queue full (%zu messages, %zu bytes): closing 1008", count, bytes);
        ws_start_close(ws, 1008, "send queue full");
        return -1;
    }
    if (ws_out_append(ws, data, len) != 0) {
        x4_warn(MOD, "websocket send: out of memory: closing 1011");
        ws_start_close(ws, 1011, "out of memory");
        return -1;
    }
    ws_mark_dirty(ws);
    return 0;
}

void x4_ws_close(x4_ws *ws, uint16_t code, const char *reason) {
    if (ws) ws_start_close(ws, code, reason);
}

size_t x4_ws_queued(const x4_ws *ws) {
    if (ws == NULL || ws->conn == NULL) return 0;
    return ws_queued_msgs(ws);
}

void *x4_ws_data(const x4_ws *ws) { return ws ? ws->ud : NULL; }

/* ---------------------------------------------------------------------------------------- */
/* Requests. */

static void on_req_pool_dispose(void *p) {
    struct req_link *link = p;
    if (link->r) {
        link->r->gone = 1;
        link->r->req = NULL;
        link->r->link = NULL;
        link->r = NULL;
    }
}

static void req_release(struct req_impl *r) {
    if (r->link) r->link->r = NULL;
    r->magic = 0;
    free(r);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    x4_http *h = ((struct handler *)self)->h;
    if (h->closing) {
        send_plain(req, 503, "server shutting down\n", 1);
        return 0;
    }
    struct req_impl *r = calloc(1, sizeof *r);
    if (r == NULL) {
        send_plain(req, 503, "out of memory\n", 1);
        return 0;
    }
    r->magic = REQ_MAGIC;
    r->h = h;
    r->req = req;
    r->pub.priv = r;
    r->link = h2o_mem_alloc_shared(&req->pool, sizeof *r->link, on_req_pool_dispose);
    r->link->r = r;

    r->pub.method = req->method.base;
    r->pub.method_len = req->method.len;
    r->pub.path = req->path.base;
    r->pub.path_len = req->path.len;
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
        r->pub.path_len = req->query_at;
        r->pub.query = req->path.base + req->query_at + 1;
        r->pub.query_len = req->path.len - req->query_at - 1;
    }
    if (req->entity.base != NULL && req->entity.len > 0) {
        r->pub.body = req->entity.base;
        r->pub.body_len = req->entity.len;
    }
    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_peername ? req->conn->callbacks->get_peername(req->conn, (void *)&ss) : 0;
    if (sl != 0 && ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, r->addr, sizeof r->addr);
    } else if (sl != 0 && ss.ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) inet_ntop(AF_INET, &a6->s6_addr[12], r->addr, sizeof r->addr);
        else inet_ntop(AF_INET6, a6, r->addr, sizeof r->addr);
    }
    r->pub.remote_addr = r->addr;

    h->opts.handler(&r->pub, h->opts.ud);
    return 0;
}

int x4_req_method_is(const x4_req *r, const char *m) {
    size_t n = strlen(m);
    return r->method_len == n && memcmp(r->method, m, n) == 0;
}

const char *x4_req_header(const x4_req *xr, const char *name, size_t *len) {
    const struct req_impl *r = (const struct req_impl *)xr;
    if (r->gone || r->req == NULL) return NULL;
    h2o_req_t *req = r->req;
    size_t nlen = strlen(name);
    /* h2o keeps these out of req->headers */
    if (strcasecmp(name, "host") == 0) {
        if (req->input.authority.base == NULL ||
            (req->hostconf && req->input.authority.base == req->hostconf->authority.hostport.base))
            return NULL;
        if (len) *len = req->input.authority.len;
        return req->input.authority.base;
    }
    if (strcasecmp(name, "content-length") == 0) {
        if (req->entity.base == NULL) return NULL;
        struct req_impl *w = (struct req_impl *)r;
        int n = snprintf(w->clen, sizeof w->clen, "%zu", req->entity.len);
        if (len) *len = (size_t)n;
        return w->clen;
    }
    if (strcasecmp(name, "upgrade") == 0) {
        if (req->upgrade.base == NULL) return NULL;
        if (len) *len = req->upgrade.len;
        return req->upgrade.base;
    }
    for (size_t i = 0; i != req->headers.size; ++i) {
        const h2o_header_t *e = req->headers.entries + i;
        /* stored names are lower-case */
        if (h2o_lcstris(name, nlen, e->name->base, e->name->len)) {
            if (len) *len = e->value.len;
            return e->value.base;
        }
    }
    return NULL;
}

int x4_req_gone(const x4_req *r) { return ((const struct req_impl *)r)->gone; }

void x4_req_add_header(x4_req *xr, const char *name, const char *value) {
    struct req_impl *r = (struct req_impl *)xr;
    assert(r->magic == REQ_MAGIC);
    if (r->gone) return;
    h2o_req_t *req = r->req;
    size_t nlen = strlen(name), vlen = strlen(value);
    h2o_iovec_t n = h2o_strdup(&req->pool, name, nlen);
    h2o_strtolower(n.base, n.len);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, vlen);
    const h2o_token_t *tok = h2o_lookup_token(n.base, n.len);
    if (tok) h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v.base, v.len);
    else h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
}

void x4_req_respond(x4_req *xr, int status, const char *content_type, const char *body, size_t len) {
    struct req_impl *r = (struct req_impl *)xr;
    assert(r->magic == REQ_MAGIC && "x4_req answered twice");
    if (r->gone) {
        req_release(r);
        return;
    }
    h2o_req_t *req = r->req;
    req_release(r);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    if (content_type)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       h2o_strdup(&req->pool, content_type, SIZE_MAX).base, strlen(content_type));
    h2o_send_inline(req, body ? body : "", body ? len : 0); /* copies the body into the pool */
}

void x4_req_respond_json(x4_req *r, int status, json_t *body) {
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (s == NULL) {
        static const char err[] = "{\"success\":false,\"error\":\"response encoding failed\"}";
        x4_req_respond(r, 500, "application/json", err, sizeof err - 1);
        return;
    }
    x4_req_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

int x4_req_is_websocket(const x4_req *xr) {
    const struct req_impl *r = (const struct req_impl *)xr;
    if (r->gone || r->req == NULL || r->req->version >= 0x200) return 0;
    const char *key = NULL;
    return h2o_is_websocket_handshake(r->req, &key) == 0 && key != NULL;
}

x4_ws *x4_req_upgrade(x4_req *xr, x4_ws_msg_cb on_msg, x4_ws_close_cb on_close, void *ud) {
    struct req_impl *r = (struct req_impl *)xr;
    assert(r->magic == REQ_MAGIC);
    if (r->gone) {
        req_release(r);
        return NULL;
    }
    x4_http *h = r->h;
    const char *key = NULL;
    if (r->req->version >= 0x200 || h2o_is_websocket_handshake(r->req, &key) != 0 || key == NULL) {
        static const char msg[] = "not a WebSocket handshake\n";
        x4_req_respond(xr, 400, "text/plain; charset=utf-8", msg, sizeof msg - 1);
        return NULL;
    }
    if (h->closing) {
        static const char msg[] = "server shutting down\n";
        r->req->http1_is_persistent = 0;
        x4_req_respond(xr, 503, "text/plain; charset=utf-8", msg, sizeof msg - 1);
        return NULL;
    }
    x4_ws *ws = calloc(1, sizeof *ws);
    if (ws == NULL) {
        static const char msg[] = "out of memory\n";
        x4_req_respond(xr, 503, "text/plain; charset=utf-8", msg, sizeof msg - 1);
        return NULL;
    }
    ws->h = h;
    ws->on_msg = on_msg;
    ws->on_close = on_close;
    ws->ud = ud;
    ws->state = WS_OPEN;
    ws->fd = -2; /* not looked up yet: the socket exists once the 101 is written */
    uv_timer_init(h->loop, &ws->timer);
    ws->timer.data = ws;
    h->handles++;
    ws->next = h->ws_head;
    if (h->ws_head) h->ws_head->prev = ws;
    h->ws_head = ws;
    h->nws++;

    h2o_req_t *req = r->req;
    req_release(r); /* the upgrade disposes the request */
    ws->conn = h2o_upgrade_to_websocket(req, key, ws, on_ws_event);
    if (h->opts.max_body) wslay_event_config_set_max_recv_msg_length(ws->conn->ws_ctx, h->opts.max_body);
    return ws;
}

/* ---------------------------------------------------------------------------------------- */
/* Server. */

static void on_conn_closed(uv_handle_t *handle) {
    struct conn *c = (struct conn *)handle;
    x4_http *h = c->h;
    free(c);
    h->handles--;
    maybe_finish(h);
}

static void on_connection(uv_stream_t *server, int status) {
    x4_http *h = server->data;
    if (status < 0) {
        x4_warn(MOD, "accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = malloc(sizeof *c);
    if (c == NULL) return;
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    h->handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->closing) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&h->accept_ctx, sock);
}

static void on_final_closed(uv_handle_t *handle) {
    x4_http *h = handle->data;
    free(h);
}

static void on_reaper_closed(uv_handle_t *handle) {
    /* h2o's timer and async handles were closed in the same batch as the reaper and may not have
     * been reaped yet: close one more handle, which lands in the next batch, then free. */
    x4_http *h = handle->data;
    uv_idle_init(h->loop, &h->final);
    h->final.data = h;
    uv_close((uv_handle_t *)&h->final, on_final_closed);
}

static void maybe_finish(x4_http *h) {
    if (!h->closing || h->finished || h->handles != 0) return;
    h->finished = 1;
    uv_close((uv_handle_t *)&h->flusher, NULL); /* reaped in the same batch as the reaper */
    uv_close((uv_handle_t *)&h->reaper, on_reaper_closed);
    if (h->h2o_ready) {
        ctx_dispose(&h->ctx);
        h2o_config_dispose(&h->config);
    }
}

static void on_listener_closed(uv_handle_t *handle) {
    x4_http *h = handle->data;
    h->handles--;
    maybe_finish(h);
}

static void on_open_failed_closed(uv_handle_t *handle) { free(handle->data); }

int x4_http_open(x4_http **out, uv_loop_t *loop, const x4_http_opts *opts, char *err, size_t errlen) {
    *out = NULL;
    const char *bind = opts->bind && *opts->bind ? opts->bind : "0.0.0.0";
    struct sockaddr_storage ss;
    int af = strchr(bind, ':') ? AF_INET6 : AF_INET;
    int rc = af == AF_INET6 ? uv_ip6_addr(bind, opts->port, (struct sockaddr_in6 *)&ss)
                            : uv_ip4_addr(bind, opts->port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        snprintf(err, errlen, "bad bind address \"%s\"", bind);
        return -1;
    }
    if (opts->handler == NULL) {
        snprintf(err, errlen, "no request handler");
        return -1;
    }
    x4_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->loop = loop;
    h->opts = *opts;
    h->opts.bind = NULL; /* not kept */

    if ((rc = uv_tcp_init_ex(loop, &h->listener, af)) != 0) {
        snprintf(err, errlen, "socket: %s", uv_strerror(rc));
        free(h);
        return -1;
    }
    h->listener.data = h;
    const char *step = "bind";
    if (opts->reuseport) {
        /* libuv 1.44 has no UV_TCP_REUSEPORT: set it on the socket uv_tcp_init_ex made */
        uv_os_fd_t fd;
        int one = 1;
        step = "SO_REUSEPORT";
        if ((rc = uv_fileno((uv_handle_t *)&h->listener, &fd)) != 0) goto fail;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            rc = uv_translate_sys_error(errno);
            goto fail;
        }
        step = "bind";
    }
    if ((rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) != 0) goto fail;
    step = "listen";
    if ((rc = uv_listen((uv_stream_t *)&h->listener, 511, on_connection)) != 0) goto fail;
    {
        struct sockaddr_storage bound;
        int blen = sizeof bound;
        step = "getsockname";
        if ((rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen)) != 0) goto fail;
        h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
    }
    h->handles = 1; /* the listener */

    /* a peer that vanished must not kill the process on our next write */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&h->config);
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("x402r"));
    h->config.http1.upgrade_to_http2 = 0; /* HTTP/1.1 only; WebSocket needs it */
    if (opts->max_body) h->config.max_request_entity_size = opts->max_body;
    h2o_hostconf_t *host = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct handler *hd = (struct handler *)h2o_create_handler(path, sizeof *hd);
    hd->super.on_req = on_req;
    hd->h = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    h->h2o_ready = 1;

    uv_idle_init(loop, &h->reaper);
    h->reaper.data = h;
    uv_prepare_init(loop, &h->flusher);
    h->flusher.data = h;
    uv_unref((uv_handle_t *)&h->flusher); /* the sockets keep the loop alive, not the flusher */
    *out = h;
    return 0;

fail:
    snprintf(err, errlen, "%s %s:%d: %s", step, bind, opts->port, uv_strerror(rc));
    uv_close((uv_handle_t *)&h->listener, on_open_failed_closed);
    return -1;
}

int x4_http_port(const x4_http *h) { return h->port; }

size_t x4_http_ws_count(const x4_http *h) { return h->nws; }

void x4_http_close(x4_http *h) {
    if (h == NULL || h->closing) return;
    h->closing = 1;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    /* Requests parsed from now on get Connection: close. (Not h2o_context_request_shutdown(): its
     * HTTP/2 part arms a 1 s GOAWAY timer that nothing here would ever disarm.) */
    h->ctx.shutdown_requested = 1;
    for (x4_ws *ws = h->ws_head; ws; ws = ws->next) ws_start_close(ws, 1001, "server shutting down");
    /* Idle keep-alive connections (and half-received requests) wait on http1.req_timeout: make
     * it expire now, and at once for connections that go idle later (after their answer). */
    h->ctx.http1.req_timeout.timeout = 0;
    h2o_timeout_run(h->loop, &h->ctx.http1.req_timeout, h2o_now(h->loop));
    maybe_finish(h);
}
