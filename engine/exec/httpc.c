/* exec/httpc.c — outgoing HTTP: one libcurl multi handle driven by the engine's libuv loop.
 *
 * Shape. curl owns the protocol and the connection cache (so keep-alive connections are reused
 * across calls); the loop owns the waiting. curl tells us which sockets to watch through
 * CURLMOPT_SOCKETFUNCTION (one uv_poll per socket, remembered with curl_multi_assign) and when
 * to wake it through CURLMOPT_TIMERFUNCTION (which only arms our one uv_timer: calling
 * curl_multi_socket_action from inside it would re-enter curl). Each poll event or timer
 * expiry calls curl_multi_socket_action, then drains curl_multi_info_read and finishes every
 * completed call.
 *
 * A call copies what it is given (URL, headers, body) and owns its response (body capped at
 * max_response: the write callback refuses the byte that would cross it, which curl reports as a
 * write error, and we report as X4_HTTPC_TOO_LARGE — never a silently truncated body). Its
 * callback runs exactly once: from the loop on completion, or synchronously from
 * x4_httpc_cancel()/x4_httpc_close(), or from x4_httpc_request() itself when the call could not
 * start. Before the callback runs the call has left the multi handle and its easy handle is
 * cleaned up, so a callback may start, cancel or close anything — including the whole client.
 *
 * Re-entrancy. User code never runs inside a curl callback. While a poll or timer dispatch is
 * running (`depth` > 0) x4_httpc_close() cancels every call at once but postpones
 * curl_multi_cleanup() until the dispatch unwinds. Handles are closed in close callbacks; the
 * client struct is freed by the last one, so the loop must run once more after close.
 *
 * Sockets. curl reports a socket's removal before it closes it, and a new socket may get the
 * same descriptor number right after; the removed socket's uv_poll is stopped and closed at
 * once (freed in its close callback), and any watcher still registered for a descriptor curl
 * announces as new is retired first. libuv reports POLLERR as a poll error and stops the
 * handle: we pass CURL_CSELECT_ERR and re-arm if curl still wants the socket.
 *
 * Defaults: connect timeout 10 s and total timeout 30 s when the request gives 0, response cap
 * 1 MiB when max_response is 0; response headers are capped at 256 KiB. */
#include "exec/httpc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

#define HTTPC_DEFAULT_CONNECT_MS 10000L
#define HTTPC_DEFAULT_TIMEOUT_MS 30000L
#define HTTPC_DEFAULT_MAX_RESPONSE (1u << 20)
#define HTTPC_MAX_HEADER_BYTES (256u << 10)

#ifndef X4_VERSION
#define X4_VERSION "dev"
#endif

typedef struct httpc_sock {
    uv_poll_t poll;
    struct httpc_sock *prev, *next;
    x4_httpc *h;
    curl_socket_t fd;
    int events;  /* what curl wants: UV_READABLE | UV_WRITABLE */
    int closing;
} httpc_sock;

struct x4_httpc_call {
    x4_httpc_call *prev, *next;
    x4_httpc *h;
    CURL *easy;
    struct curl_slist *req_headers;
    x4_httpc_cb cb;
    void *ud;
    x4_buf body;
    size_t cap;
    x4_httpc_header *hdrs;
    size_t nhdrs, caphdrs, hdr_bytes;
    int too_large, headers_too_large, oom;
    int done; /* its callback is running or has run: cancel is a no-op */
    long connect_timeout_ms, timeout_ms;
    uint64_t start_ns;
    char errbuf[CURL_ERROR_SIZE];
};

struct x4_httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    x4_httpc_call *calls;
    size_t inflight;
    httpc_sock *socks;
    int open_handles; /* the timer plus every uv_poll not yet closed */
    int depth;        /* > 0 while a poll/timer dispatch is on the stack */
    int closing;      /* x4_httpc_close() was called */
    int finished;     /* multi cleaned up, timer closing */
};

static void httpc_finish_close(x4_httpc *h);

/* ---- global init ------------------------------------------------------------------------ */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;
static void httpc_global_init(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- handles and lifetime --------------------------------------------------------------- */

static void httpc_maybe_free(x4_httpc *h) {
    if (h->finished && h->open_handles == 0) free(h);
}

static void httpc_handle_closed(uv_handle_t *hd) {
    x4_httpc *h;
    if (hd->type == UV_POLL) {
        httpc_sock *sk = hd->data;
        h = sk->h;
        free(sk);
    } else {
        h = hd->data;
    }
    h->open_handles--;
    httpc_maybe_free(h);
}

static void httpc_sock_close(x4_httpc *h, httpc_sock *sk) {
    if (sk->prev) sk->prev->next = sk->next;
    else h->socks = sk->next;
    if (sk->next) sk->next->prev = sk->prev;
    sk->prev = sk->next = NULL;
    sk->closing = 1;
    uv_poll_stop(&sk->poll);
    uv_close((uv_handle_t *)&sk->poll, httpc_handle_closed);
}

/* ---- completion ------------------------------------------------------------------------- */

static void httpc_call_free(x4_httpc_call *c) {
    for (size_t i = 0; i < c->nhdrs; i++) {
        free((char *)c->hdrs[i].name);
        free((char *)c->hdrs[i].value);
    }
    free(c->hdrs);
    x4_buf_free(&c->body);
    if (c->easy) curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->req_headers);
    free(c);
}

/* Fills status and error from curl's result. */
static void httpc_describe(x4_httpc_call *c, CURLcode res, x4_httpc_resp *r) {
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(res);
    long oserr = 0;
    curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
    switch (res) {
    case CURLE_OK:
        r->status = X4_HTTPC_OK;
        return;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connected_us = 0;
        curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connected_us);
        r->status = X4_HTTPC_TIMEOUT;
        if (connected_us == 0)
            snprintf(r->error, sizeof r->error, "connect timeout after %ld ms",
                     c->connect_timeout_ms < c->timeout_ms ? c->connect_timeout_ms : c->timeout_ms);
        else
            snprintf(r->error, sizeof r->error, "timeout after %ld ms", c->timeout_ms);
        return;
    }
    case CURLE_COULDNT_CONNECT:
        r->status = X4_HTTPC_NETWORK;
        if (oserr == ECONNREFUSED) snprintf(r->error, sizeof r->error, "connection refused");
        else snprintf(r->error, sizeof r->error, "connect failed: %.200s", oserr ? strerror((int)oserr) : detail);
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "cannot resolve host: %.200s", detail);
        return;
    case CURLE_WRITE_ERROR:
        if (c->too_large) {
            r->status = X4_HTTPC_TOO_LARGE;
            snprintf(r->error, sizeof r->error, "response larger than %zu bytes", c->cap);
        } else if (c->headers_too_large) {
            r->status = X4_HTTPC_TOO_LARGE;
            snprintf(r->error, sizeof r->error, "response headers larger than %u bytes", HTTPC_MAX_HEADER_BYTES);
        } else {
            r->status = X4_HTTPC_INTERNAL;
            snprintf(r->error, sizeof r->error, "out of memory reading the response");
        }
        return;
    case CURLE_FILESIZE_EXCEEDED: /* Content-Length announced more than the cap */
        r->status = X4_HTTPC_TOO_LARGE;
        snprintf(r->error, sizeof r->error, "response larger than %zu bytes", c->cap);
        return;
    case CURLE_GOT_NOTHING:
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "connection closed without a response");
        return;
    case CURLE_SEND_ERROR:
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "send failed: %.200s", detail);
        return;
    case CURLE_RECV_ERROR:
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "receive failed: %.200s", detail);
        return;
    case CURLE_PARTIAL_FILE:
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "connection closed mid-response: %.200s", detail);
        return;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_FAILED_INIT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
        r->status = X4_HTTPC_INTERNAL;
        snprintf(r->error, sizeof r->error, "%.250s", detail);
        return;
    default: /* TLS, protocol and other transport failures: retryable */
        r->status = X4_HTTPC_NETWORK;
        snprintf(r->error, sizeof r->error, "%.250s", detail);
        return;
    }
}

/* Takes the call out of everything, runs its callback once, frees it. `res` is curl's result,
 * or -1 for a cancellation with `why`. */
static void httpc_finish(x4_httpc_call *c, int res, const char *why) {
    x4_httpc *h = c->h;
    c->done = 1;
    if (c->prev) c->prev->next = c->next;
    else h->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    h->inflight--;
    if (h->multi) curl_multi_remove_handle(h->multi, c->easy);

    x4_httpc_resp r;
    memset(&r, 0, sizeof r);
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r.code);
    if (res < 0) {
        r.status = X4_HTTPC_CANCELLED;
        snprintf(r.error, sizeof r.error, "%s", why);
    } else {
        httpc_describe(c, (CURLcode)res, &r);
    }
    if (r.status == X4_HTTPC_OK) {
        r.body = c->body.data ? c->body.data : "";
        r.body_len = c->body.len;
    } else {
        r.body = ""; /* a partial body is never handed out */
    }
    r.headers = c->hdrs;
    r.nheaders = c->nhdrs;
    r.total_ms = (double)(uv_hrtime() - c->start_ns) / 1e6;
    /* Let go of curl before user code runs: the callback may close the whole client. */
    curl_easy_cleanup(c->easy);
    c->easy = NULL;
    x4_httpc_cb cb = c->cb;
    void *ud = c->ud;
    cb(&r, ud);
    httpc_call_free(c);
}

static void httpc_check_done(x4_httpc *h) {
    CURLMsg *msg;
    int left;
    while (h->multi && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURLcode res = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv) httpc_finish((x4_httpc_call *)priv, (int)res, NULL);
    }
}

static void httpc_dispatch_end(x4_httpc *h) {
    if (--h->depth == 0 && h->closing) httpc_finish_close(h);
}

/* ---- curl <-> loop ---------------------------------------------------------------------- */

static void httpc_on_poll(uv_poll_t *p, int status, int events) {
    httpc_sock *sk = p->data;
    x4_httpc *h = sk->h;
    if (!h->multi) return;
    int flags = 0, running = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    h->depth++;
    curl_multi_socket_action(h->multi, sk->fd, flags, &running);
    /* libuv stopped the handle on the error; re-arm if curl still wants this socket. The struct
     * stays valid until its close callback even if curl removed it meanwhile. */
    if (status < 0 && !sk->closing && sk->events) uv_poll_start(&sk->poll, sk->events, httpc_on_poll);
    httpc_check_done(h);
    httpc_dispatch_end(h);
}

static void httpc_on_timer(uv_timer_t *t) {
    x4_httpc *h = t->data;
    if (!h->multi) return;
    int running = 0;
    h->depth++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    httpc_check_done(h);
    httpc_dispatch_end(h);
}

static int httpc_timer_fn(CURLM *multi, long timeout_ms, void *userp) {
    x4_httpc *h = userp;
    if (h->finished) return 0;
    if (timeout_ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, httpc_on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static int httpc_socket_fn(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    x4_httpc *h = userp;
    httpc_sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        /* curl forgets the socket (and its assignment) right after this returns. */
        if (sk && !sk->closing) httpc_sock_close(h, sk);
        return 0;
    }
    if (!sk || sk->closing) {
        /* A descriptor number can come back as a new socket before an old watcher is gone. */
        for (httpc_sock *old = h->socks; old; old = old->next)
            if (old->fd == s) {
                httpc_sock_close(h, old);
                break;
            }
        sk = calloc(1, sizeof *sk);
        if (!sk) return -1;
        if (uv_poll_init_socket(h->loop, &sk->poll, s) != 0) {
            x4_error("httpc", "cannot watch socket %d", (int)s);
            free(sk);
            return -1;
        }
        sk->poll.data = sk;
        sk->h = h;
        sk->fd = s;
        sk->next = h->socks;
        if (h->socks) h->socks->prev = sk;
        h->socks = sk;
        h->open_handles++;
        curl_multi_assign(h->multi, s, sk);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
    sk->events = ev;
    if (ev) uv_poll_start(&sk->poll, ev, httpc_on_poll);
    else uv_poll_stop(&sk->poll);
    return 0;
}

/* ---- per-call curl callbacks -------------------------------------------------------------- */

static size_t httpc_on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    x4_httpc_call *c = ud;
    size_t n = size * nmemb;
    if (n > c->cap - c->body.len) {
        c->too_large = 1;
        return 0;
    }
    if (x4_buf_append(&c->body, ptr, n) != 0) {
        c->oom = 1;
        return 0;
    }
    return n;
}

static void httpc_drop_headers(x4_httpc_call *c) {
    for (size_t i = 0; i < c->nhdrs; i++) {
        free((char *)c->hdrs[i].name);
        free((char *)c->hdrs[i].value);
    }
    c->nhdrs = 0;
}

static size_t httpc_on_header(char *buf, size_t size, size_t nitems, void *ud) {
    x4_httpc_call *c = ud;
    size_t n = size * nitems, len = n;
    c->hdr_bytes += n;
    if (c->hdr_bytes > HTTPC_MAX_HEADER_BYTES) {
        c->headers_too_large = 1;
        return 0;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    if (len == 0) return n; /* end of a header block */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A status line: an interim 1xx block is replaced by the final response's headers. */
        httpc_drop_headers(c);
        c->hdr_bytes = n;
        return n;
    }
    if ((buf[0] == ' ' || buf[0] == '\t') && c->nhdrs) { /* obsolete line folding */
        x4_httpc_header *last = &c->hdrs[c->nhdrs - 1];
        size_t s = 0;
        while (s < len && (buf[s] == ' ' || buf[s] == '\t')) s++;
        size_t old = strlen(last->value);
        char *v = realloc((char *)last->value, old + 1 + (len - s) + 1);
        if (!v) goto oom;
        v[old] = ' ';
        memcpy(v + old + 1, buf + s, len - s);
        v[old + 1 + len - s] = 0;
        last->value = v;
        return n;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon || colon == buf) return n; /* not a header: ignore */
    size_t nlen = (size_t)(colon - buf);
    size_t vs = nlen + 1, ve = len;
    while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t')) vs++;
    while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
    if (c->nhdrs == c->caphdrs) {
        size_t cap = c->caphdrs ? c->caphdrs * 2 : 16;
        x4_httpc_header *hs = realloc(c->hdrs, cap * sizeof *hs);
        if (!hs) goto oom;
        c->hdrs = hs;
        c->caphdrs = cap;
    }
    char *name = x4_strndup(buf, nlen), *value = x4_strndup(buf + vs, ve - vs);
    if (!name || !value) {
        free(name);
        free(value);
        goto oom;
    }
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    c->hdrs[c->nhdrs++] = (x4_httpc_header){name, value};
    return n;
oom:
    c->oom = 1;
    return 0;
}

/* ---- public API --------------------------------------------------------------------------- */

int x4_httpc_open(x4_httpc **out, uv_loop_t *loop) {
    *out = NULL;
    pthread_once(&g_curl_once, httpc_global_init);
    if (g_curl_init_rc != CURLE_OK) {
        x4_error("httpc", "curl_global_init failed: %s", curl_easy_strerror(g_curl_init_rc));
        return -1;
    }
    x4_httpc *h = calloc(1, sizeof *h);
    if (!h) return -1;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return -1;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, httpc_socket_fn);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, httpc_timer_fn);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 64L); /* idle keep-alive connections kept */
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    *out = h;
    return 0;
}

static int httpc_has_header(const x4_httpc_req *req, const char *name) {
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0) return 1;
    return 0;
}

static int httpc_clean_token(const char *s) {
    for (; *s; s++)
        if (*s == '\r' || *s == '\n') return 0;
    return 1;
}

/* Sets up the easy handle; on failure writes the reason into why. */
static int httpc_setup(x4_httpc_call *c, const x4_httpc_req *req, char *why, size_t whylen) {
    CURL *e = c->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_PRIVATE, (void *)c);
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, ""); /* no proxy from the environment */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_ACCEPT_ENCODING, "identity");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cap);
    SET(CURLOPT_WRITEFUNCTION, httpc_on_body);
    SET(CURLOPT_WRITEDATA, (void *)c);
    SET(CURLOPT_HEADERFUNCTION, httpc_on_header);
    SET(CURLOPT_HEADERDATA, (void *)c);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_USERAGENT, "x402r/" X4_VERSION);

    const char *m = req->method && req->method[0] ? req->method : "GET";
    int has_body = req->body != NULL;
    int wants_body = has_body || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
    if (strcmp(m, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") == 0 && !has_body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (wants_body) {
        /* The size first, so the copy is binary-safe; an empty body still sends Content-Length: 0. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(has_body ? req->body_len : 0));
        SET(CURLOPT_COPYPOSTFIELDS, has_body ? req->body : "");
        if (strcmp(m, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, m);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, m);
    }
#undef SET
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "curl set-up: %s", curl_easy_strerror(rc));
        return -1;
    }

    x4_buf line = {0};
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name, *v = req->headers[i].value ? req->headers[i].value : "";
        if (!n || !n[0] || strchr(n, ':') || !httpc_clean_token(n) || !httpc_clean_token(v)) {
            snprintf(why, whylen, "bad request header %s", n ? n : "(null)");
            x4_buf_free(&line);
            return -1;
        }
        x4_buf_reset(&line);
        /* "Name;" is curl's way to send a header with an empty value. */
        if ((v[0] ? x4_buf_printf(&line, "%s: %s", n, v) : x4_buf_printf(&line, "%s;", n)) != 0) goto oom;
        struct curl_slist *l = curl_slist_append(c->req_headers, line.data);
        if (!l) goto oom;
        c->req_headers = l;
    }
    x4_buf_free(&line);
    if (wants_body && !httpc_has_header(req, "Expect")) {
        /* No "Expect: 100-continue" round trip (curl would wait up to 1 s for it). */
        struct curl_slist *l = curl_slist_append(c->req_headers, "Expect:");
        if (!l) goto oom_nobuf;
        c->req_headers = l;
    }
    if (c->req_headers && curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->req_headers) != CURLE_OK) goto oom_nobuf;
    return 0;
oom:
    x4_buf_free(&line);
oom_nobuf:
    snprintf(why, whylen, "out of memory");
    return -1;
}

x4_httpc_call *x4_httpc_request(x4_httpc *h, const x4_httpc_req *req, x4_httpc_cb cb, void *ud) {
    char why[256] = "";
    x4_httpc_call *c = NULL;
    if (!h || !req || !req->url || !cb) {
        snprintf(why, sizeof why, "bad arguments");
        goto fail;
    }
    if (h->closing) {
        snprintf(why, sizeof why, "http client closed");
        goto fail;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, sizeof why, "out of memory");
        goto fail;
    }
    c->h = h;
    c->cb = cb;
    c->ud = ud;
    c->start_ns = uv_hrtime();
    c->cap = req->max_response ? req->max_response : HTTPC_DEFAULT_MAX_RESPONSE;
    c->connect_timeout_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTPC_DEFAULT_CONNECT_MS;
    c->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS;
    c->easy = curl_easy_init();
    if (!c->easy) {
        snprintf(why, sizeof why, "curl_easy_init failed");
        goto fail;
    }
    if (httpc_setup(c, req, why, sizeof why) != 0) goto fail;
    CURLMcode mrc = curl_multi_add_handle(h->multi, c->easy);
    if (mrc != CURLM_OK) {
        snprintf(why, sizeof why, "curl_multi_add_handle: %s", curl_multi_strerror(mrc));
        goto fail;
    }
    c->next = h->calls;
    if (h->calls) h->calls->prev = c;
    h->calls = c;
    h->inflight++;
    return c;
fail:
    if (cb) {
        x4_httpc_resp r;
        memset(&r, 0, sizeof r);
        r.status = X4_HTTPC_INTERNAL;
        r.body = "";
        snprintf(r.error, sizeof r.error, "%s", why);
        if (c) {
            curl_easy_cleanup(c->easy);
            c->easy = NULL;
        }
        cb(&r, ud);
    }
    if (c) httpc_call_free(c);
    return NULL;
}

void x4_httpc_cancel(x4_httpc_call *call) {
    if (call && !call->done) httpc_finish(call, -1, "cancelled");
}

const char *x4_httpc_header_get(const x4_httpc_resp *resp, const char *name) {
    if (!resp || !name) return NULL;
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0) return resp->headers[i].value;
    return NULL;
}

size_t x4_httpc_inflight(const x4_httpc *h) { return h ? h->inflight : 0; }

/* One allocation: the struct, then the header array, then every string and the body. */
x4_httpc_resp *x4_httpc_resp_dup(const x4_httpc_resp *resp) {
    size_t size = sizeof *resp + resp->nheaders * sizeof resp->headers[0] + resp->body_len + 1;
    for (size_t i = 0; i < resp->nheaders; i++) {
        size += strlen(resp->headers[i].name) + 1;
        size += strlen(resp->headers[i].value ? resp->headers[i].value : "") + 1;
    }
    x4_httpc_resp *d = malloc(size);
    if (!d) return NULL;
    *d = *resp;
    d->headers = (x4_httpc_header *)(d + 1);
    char *p = (char *)(d->headers + resp->nheaders);
    for (size_t i = 0; i < resp->nheaders; i++) {
        const char *v = resp->headers[i].value ? resp->headers[i].value : "";
        size_t ln = strlen(resp->headers[i].name) + 1, lv = strlen(v) + 1;
        memcpy(p, resp->headers[i].name, ln);
        d->headers[i].name = p;
        p += ln;
        memcpy(p, v, lv);
        d->headers[i].value = p;
        p += lv;
    }
    if (resp->body_len) memcpy(p, resp->body, resp->body_len);
    p[resp->body_len] = '\0';
    d->body = p;
    return d;
}

static void httpc_finish_close(x4_httpc *h) {
    if (h->finished) return;
    /* Set first: curl may call the timer function from curl_multi_cleanup. */
    h->finished = 1;
    uv_timer_stop(&h->timer);
    curl_multi_cleanup(h->multi); /* closes the cached connections; may report socket removals */
    h->multi = NULL;
    while (h->socks) httpc_sock_close(h, h->socks);
    uv_close((uv_handle_t *)&h->timer, httpc_handle_closed);
}

void x4_httpc_close(x4_httpc *h) {
    if (!h || h->closing) return;
    h->closing = 1;
    while (h->calls) httpc_finish(h->calls, -1, "http client closed");
    if (h->depth == 0) httpc_finish_close(h);
}
