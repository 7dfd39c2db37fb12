/* bus/events.c — the event pipeline after PostgreSQL: stored rows become envelopes, go out on
 * the one Redis channel for the other processes, and reach this process's listeners (WebSocket
 * streams, the scheduler, `x402r run`) directly, without the Redis round trip.
 *
 * Bus message format: "<owner>\n<envelope JSON>". A process ignores its own messages (it has
 * already delivered them locally). Redis is only fan-out: when it is down, remote subscribers
 * catch up from PostgreSQL after the reconnect (http/stream.c), so nothing is lost. */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/engine.h"
#include "core/log.h"
#include "core/util.h"

static void deliver(x4_engine *e, const x4_event *ev) {
    for (int i = 0; i < e->nlisteners; i++) e->listeners[i].fn(ev, e->listeners[i].ud);
}

void x4_events_listen(x4_engine *e, x4_event_listener fn, void *ud) {
    if (e->nlisteners < (int)(sizeof e->listeners / sizeof e->listeners[0])) {
        e->listeners[e->nlisteners].fn = fn;
        e->listeners[e->nlisteners].ud = ud;
        e->nlisteners++;
    }
}

static int append_json_string(x4_buf *b, const char *s) {
    json_t *j = json_string(s);
    if (!j) return -1;
    char *d = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    if (!d) return -1;
    int rc = x4_buf_puts(b, d);
    free(d);
    return rc;
}

int x4_events_envelope(void *buf, const char *wf, const char *seq, const char *type, const char *data,
                       const char *ts) {
    x4_buf *b = buf;
    return x4_buf_puts(b, "{\"workflowId\":") | append_json_string(b, wf) | x4_buf_printf(b, ",\"seq\":%s,\"type\":", seq) |
           append_json_string(b, type) | x4_buf_puts(b, ",\"data\":") | x4_buf_puts(b, data) |
           x4_buf_puts(b, ",\"timestamp\":") | append_json_string(b, ts) | x4_buf_puts(b, "}");
}

void x4_events_publish_rows(x4_engine *e, void *pgresult) {
    x4_events_publish_range(e, pgresult, 0, PQntuples(pgresult));
}

void x4_events_publish_range(x4_engine *e, void *pgresult, int first, int count) {
    PGresult *r = pgresult;
    int n = first + count;
    if (first < 0 || count < 0 || n > PQntuples(r)) return;
    int cwf = PQfnumber(r, "workflow_id"), cseq = PQfnumber(r, "seq"), ctype = PQfnumber(r, "type"),
        cdata = PQfnumber(r, "data"), cts = PQfnumber(r, "ts");
    if (cwf < 0 || cseq < 0 || ctype < 0 || cdata < 0 || cts < 0) {
        if (n) x4_error("events", "event rows lack a column; nothing published");
        return;
    }
    x4_buf b = {0};
    for (int i = first; i < n; i++) {
        const char *wf = PQgetvalue(r, i, cwf), *type = PQgetvalue(r, i, ctype);
        x4_buf_reset(&b);
        size_t hdr;
        int rc = x4_buf_puts(&b, e->owner) | x4_buf_puts(&b, "\n");
        hdr = b.len;
        rc |= x4_events_envelope(&b, wf, PQgetvalue(r, i, cseq), type, PQgetvalue(r, i, cdata), PQgetvalue(r, i, cts));
        if (rc) {
            x4_error("events", "out of memory building an event");
            continue;
        }
        if (e->bus) x4_bus_publish(e->bus, X4_EVENTS_CHANNEL, b.data, b.len);
        e->stats.events_published++;
        x4_event ev = {wf, atoll(PQgetvalue(r, i, cseq)), type, b.data + hdr, b.len - hdr, 0};
        deliver(e, &ev);
    }
    x4_buf_free(&b);
}

void x4_events_on_bus(const char *channel, const char *payload, size_t len, void *ud) {
    x4_engine *e = ud;
    const char *nl = memchr(payload, '\n', len);
    if (!nl) return;
    size_t olen = (size_t)(nl - payload);
    if (olen == strlen(e->owner) && memcmp(payload, e->owner, olen) == 0) return; /* our own */
    const char *env = nl + 1;
    size_t envlen = len - olen - 1;
    json_error_t jerr;
    json_t *j = json_loadb(env, envlen, 0, &jerr);
    if (!j) return;
    const char *wf = json_string_value(json_object_get(j, "workflowId"));
    const char *type = json_string_value(json_object_get(j, "type"));
    json_t *seq = json_object_get(j, "seq");
    if (wf && type && json_is_integer(seq)) {
        x4_event ev = {wf, (long long)json_integer_value(seq), type, env, envlen, 1};
        e->stats.events_remote++;
        deliver(e, &ev);
    }
    json_decref(j);
}
