/* exec/workflow.c — see workflow.h. */
#include "exec/workflow.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "exec/planning.h"
#include "exec/sched.h"
#include "pay/paystep.h"
#include "plan/matcher.h"
#include "plan/plan.h"
#include "store/pg.h"

typedef struct {
    x4_engine *e;
    char id[96];
    uint64_t sent_ms;
} wf_ctx;

/* Workflows this process is planning right now, so a lease cycle does not plan one twice. */
typedef struct planning {
    char id[96];
    struct planning *next;
} planning;
static planning *g_planning;
static uint64_t g_lease_ok_ms; /* last successful lease cycle */

static int planning_has(const char *id) {
    for (planning *p = g_planning; p; p = p->next)
        if (!strcmp(p->id, id)) return 1;
    return 0;
}

static void planning_add(const char *id) {
    planning *p = calloc(1, sizeof *p);
    if (!p) return;
    snprintf(p->id, sizeof p->id, "%s", id);
    p->next = g_planning;
    g_planning = p;
}

static void planning_del(const char *id) {
    for (planning **pp = &g_planning; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            planning *p = *pp;
            *pp = p->next;
            free(p);
            return;
        }
}

static wf_ctx *ctx_new(x4_engine *e, const char *id) {
    wf_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->e = e;
    c->sent_ms = x4_now_ms();
    snprintf(c->id, sizeof c->id, "%s", id ? id : "");
    return c;
}

static void on_published(PGresult *res, const char *err, void *ud) {
    wf_ctx *c = ud;
    if (err) x4_warn("workflow", "%s: write failed: %s", c->id, err);
    else x4_events_publish_rows(c->e, res);
    free(c);
}

static void plan_failed(x4_engine *e, const char *id, const char *why) {
    x4_info("workflow", "%s: planning failed: %s", id, why);
    json_t *d = json_pack("{s:s}", "error", why);
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    wf_ctx *c = ctx_new(e, id);
    if (!data || !c) {
        free(data);
        free(c);
        return;
    }
    const char *params[] = {id, "failed", "workflow.failed", data, why};
    x4_pg_query(e->pg,
                "SELECT " X4_EV_COLS " FROM x4_wf_transition($1, ARRAY['planning'], $2, $3, $4::jsonb, $5) e", 5,
                params, on_published, c);
    free(data);
}

/* Stores a valid plan: planning -> awaiting_approval. */
static void store_plan(x4_engine *e, const char *id, const x4_plan *plan, const char *planner) {
    json_t *norm = x4_plan_to_json(plan);
    char *text = norm ? json_dumps(norm, JSON_COMPACT) : NULL;
    json_decref(norm);
    wf_ctx *w = text ? ctx_new(e, id) : NULL;
    if (!w) {
        free(text);
        return;
    }
    char est[24], ttl[24];
    snprintf(est, sizeof est, "%llu", (unsigned long long)plan->estimate);
    snprintf(ttl, sizeof ttl, "%lld", (long long)e->cfg.approval_ttl_ms);
    const char *params[] = {id, text, est, ttl, planner};
    x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_plan_ready($1, $2::jsonb, $3::bigint, $4::bigint, $5) e", 5,
                params, on_published, w);
    free(text);
}

/* The offline planner (synchronous, no network). */
static void plan_offline(x4_engine *e, const char *id, const char *input, uint64_t max_cost) {
    json_t *plan_j = NULL, *errors = NULL;
    x4_plan *plan = NULL;
    char why[512];
    if (x4_matcher_plan(e->catalog, input, max_cost, &plan_j, why, sizeof why) < 0) {
        plan_failed(e, id, why);
        goto out;
    }
    if (x4_plan_parse(plan_j, e->catalog, max_cost, &plan, &errors) < 0) {
        json_t *first = json_array_get(errors, 0);
        snprintf(why, sizeof why, "the planner produced no valid plan: %s: %s",
                 json_string_value(json_object_get(first, "field")) ?: "plan",
                 json_string_value(json_object_get(first, "problem")) ?: "invalid");
        plan_failed(e, id, why);
        goto out;
    }
    store_plan(e, id, plan, "offline");
out:
    json_decref(plan_j);
    json_decref(errors);
    x4_plan_free(plan);
}

typedef struct {
    x4_engine *e;
    char id[96];
    char *input;
    uint64_t max_cost;
} llm_ctx;

static void on_llm_plan(x4_plan *plan, const char *why, const char *planner, int cancelled, void *ud) {
    llm_ctx *q = ud;
    x4_engine *e = q->e;
    if (!cancelled && !e->stopping) {
        if (plan) {
            store_plan(e, q->id, plan, planner);
        } else {
            /* say why, then plan offline */
            json_t *d = json_pack("{s:s, s:s}", "reason", why, "planner", planner);
            char *data = json_dumps(d, JSON_COMPACT);
            json_decref(d);
            wf_ctx *w = data ? ctx_new(e, q->id) : NULL;
            if (w) {
                const char *params[] = {q->id, data};
                x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_emit($1, 'workflow.planner_fallback', $2::jsonb) e",
                            2, params, on_published, w);
            }
            free(data);
            plan_offline(e, q->id, q->input, q->max_cost);
        }
    }
    x4_plan_free(plan);
    planning_del(q->id);
    free(q->input);
    free(q);
}

static void on_plan_input(PGresult *res, const char *err, void *ud) {
    wf_ctx *c = ud;
    x4_engine *e = c->e;
    if (err || PQntuples(res) != 1) goto out;
    const char *status = x4_pg_val(res, 0, "status"), *owner = x4_pg_val(res, 0, "lease_owner");
    if (!status || strcmp(status, "planning") || !owner || strcmp(owner, e->owner)) goto out;
    const char *input = x4_pg_val(res, 0, "input"), *mc = x4_pg_val(res, 0, "max_cost");
    uint64_t max_cost = mc ? strtoull(mc, NULL, 10) : X4_NO_MAX_COST;
    if (!e->catalog || x4_catalog_count(e->catalog) == 0) {
        plan_failed(e, c->id, "no services are known: set CATALOG_FILE or REGISTRY_URL");
        goto out;
    }
    if (x4_planning_llm_enabled()) {
        llm_ctx *q = calloc(1, sizeof *q);
        if (q && (q->input = strdup(input))) {
            q->e = e;
            q->max_cost = max_cost;
            snprintf(q->id, sizeof q->id, "%s", c->id);
            x4_planning_llm(e, input, max_cost, on_llm_plan, q); /* planning_del when it answers */
            free(c);
            return;
        }
        free(q);
    }
    plan_offline(e, c->id, input, max_cost);
out:
    planning_del(c->id);
    free(c);
}

void x4_wf_plan(x4_engine *e, const char *id) {
    if (planning_has(id)) return;
    wf_ctx *c = ctx_new(e, id);
    if (!c) return;
    planning_add(id);
    const char *params[] = {id};
    x4_pg_query(e->pg, "SELECT status, lease_owner, input, max_cost FROM workflows WHERE id = $1", 1, params,
                on_plan_input, c);
}

/* ---- timers ---- */

/* Every leased row is driven here, renewed or newly claimed: a run dropped after a failed
 * write (its lease still ours) is picked up again on the next cycle. Resuming a run already in
 * memory, or planning one already being planned, is a no-op. */
static void on_lease_cycle(PGresult *res, const char *err, void *ud) {
    wf_ctx *c = ud;
    x4_engine *e = c->e;
    if (e->stopping) goto out;
    if (err) {
        x4_warn("workflow", "lease cycle failed: %s", err);
        /* Past LEASE_MS without a renewal another process may own our workflows: stop calling
         * services for them (fencing already refuses our writes). */
        if (g_lease_ok_ms && x4_now_ms() - g_lease_ok_ms > (uint64_t)e->cfg.lease_ms)
            x4_sched_abort_all(e, "leases could not be renewed");
        goto out;
    }
    g_lease_ok_ms = c->sent_ms;
    int n = PQntuples(res);
    const char **renewed = calloc((size_t)n + 1, sizeof *renewed);
    if (!renewed) goto out;
    size_t nr = 0;
    for (int i = 0; i < n; i++) {
        const char *id = x4_pg_val(res, i, "id"), *st = x4_pg_val(res, i, "status"), *cl = x4_pg_val(res, i, "claimed");
        if (!id || !st) continue;
        if (cl && cl[0] == 't') x4_info("workflow", "%s: lease claimed (%s)", id, st);
        if (strcmp(st, "planning") == 0) x4_wf_plan(e, id);
        else if (strcmp(st, "executing") == 0) {
            renewed[nr++] = id;
            x4_sched_resume(e, id);
        }
    }
    x4_sched_lease_renewed(e, renewed, nr, c->sent_ms);
    free(renewed);
out:
    free(c);
}

static void lease_tick(uv_timer_t *t) {
    x4_engine *e = t->data;
    if (e->stopping) return;
    wf_ctx *c = ctx_new(e, NULL);
    if (!c) return;
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)e->cfg.lease_ms);
    const char *params[] = {e->owner, ms, e->claim_others ? "32" : "0"};
    x4_pg_query(e->pg, "SELECT id, status, claimed FROM x4_lease_cycle($1, $2::bigint, $3::int)", 3, params,
                on_lease_cycle, c);
}

void x4_escrow_reconcile(x4_engine *e);

static void expiry_tick(uv_timer_t *t) {
    x4_engine *e = t->data;
    static unsigned ticks;
    if (e->stopping) return;
    ++ticks;
    if (ticks == 2 || ticks % 10 == 0) { /* at start-up, then several times a minute: unsettled withdrawals and payments */
        x4_escrow_reconcile(e);
        x4_paystep_reconcile(e);
    }
    wf_ctx *c = ctx_new(e, "expiry");
    if (!c) return;
    x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_expire_due(200) e", 0, NULL, on_published, c);
}

int x4_wf_open(x4_engine *e) {
    char err[300];
    if (x4_planning_open(e, err, sizeof err) < 0) {
        x4_error("workflow", "%s; planning offline only", err);
    }
    uint64_t lease_every = (uint64_t)(e->cfg.lease_ms / 3);
    uint64_t expiry_every = (uint64_t)(e->cfg.approval_ttl_ms / 4 < 1000 ? e->cfg.approval_ttl_ms / 4 : 1000);
    uv_timer_init(e->loop, &e->lease_timer);
    uv_timer_init(e->loop, &e->expiry_timer);
    e->lease_timer.data = e->expiry_timer.data = e;
    uv_timer_start(&e->lease_timer, lease_tick, 50, lease_every);
    uv_timer_start(&e->expiry_timer, expiry_tick, expiry_every, expiry_every);
    return 0;
}

void x4_wf_close(x4_engine *e) {
    x4_planning_close();
    while (g_planning) planning_del(g_planning->id);
    if (uv_is_active((uv_handle_t *)&e->lease_timer) || e->lease_timer.loop) {
        uv_timer_stop(&e->lease_timer);
        uv_timer_stop(&e->expiry_timer);
        uv_close((uv_handle_t *)&e->lease_timer, NULL);
        uv_close((uv_handle_t *)&e->expiry_timer, NULL);
    }
}
