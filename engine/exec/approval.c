/* exec/approval.c — see approval.h. */
#include "exec/approval.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "exec/policy.h"
#include "exec/sched.h"
#include "lua/lua.h"

typedef struct {
    x4_engine *e;
    char id[96];
    char user[80];
} appr_ctx;

void x4_approval_approve(x4_engine *e, const char *id, const char *user, x4_pg_cb cb, void *ud) {
    char lease[24], pct[16], cap[24];
    x4_config *cfg = &e->cfg;
    snprintf(lease, sizeof lease, "%lld", (long long)cfg->lease_ms);
    snprintf(pct, sizeof pct, "%d", cfg->hold_allowance_pct);
    snprintf(cap, sizeof cap, "%llu", (unsigned long long)cfg->daily_cap);
    const char *params[] = {id, user, e->owner, lease, cfg->escrow_asset, pct, cfg->daily_cap ? cap : NULL};
    x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_approve($1, $2, $3, $4::bigint, $5, $6::int, $7::bigint) e", 7,
                params, cb, ud);
}

static void on_written(PGresult *res, const char *err, void *ud) {
    appr_ctx *c = ud;
    if (err) x4_warn("approval", "%s: writing the policy's decision failed: %s", c->id, err);
    else x4_events_publish_rows(c->e, res);
    free(c);
}

static void on_auto_approved(PGresult *res, const char *err, void *ud) {
    appr_ctx *c = ud;
    if (err) {
        /* X4001/X4002: not enough money or over the daily cap — the user can top up and approve */
        x4_info("approval", "%s: auto-approval refused, left awaiting approval: %s", c->id,
                !strncmp(err, "X400", 4) && strlen(err) > 7 ? err + 7 : err);
    } else if (PQntuples(res) > 0) {
        x4_events_publish_rows(c->e, res);
        x4_sched_resume(c->e, c->id);
    }
    free(c);
}

static void on_loaded(PGresult *res, const char *err, void *ud) {
    appr_ctx *c = ud;
    x4_engine *e = c->e;
    if (err || PQntuples(res) != 1 || e->stopping) { /* gone, approved or cancelled meanwhile */
        if (err) x4_warn("approval", "%s: cannot read the workflow: %s", c->id, err);
        free(c);
        return;
    }
    json_error_t jerr;
    const char *plan_t = x4_pg_val(res, 0, "plan");
    const char *est = x4_pg_val(res, 0, "estimated_cost") ? x4_pg_val(res, 0, "estimated_cost") : "0";
    const char *avail = x4_pg_val(res, 0, "available") ? x4_pg_val(res, 0, "available") : "0";
    snprintf(c->user, sizeof c->user, "%s", x4_pg_val(res, 0, "user_id") ? x4_pg_val(res, 0, "user_id") : "");
    json_t *plan = plan_t ? json_loads(plan_t, 0, &jerr) : NULL;
    x4_approval d;
    int rc = x4_approval_ask(e, c->id, c->user, x4_pg_val(res, 0, "input") ? x4_pg_val(res, 0, "input") : "", plan,
                             est, x4_pg_val(res, 0, "max_cost"), avail, &d);
    json_decref(plan);
    if (rc != 0 || (d.action == X4_APPROVE_MANUAL && (d.expires_ms <= 0 || d.expires_ms == e->cfg.approval_ttl_ms))) {
        free(c); /* the built-in decision: manual with APPROVAL_TTL_MS, already stored */
        return;
    }
    if (d.action == X4_APPROVE_AUTO) {
        x4_info("approval", "%s: auto-approved by the policy (%s)", c->id, d.reason[0] ? d.reason : "no reason given");
        x4_approval_approve(e, c->id, c->user, on_auto_approved, c);
    } else if (d.action == X4_APPROVE_DENY) {
        char why[320];
        snprintf(why, sizeof why, "denied: %s", d.reason);
        json_t *j = json_pack("{s:s}", "error", why);
        char *data = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        const char *params[] = {c->id, data, why};
        x4_info("approval", "%s: %s", c->id, why);
        x4_pg_query(e->pg,
                    "SELECT " X4_EV_COLS " FROM x4_wf_transition($1, ARRAY['awaiting_approval'], 'failed', "
                    "'workflow.failed', $2::jsonb, $3) e",
                    3, params, on_written, c);
        free(data);
    } else {
        char ms[24];
        snprintf(ms, sizeof ms, "%lld", (long long)d.expires_ms);
        const char *params[] = {c->id, ms, d.reason[0] ? d.reason : "needs the user's approval"};
        x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_approval_expiry($1, $2::bigint, $3) e", 3, params,
                    on_written, c);
    }
}

int x4_approval_ask(x4_engine *e, const char *id, const char *user, const char *input, json_t *plan,
                    const char *estimate, const char *max_cost, const char *available, x4_approval *d) {
    memset(d, 0, sizeof *d);
    if (!e->lua || !x4_lua_has_hook(e->lua, "approval.decide")) return X4_POLICY_DEFAULT;
    char auto_below[24], ttl[24];
    snprintf(auto_below, sizeof auto_below, "%lld", (long long)e->cfg.auto_approve_below);
    snprintf(ttl, sizeof ttl, "%lld", (long long)e->cfg.approval_ttl_ms);
    json_t *wf = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s?}", "id", id, "userId", user, "input", input, "plan",
                           plan ? plan : json_null(), "estimatedCost", estimate, "maxCost", max_cost);
    json_t *limits = json_pack("{s:s*, s:s, s:s, s:s?}", "available", available, "autoApproveBelow", auto_below,
                               "approvalTtlMs", ttl, "maxCost", max_cost);
    int rc = wf && limits ? x4_policy_approval(e, wf, strtoull(estimate, NULL, 10), limits, d) : X4_POLICY_DEFAULT;
    json_decref(wf);
    json_decref(limits);
    return rc;
}

static void on_event(const x4_event *ev, void *ud) {
    x4_engine *e = ud;
    if (ev->remote || strcmp(ev->type, "workflow.awaiting_approval") != 0 || e->stopping) return;
    if (!e->lua || !x4_lua_has_hook(e->lua, "approval.decide")) return;
    /* the first announcement (x4_wf_plan_ready) carries only expiresAt; a re-announcement by
     * x4_wf_approval_expiry carries the policy's reason: decided already */
    if (strstr(ev->envelope, "\"reason\"")) return;
    appr_ctx *c = calloc(1, sizeof *c);
    if (!c) return;
    c->e = e;
    snprintf(c->id, sizeof c->id, "%s", ev->workflow_id);
    const char *params[] = {c->id, e->cfg.escrow_asset};
    x4_pg_query(e->pg,
                "SELECT w.user_id, w.input, w.plan::text AS plan, w.estimated_cost, w.max_cost, a.available "
                "FROM workflows w LEFT JOIN escrow_accounts a ON a.user_id = w.user_id AND a.asset = $2 "
                "WHERE w.id = $1 AND w.status = 'awaiting_approval'",
                2, params, on_loaded, c);
}

void x4_approval_open(x4_engine *e) { x4_events_listen(e, on_event, e); }
