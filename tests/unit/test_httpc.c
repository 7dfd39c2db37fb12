/* tests/unit/test_httpc.c — the outgoing HTTP client (exec/httpc.c) against a tiny HTTP/1.1
 * server that runs inside this test: one accept thread plus one thread per connection, blocking
 * sockets, 127.0.0.1 on an ephemeral port, keep-alive. Its paths are canned behaviours:
 *
 *   /echo          200, JSON {"method","path","body_hex","x_test","expect","body_len","conn"}
 *                  + X-Echo-Header: yes (body_hex only for bodies up to 4 KiB)
 *   /status/NNN    status NNN
 *   /slow          sleeps 300 ms, then like /echo
 *   /hang          never answers (waits for the client to go away)
 *   /huge          2 MiB body with Content-Length
 *   /huge-stream   2 MiB body without a length, ended by closing the connection
 *   /close         closes the connection without answering
 *
 * Every test ends by draining its loop and checking uv_loop_close() == 0: no handle left. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "exec/httpc.h"
#include "unit.h"

/* ---- the test server -------------------------------------------------------------------- */

#define SRV_MAX_CONNS 1024
#define HUGE_LEN (2u << 20)

typedef struct {
    int lfd, port;
    pthread_t accept_thr;
    atomic_int stop;
    atomic_int nconns;
    atomic_int slow_now, slow_max; /* /slow requests being served at once, and the peak */
    pthread_mutex_t mu;
    int fds[SRV_MAX_CONNS];
    pthread_t thr[SRV_MAX_CONNS];
    int nthr;
} tsrv;

typedef struct {
    tsrv *s;
    int slot;
    int id;
} tconn;

static tsrv g_srv;

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_response(int fd, int status, const char *extra_headers, const char *body, size_t len) {
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len,
                     extra_headers ? extra_headers : "");
    if (send_all(fd, head, (size_t)n) != 0) return -1;
    return len ? send_all(fd, body, len) : 0;
}

/* Reads one request; returns 0, or -1 when the peer went away. Body is malloc'd. */
static int read_request(int fd, char *buf, size_t cap, size_t *have, char *method, char *path, char *xtest,
                        char *expect, char **body, size_t *blen) {
    char *end;
    for (;;) {
        buf[*have] = 0;
        if ((end = strstr(buf, "\r\n\r\n"))) break;
        if (*have >= cap - 1) return -1;
        ssize_t r = recv(fd, buf + *have, cap - 1 - *have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        *have += (size_t)r;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    if (sscanf(buf, "%15s %255s", method, path) != 2) return -1;
    size_t clen = 0;
    xtest[0] = expect[0] = 0;
    for (char *line = strstr(buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0) clen = strtoul(line + 15, NULL, 10);
        if (strncasecmp(line, "X-Test:", 7) == 0) sscanf(line + 7, " %63[^\r]", xtest);
        if (strncasecmp(line, "Expect:", 7) == 0) sscanf(line + 7, " %63[^\r]", expect);
    }
    *body = malloc(clen + 1);
    size_t got = *have - hlen < clen ? *have - hlen : clen;
    memcpy(*body, buf + hlen, got);
    while (got < clen) {
        ssize_t r = recv(fd, *body + got, clen - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(*body);
            return -1;
        }
        got += (size_t)r;
    }
    *blen = clen;
    /* keep what follows (a pipelined request) */
    size_t used = hlen + (*have - hlen < clen ? *have - hlen : clen);
    memmove(buf, buf + used, *have - used);
    *have -= used;
    return 0;
}

static void send_echo(int fd, const char *method, const char *path, const char *xtest, const char *expect,
                      const char *body, size_t blen, int conn_id) {
    size_t hexlen = blen <= 4096 ? blen : 0; /* large bodies: only their length */
    size_t cap = 256 + strlen(path) + strlen(xtest) + strlen(expect) + hexlen * 2;
    char *json = malloc(cap), *hex = malloc(hexlen * 2 + 1);
    for (size_t i = 0; i < hexlen; i++) sprintf(hex + i * 2, "%02x", (unsigned char)body[i]);
    hex[hexlen * 2] = 0;
    int n = snprintf(json, cap,
                     "{\"method\":\"%s\",\"path\":\"%s\",\"body_hex\":\"%s\",\"x_test\":\"%s\",\"expect\":\"%s\","
                     "\"body_len\":%zu,\"conn\":%d}",
                     method, path, hex, xtest, expect, blen, conn_id);
    send_response(fd, 200, "Content-Type: application/json\r\nX-Echo-Header: yes\r\n", json, (size_t)n);
    free(json);
    free(hex);
}

static void *conn_main(void *arg) {
    tconn *tc = arg;
    tsrv *s = tc->s;
    int fd = s->fds[tc->slot];
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    char method[16], path[256], xtest[64], expect[64];
    for (;;) {
        char *body = NULL;
        size_t blen = 0;
        if (read_request(fd, buf, cap, &have, method, path, xtest, expect, &body, &blen) != 0) break;
        int keep = 1;
        if (strcmp(path, "/echo") == 0 || strncmp(path, "/echo?", 6) == 0) {
            send_echo(fd, method, path, xtest, expect, body, blen, tc->id);
        } else if (strncmp(path, "/status/", 8) == 0) {
            int st = atoi(path + 8);
            char msg[32];
            int n = snprintf(msg, sizeof msg, "status %d", st);
            send_response(fd, st, NULL, st == 204 || st == 304 ? NULL : msg, st == 204 || st == 304 ? 0 : (size_t)n);
        } else if (strcmp(path, "/slow") == 0) {
            int now = atomic_fetch_add(&s->slow_now, 1) + 1, max = atomic_load(&s->slow_max);
            while (now > max && !atomic_compare_exchange_weak(&s->slow_max, &max, now)) {}
            usleep(300 * 1000);
            atomic_fetch_sub(&s->slow_now, 1);
            send_echo(fd, method, path, xtest, expect, body, blen, tc->id);
        } else if (strcmp(path, "/hang") == 0) {
            char tmp[256];
            while (recv(fd, tmp, sizeof tmp, 0) > 0) {}
            keep = 0;
        } else if (strcmp(path, "/huge") == 0 || strcmp(path, "/huge-stream") == 0) {
            char *big = malloc(HUGE_LEN);
            for (size_t i = 0; i < HUGE_LEN; i++) big[i] = (char)('a' + i % 26);
            if (strcmp(path, "/huge") == 0) {
                send_response(fd, 200, NULL, big, HUGE_LEN);
            } else {
                const char *head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                if (send_all(fd, head, strlen(head)) == 0) send_all(fd, big, HUGE_LEN);
                keep = 0;
            }
            free(big);
        } else if (strcmp(path, "/close") == 0) {
            keep = 0;
        } else {
            send_response(fd, 404, NULL, "no", 2);
        }
        free(body);
        if (!keep) break;
    }
    free(buf);
    pthread_mutex_lock(&s->mu);
    s->fds[tc->slot] = -1;
    pthread_mutex_unlock(&s->mu);
    close(fd);
    free(tc);
    return NULL;
}

static void *accept_main(void *arg) {
    tsrv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&s->stop)) break;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&s->mu);
        if (s->nthr == SRV_MAX_CONNS || atomic_load(&s->stop)) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        tconn *tc = malloc(sizeof *tc);
        tc->s = s;
        tc->slot = s->nthr;
        tc->id = atomic_fetch_add(&s->nconns, 1) + 1;
        s->fds[tc->slot] = fd;
        pthread_create(&s->thr[s->nthr++], NULL, conn_main, tc);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static int srv_start(tsrv *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 256) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->accept_thr, NULL, accept_main, s);
}

static void srv_stop(tsrv *s) {
    atomic_store(&s->stop, 1);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->accept_thr, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nthr; i++)
        if (s->fds[i] >= 0) shutdown(s->fds[i], SHUT_RDWR);
    int n = s->nthr;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) pthread_join(s->thr[i], NULL);
    pthread_mutex_destroy(&s->mu);
}

/* The server lives for the whole run; started by the first test that needs it. */
static int srv(void) {
    static int started;
    if (!started) {
        if (srv_start(&g_srv) != 0) return -1;
        started = 1;
    }
    return g_srv.port;
}

__attribute__((destructor)) static void srv_cleanup(void) {
    if (g_srv.port) srv_stop(&g_srv);
}

/* ---- loop helpers ------------------------------------------------------------------------- */

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }
static void on_tick(uv_timer_t *t) { (void)t; }

static int run_until_n(uv_loop_t *loop, const int *v, int target, unsigned timeout_ms) {
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uint64_t end = now_ms() + timeout_ms;
    while (*v < target && now_ms() < end) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *v >= target;
}
static void run_for(uv_loop_t *loop, unsigned ms) {
    int never = 0;
    run_until_n(loop, &never, 1, ms);
}

static void print_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    fprintf(stderr, "  leftover handle: %s active=%d closing=%d\n", uv_handle_type_name(h->type), uv_is_active(h),
            uv_is_closing(h));
}

static void loop_finish(uv_loop_t *loop) {
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(loop)) usleep(1000);
    }
    int rc = uv_loop_close(loop);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) uv_walk(loop, print_handle, NULL);
}

/* ---- results -------------------------------------------------------------------------------- */

typedef struct {
    int calls;
    x4_httpc_status status;
    long code;
    char *body;
    size_t body_len;
    char error[256];
    char echo_header[64], content_type[64], upper_lookup[64];
    int names_lower;
    double total_ms;
    /* optional actions run inside the callback */
    x4_httpc_call *cancel_other;
    x4_httpc *close_client;
} result;

static void on_done(const x4_httpc_resp *r, void *ud) {
    result *res = ud;
    res->calls++;
    res->status = r->status;
    res->code = r->code;
    free(res->body);
    res->body = malloc(r->body_len + 1);
    memcpy(res->body, r->body, r->body_len);
    res->body[r->body_len] = 0;
    res->body_len = r->body_len;
    snprintf(res->error, sizeof res->error, "%s", r->error);
    const char *v;
    res->echo_header[0] = res->content_type[0] = res->upper_lookup[0] = 0;
    if ((v = x4_httpc_header_get(r, "x-echo-header"))) snprintf(res->echo_header, sizeof res->echo_header, "%s", v);
    if ((v = x4_httpc_header_get(r, "Content-Type"))) snprintf(res->content_type, sizeof res->content_type, "%s", v);
    if ((v = x4_httpc_header_get(r, "X-ECHO-HEADER"))) snprintf(res->upper_lookup, sizeof res->upper_lookup, "%s", v);
    res->names_lower = 1;
    for (size_t i = 0; i < r->nheaders; i++)
        for (const char *p = r->headers[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z') res->names_lower = 0;
    res->total_ms = r->total_ms;
    if (res->cancel_other) {
        x4_httpc_call *o = res->cancel_other;
        res->cancel_other = NULL;
        x4_httpc_cancel(o);
    }
    if (res->close_client) {
        x4_httpc *h = res->close_client;
        res->close_client = NULL;
        x4_httpc_close(h);
    }
}

static void result_free(result *r) {
    free(r->body);
    r->body = NULL;
}

static x4_httpc_call *req(x4_httpc *h, const char *method, const char *path, const char *body, size_t blen,
                          long timeout_ms, size_t cap, result *res) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv(), path);
    x4_httpc_req r = {method, url, NULL, 0, body, blen, 2000, timeout_ms, cap};
    return x4_httpc_request(h, &r, on_done, res);
}

static int srv_conns(void) { return atomic_load(&g_srv.nconns); }

/* ---- tests ------------------------------------------------------------------------------------ */

X4_TEST(httpc_get_and_post_arrive_intact) {
    CHECK(srv() > 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo?q=1", srv());
    x4_httpc_header hs[2] = {{"X-Test", "hello world"}, {"Accept", "application/json"}};
    result get = {0}, post = {0}, put = {0}, del = {0}, big = {0};
    x4_httpc_req r = {"GET", url, hs, 2, NULL, 0, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &r, on_done, &get) != NULL);
    static const char body[] = "{\"a\":1}\0bin";
    x4_httpc_req p = {"POST", url, hs, 1, body, sizeof body - 1, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &p, on_done, &post) != NULL);
    x4_httpc_req u = {"PUT", url, NULL, 0, "xyz", 3, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &u, on_done, &put) != NULL);
    x4_httpc_req d = {"DELETE", url, NULL, 0, NULL, 0, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &d, on_done, &del) != NULL);
    /* 1.5 MiB POST: must not wait for a "100 Continue" that this server never sends. */
    size_t blen = 1536 * 1024;
    char *bigbody = malloc(blen);
    memset(bigbody, 'z', blen);
    x4_httpc_req b = {"POST", url, NULL, 0, bigbody, blen, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &b, on_done, &big) != NULL);
    free(bigbody); /* the call made its own copy */
    CHECK_EQ_INT(x4_httpc_inflight(h), 5);
    CHECK(run_until_n(&loop, &big.calls, 1, 5000));
    CHECK(run_until_n(&loop, &get.calls, 1, 5000));
    CHECK(run_until_n(&loop, &post.calls, 1, 5000));
    CHECK(run_until_n(&loop, &put.calls, 1, 5000));
    CHECK(run_until_n(&loop, &del.calls, 1, 5000));
    CHECK_EQ_INT(x4_httpc_inflight(h), 0);

    CHECK_EQ_INT(get.status, X4_HTTPC_OK);
    CHECK_EQ_INT(get.code, 200);
    CHECK(strstr(get.body, "\"method\":\"GET\"") != NULL);
    CHECK(strstr(get.body, "\"path\":\"/echo?q=1\"") != NULL);
    CHECK(strstr(get.body, "\"x_test\":\"hello world\"") != NULL);
    CHECK(strstr(get.body, "\"body_hex\":\"\"") != NULL);
    CHECK_EQ_STR(get.echo_header, "yes");
    CHECK_EQ_STR(get.upper_lookup, "yes"); /* lookup is case-insensitive */
    CHECK_EQ_STR(get.content_type, "application/json");
    CHECK(get.names_lower);

    CHECK_EQ_INT(post.status, X4_HTTPC_OK);
    CHECK(strstr(post.body, "\"method\":\"POST\"") != NULL);
    /* {"a":1}\0bin, NUL included */
    CHECK(strstr(post.body, "\"body_hex\":\"7b2261223a317d0062696e\"") != NULL);
    CHECK(strstr(post.body, "\"x_test\":\"hello world\"") != NULL);
    CHECK(strstr(put.body, "\"method\":\"PUT\"") != NULL);
    CHECK(strstr(put.body, "\"body_hex\":\"78797a\"") != NULL);
    CHECK(strstr(del.body, "\"method\":\"DELETE\"") != NULL);
    CHECK_EQ_INT(big.status, X4_HTTPC_OK);
    CHECK(strstr(big.body, "\"body_len\":1572864,") != NULL);
    /* no "Expect: 100-continue" round trip (curl would wait up to 1 s for this server) */
    CHECK(strstr(big.body, "\"expect\":\"\"") != NULL);
    CHECK(strstr(post.body, "\"expect\":\"\"") != NULL);
    CHECK(get.calls == 1 && post.calls == 1 && put.calls == 1 && del.calls == 1 && big.calls == 1);

    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&get);
    result_free(&post);
    result_free(&put);
    result_free(&del);
    result_free(&big);
}

X4_TEST(httpc_status_codes_pass_through) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result r500 = {0}, r404 = {0}, r204 = {0}, r402 = {0};
    req(h, "GET", "/status/500", NULL, 0, 5000, 1 << 20, &r500);
    req(h, "POST", "/status/404", "x", 1, 5000, 1 << 20, &r404);
    req(h, "GET", "/status/204", NULL, 0, 5000, 1 << 20, &r204);
    req(h, "GET", "/status/402", NULL, 0, 5000, 1 << 20, &r402);
    CHECK(run_until_n(&loop, &r500.calls, 1, 5000));
    CHECK(run_until_n(&loop, &r404.calls, 1, 5000));
    CHECK(run_until_n(&loop, &r204.calls, 1, 5000));
    CHECK(run_until_n(&loop, &r402.calls, 1, 5000));
    CHECK_EQ_INT(r500.status, X4_HTTPC_OK);
    CHECK_EQ_INT(r500.code, 500);
    CHECK_EQ_STR(r500.body, "status 500");
    CHECK_EQ_INT(r404.code, 404);
    CHECK_EQ_INT(r204.status, X4_HTTPC_OK);
    CHECK_EQ_INT(r204.code, 204);
    CHECK_EQ_INT(r204.body_len, 0);
    CHECK_EQ_INT(r402.code, 402);
    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&r500);
    result_free(&r404);
    result_free(&r204);
    result_free(&r402);
}

X4_TEST(httpc_connections_are_reused) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    int before = srv_conns();
    result r[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        req(h, "GET", "/echo", NULL, 0, 5000, 1 << 20, &r[i]);
        CHECK(run_until_n(&loop, &r[i].calls, 1, 5000));
        CHECK_EQ_INT(r[i].code, 200);
    }
    CHECK_EQ_INT(srv_conns() - before, 1);
    x4_httpc_close(h);
    loop_finish(&loop);
    for (int i = 0; i < 3; i++) result_free(&r[i]);
}

#define CONC 50
X4_TEST(httpc_fifty_concurrent_calls) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    static result r[CONC];
    memset(r, 0, sizeof r);
    atomic_store(&g_srv.slow_max, 0);
    uint64_t t0 = now_ms();
    for (int i = 0; i < CONC; i++) CHECK(req(h, "GET", i % 2 ? "/slow" : "/echo", NULL, 0, 10000, 1 << 20, &r[i]) != NULL);
    CHECK_EQ_INT(x4_httpc_inflight(h), CONC);
    for (int i = 0; i < CONC; i++) run_until_n(&loop, &r[i].calls, 1, 10000);
    uint64_t took = now_ms() - t0;
    int ok = 0, once = 1;
    for (int i = 0; i < CONC; i++) {
        ok += r[i].status == X4_HTTPC_OK && r[i].code == 200;
        once &= r[i].calls == 1;
    }
    CHECK_EQ_INT(ok, CONC);
    CHECK(once);
    CHECK(took < 7000); /* 25 × 300 ms run side by side, not one after another */
    CHECK(atomic_load(&g_srv.slow_max) >= 10);
    run_for(&loop, 50);
    for (int i = 0; i < CONC; i++) once &= r[i].calls == 1;
    CHECK(once);
    x4_httpc_close(h);
    loop_finish(&loop);
    for (int i = 0; i < CONC; i++) result_free(&r[i]);
}

X4_TEST(httpc_total_timeout) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result r = {0};
    uint64_t t0 = now_ms();
    req(h, "GET", "/hang", NULL, 0, 250, 1 << 20, &r);
    CHECK(run_until_n(&loop, &r.calls, 1, 3000));
    uint64_t took = now_ms() - t0;
    CHECK_EQ_INT(r.status, X4_HTTPC_TIMEOUT);
    CHECK_EQ_STR(r.error, "timeout after 250 ms");
    CHECK(took >= 240 && took < 750);
    CHECK(r.total_ms >= 240 && r.total_ms < 750);
    CHECK_EQ_INT(r.calls, 1);

    /* Connect timeout: a listener with a full accept queue drops further SYNs. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, 0);
    getsockname(l, (struct sockaddr *)&a, &len);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    connect(filler, (struct sockaddr *)&a, sizeof a);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    result ct = {0};
    x4_httpc_req q = {"GET", url, NULL, 0, NULL, 0, 200, 5000, 1 << 20};
    t0 = now_ms();
    x4_httpc_request(h, &q, on_done, &ct);
    CHECK(run_until_n(&loop, &ct.calls, 1, 3000));
    took = now_ms() - t0;
    CHECK_EQ_INT(ct.status, X4_HTTPC_TIMEOUT);
    CHECK_EQ_STR(ct.error, "connect timeout after 200 ms");
    CHECK(took >= 190 && took < 700);
    close(filler);
    close(l);

    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&r);
    result_free(&ct);
}

X4_TEST(httpc_connection_refused_and_closed) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    /* A port that was just free: bound, then closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    result refused = {0}, closed = {0}, badproto = {0};
    x4_httpc_req r = {"GET", url, NULL, 0, NULL, 0, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &r, on_done, &refused) != NULL);
    req(h, "GET", "/close", NULL, 0, 5000, 1 << 20, &closed);
    x4_httpc_req f = {"GET", "ftp://127.0.0.1/x", NULL, 0, NULL, 0, 2000, 5000, 1 << 20};
    x4_httpc_request(h, &f, on_done, &badproto);
    CHECK(run_until_n(&loop, &refused.calls, 1, 3000));
    CHECK(run_until_n(&loop, &closed.calls, 1, 3000));
    CHECK(run_until_n(&loop, &badproto.calls, 1, 3000));
    CHECK_EQ_INT(refused.status, X4_HTTPC_NETWORK);
    CHECK_EQ_STR(refused.error, "connection refused");
    CHECK_EQ_INT(refused.code, 0);
    CHECK_EQ_INT(closed.status, X4_HTTPC_NETWORK);
    CHECK(closed.error[0] != 0);
    CHECK_EQ_INT(badproto.status, X4_HTTPC_INTERNAL);
    CHECK_EQ_INT(badproto.calls, 1);
    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&refused);
    result_free(&closed);
    result_free(&badproto);
}

X4_TEST(httpc_response_cap) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result sized = {0}, stream = {0}, fits = {0}, exact = {0};
    req(h, "GET", "/huge", NULL, 0, 5000, 1 << 20, &sized);
    req(h, "GET", "/huge-stream", NULL, 0, 5000, 1 << 20, &stream);
    req(h, "GET", "/huge", NULL, 0, 5000, 4 << 20, &fits);
    req(h, "GET", "/huge-stream", NULL, 0, 5000, HUGE_LEN, &exact);
    CHECK(run_until_n(&loop, &sized.calls, 1, 5000));
    CHECK(run_until_n(&loop, &stream.calls, 1, 5000));
    CHECK(run_until_n(&loop, &fits.calls, 1, 5000));
    CHECK(run_until_n(&loop, &exact.calls, 1, 5000));
    CHECK_EQ_INT(sized.status, X4_HTTPC_TOO_LARGE);
    CHECK_EQ_STR(sized.error, "response larger than 1048576 bytes");
    CHECK_EQ_INT(sized.body_len, 0); /* never a truncated body */
    CHECK_EQ_INT(stream.status, X4_HTTPC_TOO_LARGE);
    CHECK_EQ_STR(stream.error, "response larger than 1048576 bytes");
    CHECK_EQ_INT(stream.body_len, 0);
    CHECK_EQ_INT(fits.status, X4_HTTPC_OK);
    CHECK_EQ_INT(fits.body_len, HUGE_LEN);
    int same = fits.body_len == HUGE_LEN;
    for (size_t i = 0; same && i < HUGE_LEN; i++) same = fits.body[i] == (char)('a' + i % 26);
    CHECK(same);
    CHECK_EQ_INT(exact.status, X4_HTTPC_OK); /* exactly at the cap is fine */
    CHECK_EQ_INT(exact.body_len, HUGE_LEN);
    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&sized);
    result_free(&stream);
    result_free(&fits);
    result_free(&exact);
}

X4_TEST(httpc_cancel_hanging_call) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result hang = {0}, hang2 = {0}, quick = {0};
    x4_httpc_call *c = req(h, "GET", "/hang", NULL, 0, 10000, 1 << 20, &hang);
    CHECK(c != NULL);
    run_for(&loop, 100);
    CHECK_EQ_INT(hang.calls, 0);
    x4_httpc_cancel(c);
    CHECK_EQ_INT(hang.calls, 1); /* synchronously */
    CHECK_EQ_INT(hang.status, X4_HTTPC_CANCELLED);
    CHECK_EQ_INT(x4_httpc_inflight(h), 0);

    /* Cancelled from inside another call's callback. */
    x4_httpc_call *c2 = req(h, "GET", "/hang", NULL, 0, 10000, 1 << 20, &hang2);
    quick.cancel_other = c2;
    req(h, "GET", "/echo", NULL, 0, 5000, 1 << 20, &quick);
    CHECK(run_until_n(&loop, &quick.calls, 1, 3000));
    CHECK_EQ_INT(hang2.calls, 1);
    CHECK_EQ_INT(hang2.status, X4_HTTPC_CANCELLED);
    CHECK_EQ_INT(quick.status, X4_HTTPC_OK);

    /* Cancelled right after it was started, before the loop ran. */
    result instant = {0};
    x4_httpc_cancel(req(h, "POST", "/echo", "abc", 3, 5000, 1 << 20, &instant));
    CHECK_EQ_INT(instant.calls, 1);
    CHECK_EQ_INT(instant.status, X4_HTTPC_CANCELLED);

    run_for(&loop, 300);
    CHECK_EQ_INT(hang.calls, 1);
    CHECK_EQ_INT(hang2.calls, 1);
    CHECK_EQ_INT(quick.calls, 1);
    CHECK_EQ_INT(instant.calls, 1);
    /* the client still works afterwards */
    result after = {0};
    req(h, "GET", "/echo", NULL, 0, 5000, 1 << 20, &after);
    CHECK(run_until_n(&loop, &after.calls, 1, 3000));
    CHECK_EQ_INT(after.code, 200);
    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&hang);
    result_free(&hang2);
    result_free(&quick);
    result_free(&instant);
    result_free(&after);
}

X4_TEST(httpc_close_with_calls_in_flight) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result r[10] = {{0}};
    for (int i = 0; i < 10; i++) req(h, "GET", i < 5 ? "/hang" : "/slow", NULL, 0, 10000, 1 << 20, &r[i]);
    run_for(&loop, 50);
    x4_httpc_close(h);
    int once = 1, cancelled = 0;
    for (int i = 0; i < 10; i++) {
        once &= r[i].calls == 1;
        cancelled += r[i].status == X4_HTTPC_CANCELLED;
    }
    CHECK(once);
    CHECK_EQ_INT(cancelled, 10);
    loop_finish(&loop);
    for (int i = 0; i < 10; i++) once &= r[i].calls == 1;
    CHECK(once);
    for (int i = 0; i < 10; i++) result_free(&r[i]);

    /* Closed from inside a completion callback, with another call still hanging. */
    uv_loop_init(&loop);
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result quick = {0}, hang = {0}, never = {0};
    req(h, "GET", "/hang", NULL, 0, 10000, 1 << 20, &hang);
    quick.close_client = h;
    req(h, "GET", "/echo", NULL, 0, 5000, 1 << 20, &quick);
    CHECK(run_until_n(&loop, &quick.calls, 1, 3000));
    CHECK_EQ_INT(hang.calls, 1);
    CHECK_EQ_INT(hang.status, X4_HTTPC_CANCELLED);
    loop_finish(&loop);
    CHECK_EQ_INT(quick.calls, 1);
    CHECK_EQ_INT(hang.calls, 1);
    result_free(&quick);
    result_free(&hang);

    /* Closed with nothing ever started; a request on a closing client fails at once. */
    uv_loop_init(&loop);
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    x4_httpc_close(h);
    loop_finish(&loop);
    (void)never;
}

X4_TEST(httpc_bad_request_fails_synchronously) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    result r = {0};
    x4_httpc_header bad[1] = {{"X-Evil", "a\r\nInjected: 1"}};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", srv());
    x4_httpc_req q = {"GET", url, bad, 1, NULL, 0, 2000, 5000, 1 << 20};
    CHECK(x4_httpc_request(h, &q, on_done, &r) == NULL);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.status, X4_HTTPC_INTERNAL);
    CHECK_EQ_INT(x4_httpc_inflight(h), 0);
    x4_httpc_close(h);
    loop_finish(&loop);
    result_free(&r);
}
