/* bus/bus.c — the Redis bus: two hiredis async connections on the engine's libuv loop.
 *
 * Shape. Each x4_bus owns two connections, `sub` (SUBSCRIBE to every registered channel; a
 * subscribed connection can run nothing else) and `cmd` (PUBLISH and every other command).
 * Each connection is a small state machine driven by hiredis' connect/disconnect callbacks and
 * one uv_timer of its own:
 *
 *   DOWN ──timer (backoff)──▶ CONNECTING ──onConnect OK──▶ HANDSHAKE ──last reply──▶ READY
 *     ▲                           │ onConnect ERR / 5 s timer                    │
 *     └───────────────────────────┴──────────── onDisconnect ◀───────────────────┘
 *
 * The handshake is AUTH (if the URL has a password), then SELECT (cmd, if the URL has a db), or
 * SUBSCRIBE for every channel (sub; a PING when there is none, so readiness is always reached
 * inside a reply callback, where user code may run). `sub` is READY only when every channel is
 * confirmed, so x4_bus_healthy() means "a publish now will be seen". The 5 s timer covers
 * connect plus handshake (hiredis 0.14 has no timeouts of its own). Backoff between attempts:
 * 100 ms doubling to 5 s, reset once a connection is READY.
 *
 * While `cmd` is not usable, commands complete at once with "redis unavailable" and publishes
 * are dropped (counted): events are durable in PostgreSQL, subscribers catch up from there.
 * During the very first attempt after open, commands are queued by hiredis instead, so start-up
 * does not race the connect. on_reconnect runs when `sub` is READY again after a loss.
 *
 * Lifetime rules that keep hiredis happy:
 * - User code never runs inside onConnect (freeing a context there would be a use-after-free
 *   in hiredis); only inside reply callbacks, where redisAsyncFree() is deferred by hiredis
 *   until the callback returns.
 * - A context we free while it is still connecting is detached first (conn->ac = NULL); a
 *   connected one is detached by onDisconnect, which hiredis runs last, after every pending
 *   callback. x4_bus_close() therefore completes every pending command (with "bus closed")
 *   before it returns, or right after the current bus callback returns when called from one.
 * - The bus is freed when both contexts are gone and both timers are closed. The adapter's
 *   uv_poll closes asynchronously on its own, so the loop must run once more after close.
 * - The stock libuv adapter (redisLibuvAttach) is used, with its four event hooks replaced by
 *   copies whose poll callback does not ignore errors: libuv reports POLLERR (refused TCP
 *   connect, reset) as a poll error and stops the handle, which the stock callback drops on the
 *   floor, leaving the connection hung.
 *
 * Costs: a message is delivered straight from hiredis' reply (no copy); channels are looked
 * up by hiredis' own dict; listeners per channel are a small array. */
#include "bus/bus.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/log.h"
#include "core/util.h"

#define BUS_BACKOFF_MIN_MS 100
#define BUS_BACKOFF_MAX_MS 5000
#define BUS_CONNECT_TIMEOUT_MS 5000

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY } conn_state;

typedef struct {
    x4_bus_msg_cb cb;
    void *ud;
} bus_listener;

typedef struct bus_chan {
    struct bus_chan *next;
    x4_bus *bus;
    char *name;
    bus_listener *ls;
    size_t nls, capls;
} bus_chan;

typedef struct bus_evl {
    struct bus_evl *next;
    x4_bus_event_cb cb;
    void *ud;
} bus_evl;

typedef struct {
    x4_bus *bus;
    const char *name; /* "sub" or "cmd", for logs */
    int is_sub;
    redisAsyncContext *ac; /* NULL when DOWN */
    conn_state state;
    uv_timer_t timer;       /* connect timeout while connecting, backoff while down */
    unsigned backoff_ms;
    int pending;            /* handshake replies (and channel confirmations) still due */
    int initial;            /* first attempt since open, nothing failed yet: queue commands */
    int ever_ready;
    int reconnect_pending;  /* READY again after a loss: fire on_reconnect (sub) */
    unsigned failures;      /* attempts failed since the last READY (only the first is a warning) */
    int refused;            /* this attempt's set-up was refused (bad password or db) */
} bus_conn;

struct x4_bus {
    uv_loop_t *loop;
    int unix_socket;
    char *path;          /* unix socket path */
    char host[INET6_ADDRSTRLEN];
    int port;
    char *user, *password;
    int db;
    bus_conn sub, cmd;
    bus_chan *chans;
    bus_evl *evls;
    int closing;
    int timers_open;
    x4_bus_stats stats;
};

typedef struct {
    x4_bus *bus;
    x4_bus_reply_cb cb;
    void *ud;
} bus_req;

static void conn_connect(bus_conn *c);
static void conn_schedule_retry(bus_conn *c);

static void conn_note_failure(bus_conn *c, const char *what, const char *why) {
    c->failures++;
    x4_log(c->failures == 1 ? X4_LOG_WARN : X4_LOG_DEBUG, "bus", "redis %s %s: %s (attempt %u, retrying)", c->name,
           what, why && why[0] ? why : "error", c->failures);
}

/* ---- URL ---------------------------------------------------------------------------- */

static int bus_set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return -1;
}

/* "user:pass" or ":pass" (percent-encoded) into bus->user / bus->password. */
static int bus_parse_userinfo(x4_bus *bus, const char *s, size_t n, char *err, size_t errlen) {
    const char *colon = memchr(s, ':', n);
    if (!colon) return bus_set_err(err, errlen, "redis URL: credentials must be :password or user:password");
    size_t ulen = (size_t)(colon - s), plen = n - ulen - 1;
    char *u = malloc(ulen + 1), *p = malloc(plen + 1);
    if (!u || !p) goto fail;
    if (x4_url_decode(s, ulen, u, ulen + 1) != 0 || x4_url_decode(colon + 1, plen, p, plen + 1) != 0) {
        free(u);
        free(p);
        return bus_set_err(err, errlen, "redis URL: bad percent-encoding in credentials");
    }
    if (u[0]) bus->user = u; else free(u);
    if (p[0]) bus->password = p; else free(p);
    return 0;
fail:
    free(u);
    free(p);
    return bus_set_err(err, errlen, "out of memory");
}

static int bus_parse_db(const char *s, int *db) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 1000000 || s[0] == '-' || s[0] == '+') return -1;
    *db = (int)v;
    return 0;
}

/* Resolves host once (start-up only, blocking), preferring IPv4, into a numeric address. */
static int bus_resolve(x4_bus *bus, const char *host, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL, *ai, *pick = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        if (err && errlen) snprintf(err, errlen, "redis URL: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) { pick = ai; break; }
    for (ai = res; ai && !pick; ai = ai->ai_next)
        if (ai->ai_family == AF_INET6) pick = ai;
    int ok = 0;
    if (pick) {
        const void *a = pick->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                                                    : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
        ok = inet_ntop(pick->ai_family, a, bus->host, sizeof bus->host) != NULL;
    }
    freeaddrinfo(res);
    if (!ok) {
        if (err && errlen) snprintf(err, errlen, "redis URL: no IPv4/IPv6 address for %s", host);
        return -1;
    }
    return 0;
}

static int bus_parse_url(x4_bus *bus, const char *url, char *err, size_t errlen) {
    if (!url) return bus_set_err(err, errlen, "redis URL missing");
    if (strncmp(url, "unix://", 7) == 0) {
        const char *rest = url + 7, *path = rest;
        if (rest[0] != '/') {
            const char *at = strstr(rest, "@/");
            if (!at) return bus_set_err(err, errlen, "redis URL: unix:// needs an absolute path");
            if (bus_parse_userinfo(bus, rest, (size_t)(at - rest), err, errlen) != 0) return -1;
            path = at + 1;
        }
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (plen < 2 || plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return bus_set_err(err, errlen, "redis URL: bad unix socket path");
        if (q) {
            char v[32];
            int got = x4_query_get(q + 1, strlen(q + 1), "db", v, sizeof v);
            if (got < 0 || (got == 1 && bus_parse_db(v, &bus->db) != 0))
                return bus_set_err(err, errlen, "redis URL: bad ?db= value");
        }
        bus->unix_socket = 1;
        bus->path = x4_strndup(path, plen);
        if (!bus->path) return bus_set_err(err, errlen, "out of memory");
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0)
        return bus_set_err(err, errlen, "redis URL: TLS (rediss://) is not supported by hiredis 0.14");
    if (strncmp(url, "redis://", 8) != 0)
        return bus_set_err(err, errlen, "redis URL must start with redis:// or unix://");

    const char *rest = url + 8, *slash = strchr(rest, '/');
    const char *auth_end = slash ? slash : rest + strlen(rest);
    const char *at = NULL;
    for (const char *p = rest; p < auth_end; p++)
        if (*p == '@') at = p; /* the last '@' ends the credentials */
    const char *hp = rest;
    if (at) {
        if (bus_parse_userinfo(bus, rest, (size_t)(at - rest), err, errlen) != 0) return -1;
        hp = at + 1;
    }
    char host[256];
    const char *hend, *after;
    if (*hp == '[') {
        hend = memchr(hp, ']', (size_t)(auth_end - hp));
        if (!hend) return bus_set_err(err, errlen, "redis URL: unterminated [IPv6] host");
        hp++;
        after = hend + 1;
    } else {
        hend = hp;
        while (hend < auth_end && *hend != ':') hend++;
        after = hend;
    }
    size_t hlen = (size_t)(hend - hp);
    if (hlen == 0 || hlen >= sizeof host) return bus_set_err(err, errlen, "redis URL: bad host");
    memcpy(host, hp, hlen);
    host[hlen] = 0;
    bus->port = 6379;
    if (after < auth_end) {
        if (*after != ':') return bus_set_err(err, errlen, "redis URL: bad host");
        char pbuf[8];
        size_t plen = (size_t)(auth_end - after - 1);
        if (plen == 0 || plen >= sizeof pbuf) return bus_set_err(err, errlen, "redis URL: bad port");
        memcpy(pbuf, after + 1, plen);
        pbuf[plen] = 0;
        char *end;
        long port = strtol(pbuf, &end, 10);
        if (*end || port < 1 || port > 65535 || pbuf[0] == '-' || pbuf[0] == '+')
            return bus_set_err(err, errlen, "redis URL: bad port");
        bus->port = (int)port;
    }
    if (slash && bus_parse_db(slash + 1, &bus->db) != 0)
        return bus_set_err(err, errlen, "redis URL: bad /db number");
    return bus_resolve(bus, host, err, errlen);
}

/* ---- lifetime ------------------------------------------------------------------------ */

static void bus_free(x4_bus *bus) {
    for (bus_chan *ch = bus->chans, *next; ch; ch = next) {
        next = ch->next;
        free(ch->name);
        free(ch->ls);
        free(ch);
    }
    for (bus_evl *e = bus->evls, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(bus->path);
    free(bus->user);
    free(bus->password);
    free(bus);
}

static void bus_maybe_finish(x4_bus *bus) {
    if (bus->closing && bus->timers_open == 0 && !bus->sub.ac && !bus->cmd.ac) bus_free(bus);
}

static void bus_timer_closed(uv_handle_t *h) {
    x4_bus *bus = ((bus_conn *)h->data)->bus;
    bus->timers_open--;
    bus_maybe_finish(bus);
}

/* ---- connection state machine --------------------------------------------------------- */

static int conn_accepts(const bus_conn *c) {
    if (!c->ac) return 0;
    return c->state == CONN_READY || c->state == CONN_HANDSHAKE || (c->state == CONN_CONNECTING && c->initial);
}

static void conn_fire_reconnect(x4_bus *bus) {
    /* Listeners may be added from a listener; the list only grows at its head. */
    for (bus_evl *e = bus->evls; e && !bus->closing; e = e->next) e->cb(e->ud);
}

/* HANDSHAKE → READY once nothing is due. User code (on_reconnect) runs only when may_notify,
 * i.e. from a reply callback, never from onConnect. */
static void conn_check_ready(bus_conn *c, int may_notify) {
    if (c->state != CONN_HANDSHAKE || c->pending > 0) return;
    c->state = CONN_READY;
    c->initial = 0;
    c->ever_ready = 1;
    c->backoff_ms = BUS_BACKOFF_MIN_MS;
    c->failures = 0;
    uv_timer_stop(&c->timer);
    if (!c->reconnect_pending) return;
    c->reconnect_pending = 0;
    x4_info("bus", "redis %s connection restored", c->name);
    if (c->is_sub && may_notify) conn_fire_reconnect(c->bus);
}

static void conn_handshake_reply(redisAsyncContext *ac, void *r, void *privdata) {
    bus_conn *c = privdata;
    redisReply *reply = r;
    if (!reply || c->ac != ac) return; /* context going away: its disconnect path handles state */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!c->refused) /* AUTH refused makes SELECT fail too: one line per attempt */
            x4_error("bus", "redis %s connection: set-up command refused: %s", c->name, reply->str);
        c->refused = 1;
        c->failures++;
        c->backoff_ms = BUS_BACKOFF_MAX_MS; /* a configuration error: do not hammer the server */
        redisAsyncDisconnect(ac);
        return;
    }
    c->pending--;
    conn_check_ready(c, 1);
}

static void chan_reply(redisAsyncContext *ac, void *r, void *privdata) {
    bus_chan *ch = privdata;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    x4_bus *bus = ch->bus;
    const redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "message") == 0) {
        const redisReply *payload = reply->element[2];
        if (bus->closing || payload->type != REDIS_REPLY_STRING) return;
        bus->stats.received++;
        size_t n = ch->nls; /* listeners added during delivery get the next message */
        for (size_t i = 0; i < n && !bus->closing; i++)
            ch->ls[i].cb(ch->name, payload->str, (size_t)payload->len, ch->ls[i].ud);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        bus_conn *c = &bus->sub;
        if (c->ac != ac) return;
        c->pending--;
        conn_check_ready(c, 1);
    }
}

static int conn_send_subscribe(bus_conn *c, bus_chan *ch) {
    const char *argv[2] = {"SUBSCRIBE", ch->name};
    size_t lens[2] = {9, strlen(ch->name)};
    if (redisAsyncCommandArgv(c->ac, chan_reply, ch, 2, argv, lens) != REDIS_OK) return -1;
    c->pending++;
    if (c->state == CONN_READY) c->state = CONN_HANDSHAKE; /* healthy again once confirmed */
    return 0;
}

/* Queues the handshake behind the connect; hiredis sends it once the socket is writable. */
static int conn_queue_handshake(bus_conn *c) {
    x4_bus *bus = c->bus;
    c->pending = 0;
    if (bus->password) {
        const char *argv[3] = {"AUTH", bus->user ? bus->user : bus->password, bus->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(bus->password)};
        int argc = bus->user ? 3 : 2;
        if (redisAsyncCommandArgv(c->ac, conn_handshake_reply, c, argc, argv, lens) != REDIS_OK) return -1;
        c->pending++;
    }
    if (c->is_sub) {
        if (!bus->chans) {
            if (redisAsyncCommand(c->ac, conn_handshake_reply, c, "PING") != REDIS_OK) return -1;
            c->pending++;
        }
        for (bus_chan *ch = bus->chans; ch; ch = ch->next)
            if (conn_send_subscribe(c, ch) != 0) return -1;
    } else if (bus->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", bus->db);
        if (redisAsyncCommand(c->ac, conn_handshake_reply, c, "SELECT %s", db) != REDIS_OK) return -1;
        c->pending++;
    }
    return 0;
}

static void conn_on_connect(const redisAsyncContext *ac, int status) {
    bus_conn *c = ac->data;
    if (!c) return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this returns. */
        conn_note_failure(c, "connect failed", ac->errstr);
        c->ac = NULL;
        ((redisAsyncContext *)ac)->data = NULL;
        c->state = CONN_DOWN;
        c->initial = 0;
        if (!c->bus->closing) conn_schedule_retry(c);
        return;
    }
    c->state = CONN_HANDSHAKE;
    c->refused = 0;
    if (c->ever_ready) {
        c->reconnect_pending = 1;
        c->bus->stats.reconnects++;
    }
    /* cmd without AUTH/SELECT has nothing to wait for; sub always waits for a reply. */
    conn_check_ready(c, 0);
}

static void conn_on_disconnect(const redisAsyncContext *ac, int status) {
    bus_conn *c = ac->data;
    if (!c) return;
    x4_bus *bus = c->bus;
    c->ac = NULL;
    c->state = CONN_DOWN;
    c->initial = 0;
    c->reconnect_pending = 0;
    if (bus->closing) {
        bus_maybe_finish(bus);
        return;
    }
    if (c->failures == 0) /* a loss, not the end of a failed handshake: say so once */
        x4_warn("bus", "redis %s connection lost: %s", c->name,
                status == REDIS_OK ? "closed" : (ac->errstr && ac->errstr[0] ? ac->errstr : "error"));
    c->failures++;
    conn_schedule_retry(c);
}

/* Frees a context from outside any hiredis callback of its own (timer or close path). */
static void conn_drop(bus_conn *c) {
    redisAsyncContext *ac = c->ac;
    if (!ac) return;
    if (ac->c.flags & REDIS_CONNECTED) {
        /* onDisconnect detaches it: now, or when the running callback of ac returns. */
        redisAsyncFree(ac);
    } else {
        c->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void conn_on_timeout(uv_timer_t *t) {
    bus_conn *c = t->data;
    if (c->bus->closing || !c->ac || c->state == CONN_READY) return;
    int connected = (c->ac->c.flags & REDIS_CONNECTED) != 0;
    conn_note_failure(c, connected ? "set-up" : "connect", "no answer within 5000 ms");
    conn_drop(c);
    if (!connected) { /* a connected context reschedules from onDisconnect */
        c->state = CONN_DOWN;
        c->initial = 0;
        conn_schedule_retry(c);
    }
}

static void conn_on_retry(uv_timer_t *t) {
    bus_conn *c = t->data;
    if (!c->bus->closing && !c->ac) conn_connect(c);
}

static void conn_schedule_retry(bus_conn *c) {
    unsigned delay = c->backoff_ms;
    c->backoff_ms = delay * 2 > BUS_BACKOFF_MAX_MS ? BUS_BACKOFF_MAX_MS : delay * 2;
    uv_timer_start(&c->timer, conn_on_retry, delay, 0);
}

/* The adapter's poll callback ignores a non-zero status. libuv reports POLLERR (a refused TCP
 * connect, a reset) as UV_EBADF and stops the handle, so with the stock callback such a
 * connection would hang silently until our timer. These hooks are the adapter's own, on its
 * own struct, with a callback that turns the error into a failed connect or a disconnect. */
static void bus_poll_cb(uv_poll_t *handle, int status, int events) {
    redisLibuvEvents *p = handle->data;
    redisAsyncContext *ac = p->context;
    if (!ac) return;
    if (status < 0) {
        p->events = 0; /* libuv stopped the handle: the next add hook must start it again */
        if (!(ac->c.flags & REDIS_CONNECTED)) {
            redisAsyncHandleWrite(ac); /* the connect check reads SO_ERROR and fails the attempt */
            return;
        }
        bus_conn *c = ac->data;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
        if (c) {
            x4_warn("bus", "redis %s connection lost: %s", c->name, soerr ? strerror(soerr) : uv_strerror(status));
            c->failures++;
        }
        redisAsyncFree(ac); /* not inside a hiredis callback: immediate; onDisconnect retries */
        return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(ac);
    if (p->context && (events & UV_WRITABLE)) redisAsyncHandleWrite(ac);
}

static void bus_ev_update(redisLibuvEvents *p) {
    if (p->events) uv_poll_start(&p->handle, p->events, bus_poll_cb);
    else uv_poll_stop(&p->handle);
}
/* hiredis calls the add hooks after every read and every command, whether or not the event is
 * already watched; uv_poll_start() always re-registers the descriptor (an epoll DEL and ADD),
 * uv_poll_stop() on a stopped handle still issues a DEL. p->events is what the handle watches,
 * so only a change reaches libuv (4 epoll_ctl fewer per PUBLISH, 2 per subscriber read). */
static void bus_ev_add_read(void *privdata) {
    redisLibuvEvents *p = privdata;
    if (p->events & UV_READABLE) return;
    p->events |= UV_READABLE;
    bus_ev_update(p);
}
static void bus_ev_del_read(void *privdata) {
    redisLibuvEvents *p = privdata;
    if (!(p->events & UV_READABLE)) return;
    p->events &= ~UV_READABLE;
    bus_ev_update(p);
}
static void bus_ev_add_write(void *privdata) {
    redisLibuvEvents *p = privdata;
    if (p->events & UV_WRITABLE) return;
    p->events |= UV_WRITABLE;
    bus_ev_update(p);
}
static void bus_ev_del_write(void *privdata) {
    redisLibuvEvents *p = privdata;
    if (!(p->events & UV_WRITABLE)) return;
    p->events &= ~UV_WRITABLE;
    bus_ev_update(p);
}

static void conn_connect(bus_conn *c) {
    x4_bus *bus = c->bus;
    redisAsyncContext *ac = bus->unix_socket ? redisAsyncConnectUnix(bus->path) : redisAsyncConnect(bus->host, bus->port);
    if (!ac) {
        conn_note_failure(c, "connect failed", "out of memory");
        goto retry;
    }
    if (ac->err) {
        conn_note_failure(c, "connect failed", ac->errstr);
        redisAsyncFree(ac); /* nothing attached yet */
        goto retry;
    }
    if (redisLibuvAttach(ac, bus->loop) != REDIS_OK) {
        conn_note_failure(c, "connect failed", "cannot attach to the loop");
        redisAsyncFree(ac);
        goto retry;
    }
    ac->ev.addRead = bus_ev_add_read;
    ac->ev.delRead = bus_ev_del_read;
    ac->ev.addWrite = bus_ev_add_write;
    ac->ev.delWrite = bus_ev_del_write;
    if (!bus->unix_socket) redisEnableKeepAlive(&ac->c);
    ac->data = c;
    c->ac = ac;
    c->state = CONN_CONNECTING;
    redisAsyncSetConnectCallback(ac, conn_on_connect);
    redisAsyncSetDisconnectCallback(ac, conn_on_disconnect);
    if (conn_queue_handshake(c) != 0) {
        conn_note_failure(c, "connect failed", "cannot queue set-up commands");
        conn_drop(c);
        goto retry;
    }
    uv_timer_start(&c->timer, conn_on_timeout, BUS_CONNECT_TIMEOUT_MS, 0);
    return;
retry:
    c->ac = NULL;
    c->state = CONN_DOWN;
    c->initial = 0;
    conn_schedule_retry(c);
}

/* ---- public API ------------------------------------------------------------------------ */

int x4_bus_open(x4_bus **out, uv_loop_t *loop, const char *url, char *err, size_t errlen) {
    *out = NULL;
    x4_bus *bus = calloc(1, sizeof *bus);
    if (!bus) return bus_set_err(err, errlen, "out of memory");
    bus->loop = loop;
    if (bus_parse_url(bus, url, err, errlen) != 0) {
        bus_free(bus);
        return -1;
    }
    bus_conn *conns[2] = {&bus->sub, &bus->cmd};
    for (int i = 0; i < 2; i++) {
        bus_conn *c = conns[i];
        c->bus = bus;
        c->is_sub = i == 0;
        c->name = i == 0 ? "sub" : "cmd";
        c->backoff_ms = BUS_BACKOFF_MIN_MS;
        c->initial = 1;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        bus->timers_open++;
    }
    conn_connect(&bus->sub);
    conn_connect(&bus->cmd);
    *out = bus;
    return 0;
}

int x4_bus_subscribe(x4_bus *bus, const char *channel, x4_bus_msg_cb cb, void *ud) {
    if (!bus || !channel || !cb || bus->closing) return -1;
    bus_chan *ch = bus->chans, *last = NULL;
    for (; ch; last = ch, ch = ch->next)
        if (strcmp(ch->name, channel) == 0) break;
    int fresh = ch == NULL;
    if (fresh) {
        ch = calloc(1, sizeof *ch);
        if (!ch || !(ch->name = x4_strdup(channel))) {
            free(ch);
            return -1;
        }
        ch->bus = bus;
    }
    if (ch->nls == ch->capls) {
        size_t cap = ch->capls ? ch->capls * 2 : 2;
        bus_listener *ls = realloc(ch->ls, cap * sizeof *ls);
        if (!ls) {
            if (fresh) {
                free(ch->name);
                free(ch);
            }
            return -1;
        }
        ch->ls = ls;
        ch->capls = cap;
    }
    ch->ls[ch->nls++] = (bus_listener){cb, ud};
    if (!fresh) return 0;
    /* Append so channels are re-subscribed in registration order. */
    if (last) last->next = ch; else bus->chans = ch;
    bus_conn *c = &bus->sub;
    if (c->ac && c->state != CONN_DOWN && conn_send_subscribe(c, ch) != 0)
        x4_warn("bus", "SUBSCRIBE %s not sent now; it is sent again after the next reconnect", channel);
    return 0;
}

void x4_bus_on_reconnect(x4_bus *bus, x4_bus_event_cb cb, void *ud) {
    if (!bus || !cb) return;
    bus_evl *e = calloc(1, sizeof *e);
    if (!e) {
        x4_error("bus", "out of memory registering on_reconnect");
        return;
    }
    e->cb = cb;
    e->ud = ud;
    e->next = bus->evls;
    bus->evls = e;
}

void x4_bus_publish(x4_bus *bus, const char *channel, const char *payload, size_t len) {
    if (!bus) return;
    bus_conn *c = &bus->cmd;
    if (bus->closing || !conn_accepts(c)) {
        bus->stats.dropped++;
        return;
    }
    const char *argv[3] = {"PUBLISH", channel, payload ? payload : ""};
    size_t lens[3] = {7, strlen(channel), payload ? len : 0};
    if (redisAsyncCommandArgv(c->ac, NULL, NULL, 3, argv, lens) == REDIS_OK) bus->stats.published++;
    else bus->stats.dropped++;
}

static void bus_req_reply(redisAsyncContext *ac, void *r, void *privdata) {
    bus_req *req = privdata;
    redisReply *reply = r;
    const char *err = NULL;
    if (!reply)
        err = req->bus->closing ? "bus closed"
              : (ac->c.flags & REDIS_CONNECTED) ? "redis connection lost" : "redis unavailable";
    else if (reply->type == REDIS_REPLY_ERROR) err = reply->str;
    req->cb(reply, err, req->ud);
    free(req);
}

void x4_bus_command(x4_bus *bus, int argc, const char **argv, const size_t *argvlen, x4_bus_reply_cb cb, void *ud) {
    if (!bus || argc < 1 || !argv) {
        if (cb) cb(NULL, "bad command", ud);
        return;
    }
    if (bus->closing) {
        if (cb) cb(NULL, "bus closed", ud);
        return;
    }
    bus_conn *c = &bus->cmd;
    if (!conn_accepts(c)) {
        if (cb) cb(NULL, "redis unavailable", ud);
        return;
    }
    bus_req *req = NULL;
    if (cb) {
        req = malloc(sizeof *req);
        if (!req) {
            cb(NULL, "out of memory", ud);
            return;
        }
        *req = (bus_req){bus, cb, ud};
    }
    if (redisAsyncCommandArgv(c->ac, cb ? bus_req_reply : NULL, req, argc, argv, argvlen) != REDIS_OK) {
        free(req);
        if (cb) cb(NULL, "redis unavailable", ud);
    }
}

int x4_bus_healthy(const x4_bus *bus) {
    return bus && !bus->closing && bus->sub.state == CONN_READY && bus->cmd.state == CONN_READY;
}

void x4_bus_get_stats(const x4_bus *bus, x4_bus_stats *out) {
    if (bus) *out = bus->stats;
    else memset(out, 0, sizeof *out);
}

void x4_bus_close(x4_bus *bus) {
    if (!bus || bus->closing) return;
    bus->closing = 1;
    uv_timer_stop(&bus->sub.timer);
    uv_timer_stop(&bus->cmd.timer);
    conn_drop(&bus->sub);
    conn_drop(&bus->cmd);
    uv_close((uv_handle_t *)&bus->sub.timer, bus_timer_closed);
    uv_close((uv_handle_t *)&bus->cmd.timer, bus_timer_closed);
}
