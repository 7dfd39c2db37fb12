/* exec/sched.c — see sched.h.
 *
 * Memory: one x4_run per executing workflow, in a chained hash table (4096 buckets) keyed by
 * id. Every asynchronous operation that will call back into a run (a database write, an HTTP
 * call, a timer) holds a reference; an aborted run is marked dead, unlinked at once, and freed
 * when the last reference returns. Steps are scanned in topological order when a slot frees:
 * O(steps) per completion, plans are at most X4_PLAN_MAX_STEPS long.
 *
 * Writes: a step's success is queued on its run and stored at the end of the loop turn (a
 * uv_check, after that turn's I/O callbacks): every success of the run that arrived in the same
 * turn and the "running" of every dependent they make ready form one batch (x4_steps_update),
 * so a join whose dependencies answer together costs one commit, and its dependent's request
 * waits for that one commit only; the last step's success goes with the workflow's completion
 * (x4_step_finish). The writes of all runs of that turn go in one transaction
 * (x4_sched_write_group, up to X4_SCHED_GROUP_MAX runs): one commit for the turn, not one per
 * run; if the group is refused, each write is sent again on its own. A dependent is claimed as
 * soon as every dependency's output is known, even when one of those successes is still in
 * another write in flight; it acts once its "running" and all of them have landed (step_go).
 *
 * Dispatch: with DISPATCH=eager (the default) such a dependent's request goes out right beside
 * that write (dispatch_eager), and its answer, if it comes first, is kept (a copy) until the
 * writes land; with DISPATCH=durable it goes out after. Steps started any other way (roots,
 * retries, failovers, paid resends) go out only after their writes. No answer is acted on, no
 * event announced and no payment made before the writes it follows have committed. */
#include "exec/sched.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "exec/adapter.h"
#include "exec/compensate.h"
#include "exec/failover.h"
#include "exec/httpc.h"
#include "exec/policy.h"
#include "exec/step_adapter.h"
#include "pay/paystep.h"
#include "plan/catalog.h"
#include "plan/plan.h"
#include "store/pg.h"

#define BUCKETS 4096
/* Attempts a step may spend waiting for an earlier payment to resolve on chain (about 2 s each). */
#define X4_SCHED_MAX_PAYMENT_WAITS 100
/* Runs whose batches of one loop turn share a transaction (on_flush). */
#define X4_SCHED_GROUP_MAX 64

enum {
    ST_PENDING,   /* waiting for dependencies or a slot */
    ST_STARTING,  /* "running" write in flight */
    ST_RUNNING,   /* HTTP call in flight */
    ST_WRITING,   /* a result write in flight */
    ST_WAIT,      /* retry timer armed */
    ST_SUCCEEDED,
    ST_FAILED,
    ST_SKIPPED
};

typedef struct x4_run x4_run;

typedef struct {
    uv_timer_t t;
    x4_run *run;
    size_t idx;
} step_timer;

typedef struct {
    int state;
    int attempts;
    int unmet;            /* dependencies not yet succeeded */
    size_t *dependents;
    size_t ndependents;
    json_t *output;
    x4_httpc_call *call;
    step_timer *timer;
    uint64_t t0_us;
    int64_t retry_delay;
    int holds_slot;
    int skip_after_write;  /* skipped while its "retrying" write was in flight: skip once it lands */
    x4_paystep *pay;       /* a payment committed for the request in flight (pay/paystep.h) */
    json_t *settled_output; /* a paid answer's output, written once its charge has committed */
    json_t *inputs;        /* the bound inputs of the current attempt */
    int paying;            /* a payment is being prepared */
    int charged;           /* a payment of this step was settled (or may have been): never fail over */
    int fo_base;           /* attempts spent before the last failover (retries count from here) */
    json_t *tried;         /* services this step failed over from (exec/failover.h) */
    json_t *succ_ev;       /* a success waiting for this loop turn's flush: its step.completed data */
    int succ_pending;      /* its success is queued or being written (its output is known) */
    int start_inflight;    /* its "running" write has not landed */
    int eager;             /* its request went out beside that write (DISPATCH=eager), not yet acted on */
    x4_httpc_resp *early;  /* its answer, arrived before it could be acted on (a copy) */
} step_rt;

struct x4_run {
    x4_engine *e;
    char id[96];
    x4_plan *plan;
    step_rt *st;
    int refs;
    int dead;
    int failed;
    int finishing;
    int deadline_hit;
    char *error;
    int running;          /* slots held */
    int writes;           /* step writes in flight: the final write waits for them (the pool may
                             reorder writes sent on different connections) */
    uint64_t loaded_ms;
    int starved;
    step_timer *deadline;
    size_t *pend;         /* successes waiting for the end of this loop turn (flush_runs) */
    size_t npend;
    struct batch_ctx *fin; /* the last step's success with the completion, waiting for the flush */
    x4_run *flush_next;   /* queued for the flush (holds a reference) */
    int flush_queued;
    x4_run *next;         /* bucket chain */
    x4_run *starved_next;
};

struct x4_sched {
    x4_engine *e;
    x4_run *buckets[BUCKETS];
    size_t nruns;
    size_t running;       /* slots held across runs */
    x4_run *starved_head, *starved_tail;
    x4_catalog *catalog_hold;
    uv_check_t flush;     /* runs after the loop turn's I/O callbacks: writes the queued successes */
    int flush_open;
    x4_run *flush_head;
};

typedef struct {
    x4_run *run;
    size_t idx;
} step_ctx;

static void pump(x4_run *r);
static void maybe_finish(x4_run *r);
static void step_fail(x4_run *r, size_t i, const char *why);
static void skip_one(x4_run *r, size_t k, const char *reason);
static void step_succeed(x4_run *r, size_t i, json_t *output);
static json_t *run_output(x4_run *r);
static void on_flush(uv_check_t *h);
static void step_answer(x4_run *r, size_t i, const x4_httpc_resp *resp);
static void step_go(x4_run *r, size_t i);
static void go_dependents(x4_run *r, size_t i);

/* ---- run table ---- */

static unsigned bucket_of(const char *id) { return (unsigned)(x4_hash_str(id) % BUCKETS); }

static x4_run *run_find(x4_engine *e, const char *id) {
    for (x4_run *r = e->sched->buckets[bucket_of(id)]; r; r = r->next)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

static void run_unlink(x4_run *r) {
    struct x4_sched *s = r->e->sched;
    x4_run **pp = &s->buckets[bucket_of(r->id)];
    while (*pp && *pp != r) pp = &(*pp)->next;
    if (*pp) {
        *pp = r->next;
        s->nruns--;
    }
    x4_run **sp = &s->starved_head, *prev = NULL;
    while (*sp && *sp != r) {
        prev = *sp;
        sp = &(*sp)->starved_next;
    }
    if (*sp) {
        *sp = r->starved_next;
        if (s->starved_tail == r) s->starved_tail = prev;
    }
    r->starved = 0;
}

static void run_free(x4_run *r) {
    if (r->st)
        for (size_t i = 0; i < r->plan->nsteps; i++) {
            json_decref(r->st[i].output);
            json_decref(r->st[i].inputs);
            json_decref(r->st[i].settled_output);
            json_decref(r->st[i].tried);
            json_decref(r->st[i].succ_ev);
            free(r->st[i].early);
            free(r->st[i].dependents);
        }
    free(r->st);
    free(r->pend);
    x4_plan_free(r->plan);
    free(r->error);
    free(r);
}

static void run_ref(x4_run *r) { r->refs++; }

static void run_unref(x4_run *r) {
    if (--r->refs == 0) run_free(r);
}

/* ---- slots ---- */

static void slot_release(x4_run *r, size_t i) {
    step_rt *s = &r->st[i];
    if (!s->holds_slot) return;
    s->holds_slot = 0;
    r->running--;
    r->e->sched->running--;
}

static void wake_starved(x4_engine *e) {
    struct x4_sched *s = e->sched;
    while (s->starved_head && s->running < (size_t)e->cfg.max_concurrency) {
        x4_run *r = s->starved_head;
        s->starved_head = r->starved_next;
        if (!s->starved_head) s->starved_tail = NULL;
        r->starved = 0;
        run_ref(r); /* pump may drop the table's reference synchronously */
        pump(r);
        run_unref(r);
    }
}

/* ---- timers ---- */

static void timer_closed(uv_handle_t *h) {
    step_timer *t = h->data;
    x4_run *r = t->run;
    free(t);
    run_unref(r);
}

static step_timer *timer_new(x4_run *r, size_t idx) {
    step_timer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    uv_timer_init(r->e->loop, &t->t);
    t->t.data = t;
    t->run = r;
    t->idx = idx;
    run_ref(r);
    return t;
}

static void timer_drop(step_timer **tp) {
    if (!*tp) return;
    uv_timer_stop(&(*tp)->t);
    uv_close((uv_handle_t *)&(*tp)->t, timer_closed);
    *tp = NULL;
}

/* ---- abort ---- */

static void run_kill(x4_run *r, const char *why) {
    if (r->dead) return;
    r->dead = 1;
    x4_info("sched", "%s: dropped from this process (%s)", r->id, why);
    run_unlink(r);
    for (size_t i = 0; i < r->plan->nsteps; i++) {
        step_rt *s = &r->st[i];
        slot_release(r, i);
        timer_drop(&s->timer);
        if (s->pay) { /* its row stays `signed`: the reconciler settles the money */
            x4_paystep_drop(s->pay);
            s->pay = NULL;
        }
        if (s->call) {
            x4_httpc_call *c = s->call;
            s->call = NULL;
            x4_httpc_cancel(c); /* its callback sees r->dead and only drops its reference */
        }
    }
    timer_drop(&r->deadline);
    wake_starved(r->e);
    run_unref(r); /* the table's reference */
}

/* ---- database writes ---- */

static step_ctx *ctx_new(x4_run *r, size_t i) {
    step_ctx *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->run = r;
    c->idx = i;
    run_ref(r);
    return c;
}

/* Writes a step transition plus its event; cb runs with the result (ctx freed by the caller). */
static void step_write(x4_run *r, size_t i, const char *status, const json_t *output, const char *error,
                       const char *evtype, json_t *evdata, x4_pg_cb cb) {
    x4_engine *e = r->e;
    step_ctx *c = ctx_new(r, i);
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%d", r->st[i].attempts);
    char *out = output ? json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *data = json_dumps(evdata, JSON_COMPACT);
    json_decref(evdata);
    if (!c || !data || (output && !out)) {
        free(out);
        free(data);
        if (c) {
            run_unref(r);
            free(c);
        }
        run_kill(r, "out of memory");
        return;
    }
    const char *params[] = {r->id, e->owner, r->plan->steps[i].id, status, attempts, out, error, evtype, data};
    r->writes++;
    x4_pg_query(e->pg,
                "SELECT " X4_EV_COLS " FROM x4_step_update($1,$2,$3,$4,$5::int,$6::jsonb,$7,$8,$9::jsonb) e", 9,
                params, cb, c);
    free(out);
    free(data);
}

/* Common head of every step-write callback, over this run's rows first .. first + count - 1 of
 * res (all of them for its own query; its part of a grouped write, on_group): 0 = proceed,
 * -1 = the run is gone. */
static int write_landed_rows(step_ctx *c, PGresult *res, const char *err, int first, int count) {
    x4_run *r = c->run;
    r->writes--;
    /* committed under our lease: announced even if the run was dropped meanwhile (streams would
       otherwise miss a workflow's last events until something else made them read) */
    if (!err && count > 0) x4_events_publish_range(r->e, res, first, count);
    if (r->dead) return -1;
    if (err) {
        x4_warn("sched", "%s: step write failed (%s); leaving the workflow to the lease", r->id, err);
        run_kill(r, "database write failed");
        return -1;
    }
    if (count == 0) {
        run_kill(r, "workflow no longer executing under this lease");
        return -1;
    }
    return 0;
}

static int write_landed(step_ctx *c, PGresult *res, const char *err) {
    return write_landed_rows(c, res, err, 0, err ? 0 : PQntuples(res));
}

static void ctx_done(step_ctx *c) {
    x4_run *r = c->run;
    free(c);
    run_unref(r);
}

/* ---- step lifecycle ---- */

static void on_http(const x4_httpc_resp *resp, void *ud);

/* Sends the step's request (with the payment header when s->pay is set), built by its adapter
 * (exec/step_adapter.h). 0: sent; 1: the adapter answered without a request (*output, a pure
 * step); -1: why (the step fails, not retried). */
static int send_request(x4_run *r, size_t i, const json_t *inputs, json_t **output, char *why, size_t whylen) {
    x4_engine *e = r->e;
    step_rt *s = &r->st[i];
    x4_plan_step *ps = &r->plan->steps[i];
    const x4_service *svc = e->catalog ? x4_catalog_get(e->catalog, ps->service) : NULL;
    if (!svc) {
        snprintf(why, whylen, "service %s is not in the catalog", ps->service);
        return -1;
    }
    x4_adapter_call call;
    int attempt = s->pay ? x4_paystep_attempt(s->pay) : s->attempts; /* a replay keeps its key */
    x4_step_in in = {svc, r->id, ps->id, attempt, inputs, (long)e->cfg.connect_timeout_ms, (long)e->cfg.step_timeout_ms,
                     (size_t)e->cfg.max_response_bytes};
    s->t0_us = x4_mono_us();
    int rc = x4_step_prepare(e->lua, &in, &call, output, why, whylen);
    if (rc != 0) return rc;
    if (s->pay && call.req.nheaders < X4_ADAPTER_MAX_HEADERS) {
        call.headers[call.req.nheaders++] =
            (x4_httpc_header){x4_paystep_header_name(s->pay), x4_paystep_header_value(s->pay)};
    }
    s->state = ST_RUNNING;
    step_ctx *hc = ctx_new(r, i);
    if (!hc) {
        x4_adapter_call_free(&call);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    s->call = x4_httpc_request(e->httpc, &call.req, on_http, hc);
    x4_adapter_call_free(&call);
    return 0;
}

/* Step i's inputs, bound from the outputs known so far; NULL with why. */
static json_t *bind_inputs(x4_run *r, size_t i, char *why, size_t whylen) {
    json_t **outs = calloc(r->plan->nsteps, sizeof *outs);
    if (!outs) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    for (size_t k = 0; k < r->plan->nsteps; k++) outs[k] = r->st[k].output;
    json_t *inputs = x4_plan_bind_inputs(r->plan, i, outs, why, whylen);
    free(outs);
    return inputs;
}

/* A step's "running" is stored: bind its inputs and send its request. */
static void start_landed(x4_run *r, size_t i) {
    x4_engine *e = r->e;
    step_rt *s = &r->st[i];
    if (r->failed || e->stopping) {
        /* The workflow failed (or hit maxTime) while "running" was being stored: never call,
         * and never pay, a service for a workflow that is already over. */
        slot_release(r, i);
        skip_one(r, i, r->deadline_hit ? "maxTime exceeded" : "workflow failed");
        return;
    }
    char why[512];
    json_t *inputs = bind_inputs(r, i, why, sizeof why);
    if (!inputs) {
        step_fail(r, i, why);
        return;
    }
    e->stats.steps_started++;
    json_decref(s->inputs);
    s->inputs = inputs; /* kept for a paid resend */
    char berr[512];
    json_t *answer = NULL;
    int rc = send_request(r, i, inputs, &answer, berr, sizeof berr);
    if (rc < 0) step_fail(r, i, berr);
    else if (rc == 1) step_succeed(r, i, answer); /* a pure step (exec/step_adapter.h) */
}

/* A claimed step may act once its "running" and the successes of all its dependencies have
 * landed: a durable one sends its request now (or is skipped if the workflow failed
 * meanwhile); an eager one, whose request is already out, takes the answer that arrived
 * meanwhile, if any — otherwise on_http acts on it when it comes — like any running step's
 * (if the workflow failed meanwhile, what the call did is recorded). Anything else is left
 * alone, so calling it twice is harmless. */
static void step_go(x4_run *r, size_t i) {
    step_rt *s = &r->st[i];
    if (r->dead || s->start_inflight || s->unmet > 0) return;
    if (s->eager) {
        s->eager = 0;
        x4_httpc_resp *resp = s->early;
        s->early = NULL;
        if (resp) {
            run_ref(r);
            step_answer(r, i, resp);
            free(resp);
            run_unref(r);
        }
    } else if (s->state == ST_STARTING) {
        start_landed(r, i);
    }
}

static void go_dependents(x4_run *r, size_t i) {
    run_ref(r);
    for (size_t k = 0; k < r->st[i].ndependents && !r->dead; k++) step_go(r, r->st[i].dependents[k]);
    run_unref(r);
}

static void on_started(PGresult *res, const char *err, void *ud) {
    step_ctx *c = ud;
    if (write_landed(c, res, err) == 0) {
        c->run->st[c->idx].start_inflight = 0;
        step_go(c->run, c->idx);
    }
    ctx_done(c);
}

/* Claims step i for starting: a slot, an attempt, ST_STARTING. */
static void step_claim(x4_run *r, size_t i) {
    step_rt *s = &r->st[i];
    s->state = ST_STARTING;
    s->attempts++;
    s->holds_slot = 1;
    r->running++;
    r->e->sched->running++;
}

static json_t *started_data(x4_run *r, size_t i) {
    return json_pack("{s:s, s:s, s:i}", "stepId", r->plan->steps[i].id, "service", r->plan->steps[i].service,
                     "attempt", r->st[i].attempts);
}

static void step_start(x4_run *r, size_t i) {
    step_claim(r, i);
    r->st[i].start_inflight = 1;
    step_write(r, i, "running", NULL, NULL, "step.started", started_data(r, i), on_started);
}

static void succeeded_landed(x4_run *r, size_t i) {
    step_rt *s = &r->st[i];
    s->state = ST_SUCCEEDED;
    s->succ_pending = 0;
    r->e->stats.steps_succeeded++;
    slot_release(r, i);
    for (size_t k = 0; k < s->ndependents; k++) r->st[s->dependents[k]].unmet--;
}

/* Successes stored together with the start of the dependents they unblocked (flush_run). */
typedef struct batch_ctx {
    step_ctx c; /* first: write_landed and ctx_done take it; c.idx is the finishing step */
    char *text;  /* the batch (x4_steps_update's p_batch), or the finish (an object) */
    int finish;  /* the last step's success and the completion (x4_step_finish) */
    size_t nsucc, nstart;
    size_t idx[]; /* nsucc successes, then nstart started steps */
} batch_ctx;

/* A batch of run r with room for cap step indexes; it holds a reference to r. */
static batch_ctx *batch_new(x4_run *r, size_t cap) {
    batch_ctx *b = malloc(sizeof *b + cap * sizeof b->idx[0]);
    if (!b) return NULL;
    b->c.run = r;
    b->c.idx = 0;
    b->text = NULL;
    b->finish = 0;
    b->nsucc = b->nstart = 0;
    run_ref(r);
    return b;
}

static void batch_free(batch_ctx *b) {
    free(b->text);
    ctx_done(&b->c);
}

/* A run's batch landed: its rows are first .. first + count - 1 of res. */
static void batch_landed(batch_ctx *b, PGresult *res, const char *err, int first, int count) {
    x4_run *r = b->c.run;
    if (write_landed_rows(&b->c, res, err, first, count) < 0) goto out;
    run_ref(r);
    for (size_t k = 0; k < b->nsucc; k++) succeeded_landed(r, b->idx[k]);
    for (size_t k = 0; k < b->nstart; k++) r->st[b->idx[b->nsucc + k]].start_inflight = 0;
    /* the started steps are among the landed successes' dependents; so are steps claimed by an
       earlier batch that waited for one of these successes */
    for (size_t k = 0; k < b->nsucc && !r->dead; k++) go_dependents(r, b->idx[k]);
    if (!r->dead) {
        pump(r);
        maybe_finish(r);
    }
    wake_starved(r->e);
    run_unref(r);
out:
    batch_free(b);
}

static void on_failed_or_skipped(PGresult *res, const char *err, void *ud) {
    step_ctx *c = ud;
    x4_run *r = c->run;
    if (write_landed(c, res, err) < 0) goto out;
    step_rt *s = &r->st[c->idx];
    (void)s;
    slot_release(r, c->idx);
    maybe_finish(r);
    wake_starved(r->e);
out:
    ctx_done(c);
}

/* Skips every step that has not started (pending or waiting to retry). A step whose
 * "retrying" write is still in flight is skipped when that write lands (on_retrying), so the
 * two writes can never be reordered by the pool. */
static void skip_one(x4_run *r, size_t k, const char *reason) {
    step_rt *s = &r->st[k];
    timer_drop(&s->timer);
    s->state = ST_SKIPPED;
    json_t *d = json_pack("{s:s, s:s}", "stepId", r->plan->steps[k].id, "reason", reason);
    step_write(r, k, "skipped", NULL, reason, "step.skipped", d, on_failed_or_skipped);
}

static void skip_rest(x4_run *r, const char *reason) {
    run_ref(r);
    for (size_t k = 0; k < r->plan->nsteps && !r->dead; k++) {
        step_rt *s = &r->st[k];
        if (s->state == ST_WAIT && !s->timer) s->skip_after_write = 1;
        else if (s->state == ST_PENDING || s->state == ST_WAIT) skip_one(r, k, reason);
    }
    run_unref(r);
}

static void step_fail(x4_run *r, size_t i, const char *why) {
    step_rt *s = &r->st[i];
    s->state = ST_FAILED;
    slot_release(r, i);
    r->e->stats.steps_failed++;
    if (!r->failed) {
        r->failed = 1;
        char msg[700];
        snprintf(msg, sizeof msg, "step %s failed: %s", r->plan->steps[i].id, why);
        free(r->error);
        r->error = strdup(msg);
    }
    json_t *d = json_pack("{s:s, s:s, s:i}", "stepId", r->plan->steps[i].id, "error", why, "attempt", s->attempts);
    step_write(r, i, "failed", NULL, why, "step.failed", d, on_failed_or_skipped);
    if (r->dead) return;
    char reason[160];
    snprintf(reason, sizeof reason, "workflow failed at step %s", r->plan->steps[i].id);
    skip_rest(r, reason);
}

static void on_retry_timer(uv_timer_t *t) {
    step_timer *st = t->data;
    x4_run *r = st->run;
    size_t i = st->idx;
    timer_drop(&r->st[i].timer);
    if (r->dead || r->st[i].state != ST_WAIT) return;
    r->st[i].state = ST_PENDING;
    pump(r);
}

/* The retry timer starts only once "retrying" is stored, so the next attempt's writes can
 * never overtake it. */
static void on_retrying(PGresult *res, const char *err, void *ud) {
    step_ctx *c = ud;
    x4_run *r = c->run;
    if (write_landed(c, res, err) < 0) goto out;
    step_rt *s = &r->st[c->idx];
    if (s->skip_after_write) {
        s->skip_after_write = 0;
        skip_one(r, c->idx, r->deadline_hit ? "maxTime exceeded" : "workflow failed");
    } else if (s->state == ST_WAIT && !s->timer) {
        s->timer = timer_new(r, c->idx);
        if (s->timer) uv_timer_start(&s->timer->t, on_retry_timer, (uint64_t)s->retry_delay, 0);
        else step_fail(r, c->idx, "out of memory arming the retry timer");
    }
    maybe_finish(r);
out:
    ctx_done(c);
}

static void step_retry(x4_run *r, size_t i, const char *why, int64_t retry_after) {
    step_rt *s = &r->st[i];
    s->retry_delay = retry_after >= 0 ? retry_after : x4_policy_backoff_ms(&r->e->cfg, s->attempts);
    s->state = ST_WAIT;
    r->e->stats.step_retries++;
    slot_release(r, i);
    json_t *d = json_pack("{s:s, s:i, s:I, s:s}", "stepId", r->plan->steps[i].id, "attempt", s->attempts, "delayMs",
                          (json_int_t)s->retry_delay, "error", why);
    step_write(r, i, "retrying", NULL, why, "step.retrying", d, on_retrying);
    wake_starved(r->e);
}

/* ---- failover (exec/failover.h) ---- */

typedef struct {
    x4_run *run;
    size_t idx;
    char to[128];
    char why[512];
} failover_ctx;

static void on_failed_over(PGresult *res, const char *err, void *ud) {
    failover_ctx *f = ud;
    x4_run *r = f->run;
    size_t i = f->idx;
    r->writes--;
    if (r->dead) goto out;
    if (err || PQntuples(res) == 0) {
        /* refused (cancelled, lease lost) or not stored: the step fails as it would have */
        if (err) x4_warn("sched", "%s: failover write failed (%s)", r->id, err);
        step_fail(r, i, f->why);
        goto out;
    }
    x4_events_publish_rows(r->e, res);
    x4_plan_step *ps = &r->plan->steps[i];
    char *svc = strdup(f->to);
    if (!svc) {
        step_fail(r, i, "out of memory");
        goto out;
    }
    free(ps->service);
    ps->service = svc;
    step_rt *s = &r->st[i];
    s->fo_base = s->attempts;
    s->state = ST_PENDING;
    slot_release(r, i);
    pump(r);
    wake_starved(r->e);
out:
    free(f);
    run_unref(r);
}

/* The service of step i is unavailable for good: move to the next candidate within the
 * approved price, or fail the step. Only for network errors, timeouts, 5xx and 429, and only
 * when nothing was charged for the step (a paid step never pays twice). */
static void give_up(x4_run *r, size_t i, const x4_httpc_resp *resp, const char *why) {
    step_rt *s = &r->st[i];
    x4_plan_step *ps = &r->plan->steps[i];
    int unavailable = resp->status == X4_HTTPC_NETWORK || resp->status == X4_HTTPC_TIMEOUT ||
                      (resp->status == X4_HTTPC_OK && (resp->code >= 500 || resp->code == 429));
    const x4_service *svc = r->e->catalog ? x4_catalog_get(r->e->catalog, ps->service) : NULL;
    if (!unavailable || r->failed || s->charged || !svc || json_array_size(s->tried) >= (size_t)r->e->cfg.failover_max) {
        step_fail(r, i, why);
        return;
    }
    if (!s->tried) s->tried = json_array();
    json_array_append_new(s->tried, json_string(ps->service));
    json_t *cands = x4_failover_candidates(r->e, svc, ps->id, s->inputs, ps->price, s->tried);
    const char *to = json_string_value(json_array_get(cands, 0));
    failover_ctx *f = to ? calloc(1, sizeof *f) : NULL;
    json_t *d = f ? json_pack("{s:s, s:s, s:s, s:s}", "stepId", ps->id, "from", ps->service, "to", to, "reason", why) : NULL;
    char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (!data) {
        json_decref(cands);
        free(f);
        step_fail(r, i, why);
        return;
    }
    x4_info("sched", "%s: step %s fails over from %s to %s (%s)", r->id, ps->id, ps->service, to, why);
    f->run = r;
    f->idx = i;
    snprintf(f->to, sizeof f->to, "%s", to);
    snprintf(f->why, sizeof f->why, "%s", why);
    json_decref(cands);
    s->state = ST_WRITING;
    run_ref(r);
    r->writes++;
    const char *params[] = {r->id, r->e->owner, ps->id, f->to, data};
    x4_pg_query(r->e->pg, "SELECT " X4_EV_COLS " FROM x4_step_failover($1, $2, $3, $4, $5::jsonb) e", 5, params,
                on_failed_over, f);
    free(data);
}

/* The retry decision for a failed attempt (not a payment: those are never retried here). Built
 * in: network errors, timeouts, 5xx and 429 are retried with backoff, everything else fails.
 * retry.decide (POLICY_DIR/retry.lua) is asked about every network error, timeout and HTTP
 * answer and wins — it may give up on a 5xx or retry a 4xx — except that RETRY_MAX_ATTEMPTS
 * stays a hard bound; without the hook, or when the call fails (logged by the runtime with
 * file:line), the built-in decision stands. */
static void retry_decide(x4_run *r, size_t i, const x4_httpc_resp *resp, x4_outcome oc, const char *why,
                         int64_t retry_after) {
    step_rt *s = &r->st[i];
    int builtin_retry = oc == X4_OUT_RETRY;
    int attempt = s->attempts - s->fo_base;
    if (r->failed || attempt >= r->e->cfg.retry_max_attempts) {
        give_up(r, i, resp, why);
        return;
    }
    const char *cls = resp->status == X4_HTTPC_NETWORK ? "network"
                      : resp->status == X4_HTTPC_TIMEOUT ? "timeout"
                      : resp->status == X4_HTTPC_OK && resp->code > 0 && oc != X4_OUT_PAYMENT_REQUIRED ? "status"
                                                                                                  : NULL;
    if (cls) {
        const x4_plan_step *st = &r->plan->steps[i];
        x4_policy_err pe = {cls, resp->status == X4_HTTPC_OK ? resp->code : 0, retry_after, why};
        int64_t delay = 0;
        char reason[256];
        int d = x4_policy_retry(r->e, st->id, st->service, s->inputs, r->e->cfg.retry_max_attempts, &pe, attempt,
                                &delay, reason, sizeof reason);
        if (d == X4_POLICY_RETRY) {
            step_retry(r, i, why, delay);
            return;
        }
        if (d == X4_POLICY_GIVEUP) {
            if (builtin_retry) {
                char msg[800];
                snprintf(msg, sizeof msg, "%s (retry policy gave up: %s)", why, reason);
                give_up(r, i, resp, msg);
            } else {
                give_up(r, i, resp, why);
            }
            return;
        }
    }
    if (builtin_retry) step_retry(r, i, why, retry_after);
    else give_up(r, i, resp, why);
}

/* The payment for a 402 is committed (or refused): send the request again with its header. */
static void on_pay_ready(x4_paystep *ps, const char *why, int64_t retry_ms, void *ud) {
    step_ctx *c = ud;
    x4_run *r = c->run;
    size_t i = c->idx;
    if (r->dead) {
        if (ps) x4_paystep_drop(ps);
        goto out;
    }
    step_rt *s = &r->st[i];
    s->paying = 0;
    if (!ps && retry_ms >= 0 && !r->failed && s->attempts < X4_SCHED_MAX_PAYMENT_WAITS) {
        /* an earlier payment of this step is still unresolved on chain: wait, pay nothing
         * (bounded: a payment that can never be proven absent must not wait forever) */
        step_retry(r, i, why, retry_ms);
        goto out;
    }
    if (!ps) {
        step_fail(r, i, why);
        goto out;
    }
    s->pay = ps;
    char berr[512];
    json_t *answer = NULL;
    if (send_request(r, i, s->inputs, &answer, berr, sizeof berr) != 0) {
        /* committed but never sent: the reconciler proves it absent. An adapter that answers
         * without a request after a 402 is not a paid call: it fails. */
        if (answer) snprintf(berr, sizeof berr, "the step adapter answered without sending the paid request");
        json_decref(answer);
        x4_paystep_drop(ps);
        s->pay = NULL;
        step_fail(r, i, berr);
    }
out:
    ctx_done(c);
}

/* One transition of a batch for x4_steps_update (sql/090_perf.sql); takes evdata. */
static json_t *transition(x4_run *r, size_t i, const char *status, json_t *output, const char *type, json_t *evdata) {
    return json_pack("{s:s, s:s, s:i, s:O?, s:s, s:o}", "step", r->plan->steps[i].id, "status", status, "attempts",
                     r->st[i].attempts, "output", output, "type", type, "data", evdata);
}

/* The last step's success and the completion landed (sql/097_step_finish.sql): the run is over. */
static void finish_landed(batch_ctx *b, PGresult *res, const char *err, int first, int count) {
    step_ctx *c = &b->c;
    x4_run *r = c->run;
    if (write_landed_rows(c, res, err, first, count) == 0) {
        r->e->stats.steps_succeeded++;
        r->st[c->idx].state = ST_SUCCEEDED;
        slot_release(r, c->idx);
        wake_starved(r->e);
        run_kill(r, "finished");
    }
    batch_free(b);
}

/* Queues run r for the end of this loop turn's flush (on_flush). */
static void flush_queue(x4_run *r) {
    if (r->flush_queued) return;
    struct x4_sched *sc = r->e->sched;
    r->flush_queued = 1;
    run_ref(r);
    r->flush_next = sc->flush_head;
    sc->flush_head = r;
    if (sc->flush_open) uv_check_start(&sc->flush, on_flush);
}

/* Whether step i is the last one: every other step succeeded and no other write is in flight
 * (the pool may reorder writes sent on different connections). */
static int last_to_succeed(const x4_run *r, size_t i) {
    if (r->failed || r->finishing || r->writes > 0 || r->e->stopping) return 0;
    for (size_t k = 0; k < r->plan->nsteps; k++)
        if (k != i && r->st[k].state != ST_SUCCEEDED) return 0;
    return 1;
}

/* A step's answer is its output: store it (and announce step.completed), queued for this loop
 * turn's flush (flush_run) — the last step together with the workflow's completion. */
static void step_succeed(x4_run *r, size_t i, json_t *output) {
    step_rt *s = &r->st[i];
    s->state = ST_WRITING;
    s->output = output;
    s->succ_pending = 1;
    json_t *d = json_pack("{s:s, s:O, s:i, s:I}", "stepId", r->plan->steps[i].id, "output", output, "attempt",
                          s->attempts, "durationMs", (json_int_t)((x4_mono_us() - s->t0_us) / 1000));
    if (last_to_succeed(r, i)) {
        /* with the completion, at the end of this loop turn (grouped with other runs' writes) */
        r->finishing = 1;
        json_t *wo = run_output(r);
        json_t *item = wo && d ? json_pack("{s:s, s:i, s:O, s:O, s:O, s:{s:O}}", "step", r->plan->steps[i].id, "attempts",
                                           s->attempts, "output", output, "data", d, "wfOutput", wo, "wfData",
                                           "output", wo)
                               : NULL;
        json_decref(d);
        json_decref(wo);
        batch_ctx *b = item ? batch_new(r, 1) : NULL;
        if (b) b->text = json_dumps(item, JSON_COMPACT);
        json_decref(item);
        if (!b || !b->text) {
            if (b) batch_free(b);
            run_kill(r, "out of memory");
            return;
        }
        b->finish = 1;
        b->nsucc = 1;
        b->idx[0] = i;
        b->c.idx = i;
        r->writes++;
        r->fin = b;
        flush_queue(r);
        return;
    }
    /* Not the last: queued for the end of this loop turn, so that successes arriving together
     * (a join's dependencies answering at once) and the dependents they unblock are stored in
     * one transaction (flush_run). */
    s->succ_ev = d;
    size_t *np = realloc(r->pend, (r->npend + 1) * sizeof *np);
    if (!np || !d) {
        if (np) r->pend = np;
        run_kill(r, "out of memory");
        return;
    }
    r->pend = np;
    r->pend[r->npend++] = i;
    flush_queue(r);
}

/* DISPATCH=eager: sends claimed step i's request now, beside the write of its "running" (and
 * of the successes it depends on); step_go acts on the answer once they have landed. Its
 * inputs are bound from outputs already known. Anything that would not send a request (an
 * input that cannot be bound, an adapter error, a pure step) is left to step_go to do again
 * once the writes have landed, as in the durable mode. */
static void dispatch_eager(x4_run *r, size_t i) {
    step_rt *s = &r->st[i];
    if (s->state != ST_STARTING || r->failed || r->e->stopping) return;
    char why[512];
    json_t *inputs = bind_inputs(r, i, why, sizeof why);
    if (!inputs) return;
    json_t *answer = NULL;
    s->eager = 1; /* before the request: its callback may run at once */
    if (send_request(r, i, inputs, &answer, why, sizeof why) != 0) {
        s->eager = 0;
        s->state = ST_STARTING;
        json_decref(answer);
        json_decref(inputs);
        return;
    }
    r->e->stats.steps_started++;
    json_decref(s->inputs);
    s->inputs = inputs;
}

/* The write of a run for this turn's flush: its finish (queued by step_succeed), or its queued
 * successes with the "running" of the dependents they make ready (claimed now, slots
 * permitting) as one x4_steps_update batch; sent by on_flush with the other runs' writes. NULL
 * when there is nothing to write (or the run was killed). */
static batch_ctx *flush_run(x4_run *r) {
    x4_engine *e = r->e;
    if (r->fin) { /* the finish: nothing else of the run is pending (last_to_succeed) */
        batch_ctx *f = r->fin;
        r->fin = NULL;
        return f;
    }
    size_t n = r->npend;
    r->npend = 0;
    if (n == 0) return NULL;
    size_t cap = n;
    for (size_t k = 0; k < n; k++) cap += r->st[r->pend[k]].ndependents;
    batch_ctx *b = batch_new(r, cap);
    if (!b) {
        run_kill(r, "out of memory");
        return NULL;
    }
    b->nsucc = n;
    memcpy(b->idx, r->pend, n * sizeof *r->pend);
    if (!r->failed && !r->finishing && !e->stopping) {
        for (size_t k = 0; k < n; k++) {
            step_rt *s = &r->st[b->idx[k]];
            for (size_t q = 0; q < s->ndependents; q++) {
                size_t j = s->dependents[q];
                step_rt *dj = &r->st[j];
                if (dj->state != ST_PENDING) continue;
                /* ready when every dependency's output is known: succeeded, in this batch, or
                   in a write still in flight (then it acts once that one lands: step_go) */
                int ready = 1;
                for (size_t dd = 0; dd < r->plan->steps[j].ndeps && ready; dd++) {
                    const step_rt *dep = &r->st[r->plan->steps[j].deps[dd]];
                    ready = dep->state == ST_SUCCEEDED || dep->succ_pending;
                }
                if (!ready) continue;
                if (r->running >= e->cfg.workflow_concurrency || e->sched->running >= (size_t)e->cfg.max_concurrency)
                    break;
                step_claim(r, j); /* ST_STARTING: not seen again by this loop */
                dj->start_inflight = 1;
                b->idx[n + b->nstart++] = j;
            }
        }
    }
    b->c.idx = b->idx[0];
    json_t *batch = json_array();
    for (size_t k = 0; k < n; k++) {
        size_t i = b->idx[k];
        json_t *d = r->st[i].succ_ev;
        r->st[i].succ_ev = NULL;
        if (batch) json_array_append_new(batch, transition(r, i, "succeeded", r->st[i].output, "step.completed", d));
        else json_decref(d);
    }
    for (size_t k = 0; k < b->nstart && batch; k++) {
        size_t j = b->idx[n + k];
        json_array_append_new(batch, transition(r, j, "running", NULL, "step.started", started_data(r, j)));
    }
    b->text = batch && json_array_size(batch) == n + b->nstart ? json_dumps(batch, JSON_COMPACT) : NULL;
    json_decref(batch);
    if (!b->text) {
        batch_free(b);
        run_kill(r, "out of memory"); /* releases the claimed slots */
        return NULL;
    }
    r->writes++;
    return b;
}

/* The writes of several runs, in one transaction (sql/099_write_group.sql). */
typedef struct {
    x4_engine *e;
    size_t n;
    batch_ctx *m[X4_SCHED_GROUP_MAX];
} group_ctx;

static void member_landed(batch_ctx *b, PGresult *res, const char *err, int first, int count) {
    if (b->finish) finish_landed(b, res, err, first, count);
    else batch_landed(b, res, err, first, count);
}

static void send_group(x4_engine *e, batch_ctx **m, size_t n);

static void on_group(PGresult *res, const char *err, void *ud) {
    group_ctx *g = ud;
    if (err && g->n > 1) {
        /* nothing of the group was stored: each write goes again on its own, so that one bad
           write (a step another process ended) fails only its own run */
        x4_warn("sched", "a grouped step write of %zu workflows failed (%s); writing each on its own", g->n, err);
        for (size_t k = 0; k < g->n; k++) send_group(g->e, &g->m[k], 1);
    } else if (err) {
        member_landed(g->m[0], NULL, err, 0, 0);
    } else {
        /* each run's rows are contiguous (finishes come after the batches, by user) */
        int nrows = PQntuples(res), cwf = PQfnumber(res, "workflow_id");
        int first[X4_SCHED_GROUP_MAX], count[X4_SCHED_GROUP_MAX];
        for (size_t k = 0; k < g->n; k++) first[k] = count[k] = 0;
        for (int row = 0; cwf >= 0 && row < nrows;) {
            const char *wf = PQgetvalue(res, row, cwf);
            int end = row + 1;
            while (end < nrows && strcmp(PQgetvalue(res, end, cwf), wf) == 0) end++;
            for (size_t k = 0; k < g->n; k++)
                if (strcmp(g->m[k]->c.run->id, wf) == 0) {
                    first[k] = row;
                    count[k] = end - row;
                    break;
                }
            row = end;
        }
        for (size_t k = 0; k < g->n; k++) member_landed(g->m[k], res, NULL, first[k], count[k]);
    }
    free(g);
}

static void send_group(x4_engine *e, batch_ctx **m, size_t n) {
    group_ctx *g = malloc(sizeof *g);
    x4_buf ids = {0}, items = {0};
    int rc = g ? x4_buf_puts(&ids, "{") | x4_buf_puts(&items, "[") : -1;
    for (size_t k = 0; k < n && rc == 0; k++) {
        rc |= (k ? x4_buf_puts(&ids, ",") | x4_buf_puts(&items, ",") : 0) | x4_buf_pg_array_elem(&ids, m[k]->c.run->id) |
              x4_buf_puts(&items, m[k]->text);
    }
    if (rc == 0) rc = x4_buf_puts(&ids, "}") | x4_buf_puts(&items, "]");
    if (rc == 0) {
        g->e = e;
        g->n = n;
        memcpy(g->m, m, n * sizeof *m);
        const char *params[] = {e->owner, ids.data, items.data};
        x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_sched_write_group($1,$2::text[],$3::jsonb) e", 3, params,
                    on_group, g);
    } else {
        free(g);
        for (size_t k = 0; k < n; k++) member_landed(m[k], NULL, "out of memory", 0, 0);
    }
    x4_buf_free(&ids);
    x4_buf_free(&items);
}

/* A claimed step of a run in a write just sent (for DISPATCH=eager; holds a reference). */
typedef struct {
    x4_run *run;
    size_t idx;
} eager_item;

/* Sends the group, then (DISPATCH=eager) the requests of the steps it starts. */
static void flush_group(x4_engine *e, batch_ctx **m, size_t *n, eager_item *ea, size_t *nea) {
    if (*n) send_group(e, m, *n);
    *n = 0;
    for (size_t k = 0; k < *nea; k++) {
        if (!ea[k].run->dead) dispatch_eager(ea[k].run, ea[k].idx);
        run_unref(ea[k].run);
    }
    *nea = 0;
}

/* The end of a loop turn: every run's queued writes (a batch, or the finish), in one
 * transaction for up to X4_SCHED_GROUP_MAX runs (x4_sched_write_group). */
static void on_flush(uv_check_t *h) {
    struct x4_sched *sc = h->data;
    x4_engine *e = sc->e;
    uv_check_stop(h);
    x4_run *list = sc->flush_head;
    sc->flush_head = NULL;
    batch_ctx *m[X4_SCHED_GROUP_MAX];
    eager_item ea[X4_SCHED_GROUP_MAX * 16];
    size_t n = 0, nea = 0;
    while (list) {
        x4_run *r = list;
        list = r->flush_next;
        r->flush_queued = 0;
        if (r->dead && r->fin) { /* killed before its finish was sent */
            batch_free(r->fin);
            r->fin = NULL;
        }
        batch_ctx *b = r->dead ? NULL : flush_run(r);
        if (b) {
            if (n == X4_SCHED_GROUP_MAX || nea + b->nstart > sizeof ea / sizeof ea[0]) flush_group(e, m, &n, ea, &nea);
            m[n++] = b;
            for (size_t k = 0; k < b->nstart && e->cfg.dispatch_eager; k++) {
                run_ref(r);
                ea[nea++] = (eager_item){r, b->idx[b->nsucc + k]};
            }
        }
        run_unref(r);
    }
    flush_group(e, m, &n, ea, &nea);
}

/* The outcome of a paid request is stored: now the step's own write may follow. */
static void on_pay_recorded(void *ud) {
    step_ctx *c = ud;
    x4_run *r = c->run;
    r->writes--;
    if (!r->dead) {
        step_rt *s = &r->st[c->idx];
        if (s->settled_output) {
            json_t *o = s->settled_output;
            s->settled_output = NULL;
            step_succeed(r, c->idx, o);
        } else {
            maybe_finish(r);
        }
    }
    ctx_done(c);
}

static void on_http(const x4_httpc_resp *resp, void *ud) {
    step_ctx *c = ud;
    x4_run *r = c->run;
    size_t i = c->idx;
    if (!r->dead) {
        step_rt *s = &r->st[i];
        s->call = NULL;
        if (s->start_inflight || s->unmet > 0) { /* eager, and its writes have not landed: keep it */
            s->early = x4_httpc_resp_dup(resp);
            if (!s->early) run_kill(r, "out of memory");
        } else {
            step_answer(r, i, resp);
        }
    }
    ctx_done(c);
}

/* Acts on the answer to step i's request: a paid answer's settlement, the adapter's parse,
 * a 402's payment, success, or the retry decision. */
static void step_answer(x4_run *r, size_t i, const x4_httpc_resp *resp) {
    step_rt *s = &r->st[i];
    json_t *output = NULL;
    int64_t retry_after = -1;
    char why[512];
    int paid_ok = 0;
    if (s->pay) {
        /* the answer to a paid request: read its settlement first; the step's own writes wait
         * for the charge to commit (r->writes holds the finish back meanwhile) */
        char pwhy[512];
        step_ctx *pc = ctx_new(r, i);
        if (pc) r->writes++;
        x4_pay_result pr = x4_paystep_finish(s->pay, resp, pwhy, sizeof pwhy, pc ? on_pay_recorded : NULL, pc);
        s->pay = NULL;
        if (pr != X4_PAY_REFUSED) s->charged = 1;
        int ok2xx = resp->status == X4_HTTPC_OK && resp->code >= 200 && resp->code < 300;
        if (pr == X4_PAY_REFUSED || (pr == X4_PAY_UNRESOLVED && !ok2xx)) {
            /* never retried: paying again before the first payment is resolved could pay twice */
            step_fail(r, i, pwhy);
            return;
        }
        paid_ok = pc != NULL;
    }
    const x4_plan_step *pst = &r->plan->steps[i];
    x4_step_in in = {r->e->catalog ? x4_catalog_get(r->e->catalog, pst->service) : NULL, r->id, pst->id, s->attempts,
                     NULL, 0, 0, 0};
    x4_outcome oc = in.svc ? x4_step_parse(r->e->lua, &in, resp, &output, &retry_after, why, sizeof why)
                           : x4_adapter_http_classify(resp, &output, &retry_after, why, sizeof why);
    if (oc == X4_OUT_OK && paid_ok) {
        s->state = ST_WRITING;
        s->settled_output = output; /* written by on_pay_recorded */
        return;
    }
    if (oc == X4_OUT_PAYMENT_REQUIRED && !r->failed) {
        s->paying = 1;
        step_ctx *pc = ctx_new(r, i);
        if (!pc) {
            step_fail(r, i, "out of memory");
            return;
        }
        x4_paystep_begin(r->e, r->id, r->plan->steps[i].id, s->attempts, r->plan->steps[i].price, resp, on_pay_ready, pc);
        return;
    }
    if (resp->status == X4_HTTPC_CANCELLED && r->deadline_hit) {
        snprintf(why, sizeof why, "maxTime exceeded");
        oc = X4_OUT_FAIL;
    }
    if (oc == X4_OUT_OK) step_succeed(r, i, output);
    else retry_decide(r, i, resp, oc, why, retry_after);
}

/* ---- the run ---- */

static void pump(x4_run *r) {
    if (r->dead || r->failed || r->finishing || r->e->stopping) return;
    x4_engine *e = r->e;
    struct x4_sched *sc = e->sched;
    run_ref(r); /* a synchronous write failure may drop the table's reference */
    for (size_t t = 0; t < r->plan->nsteps && !r->dead; t++) {
        size_t i = r->plan->topo[t];
        step_rt *s = &r->st[i];
        if (s->state != ST_PENDING || s->unmet > 0) continue;
        if (r->running >= e->cfg.workflow_concurrency) break;
        if (sc->running >= (size_t)e->cfg.max_concurrency) {
            if (!r->starved) {
                r->starved = 1;
                r->starved_next = NULL;
                if (sc->starved_tail) sc->starved_tail->starved_next = r;
                else sc->starved_head = r;
                sc->starved_tail = r;
            }
            break;
        }
        step_start(r, i);
    }
    run_unref(r);
}

static void on_finished(PGresult *res, const char *err, void *ud) {
    x4_run *r = ud;
    if (!r->dead) {
        if (err) x4_warn("sched", "%s: final write failed (%s); leaving it to the lease", r->id, err);
        else x4_events_publish_rows(r->e, res);
        run_kill(r, "finished");
    }
    run_unref(r);
}

/* A completed workflow's output: the outputs of its sink steps (no dependents), by step id. */
static json_t *run_output(x4_run *r) {
    json_t *output = json_object();
    for (size_t i = 0; output && i < r->plan->nsteps; i++)
        if (r->st[i].ndependents == 0)
            json_object_set(output, r->plan->steps[i].id, r->st[i].output ? r->st[i].output : json_null());
    return output;
}

/* A failed workflow with succeeded steps: executing → compensating (still ours), and the
 * compensator (exec/compensate.h) takes over. */
static void on_compensating(PGresult *res, const char *err, void *ud) {
    x4_run *r = ud;
    if (!r->dead) {
        const char *moved = !err && PQntuples(res) == 1 ? x4_pg_val(res, 0, "moved") : NULL;
        if (err) x4_warn("sched", "%s: the compensating write failed (%s); leaving it to the lease", r->id, err);
        int ok = moved && moved[0] == 't';
        x4_engine *e = r->e;
        char id[sizeof r->id];
        memcpy(id, r->id, sizeof id);
        run_kill(r, ok ? "compensating" : "workflow no longer executing under this lease");
        if (ok) x4_comp_resume(e, id);
    }
    run_unref(r);
}

static void begin_compensation(x4_run *r) {
    const char *params[] = {r->id, r->e->owner, "failed", r->error ? r->error : "failed"};
    run_ref(r);
    x4_pg_query(r->e->pg, "SELECT x4_wf_compensate($1, $2, $3, $4) AS moved", 4, params, on_compensating, r);
}

static void maybe_finish(x4_run *r) {
    if (r->dead || r->finishing || r->writes > 0) return;
    for (size_t i = 0; i < r->plan->nsteps; i++) {
        int st = r->st[i].state;
        if (st != ST_SUCCEEDED && st != ST_FAILED && st != ST_SKIPPED) return;
    }
    r->finishing = 1;
    if (r->failed) {
        for (size_t i = 0; i < r->plan->nsteps; i++)
            if (r->st[i].state == ST_SUCCEEDED) {
                begin_compensation(r);
                return;
            }
    }
    json_t *output = NULL, *data;
    const char *status, *type;
    if (r->failed) {
        status = "failed";
        type = "workflow.failed";
        data = json_pack("{s:s}", "error", r->error ? r->error : "failed");
    } else {
        status = "completed";
        type = "workflow.completed";
        output = run_output(r);
        data = json_pack("{s:O}", "output", output);
    }
    char *out = output ? json_dumps(output, JSON_COMPACT) : NULL;
    char *d = json_dumps(data, JSON_COMPACT);
    json_decref(output);
    json_decref(data);
    const char *params[] = {r->id, r->e->owner, status, out, r->failed ? r->error : NULL, type, d};
    run_ref(r);
    x4_pg_query(r->e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_finish($1,$2,$3,$4::jsonb,$5,$6,$7::jsonb) e", 7, params,
                on_finished, r);
    free(out);
    free(d);
}

static void on_deadline(uv_timer_t *t) {
    step_timer *st = t->data;
    x4_run *r = st->run;
    timer_drop(&r->deadline);
    if (r->dead || r->finishing) return;
    r->deadline_hit = 1;
    if (!r->failed) {
        r->failed = 1;
        free(r->error);
        r->error = strdup("maxTime exceeded");
    }
    skip_rest(r, "maxTime exceeded");
    for (size_t i = 0; i < r->plan->nsteps && !r->dead; i++)
        if (r->st[i].call) {
            x4_httpc_call *c = r->st[i].call;
            r->st[i].call = NULL;
            x4_httpc_cancel(c);
        }
    if (!r->dead) maybe_finish(r);
}

typedef struct {
    x4_engine *e;
    char id[96];
    uint64_t sent_ms;
} load_ctx;

static int state_of(const char *s) {
    if (!strcmp(s, "succeeded")) return ST_SUCCEEDED;
    if (!strcmp(s, "failed")) return ST_FAILED;
    if (!strcmp(s, "skipped")) return ST_SKIPPED;
    return ST_PENDING; /* pending, and running/retrying interrupted by a crash: run again */
}

/* Installs and starts a run: plan_j the stored plan, steps_j the stored step rows (an empty
 * array for a fresh run), max_time (NULL: none) and elapsed the workflow's time budget so far,
 * loaded_ms when the query that read (or took) the lease was sent. */
static int run_install(x4_engine *e, const char *id, json_t *plan_j, json_t *steps_j, const char *max_time,
                       long long elapsed, uint64_t loaded_ms, int prestarted) {
    json_t *errors = NULL;
    x4_run *r = calloc(1, sizeof *r);
    if (!r) goto fail_load;
    r->e = e;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->refs = 1;
    r->loaded_ms = loaded_ms;
    if (x4_plan_parse(plan_j, e->catalog, X4_NO_MAX_COST, &r->plan, &errors) < 0) {
        char *why = json_dumps(errors, JSON_COMPACT);
        x4_warn("sched", "%s: stored plan no longer valid against the catalog: %s", r->id, why ? why : "?");
        free(why);
        /* Fail it rather than leave it to be claimed forever. */
        const char *params[] = {r->id, e->owner, "failed", NULL, "the stored plan is no longer valid against the catalog",
                                "workflow.failed", "{\"error\":\"the stored plan is no longer valid against the catalog\"}"};
        x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_finish($1,$2,$3,$4::jsonb,$5,$6,$7::jsonb) e", 7, params,
                    NULL, NULL);
        free(r);
        json_decref(errors);
        return -1;
    }
    json_decref(errors);
    size_t n = r->plan->nsteps;
    r->st = calloc(n, sizeof *r->st);
    if (!r->st) goto fail_load;
    for (size_t i = 0; i < n; i++) {
        x4_plan_step *ps = &r->plan->steps[i];
        r->st[i].unmet = (int)ps->ndeps;
        for (size_t d = 0; d < ps->ndeps; d++) {
            step_rt *dep = &r->st[ps->deps[d]];
            size_t *nd = realloc(dep->dependents, (dep->ndependents + 1) * sizeof *nd);
            if (!nd) goto fail_load;
            dep->dependents = nd;
            dep->dependents[dep->ndependents++] = i;
        }
    }
    size_t k;
    json_t *row;
    json_array_foreach(steps_j, k, row) {
        ssize_t i = x4_plan_find(r->plan, json_string_value(json_object_get(row, "id")));
        if (i < 0) continue;
        step_rt *s = &r->st[i];
        const char *svc = json_string_value(json_object_get(row, "service"));
        if (svc && strcmp(svc, r->plan->steps[i].service) != 0) { /* failed over before (sql/009) */
            char *dup = strdup(svc);
            if (!dup) goto fail_load;
            free(r->plan->steps[i].service);
            r->plan->steps[i].service = dup;
        }
        s->state = state_of(json_string_value(json_object_get(row, "status")) ?: "pending");
        s->attempts = (int)json_integer_value(json_object_get(row, "attempts"));
        json_t *o = json_object_get(row, "output");
        if (s->state == ST_SUCCEEDED) s->output = json_incref(o ? o : json_null());
        if (s->state == ST_FAILED && !r->failed) {
            r->failed = 1;
            const char *er = json_string_value(json_object_get(row, "error"));
            char msg[700];
            snprintf(msg, sizeof msg, "step %s failed: %s", r->plan->steps[i].id, er ? er : "failed");
            r->error = strdup(msg);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (r->st[i].state == ST_SUCCEEDED)
            for (size_t d = 0; d < r->st[i].ndependents; d++) r->st[r->st[i].dependents[d]].unmet--;
    unsigned b = bucket_of(r->id);
    r->next = e->sched->buckets[b];
    e->sched->buckets[b] = r;
    e->sched->nruns++;
    if (max_time) {
        long long left = atoll(max_time) - elapsed;
        if (left < 0) left = 0;
        r->deadline = timer_new(r, 0);
        if (r->deadline) uv_timer_start(&r->deadline->t, on_deadline, (uint64_t)left, 0);
    }
    x4_info("sched", "%s: running (%zu steps)", r->id, n);
    run_ref(r);
    if (r->failed) skip_rest(r, "workflow failed");
    /* roots stored `running` by the creating transaction, on slots reserved for them
     * (x4_sched_reserve): their requests go out now, without a write of their own */
    for (size_t i = 0; i < n && prestarted > 0 && !r->dead; i++) {
        if (r->plan->steps[i].ndeps != 0 || r->st[i].state != ST_PENDING) continue;
        prestarted--;
        e->sched->running--; /* the reservation becomes this step's slot */
        step_claim(r, i);
        start_landed(r, i);
    }
    if (prestarted > 0) x4_sched_unreserve(e, (size_t)prestarted);
    if (!r->dead) pump(r);
    if (!r->dead) maybe_finish(r);
    run_unref(r);
    return 0;
fail_load:
    x4_error("sched", "%s: cannot load the stored workflow", id);
    if (r) {
        if (r->plan) run_free(r);
        else free(r);
    }
    return -1;
}

static void on_loaded(PGresult *res, const char *err, void *ud) {
    load_ctx *lc = ud;
    x4_engine *e = lc->e;
    json_t *plan_j = NULL, *steps_j = NULL;
    if (e->stopping || run_find(e, lc->id)) goto out;
    if (err || PQntuples(res) != 1) {
        x4_warn("sched", "%s: cannot load (%s)", lc->id, err ? err : "not found");
        goto out;
    }
    const char *owner = x4_pg_val(res, 0, "lease_owner"), *status = x4_pg_val(res, 0, "status");
    if (!owner || strcmp(owner, e->owner) != 0 || !status || strcmp(status, "executing") != 0) goto out;
    json_error_t jerr;
    plan_j = json_loads(x4_pg_val(res, 0, "plan"), 0, &jerr);
    const char *st_text = x4_pg_val(res, 0, "steps");
    steps_j = st_text ? json_loads(st_text, 0, &jerr) : json_array();
    if (!plan_j || !steps_j) {
        x4_error("sched", "%s: cannot load the stored workflow", lc->id);
        goto out;
    }
    const char *el = x4_pg_val(res, 0, "elapsed_ms");
    run_install(e, lc->id, plan_j, steps_j, x4_pg_val(res, 0, "max_time_ms"), el ? atoll(el) : 0, lc->sent_ms, 0);
out:
    json_decref(plan_j);
    json_decref(steps_j);
    free(lc);
}

void x4_sched_start(x4_engine *e, const char *id, json_t *plan, const char *max_time_ms, uint64_t sent_ms,
                    size_t prestarted) {
    if (e->stopping || run_find(e, id)) {
        x4_sched_unreserve(e, prestarted);
        return;
    }
    json_t *none = json_array();
    if (!none || run_install(e, id, plan, none, max_time_ms, 0, sent_ms, (int)prestarted) < 0) {
        x4_sched_unreserve(e, prestarted);
        if (!none) x4_sched_resume(e, id);
    }
    json_decref(none);
}

size_t x4_sched_reserve(x4_engine *e, size_t n) {
    struct x4_sched *sc = e->sched;
    if (!sc || e->stopping) return 0;
    size_t max = (size_t)e->cfg.max_concurrency, wf = (size_t)e->cfg.workflow_concurrency;
    size_t free_slots = sc->running < max ? max - sc->running : 0;
    if (n > wf) n = wf;
    if (n > free_slots) n = free_slots;
    sc->running += n;
    return n;
}

void x4_sched_unreserve(x4_engine *e, size_t n) {
    if (!e->sched || n == 0) return;
    e->sched->running -= n;
    wake_starved(e);
}

void x4_sched_resume(x4_engine *e, const char *id) {
    if (e->stopping || run_find(e, id)) return;
    load_ctx *lc = calloc(1, sizeof *lc);
    if (!lc) return;
    lc->e = e;
    lc->sent_ms = x4_now_ms();
    snprintf(lc->id, sizeof lc->id, "%s", id);
    const char *params[] = {id};
    x4_pg_query(e->pg,
                "SELECT w.plan::text AS plan, w.status, w.lease_owner, w.max_time_ms, "
                "  (extract(epoch FROM clock_timestamp() - w.started_at) * 1000)::bigint AS elapsed_ms, "
                "  (SELECT json_agg(json_build_object('id', s.id, 'service', s.service, 'status', s.status, 'attempts', s.attempts, "
                "      'output', s.output, 'error', s.error) ORDER BY s.idx) FROM steps s WHERE s.workflow_id = w.id)::text "
                "      AS steps "
                "FROM workflows w WHERE w.id = $1",
                1, params, on_loaded, lc);
}

void x4_sched_abort(x4_engine *e, const char *id, const char *why) {
    x4_run *r = run_find(e, id);
    if (r) run_kill(r, why);
}

void x4_sched_lease_renewed(x4_engine *e, const char *const *ids, size_t n, uint64_t sent_ms) {
    struct x4_sched *s = e->sched;
    /* Collect first: killing a run can synchronously kill others (their chain links change). */
    char (*lost)[96] = NULL;
    size_t nlost = 0, cap = 0;
    for (unsigned b = 0; b < BUCKETS; b++)
        for (x4_run *r = s->buckets[b]; r; r = r->next) {
            int kept = r->loaded_ms >= sent_ms || r->finishing;
            for (size_t i = 0; i < n && !kept; i++) kept = strcmp(ids[i], r->id) == 0;
            if (kept) continue;
            if (nlost == cap) {
                size_t nc = cap ? cap * 2 : 16;
                void *p = realloc(lost, nc * sizeof *lost);
                if (!p) continue;
                lost = p;
                cap = nc;
            }
            memcpy(lost[nlost++], r->id, sizeof r->id);
        }
    for (size_t i = 0; i < nlost; i++) x4_sched_abort(e, lost[i], "lease lost");
    free(lost);
}

void x4_sched_abort_all(x4_engine *e, const char *why) {
    if (!e->sched) return;
    for (unsigned b = 0; b < BUCKETS; b++)
        while (e->sched->buckets[b]) run_kill(e->sched->buckets[b], why);
}

static void on_event(const x4_event *ev, void *ud) {
    x4_engine *e = ud;
    if (strcmp(ev->type, "workflow.cancelled") == 0) x4_sched_abort(e, ev->workflow_id, "cancelled");
    else if (strcmp(ev->type, "workflow.cancelling") == 0) x4_sched_abort(e, ev->workflow_id, "cancelled");
    else if (strcmp(ev->type, "workflow.compensating") == 0) x4_sched_abort(e, ev->workflow_id, "compensating");
}

int x4_sched_open(x4_engine *e) {
    e->sched = calloc(1, sizeof *e->sched);
    if (!e->sched) return -1;
    e->sched->e = e;
    uv_check_init(e->loop, &e->sched->flush);
    e->sched->flush.data = e->sched;
    e->sched->flush_open = 1;
    x4_events_listen(e, on_event, e);
    return 0;
}

void x4_sched_close(x4_engine *e) {
    x4_sched_abort_all(e, "shutting down");
    if (e->sched && e->sched->flush_open) {
        on_flush(&e->sched->flush); /* drops the (now dead) queued runs */
        e->sched->flush_open = 0;
        uv_close((uv_handle_t *)&e->sched->flush, NULL);
    }
}

void x4_sched_free(x4_engine *e);
void x4_sched_free(x4_engine *e) {
    free(e->sched);
    e->sched = NULL;
}

size_t x4_sched_active(const x4_engine *e) { return e->sched ? e->sched->nruns : 0; }
size_t x4_sched_running_steps(const x4_engine *e) { return e->sched ? e->sched->running : 0; }

size_t x4_sched_queue_depth(const x4_engine *e) {
    size_t n = 0;
    if (!e->sched) return 0;
    for (x4_run *r = e->sched->starved_head; r; r = r->starved_next)
        for (size_t i = 0; i < r->plan->nsteps; i++)
            if (r->st[i].state == ST_PENDING && r->st[i].unmet == 0) n++;
    return n;
}
