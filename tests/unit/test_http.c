/* tests/unit/test_http.c — the HTTP/1.1 + WebSocket server (http/server.h) on a private loop.
 *
 * Each test runs the server in the main thread's own uv loop and drives it from a client thread
 * with plain blocking sockets (raw HTTP bytes, hand-made WebSocket frames). When the client is
 * done it wakes the loop (uv_async), which closes the server; the loop must then run to the end
 * and uv_loop_close() must succeed, i.e. no handle is left behind. Client sockets have a 10 s
 * receive timeout, so a server that fails to answer makes a test fail, never hang. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/util.h"
#include "http/server.h"
#include "unit.h"

/* ======================================================================================== */
/* Server side (runs on the loop thread). */

#define MAX_WS 8

typedef struct srv srv;

typedef struct {
    srv *s;
    x4_ws *ws;
    char name[64];
    int closes;    /* close_cb calls */
    int send_fail; /* x4_ws_send_text returned -1 */
    int active;
    int seq;       /* messages queued by the flood */
    int fail_tick; /* flood tick of the failed send */
} ws_slot;

struct srv {
    uv_loop_t loop;
    x4_http *h;
    uv_async_t done;
    pthread_t thr;
    void (*client)(srv *);
    int port;
    /* loop-side bookkeeping, read by the loop thread or after the join */
    ws_slot ws[MAX_WS];
    int nws;
    x4_req *held;
    int hold_count;
    int late_answered;
    int handled;
    /* flood (slow reader test) */
    uv_timer_t flood;
    int flood_on;
    size_t flood_size;
    int flood_after; /* messages still to send to the survivors once the slow one is closed */
    int flood_ticks;
    size_t ws_count_at_start, ws_count_at_done;
    int flood_gave_up;
    /* client-side results */
    atomic_int client_ok;
    int signaled; /* the client woke the loop itself (client thread only) */
    int fast_received;
};

static json_t *echo_json(x4_req *r) {
    json_t *o = json_object();
    json_object_set_new(o, "method", json_stringn(r->method, r->method_len));
    json_object_set_new(o, "path", json_stringn(r->path, r->path_len));
    json_object_set_new(o, "query", r->query ? json_stringn(r->query, r->query_len) : json_null());
    json_object_set_new(o, "body", r->body ? json_stringn(r->body, r->body_len) : json_null());
    json_object_set_new(o, "remote", json_string(r->remote_addr));
    size_t hl = 0;
    const char *hv = x4_req_header(r, "X-Custom", &hl);
    json_object_set_new(o, "hdr", hv ? json_stringn(hv, hl) : json_null());
    return o;
}

typedef struct {
    uv_timer_t t;
    x4_req *r;
    srv *s;
} late_ctx;

static void late_closed(uv_handle_t *h) { free(h->data); }

static void late_fire(uv_timer_t *t) {
    late_ctx *lc = t->data;
    lc->s->late_answered++;
    x4_req_respond_json(lc->r, 200, echo_json(lc->r));
    uv_close((uv_handle_t *)&lc->t, late_closed);
}

#define BURST_MAX 70000
static const size_t burst_sizes[] = {0, 1, 125, 126, 127, 65535, 65536, BURST_MAX};

static void ws_on_msg(x4_ws *ws, const char *data, size_t len, void *ud) {
    ws_slot *sl = ud;
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        x4_ws_close(ws, 1000, "bye");
        return;
    }
    if (len == 5 && memcmp(data, "burst", 5) == 0) {
        /* several messages in one loop turn, every frame header size: they leave in one write */
        char *buf = malloc(BURST_MAX);
        for (size_t i = 0; i < BURST_MAX; i++) buf[i] = (char)('a' + i % 26);
        for (size_t k = 0; k < sizeof burst_sizes / sizeof burst_sizes[0]; k++)
            if (x4_ws_send_text(ws, buf, burst_sizes[k]) != 0) sl->send_fail++;
        free(buf);
        if (x4_ws_send_text(ws, "end", 3) != 0) sl->send_fail++;
        return;
    }
    if (x4_ws_send_text(ws, data, len) != 0) sl->send_fail++;
}

static void ws_on_close(x4_ws *ws, void *ud) {
    ws_slot *sl = ud;
    sl->closes++;
    sl->active = 0;
    sl->ws = NULL;
}

/* 1 if queued; after the first failure nothing more is sent to that socket */
static int flood_send(ws_slot *sl, const char *body, size_t len) {
    if (!sl->active || sl->send_fail) return 0;
    if (x4_ws_send_text(sl->ws, body, len) == 0) return 1;
    sl->send_fail++;
    sl->fail_tick = sl->s->flood_ticks;
    return 0;
}

static void flood_tick(uv_timer_t *t) {
    srv *s = t->data;
    s->flood_ticks++;
    int slow_closed = 0;
    for (int i = 0; i < s->nws; i++)
        if (strcmp(s->ws[i].name, "slow") == 0 && s->ws[i].closes) slow_closed = 1;
    if (s->flood_ticks > 20000) s->flood_gave_up = 1; /* ~20 s: give up, the test fails */
    if (slow_closed || s->flood_gave_up) {
        if (s->flood_after-- <= 0) {
            s->ws_count_at_done = x4_http_ws_count(s->h);
            for (int i = 0; i < s->nws; i++)
                if (s->ws[i].active) flood_send(&s->ws[i], "done", 4);
            uv_close((uv_handle_t *)&s->flood, NULL);
            s->flood_on = 0;
            return;
        }
    }
    char *buf = malloc(s->flood_size);
    memset(buf, 'x', s->flood_size);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < s->nws; i++) {
            ws_slot *sl = &s->ws[i];
            int n = snprintf(buf, 32, "seq:%d:", sl->seq);
            buf[n] = 'x';
            if (flood_send(sl, buf, s->flood_size)) sl->seq++;
        }
    }
    free(buf);
}

static void handler(x4_req *r, void *ud) {
    srv *s = ud;
    char q[64];
    s->handled++;
    if (r->path_len == 3 && memcmp(r->path, "/ws", 3) == 0) {
        if (!x4_req_is_websocket(r)) {
            x4_req_respond(r, 426, "text/plain", "upgrade required", 16);
            return;
        }
        ws_slot *sl = &s->ws[s->nws];
        memset(sl, 0, sizeof *sl);
        sl->s = s;
        if (r->query && x4_query_get(r->query, r->query_len, "name", q, sizeof q) == 1)
            snprintf(sl->name, sizeof sl->name, "%s", q);
        sl->ws = x4_req_upgrade(r, ws_on_msg, ws_on_close, sl);
        if (sl->ws) {
            sl->active = 1;
            s->nws++;
        }
        return;
    }
    if (r->path_len == 5 && memcmp(r->path, "/late", 5) == 0) {
        late_ctx *lc = calloc(1, sizeof *lc);
        lc->r = r;
        lc->s = s;
        uv_timer_init(&s->loop, &lc->t);
        lc->t.data = lc;
        uv_timer_start(&lc->t, late_fire, 50, 0);
        return;
    }
    if (r->path_len == 5 && memcmp(r->path, "/hold", 5) == 0) {
        s->held = r;
        s->hold_count++;
        return;
    }
    if (r->path_len == 8 && memcmp(r->path, "/release", 8) == 0) {
        json_t *o = json_object();
        if (s->held) {
            json_object_set_new(o, "gone_before", json_boolean(x4_req_gone(s->held)));
            x4_req_respond(s->held, 200, "text/plain", "late answer", 11);
            s->held = NULL;
            json_object_set_new(o, "released", json_true());
        } else {
            json_object_set_new(o, "released", json_false());
        }
        x4_req_respond_json(r, 200, o);
        return;
    }
    if (r->path_len == 6 && memcmp(r->path, "/stats", 6) == 0) {
        x4_req_respond_json(r, 200, json_pack("{s:i,s:i,s:i}", "hold_count", s->hold_count, "ws",
                                              (int)x4_http_ws_count(s->h), "late_answered", s->late_answered));
        return;
    }
    if (r->path_len == 6 && memcmp(r->path, "/flood", 6) == 0) {
        s->flood_size = 16384;
        if (r->query && x4_query_get(r->query, r->query_len, "size", q, sizeof q) == 1)
            s->flood_size = (size_t)atoi(q);
        s->flood_after = 10;
        s->ws_count_at_start = x4_http_ws_count(s->h);
        uv_timer_init(&s->loop, &s->flood);
        s->flood.data = s;
        uv_timer_start(&s->flood, flood_tick, 1, 1);
        s->flood_on = 1;
        x4_req_respond(r, 200, "text/plain", "flooding", 8);
        return;
    }
    x4_req_add_header(r, "X-Test", "yes");
    x4_req_respond_json(r, 200, echo_json(r));
}

static void on_done(uv_async_t *a) {
    srv *s = a->data;
    if (s->flood_on) {
        uv_close((uv_handle_t *)&s->flood, NULL);
        s->flood_on = 0;
    }
    x4_http_close(s->h);
    uv_close((uv_handle_t *)&s->done, NULL);
}

static void *client_main(void *arg) {
    srv *s = arg;
    s->client(s);
    if (!s->signaled) uv_async_send(&s->done);
    return NULL;
}

static x4_http_opts test_opts(srv *s) {
    x4_http_opts o = {0};
    o.bind = "127.0.0.1";
    o.port = 0;
    o.max_body = 4096;
    o.ws_queue_max = 64;
    o.ws_queue_max_bytes = 256 * 1024;
    o.handler = handler;
    o.ud = s;
    return o;
}

static srv *g_last; /* the last run's state */

/* Runs the server until the client function returns, then closes it and runs the loop dry. */
static void run_with_client(void (*client)(srv *)) {
    srv *s = calloc(1, sizeof *s);
    char err[256] = "";
    signal(SIGPIPE, SIG_IGN);
    CHECK(uv_loop_init(&s->loop) == 0);
    x4_http_opts o = test_opts(s);
    int rc = x4_http_open(&s->h, &s->loop, &o, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  open: %s\n", err);
        uv_loop_close(&s->loop);
        free(g_last);
        g_last = s;
        return;
    }
    s->port = x4_http_port(s->h);
    CHECK(s->port > 0);
    uv_async_init(&s->loop, &s->done, on_done);
    s->done.data = s;
    s->client = client;
    atomic_store(&s->client_ok, 0);
    pthread_create(&s->thr, NULL, client_main, s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    pthread_join(s->thr, NULL);
    CHECK_EQ_INT(uv_loop_close(&s->loop), 0);
    for (int i = 0; i < s->nws; i++) CHECK_EQ_INT(s->ws[i].closes, 1);
    CHECK(s->held == NULL);
    /* hand the server state to the test for its post-run checks */
    free(g_last);
    g_last = s;
}

/* ======================================================================================== */
/* Client side (runs on the client thread). */

static int tcp_connect(int port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_str(int fd, const char *s) { return write_all(fd, s, strlen(s)); }

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    int eof;
} rbuf;

static void rb_init(rbuf *rb, int fd) {
    memset(rb, 0, sizeof *rb);
    rb->fd = fd;
}
static void rb_free(rbuf *rb) { free(rb->buf); }

/* Reads more bytes; 0 on success, -1 on EOF/error/timeout. */
static int rb_fill(rbuf *rb) {
    if (rb->cap - rb->len < 65536) {
        rb->cap = rb->cap * 2 + 65536;
        rb->buf = realloc(rb->buf, rb->cap);
    }
    ssize_t n;
    do n = read(rb->fd, rb->buf + rb->len, rb->cap - rb->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        rb->eof = 1;
        return -1;
    }
    rb->len += (size_t)n;
    return 0;
}

static void rb_consume(rbuf *rb, size_t n) {
    memmove(rb->buf, rb->buf + n, rb->len - n);
    rb->len -= n;
}

static long rb_find(rbuf *rb, const char *needle) {
    size_t nl = strlen(needle);
    for (;;) {
        if (rb->len >= nl)
            for (size_t i = 0; i + nl <= rb->len; i++)
                if (memcmp(rb->buf + i, needle, nl) == 0) return (long)i;
        if (rb_fill(rb) != 0) return -1;
    }
}

static int rb_need(rbuf *rb, size_t n) {
    while (rb->len < n)
        if (rb_fill(rb) != 0) return -1;
    return 0;
}

typedef struct {
    int status;
    char headers[4096]; /* lower-cased */
    char *body;
    size_t body_len;
} resp;

static void resp_free(resp *r) {
    free(r->body);
    r->body = NULL;
}

static const char *resp_header(const resp *r, const char *name, char *out, size_t outlen) {
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s:", name);
    const char *p = strstr(r->headers, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    size_t i = 0;
    while (p[i] && p[i] != '\r' && i + 1 < outlen) {
        out[i] = p[i];
        i++;
    }
    out[i] = 0;
    return out;
}

/* Reads one response (status line, headers, body by content-length, chunked, or to EOF). */
static int read_response(rbuf *rb, resp *r) {
    memset(r, 0, sizeof *r);
    long end = rb_find(rb, "\r\n\r\n");
    if (end < 0) return -1;
    size_t hl = (size_t)end + 4;
    if (sscanf(rb->buf, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    size_t cp = hl < sizeof r->headers - 1 ? hl : sizeof r->headers - 1;
    r->headers[0] = '\n';
    for (size_t i = 0; i + 1 < cp; i++) {
        char c = rb->buf[i];
        r->headers[i + 1] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    r->headers[cp] = 0;
    rb_consume(rb, hl);
    if (r->status < 200 || r->status == 204 || r->status == 304) {
        r->body = calloc(1, 1);
        return 0;
    }
    char v[64];
    if (resp_header(r, "content-length", v, sizeof v)) {
        size_t n = (size_t)strtoull(v, NULL, 10);
        if (rb_need(rb, n) != 0) return -1;
        r->body = malloc(n + 1);
        memcpy(r->body, rb->buf, n);
        r->body[n] = 0;
        r->body_len = n;
        rb_consume(rb, n);
        return 0;
    }
    if (resp_header(r, "transfer-encoding", v, sizeof v) && strstr(v, "chunked")) {
        x4_buf b = {0};
        for (;;) {
            long e = rb_find(rb, "\r\n");
            if (e < 0) return -1;
            size_t n = (size_t)strtoull(rb->buf, NULL, 16);
            rb_consume(rb, (size_t)e + 2);
            if (n == 0) {
                if (rb_find(rb, "\r\n") < 0) return -1;
                rb_consume(rb, 2);
                break;
            }
            if (rb_need(rb, n + 2) != 0) return -1;
            x4_buf_append(&b, rb->buf, n);
            rb_consume(rb, n + 2);
        }
        r->body = malloc(b.len + 1);
        memcpy(r->body, b.data ? b.data : "", b.len);
        r->body[b.len] = 0;
        r->body_len = b.len;
        x4_buf_free(&b);
        return 0;
    }
    while (rb_fill(rb) == 0) {
    }
    r->body = malloc(rb->len + 1);
    memcpy(r->body, rb->buf, rb->len);
    r->body[rb->len] = 0;
    r->body_len = rb->len;
    rb_consume(rb, rb->len);
    return 0;
}

/* Reads a response and checks that it is the echo of method/path/query/body. */
static void check_echo(rbuf *rb, const char *method, const char *path, const char *query, const char *body) {
    resp r;
    int rc = read_response(rb, &r);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    CHECK_EQ_INT(r.status, 200);
    char ct[64];
    CHECK(resp_header(&r, "content-type", ct, sizeof ct) && strcmp(ct, "application/json") == 0);
    json_error_t je;
    json_t *j = json_loadb(r.body, r.body_len, 0, &je);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(json_string_value(json_object_get(j, "method")), method);
        CHECK_EQ_STR(json_string_value(json_object_get(j, "path")), path);
        if (query) CHECK_EQ_STR(json_string_value(json_object_get(j, "query")), query);
        else CHECK(json_is_null(json_object_get(j, "query")));
        if (body) CHECK_EQ_STR(json_string_value(json_object_get(j, "body")), body);
        else CHECK(json_is_null(json_object_get(j, "body")));
        json_decref(j);
    }
    resp_free(&r);
}

static json_t *get_json(int port, const char *target) {
    int fd = tcp_connect(port, 0);
    if (fd < 0) return NULL;
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", target);
    write_str(fd, req);
    rbuf rb;
    rb_init(&rb, fd);
    resp r;
    json_t *j = NULL;
    if (read_response(&rb, &r) == 0) {
        j = json_loadb(r.body, r.body_len, 0, NULL);
        resp_free(&r);
    }
    rb_free(&rb);
    close(fd);
    return j;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* WebSocket client helpers. */
static int ws_handshake(int fd, rbuf *rb, const char *name) {
    char req[512];
    snprintf(req, sizeof req,
             "GET /ws?name=%s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             name);
    if (write_str(fd, req) != 0) return -1;
    long end = rb_find(rb, "\r\n\r\n");
    if (end < 0) return -1;
    int status = 0;
    sscanf(rb->buf, "HTTP/1.1 %d", &status);
    int ok = status == 101 && memmem(rb->buf, (size_t)end, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28) != NULL;
    rb_consume(rb, (size_t)end + 4);
    return ok ? 0 : -1;
}

static int ws_send_frame(int fd, int opcode, const void *data, size_t len) {
    unsigned char hdr[14];
    size_t hl = 0;
    hdr[hl++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        hdr[hl++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (unsigned char)(len >> 8);
        hdr[hl++] = (unsigned char)len;
    } else {
        hdr[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) hdr[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    unsigned char *buf = malloc(hl + len);
    memcpy(buf, hdr, hl);
    for (size_t i = 0; i < len; i++) buf[hl + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
    int rc = write_all(fd, buf, hl + len);
    free(buf);
    return rc;
}

/* Reads one (unfragmented, unmasked) frame; the payload is malloc'ed and NUL-terminated. */
static int ws_read_frame(rbuf *rb, int *opcode, char **payload, size_t *len) {
    if (rb_need(rb, 2) != 0) return -1;
    unsigned char b0 = (unsigned char)rb->buf[0], b1 = (unsigned char)rb->buf[1];
    size_t hl = 2;
    uint64_t n = b1 & 0x7f;
    if (n == 126) {
        if (rb_need(rb, 4) != 0) return -1;
        n = ((uint64_t)(unsigned char)rb->buf[2] << 8) | (unsigned char)rb->buf[3];
        hl = 4;
    } else if (n == 127) {
        if (rb_need(rb, 10) != 0) return -1;
        n = 0;
        for (int i = 0; i < 8; i++) n = (n << 8) | (unsigned char)rb->buf[2 + i];
        hl = 10;
    }
    if (b1 & 0x80) return -1; /* servers never mask */
    if (rb_need(rb, hl + n) != 0) return -1;
    *opcode = b0 & 0x0f;
    *payload = malloc(n + 1);
    memcpy(*payload, rb->buf + hl, n);
    (*payload)[n] = 0;
    *len = n;
    rb_consume(rb, hl + n);
    return 0;
}

static int close_code(const char *p, size_t len) {
    return len >= 2 ? ((unsigned char)p[0] << 8) | (unsigned char)p[1] : -1;
}

/* ======================================================================================== */
/* Tests. */

static void client_simple_get(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    write_str(fd, "GET /hello/world?a=1&b=two HTTP/1.1\r\nHost: t\r\nX-Custom: custom-value\r\n\r\n");
    rbuf rb;
    rb_init(&rb, fd);
    resp r;
    CHECK_EQ_INT(read_response(&rb, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    char v[128];
    CHECK(resp_header(&r, "x-test", v, sizeof v) && strcmp(v, "yes") == 0);
    CHECK(resp_header(&r, "content-length", v, sizeof v) && (size_t)atoi(v) == r.body_len);
    json_t *j = r.body ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(json_string_value(json_object_get(j, "method")), "GET");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "path")), "/hello/world");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "query")), "a=1&b=two");
        CHECK(json_is_null(json_object_get(j, "body")));
        CHECK_EQ_STR(json_string_value(json_object_get(j, "remote")), "127.0.0.1");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "hdr")), "custom-value");
        json_decref(j);
    }
    resp_free(&r);
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_simple_get) {
    run_with_client(client_simple_get);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->handled, 1);
}

static void client_keepalive(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    write_str(fd, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    check_echo(&rb, "GET", "/one", NULL, NULL);
    write_str(fd, "POST /two?x=y HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    check_echo(&rb, "POST", "/two", "x=y", "hello world");
    write_str(fd, "DELETE /three HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    check_echo(&rb, "DELETE", "/three", NULL, NULL);
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_keepalive) {
    run_with_client(client_keepalive);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->handled, 3);
}

static void client_pipelined(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    /* POST answered late (50 ms timer) + GET, in one write */
    const char *two = "POST /late HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                      "GET /x?after=late HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK_EQ_INT(write_str(fd, two), 0);
    check_echo(&rb, "POST", "/late", NULL, "hello");
    check_echo(&rb, "GET", "/x", "after=late", NULL);
    /* GET + POST + POST (late) + POST in one write */
    const char *four = "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nbbb"
                       "POST /late?n=3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\ncc\r\n0\r\n\r\n"
                       "POST /d HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndddd";
    CHECK_EQ_INT(write_str(fd, four), 0);
    check_echo(&rb, "GET", "/a", NULL, NULL);
    check_echo(&rb, "POST", "/b", NULL, "bbb");
    check_echo(&rb, "POST", "/late", "n=3", "cc");
    check_echo(&rb, "POST", "/d", NULL, "dddd");
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_pipelined_late_answer_in_order) {
    run_with_client(client_pipelined);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->late_answered, 2);
    CHECK_EQ_INT(g_last->handled, 6);
}

static void client_chunked(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    /* chunk sizes in hex, a chunk extension, the trailer section; sent in pieces */
    CHECK_EQ_INT(write_str(fd, "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), 0);
    sleep_ms(20);
    CHECK_EQ_INT(write_str(fd, "1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n"), 0);
    check_echo(&rb, "POST", "/chunked", NULL, "hello 0123456789");
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_chunked_request_body) {
    run_with_client(client_chunked);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
}

static void client_expect(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    CHECK_EQ_INT(write_str(fd, "POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n"), 0);
    resp r;
    CHECK_EQ_INT(read_response(&rb, &r), 0); /* the body is not sent until this arrives */
    CHECK_EQ_INT(r.status, 100);
    resp_free(&r);
    CHECK_EQ_INT(write_str(fd, "payload"), 0);
    check_echo(&rb, "POST", "/expect", NULL, "payload");
    /* and a keep-alive request after it */
    CHECK_EQ_INT(write_str(fd, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    check_echo(&rb, "GET", "/after", NULL, NULL);
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_expect_100_continue) {
    run_with_client(client_expect);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
}

static void client_too_large(srv *s) {
    /* Content-Length over max_body (4096): 413 without reading the body */
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    CHECK_EQ_INT(write_str(fd, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"), 0);
    resp r;
    CHECK_EQ_INT(read_response(&rb, &r), 0);
    CHECK_EQ_INT(r.status, 413);
    resp_free(&r);
    rb_free(&rb);
    close(fd);

    /* the same with a chunked body that grows past it */
    fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rb_init(&rb, fd);
    CHECK_EQ_INT(write_str(fd, "POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    char chunk[1100];
    memcpy(chunk, "400\r\n", 5);
    memset(chunk + 5, 'z', 1024);
    memcpy(chunk + 5 + 1024, "\r\n", 2);
    for (int i = 0; i < 6; i++)
        if (write_all(fd, chunk, 5 + 1024 + 2) != 0) break; /* the server may close early */
    CHECK_EQ_INT(read_response(&rb, &r), 0);
    CHECK_EQ_INT(r.status, 413);
    resp_free(&r);
    rb_free(&rb);
    close(fd);

    /* just under the limit is fine */
    fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rb_init(&rb, fd);
    char *req = malloc(8192);
    int n = snprintf(req, 8192, "POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 4000\r\n\r\n");
    memset(req + n, 'a', 4000);
    CHECK_EQ_INT(write_all(fd, req, (size_t)n + 4000), 0);
    CHECK_EQ_INT(read_response(&rb, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    free(req);
    rb_free(&rb);
    close(fd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_body_over_max_is_413) {
    run_with_client(client_too_large);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->handled, 1); /* only the small one reached the handler */
}

static void client_gone(srv *s) {
    /* 1: a request the server holds; the client hangs up before the answer */
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK_EQ_INT(write_str(fd, "POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nheld"), 0);
    int held = 0;
    for (int i = 0; i < 500 && !held; i++) { /* until the handler has it (at most 5 s) */
        json_t *st = get_json(s->port, "/stats");
        held = st && json_integer_value(json_object_get(st, "hold_count")) == 1;
        json_decref(st);
        if (!held) sleep_ms(10);
    }
    CHECK(held);
    close(fd);
    sleep_ms(20);
    /* 2: the answer goes to a closed socket; the server must shrug it off */
    json_t *rel = get_json(s->port, "/release");
    CHECK(rel && json_is_true(json_object_get(rel, "released")));
    json_decref(rel);
    /* 3: the late answer from a timer, same story */
    fd = tcp_connect(s->port, 0);
    CHECK_EQ_INT(write_str(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    close(fd);
    int answered = 0;
    for (int i = 0; i < 500 && !answered; i++) {
        json_t *st = get_json(s->port, "/stats");
        answered = st && json_integer_value(json_object_get(st, "late_answered")) == 1;
        json_decref(st);
        if (!answered) sleep_ms(10);
    }
    CHECK(answered);
    /* the server still works */
    json_t *st = get_json(s->port, "/stats");
    CHECK(st != NULL);
    json_decref(st);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(http_client_gone_before_late_answer) {
    run_with_client(client_gone);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
}

static void client_ws_echo(srv *s) {
    int fd = tcp_connect(s->port, 0);
    CHECK(fd >= 0);
    if (fd < 0) return;
    rbuf rb;
    rb_init(&rb, fd);
    CHECK_EQ_INT(ws_handshake(fd, &rb, "echo"), 0);
    int op;
    char *p;
    size_t n;
    CHECK_EQ_INT(ws_send_frame(fd, 1, "hello", 5), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_INT(op, 1);
    CHECK_EQ_STR(p, "hello");
    free(p);
    /* a longer one (16-bit length) and two in one write */
    char big[1000];
    memset(big, 'q', sizeof big);
    CHECK_EQ_INT(ws_send_frame(fd, 1, big, sizeof big), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_INT(n, sizeof big);
    CHECK(n == sizeof big && memcmp(p, big, n) == 0);
    free(p);
    CHECK_EQ_INT(ws_send_frame(fd, 1, "one", 3), 0);
    CHECK_EQ_INT(ws_send_frame(fd, 1, "two", 3), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_STR(p, "one");
    free(p);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_STR(p, "two");
    free(p);
    /* a burst queued in one turn, with a ping right behind the request: every data frame intact
     * and in order (2-, 4- and 10-byte headers), the pong in between or after, never inside */
    CHECK_EQ_INT(ws_send_frame(fd, 1, "burst", 5), 0);
    CHECK_EQ_INT(ws_send_frame(fd, 9, "p2", 2), 0);
    {
        size_t k = 0, nb = sizeof burst_sizes / sizeof burst_sizes[0];
        int pongs = 0, got_end = 0, bad = 0;
        while (!(got_end && pongs == 1) && ws_read_frame(&rb, &op, &p, &n) == 0) {
            if (op == 10) {
                pongs++;
                CHECK(n == 2 && memcmp(p, "p2", 2) == 0);
            } else if (op != 1) {
                bad++;
            } else if (k < nb) {
                if (n != burst_sizes[k]) bad++;
                for (size_t i = 0; i < n && !bad; i++)
                    if (p[i] != (char)('a' + i % 26)) bad++;
                k++;
            } else {
                CHECK_EQ_STR(p, "end");
                got_end = 1;
            }
            free(p);
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT((int)k, (int)nb);
        CHECK_EQ_INT(got_end, 1);
        CHECK_EQ_INT(pongs, 1);
    }
    /* ping is answered by a pong */
    CHECK_EQ_INT(ws_send_frame(fd, 9, "pp", 2), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_INT(op, 10);
    free(p);
    /* the count while open */
    json_t *st = get_json(s->port, "/stats");
    CHECK(st && json_integer_value(json_object_get(st, "ws")) == 1);
    json_decref(st);
    /* client-initiated close: the server answers with a close frame and hangs up */
    CHECK_EQ_INT(ws_send_frame(fd, 8, "\x03\xe8", 2), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_INT(op, 8);
    free(p);
    CHECK_EQ_INT(rb_fill(&rb), -1); /* EOF */
    rb_free(&rb);
    close(fd);

    /* server-initiated close ("close" makes the handler call x4_ws_close) */
    fd = tcp_connect(s->port, 0);
    rb_init(&rb, fd);
    CHECK_EQ_INT(ws_handshake(fd, &rb, "echo2"), 0);
    CHECK_EQ_INT(ws_send_frame(fd, 1, "close", 5), 0);
    CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
    CHECK_EQ_INT(op, 8);
    CHECK_EQ_INT(close_code(p, n), 1000);
    free(p);
    CHECK_EQ_INT(ws_send_frame(fd, 8, "\x03\xe8", 2), 0);
    CHECK_EQ_INT(rb_fill(&rb), -1);
    rb_free(&rb);
    close(fd);

    /* a message over max_body (4096) closes with 1009, a binary one with 1003 */
    static const struct { const char *name; int opcode; size_t len; int code; } bad[] = {
        {"toobig", 1, 5000, 1009}, {"binary", 2, 10, 1003}};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        fd = tcp_connect(s->port, 0);
        rb_init(&rb, fd);
        CHECK_EQ_INT(ws_handshake(fd, &rb, bad[b].name), 0);
        char *msg = calloc(1, bad[b].len);
        CHECK_EQ_INT(ws_send_frame(fd, bad[b].opcode, msg, bad[b].len), 0);
        free(msg);
        CHECK_EQ_INT(ws_read_frame(&rb, &op, &p, &n), 0);
        CHECK_EQ_INT(op, 8);
        CHECK_EQ_INT(close_code(p, n), bad[b].code);
        free(p);
        ws_send_frame(fd, 8, "\x03\xe8", 2);
        CHECK_EQ_INT(rb_fill(&rb), -1);
        rb_free(&rb);
        close(fd);
    }

    /* a plain request to /ws is not upgraded */
    fd = tcp_connect(s->port, 0);
    rb_init(&rb, fd);
    write_str(fd, "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n");
    resp r;
    CHECK_EQ_INT(read_response(&rb, &r), 0);
    CHECK_EQ_INT(r.status, 426);
    resp_free(&r);
    rb_free(&rb);
    close(fd);

    /* wait until both close_cbs ran: the count drops to 0 */
    int zero = 0;
    for (int i = 0; i < 500 && !zero; i++) {
        st = get_json(s->port, "/stats");
        zero = st && json_integer_value(json_object_get(st, "ws")) == 0;
        json_decref(st);
        if (!zero) sleep_ms(10);
    }
    CHECK(zero);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(ws_handshake_echo_close) {
    run_with_client(client_ws_echo);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->nws, 4);
    for (int i = 0; i < g_last->nws; i++) {
        CHECK_EQ_INT(g_last->ws[i].closes, 1);
        CHECK_EQ_INT(g_last->ws[i].send_fail, 0);
    }
}

static void client_slow_reader(srv *s) {
    /* the slow client: a small receive buffer, handshake, then never reads again */
    int slow = tcp_connect(s->port, 4096);
    CHECK(slow >= 0);
    rbuf srb;
    rb_init(&srb, slow);
    CHECK_EQ_INT(ws_handshake(slow, &srb, "slow"), 0);
    int fast = tcp_connect(s->port, 0);
    rbuf frb;
    rb_init(&frb, fast);
    CHECK_EQ_INT(ws_handshake(fast, &frb, "fast"), 0);
    json_t *st = get_json(s->port, "/flood?size=16384");
    CHECK(st == NULL); /* the answer is text, not JSON; it only starts the flood */
    int op, expect = 0, order_ok = 1, got_done = 0;
    char *p;
    size_t n;
    while (ws_read_frame(&frb, &op, &p, &n) == 0) {
        if (op == 1 && n == 4 && memcmp(p, "done", 4) == 0) {
            got_done = 1;
            free(p);
            break;
        }
        int seq = -1;
        if (op != 1 || sscanf(p, "seq:%d:", &seq) != 1 || seq != expect || n != 16384) order_ok = 0;
        expect++;
        free(p);
    }
    CHECK(got_done);
    CHECK(order_ok);
    CHECK(expect > 10);
    s->fast_received = expect;
    /* fast closes normally */
    CHECK_EQ_INT(ws_send_frame(fast, 8, "\x03\xe8", 2), 0);
    for (;;) {
        if (ws_read_frame(&frb, &op, &p, &n) != 0) break;
        free(p);
        if (op == 8) break;
    }
    rb_free(&frb);
    close(fast);
    rb_free(&srb);
    close(slow);
    int zero = 0;
    for (int i = 0; i < 500 && !zero; i++) {
        st = get_json(s->port, "/stats");
        zero = st && json_integer_value(json_object_get(st, "ws")) == 0;
        json_decref(st);
        if (!zero) sleep_ms(10);
    }
    CHECK(zero);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(ws_slow_reader_is_dropped_others_continue) {
    run_with_client(client_slow_reader);
    srv *s = g_last;
    CHECK_EQ_INT(atomic_load(&s->client_ok), 1);
    CHECK_EQ_INT(s->flood_gave_up, 0);
    CHECK_EQ_INT(s->nws, 2);
    CHECK_EQ_INT((int)s->ws_count_at_start, 2);
    CHECK_EQ_INT((int)s->ws_count_at_done, 1);
    int slow_seq = 0, fast_seq = 0, slow_fail_tick = 0;
    for (int i = 0; i < s->nws; i++) {
        CHECK_EQ_INT(s->ws[i].closes, 1);
        if (strcmp(s->ws[i].name, "slow") == 0) {
            CHECK_EQ_INT(s->ws[i].send_fail, 1);
            slow_seq = s->ws[i].seq;
            slow_fail_tick = s->ws[i].fail_tick;
        } else {
            CHECK_EQ_INT(s->ws[i].send_fail, 0);
            fast_seq = s->ws[i].seq;
        }
    }
    /* the fast one got everything (checked by the client), well past the slow one's drop */
    CHECK(fast_seq > slow_seq);
    CHECK_EQ_INT(s->fast_received, fast_seq);
    fprintf(stderr, "  slow reader dropped at flood tick %d after %d x %zu-byte messages; the other got %d\n",
            slow_fail_tick, slow_seq, s->flood_size, fast_seq);
}

static void client_shutdown(srv *s) {
    /* an open WebSocket and an idle keep-alive connection when the server closes */
    int wfd = tcp_connect(s->port, 0);
    rbuf wrb;
    rb_init(&wrb, wfd);
    CHECK_EQ_INT(ws_handshake(wfd, &wrb, "open"), 0);
    int ifd = tcp_connect(s->port, 0);
    rbuf irb;
    rb_init(&irb, ifd);
    write_str(ifd, "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n");
    check_echo(&irb, "GET", "/idle", NULL, NULL);
    /* tell the loop to close the server, then watch */
    s->signaled = 1;
    uv_async_send(&s->done);
    int op;
    char *p;
    size_t n;
    CHECK_EQ_INT(ws_read_frame(&wrb, &op, &p, &n), 0);
    CHECK_EQ_INT(op, 8);
    CHECK_EQ_INT(close_code(p, n), 1001);
    free(p);
    CHECK_EQ_INT(ws_send_frame(wfd, 8, "\x03\xe9", 2), 0);
    CHECK_EQ_INT(rb_fill(&wrb), -1);
    CHECK_EQ_INT(rb_fill(&irb), -1); /* the idle connection is closed too */
    rb_free(&wrb);
    rb_free(&irb);
    close(wfd);
    close(ifd);
    atomic_store(&s->client_ok, 1);
}

X4_TEST(close_sends_1001_and_closes_idle_connections) {
    run_with_client(client_shutdown);
    CHECK_EQ_INT(atomic_load(&g_last->client_ok), 1);
    CHECK_EQ_INT(g_last->nws, 1);
}

static void noop_handler(x4_req *r, void *ud) { x4_req_respond(r, 204, NULL, NULL, 0); }

X4_TEST(open_reuseport_and_bind_errors) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_http *a = NULL, *b = NULL, *c = NULL;
    char err[256];
    x4_http_opts o = {.bind = "127.0.0.1", .port = 0, .reuseport = 1, .max_body = 1024, .handler = noop_handler};
    CHECK_EQ_INT(x4_http_open(&a, &loop, &o, err, sizeof err), 0);
    o.port = x4_http_port(a);
    CHECK_EQ_INT(x4_http_open(&b, &loop, &o, err, sizeof err), 0); /* shares the port */
    o.reuseport = 0;
    CHECK_EQ_INT(x4_http_open(&c, &loop, &o, err, sizeof err), -1);
    CHECK(c == NULL);
    CHECK(strstr(err, "in use") != NULL || strstr(err, "EADDRINUSE") != NULL || strlen(err) > 0);
    o.bind = "not-an-address";
    CHECK_EQ_INT(x4_http_open(&c, &loop, &o, err, sizeof err), -1);
    x4_http_close(a);
    x4_http_close(b);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

__attribute__((destructor)) static void free_last(void) { free(g_last); }
