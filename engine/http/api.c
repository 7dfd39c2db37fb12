/* http/api.c — see api.h. Routes:
 *   GET  /health, /metrics                        no key
 *   POST /workflows/create                        create (explicit plan or planner)
 *   GET  /workflows/:id                           one workflow with its steps
 *   POST /workflows/:id/approve | /cancel
 *   GET  /workflows/:id/stream?since=N            WebSocket (key also as ?access_token=)
 *   GET  /stream                                  WebSocket, many workflows by subscribe messages
 *   GET  /users/:userId/workflows?limit&cursor    newest first
 *   GET  /services?q&limit&offset                 the catalog
 *   POST /admin/policies/reload                   admin key only (others: 403): reload the Lua
 *                                                 policies; 200 {success, version} or 422
 *                                                 {success:false, error} with the old set kept
 * Reads are single SQL statements that build the JSON in PostgreSQL; writes are the SQL
 * functions of sql/001_init.sql, whose event rows are published after they commit. */
#define _GNU_SOURCE 1
#include "http/api.h"
#include "http/api_internal.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/util.h"
#include "exec/approval.h"
#include "exec/compensate.h"
#include "exec/planning.h"
#include "exec/policy.h"
#include "exec/sched.h"
#include "exec/workflow.h"
#include "http/auth.h"
#include "plan/catalog.h"
#include "plan/plan.h"
#include "store/pg.h"






/* A route of this file only (not in api_internal.h's enum: no other route file serves it). */
#define R_POLICY_RELOAD ((enum route)1000)

/* ---- answers ---- */

static x4_stats *g_stats; /* this process's counters (one engine per process) */

void x4_api_error(x4_req *r, int status, const char *msg, json_t *details) {
    if (g_stats) {
        if (status >= 500) g_stats->http_5xx++;
        else g_stats->http_4xx++;
    }
    json_t *j = json_pack("{s:b, s:s}", "success", 0, "error", msg);
    if (details) json_object_set_new(j, "details", details);
    x4_req_respond_json(r, status, j);
}

void x4_api_raw(x4_req *r, int status, const char *prefix, const char *json_text, const char *suffix) {
    x4_buf b = {0};
    if (x4_buf_puts(&b, prefix) < 0 || x4_buf_puts(&b, json_text) < 0 || x4_buf_puts(&b, suffix) < 0) {
        x4_buf_free(&b);
        x4_api_error(r, 500, "out of memory", NULL);
        return;
    }
    x4_req_respond(r, status, "application/json", b.data, b.len);
    x4_buf_free(&b);
}

void x4_api_db_error(api_ctx *c, const char *err) {
    x4_warn("api", "database error: %s", err);
    x4_api_error(c->req, 503, "storage unavailable, try again", NULL);
}

api_ctx *x4_api_ctx_new(x4_engine *e, x4_req *req) {
    api_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        x4_api_error(req, 500, "out of memory", NULL);
        return NULL;
    }
    c->e = e;
    c->req = req;
    return c;
}

void x4_api_detail(json_t *details, const char *field, const char *problem) {
    json_array_append_new(details, json_pack("{s:s, s:s}", "field", field, "problem", problem));
}

/* ---- routing ---- */

int x4_api_valid_id(const char *s, size_t n) {
    if (n == 0 || n > ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.' || s[i] == '@')) return 0;
    return 1;
}

/* Splits the path into at most 4 segments; returns their count or -1 if there are more. */
static int split(const char *p, size_t n, const char *seg[4], size_t len[4]) {
    int k = 0;
    size_t i = 0;
    if (n == 0 || p[0] != '/') return -1;
    while (i < n) {
        while (i < n && p[i] == '/') i++;
        if (i >= n) break;
        size_t j = i;
        while (j < n && p[j] != '/') j++;
        if (k == 4) return -1;
        seg[k] = p + i;
        len[k] = j - i;
        k++;
        i = j;
    }
    return k;
}

static int seg_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

/* Returns the route and the method it wants (NULL: any). */
static enum route match(const x4_req *r, char id[ID_MAX + 1], const char **want) {
    const char *seg[4];
    size_t len[4];
    int k = split(r->path, r->path_len, seg, len);
    *want = "GET";
    id[0] = 0;
    if (k == 1 && seg_is(seg[0], len[0], "health")) return R_HEALTH;
    if (k == 1 && seg_is(seg[0], len[0], "metrics")) return R_METRICS;
    if (k == 1 && seg_is(seg[0], len[0], "services")) return R_SERVICES;
    if (k == 1 && seg_is(seg[0], len[0], "stream")) return R_STREAM_MUX;
    if (k == 3 && seg_is(seg[0], len[0], "admin") && seg_is(seg[1], len[1], "policies") &&
        seg_is(seg[2], len[2], "reload")) {
        *want = "POST";
        return R_POLICY_RELOAD;
    }
    if (k >= 2 && seg_is(seg[0], len[0], "workflows")) {
        if (k == 2 && seg_is(seg[1], len[1], "create")) {
            *want = "POST";
            return R_CREATE;
        }
        if (!x4_api_valid_id(seg[1], len[1])) return R_NONE;
        memcpy(id, seg[1], len[1]);
        id[len[1]] = 0;
        if (k == 2) return R_GET;
        if (k == 3 && seg_is(seg[2], len[2], "approve")) {
            *want = "POST";
            return R_APPROVE;
        }
        if (k == 3 && seg_is(seg[2], len[2], "cancel")) {
            *want = "POST";
            return R_CANCEL;
        }
        if (k == 3 && seg_is(seg[2], len[2], "stream")) return R_STREAM;
        return R_NONE;
    }
    if (k >= 2 && seg_is(seg[0], len[0], "escrow")) {
        if (k == 2 && seg_is(seg[1], len[1], "address")) return R_ESCROW_ADDRESS;
        if (k != 3 || !x4_api_valid_id(seg[1], len[1])) return R_NONE;
        memcpy(id, seg[1], len[1]);
        id[len[1]] = 0;
        static const struct { const char *name, *method; enum route r; } sub[] = {
            {"balance", "GET", R_ESCROW_BALANCE},   {"create", "POST", R_ESCROW_CREATE},
            {"deposit", "POST", R_ESCROW_DEPOSIT},  {"history", "GET", R_ESCROW_HISTORY},
            {"withdraw", "POST", R_ESCROW_WITHDRAW},
        };
        for (size_t i = 0; i < sizeof sub / sizeof *sub; i++)
            if (seg_is(seg[2], len[2], sub[i].name)) {
                *want = sub[i].method;
                return sub[i].r;
            }
        return R_NONE;
    }
    if (k == 3 && seg_is(seg[0], len[0], "users") && seg_is(seg[2], len[2], "workflows") && x4_api_valid_id(seg[1], len[1])) {
        memcpy(id, seg[1], len[1]);
        id[len[1]] = 0;
        return R_LIST;
    }
    return R_NONE;
}

/* ---- health and metrics ---- */

static struct {
    uint64_t at_ms;
    long long completed, failed, cancelled, expired, active, waiting, avg_ms, total_cost;
    int pg_ok;
} g_health;

static void health_answer(api_ctx *c) {
    x4_engine *e = c->e;
    int redis_ok = e->bus && x4_bus_healthy(e->bus);
    int pg_ok = g_health.pg_ok && x4_pg_healthy(e->pg);
    long long done = g_health.completed + g_health.failed;
    char cost[40], atomic[24];
    x4_money_format((uint64_t)g_health.total_cost, X4_USDC_DECIMALS, cost);
    snprintf(atomic, sizeof atomic, "%lld", g_health.total_cost);
    uint64_t reqs = e->stats.http_requests ? e->stats.http_requests : 1;
    uint64_t steps = e->stats.steps_started ? e->stats.steps_started : 1;
    if (c->route == R_HEALTH) {
        json_t *j = json_pack(
            "{s:s, s:s, s:b, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:{s:s, s:s}, s:I, s:I, s:I}, "
            "s:{s:f, s:f}, s:I}",
            "status", pg_ok && redis_ok ? "ok" : "degraded", "version", X4_VERSION, "postgres", pg_ok, "redis",
            redis_ok, "workflows", "active", (json_int_t)g_health.active, "awaitingOrPlanning",
            (json_int_t)g_health.waiting, "completed", (json_int_t)g_health.completed, "failed",
            (json_int_t)g_health.failed, "cancelled", (json_int_t)g_health.cancelled, "expired",
            (json_int_t)g_health.expired, "successRate", done ? (double)g_health.completed / (double)done : 1.0,
            "averageExecutionMs", (json_int_t)g_health.avg_ms, "totalCostProcessed", "amount", cost, "atomic", atomic,
            "queueDepth", (json_int_t)x4_sched_queue_depth(e), "runningHere", (json_int_t)x4_sched_active(e),
            "stepsRunningHere", (json_int_t)x4_sched_running_steps(e), "errorRates", "http5xx",
            (double)e->stats.http_5xx / (double)reqs, "stepFailures", (double)e->stats.steps_failed / (double)steps,
            "websockets", (json_int_t)x4_streams_count(e));
        if (j) json_object_set_new(j, "policies", x4_policy_describe(e));
        x4_req_respond_json(c->req, pg_ok && redis_ok ? 200 : 503, j);
        return;
    }
    x4_buf b = {0};
    x4_buf_printf(&b,
                  "# HELP x402r_up 1 when PostgreSQL and Redis answer\n# TYPE x402r_up gauge\nx402r_up %d\n"
                  "# TYPE x402r_postgres_up gauge\nx402r_postgres_up %d\n# TYPE x402r_redis_up gauge\nx402r_redis_up %d\n"
                  "# HELP x402r_workflows Workflows by status (all processes)\n# TYPE x402r_workflows gauge\n"
                  "x402r_workflows{status=\"completed\"} %lld\nx402r_workflows{status=\"failed\"} %lld\n"
                  "x402r_workflows{status=\"cancelled\"} %lld\nx402r_workflows{status=\"expired\"} %lld\n"
                  "x402r_workflows{status=\"active\"} %lld\nx402r_workflows{status=\"waiting\"} %lld\n"
                  "# TYPE x402r_workflow_success_ratio gauge\nx402r_workflow_success_ratio %.6f\n"
                  "# TYPE x402r_workflow_avg_execution_ms gauge\nx402r_workflow_avg_execution_ms %lld\n"
                  "# HELP x402r_cost_processed_atomic Total charged, atomic units\n"
                  "# TYPE x402r_cost_processed_atomic counter\nx402r_cost_processed_atomic %lld\n"
                  "# TYPE x402r_queue_depth gauge\nx402r_queue_depth %zu\n"
                  "# TYPE x402r_runs_active gauge\nx402r_runs_active %zu\n"
                  "# TYPE x402r_steps_running gauge\nx402r_steps_running %zu\n"
                  "# TYPE x402r_http_requests_total counter\nx402r_http_requests_total %llu\n"
                  "# TYPE x402r_http_responses_5xx_total counter\nx402r_http_responses_5xx_total %llu\n"
                  "# TYPE x402r_http_responses_4xx_total counter\nx402r_http_responses_4xx_total %llu\n"
                  "# TYPE x402r_steps_started_total counter\nx402r_steps_started_total %llu\n"
                  "# TYPE x402r_steps_succeeded_total counter\nx402r_steps_succeeded_total %llu\n"
                  "# TYPE x402r_steps_failed_total counter\nx402r_steps_failed_total %llu\n"
                  "# TYPE x402r_step_retries_total counter\nx402r_step_retries_total %llu\n"
                  "# TYPE x402r_events_published_total counter\nx402r_events_published_total %llu\n"
                  "# TYPE x402r_events_remote_total counter\nx402r_events_remote_total %llu\n"
                  "# TYPE x402r_websockets gauge\nx402r_websockets %zu\n"
                  "# TYPE x402r_websockets_dropped_slow_total counter\nx402r_websockets_dropped_slow_total %llu\n"
                  "# TYPE x402r_pg_pending gauge\nx402r_pg_pending %zu\n",
                  pg_ok && redis_ok, pg_ok, redis_ok, g_health.completed, g_health.failed, g_health.cancelled,
                  g_health.expired, g_health.active, g_health.waiting,
                  done ? (double)g_health.completed / (double)done : 1.0, g_health.avg_ms, g_health.total_cost,
                  x4_sched_queue_depth(e), x4_sched_active(e), x4_sched_running_steps(e),
                  (unsigned long long)e->stats.http_requests, (unsigned long long)e->stats.http_5xx,
                  (unsigned long long)e->stats.http_4xx, (unsigned long long)e->stats.steps_started,
                  (unsigned long long)e->stats.steps_succeeded, (unsigned long long)e->stats.steps_failed,
                  (unsigned long long)e->stats.step_retries, (unsigned long long)e->stats.events_published,
                  (unsigned long long)e->stats.events_remote, x4_streams_count(e),
                  (unsigned long long)e->stats.ws_dropped_slow, x4_pg_pending(e->pg));
    x4_planning_metrics(&b);
    if (!b.data) x4_api_error(c->req, 500, "out of memory", NULL);
    else x4_req_respond(c->req, 200, "text/plain; version=0.0.4", b.data, b.len);
    x4_buf_free(&b);
}

static void on_health(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    g_health.pg_ok = err == NULL;
    if (!err && PQntuples(res) == 1) {
        g_health.at_ms = x4_now_ms();
        g_health.completed = x4_pg_ll(res, 0, "completed", 0);
        g_health.failed = x4_pg_ll(res, 0, "failed", 0);
        g_health.cancelled = x4_pg_ll(res, 0, "cancelled", 0);
        g_health.expired = x4_pg_ll(res, 0, "expired", 0);
        g_health.active = x4_pg_ll(res, 0, "active", 0);
        g_health.waiting = x4_pg_ll(res, 0, "waiting", 0);
        g_health.avg_ms = x4_pg_ll(res, 0, "avg_ms", 0);
        g_health.total_cost = x4_pg_ll(res, 0, "total_cost", 0);
    }
    health_answer(c);
    free(c);
}

static void handle_health(api_ctx *c) {
    /* The figures cover every process sharing the database; cached for a second so a
     * scraper cannot turn /health into load. */
    if (g_health.at_ms && x4_now_ms() - g_health.at_ms < 1000 && x4_pg_healthy(c->e->pg)) {
        health_answer(c);
        free(c);
        return;
    }
    x4_pg_query(c->e->pg,
                "SELECT count(*) FILTER (WHERE status = 'completed') AS completed, "
                "count(*) FILTER (WHERE status = 'failed') AS failed, "
                "count(*) FILTER (WHERE status = 'cancelled') AS cancelled, "
                "count(*) FILTER (WHERE status = 'expired') AS expired, "
                "count(*) FILTER (WHERE status IN ('executing','compensating')) AS active, "
                "count(*) FILTER (WHERE status IN ('planning','awaiting_approval')) AS waiting, "
                "COALESCE(avg(extract(epoch FROM finished_at - started_at) * 1000) FILTER (WHERE status = 'completed'), 0)::bigint AS avg_ms, "
                "COALESCE(sum(total_cost), 0) AS total_cost FROM workflows",
                0, NULL, on_health, c);
}

/* ---- create ---- */

static void on_created(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err && c->run_plan && (!strncmp(err, "X4001: ", 7) || !strncmp(err, "X4002: ", 7))) {
        /* create with approve: not enough money or over the daily cap; nothing was stored */
        x4_api_error(c->req, 402, err + 7, NULL);
        goto out;
    }
    if (err) {
        x4_api_db_error(c, err);
        goto out;
    }
    x4_events_publish_rows(c->e, res);
    const char *ts = PQntuples(res) > 0 ? x4_pg_val(res, 0, "ts") : "";
    json_t *j = json_pack("{s:b, s:{s:s, s:s, s:s}}", "success", 1, "workflow", "id", c->id, "status",
                          c->run_plan ? "executing" : c->has_plan ? "awaiting_approval" : "planning", "createdAt",
                          ts ? ts : "");
    x4_req_respond_json(c->req, 201, j);
    if (c->plan_t0_ns) x4_planning_latency_record(X4_PLANNING_STORE, uv_hrtime() - c->plan_t0_ns);
    if (c->run_plan) {
        x4_sched_start(c->e, c->id, c->run_plan, c->arg[0] ? c->arg : NULL, c->sent_ms, c->nstarted);
        c->nstarted = 0;
    }
    else if (!c->has_plan) x4_wf_plan(c->e, c->id);
out:
    x4_sched_unreserve(c->e, c->nstarted); /* not created: the reserved slots go back */
    json_decref(c->run_plan);
    free(c);
}

/* A validated create request waiting for the plan cache (x4_wf_cache_probe). */
typedef struct {
    api_ctx *c;
    char *input;
    char mcs[24], mts[24];
    int has_mcs, has_mts;
    uint64_t t0_ns;
} create_job;

static void create_query(api_ctx *c, const char *input, const char *mcs, const char *mts, const x4_plan *plan,
                         const char *planner) {
    x4_engine *e = c->e;
    char est[24], lease[24], ttl[24];
    snprintf(lease, sizeof lease, "%lld", (long long)e->cfg.lease_ms);
    snprintf(ttl, sizeof ttl, "%lld", (long long)e->cfg.approval_ttl_ms);
    char *plan_text = NULL;
    if (plan) {
        json_t *norm = c->run_plan ? json_incref(c->run_plan) : x4_plan_to_json(plan);
        plan_text = norm ? json_dumps(norm, JSON_COMPACT) : NULL;
        json_decref(norm);
        if (!plan_text) {
            x4_api_error(c->req, 500, "out of memory", NULL);
            json_decref(c->run_plan);
            free(c);
            return;
        }
        snprintf(est, sizeof est, "%llu", (unsigned long long)plan->estimate);
    }
    c->has_plan = plan != NULL;
    if (c->run_plan) { /* create and approve: one transaction (sql/093_create_approved.sql) */
        char pct[16], cap[24];
        snprintf(pct, sizeof pct, "%d", e->cfg.hold_allowance_pct);
        snprintf(cap, sizeof cap, "%llu", (unsigned long long)e->cfg.daily_cap);
        /* the roots this process has slots for are stored `running` in the same transaction */
        size_t nroots = 0;
        for (size_t i = 0; i < plan->nsteps; i++) nroots += plan->steps[i].ndeps == 0;
        c->nstarted = x4_sched_reserve(e, nroots);
        x4_buf roots = {0};
        int rc = x4_buf_puts(&roots, "{");
        for (size_t i = 0, k = 0; i < plan->nsteps && k < c->nstarted; i++) {
            if (plan->steps[i].ndeps != 0) continue;
            rc |= (k++ ? x4_buf_puts(&roots, ",") : 0) | x4_buf_pg_array_elem(&roots, plan->steps[i].id);
        }
        rc |= x4_buf_puts(&roots, "}");
        if (rc) {
            x4_sched_unreserve(e, c->nstarted);
            x4_buf_free(&roots);
            x4_api_error(c->req, 500, "out of memory", NULL);
            json_decref(c->run_plan);
            free(plan_text);
            free(c);
            return;
        }
        const char *ap[] = {c->id, c->who.user, input, mcs, mts, e->owner, lease, plan_text, est,
                            e->cfg.escrow_asset, pct, e->cfg.daily_cap ? cap : NULL, roots.data};
        snprintf(c->arg, sizeof c->arg, "%s", mts ? mts : "");
        c->sent_ms = x4_now_ms();
        x4_pg_query(e->pg,
                    "SELECT " X4_EV_COLS " FROM x4_wf_create_approved($1, $2, $3, $4::bigint, $5::bigint, $6, "
                    "$7::bigint, $8::jsonb, $9::bigint, $10, $11::int, $12::bigint, $13::text[]) e",
                    13, ap, on_created, c);
        x4_buf_free(&roots);
        free(plan_text);
        return;
    }
    const char *params[] = {c->id, c->who.user, input, mcs, mts, e->owner, lease, plan_text, plan ? est : NULL, ttl,
                            planner};
    x4_pg_query(e->pg,
                "SELECT " X4_EV_COLS " FROM x4_wf_create($1, $2, $3, $4::bigint, $5::bigint, $6, $7::bigint, "
                "$8::jsonb, $9::bigint, $10::bigint, $11) e",
                11, params, on_created, c);
    free(plan_text);
}

static void on_cache_probe(x4_plan *plan, const char *planner, void *ud) {
    create_job *j = ud;
    if (plan && plan->estimate <= (uint64_t)INT64_MAX) {
        j->c->plan_t0_ns = uv_hrtime();
        x4_planning_latency_record(X4_PLANNING_CACHE, j->c->plan_t0_ns - j->t0_ns);
    }
    else if (plan) {
        x4_plan_free(plan);
        plan = NULL;
    }
    create_query(j->c, j->input, j->has_mcs ? j->mcs : NULL, j->has_mts ? j->mts : NULL, plan, plan ? planner : NULL);
    x4_plan_free(plan);
    free(j->input);
    free(j);
}

/* A USDC amount as the API shows it: {"amount": "2.000000", "atomic": "2000000"}. */
json_t *x4_api_money(uint64_t v) {
    char amt[40], atomic[24];
    x4_money_format(v, X4_USDC_DECIMALS, amt);
    snprintf(atomic, sizeof atomic, "%llu", (unsigned long long)v);
    return json_pack("{s:s, s:s}", "amount", amt, "atomic", atomic);
}

/* Reads an amount: a JSON number (at most 15 significant digits, so its decimal text is exact)
 * or a decimal string, parsed exactly to atomic units; never above 2^63-1 (the ledger's range). */
int x4_api_parse_amount(const json_t *v, uint64_t *out, const char **why) {
    char text[64];
    if (json_is_string(v)) {
        snprintf(text, sizeof text, "%s", json_string_value(v));
        if (strlen(json_string_value(v)) >= sizeof text) {
            *why = "too long";
            return -1;
        }
    } else if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            *why = "negative";
            return -1;
        }
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0) {
            *why = d < 0 ? "negative" : "not a number";
            return -1;
        }
        snprintf(text, sizeof text, "%.15g", d);
        if (strchr(text, 'e')) {
            *why = "out of range; send a decimal string";
            return -1;
        }
    } else {
        *why = "expected a number or a decimal string";
        return -1;
    }
    if (x4_money_parse(text, X4_USDC_DECIMALS, out, why) < 0) return -1;
    if (*out > (uint64_t)INT64_MAX) { /* the ledger stores signed 64-bit amounts */
        *why = "too large";
        return -1;
    }
    return 0;
}

/* create with approve: asks approval.decide (if loaded) about the plan (c->run_plan, the plan as
 * it will be stored). The balance is not read here (limits.available is absent): the hold in
 * the same transaction checks it. Returns 1 with the reason in why when the policy answers deny. */
static int create_policy_denies(api_ctx *c, const char *input, uint64_t estimate, uint64_t max_cost, char *why,
                                size_t whylen) {
    char mcs[24], est[24];
    snprintf(mcs, sizeof mcs, "%llu", (unsigned long long)max_cost);
    snprintf(est, sizeof est, "%llu", (unsigned long long)estimate);
    x4_approval d;
    if (x4_approval_ask(c->e, c->id, c->who.user, input, c->run_plan, est, max_cost == X4_NO_MAX_COST ? NULL : mcs,
                        NULL, &d) != 0 ||
        d.action != X4_APPROVE_DENY)
        return 0;
    snprintf(why, whylen, "denied by the approval policy: %s", d.reason[0] ? d.reason : "no reason given");
    x4_info("api", "%s: create with approve %s", c->id, why);
    return 1;
}

static void handle_create(api_ctx *c) {
    x4_req *r = c->req;
    x4_engine *e = c->e;
    json_error_t jerr;
    json_t *body = NULL, *details = json_array(), *errors = NULL;
    x4_plan *plan = NULL;
    if (!r->body || r->body_len == 0) {
        x4_api_error(r, 400, "request body required", NULL);
        goto out_free;
    }
    body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        x4_api_error(r, 400, msg, NULL);
        goto out_free;
    }
    if (!json_is_object(body)) {
        x4_api_detail(details, "", "expected a JSON object");
        goto invalid;
    }
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "userId") && strcmp(k, "input") && strcmp(k, "maxCost") && strcmp(k, "maxTime") &&
            strcmp(k, "plan") && strcmp(k, "approve"))
            x4_api_detail(details, k, "unknown field");
    }
    json_t *user = json_object_get(body, "userId");
    if (user && (!json_is_string(user) || strcmp(json_string_value(user), c->who.user) != 0))
        x4_api_detail(details, "userId", json_is_string(user) ? "must be the caller's own user id" : "expected a string");
    json_t *input = json_object_get(body, "input");
    const char *input_s = NULL;
    if (!input) x4_api_detail(details, "input", "required");
    else if (!json_is_string(input)) x4_api_detail(details, "input", "expected a string");
    else {
        input_s = json_string_value(input);
        size_t n = json_string_length(input);
        size_t blank = 0;
        while (blank < n && isspace((unsigned char)input_s[blank])) blank++;
        if (blank == n) x4_api_detail(details, "input", "must not be empty");
        else if (n > X4_API_MAX_INPUT) x4_api_detail(details, "input", "longer than 10000 bytes (UTF-8)");
        else if (memchr(input_s, 0, n)) x4_api_detail(details, "input", "contains a NUL character");
    }
    uint64_t max_cost = X4_NO_MAX_COST;
    json_t *mc = json_object_get(body, "maxCost");
    if (mc && !json_is_null(mc)) {
        const char *why = NULL;
        if (x4_api_parse_amount(mc, &max_cost, &why) < 0) {
            char p[120];
            snprintf(p, sizeof p, "%s (a USDC amount with at most 6 decimals)", why ? why : "invalid");
            x4_api_detail(details, "maxCost", p);
        }
    }
    long long max_time = -1;
    json_t *mt = json_object_get(body, "maxTime");
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1000 || json_integer_value(mt) > 86400000)
            x4_api_detail(details, "maxTime", "expected an integer number of milliseconds from 1000 to 86400000");
        else max_time = json_integer_value(mt);
    }
    json_t *pj = json_object_get(body, "plan");
    if (pj && !json_is_null(pj) && json_array_size(details) == 0) {
        if (!json_is_object(pj)) x4_api_detail(details, "plan", "expected an object {steps:[...]}");
        else if (x4_plan_parse(pj, e->catalog, max_cost, &plan, &errors) < 0) {
            size_t i;
            json_t *er;
            json_array_foreach(errors, i, er) {
                const char *f = json_string_value(json_object_get(er, "field")) ?: "";
                char field[300];
                if (strcmp(f, "maxCost") == 0) snprintf(field, sizeof field, "maxCost");
                else snprintf(field, sizeof field, "plan%s%s", f[0] && f[0] != '[' ? "." : "", f);
                x4_api_detail(details, field, json_string_value(json_object_get(er, "problem")) ?: "invalid");
            }
        }
    }
    if (plan && plan->estimate > (uint64_t)INT64_MAX) x4_api_detail(details, "plan", "estimated cost too large");
    json_t *ap = json_object_get(body, "approve");
    if (ap && !json_is_boolean(ap)) x4_api_detail(details, "approve", "expected true or false");
    else if (json_is_true(ap) && !plan && json_array_size(details) == 0)
        x4_api_detail(details, "approve", "approve: true needs an explicit plan (a planned task is approved with POST /workflows/:id/approve or by the approval policy)");
    if (json_array_size(details) > 0) goto invalid;
    x4_make_id("wf", c->id, sizeof c->id);
    if (json_is_true(ap)) {
        /* The caller approves its own plan; the operator's approval policy may still refuse it. */
        char why[300];
        c->run_plan = x4_plan_to_json(plan);
        if (!c->run_plan) {
            x4_api_error(r, 500, "out of memory", NULL);
            goto out_free;
        }
        if (create_policy_denies(c, input_s, plan->estimate, max_cost, why, sizeof why)) {
            x4_api_error(r, 403, why, NULL);
            goto out_free;
        }
    }
    char mcs[24], mts[24];
    snprintf(mcs, sizeof mcs, "%llu", (unsigned long long)max_cost);
    snprintf(mts, sizeof mts, "%lld", max_time);
    if (plan) {
        create_query(c, input_s, max_cost == X4_NO_MAX_COST ? NULL : mcs, max_time < 0 ? NULL : mts, plan, NULL);
        c = NULL;
        goto out_free;
    }
    /* no plan given: a repeated task may be answered by the plan cache at creation */
    create_job *j = calloc(1, sizeof *j);
    if (!j || !(j->input = strdup(input_s))) {
        free(j);
        x4_api_error(r, 500, "out of memory", NULL);
        goto out_free;
    }
    j->c = c;
    j->t0_ns = uv_hrtime();
    snprintf(j->mcs, sizeof j->mcs, "%s", mcs);
    snprintf(j->mts, sizeof j->mts, "%s", mts);
    j->has_mcs = max_cost != X4_NO_MAX_COST;
    j->has_mts = max_time >= 0;
    c = NULL;
    x4_wf_cache_probe(e, j->input, j->c->who.user, max_cost, on_cache_probe, j);
    goto out_free;
invalid:
    x4_api_error(r, 400, "invalid request body", details);
    details = NULL;
out_free:
    if (c) json_decref(c->run_plan);
    free(c);
    json_decref(details);
    json_decref(errors);
    json_decref(body);
    x4_plan_free(plan);
}

/* ---- reads ---- */

static void on_get(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) x4_api_db_error(c, err);
    else if (PQntuples(res) != 1) x4_api_error(c->req, 404, "workflow not found", NULL);
    else x4_api_raw(c->req, 200, "{\"success\":true,\"workflow\":", x4_pg_val(res, 0, "j"), "}");
    free(c);
}

static void handle_get(api_ctx *c) {
    const char *params[] = {c->id, c->who.user, c->who.admin ? "t" : "f"};
    x4_pg_query(c->e->pg,
                "SELECT json_build_object('id', w.id, 'userId', w.user_id, 'status', w.status, 'input', w.input, "
                "'plan', w.plan, 'estimatedCost', x4_money(w.estimated_cost), 'totalCost', x4_money(w.total_cost), "
                "'maxCost', x4_money(w.max_cost), 'maxTime', w.max_time_ms, "
                "'steps', COALESCE((SELECT json_agg(json_build_object('id', s.id, 'service', s.service, "
                "'status', s.status, 'attempts', s.attempts, 'output', s.output, 'error', s.error, "
                "'compensation', CASE WHEN s.comp_attempts > 0 OR s.status LIKE 'compensat%' THEN "
                "json_build_object('attempts', s.comp_attempts, 'error', s.comp_error) END, "
                "'startedAt', x4_iso(s.started_at), 'finishedAt', x4_iso(s.finished_at)) ORDER BY s.idx) "
                "FROM steps s WHERE s.workflow_id = w.id), '[]'::json), "
                "'output', w.output, 'error', w.error, 'rollback', w.rollback, 'lastSeq', w.last_seq, "
                "'createdAt', x4_iso(w.created_at), "
                "'updatedAt', x4_iso(w.updated_at), 'expiresAt', x4_iso(w.expires_at), "
                "'startedAt', x4_iso(w.started_at), 'finishedAt', x4_iso(w.finished_at))::text AS j "
                "FROM workflows w WHERE w.id = $1 AND (w.user_id = $2 OR $3::boolean)",
                3, params, on_get, c);
}

static void on_list(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) {
        x4_api_db_error(c, err);
        free(c);
        return;
    }
    int n = PQntuples(res);
    int limit = atoi(c->created_at); /* the limit travels in this spare field */
    x4_buf b = {0};
    int rc = x4_buf_puts(&b, "{\"success\":true,\"workflows\":[");
    for (int i = 0; i < n && i < limit; i++) {
        if (i) rc |= x4_buf_puts(&b, ",");
        rc |= x4_buf_puts(&b, x4_pg_val(res, i, "j"));
    }
    rc |= x4_buf_puts(&b, "],\"nextCursor\":");
    if (n > limit) {
        json_t *cur = json_string(x4_pg_val(res, limit - 1, "id"));
        char *s = json_dumps(cur, JSON_ENCODE_ANY);
        rc |= x4_buf_puts(&b, s ? s : "null");
        free(s);
        json_decref(cur);
    } else {
        rc |= x4_buf_puts(&b, "null");
    }
    rc |= x4_buf_puts(&b, "}");
    if (rc) x4_api_error(c->req, 500, "out of memory", NULL);
    else x4_req_respond(c->req, 200, "application/json", b.data, b.len);
    x4_buf_free(&b);
    free(c);
}

static void handle_list(api_ctx *c) {
    x4_req *r = c->req;
    if (strcmp(c->id, c->who.user) != 0 && !c->who.admin) {
        x4_api_error(r, 404, "user not found", NULL);
        free(c);
        return;
    }
    char lim[16] = "50", cursor[ID_MAX + 1] = "";
    json_t *details = json_array();
    int q = r->query ? x4_query_get(r->query, r->query_len, "limit", lim, sizeof lim) : 0;
    char *end;
    long limit = strtol(lim, &end, 10);
    if (q < 0 || *end || limit < 1 || limit > 200) x4_api_detail(details, "limit", "expected an integer from 1 to 200");
    q = r->query ? x4_query_get(r->query, r->query_len, "cursor", cursor, sizeof cursor) : 0;
    if (q < 0 || (q == 1 && !x4_api_valid_id(cursor, strlen(cursor)))) x4_api_detail(details, "cursor", "not a cursor from this API");
    if (json_array_size(details)) {
        x4_api_error(r, 400, "invalid query", details);
        free(c);
        return;
    }
    json_decref(details);
    snprintf(c->created_at, sizeof c->created_at, "%ld", limit);
    char lim1[24];
    snprintf(lim1, sizeof lim1, "%ld", limit + 1);
    const char *params[] = {c->id, cursor[0] ? cursor : NULL, lim1};
    x4_pg_query(c->e->pg,
                "SELECT w.id, json_build_object('id', w.id, 'status', w.status, 'input', w.input, "
                "'estimatedCost', x4_money(w.estimated_cost), 'totalCost', x4_money(w.total_cost), "
                "'createdAt', x4_iso(w.created_at), 'updatedAt', x4_iso(w.updated_at))::text AS j "
                "FROM workflows w WHERE w.user_id = $1 AND ($2::text IS NULL OR (w.created_at, w.id) < "
                "(SELECT x.created_at, x.id FROM workflows x WHERE x.id = $2 AND x.user_id = $1)) "
                "ORDER BY w.created_at DESC, w.id DESC LIMIT $3::int",
                3, params, on_list, c);
}

static void handle_services(api_ctx *c) {
    x4_req *r = c->req;
    char lim[16] = "50", off[16] = "0", q[200] = "";
    if (r->query) {
        x4_query_get(r->query, r->query_len, "limit", lim, sizeof lim);
        x4_query_get(r->query, r->query_len, "offset", off, sizeof off);
        x4_query_get(r->query, r->query_len, "q", q, sizeof q);
    }
    long limit = strtol(lim, NULL, 10), offset = strtol(off, NULL, 10);
    if (limit < 1 || limit > 500 || offset < 0) {
        json_t *d = json_array();
        x4_api_detail(d, limit < 1 || limit > 500 ? "limit" : "offset", "out of range (limit 1..500, offset >= 0)");
        x4_api_error(r, 400, "invalid query", d);
        free(c);
        return;
    }
    json_t *items = json_array();
    size_t n = c->e->catalog ? x4_catalog_count(c->e->catalog) : 0, matched = 0;
    for (size_t i = 0; i < n; i++) {
        const x4_service *s = x4_catalog_at(c->e->catalog, i);
        if (q[0] && !strcasestr(s->id, q) && !(s->name && strcasestr(s->name, q)) &&
            !(s->description && strcasestr(s->description, q)))
            continue;
        if (matched >= (size_t)offset && json_array_size(items) < (size_t)limit)
            json_array_append_new(items, x4_service_to_json(s));
        matched++;
    }
    json_t *j = json_pack("{s:b, s:o, s:{s:I, s:I, s:I}, s:s}", "success", 1, "services", items, "pagination", "limit",
                          (json_int_t)limit, "offset", (json_int_t)offset, "total", (json_int_t)matched,
                          "catalogVersion", c->e->catalog ? x4_catalog_version(c->e->catalog) : "");
    x4_req_respond_json(r, 200, j);
    free(c);
}

/* ---- approve / cancel ---- */

static void on_status_for_conflict(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) x4_api_db_error(c, err);
    else if (PQntuples(res) != 1) x4_api_error(c->req, 404, "workflow not found", NULL);
    else {
        const char *st = x4_pg_val(res, 0, "status");
        const char *exp = x4_pg_val(res, 0, "expired");
        char msg[160];
        if (st && strcmp(st, "awaiting_approval") == 0 && exp && exp[0] == 't')
            snprintf(msg, sizeof msg, "workflow approval has expired");
        else
            snprintf(msg, sizeof msg, "workflow is %s", st ? st : "?");
        json_t *j = json_pack("{s:b, s:s, s:s}", "success", 0, "error", msg, "status", st ? st : "");
        x4_req_respond_json(c->req, 409, j);
    }
    free(c);
}

static void conflict_or_404(api_ctx *c) {
    const char *params[] = {c->id, c->who.user};
    x4_pg_query(c->e->pg,
                "SELECT status, (expires_at <= clock_timestamp()) AS expired FROM workflows "
                "WHERE id = $1 AND user_id = $2",
                2, params, on_status_for_conflict, c);
}

static void on_approved(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err && (!strncmp(err, "X4001: ", 7) || !strncmp(err, "X4002: ", 7))) {
        /* Not enough money (or over the daily cap): nothing changed; the message is the seed's. */
        x4_api_error(c->req, 402, err + 7, NULL);
        free(c);
        return;
    }
    if (err) {
        x4_api_db_error(c, err);
        free(c);
        return;
    }
    if (PQntuples(res) == 0) {
        conflict_or_404(c);
        return;
    }
    x4_events_publish_rows(c->e, res);
    x4_sched_resume(c->e, c->id);
    json_t *j = json_pack("{s:b, s:s}", "success", 1, "message", "Workflow approved and execution started");
    x4_req_respond_json(c->req, 200, j);
    free(c);
}

static void handle_approve(api_ctx *c) { x4_approval_approve(c->e, c->id, c->who.user, on_approved, c); }

static void on_cancelled(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) {
        x4_api_db_error(c, err);
        free(c);
        return;
    }
    if (PQntuples(res) == 0) {
        conflict_or_404(c);
        return;
    }
    /* executing with succeeded steps: compensating, leased to this process (sql/007) */
    int undo = 0;
    for (int i = 0; i < PQntuples(res); i++) undo |= !strcmp(x4_pg_val(res, i, "type") ?: "", "workflow.cancelling");
    x4_events_publish_rows(c->e, res); /* the scheduler's listener aborts a local run */
    x4_sched_abort(c->e, c->id, "cancelled");
    if (undo) x4_comp_resume(c->e, c->id);
    json_t *j = json_pack("{s:b, s:{s:s, s:s}}", "success", 1, "workflow", "id", c->id, "status",
                          undo ? "compensating" : "cancelled");
    x4_req_respond_json(c->req, 200, j);
    free(c);
}

static void handle_cancel(api_ctx *c) {
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)c->e->cfg.lease_ms);
    const char *params[] = {c->id, c->who.user, c->e->owner, lease};
    x4_pg_query(c->e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_cancel($1, $2, $3, $4::bigint) e", 4, params, on_cancelled,
                c);
}

/* ---- stream ---- */

static void on_stream_owner(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err || PQntuples(res) == 0) {
        x4_streams_cancel(c->stream);
        if (err) x4_api_db_error(c, err);
        else x4_api_error(c->req, 404, "workflow not found", NULL);
    } else {
        x4_streams_attach(c->req, c->stream, res);
    }
    free(c);
}

static void handle_stream(api_ctx *c) {
    x4_req *r = c->req;
    char since[24] = "0";
    int q = r->query ? x4_query_get(r->query, r->query_len, "since", since, sizeof since) : 0;
    char *end;
    long long s = strtoll(since, &end, 10);
    if (q < 0 || *end || s < 0) {
        json_t *d = json_array();
        x4_api_detail(d, "since", "expected a non-negative integer event seq");
        x4_api_error(r, 400, "invalid query", d);
        free(c);
        return;
    }
    if (!x4_req_is_websocket(r)) {
        x4_api_error(r, 400, "this endpoint is a WebSocket: send an Upgrade: websocket handshake", NULL);
        free(c);
        return;
    }
    snprintf(c->created_at, sizeof c->created_at, "%lld", s);
    /* the owner check and the first catch-up read are one query; a 404 is still plain HTTP */
    c->stream = x4_streams_pending(c->e, &c->who, c->id, s);
    if (!c->stream) {
        x4_api_error(r, 500, "out of memory", NULL);
        free(c);
        return;
    }
    const char *params[] = {c->id, c->created_at, c->who.user, c->who.admin ? "t" : "f"};
    x4_pg_query(c->e->pg, x4_streams_first_read(), 4, params, on_stream_owner, c);
}

static void handle_stream_mux(api_ctx *c) {
    if (!x4_req_is_websocket(c->req))
        x4_api_error(c->req, 400, "this endpoint is a WebSocket: send an Upgrade: websocket handshake", NULL);
    else x4_streams_attach_mux(c->e, c->req, &c->who);
    free(c);
}

/* ---- admin ---- */

/* POST /admin/policies/reload: synchronous (a reload builds a fresh Lua state; policy files
 * are small). A failed reload leaves the previous set and version in force. */
static void handle_policy_reload(api_ctx *c) {
    if (!c->who.admin) {
        x4_api_error(c->req, 403, "an admin key is required", NULL);
        free(c);
        return;
    }
    char err[512];
    if (x4_policy_reload(c->e, err, sizeof err) < 0) {
        json_t *j = json_pack("{s:b, s:s, s:s}", "success", 0, "error", err, "version", x4_policy_version(c->e));
        if (g_stats) g_stats->http_4xx++;
        x4_req_respond_json(c->req, 422, j);
    } else {
        x4_req_respond_json(c->req, 200, json_pack("{s:b, s:s}", "success", 1, "version", x4_policy_version(c->e)));
    }
    free(c);
}

/* ---- dispatch ---- */

static void dispatch(api_ctx *c) {
    if (c->e->stopping || !c->e->pg) {
        x4_api_error(c->req, 503, "shutting down", NULL);
        free(c);
        return;
    }
    if (c->route == R_POLICY_RELOAD) {
        handle_policy_reload(c);
        return;
    }
    switch (c->route) {
    case R_CREATE: handle_create(c); break;
    case R_GET: handle_get(c); break;
    case R_APPROVE: handle_approve(c); break;
    case R_CANCEL: handle_cancel(c); break;
    case R_STREAM: handle_stream(c); break;
    case R_STREAM_MUX: handle_stream_mux(c); break;
    case R_LIST: handle_list(c); break;
    case R_SERVICES: handle_services(c); break;
    case R_ESCROW_ADDRESS:
    case R_ESCROW_BALANCE:
    case R_ESCROW_CREATE:
    case R_ESCROW_DEPOSIT:
    case R_ESCROW_HISTORY:
    case R_ESCROW_WITHDRAW: x4_escrow_api_dispatch(c); break;
    default: x4_api_error(c->req, 404, "not found", NULL); free(c); break;
    }
}

/* Per-user rate limit, a sliding window over Redis counters shared by every process: one counter
 * per user and minute, and the estimate current + previous × (the share of the previous minute
 * still inside the last 60 s), so a burst across a minute boundary is limited like any other
 * (a fixed window would let twice the limit through there). One EVAL per request: INCR the
 * current minute (EXPIRE on first use), GET the previous. Fails open: without Redis the API keeps
 * serving. */
#define X4_RATE_SCRIPT                                                                                  \
    "local c = redis.call('INCR', KEYS[1]) if c == 1 then redis.call('EXPIRE', KEYS[1], 120) end "     \
    "return {c, tonumber(redis.call('GET', KEYS[2]) or '0')}"

static void on_rate(redisReply *reply, const char *err, void *ud) {
    api_ctx *c = ud;
    x4_engine *e = c->e;
    if (!err && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
        uint64_t now = x4_now_ms(), into = now % 60000;
        long long cur = reply->element[0]->integer, prev = reply->element[1]->integer;
        double estimate = (double)cur + (double)prev * (double)(60000 - into) / 60000.0;
        if (estimate > (double)e->cfg.rate_limit_per_min) {
            /* wait until the previous minute's weight has fallen enough, or this minute ends */
            uint64_t wait_ms = 60000 - into;
            if (prev > 0 && cur <= e->cfg.rate_limit_per_min) {
                double need = (double)(e->cfg.rate_limit_per_min - cur) / (double)prev; /* weight allowed */
                uint64_t at = (uint64_t)((1.0 - need) * 60000.0);                     /* ms into the minute */
                if (at > into && at - into < wait_ms) wait_ms = at - into;
            }
            char msg[96], retry[24];
            snprintf(msg, sizeof msg, "rate limit exceeded: %d requests per minute", e->cfg.rate_limit_per_min);
            snprintf(retry, sizeof retry, "%llu", (unsigned long long)((wait_ms + 999) / 1000));
            x4_req_add_header(c->req, "Retry-After", retry);
            x4_api_error(c->req, 429, msg, NULL);
            free(c);
            return;
        }
    }
    dispatch(c);
}

static void rate_limit(api_ctx *c) {
    x4_engine *e = c->e;
    if (e->cfg.rate_limit_per_min <= 0 || !e->bus) {
        dispatch(c);
        return;
    }
    unsigned long long minute = (unsigned long long)(x4_now_ms() / 60000);
    char key[128], prev[128];
    snprintf(key, sizeof key, "x402r:rl:%s:%llu", c->who.user, minute);
    snprintf(prev, sizeof prev, "x402r:rl:%s:%llu", c->who.user, minute - 1);
    const char *argv[] = {"EVAL", X4_RATE_SCRIPT, "2", key, prev};
    size_t lens[] = {4, strlen(X4_RATE_SCRIPT), 1, strlen(key), strlen(prev)};
    x4_bus_command(e->bus, 5, argv, lens, on_rate, c);
}

static void on_auth(const x4_principal *p, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) {
        x4_api_db_error(c, err);
        free(c);
        return;
    }
    if (!p) {
        x4_req_add_header(c->req, "WWW-Authenticate", "Bearer");
        x4_api_error(c->req, 401, "missing or invalid API key", NULL);
        free(c);
        return;
    }
    c->who = *p;
    rate_limit(c);
}

void x4_api_handle(x4_req *req, void *ud) {
    x4_engine *e = ud;
    e->stats.http_requests++;
    g_stats = &e->stats;
    if (e->stopping || !e->pg) {
        x4_api_error(req, 503, "shutting down", NULL);
        return;
    }
    char id[ID_MAX + 1];
    const char *want;
    enum route rt = match(req, id, &want);
    if (rt == R_NONE) {
        x4_api_error(req, 404, "not found", NULL);
        return;
    }
    if (!x4_req_method_is(req, want)) {
        x4_req_add_header(req, "Allow", want);
        x4_api_error(req, 405, "method not allowed", NULL);
        return;
    }
    api_ctx *c = x4_api_ctx_new(e, req);
    if (!c) return;
    c->route = rt;
    memcpy(c->id, id, sizeof id);
    if (rt == R_HEALTH || rt == R_METRICS) {
        handle_health(c);
        return;
    }
    size_t klen = 0;
    const char *auth = x4_req_header(req, "authorization", &klen);
    char token[X4_KEY_MAX + 1] = "";
    if (auth && klen > 7 && strncasecmp(auth, "Bearer ", 7) == 0 && klen - 7 <= X4_KEY_MAX) {
        memcpy(token, auth + 7, klen - 7);
        token[klen - 7] = 0;
    } else if ((rt == R_STREAM || rt == R_STREAM_MUX) && req->query) {
        /* Browsers cannot set headers on a WebSocket; the key may come as ?access_token=. */
        if (x4_query_get(req->query, req->query_len, "access_token", token, sizeof token) != 1) token[0] = 0;
    }
    x4_auth_check(e, token, strlen(token), on_auth, c);
}
