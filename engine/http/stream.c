/* http/stream.c — WebSocket event streams: GET /workflows/:id/stream?since=N (one workflow) and
 * GET /stream (any number of the caller's workflows on one socket, chosen by messages).
 *
 * Subscriptions. Each (socket, workflow) pair is a subscription that remembers the last seq it
 * was sent. A live event (local, or from another process over Redis) with seq == last+1 is sent
 * at once; one at or below last is a duplicate and dropped; anything else — a gap, or an event
 * arriving while a read is in flight — asks for a catch-up read from PostgreSQL of everything
 * after last (an event arriving during a read only re-arms the read if that read did not
 * already cover it). The initial replay is the same catch-up read, and so is the re-read of
 * every subscription after Redis comes back. Since seq is gap-free and committed in order, this
 * yields every event exactly once, in order, whatever the interleaving. Reads are paged (500).
 *
 * The multiplexed socket (GET /stream) takes text messages:
 *   {"subscribe": "<workflowId>", "since": N}   since: optional, default 0
 *   {"unsubscribe": "<workflowId>"}
 * and answers, besides the events themselves (each names its workflowId):
 *   {"type":"subscribed","workflowId":…}        the workflow is the caller's (or the caller is
 *                                               an admin); its events after `since` follow
 *   {"type":"unsubscribed","workflowId":…}
 *   {"type":"error","workflowId":…?,"error":…}  not found, a malformed message, a duplicate
 *                                               subscription, more than X4_STREAM_MAX_SUBS
 * The ownership check and the first catch-up read are one query; no event of a workflow is sent
 * before that check has passed. A subscription ends with unsubscribe or the socket.
 *
 * Subscriptions live in a chained hash table keyed by the workflow id's 64-bit hash (kept in the
 * subscription, so a lookup compares strings only on a hash match); it starts at 4096 buckets
 * and doubles whenever subscriptions outnumber buckets, so a live event costs one short chain
 * walk at any scale (20,000 streams in bench/wsscale). Each socket has its own bounded send
 * queue in the server (http/server.h); a client too slow to drain it is disconnected and may
 * resume with ?since= (or "since"). */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/util.h"
#include "http/api.h"
#include "http/api_internal.h"
#include "store/pg.h"

#define BUCKETS_MIN 4096 /* a power of two */
#define PAGE 500
#define X4_STREAM_MAX_SUBS 1024
#define X4_STREAM_MAX_MSG 4096
/* The ownership check and the first catch-up read in one query: no row = not the caller's (or
 * absent); one row with a NULL seq = the caller's, nothing after since. $1 workflow, $2 since,
 * $3 user, $4 admin. */
#define X4_STREAM_FIRST_READ                                                                          \
    "SELECT e.seq, e.type, e.data::text AS data, x4_iso(e.ts) AS ts FROM workflows w "                \
    "LEFT JOIN LATERAL (SELECT v.seq, v.type, v.data, v.ts FROM events v WHERE v.workflow_id = w.id " \
    "AND v.seq > $2::bigint ORDER BY v.seq LIMIT 500) e ON true "                                     \
    "WHERE w.id = $1 AND (w.user_id = $3 OR $4::boolean) ORDER BY e.seq"

typedef struct conn conn;

typedef struct sub {
    x4_engine *e;
    conn *c;
    char wf[96];
    uint64_t hash;    /* x4_hash_str(wf) */
    long long last;
    long long want;   /* highest seq known to exist (a live event seen during a read) */
    int fetching;
    int again;        /* re-read after the current read whatever it returns (Redis came back) */
    int checked;      /* ownership verified (per-workflow streams: by the route, before) */
    int closed;
    int refs;
    struct sub *next;      /* hash chain */
    struct sub *conn_next; /* the socket's subscriptions */
} sub;

struct conn {
    x4_engine *e;
    x4_ws *ws;
    x4_principal who;
    int mux;
    int closed;
    int refs;
    size_t nsubs;
    sub *subs;
};

struct x4_streams {
    sub **buckets;
    size_t nbuckets; /* a power of two */
    size_t nsubs;
    size_t count;    /* sockets */
};

static size_t bucket_of(const struct x4_streams *st, uint64_t hash) {
    return (size_t)(hash ^ (hash >> 29)) & (st->nbuckets - 1);
}

/* Doubles the table; on allocation failure the old one stays (longer chains, still correct). */
static void table_grow(struct x4_streams *st) {
    size_t n = st->nbuckets * 2;
    sub **nb = calloc(n, sizeof *nb);
    if (!nb) return;
    sub **old = st->buckets;
    size_t on = st->nbuckets;
    st->buckets = nb;
    st->nbuckets = n;
    for (size_t b = 0; b < on; b++) {
        sub *s = old[b];
        while (s) {
            sub *next = s->next;
            size_t i = bucket_of(st, s->hash);
            s->next = nb[i];
            nb[i] = s;
            s = next;
        }
    }
    free(old);
}

static void conn_unref(conn *c) {
    if (--c->refs == 0) free(c);
}

static void sub_unref(sub *s) {
    if (--s->refs == 0) {
        conn_unref(s->c);
        free(s);
    }
}

static void conn_send(conn *c, const char *data, size_t len) {
    if (c->closed) return;
    if (x4_ws_send_text(c->ws, data, len) < 0) {
        c->closed = 1; /* the server closes it; on_close unlinks its subscriptions */
        c->e->stats.ws_dropped_slow++;
    }
}

/* {"type":<type>,"workflowId":<wf>?,"error":<err>?} on a multiplexed socket. */
static void conn_notice(conn *c, const char *type, const char *wf, const char *err) {
    json_t *j = json_pack("{s:s, s:s*, s:s*}", "type", type, "workflowId", wf, "error", err);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (t) conn_send(c, t, strlen(t));
    free(t);
    json_decref(j);
}

static void sub_unlink(sub *s) {
    struct x4_streams *st = s->e->streams;
    if (s->closed) return;
    s->closed = 1;
    if (st) {
        sub **pp = &st->buckets[bucket_of(st, s->hash)];
        while (*pp && *pp != s) pp = &(*pp)->next;
        if (*pp) {
            *pp = s->next;
            st->nsubs--;
        }
    }
    sub **cp = &s->c->subs;
    while (*cp && *cp != s) cp = &(*cp)->conn_next;
    if (*cp) {
        *cp = s->conn_next;
        s->c->nsubs--;
    }
    sub_unref(s);
}

static void fetch(sub *s);
static void deliver_rows(sub *s, PGresult *res);

static void on_fetched(PGresult *res, const char *err, void *ud) {
    sub *s = ud;
    conn *c = s->c;
    s->fetching = 0;
    if (s->closed || c->closed) goto out;
    if (err) {
        x4_warn("stream", "%s: catch-up read failed: %s", s->wf, err);
        if (c->mux) { /* the subscription ends; the client may subscribe again with since */
            conn_notice(c, "error", s->wf, "storage unavailable");
            sub_unlink(s);
        } else {
            x4_ws_close(c->ws, 1011, "storage unavailable");
            c->closed = 1;
        }
        goto out;
    }
    int n = PQntuples(res);
    if (!s->checked) { /* the first read of a multiplexed subscription: owner check + catch-up */
        if (n == 0) {
            conn_notice(c, "error", s->wf, "workflow not found");
            sub_unlink(s);
            goto out;
        }
        s->checked = 1;
        conn_notice(c, "subscribed", s->wf, NULL);
    }
    deliver_rows(s, res);
out:
    sub_unref(s);
}

/* Sends the event rows of a catch-up read (seq > last, in order) and reads again if the page was
 * full or more is known to exist. */
static void deliver_rows(sub *s, PGresult *res) {
    conn *c = s->c;
    int n = PQntuples(res), got = 0;
    x4_buf b = {0};
    for (int i = 0; i < n && !c->closed; i++) {
        if (!x4_pg_val(res, i, "seq")) continue; /* the owner check's row when nothing is new */
        got++;
        long long seq = x4_pg_ll(res, i, "seq", 0);
        if (seq != s->last + 1) continue;
        x4_buf_reset(&b);
        if (x4_events_envelope(&b, s->wf, x4_pg_val(res, i, "seq"), x4_pg_val(res, i, "type"),
                               x4_pg_val(res, i, "data"), x4_pg_val(res, i, "ts")) != 0)
            break;
        conn_send(c, b.data, b.len);
        s->last = seq;
    }
    x4_buf_free(&b);
    if (!c->closed && (got == PAGE || s->again || s->want > s->last)) fetch(s);
}

static void fetch(sub *s) {
    if (s->fetching) {
        s->again = 1;
        return;
    }
    s->fetching = 1;
    s->again = 0;
    s->refs++;
    char since[24];
    snprintf(since, sizeof since, "%lld", s->last);
    if (!s->checked) {
        const char *params[] = {s->wf, since, s->c->who.user, s->c->who.admin ? "t" : "f"};
        x4_pg_query(s->e->pg, X4_STREAM_FIRST_READ, 4, params, on_fetched, s);
        return;
    }
    const char *params[] = {s->wf, since};
    x4_pg_query(s->e->pg,
                "SELECT seq, type, data::text AS data, x4_iso(ts) AS ts FROM events "
                "WHERE workflow_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT 500",
                2, params, on_fetched, s);
}

static sub *sub_add(conn *c, const char *wf, long long since, int checked, int have_first) {
    sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->e = c->e;
    s->c = c;
    c->refs++;
    s->last = since;
    s->checked = checked;
    s->refs = 1; /* the links (hash chain + socket list) */
    snprintf(s->wf, sizeof s->wf, "%s", wf);
    s->hash = x4_hash_str(s->wf);
    struct x4_streams *st = c->e->streams;
    if (st->nsubs >= st->nbuckets) table_grow(st);
    size_t b = bucket_of(st, s->hash);
    s->next = st->buckets[b];
    st->buckets[b] = s;
    st->nsubs++;
    s->conn_next = c->subs;
    c->subs = s;
    c->nsubs++;
    if (!have_first) fetch(s);
    return s;
}

static sub *conn_find(conn *c, const char *wf) {
    for (sub *s = c->subs; s; s = s->conn_next)
        if (strcmp(s->wf, wf) == 0) return s;
    return NULL;
}

static void on_msg(x4_ws *ws, const char *data, size_t len, void *ud) {
    (void)ws;
    conn *c = ud;
    if (!c->mux || c->closed) return; /* the per-workflow stream is one-way; messages are ignored */
    json_error_t jerr;
    json_t *m = len <= X4_STREAM_MAX_MSG ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    const char *k;
    json_t *v;
    const char *bad = NULL;
    if (!json_is_object(m)) bad = len > X4_STREAM_MAX_MSG ? "message too long" : "expected a JSON object";
    else
        json_object_foreach(m, k, v) if (strcmp(k, "subscribe") && strcmp(k, "unsubscribe") && strcmp(k, "since")) bad =
            "unknown field";
    json_t *subj = json_object_get(m, "subscribe"), *unsj = json_object_get(m, "unsubscribe"),
           *sincej = json_object_get(m, "since");
    if (!bad && !subj == !unsj) bad = "expected exactly one of subscribe, unsubscribe";
    const char *wf = json_string_value(subj ? subj : unsj);
    if (!bad && (!wf || !x4_api_valid_id(wf, strlen(wf)))) bad = "expected a workflow id";
    long long since = 0;
    if (!bad && sincej) {
        if (unsj) bad = "since goes with subscribe";
        else if (!json_is_integer(sincej) || json_integer_value(sincej) < 0)
            bad = "since: expected a non-negative integer event seq";
        else since = json_integer_value(sincej);
    }
    if (bad) {
        conn_notice(c, "error", wf && x4_api_valid_id(wf, strlen(wf)) ? wf : NULL, bad);
    } else if (subj) {
        if (conn_find(c, wf)) conn_notice(c, "error", wf, "already subscribed");
        else if (c->nsubs >= X4_STREAM_MAX_SUBS) conn_notice(c, "error", wf, "too many subscriptions on this socket");
        else if (!sub_add(c, wf, since, 0, 0)) conn_notice(c, "error", wf, "out of memory");
    } else {
        sub *s = conn_find(c, wf);
        if (!s) conn_notice(c, "error", wf, "not subscribed");
        else {
            sub_unlink(s);
            conn_notice(c, "unsubscribed", wf, NULL);
        }
    }
    json_decref(m);
}

static void on_close(x4_ws *ws, void *ud) {
    (void)ws;
    conn *c = ud;
    c->closed = 1;
    while (c->subs) sub_unlink(c->subs);
    if (c->e->streams) c->e->streams->count--;
    conn_unref(c);
}

static conn *conn_new(x4_engine *e, const x4_principal *who, int mux) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->e = e;
    c->who = *who;
    c->mux = mux;
    c->refs = 1; /* the socket (to be) */
    return c;
}

static int conn_upgrade(conn *c, x4_req *req) {
    c->ws = x4_req_upgrade(req, on_msg, on_close, c);
    if (!c->ws) return -1;
    c->e->streams->count++;
    return 0;
}

/* Drops a connection that never became a socket (on_close will not run for it). */
static void conn_abandon(conn *c) {
    c->closed = 1;
    while (c->subs) sub_unlink(c->subs);
    conn_unref(c);
}

/* The per-workflow stream: the subscription is registered before the route's ownership check +
 * first read is sent, marked as reading, so an event published while that read is in flight
 * re-arms a read (s->want) instead of being lost between the read and the upgrade. */
void *x4_streams_pending(x4_engine *e, const x4_principal *who, const char *wf, long long since) {
    conn *c = conn_new(e, who, 0);
    if (!c) return NULL;
    sub *s = sub_add(c, wf, since, 1, 1);
    if (!s) {
        conn_abandon(c);
        return NULL;
    }
    s->fetching = 1;
    s->refs++; /* the route's read */
    return s;
}

void x4_streams_cancel(void *pending) {
    sub *s = pending;
    s->fetching = 0;
    conn_abandon(s->c);
    sub_unref(s);
}

void x4_streams_attach(x4_req *req, void *pending, void *first) {
    sub *s = pending;
    conn *c = s->c;
    s->fetching = 0;
    if (c->closed || conn_upgrade(c, req) < 0) {
        conn_abandon(c);
    } else if (s->closed) {
        x4_ws_close(c->ws, 1011, "server closing");
    } else {
        deliver_rows(s, first);
    }
    sub_unref(s);
}

void x4_streams_attach_mux(x4_engine *e, x4_req *req, const x4_principal *who) {
    conn *c = conn_new(e, who, 1);
    if (!c) {
        x4_req_respond(req, 500, "application/json", "{\"success\":false,\"error\":\"out of memory\"}", 42);
        return;
    }
    if (conn_upgrade(c, req) < 0) conn_abandon(c);
}

const char *x4_streams_first_read(void) { return X4_STREAM_FIRST_READ; }


static void on_event(const x4_event *ev, void *ud) {
    x4_engine *e = ud;
    struct x4_streams *st = e->streams;
    if (!st || st->nsubs == 0) return;
    uint64_t h = x4_hash_str(ev->workflow_id);
    for (sub *s = st->buckets[bucket_of(st, h)]; s; s = s->next) {
        if (s->hash != h || s->closed || s->c->closed || ev->seq <= s->last || strcmp(s->wf, ev->workflow_id) != 0)
            continue;
        if (ev->seq == s->last + 1 && !s->fetching) {
            conn_send(s->c, ev->envelope, ev->envelope_len);
            s->last = ev->seq;
        } else {
            if (ev->seq > s->want) s->want = ev->seq;
            if (!s->fetching) fetch(s);
        }
    }
}

static void on_bus_reconnect(void *ud) {
    x4_engine *e = ud;
    if (!e->streams) return;
    for (size_t b = 0; b < e->streams->nbuckets; b++)
        for (sub *s = e->streams->buckets[b]; s; s = s->next)
            if (!s->closed && !s->c->closed) fetch(s);
}

int x4_streams_open(x4_engine *e) {
    e->streams = calloc(1, sizeof *e->streams);
    if (!e->streams) return -1;
    e->streams->nbuckets = BUCKETS_MIN;
    e->streams->buckets = calloc(BUCKETS_MIN, sizeof *e->streams->buckets);
    if (!e->streams->buckets) {
        free(e->streams);
        e->streams = NULL;
        return -1;
    }
    x4_events_listen(e, on_event, e);
    if (e->bus) x4_bus_on_reconnect(e->bus, on_bus_reconnect, e);
    return 0;
}

void x4_streams_close(x4_engine *e) {
    /* The server closes the sockets (x4_http_close); their on_close unlinks and frees. */
    if (!e->streams) return;
    for (size_t b = 0; b < e->streams->nbuckets; b++)
        for (sub *s = e->streams->buckets[b]; s; s = s->next) s->c->closed = 1;
}

void x4_streams_free(x4_engine *e);
void x4_streams_free(x4_engine *e) {
    if (e->streams) free(e->streams->buckets);
    free(e->streams);
    e->streams = NULL;
}

size_t x4_streams_count(const x4_engine *e) { return e->streams ? e->streams->count : 0; }
