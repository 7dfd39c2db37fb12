/* http/stream.c — WebSocket event streams: GET /workflows/:id/stream?since=N.
 *
 * Each subscriber remembers the last seq it was sent. A live event (local, or from another
 * process over Redis) with seq == last+1 is sent at once; one at or below last is a duplicate
 * and dropped; anything else — a gap, or an event arriving while a read is in flight — starts
 * (or re-arms) a catch-up read from PostgreSQL for everything after last. The initial replay
 * is the same catch-up read, and so is the re-read of every stream after Redis comes back.
 * Since seq is gap-free and committed in order, this yields every event exactly once, in
 * order, whatever the interleaving. Reads are paged (500 events).
 *
 * Subscribers live in a chained hash table by workflow id, keyed by the id's 64-bit hash (kept
 * in the subscriber, so a lookup compares strings only on a hash match); it starts at 4096
 * buckets and doubles whenever the streams outnumber the buckets, so a live event costs one short
 * chain walk at any scale (20,000 streams in bench/wsscale). Each has its own
 * bounded send queue in the server (http/server.h); a client too slow to drain it is
 * disconnected and may resume with ?since=. */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/util.h"
#include "http/api.h"
#include "store/pg.h"

#define BUCKETS_MIN 4096 /* a power of two */
#define PAGE 500

typedef struct sub {
    x4_engine *e;
    x4_ws *ws;
    char wf[96];
    uint64_t hash; /* x4_hash_str(wf) */
    long long last;
    int fetching;
    int again;
    int closed;
    int refs;
    struct sub *next;
} sub;

struct x4_streams {
    sub **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
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

static void sub_unref(sub *s) {
    if (--s->refs == 0) free(s);
}

static void sub_send(sub *s, const char *data, size_t len) {
    if (s->closed) return;
    if (x4_ws_send_text(s->ws, data, len) < 0) {
        s->closed = 1; /* the server closes it; on_close unlinks it */
        s->e->stats.ws_dropped_slow++;
    }
}

static void fetch(sub *s);

static void on_fetched(PGresult *res, const char *err, void *ud) {
    sub *s = ud;
    s->fetching = 0;
    if (s->closed) goto out;
    if (err) {
        x4_warn("stream", "%s: catch-up read failed: %s", s->wf, err);
        x4_ws_close(s->ws, 1011, "storage unavailable");
        s->closed = 1;
        goto out;
    }
    int n = PQntuples(res);
    x4_buf b = {0};
    for (int i = 0; i < n && !s->closed; i++) {
        long long seq = x4_pg_ll(res, i, "seq", 0);
        if (seq != s->last + 1) continue;
        x4_buf_reset(&b);
        if (x4_events_envelope(&b, s->wf, x4_pg_val(res, i, "seq"), x4_pg_val(res, i, "type"),
                               x4_pg_val(res, i, "data"), x4_pg_val(res, i, "ts")) != 0)
            break;
        sub_send(s, b.data, b.len);
        s->last = seq;
    }
    x4_buf_free(&b);
    if (!s->closed && (n == PAGE || s->again)) fetch(s);
out:
    sub_unref(s);
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
    const char *params[] = {s->wf, since};
    x4_pg_query(s->e->pg,
                "SELECT seq, type, data::text AS data, x4_iso(ts) AS ts FROM events "
                "WHERE workflow_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT 500",
                2, params, on_fetched, s);
}

static void on_msg(x4_ws *ws, const char *data, size_t len, void *ud) {
    (void)ws;
    (void)data;
    (void)len;
    (void)ud; /* the stream is one-way; client messages are ignored */
}

static void on_close(x4_ws *ws, void *ud) {
    sub *s = ud;
    struct x4_streams *st = s->e->streams;
    s->closed = 1;
    if (st) {
        sub **pp = &st->buckets[bucket_of(st, s->hash)];
        while (*pp && *pp != s) pp = &(*pp)->next;
        if (*pp) {
            *pp = s->next;
            st->count--;
        }
    }
    sub_unref(s);
}

void x4_streams_attach(x4_engine *e, x4_req *req, const char *wf, long long since) {
    sub *s = calloc(1, sizeof *s);
    if (!s) {
        x4_req_respond(req, 500, "application/json", "{\"success\":false,\"error\":\"out of memory\"}", 42);
        return;
    }
    s->e = e;
    s->last = since;
    s->refs = 1;
    snprintf(s->wf, sizeof s->wf, "%s", wf);
    s->hash = x4_hash_str(s->wf);
    s->ws = x4_req_upgrade(req, on_msg, on_close, s);
    if (!s->ws) {
        free(s);
        return;
    }
    struct x4_streams *st = e->streams;
    if (st->count >= st->nbuckets) table_grow(st);
    size_t b = bucket_of(st, s->hash);
    s->next = st->buckets[b];
    st->buckets[b] = s;
    st->count++;
    fetch(s);
}

static void on_event(const x4_event *ev, void *ud) {
    x4_engine *e = ud;
    struct x4_streams *st = e->streams;
    if (!st || st->count == 0) return;
    uint64_t h = x4_hash_str(ev->workflow_id);
    for (sub *s = st->buckets[bucket_of(st, h)]; s; s = s->next) {
        if (s->hash != h || s->closed || ev->seq <= s->last || strcmp(s->wf, ev->workflow_id) != 0) continue;
        if (ev->seq == s->last + 1 && !s->fetching) {
            sub_send(s, ev->envelope, ev->envelope_len);
            s->last = ev->seq;
        } else {
            fetch(s);
        }
    }
}

static void on_bus_reconnect(void *ud) {
    x4_engine *e = ud;
    if (!e->streams) return;
    for (size_t b = 0; b < e->streams->nbuckets; b++)
        for (sub *s = e->streams->buckets[b]; s; s = s->next)
            if (!s->closed) fetch(s);
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
        for (sub *s = e->streams->buckets[b]; s; s = s->next) s->closed = 1;
}

void x4_streams_free(x4_engine *e);
void x4_streams_free(x4_engine *e) {
    if (e->streams) free(e->streams->buckets);
    free(e->streams);
    e->streams = NULL;
}

size_t x4_streams_count(const x4_engine *e) { return e->streams ? e->streams->count : 0; }
