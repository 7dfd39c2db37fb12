/* tests/unit/test_bus.c — the Redis bus (bus/bus.c) against real redis-servers: the shared one
 * of scripts/testenv.sh ($X4_TESTENV/redis.sock) and private ones this file starts on temporary
 * sockets when a test must kill or configure its server. Without X4_TESTENV the tests are
 * skipped (and pass). Every test ends by draining its loop and checking uv_loop_close() == 0:
 * the bus must leave no handle behind. */
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bus/bus.h"
#include "unit.h"

/* ---- helpers --------------------------------------------------------------------------- */

static int have_env(void) {
    const char *env = getenv("X4_TESTENV");
    if (!env || !*env) {
        fprintf(stderr, "  X4_TESTENV not set: skipped\n");
        return 0;
    }
    return 1;
}

static void shared_url(char *out, size_t n) { snprintf(out, n, "unix://%s/redis.sock", getenv("X4_TESTENV")); }

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static void on_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until pred(arg) or timeout; a ticking timer keeps UV_RUN_ONCE from blocking. */
static int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned timeout_ms) {
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uint64_t end = now_ms() + timeout_ms;
    int ok;
    while (!(ok = pred ? pred(arg) : 0) && now_ms() < end) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}
static void run_for(uv_loop_t *loop, unsigned ms) { run_until(loop, NULL, NULL, ms); }

static void print_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    fprintf(stderr, "  leftover handle: %s active=%d closing=%d\n", uv_handle_type_name(h->type), uv_is_active(h),
            uv_is_closing(h));
}

/* Drains close callbacks; fails the test if any handle is left. */
static void loop_finish(uv_loop_t *loop) {
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(loop)) usleep(1000);
    }
    int rc = uv_loop_close(loop);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) uv_walk(loop, print_handle, NULL);
}

static int bus_healthy_pred(void *b) { return x4_bus_healthy(b); }
static int bus_down_pred(void *b) { return !x4_bus_healthy(b); }
typedef struct { x4_bus *a, *b; } bus_pair;
static int both_healthy_pred(void *p) {
    bus_pair *bp = p;
    return x4_bus_healthy(bp->a) && x4_bus_healthy(bp->b);
}
static int int_ge_pred_target;
static int int_ge_pred(void *p) { return *(int *)p >= int_ge_pred_target; }
static int wait_int(uv_loop_t *loop, int *v, int target, unsigned ms) {
    int_ge_pred_target = target;
    return run_until(loop, int_ge_pred, v, ms);
}

/* Health needs both connections up (the subscriber one may still be connecting under load). */
static int healthy_pred(void *bus) { return x4_bus_healthy(bus); }
static int wait_healthy(uv_loop_t *loop, x4_bus *bus, unsigned ms) { return run_until(loop, healthy_pred, bus, ms); }

/* ---- a private redis-server on a temporary socket ---------------------------------------- */

typedef struct {
    pid_t pid;
    char dir[64];
    char sock[128];
    int port; /* 0: unix socket only */
    const char *password;
} priv_redis;

static int priv_redis_ping(const priv_redis *r) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep != NULL; /* PONG, or NOAUTH with a password: either way it answers */
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

static int priv_redis_start(priv_redis *r) {
    char port[16], log[160];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (r->password)
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--unixsocket", r->sock,
                   "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", r->dir, "--logfile", log,
                   "--requirepass", r->password, (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--unixsocket", r->sock,
                   "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", r->dir, "--logfile", log,
                   (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 250; i++) {
        if (priv_redis_ping(r)) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    return -1;
}

static void priv_redis_kill(priv_redis *r) {
    if (r->pid <= 0) return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

static int priv_redis_init(priv_redis *r, int port, const char *password) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/x4bus-XXXXXX");
    if (!mkdtemp(r->dir)) return -1;
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    r->port = port;
    r->password = password;
    if (priv_redis_start(r) != 0) {
        fprintf(stderr, "  cannot start redis-server (log in %s)\n", r->dir);
        return -1;
    }
    return 0;
}

static void priv_redis_destroy(priv_redis *r) {
    priv_redis_kill(r);
    char p[200];
    snprintf(p, sizeof p, "%s/redis.sock", r->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/redis.log", r->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/dump.rdb", r->dir);
    unlink(p);
    rmdir(r->dir);
}

static int free_tcp_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- reply collection ------------------------------------------------------------------ */

typedef struct {
    int calls;
    int type;
    long long integer;
    char str[256];
    size_t len;
    char err[256];
    int had_err;
} reply_box;

static void on_reply(redisReply *r, const char *err, void *ud) {
    reply_box *b = ud;
    b->calls++;
    b->had_err = err != NULL;
    if (err) snprintf(b->err, sizeof b->err, "%s", err);
    b->type = r ? r->type : -1;
    if (r && r->type == REDIS_REPLY_INTEGER) b->integer = r->integer;
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)) {
        b->len = r->len < sizeof b->str ? (size_t)r->len : sizeof b->str - 1;
        memcpy(b->str, r->str, b->len);
        b->str[b->len] = 0;
    }
}

static void cmd3(x4_bus *bus, const char *a, const char *b, const char *c, size_t clen, reply_box *box) {
    const char *argv[3] = {a, b, c};
    size_t lens[3] = {strlen(a), b ? strlen(b) : 0, c ? clen : 0};
    int argc = c ? 3 : b ? 2 : 1;
    x4_bus_command(bus, argc, argv, lens, on_reply, box);
}

/* ---- URL handling (no server needed) ---------------------------------------------------- */

X4_TEST(bus_url_rejects_bad_forms) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *bad[] = {"http://localhost",          "redis://",           "redis://host:0",
                         "redis://host:99999",        "redis://host:12ab",  "redis://host/xyz",
                         "redis://user@host",         "unix://relative.sock", "rediss://host",
                         "redis://[::1",              "unix:///x.sock?db=q", NULL};
    for (int i = 0; bad[i]; i++) {
        x4_bus *bus = (x4_bus *)1;
        char err[256] = "";
        CHECK_EQ_INT(x4_bus_open(&bus, &loop, bad[i], err, sizeof err), -1);
        CHECK(bus == NULL);
        CHECK(err[0] != 0);
        if (!err[0]) fprintf(stderr, "  no reason for %s\n", bad[i]);
    }
    loop_finish(&loop);
}

/* A server that is not there: open succeeds (the bus retries in the background), commands
 * fail fast once the first attempt has failed, close leaves nothing behind. */
X4_TEST(bus_unreachable_then_close) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *urls[] = {"unix:///nonexistent-x4/redis.sock", "redis://127.0.0.1:1", "redis://localhost:1/2", NULL};
    for (int i = 0; urls[i]; i++) {
        x4_bus *bus = NULL;
        char err[256] = "";
        CHECK_EQ_INT(x4_bus_open(&bus, &loop, urls[i], err, sizeof err), 0);
        if (!bus) {
            fprintf(stderr, "  %s: %s\n", urls[i], err);
            continue;
        }
        run_for(&loop, 250);
        CHECK(!x4_bus_healthy(bus));
        reply_box box = {0};
        cmd3(bus, "PING", NULL, NULL, 0, &box);
        CHECK_EQ_INT(box.calls, 1); /* at once, not after a timeout */
        CHECK_EQ_STR(box.err, "redis unavailable");
        x4_bus_publish(bus, "x", "y", 1);
        x4_bus_stats st;
        x4_bus_get_stats(bus, &st);
        CHECK_EQ_INT(st.dropped, 1);
        CHECK_EQ_INT(st.published, 0);
        x4_bus_close(bus);
    }
    loop_finish(&loop);
}

/* A server that accepts nothing (a listener whose accept queue is full drops SYNs): hiredis 0.14
 * has no connect timeout, the bus's own 5 s timer gives up on the attempt. A command queued
 * during that first attempt then fails; close during the next attempt leaves nothing behind. */
X4_TEST(bus_connect_timeout) {
    if (!have_env()) return;
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
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[128], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    x4_bus *bus = NULL;
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    if (bus) {
        reply_box box = {0};
        uint64_t t0 = now_ms();
        cmd3(bus, "PING", NULL, NULL, 0, &box);
        CHECK_EQ_INT(box.calls, 0); /* queued behind the first attempt */
        CHECK(wait_int(&loop, &box.calls, 1, 8000));
        uint64_t took = now_ms() - t0;
        CHECK_EQ_STR(box.err, "redis unavailable");
        CHECK(took >= 4900 && took < 6500);
        CHECK(!x4_bus_healthy(bus));
        run_for(&loop, 200); /* the next attempt is under way */
        x4_bus_close(bus);
    }
    loop_finish(&loop);
    close(filler);
    close(l);
}

/* ---- against the shared server ----------------------------------------------------------- */

#define RT_N 10000

typedef struct {
    int got, bad, wrong_channel;
    char channel[96];
} rt_state;

static size_t rt_payload(int i, char *buf) {
    size_t len = (size_t)(i % 100);
    for (size_t j = 0; j < len; j++) buf[j] = (j % 5 == 1) ? 0 : (char)((i + (int)j * 7) & 0xff);
    return len;
}

static void rt_on_msg(const char *channel, const char *payload, size_t len, void *ud) {
    rt_state *s = ud;
    char want[128];
    size_t wlen = rt_payload(s->got, want);
    if (strcmp(channel, s->channel) != 0) s->wrong_channel++;
    if (len != wlen || memcmp(payload, want, len) != 0) s->bad++;
    s->got++;
}

X4_TEST(bus_publish_subscribe_round_trip_in_order) {
    if (!have_env()) return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[512], err[256];
    shared_url(url, sizeof url);
    x4_bus *bus = NULL;
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    if (!bus) {
        fprintf(stderr, "  open: %s\n", err);
        loop_finish(&loop);
        return;
    }
    rt_state s = {0};
    snprintf(s.channel, sizeof s.channel, "x4test:%d:rt", (int)getpid());
    CHECK_EQ_INT(x4_bus_subscribe(bus, s.channel, rt_on_msg, &s), 0);
    CHECK(run_until(&loop, bus_healthy_pred, bus, 5000));

    char buf[128];
    for (int i = 0; i < RT_N; i++) {
        size_t len = rt_payload(i, buf);
        x4_bus_publish(bus, s.channel, buf, len);
    }
    CHECK(wait_int(&loop, &s.got, RT_N, 20000));
    CHECK_EQ_INT(s.got, RT_N);
    CHECK_EQ_INT(s.bad, 0);
    CHECK_EQ_INT(s.wrong_channel, 0);
    x4_bus_stats st;
    x4_bus_get_stats(bus, &st);
    CHECK_EQ_INT(st.published, RT_N);
    CHECK_EQ_INT(st.received, RT_N);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.reconnects, 0);
    x4_bus_close(bus);
    loop_finish(&loop);
}

X4_TEST(bus_commands_with_replies) {
    if (!have_env()) return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[512], err[256], key[64], ctr[64];
    shared_url(url, sizeof url);
    x4_bus *bus = NULL;
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    if (!bus) {
        loop_finish(&loop);
        return;
    }
    snprintf(key, sizeof key, "x4test:%d:k", (int)getpid());
    snprintf(ctr, sizeof ctr, "x4test:%d:ctr", (int)getpid());
    /* Issued before the connection is up: queued behind the first connect, not refused. */
    reply_box set = {0}, get = {0}, del = {0}, i1 = {0}, i2 = {0}, bad = {0}, missing = {0};
    cmd3(bus, "SET", key, "v\0x", 3, &set);
    cmd3(bus, "GET", key, NULL, 0, &get);
    cmd3(bus, "DEL", ctr, NULL, 0, &del);
    cmd3(bus, "INCR", ctr, NULL, 0, &i1);
    cmd3(bus, "INCR", ctr, NULL, 0, &i2);
    cmd3(bus, "INCR", key, NULL, 0, &bad); /* not an integer */
    cmd3(bus, "GET", "x4test:surely-missing-key", NULL, 0, &missing);
    CHECK(wait_int(&loop, &missing.calls, 1, 5000));
    CHECK_EQ_INT(set.calls, 1);
    CHECK_EQ_INT(set.had_err, 0);
    CHECK_EQ_STR(set.str, "OK");
    CHECK_EQ_INT(get.type, REDIS_REPLY_STRING);
    CHECK_EQ_INT(get.len, 3);
    CHECK(memcmp(get.str, "v\0x", 3) == 0);
    CHECK_EQ_INT(i1.integer, 1);
    CHECK_EQ_INT(i2.integer, 2);
    CHECK_EQ_INT(bad.calls, 1);
    CHECK_EQ_INT(bad.had_err, 1);
    CHECK_EQ_INT(bad.type, REDIS_REPLY_ERROR);
    CHECK(strncmp(bad.err, "ERR", 3) == 0);
    CHECK_EQ_INT(missing.type, REDIS_REPLY_NIL);
    CHECK_EQ_INT(missing.had_err, 0);
    CHECK(wait_healthy(&loop, bus, 5000));
    /* cb may be NULL: fire and forget. */
    const char *argv[3] = {"DEL", key, ctr};
    x4_bus_command(bus, 3, argv, (size_t[]){3, strlen(key), strlen(ctr)}, NULL, NULL);
    reply_box ex = {0};
    cmd3(bus, "EXISTS", key, NULL, 0, &ex);
    CHECK(wait_int(&loop, &ex.calls, 1, 5000));
    CHECK_EQ_INT(ex.integer, 0);
    x4_bus_close(bus);
    loop_finish(&loop);
}

typedef struct {
    int from_a, from_b, late, other;
} two_state;

static void two_on_msg(const char *channel, const char *payload, size_t len, void *ud) {
    two_state *s = ud;
    if (len == 6 && memcmp(payload, "from-A", 6) == 0) s->from_a++;
    else if (len == 6 && memcmp(payload, "from-B", 6) == 0) s->from_b++;
    else s->other++;
    (void)channel;
}
static void two_on_late(const char *channel, const char *payload, size_t len, void *ud) {
    two_state *s = ud;
    if (len == 4 && memcmp(payload, "late", 4) == 0) s->late++;
    (void)channel;
}
typedef struct {
    two_state *a, *b;
} two_pair;
static int two_done(void *p) {
    two_pair *tp = p;
    return tp->a->from_b >= 1 && tp->b->from_a >= 1 && tp->a->from_a >= 1 && tp->b->from_b >= 1;
}

X4_TEST(bus_two_instances_see_each_other) {
    if (!have_env()) return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[512], err[256], ch[96], late[96];
    shared_url(url, sizeof url);
    snprintf(ch, sizeof ch, "x4test:%d:two", (int)getpid());
    snprintf(late, sizeof late, "x4test:%d:late", (int)getpid());
    x4_bus *a = NULL, *b = NULL;
    CHECK_EQ_INT(x4_bus_open(&a, &loop, url, err, sizeof err), 0);
    CHECK_EQ_INT(x4_bus_open(&b, &loop, url, err, sizeof err), 0);
    if (!a || !b) {
        if (a) x4_bus_close(a);
        if (b) x4_bus_close(b);
        loop_finish(&loop);
        return;
    }
    two_state sa = {0}, sb = {0};
    x4_bus_subscribe(a, ch, two_on_msg, &sa);
    x4_bus_subscribe(b, ch, two_on_msg, &sb);
    bus_pair bp = {a, b};
    CHECK(run_until(&loop, both_healthy_pred, &bp, 5000));
    x4_bus_publish(a, ch, "from-A", 6);
    x4_bus_publish(b, ch, "from-B", 6);
    two_pair tp = {&sa, &sb};
    CHECK(run_until(&loop, two_done, &tp, 5000));
    CHECK_EQ_INT(sa.from_b, 1);
    CHECK_EQ_INT(sb.from_a, 1);
    CHECK_EQ_INT(sa.other + sb.other, 0);

    /* A channel added after start-up: healthy again only once it is confirmed. */
    CHECK_EQ_INT(x4_bus_subscribe(b, late, two_on_late, &sb), 0);
    CHECK(!x4_bus_healthy(b));
    CHECK(run_until(&loop, bus_healthy_pred, b, 5000));
    x4_bus_publish(a, late, "late", 4);
    CHECK(wait_int(&loop, &sb.late, 1, 5000));
    /* A second listener on an existing channel shares the subscription. */
    two_state extra = {0};
    CHECK_EQ_INT(x4_bus_subscribe(a, ch, two_on_msg, &extra), 0);
    CHECK(x4_bus_healthy(a));
    x4_bus_publish(b, ch, "from-B", 6);
    CHECK(wait_int(&loop, &extra.from_b, 1, 5000));
    CHECK_EQ_INT(sa.from_b, 2);
    x4_bus_close(a);
    x4_bus_close(b);
    loop_finish(&loop);
}

#define PENDING_N 200

static int g_pending_calls[PENDING_N];
static int g_pending_closed;
static x4_bus *g_close_me;

static void pending_cb(redisReply *r, const char *err, void *ud) {
    int i = (int)(intptr_t)ud;
    g_pending_calls[i]++;
    if (err && strcmp(err, "bus closed") == 0) g_pending_closed++;
    if (g_close_me) { /* close from inside a reply callback */
        x4_bus *b = g_close_me;
        g_close_me = NULL;
        x4_bus_close(b);
    }
    (void)r;
}

X4_TEST(bus_close_with_commands_pending) {
    if (!have_env()) return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[512], err[256], ctr[64];
    shared_url(url, sizeof url);
    snprintf(ctr, sizeof ctr, "x4test:%d:pending", (int)getpid());
    const char *argv[2] = {"INCR", ctr};
    size_t lens[2] = {4, strlen(ctr)};

    /* 1. Up and running, many commands in flight, close at once. */
    x4_bus *bus = NULL;
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    CHECK(run_until(&loop, bus_healthy_pred, bus, 5000));
    memset(g_pending_calls, 0, sizeof g_pending_calls);
    g_pending_closed = 0;
    for (int i = 0; i < PENDING_N; i++) x4_bus_command(bus, 2, argv, lens, pending_cb, (void *)(intptr_t)i);
    x4_bus_close(bus);
    int once = 1;
    for (int i = 0; i < PENDING_N; i++) once &= g_pending_calls[i] == 1;
    CHECK(once); /* completed before close returned */
    CHECK_EQ_INT(g_pending_closed, PENDING_N);
    loop_finish(&loop);
    for (int i = 0; i < PENDING_N; i++) once &= g_pending_calls[i] == 1;
    CHECK(once);

    /* 2. Closed from inside the first reply callback. */
    uv_loop_init(&loop);
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    CHECK(run_until(&loop, bus_healthy_pred, bus, 5000));
    memset(g_pending_calls, 0, sizeof g_pending_calls);
    g_pending_closed = 0;
    for (int i = 0; i < PENDING_N; i++) x4_bus_command(bus, 2, argv, lens, pending_cb, (void *)(intptr_t)i);
    g_close_me = bus;
    run_for(&loop, 300);
    CHECK(g_close_me == NULL);
    once = 1;
    for (int i = 0; i < PENDING_N; i++) once &= g_pending_calls[i] == 1;
    CHECK(once);
    CHECK(g_pending_closed >= 1);
    loop_finish(&loop);

    /* 3. Closed while the first connect is still in progress (commands queued). */
    uv_loop_init(&loop);
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    memset(g_pending_calls, 0, sizeof g_pending_calls);
    g_pending_closed = 0;
    for (int i = 0; i < 10; i++) x4_bus_command(bus, 2, argv, lens, pending_cb, (void *)(intptr_t)i);
    x4_bus_close(bus);
    once = 1;
    for (int i = 0; i < 10; i++) once &= g_pending_calls[i] == 1;
    CHECK(once);
    CHECK_EQ_INT(g_pending_closed, 10);
    loop_finish(&loop);

    /* Clean up the counter with a throw-away bus. */
    uv_loop_init(&loop);
    if (x4_bus_open(&bus, &loop, url, err, sizeof err) == 0) {
        const char *del[2] = {"DEL", ctr};
        reply_box box = {0};
        x4_bus_command(bus, 2, del, (size_t[]){3, strlen(ctr)}, on_reply, &box);
        wait_int(&loop, &box.calls, 1, 5000);
        x4_bus_close(bus);
    }
    loop_finish(&loop);
}

/* ---- private servers ----------------------------------------------------------------------- */

typedef struct {
    int msgs, reconnected;
    char last[64];
} rs_state;

static void rs_on_msg(const char *channel, const char *payload, size_t len, void *ud) {
    rs_state *s = ud;
    s->msgs++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, payload);
    (void)channel;
}
static void rs_on_reconnect(void *ud) { ((rs_state *)ud)->reconnected++; }
typedef struct {
    x4_bus *bus;
    rs_state *s;
} rs_pair;
static int rs_back(void *p) {
    rs_pair *rp = p;
    return x4_bus_healthy(rp->bus) && rp->s->reconnected >= 1;
}

X4_TEST(bus_survives_redis_restart) {
    if (!have_env()) return;
    priv_redis r;
    if (priv_redis_init(&r, 0, NULL) != 0) {
        CHECK(!"private redis-server");
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[256], err[256];
    snprintf(url, sizeof url, "unix://%s", r.sock);
    x4_bus *bus = NULL;
    CHECK_EQ_INT(x4_bus_open(&bus, &loop, url, err, sizeof err), 0);
    rs_state s = {0};
    x4_bus_subscribe(bus, "events", rs_on_msg, &s);
    x4_bus_on_reconnect(bus, rs_on_reconnect, &s);
    CHECK(run_until(&loop, bus_healthy_pred, bus, 5000));
    CHECK_EQ_INT(s.reconnected, 0); /* not on the first connect */
    x4_bus_publish(bus, "events", "before", 6);
    CHECK(wait_int(&loop, &s.msgs, 1, 5000));
    CHECK_EQ_STR(s.last, "before");

    /* A command in flight when the server dies completes with an error. */
    reply_box inflight = {0};
    cmd3(bus, "BLPOP", "x4test:never", "0", 1, &inflight);
    run_for(&loop, 50);
    priv_redis_kill(&r);
    CHECK(run_until(&loop, bus_down_pred, bus, 3000));
    CHECK(wait_int(&loop, &inflight.calls, 1, 3000));
    CHECK_EQ_INT(inflight.had_err, 1);
    run_for(&loop, 400); /* a few failed attempts with backoff */

    uint64_t t0 = uv_hrtime();
    reply_box down = {0};
    cmd3(bus, "GET", "k", NULL, 0, &down);
    CHECK_EQ_INT(down.calls, 1); /* synchronously */
    CHECK_EQ_STR(down.err, "redis unavailable");
    CHECK((uv_hrtime() - t0) / 1000000 < 50);
    x4_bus_publish(bus, "events", "lost", 4);
    x4_bus_stats st;
    x4_bus_get_stats(bus, &st);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(s.reconnected, 0);

    CHECK_EQ_INT(priv_redis_start(&r), 0);
    rs_pair rp = {bus, &s};
    CHECK(run_until(&loop, rs_back, &rp, 10000));
    run_for(&loop, 300);
    CHECK_EQ_INT(s.reconnected, 1);
    x4_bus_publish(bus, "events", "after", 5);
    CHECK(wait_int(&loop, &s.msgs, 2, 5000));
    CHECK_EQ_STR(s.last, "after");
    reply_box set = {0}, get = {0};
    cmd3(bus, "SET", "k", "v2", 2, &set);
    cmd3(bus, "GET", "k", NULL, 0, &get);
    CHECK(wait_int(&loop, &get.calls, 1, 5000));
    CHECK_EQ_STR(get.str, "v2");
    x4_bus_get_stats(bus, &st);
    CHECK_EQ_INT(st.reconnects, 2); /* sub and cmd */
    CHECK_EQ_INT(st.received, 2);

    /* Down again, closed while it retries. */
    priv_redis_kill(&r);
    CHECK(run_until(&loop, bus_down_pred, bus, 3000));
    run_for(&loop, 150);
    x4_bus_close(bus);
    loop_finish(&loop);
    CHECK_EQ_INT(s.reconnected, 1);
    priv_redis_destroy(&r);
}

/* TCP, AUTH (both the :password and the user:password form), SELECT, a host name resolved at
 * open, and a wrong password that never becomes healthy. */
X4_TEST(bus_tcp_auth_and_select) {
    if (!have_env()) return;
    int port = free_tcp_port();
    priv_redis r;
    if (port <= 0 || priv_redis_init(&r, port, "s3cr:et@") != 0) {
        CHECK(!"private redis-server");
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    char u3[256], u0[256], bad[256], err[256];
    snprintf(u3, sizeof u3, "redis://default:s3cr%%3Aet%%40@127.0.0.1:%d/3", port);
    snprintf(u0, sizeof u0, "redis://:s3cr%%3Aet%%40@localhost:%d", port);
    snprintf(bad, sizeof bad, "redis://:nope@127.0.0.1:%d/3", port);
    x4_bus *b3 = NULL, *b0 = NULL, *bb = NULL;
    CHECK_EQ_INT(x4_bus_open(&b3, &loop, u3, err, sizeof err), 0);
    CHECK_EQ_INT(x4_bus_open(&b0, &loop, u0, err, sizeof err), 0);
    CHECK_EQ_INT(x4_bus_open(&bb, &loop, bad, err, sizeof err), 0);
    if (!b3 || !b0 || !bb) {
        fprintf(stderr, "  open: %s\n", err);
        if (b3) x4_bus_close(b3);
        if (b0) x4_bus_close(b0);
        if (bb) x4_bus_close(bb);
        loop_finish(&loop);
        priv_redis_destroy(&r);
        return;
    }
    two_state s = {0};
    x4_bus_subscribe(b0, "tcp", two_on_msg, &s);
    bus_pair bp = {b3, b0};
    CHECK(run_until(&loop, both_healthy_pred, &bp, 5000));
    reply_box set = {0}, get3 = {0}, get0 = {0};
    cmd3(b3, "SET", "only-in-3", "yes", 3, &set);
    cmd3(b3, "GET", "only-in-3", NULL, 0, &get3);
    CHECK(wait_int(&loop, &get3.calls, 1, 5000));
    cmd3(b0, "GET", "only-in-3", NULL, 0, &get0);
    CHECK(wait_int(&loop, &get0.calls, 1, 5000));
    CHECK_EQ_STR(get3.str, "yes");
    CHECK_EQ_INT(get0.type, REDIS_REPLY_NIL);
    x4_bus_publish(b3, "tcp", "from-A", 6); /* pub/sub ignores the db */
    CHECK(wait_int(&loop, &s.from_a, 1, 5000));
    CHECK(!x4_bus_healthy(bb));
    reply_box refused = {0};
    cmd3(bb, "GET", "only-in-3", NULL, 0, &refused);
    CHECK(wait_int(&loop, &refused.calls, 1, 2000));
    CHECK_EQ_INT(refused.had_err, 1);
    x4_bus_close(b3);
    x4_bus_close(b0);
    x4_bus_close(bb);
    loop_finish(&loop);
    priv_redis_destroy(&r);
}
