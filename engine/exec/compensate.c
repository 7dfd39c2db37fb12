/* exec/compensate.c — see compensate.h.
 *
 * Memory: one comp_run per compensating workflow in a short list (compensations are rare and
 * sequential). Every asynchronous operation that calls back into a run (a database write, an
 * HTTP call, a timer) holds a reference; an aborted run is marked dead, unlinked at once and
 * freed when the last reference returns. */
#include "exec/compensate.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "exec/httpc.h"
#include "exec/policy.h"
#include "exec/step_adapter.h"
#include "plan/catalog.h"
#include "store/pg.h"

#define COMP_MAX_HEADERS 16

typedef struct comp_run comp_run;

typedef struct {
    uv_timer_t t;
    comp_run *run;
} comp_timer;

struct comp_run {
    x4_engine *e;
    char id[96];
    json_t *plan;       /* [{step, url, method, body, headers}] */
    json_t *status;     /* step id → stored status */
    json_t *attempts;   /* step id → comp_attempts stored */
    json_t *services;   /* step id → service id */
    size_t next;        /* the plan item in progress */
    int refs;
    int dead;
    uint64_t loaded_ms;
    comp_timer *timer;
    x4_httpc_call *call;
    comp_run *link;
};

static comp_run *g_runs;

static comp_run *run_find(x4_engine *e, const char *id) {
    for (comp_run *r = g_runs; r; r = r->link)
        if (r->e == e && strcmp(r->id, id) == 0) return r;
    return NULL;
}

static void run_free(comp_run *r) {
    json_decref(r->plan);
    json_decref(r->status);
    json_decref(r->attempts);
    json_decref(r->services);
    free(r);
}

static void run_unref(comp_run *r) {
    if (--r->refs == 0) run_free(r);
}

static void timer_closed(uv_handle_t *h) {
    comp_timer *t = h->data;
    comp_run *r = t->run;
    free(t);
    run_unref(r);
}

static void timer_drop(comp_run *r) {
    if (!r->timer) return;
    uv_timer_stop(&r->timer->t);
    uv_close((uv_handle_t *)&r->timer->t, timer_closed);
    r->timer = NULL;
}

/* Unlinks and stops a run; its pending callbacks see r->dead and only drop their reference. */
static void run_kill(comp_run *r, const char *why) {
    if (r->dead) return;
    r->dead = 1;
    x4_info("compensate", "%s: %s", r->id, why);
    for (comp_run **pp = &g_runs; *pp; pp = &(*pp)->link)
        if (*pp == r) {
            *pp = r->link;
            break;
        }
    timer_drop(r);
    if (r->call) {
        x4_httpc_call *c = r->call;
        r->call = NULL;
        x4_httpc_cancel(c); /* its callback runs now and drops its reference */
    }
    run_unref(r); /* the list's reference */
}

/* ---- the plan ---- */

static int str_eq(const json_t *v, const char *s) { return json_is_string(v) && strcmp(json_string_value(v), s) == 0; }

static ssize_t view_find(const json_t *steps, const char *id) {
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s) if (str_eq(json_object_get(s, "id"), id)) return (ssize_t)i;
    return -1;
}

json_t *x4_comp_default_plan(const json_t *workflow) {
    const json_t *steps = json_object_get(workflow, "steps");
    size_t n = json_array_size(steps);
    json_t *out = json_array();
    if (!out || n == 0) return out;
    /* depth-first topological order, dependencies first; a cycle (the planner forbids them) is cut */
    unsigned char *state = calloc(n, 1);
    size_t *order = calloc(n, sizeof *order), *stack = calloc(n, sizeof *stack), *pos = calloc(n, sizeof *pos);
    size_t norder = 0;
    if (!state || !order || !stack || !pos) goto done;
    for (size_t root = 0; root < n; root++) {
        if (state[root]) continue;
        size_t sp = 0;
        stack[sp] = root;
        pos[sp++] = 0;
        state[root] = 1;
        while (sp) {
            size_t i = stack[sp - 1];
            const json_t *deps = json_object_get(json_array_get(steps, i), "dependsOn");
            if (pos[sp - 1] < json_array_size(deps)) {
                const json_t *d = json_array_get(deps, pos[sp - 1]++);
                ssize_t j = json_is_string(d) ? view_find(steps, json_string_value(d)) : -1;
                if (j >= 0 && !state[j]) {
                    state[j] = 1;
                    stack[sp] = (size_t)j;
                    pos[sp++] = 0;
                }
                continue;
            }
            state[i] = 2;
            order[norder++] = i;
            sp--;
        }
    }
    for (size_t k = norder; k-- > 0;) {
        const json_t *s = json_array_get(steps, order[k]);
        const json_t *c = json_object_get(s, "compensate");
        const char *url = json_string_value(json_object_get(c, "url"));
        if (!str_eq(json_object_get(s, "status"), "succeeded") || !url) continue;
        const char *m = json_string_value(json_object_get(c, "method"));
        json_t *body = json_object_get(c, "body");
        json_t *item = json_pack("{s:O, s:s, s:s}", "step", json_object_get(s, "id"), "url", url, "method", m ? m : "POST");
        if (!item) continue;
        if (body) json_object_set(item, "body", body);
        else
            json_object_set_new(item, "body",
                                json_pack("{s:O, s:O, s:O}", "workflowId", json_object_get(workflow, "id"), "stepId",
                                          json_object_get(s, "id"), "output",
                                          json_object_get(s, "output") ? json_object_get(s, "output") : json_null()));
        json_t *h = json_object_get(c, "headers");
        if (json_is_object(h)) json_object_set(item, "headers", h);
        json_array_append_new(out, item);
    }
done:
    free(state);
    free(order);
    free(stack);
    free(pos);
    return out;
}

static int header_ok(const char *s, int name) {
    if (!*s && name) return 0;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n' || (unsigned char)*s < 0x20) return 0;
        if (name && (*s == ':' || *s == ' ')) return 0;
    }
    return 1;
}

/* Headers the engine sets on every compensation: a plan cannot override them. */
static int reserved_header(const char *name) {
    static const char *const r[] = {"idempotency-key", "x-workflow-id", "x-step-id", "x-compensation",
                                    "content-type", "content-length", "host", NULL};
    for (int i = 0; r[i]; i++)
        if (strcasecmp(name, r[i]) == 0) return 1;
    return 0;
}

json_t *x4_comp_check_plan(const json_t *plan, const json_t *workflow, char *err, size_t errlen) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    const json_t *steps = json_object_get(workflow, "steps");
    json_t *out = json_array();
    size_t i;
    json_t *c;
    if (!out) {
        x4_seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (!json_is_array(plan)) {
        x4_seterr(err, errlen, "expected a list of compensations");
        goto bad;
    }
    json_array_foreach(plan, i, c) {
        const char *step = json_string_value(json_object_get(c, "step"));
        const char *url = json_string_value(json_object_get(c, "url"));
        const char *m = json_string_value(json_object_get(c, "method"));
        char method[8] = "POST";
        if (!json_is_object(c) || !step || !url) {
            x4_seterr(err, errlen, "[%zu] must be {step, url, method?, body?, headers?}", i);
            goto bad;
        }
        ssize_t k = view_find(steps, step);
        if (k < 0 || !str_eq(json_object_get(json_array_get(steps, (size_t)k), "status"), "succeeded")) {
            x4_seterr(err, errlen, "[%zu].step '%.64s' is not a succeeded step of the workflow", i, step);
            goto bad;
        }
        for (size_t j = 0; j < i; j++)
            if (str_eq(json_object_get(json_array_get(out, j), "step"), step)) {
                x4_seterr(err, errlen, "step '%.64s' is compensated twice", step);
                goto bad;
            }
        if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strlen(url) > 2048 ||
            !header_ok(url, 0) || strchr(url, ' ')) {
            x4_seterr(err, errlen, "[%zu].url must be an http(s) URL", i);
            goto bad;
        }
        if (m) {
            size_t l = strlen(m);
            int ok = 0;
            if (l < sizeof method) {
                for (size_t q = 0; q <= l; q++) method[q] = (char)(m[q] >= 'a' && m[q] <= 'z' ? m[q] - 32 : m[q]);
                for (int q = 0; methods[q]; q++) ok |= strcmp(method, methods[q]) == 0;
            }
            if (!ok) {
                x4_seterr(err, errlen, "[%zu].method must be GET, POST, PUT, PATCH or DELETE", i);
                goto bad;
            }
        }
        const json_t *h = json_object_get(c, "headers");
        if (h && !json_is_object(h)) {
            x4_seterr(err, errlen, "[%zu].headers must be an object of strings", i);
            goto bad;
        }
        const char *hk;
        json_t *hv;
        size_t nh = 0;
        json_object_foreach((json_t *)h, hk, hv) {
            if (++nh > COMP_MAX_HEADERS - 6 || !json_is_string(hv) || !header_ok(hk, 1) ||
                !header_ok(json_string_value(hv), 0) || reserved_header(hk) || strlen(hk) > 128 ||
                strlen(json_string_value(hv)) > 4096) {
                x4_seterr(err, errlen, "[%zu].headers: '%.64s' is not allowed (reserved, not a string, CR/LF, or too many)",
                          i, hk);
                goto bad;
            }
        }
        json_t *item = json_pack("{s:s, s:s, s:s, s:O}", "step", step, "url", url, "method", method, "body",
                                 json_object_get(c, "body") ? json_object_get(c, "body") : json_null());
        if (!item) {
            x4_seterr(err, errlen, "out of memory");
            goto bad;
        }
        if (h) json_object_set(item, "headers", (json_t *)h);
        json_array_append_new(out, item);
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* The step's compensation as its adapter (compensate()) or else its catalog record declares it,
 * or NULL. */
static json_t *declared_compensation(x4_engine *e, const char *wf, const char *step, const char *service,
                                     const json_t *output) {
    const x4_service *svc = e->catalog && service ? x4_catalog_get(e->catalog, service) : NULL;
    if (!svc) return NULL;
    x4_step_in in = {svc, wf, step, 0, NULL, (long)e->cfg.connect_timeout_ms, (long)e->cfg.step_timeout_ms,
                     (size_t)e->cfg.max_response_bytes};
    json_t *req = NULL;
    char err[256];
    int rc = x4_step_compensation(e->lua, &in, output, &req, err, sizeof err);
    if (rc == 1 && req) return req;
    json_decref(req);
    if (rc < 0) x4_warn("compensate", "%s: step %s: the adapter's compensate failed (%s); using the catalog's", wf, step, err);
    if (!json_is_object(svc->compensate)) return NULL;
    return json_deep_copy(svc->compensate);
}

/* {id, status, error, steps:[{id, service, status, output, dependsOn, compensate?}]} */
static json_t *workflow_view(x4_engine *e, const char *wf, const char *final, const char *error, const json_t *plan,
                             const json_t *rows) {
    json_t *v = json_pack("{s:s, s:s, s:s, s:[]}", "id", wf, "status", final ? final : "failed", "error",
                          error ? error : "", "steps");
    if (!v) return NULL;
    json_t *steps = json_object_get(v, "steps");
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_string_value(json_object_get(row, "id"));
        if (!id) continue;
        json_t *deps = json_array();
        size_t k;
        json_t *ps;
        json_array_foreach(json_object_get(plan, "steps"), k, ps) if (str_eq(json_object_get(ps, "id"), id)) {
            json_decref(deps);
            deps = json_deep_copy(json_object_get(ps, "dependsOn"));
            break;
        }
        json_t *s = json_pack("{s:s, s:O, s:O, s:O, s:o}", "id", id, "service", json_object_get(row, "service"),
                              "status", json_object_get(row, "status"), "output",
                              json_object_get(row, "output") ? json_object_get(row, "output") : json_null(),
                              "dependsOn", deps ? deps : json_array());
        if (!s) continue;
        if (str_eq(json_object_get(row, "status"), "succeeded")) {
            json_t *c = declared_compensation(e, wf, id, json_string_value(json_object_get(row, "service")),
                                              json_object_get(row, "output"));
            if (c) json_object_set_new(s, "compensate", c);
        }
        json_array_append_new(steps, s);
    }
    return v;
}

/* ---- running it ---- */

static void step_next(comp_run *r);

typedef struct {
    comp_run *run;
} run_ctx;

static run_ctx *ctx_new(comp_run *r) {
    run_ctx *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->run = r;
    r->refs++;
    return c;
}

static void ctx_done(run_ctx *c) {
    comp_run *r = c->run;
    free(c);
    run_unref(r);
}

static int landed(comp_run *r, PGresult *res, const char *err, const char *what) {
    if (r->dead) return -1;
    if (err) {
        x4_warn("compensate", "%s: %s failed (%s); leaving it to the lease", r->id, what, err);
        run_kill(r, "database write failed");
        return -1;
    }
    if (PQntuples(res) == 0) {
        run_kill(r, "workflow no longer compensating under this lease");
        return -1;
    }
    return 0;
}

static void on_finished(PGresult *res, const char *err, void *ud) {
    run_ctx *c = ud;
    comp_run *r = c->run;
    if (landed(r, res, err, "the final write") == 0) {
        x4_events_publish_rows(r->e, res);
        run_kill(r, "compensation finished");
    }
    ctx_done(c);
}

static void finish(comp_run *r) {
    run_ctx *c = ctx_new(r);
    if (!c) {
        run_kill(r, "out of memory");
        return;
    }
    const char *params[] = {r->id, r->e->owner};
    x4_pg_query(r->e->pg, "SELECT " X4_EV_COLS " FROM x4_comp_finish($1, $2) e", 2, params, on_finished, c);
}

static void on_step_done(PGresult *res, const char *err, void *ud) {
    run_ctx *c = ud;
    comp_run *r = c->run;
    if (landed(r, res, err, "a compensation write") == 0) {
        x4_events_publish_rows(r->e, res);
        const char *step = json_string_value(json_object_get(json_array_get(r->plan, r->next), "step"));
        if (step) json_object_set_new(r->status, step, json_string("done"));
        r->next++;
        step_next(r);
    }
    ctx_done(c);
}

static void step_done(comp_run *r, int ok, const char *error, long code, int attempt) {
    const char *step = json_string_value(json_object_get(json_array_get(r->plan, r->next), "step"));
    run_ctx *c = ctx_new(r);
    json_t *d = json_pack("{s:i}", "attempt", attempt);
    if (code > 0 && d) json_object_set_new(d, "status", json_integer(code));
    char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (!c || !data || !step) {
        free(data);
        if (c) ctx_done(c);
        run_kill(r, "out of memory");
        return;
    }
    if (ok) x4_info("compensate", "%s: step %s compensated", r->id, step);
    else x4_warn("compensate", "%s: step %s could not be compensated: %s", r->id, step, error);
    const char *params[] = {r->id, r->e->owner, step, ok ? "t" : "f", ok ? NULL : error, data};
    x4_pg_query(r->e->pg, "SELECT " X4_EV_COLS " FROM x4_comp_step($1, $2, $3, $4::boolean, $5, $6::jsonb) e", 6, params,
                on_step_done, c);
    free(data);
}

static void send_attempt(comp_run *r);

static void on_timer(uv_timer_t *t) {
    comp_timer *ct = t->data;
    comp_run *r = ct->run;
    timer_drop(r);
    if (!r->dead) send_attempt(r);
}

static void retry_later(comp_run *r, int64_t delay_ms) {
    comp_timer *t = calloc(1, sizeof *t);
    if (!t) {
        run_kill(r, "out of memory");
        return;
    }
    t->run = r;
    r->refs++;
    uv_timer_init(r->e->loop, &t->t);
    t->t.data = t;
    r->timer = t;
    uv_timer_start(&t->t, on_timer, (uint64_t)(delay_ms < 0 ? 0 : delay_ms), 0);
}

static int64_t retry_after_ms(const x4_httpc_resp *resp) {
    const char *ra = x4_httpc_header_get(resp, "retry-after");
    if (!ra) return -1;
    char *end;
    long long s = strtoll(ra, &end, 10);
    if (end == ra || *end || s < 0) return -1;
    return s > 3600 ? 3600000 : s * 1000;
}

typedef struct {
    comp_run *run;
    int attempt;
} http_ctx;

static void on_http(const x4_httpc_resp *resp, void *ud) {
    http_ctx *hc = ud;
    comp_run *r = hc->run;
    int attempt = hc->attempt;
    free(hc);
    if (r->dead || resp->status == X4_HTTPC_CANCELLED) goto out;
    r->call = NULL;
    const json_t *item = json_array_get(r->plan, r->next);
    const char *step = json_string_value(json_object_get(item, "step"));
    if (resp->status == X4_HTTPC_OK && resp->code >= 200 && resp->code < 300) {
        step_done(r, 1, NULL, resp->code, attempt);
        goto out;
    }
    char why[400];
    int retryable;
    const char *cls;
    if (resp->status == X4_HTTPC_OK) {
        snprintf(why, sizeof why, "HTTP %ld from the compensation endpoint%s", resp->code,
                 resp->code == 402 ? " (it asks for payment; the engine never pays to undo)" : "");
        retryable = resp->code >= 500 || resp->code == 429 || resp->code == 408;
        cls = "status";
    } else {
        snprintf(why, sizeof why, "%s", resp->error[0] ? resp->error : "transport error");
        retryable = resp->status == X4_HTTPC_NETWORK || resp->status == X4_HTTPC_TIMEOUT ||
                    resp->status == X4_HTTPC_INTERNAL;
        cls = resp->status == X4_HTTPC_TIMEOUT ? "timeout" : "network";
    }
    int max = r->e->cfg.compensate_max_attempts;
    int64_t ra = resp->status == X4_HTTPC_OK ? retry_after_ms(resp) : -1;
    if (attempt < max) {
        x4_policy_err pe = {cls, resp->status == X4_HTTPC_OK ? resp->code : 0, ra, why};
        int64_t delay = 0;
        char reason[256];
        const char *svc = json_string_value(json_object_get(r->services, step ? step : ""));
        int d = x4_policy_retry_hook(r->e, "rollback.retry", step, svc, json_object_get(item, "body"), max, &pe, attempt,
                                     &delay, reason, sizeof reason);
        if (d == X4_POLICY_RETRY) {
            retry_later(r, delay);
            goto out;
        }
        if (d == X4_POLICY_DEFAULT && retryable) {
            retry_later(r, ra >= 0 ? ra : x4_policy_backoff_ms(&r->e->cfg, attempt));
            goto out;
        }
        if (d == X4_POLICY_GIVEUP) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s (rollback policy gave up: %s)", why, reason);
            step_done(r, 0, msg, resp->code, attempt);
            goto out;
        }
    }
    step_done(r, 0, why, resp->code, attempt);
out:
    run_unref(r);
}

static void on_attempt(PGresult *res, const char *err, void *ud) {
    run_ctx *c = ud;
    comp_run *r = c->run;
    if (r->dead) goto out;
    if (err) {
        x4_warn("compensate", "%s: attempt write failed (%s); leaving it to the lease", r->id, err);
        run_kill(r, "database write failed");
        goto out;
    }
    const char *n = PQntuples(res) == 1 ? x4_pg_val(res, 0, "n") : NULL;
    if (!n) {
        run_kill(r, "workflow no longer compensating under this lease");
        goto out;
    }
    const json_t *item = json_array_get(r->plan, r->next);
    const char *step = json_string_value(json_object_get(item, "step"));
    const char *method = json_string_value(json_object_get(item, "method"));
    int attempt = atoi(n);
    char idem[256];
    snprintf(idem, sizeof idem, "%s:%s:compensate", r->id, step);
    x4_httpc_header h[COMP_MAX_HEADERS];
    size_t nh = 0;
    h[nh++] = (x4_httpc_header){"Content-Type", "application/json"};
    h[nh++] = (x4_httpc_header){"Idempotency-Key", idem};
    h[nh++] = (x4_httpc_header){"X-Workflow-Id", r->id};
    h[nh++] = (x4_httpc_header){"X-Step-Id", step};
    h[nh++] = (x4_httpc_header){"X-Compensation", "1"};
    const char *hk;
    json_t *hv;
    json_object_foreach(json_object_get(item, "headers"), hk, hv) if (nh < COMP_MAX_HEADERS)
        h[nh++] = (x4_httpc_header){hk, json_string_value(hv)};
    int has_body = strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0;
    char *body = has_body ? json_dumps(json_object_get(item, "body"), JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    http_ctx *hc = malloc(sizeof *hc);
    if ((has_body && !body) || !hc) {
        free(body);
        free(hc);
        run_kill(r, "out of memory");
        goto out;
    }
    hc->run = r;
    hc->attempt = attempt;
    r->refs++;
    x4_httpc_req req = {method,
                        json_string_value(json_object_get(item, "url")),
                        h,
                        nh,
                        body,
                        body ? strlen(body) : 0,
                        (long)r->e->cfg.connect_timeout_ms,
                        (long)r->e->cfg.step_timeout_ms,
                        (size_t)r->e->cfg.max_response_bytes};
    r->call = x4_httpc_request(r->e->httpc, &req, on_http, hc);
    free(body);
out:
    ctx_done(c);
}

static void send_attempt(comp_run *r) {
    const char *step = json_string_value(json_object_get(json_array_get(r->plan, r->next), "step"));
    run_ctx *c = ctx_new(r);
    if (!c) {
        run_kill(r, "out of memory");
        return;
    }
    const char *params[] = {r->id, r->e->owner, step};
    x4_pg_query(r->e->pg, "SELECT x4_comp_attempt($1, $2, $3) AS n", 3, params, on_attempt, c);
}

/* The next plan item whose step is still to be undone, or the end. */
static void step_next(comp_run *r) {
    if (r->dead) return;
    if (r->e->stopping) {
        run_kill(r, "shutting down");
        return;
    }
    while (r->next < json_array_size(r->plan)) {
        const char *step = json_string_value(json_object_get(json_array_get(r->plan, r->next), "step"));
        if (step && str_eq(json_object_get(r->status, step), "succeeded")) break;
        r->next++; /* settled before a restart */
    }
    if (r->next >= json_array_size(r->plan)) finish(r);
    else send_attempt(r);
}

/* ---- loading ---- */

static void on_planned(PGresult *res, const char *err, void *ud) {
    run_ctx *c = ud;
    comp_run *r = c->run;
    if (landed(r, res, err, "storing the compensation plan") == 0) {
        x4_events_publish_rows(r->e, res);
        int ended = 0;
        for (int i = 0; i < PQntuples(res); i++) {
            const char *t = x4_pg_val(res, i, "type");
            ended |= t && (!strcmp(t, "workflow.failed") || !strcmp(t, "workflow.cancelled"));
        }
        if (ended) run_kill(r, "nothing to compensate");
        else step_next(r);
    }
    ctx_done(c);
}

typedef struct {
    x4_engine *e;
    char id[96];
    uint64_t sent_ms;
} load_ctx;

static void on_loaded(PGresult *res, const char *err, void *ud) {
    load_ctx *lc = ud;
    x4_engine *e = lc->e;
    json_t *plan = NULL, *rows = NULL, *view = NULL, *cp = NULL;
    comp_run *r = NULL;
    if (e->stopping || run_find(e, lc->id)) goto out;
    if (err || PQntuples(res) != 1) {
        x4_warn("compensate", "%s: cannot load (%s)", lc->id, err ? err : "not found");
        goto out;
    }
    const char *owner = x4_pg_val(res, 0, "lease_owner"), *status = x4_pg_val(res, 0, "status");
    if (!owner || strcmp(owner, e->owner) != 0 || !status || strcmp(status, "compensating") != 0) goto out;
    json_error_t jerr;
    const char *pt = x4_pg_val(res, 0, "plan"), *st = x4_pg_val(res, 0, "steps"), *ct = x4_pg_val(res, 0, "compensation");
    plan = pt ? json_loads(pt, 0, &jerr) : json_object();
    rows = st ? json_loads(st, 0, &jerr) : json_array();
    r = calloc(1, sizeof *r);
    if (!plan || !rows || !r) goto oom;
    r->e = e;
    snprintf(r->id, sizeof r->id, "%s", lc->id);
    r->refs = 1;
    r->loaded_ms = lc->sent_ms;
    r->status = json_object();
    r->attempts = json_object();
    r->services = json_object();
    if (!r->status || !r->attempts || !r->services) goto oom;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_string_value(json_object_get(row, "id"));
        if (!id) continue;
        json_object_set(r->status, id, json_object_get(row, "status"));
        json_object_set(r->services, id, json_object_get(row, "service"));
    }
    r->link = g_runs;
    g_runs = r;
    r->refs++; /* ours until the end of this function */
    if (ct) {
        r->plan = json_loads(ct, 0, &jerr);
        if (!json_is_array(r->plan)) {
            x4_error("compensate", "%s: the stored compensation plan is unreadable", r->id);
            run_kill(r, "unreadable plan");
        } else {
            x4_info("compensate", "%s: resuming the compensation", r->id);
            step_next(r);
        }
        run_unref(r);
        goto out;
    }
    view = workflow_view(e, r->id, x4_pg_val(res, 0, "final_status"), x4_pg_val(res, 0, "error"), plan, rows);
    if (!view) goto oom_linked;
    json_t *lp = NULL;
    char why[300];
    if (x4_policy_rollback(e, view, &lp) == 0) {
        cp = x4_comp_check_plan(lp, view, why, sizeof why);
        if (!cp) x4_warn("compensate", "%s: rollback.plan returned an unusable plan (%s); using the default", r->id, why);
    }
    json_decref(lp);
    if (!cp) {
        json_t *def = x4_comp_default_plan(view);
        cp = def ? x4_comp_check_plan(def, view, why, sizeof why) : NULL;
        json_decref(def);
        if (!cp) {
            x4_error("compensate", "%s: the default compensation plan is unusable (%s)", r->id, def ? why : "out of memory");
            cp = json_array(); /* undo nothing rather than stay stuck: the final record says so */
            if (!cp) goto oom_linked;
        }
    }
    r->plan = cp;
    cp = NULL;
    char *text = json_dumps(r->plan, JSON_COMPACT);
    run_ctx *c = text ? ctx_new(r) : NULL;
    if (!c) {
        free(text);
        goto oom_linked;
    }
    x4_info("compensate", "%s: %zu compensation(s) planned", r->id, json_array_size(r->plan));
    const char *params[] = {r->id, e->owner, text};
    x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_comp_plan($1, $2, $3::jsonb) e", 3, params, on_planned, c);
    free(text);
    run_unref(r);
    goto out;
oom_linked:
    run_kill(r, "out of memory");
    run_unref(r);
    r = NULL;
    goto out;
oom:
    x4_error("compensate", "%s: cannot load the stored workflow", lc->id);
    if (r) run_free(r);
out:
    json_decref(plan);
    json_decref(rows);
    json_decref(view);
    json_decref(cp);
    free(lc);
}

void x4_comp_resume(x4_engine *e, const char *id) {
    if (e->stopping || run_find(e, id)) return;
    load_ctx *lc = calloc(1, sizeof *lc);
    if (!lc) return;
    lc->e = e;
    lc->sent_ms = x4_now_ms();
    snprintf(lc->id, sizeof lc->id, "%s", id);
    const char *params[] = {id};
    x4_pg_query(e->pg,
                "SELECT w.status, w.lease_owner, w.plan::text AS plan, w.compensation::text AS compensation, w.error, "
                "  w.final_status, (SELECT json_agg(json_build_object('id', s.id, 'service', s.service, 'status', s.status, "
                "      'output', s.output, 'attempts', s.comp_attempts) ORDER BY s.idx) "
                "    FROM steps s WHERE s.workflow_id = w.id)::text AS steps "
                "FROM workflows w WHERE w.id = $1",
                1, params, on_loaded, lc);
}

void x4_comp_lease_renewed(x4_engine *e, const char *const *ids, size_t n, uint64_t sent_ms) {
    for (comp_run *r = g_runs, *nx; r; r = nx) {
        nx = r->link;
        if (r->e != e || r->loaded_ms >= sent_ms) continue;
        int kept = 0;
        for (size_t i = 0; i < n && !kept; i++) kept = strcmp(ids[i], r->id) == 0;
        if (!kept) run_kill(r, "lease lost");
    }
}

void x4_comp_abort_all(x4_engine *e, const char *why) {
    for (comp_run *r = g_runs, *nx; r; r = nx) {
        nx = r->link;
        if (r->e == e) run_kill(r, why);
    }
}

size_t x4_comp_active(const x4_engine *e) {
    size_t n = 0;
    for (comp_run *r = g_runs; r; r = r->link) n += r->e == e;
    return n;
}
