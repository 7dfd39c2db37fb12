/* store/pg.c — see pg.h.
 *
 * Per connection: a PGconn in non-blocking pipeline mode, a heap-allocated uv_poll on its socket
 * (re-created whenever PQsocket changes; freed in its close callback), a uv_timer used for the
 * connect timeout and the reconnect backoff, and a FIFO of in-flight queries. Every query is sent
 * as PQsendQueryParams + PQpipelineSync, so the result stream per query is:
 *     result (TUPLES_OK / COMMAND_OK / FATAL_ERROR / PIPELINE_ABORTED) ... NULL, PIPELINE_SYNC
 * The head of the FIFO keeps its last non-NULL result; the NULL moves it to "awaiting sync";
 * the PIPELINE_SYNC completes it and its callback runs.
 *
 * Prepared statements: the engine's SQL texts are constants, so each distinct text (up to
 * PG_MAX_STMTS per pool) gets a statement name "x4_N" and is sent with PQsendQueryPrepared,
 * saving PostgreSQL the parse, analysis and planning of every call (the profile in
 * bench/RESULTS.md). The first use on a connection puts its PQsendPrepare (Parse) in front of
 * the execution, inside the same sync; that query's stream is then
 *     Parse result (COMMAND_OK or the error), NULL, query result(s), NULL, PIPELINE_SYNC
 * A failed Parse leaves the statement unprepared on that connection and its error is the query's
 * (the execution after it comes back PIPELINE_ABORTED). Connections start with nothing prepared.
 *
 * Lifetime: the pool is freed when x4_pg_close was called and the last handle closed. Callbacks
 * may submit queries or even call x4_pg_close; every loop over a connection re-checks state after
 * invoking a callback. */
#include "store/pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

#define PG_MAX_INFLIGHT 256     /* per connection */
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define PG_CONNECT_TIMEOUT_MS 10000
#define PG_MIGRATE_LOCK_KEY 7234690204021LL /* fixed advisory-lock key for x4_migrate */
#define PG_MAX_STMTS 256        /* distinct SQL texts prepared per pool; later ones run unnamed */

typedef struct pg_q {
    struct pg_q *next;
    x4_pg_cb cb;
    void *ud;
    PGresult *res;   /* last non-NULL result of this query */
    int awaiting_sync;
    int stmt;        /* prepared statement index, -1 = unnamed */
    int parsing;     /* 1: its Parse is in the same sync and its result/NULL come first */
    int nparams;
    const char *sql;
    const char **params;
    /* sql, the params array and the param strings follow in the same allocation */
} pg_q;

typedef struct {
    pg_q *head, *tail;
    size_t n;
} pg_fifo;

enum { C_DOWN = 0, C_CONNECTING, C_UP };

typedef struct pg_conn {
    struct x4_pg *pg;
    int idx;
    int state;
    PGconn *c;
    uv_poll_t *poll; /* NULL when none */
    int poll_fd;
    int poll_events;
    int want_write;      /* PQflush returned 1 */
    uv_timer_t timer;    /* connect timeout / reconnect backoff */
    int backoff_ms;
    int ever_up;
    pg_fifo inflight;
    unsigned char prepared[PG_MAX_STMTS / 8]; /* bit per pool statement: Parse sent here */
} pg_conn;

typedef struct {
    char *sql;
    uint64_t hash;
} pg_stmt;

struct x4_pg {
    uv_loop_t *loop;
    char *conninfo;
    int n;
    pg_conn *conns;
    pg_fifo queue;
    int closing;
    int open_handles;
    pg_stmt stmts[PG_MAX_STMTS];
    int nstmts;
};

/* ---------------------------------------------------------------- helpers */

static void fifo_push(pg_fifo *f, pg_q *q) {
    q->next = NULL;
    if (f->tail) f->tail->next = q;
    else f->head = q;
    f->tail = q;
    f->n++;
}
static void fifo_push_front(pg_fifo *f, pg_q *q) {
    q->next = f->head;
    f->head = q;
    if (!f->tail) f->tail = q;
    f->n++;
}
static pg_q *fifo_pop(pg_fifo *f) {
    pg_q *q = f->head;
    if (!q) return NULL;
    f->head = q->next;
    if (!f->head) f->tail = NULL;
    f->n--;
    q->next = NULL;
    return q;
}
static pg_fifo fifo_take(pg_fifo *f) {
    pg_fifo out = *f;
    f->head = f->tail = NULL;
    f->n = 0;
    return out;
}

static void q_free(pg_q *q) {
    if (q->res) PQclear(q->res);
    free(q);
}

/* Invokes the callback once and frees the query. */
static void q_finish(pg_q *q, PGresult *res, const char *err) {
    if (q->cb) q->cb(res, err, q->ud);
    q_free(q);
}

static void fail_fifo(pg_fifo f, const char *err) {
    pg_q *q;
    while ((q = fifo_pop(&f)) != NULL) q_finish(q, NULL, err);
}

/* Copies msg to out with trailing whitespace removed and every secret replaced by "***". */
static void add_secret(char secrets[4][256], int *ns, const char *s, size_t n) {
    if (n == 0 || n >= 256 || *ns >= 4) return;
    memcpy(secrets[*ns], s, n);
    secrets[*ns][n] = 0;
    (*ns)++;
}

static void redact(const char *conninfo, const char *msg, char *out, size_t outlen) {
    char secrets[4][256];
    int ns = 0;
    if (conninfo) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (perr) PQfreemem(perr);
        if (opts) {
            for (PQconninfoOption *o = opts; o->keyword; o++)
                if (o->val && strcmp(o->keyword, "password") == 0) add_secret(secrets, &ns, o->val, strlen(o->val));
            PQconninfoFree(opts);
        }
        /* URI user:password@ even when the URI does not parse */
        const char *p = strstr(conninfo, "://");
        if (p) {
            p += 3;
            const char *at = strchr(p, '@');
            const char *slash = strchr(p, '/');
            if (at && (!slash || at < slash)) {
                const char *colon = memchr(p, ':', (size_t)(at - p));
                if (colon) add_secret(secrets, &ns, colon + 1, (size_t)(at - colon - 1));
            }
        }
        /* key=value form: password=... */
        p = strstr(conninfo, "password=");
        if (p) {
            p += 9;
            size_t n = 0;
            if (*p == '\'') {
                p++;
                while (p[n] && p[n] != '\'') n++;
            } else {
                while (p[n] && !isspace((unsigned char)p[n]) && p[n] != '&') n++;
            }
            add_secret(secrets, &ns, p, n);
        }
    }
    size_t o = 0;
    if (outlen == 0) return;
    for (const char *m = msg ? msg : ""; *m && o + 1 < outlen;) {
        int hit = 0;
        for (int i = 0; i < ns; i++) {
            size_t sl = strlen(secrets[i]);
            if (strncmp(m, secrets[i], sl) == 0) {
                for (const char *r = "***"; *r && o + 1 < outlen; r++) out[o++] = *r;
                m += sl;
                hit = 1;
                break;
            }
        }
        if (hit) continue;
        if (*m == '\n' || *m == '\r' || *m == '\t') {
            /* libpq messages span lines: keep log lines and error strings on one line */
            while (*m == '\n' || *m == '\r' || *m == '\t' || *m == ' ') m++;
            if (o > 0 && *m) out[o++] = ' ';
            continue;
        }
        out[o++] = *m++;
    }
    while (o > 0 && isspace((unsigned char)out[o - 1])) o--;
    out[o] = 0;
}

static void result_error(PGresult *r, char *out, size_t outlen) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!prim) prim = PQresultErrorMessage(r);
    if (!prim || !*prim) prim = PQresStatus(PQresultStatus(r));
    snprintf(out, outlen, "%s: %s", state ? state : "XX000", prim);
    size_t l = strlen(out);
    while (l > 0 && isspace((unsigned char)out[l - 1])) out[--l] = 0;
}

static void notice_processor(void *arg, const char *message) {
    (void)arg;
    if (x4_log_enabled(X4_LOG_DEBUG)) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", message);
        size_t l = strlen(buf);
        while (l > 0 && isspace((unsigned char)buf[l - 1])) buf[--l] = 0;
        x4_debug("pg", "notice: %s", buf);
    }
}

/* ---------------------------------------------------------------- handles */

static void maybe_free_pool(x4_pg *pg) {
    if (pg->closing && pg->open_handles == 0) {
        for (int i = 0; i < pg->nstmts; i++) free(pg->stmts[i].sql);
        free(pg->conns);
        free(pg->conninfo);
        free(pg);
    }
}

static void on_handle_closed(uv_handle_t *h) {
    x4_pg *pg = h->data;
    if (h->type == UV_POLL) free(h);
    pg->open_handles--;
    maybe_free_pool(pg);
}

static void poll_close(pg_conn *k) {
    if (!k->poll) return;
    k->poll->data = k->pg;
    uv_close((uv_handle_t *)k->poll, on_handle_closed);
    k->poll = NULL;
    k->poll_fd = -1;
    k->poll_events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Makes sure a poll handle exists for the connection's current socket and watches `events`. */
static int poll_watch(pg_conn *k, int events) {
    int fd = k->c ? PQsocket(k->c) : -1;
    if (fd < 0) return -1;
    if (k->poll && k->poll_fd != fd) poll_close(k);
    if (!k->poll) {
        uv_poll_t *p = malloc(sizeof *p);
        if (!p) return -1;
        if (uv_poll_init(k->pg->loop, p, fd) != 0) {
            free(p);
            return -1;
        }
        p->data = k;
        k->pg->open_handles++;
        k->poll = p;
        k->poll_fd = fd;
        k->poll_events = 0;
    }
    if (k->poll_events != events) {
        if (uv_poll_start(k->poll, events, on_poll) != 0) return -1;
        k->poll_events = events;
    }
    return 0;
}

/* ---------------------------------------------------------------- connection state */

static void conn_schedule_reconnect(pg_conn *k);
static void pump(x4_pg *pg);

/* Drops the connection: in-flight queries fail with `why`; a reconnect is scheduled. */
static void conn_lost(pg_conn *k, const char *why) {
    x4_pg *pg = k->pg;
    char msg[512];
    if (k->c && (!why || !*why)) why = PQerrorMessage(k->c);
    redact(pg->conninfo, why && *why ? why : "connection lost", msg, sizeof msg);
    int was_up = k->state == C_UP;
    poll_close(k);
    if (k->c) PQfinish(k->c);
    k->c = NULL;
    k->state = C_DOWN;
    k->want_write = 0;
    uv_timer_stop(&k->timer);
    pg_fifo f = fifo_take(&k->inflight);
    if (was_up) x4_warn("pg", "connection %d lost: %s", k->idx, msg);
    conn_schedule_reconnect(k);

    char err[600];
    snprintf(err, sizeof err, "08006: connection lost: %s", msg);
    pg_q *q;
    while ((q = fifo_pop(&f)) != NULL) {
        if (q->res && (PQresultStatus(q->res) == PGRES_FATAL_ERROR)) {
            char e2[600];
            result_error(q->res, e2, sizeof e2);
            q_finish(q, NULL, e2);
        } else {
            q_finish(q, NULL, err);
        }
        if (pg->closing) { fail_fifo(f, "57P01: shutting down"); return; }
    }
}

static void conn_flush(pg_conn *k) {
    int r = PQflush(k->c);
    if (r < 0) { conn_lost(k, NULL); return; }
    k->want_write = r == 1;
    if (poll_watch(k, UV_READABLE | (k->want_write ? UV_WRITABLE : 0)) != 0) conn_lost(k, "cannot watch the socket");
}

static void conn_up(pg_conn *k) {
    uv_timer_stop(&k->timer);
    PQsetNoticeProcessor(k->c, notice_processor, NULL);
    if (PQsetnonblocking(k->c, 1) != 0 || PQenterPipelineMode(k->c) != 1) {
        conn_lost(k, NULL);
        return;
    }
    memset(k->prepared, 0, sizeof k->prepared); /* a new session has no statements */
    if (k->ever_up) x4_info("pg", "connection %d re-established", k->idx);
    k->ever_up = 1;
    k->state = C_UP;
    k->backoff_ms = PG_BACKOFF_MIN_MS;
    if (poll_watch(k, UV_READABLE) != 0) { conn_lost(k, "cannot watch the socket"); return; }
    pump(k->pg);
}

static void connect_failed(pg_conn *k, const char *why) {
    char msg[512];
    redact(k->pg->conninfo, why, msg, sizeof msg);
    /* one connection speaks for the pool, so an outage logs one line per attempt, not n */
    if (k->idx == 0) x4_warn("pg", "connect failed (retrying in %d ms): %s", k->backoff_ms, msg);
    else x4_debug("pg", "connection %d: connect failed: %s", k->idx, msg);
    poll_close(k);
    if (k->c) PQfinish(k->c);
    k->c = NULL;
    k->state = C_DOWN;
    conn_schedule_reconnect(k);
}

static void on_connect_timeout(uv_timer_t *t) {
    pg_conn *k = t->data;
    if (k->state == C_CONNECTING) connect_failed(k, "connect timeout");
}

static void connect_step(pg_conn *k) {
    PostgresPollingStatusType st = PQconnectPoll(k->c);
    int ev;
    switch (st) {
    case PGRES_POLLING_OK: conn_up(k); return;
    case PGRES_POLLING_FAILED: connect_failed(k, PQerrorMessage(k->c)); return;
    case PGRES_POLLING_READING: ev = UV_READABLE; break;
    case PGRES_POLLING_WRITING: ev = UV_WRITABLE; break;
    default: ev = UV_READABLE | UV_WRITABLE; break;
    }
    if (poll_watch(k, ev) != 0) connect_failed(k, "cannot watch the socket");
}

static void on_backoff(uv_timer_t *t) {
    pg_conn *k = t->data;
    if (k->pg->closing || k->state != C_DOWN) return;
    k->c = PQconnectStart(k->pg->conninfo);
    if (!k->c) { conn_schedule_reconnect(k); return; }
    PQsetNoticeProcessor(k->c, notice_processor, NULL);
    if (PQstatus(k->c) == CONNECTION_BAD) { connect_failed(k, PQerrorMessage(k->c)); return; }
    k->state = C_CONNECTING;
    uv_timer_start(&k->timer, on_connect_timeout, PG_CONNECT_TIMEOUT_MS, 0);
    /* per the libpq docs, behave as if PQconnectPoll had returned PGRES_POLLING_WRITING */
    if (poll_watch(k, UV_WRITABLE) != 0) connect_failed(k, "cannot watch the socket");
}

static void conn_schedule_reconnect(pg_conn *k) {
    if (k->pg->closing) return;
    int delay = k->backoff_ms;
    k->backoff_ms = k->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : k->backoff_ms * 2;
    uv_timer_start(&k->timer, on_backoff, (uint64_t)delay, 0);
}

/* ---------------------------------------------------------------- sending */

/* Sends q on k (adds it to the in-flight FIFO). Returns 0, or -1 when the connection broke (q
 * was not consumed and must be re-queued by the caller). Queries libpq refuses (while the
 * connection is fine) are failed at once. */
static int prepared_on(const pg_conn *k, int i) { return (k->prepared[i / 8] >> (i % 8)) & 1; }
static void mark_prepared(pg_conn *k, int i, int on) {
    if (on) k->prepared[i / 8] |= (unsigned char)(1u << (i % 8));
    else k->prepared[i / 8] &= (unsigned char)~(1u << (i % 8));
}

/* A query libpq refused to send: -1 when the connection is gone (the caller retries elsewhere),
 * else 0 with the query finished with libpq's message (08P01, the conninfo redacted). */
static int send_refused(pg_conn *k, pg_q *q) {
    if (PQstatus(k->c) == CONNECTION_BAD) return -1;
    char msg[512], err[600];
    redact(k->pg->conninfo, PQerrorMessage(k->c), msg, sizeof msg);
    snprintf(err, sizeof err, "08P01: %s", msg);
    q_finish(q, NULL, err);
    return 0;
}

static int conn_send(pg_conn *k, pg_q *q) {
    int ok;
    q->parsing = 0;
    if (q->stmt >= 0) {
        char name[16];
        snprintf(name, sizeof name, "x4_%d", q->stmt);
        if (!prepared_on(k, q->stmt)) {
            if (!PQsendPrepare(k->c, name, q->sql, q->nparams, NULL)) return send_refused(k, q);
            mark_prepared(k, q->stmt, 1);
            q->parsing = 1;
        }
        ok = PQsendQueryPrepared(k->c, name, q->nparams, q->params, NULL, NULL, 0);
        if (!ok && q->parsing) { /* the Parse is queued: the stream would be misaligned */
            fifo_push(&k->inflight, q);
            return 1;
        }
    } else {
        ok = PQsendQueryParams(k->c, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    }
    if (!ok) return send_refused(k, q);
    fifo_push(&k->inflight, q);
    if (!PQpipelineSync(k->c)) return 1; /* in flight without a sync: the connection is unusable */
    return 0;
}

static pg_conn *pick_conn(x4_pg *pg) {
    pg_conn *best = NULL;
    for (int i = 0; i < pg->n; i++) {
        pg_conn *k = &pg->conns[i];
        if (k->state != C_UP || k->inflight.n >= PG_MAX_INFLIGHT) continue;
        if (!best || k->inflight.n < best->inflight.n) best = k;
    }
    return best;
}

/* Moves queued queries onto connections with capacity, then flushes those connections. */
static void pump(x4_pg *pg) {
    if (pg->closing || !pg->queue.head) return;
    unsigned char dirty[64] = {0};
    int many = pg->n > 64;
    while (pg->queue.head && !pg->closing) {
        pg_conn *k = pick_conn(pg);
        if (!k) break;
        pg_q *q = fifo_pop(&pg->queue);
        int r = conn_send(k, q);
        if (r < 0) {
            fifo_push_front(&pg->queue, q);
            conn_lost(k, NULL);
            continue;
        }
        if (r > 0) { conn_lost(k, NULL); continue; }
        if (!many) dirty[k->idx] = 1;
        else conn_flush(k);
    }
    if (pg->closing) return;
    for (int i = 0; i < pg->n && i < 64; i++)
        if (dirty[i] && pg->conns[i].state == C_UP) conn_flush(&pg->conns[i]);
}

/* ---------------------------------------------------------------- receiving */

/* Completes the head query of k. Returns 0 to continue, -1 when the caller must stop touching k. */
static int complete_head(pg_conn *k) {
    x4_pg *pg = k->pg;
    pg_q *q = fifo_pop(&k->inflight);
    if (!q) return 0;
    PGresult *r = q->res;
    q->res = NULL;
    if (!r) {
        q_finish(q, NULL, "XX000: no result");
    } else {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
            q_finish(q, r, NULL);
        } else if (st == PGRES_PIPELINE_ABORTED) {
            q_finish(q, NULL, "XX000: pipeline aborted");
        } else if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
            char err[600];
            result_error(r, err, sizeof err);
            q_finish(q, NULL, err);
        } else {
            char err[128];
            snprintf(err, sizeof err, "XX000: unexpected result %s", PQresStatus(st));
            q_finish(q, NULL, err);
        }
        PQclear(r);
    }
    if (pg->closing || k->state != C_UP) return -1;
    return 0;
}

/* Hands out every complete result. Returns the number of queries completed, or -1 when the
 * caller must stop touching k (closed, or the connection went down). */
static int conn_drain(pg_conn *k) {
    x4_pg *pg = k->pg;
    int completed = 0;
    while (k->state == C_UP && !PQisBusy(k->c)) {
        PGresult *r = PQgetResult(k->c);
        pg_q *h = k->inflight.head;
        if (!r) {
            if (h && h->parsing == 1) { h->parsing = 2; continue; } /* end of its Parse */
            if (h && !h->awaiting_sync) { h->awaiting_sync = 1; continue; }
            break; /* nothing more for now */
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (h && h->awaiting_sync) {
                completed++;
                if (complete_head(k) != 0) return -1;
            } else if (h) {
                /* a sync without the NULL separator: treat it as the end of the query */
                completed++;
                if (complete_head(k) != 0) return -1;
            }
            continue;
        }
        if (!h) { PQclear(r); continue; } /* unsolicited: ignore */
        if (h->parsing == 1) { /* the Parse's own result */
            if (st == PGRES_COMMAND_OK) {
                PQclear(r);
            } else {
                mark_prepared(k, h->stmt, 0);
                if (h->res) PQclear(h->res);
                h->res = r; /* the query's error: its execution comes back PIPELINE_ABORTED */
            }
            continue;
        }
        if (st == PGRES_PIPELINE_ABORTED && h->res && PQresultStatus(h->res) == PGRES_FATAL_ERROR) {
            PQclear(r); /* keep the Parse's error, the reason */
            continue;
        }
        if (h->stmt >= 0 && st == PGRES_FATAL_ERROR) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (state && strcmp(state, "26000") == 0) mark_prepared(k, h->stmt, 0); /* gone (DEALLOCATE) */
        }
        if (h->res) PQclear(h->res);
        h->res = r;
        if (PQstatus(k->c) == CONNECTION_BAD) break;
    }
    if (pg->closing || k->state != C_UP) return -1;
    return completed;
}

static void conn_read(pg_conn *k) {
    x4_pg *pg = k->pg;
    if (!PQconsumeInput(k->c)) { conn_lost(k, NULL); return; }
    int completed = conn_drain(k);
    if (completed < 0) return;
    if (PQstatus(k->c) == CONNECTION_BAD) { conn_lost(k, NULL); return; }
    if (k->want_write) conn_flush(k);
    if (completed && k->state == C_UP) pump(pg);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    pg_conn *k = h->data;
    if (k->pg->closing || h != k->poll) return;
    if (status < 0) k->poll_events = 0; /* libuv stopped the handle: poll_watch must restart it */
    if (k->state == C_CONNECTING) {
        connect_step(k);
        return;
    }
    if (k->state != C_UP) return;
    if (status < 0) {
        /* libuv reports a socket error (EPOLLERR) as EBADF and stops the poll: read what the
         * server sent last (usually the reason) so libpq's message and results are used */
        if (PQconsumeInput(k->c) && conn_drain(k) < 0) return;
        const char *m = PQerrorMessage(k->c);
        conn_lost(k, m && *m ? m : uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        conn_flush(k);
        if (k->state != C_UP || k->pg->closing) return;
    }
    if (events & UV_READABLE) conn_read(k);
}

/* ---------------------------------------------------------------- public */

int x4_pg_open(x4_pg **out, uv_loop_t *loop, const char *conninfo, int nconn, char *err, size_t errlen) {
    *out = NULL;
    if (nconn < 1) nconn = 1;
    PGconn *first = PQconnectdb(conninfo);
    if (!first || PQstatus(first) != CONNECTION_OK) {
        char msg[512];
        redact(conninfo, first ? PQerrorMessage(first) : "out of memory", msg, sizeof msg);
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", msg);
        if (first) PQfinish(first);
        return -1;
    }
    x4_pg *pg = calloc(1, sizeof *pg);
    pg_conn *conns = calloc((size_t)nconn, sizeof *conns);
    char *ci = strdup(conninfo);
    if (!pg || !conns || !ci) {
        free(pg); free(conns); free(ci);
        PQfinish(first);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pg->loop = loop;
    pg->conninfo = ci;
    pg->n = nconn;
    pg->conns = conns;
    for (int i = 0; i < nconn; i++) {
        pg_conn *k = &conns[i];
        k->pg = pg;
        k->idx = i;
        k->poll_fd = -1;
        k->backoff_ms = PG_BACKOFF_MIN_MS;
        uv_timer_init(loop, &k->timer);
        k->timer.data = k;
        pg->open_handles++;
    }
    conns[0].c = first;
    conns[0].state = C_CONNECTING; /* conn_up takes it from here */
    conn_up(&conns[0]);
    for (int i = 1; i < nconn; i++) {
        conns[i].backoff_ms = PG_BACKOFF_MIN_MS;
        on_backoff(&conns[i].timer); /* starts an asynchronous connect now */
    }
    *out = pg;
    return 0;
}

static size_t param_len(const char *p) { return p ? strlen(p) + 1 : 0; }

/* The pool's statement index for sql, registering it while there is room; -1 = run unnamed. */
static int stmt_of(x4_pg *pg, const char *sql) {
    uint64_t h = x4_hash_str(sql);
    for (int i = 0; i < pg->nstmts; i++)
        if (pg->stmts[i].hash == h && strcmp(pg->stmts[i].sql, sql) == 0) return i;
    if (pg->nstmts >= PG_MAX_STMTS) return -1;
    char *copy = strdup(sql);
    if (!copy) return -1;
    pg->stmts[pg->nstmts] = (pg_stmt){copy, h};
    return pg->nstmts++;
}

void x4_pg_query(x4_pg *pg, const char *sql, int nparams, const char *const *params, x4_pg_cb cb, void *ud) {
    if (nparams < 0) nparams = 0;
    if (!pg || pg->closing) { /* a caller racing shutdown gets the same answer as a closing pool */
        if (cb) cb(NULL, "57P01: shutting down", ud);
        return;
    }
    if (pg->queue.n >= X4_PG_MAX_QUEUED) {
        if (cb) cb(NULL, "53300: too many queued queries", ud);
        return;
    }
    size_t sl = strlen(sql) + 1;
    size_t total = sizeof(pg_q) + sizeof(char *) * (size_t)nparams + sl;
    for (int i = 0; i < nparams; i++) total += param_len(params[i]);
    pg_q *q = calloc(1, total);
    if (!q) {
        if (cb) cb(NULL, "53200: out of memory", ud);
        return;
    }
    char *p = (char *)(q + 1);
    const char **pv = (const char **)p;
    p += sizeof(char *) * (size_t)nparams;
    memcpy(p, sql, sl);
    q->sql = p;
    p += sl;
    for (int i = 0; i < nparams; i++) {
        if (!params[i]) { pv[i] = NULL; continue; }
        size_t l = strlen(params[i]) + 1;
        memcpy(p, params[i], l);
        pv[i] = p;
        p += l;
    }
    q->params = nparams ? pv : NULL;
    q->nparams = nparams;
    q->stmt = stmt_of(pg, sql);
    q->cb = cb;
    q->ud = ud;
    fifo_push(&pg->queue, q);
    pump(pg);
}

int x4_pg_healthy(const x4_pg *pg) {
    if (!pg || pg->closing) return 0;
    for (int i = 0; i < pg->n; i++)
        if (pg->conns[i].state == C_UP) return 1;
    return 0;
}

size_t x4_pg_pending(const x4_pg *pg) {
    if (!pg) return 0;
    size_t n = pg->queue.n;
    for (int i = 0; i < pg->n; i++) n += pg->conns[i].inflight.n;
    return n;
}

void x4_pg_close(x4_pg *pg) {
    if (!pg || pg->closing) return;
    pg->closing = 1;
    /* detach everything first, so callbacks that submit new work see a closing pool */
    pg_fifo queued = fifo_take(&pg->queue);
    pg_fifo *infl = calloc((size_t)pg->n, sizeof *infl);
    for (int i = 0; i < pg->n; i++) {
        pg_conn *k = &pg->conns[i];
        if (infl) infl[i] = fifo_take(&k->inflight);
        else fail_fifo(fifo_take(&k->inflight), "57P01: shutting down");
        uv_timer_stop(&k->timer);
        k->timer.data = pg;
        uv_close((uv_handle_t *)&k->timer, on_handle_closed);
        poll_close(k);
        if (k->c) PQfinish(k->c);
        k->c = NULL;
        k->state = C_DOWN;
    }
    /* the pool cannot be freed before the loop runs the close callbacks, so callbacks are safe */
    if (infl) {
        for (int i = 0; i < pg->n; i++) fail_fifo(infl[i], "57P01: shutting down");
        free(infl);
    }
    fail_fifo(queued, "57P01: shutting down");
    /* the pool is freed by the last close callback (there is at least one timer per connection) */
}

const char *x4_pg_val(PGresult *r, int row, const char *col) {
    if (!r || !col) return NULL;
    int c = PQfnumber(r, col);
    if (c < 0 || row < 0 || row >= PQntuples(r)) return NULL;
    if (PQgetisnull(r, row, c)) return NULL;
    return PQgetvalue(r, row, c);
}

long long x4_pg_ll(PGresult *r, int row, const char *col, long long def) {
    const char *v = x4_pg_val(r, row, col);
    if (!v || !*v) return def;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !end || *end) return def;
    return x;
}

/* ---------------------------------------------------------------- migrations */

typedef struct {
    int version;
    char *name; /* file name */
} mig_file;

static int mig_cmp(const void *a, const void *b) {
    const mig_file *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static char *read_whole(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot read it: %s", strerror(errno)); return NULL; }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) { free(buf); snprintf(err, errlen, "cannot read it"); return NULL; }
    buf[len] = 0;
    return buf;
}

static int exec_ok(PGconn *c, const char *sql, char *err, size_t errlen, const char *what) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
        PQclear(r);
        return 0;
    }
    char e[600];
    if (r) result_error(r, e, sizeof e);
    else snprintf(e, sizeof e, "%s", PQerrorMessage(c));
    snprintf(err, errlen, "%s: %s", what, e);
    PQclear(r);
    return -1;
}

int x4_migrate(const char *conninfo, const char *sql_dir, char *err, size_t errlen) {
    char e[1024];
    /* 1. the files */
    DIR *d = opendir(sql_dir);
    if (!d) { snprintf(err, errlen, "migrations: cannot open %s: %s", sql_dir, strerror(errno)); return -1; }
    mig_file *files = NULL;
    size_t nf = 0, cap = 0;
    struct dirent *de;
    int rc = -1;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        if (l < 5 || strcmp(n + l - 4, ".sql") != 0 || !isdigit((unsigned char)n[0])) continue;
        size_t i = 0;
        long v = 0;
        while (isdigit((unsigned char)n[i]) && v < 100000000) v = v * 10 + (n[i++] - '0');
        if (n[i] != '_') continue;
        if (nf == cap) {
            cap = cap ? cap * 2 : 16;
            mig_file *nfp = realloc(files, cap * sizeof *files);
            if (!nfp) { closedir(d); snprintf(err, errlen, "out of memory"); goto out_files; }
            files = nfp;
        }
        files[nf].version = (int)v;
        files[nf].name = strdup(n);
        if (!files[nf].name) { closedir(d); snprintf(err, errlen, "out of memory"); goto out_files; }
        nf++;
    }
    closedir(d);
    if (nf) qsort(files, nf, sizeof *files, mig_cmp);
    for (size_t i = 1; i < nf; i++)
        if (files[i].version == files[i - 1].version) {
            snprintf(err, errlen, "migrations: %s and %s have the same number", files[i - 1].name, files[i].name);
            goto out_files;
        }

    /* 2. the connection and the lock */
    PGconn *c = PQconnectdb(conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        redact(conninfo, c ? PQerrorMessage(c) : "out of memory", e, sizeof e);
        snprintf(err, errlen, "migrations: cannot connect to PostgreSQL: %s", e);
        if (c) PQfinish(c);
        goto out_files;
    }
    PQsetNoticeProcessor(c, notice_processor, NULL);
    char lock_sql[128], unlock_sql[128];
    snprintf(lock_sql, sizeof lock_sql, "SELECT pg_advisory_lock(%lld)", PG_MIGRATE_LOCK_KEY);
    snprintf(unlock_sql, sizeof unlock_sql, "SELECT pg_advisory_unlock(%lld)", PG_MIGRATE_LOCK_KEY);
    if (exec_ok(c, lock_sql, err, errlen, "migrations: advisory lock") != 0) { PQfinish(c); goto out_files; }
    if (exec_ok(c,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, "
                "applied_at timestamptz DEFAULT now())",
                err, errlen, "migrations: schema_migrations") != 0)
        goto out_unlock;

    /* 3. what is applied */
    PGresult *r = PQexec(c, "SELECT version FROM schema_migrations");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (r) result_error(r, e, sizeof e);
        else snprintf(e, sizeof e, "%s", PQerrorMessage(c));
        snprintf(err, errlen, "migrations: reading schema_migrations: %s", e);
        PQclear(r);
        goto out_unlock;
    }
    int applied = 0;
    for (size_t i = 0; i < nf; i++) {
        int done = 0;
        for (int row = 0; row < PQntuples(r) && !done; row++)
            done = atoi(PQgetvalue(r, row, 0)) == files[i].version;
        if (done) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", sql_dir, files[i].name);
        char *sql = read_whole(path, e, sizeof e);
        if (!sql) {
            snprintf(err, errlen, "migration %s: %s", files[i].name, e);
            PQclear(r);
            goto out_unlock;
        }
        char what[600];
        snprintf(what, sizeof what, "migration %s failed", files[i].name);
        int ok = exec_ok(c, "BEGIN", err, errlen, what) == 0 && exec_ok(c, sql, err, errlen, what) == 0;
        free(sql);
        if (ok) {
            char vbuf[16];
            snprintf(vbuf, sizeof vbuf, "%d", files[i].version);
            const char *pv[2] = {vbuf, files[i].name};
            PGresult *ir = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2,
                                        NULL, pv, NULL, NULL, 0);
            if (!ir || PQresultStatus(ir) != PGRES_COMMAND_OK) {
                if (ir) result_error(ir, e, sizeof e);
                else snprintf(e, sizeof e, "%s", PQerrorMessage(c));
                snprintf(err, errlen, "%s: recording it: %s", what, e);
                ok = 0;
            }
            PQclear(ir);
        }
        if (ok) ok = exec_ok(c, "COMMIT", err, errlen, what) == 0;
        if (!ok) {
            PGresult *rb = PQexec(c, "ROLLBACK");
            PQclear(rb);
            PQclear(r);
            goto out_unlock;
        }
        x4_info("pg", "applied migration %s", files[i].name);
        applied++;
    }
    PQclear(r);
    rc = applied;

out_unlock: {
    PGresult *u = PQexec(c, unlock_sql);
    PQclear(u);
    PQfinish(c);
}
out_files:
    for (size_t i = 0; i < nf; i++) free(files[i].name);
    free(files);
    return rc;
}
