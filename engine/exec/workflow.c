/* exec/workflow.c — see workflow.h. */
#include "exec/workflow.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/util.h"
#include "exec/compensate.h"
#include "exec/planning.h"
#include "exec/policy.h"
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
    uint64_t t0_ns; /* uv_hrtime() when planning started: the planning latency's start */
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
    p->t0_ns = uv_hrtime();
    p->next = g_planning;
    g_planning = p;
}

static uint64_t planning_t0(const char *id) {
    for (planning *p = g_planning; p; p = p->next)
        if (!strcmp(p->id, id)) return p->t0_ns;
    return 0;
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

/* ---- the plan cache (Redis) ----
 * Key: BLAKE2b of the normalised task (lower case, single spaces), the catalog version, the
 * maxCost and — unless PLAN_CACHE_SHARED=1 — the user. A hit is validated again against the
 * current catalog (x4_plan_parse) before use. Identical requests plan once: the first takes
 * `<key>:lock` (SET NX PX) and reads the key once more (the previous holder may have stored it
 * and let go in between), the others poll the key for up to PLAN_CACHE_WAIT_MS and only then
 * plan themselves. Redis down = no cache, never an error.
 *
 * In front of Redis, an in-process copy (l1_get / l1_put): the cached entries this process has
 * read or written, in L1_SLOTS slots chosen by the key's hash (a newer entry takes the slot),
 * each kept at most L1_TTL_MS and never past PLAN_CACHE_TTL_MS — a repeated task is answered
 * without a round trip, and validated against the current catalog like a Redis hit.
 * PLAN_CACHE_LOCAL=off turns it off (every hit is then a Redis GET). */

#define CACHE_POLL_MS 25
#define L1_SLOTS 1024
#define L1_TTL_MS 30000

static struct {
    char key[96];
    char *text; /* "<planner>\n<plan json>", as in Redis */
    size_t len;
    uint64_t until_ms;
} g_l1[L1_SLOTS];

typedef struct plan_job {
    x4_engine *e;
    char id[96];
    char *input;
    char *user;
    uint64_t max_cost;
    char key[96];          /* "" = no cache */
    int lock_owned;
    uint64_t t0_ns; /* planning started (planning_t0) */
    uint64_t waited_ms;
    uv_timer_t *timer;
} plan_job;

static void job_free(plan_job *j) {
    planning_del(j->id);
    free(j->input);
    free(j->user);
    free(j);
}

static uint64_t cache_ttl_ms(void) {
    const char *v = getenv("PLAN_CACHE_TTL_MS");
    return v ? strtoull(v, NULL, 10) : 600000;
}

static int l1_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("PLAN_CACHE_LOCAL");
        on = !(v && !strcmp(v, "off"));
    }
    return on;
}

static const char *l1_get(const char *key, size_t *len) {
    if (!l1_on()) return NULL;
    unsigned slot = (unsigned)(x4_hash_str(key) % L1_SLOTS);
    if (!g_l1[slot].text || strcmp(g_l1[slot].key, key) != 0) return NULL;
    if (x4_mono_us() / 1000 >= g_l1[slot].until_ms) {
        free(g_l1[slot].text);
        g_l1[slot].text = NULL;
        return NULL;
    }
    *len = g_l1[slot].len;
    return g_l1[slot].text;
}

static void l1_put(const char *key, const char *text, size_t len) {
    if (!l1_on()) return;
    unsigned slot = (unsigned)(x4_hash_str(key) % L1_SLOTS);
    char *copy = malloc(len + 1);
    if (!copy) return;
    memcpy(copy, text, len);
    copy[len] = '\0';
    free(g_l1[slot].text);
    snprintf(g_l1[slot].key, sizeof g_l1[slot].key, "%s", key);
    g_l1[slot].text = copy;
    g_l1[slot].len = len;
    uint64_t ttl = cache_ttl_ms();
    g_l1[slot].until_ms = x4_mono_us() / 1000 + (ttl < L1_TTL_MS ? ttl : L1_TTL_MS);
}

static void l1_clear(void) {
    for (size_t i = 0; i < L1_SLOTS; i++) {
        free(g_l1[i].text);
        g_l1[i].text = NULL;
    }
}

static void cache_key(x4_engine *e, const char *task, const char *user, uint64_t max_cost, char out[96]) {
    crypto_generichash_state st;
    unsigned char h[20];
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    int space = 0, started = 0;
    for (const char *p = task; *p; p++) { /* lower case, runs of blanks as one space, trimmed */
        unsigned char ch = (unsigned char)*p;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = started;
            continue;
        }
        if (space) crypto_generichash_update(&st, (const unsigned char *)" ", 1);
        space = 0;
        started = 1;
        unsigned char lc = (unsigned char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        crypto_generichash_update(&st, &lc, 1);
    }
    char extra[256];
    const char *shared = getenv("PLAN_CACHE_SHARED");
    snprintf(extra, sizeof extra, "|%s|%s|%llu|%s", x4_catalog_version(e->catalog), x4_policy_version(e),
             (unsigned long long)max_cost, shared && !strcmp(shared, "1") ? "*" : user);
    crypto_generichash_update(&st, (const unsigned char *)extra, strlen(extra));
    crypto_generichash_final(&st, h, sizeof h);
    char hex[41];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, 96, "x402r:plan:%s", hex);
}

static x4_plan *cached_plan(x4_engine *e, const char *text, size_t len, uint64_t max_cost, char planner[80]);

static void lock_release(x4_engine *e, const char *key) {
    char lock[112];
    snprintf(lock, sizeof lock, "%s:lock", key);
    const char *argv[] = {"DEL", lock};
    size_t lens[] = {3, strlen(lock)};
    x4_bus_command(e->bus, 2, argv, lens, NULL, NULL);
}

static void cache_put(x4_engine *e, const char *key, const char *plan_text, const char *planner, int lock_owned) {
    if (!key || !key[0] || !e->bus) return;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)cache_ttl_ms());
    x4_buf b = {0};
    if (x4_buf_printf(&b, "%s\n%s", planner, plan_text) == 0) {
        l1_put(key, b.data, b.len);
        const char *argv[] = {"SET", key, b.data, "PX", ttl};
        size_t lens[] = {3, strlen(key), b.len, 2, strlen(ttl)};
        x4_bus_command(e->bus, 5, argv, lens, NULL, NULL);
    }
    x4_buf_free(&b);
    if (lock_owned) lock_release(e, key);
}

typedef struct {
    wf_ctx *w;
    uint64_t t0_ns; /* the plan was valid: the store's latency starts here */
} stored_ctx;

/* plan_ready written: the store's latency ends here (a row: the workflow did move from
 * planning), and the workflow leaves the planning set (see store_plan_cached). */
static void on_plan_stored(PGresult *res, const char *err, void *ud) {
    stored_ctx *s = ud;
    if (!err && PQntuples(res) > 0) x4_planning_latency_record(X4_PLANNING_STORE, uv_hrtime() - s->t0_ns);
    planning_del(s->w->id);
    on_published(res, err, s->w);
    free(s);
}

/* Stores a valid plan: planning -> awaiting_approval (and, given a key, caches it). t0_ns:
 * when planning started (0: unknown, not measured): the planning latency ends here. */
static void store_plan_cached(x4_engine *e, const char *id, const x4_plan *plan, const char *planner,
                              const char *key, int lock_owned, uint64_t t0_ns) {
    json_t *norm = x4_plan_to_json(plan);
    char *text = norm ? json_dumps(norm, JSON_COMPACT) : NULL;
    json_decref(norm);
    if (text && strncmp(planner, "cache", 5) != 0) cache_put(e, key, text, planner, lock_owned);
    wf_ctx *w = text ? ctx_new(e, id) : NULL;
    stored_ctx *sc = w ? calloc(1, sizeof *sc) : NULL;
    if (!sc) {
        free(w);
        free(text);
        return;
    }
    sc->w = w;
    uint64_t now = uv_hrtime();
    if (t0_ns)
        x4_planning_latency_record(strncmp(planner, "cache", 5) == 0 ? X4_PLANNING_CACHE : X4_PLANNING_PLANNER,
                                   now - t0_ns);
    sc->t0_ns = now;
    /* held in the planning set until plan_ready is written: a lease cycle reading the row
     * before then (still "planning") must not plan it a second time */
    planning_add(id);
    char est[24], ttl[24];
    snprintf(est, sizeof est, "%llu", (unsigned long long)plan->estimate);
    snprintf(ttl, sizeof ttl, "%lld", (long long)e->cfg.approval_ttl_ms);
    const char *params[] = {id, text, est, ttl, planner};
    x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_wf_plan_ready($1, $2::jsonb, $3::bigint, $4::bigint, $5) e", 5,
                params, on_plan_stored, sc);
    free(text);
}

/* The offline planner (synchronous, no network). */
static void plan_offline_cached(x4_engine *e, const char *id, const char *input, uint64_t max_cost, const char *key,
                                int lock_owned, uint64_t t0_ns) {
    json_t *plan_j = NULL, *errors = NULL;
    x4_plan *plan = NULL;
    char why[512];
    if (x4_planning_offline(e, input, max_cost, &plan_j, why, sizeof why) < 0) {
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
    store_plan_cached(e, id, plan, "offline", key, lock_owned, t0_ns);
out:
    json_decref(plan_j);
    json_decref(errors);
    x4_plan_free(plan);
}

/* The fallback is stored: now plan offline. Chained, not sent together: two writes on different
 * pool connections may commit in either order, and the stream must say why before the plan. */
static void on_fallback_stored(PGresult *res, const char *err, void *ud) {
    plan_job *j = ud;
    x4_engine *e = j->e;
    if (err) x4_warn("workflow", "%s: write failed: %s", j->id, err);
    else x4_events_publish_rows(e, res);
    if (!e->stopping) plan_offline_cached(e, j->id, j->input, j->max_cost, j->key, j->lock_owned, j->t0_ns);
    job_free(j);
}

static void on_llm_plan(x4_plan *plan, const char *why, const char *planner, int cancelled, void *ud) {
    plan_job *j = ud;
    x4_engine *e = j->e;
    if (!cancelled && !e->stopping) {
        if (plan) {
            store_plan_cached(e, j->id, plan, planner, j->key, j->lock_owned, j->t0_ns);
        } else {
            /* say why, then plan offline */
            json_t *d = json_pack("{s:s, s:s}", "reason", why, "planner", planner);
            char *data = json_dumps(d, JSON_COMPACT);
            json_decref(d);
            if (data) {
                const char *params[] = {j->id, data};
                x4_pg_query(e->pg, "SELECT " X4_EV_COLS " FROM x4_emit($1, 'workflow.planner_fallback', $2::jsonb) e",
                            2, params, on_fallback_stored, j);
                free(data);
                x4_plan_free(plan);
                return;
            }
            plan_offline_cached(e, j->id, j->input, j->max_cost, j->key, j->lock_owned, j->t0_ns);
        }
    }
    x4_plan_free(plan);
    job_free(j);
}

/* Plans for real (the cache missed, or there is none). */
static void job_plan(plan_job *j) {
    if (x4_planning_llm_enabled()) {
        x4_planning_llm(j->e, j->input, j->max_cost, on_llm_plan, j);
        return;
    }
    plan_offline_cached(j->e, j->id, j->input, j->max_cost, j->key, j->lock_owned, j->t0_ns);
    job_free(j);
}

static void cache_get(plan_job *j);

/* A cached "<planner>\n<plan json>" for job j: if it is still valid against the catalog the
 * workflow is stored with it and j is done (1); else 0. from_redis: also kept in the
 * process's copy. */
static int job_take_cached(plan_job *j, const char *text, size_t len, int from_redis) {
    char planner[80];
    x4_plan *plan = cached_plan(j->e, text, len, j->max_cost, planner);
    if (!plan) return 0;
    if (from_redis) l1_put(j->key, text, len);
    if (j->lock_owned) lock_release(j->e, j->key);
    store_plan_cached(j->e, j->id, plan, planner, NULL, 0, j->t0_ns);
    x4_plan_free(plan);
    job_free(j);
    return 1;
}

static void on_poll_timer(uv_timer_t *t) {
    plan_job *j = t->data;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
    j->timer = NULL;
    if (j->e->stopping) {
        job_free(j);
        return;
    }
    cache_get(j);
}

/* The lock is ours: the entry is read once more before planning — the one who held the lock
 * before may have stored it and let go between our miss and our SET NX. */
static void on_locked_get(redisReply *reply, const char *err, void *ud) {
    plan_job *j = ud;
    if (!err && reply && reply->type == REDIS_REPLY_STRING && !j->e->stopping &&
        job_take_cached(j, reply->str, reply->len, 1))
        return;
    job_plan(j);
}

static void on_lock(redisReply *reply, const char *err, void *ud) {
    plan_job *j = ud;
    if (!err && reply && reply->type == REDIS_REPLY_STATUS) { /* OK: ours to plan, unless it is there now */
        j->lock_owned = 1;
        const char *argv[] = {"GET", j->key};
        size_t lens[] = {3, strlen(j->key)};
        x4_bus_command(j->e->bus, 2, argv, lens, on_locked_get, j);
        return;
    }
    if (err || !reply || reply->type != REDIS_REPLY_NIL) { /* no Redis: no single-flight either */
        j->key[0] = 0;
        job_plan(j);
        return;
    }
    /* someone else is planning it: wait for their answer */
    const char *w = getenv("PLAN_CACHE_WAIT_MS");
    uint64_t limit = w ? strtoull(w, NULL, 10) : 15000;
    if (j->waited_ms >= limit) {
        j->key[0] = 0;
        job_plan(j);
        return;
    }
    j->timer = malloc(sizeof *j->timer);
    if (!j->timer) {
        job_plan(j);
        return;
    }
    uv_timer_init(j->e->loop, j->timer);
    j->timer->data = j;
    j->waited_ms += CACHE_POLL_MS;
    uv_timer_start(j->timer, on_poll_timer, CACHE_POLL_MS, 0);
}

static void on_cached(redisReply *reply, const char *err, void *ud) {
    plan_job *j = ud;
    x4_engine *e = j->e;
    /* "<planner>\n<plan json>": validated again against the current catalog */
    if (!err && reply && reply->type == REDIS_REPLY_STRING && job_take_cached(j, reply->str, reply->len, 1)) return;
    if (err || !e->bus) { /* no Redis */
        j->key[0] = 0;
        job_plan(j);
        return;
    }
    /* miss: try to become the one that plans it */
    char lock[112], ms[16] = "60000";
    snprintf(lock, sizeof lock, "%s:lock", j->key);
    const char *argv[] = {"SET", lock, e->owner, "NX", "PX", ms};
    size_t lens[] = {3, strlen(lock), strlen(e->owner), 2, 2, strlen(ms)};
    x4_bus_command(e->bus, 6, argv, lens, on_lock, j);
}

/* ---- the probe at creation (x4_wf_cache_probe) ---- */

typedef struct {
    x4_engine *e;
    uint64_t max_cost;
    x4_wf_cache_cb cb;
    void *ud;
    char key[96];
} probe_ctx;

/* A cached "<planner>\n<plan json>" validated against the current catalog, or NULL. */
static x4_plan *cached_plan(x4_engine *e, const char *text, size_t len, uint64_t max_cost, char planner[80]) {
    const char *nl = memchr(text, '\n', len);
    json_error_t jerr;
    json_t *pj = nl ? json_loadb(nl + 1, len - (size_t)(nl + 1 - text), 0, &jerr) : NULL;
    x4_plan *plan = NULL;
    json_t *errors = NULL;
    if (pj && x4_plan_parse(pj, e->catalog, max_cost, &plan, &errors) == 0)
        snprintf(planner, 80, "cache:%.*s", (int)(nl - text) > 60 ? 60 : (int)(nl - text), text);
    json_decref(pj);
    json_decref(errors);
    return plan;
}

static void on_probe(redisReply *reply, const char *err, void *ud) {
    probe_ctx *p = ud;
    char planner[80] = "";
    x4_plan *plan = NULL;
    if (!err && reply && reply->type == REDIS_REPLY_STRING && !p->e->stopping) {
        plan = cached_plan(p->e, reply->str, reply->len, p->max_cost, planner);
        if (plan) l1_put(p->key, reply->str, reply->len);
    }
    p->cb(plan, planner, p->ud);
    free(p);
}

void x4_wf_cache_probe(x4_engine *e, const char *task, const char *user, uint64_t max_cost, x4_wf_cache_cb cb,
                       void *ud) {
    const char *off = getenv("PLAN_CACHE");
    if ((off && !strcmp(off, "off")) || !e->catalog) {
        cb(NULL, "", ud);
        return;
    }
    char key[96];
    cache_key(e, task, user, max_cost, key);
    size_t len;
    const char *text = l1_get(key, &len);
    if (text) { /* answered in this process, at once */
        char planner[80] = "";
        x4_plan *plan = cached_plan(e, text, len, max_cost, planner);
        if (plan) {
            cb(plan, planner, ud);
            return;
        }
    }
    probe_ctx *p = e->bus && x4_bus_healthy(e->bus) ? calloc(1, sizeof *p) : NULL;
    if (!p) {
        cb(NULL, "", ud);
        return;
    }
    p->e = e;
    p->max_cost = max_cost;
    p->cb = cb;
    p->ud = ud;
    snprintf(p->key, sizeof p->key, "%s", key);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};
    x4_bus_command(e->bus, 2, argv, lens, on_probe, p);
}

static void cache_get(plan_job *j) {
    x4_engine *e = j->e;
    size_t len;
    const char *text = j->key[0] ? l1_get(j->key, &len) : NULL;
    if (text && job_take_cached(j, text, len, 0)) return;
    if (!j->key[0] || !e->bus || !x4_bus_healthy(e->bus)) {
        j->key[0] = 0;
        job_plan(j);
        return;
    }
    const char *argv[] = {"GET", j->key};
    size_t lens[] = {3, strlen(j->key)};
    x4_bus_command(e->bus, 2, argv, lens, on_cached, j);
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
    plan_job *j = calloc(1, sizeof *j);
    if (!j || !(j->input = strdup(input)) || !(j->user = strdup(x4_pg_val(res, 0, "user_id")))) {
        if (j) {
            free(j->input);
            free(j);
        }
        goto out;
    }
    j->e = e;
    j->max_cost = max_cost;
    j->t0_ns = planning_t0(c->id);
    snprintf(j->id, sizeof j->id, "%s", c->id);
    const char *off = getenv("PLAN_CACHE");
    if (!(off && !strcmp(off, "off"))) cache_key(e, input, j->user, max_cost, j->key);
    free(c);
    cache_get(j); /* planning_del when the job ends */
    return;
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
    x4_pg_query(e->pg, "SELECT status, lease_owner, input, max_cost, user_id FROM workflows WHERE id = $1", 1, params,
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
        if (g_lease_ok_ms && x4_now_ms() - g_lease_ok_ms > (uint64_t)e->cfg.lease_ms) {
            x4_sched_abort_all(e, "leases could not be renewed");
            x4_comp_abort_all(e, "leases could not be renewed");
        }
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
        } else if (strcmp(st, "compensating") == 0) {
            renewed[nr++] = id;
            x4_comp_resume(e, id);
        }
    }
    x4_sched_lease_renewed(e, renewed, nr, c->sent_ms);
    x4_comp_lease_renewed(e, renewed, nr, c->sent_ms);
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
    l1_clear();
    while (g_planning) planning_del(g_planning->id);
    if (uv_is_active((uv_handle_t *)&e->lease_timer) || e->lease_timer.loop) {
        uv_timer_stop(&e->lease_timer);
        uv_timer_stop(&e->expiry_timer);
        uv_close((uv_handle_t *)&e->lease_timer, NULL);
        uv_close((uv_handle_t *)&e->expiry_timer, NULL);
    }
}
