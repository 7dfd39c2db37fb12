/* plan/sources.c — see sources.h. One refresh pipeline for start-up and the background:
 *   start-up:   GET cache → fresh? use it : fetch
 *   background: SET lock NX → won? fetch : GET cache (Redis down: fetch)
 *   fetch:      registry → Bazaar pages → SET cache
 *   then:       new catalog (file, registry, Bazaar records) → swap e->catalog if its version changed.
 * Start-up drives the loop until the pipeline is done (bounded); the engine's other handles are
 * open but nothing listens yet. State lives on the heap until the last callback after close. */
#include "plan/sources.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus/bus.h"
#include "core/engine.h"
#include "core/log.h"
#include "core/util.h"
#include "exec/httpc.h"
#include "pay/x402.h"
#include "plan/catalog.h"

#define BAZAAR_LIMIT 100
#define BAZAAR_MAX_PAGES 50
#define FETCH_TIMEOUT_MS 10000L
#define STARTUP_BUDGET_MS 30000

typedef struct src {
    x4_engine *e;
    uv_timer_t timer;
    int timer_open;
    int startup, startup_over, busy, closing, pending;
    json_t *file;          /* records of the catalog file (x4_service_to_json shape) */
    json_t *reg, *baz;     /* last good remote records per source, or NULL */
    int reg_down, baz_down;
    x4_httpc_call *call;
    /* the fetch in progress */
    json_t *new_reg, *new_baz;
    x4_catalog *baz_tmp;
    int baz_offset, baz_pages;
    const char *v1, *caip2;
    char cache_key[80], lock_key[80]; /* suffixed by a hash of the source configuration */
} src;

static src *g_src;

static void src_fetch_registry(src *s);
static void src_fetch_bazaar(src *s);
static void src_fetched(src *s);
static void src_finish(src *s);

static void src_maybe_free(src *s) {
    if (!s->closing || s->pending || s->timer_open) return;
    json_decref(s->file);
    json_decref(s->reg);
    json_decref(s->baz);
    json_decref(s->new_reg);
    json_decref(s->new_baz);
    if (s->baz_tmp) x4_catalog_unref(s->baz_tmp);
    if (g_src == s) g_src = NULL;
    free(s);
}

/* Logged once per outage; the recovery is logged too. */
static void src_down(src *s, int *down, const char *what, const char *why) {
    (void)s;
    if (!*down) x4_warn("catalog", "%s unavailable (%s); keeping its previous records", what, why);
    else x4_debug("catalog", "%s still unavailable (%s)", what, why);
    *down = 1;
}

static void src_up(int *down, const char *what, int n) {
    if (*down) x4_info("catalog", "%s is back: %d services", what, n);
    else x4_debug("catalog", "%d services from the %s", n, what);
    *down = 0;
}

static json_t *catalog_records(const x4_catalog *c) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < x4_catalog_count(c); i++) json_array_append_new(a, x4_service_to_json(x4_catalog_at(c, i)));
    return a;
}

static char *base_url(const char *base, const char *path) {
    x4_buf b = {0};
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    if (x4_buf_printf(&b, "%.*s%s", (int)bl, base, path) < 0) {
        x4_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static int src_get(src *s, const char *url, x4_httpc_cb cb) {
    x4_httpc_header h[] = {{"Accept", "application/json"}};
    x4_httpc_req req = {"GET", url, h, 1, NULL, 0, (long)s->e->cfg.connect_timeout_ms, FETCH_TIMEOUT_MS,
                        (size_t)s->e->cfg.max_response_bytes};
    s->pending++;
    s->call = x4_httpc_request(s->e->httpc, &req, cb, s);
    return 0;
}

/* Common head of an HTTP callback: 1 if the pipeline must stop (closing). */
static int src_http_enter(src *s) {
    s->pending--;
    s->call = NULL;
    if (s->closing) {
        src_maybe_free(s);
        return 1;
    }
    return 0;
}

static void resp_why(const x4_httpc_resp *r, char *why, size_t n) {
    if (r->status != X4_HTTPC_OK) snprintf(why, n, "%s", r->error[0] ? r->error : "transport error");
    else snprintf(why, n, "HTTP %ld", r->code);
}

/* ---- registry ---- */
static void on_registry(const x4_httpc_resp *r, void *ud) {
    src *s = ud;
    if (src_http_enter(s)) return;
    char why[300];
    json_t *j = NULL;
    if (r->status != X4_HTTPC_OK || r->code != 200) {
        resp_why(r, why, sizeof why);
    } else {
        json_error_t jerr;
        j = json_loadb(r->body, r->body_len, 0, &jerr);
        if (!j) snprintf(why, sizeof why, "answer is not JSON: line %d: %s", jerr.line, jerr.text);
        else if (!json_is_array(j)) {
            static const char *const wraps[] = {"services", "data", "items", "results"};
            int ok = 0;
            for (size_t i = 0; json_is_object(j) && i < 4 && !ok; i++) ok = json_is_array(json_object_get(j, wraps[i]));
            if (!ok) {
                snprintf(why, sizeof why, "answer is not a list of services");
                json_decref(j);
                j = NULL;
            }
        }
    }
    if (!j) {
        src_down(s, &s->reg_down, "registry", why);
    } else {
        x4_catalog *tmp = x4_catalog_new();
        if (tmp) {
            x4_catalog_add_registry(tmp, j, "registry");
            s->new_reg = catalog_records(tmp);
            x4_catalog_unref(tmp);
            src_up(&s->reg_down, "registry", s->new_reg ? (int)json_array_size(s->new_reg) : 0);
        }
        json_decref(j);
    }
    src_fetch_bazaar(s);
}

static void src_fetch_registry(src *s) {
    if (!s->e->cfg.registry_url) {
        src_fetch_bazaar(s);
        return;
    }
    char *url = base_url(s->e->cfg.registry_url, "/services/discover");
    if (!url) {
        src_fetch_bazaar(s);
        return;
    }
    src_get(s, url, on_registry);
    free(url);
}

/* ---- Bazaar ---- */
/* v1 items name the network by its v1 name: map it to the CAIP-2 id so one filter fits both. */
static void normalize_networks(json_t *page, const char *v1, const char *caip2) {
    json_t *items = json_object_get(page, "items"), *it, *a;
    size_t i, k;
    if (!v1 || !caip2) return;
    json_array_foreach(items, i, it) {
        json_array_foreach(json_object_get(it, "accepts"), k, a) {
            const char *net = json_string_value(json_object_get(a, "network"));
            if (net && !strcmp(net, v1)) json_object_set_new(a, "network", json_string(caip2));
        }
    }
}

static void bazaar_fail(src *s, const char *why) {
    if (s->baz_tmp) x4_catalog_unref(s->baz_tmp);
    s->baz_tmp = NULL;
    src_down(s, &s->baz_down, "Bazaar", why);
    src_fetched(s);
}

static void src_bazaar_page(src *s);

static void on_bazaar(const x4_httpc_resp *r, void *ud) {
    src *s = ud;
    if (src_http_enter(s)) return;
    char why[300];
    if (r->status != X4_HTTPC_OK || r->code != 200) {
        resp_why(r, why, sizeof why);
        bazaar_fail(s, why);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
    json_t *items = j ? json_object_get(j, "items") : NULL;
    if (!j || !json_is_array(items)) {
        if (j) snprintf(why, sizeof why, "discovery answer has no items list");
        else snprintf(why, sizeof why, "discovery answer is not JSON: line %d: %s", jerr.line, jerr.text);
        json_decref(j);
        bazaar_fail(s, why);
        return;
    }
    normalize_networks(j, s->v1, s->caip2);
    x4_catalog_add_bazaar(s->baz_tmp, j, s->caip2, "bazaar");
    size_t nitems = json_array_size(items);
    json_t *tj = json_object_get(json_object_get(j, "pagination"), "total");
    long long total = json_is_integer(tj) ? (long long)json_integer_value(tj) : -1;
    json_decref(j);
    s->baz_pages++;
    s->baz_offset += (int)nitems;
    if (nitems == 0 || total < 0 || s->baz_offset >= total || s->baz_pages >= BAZAAR_MAX_PAGES) {
        if (total >= 0 && s->baz_offset < total && nitems)
            x4_warn("catalog", "Bazaar lists %lld resources; read the first %d pages only", total, BAZAAR_MAX_PAGES);
        s->new_baz = catalog_records(s->baz_tmp);
        x4_catalog_unref(s->baz_tmp);
        s->baz_tmp = NULL;
        src_up(&s->baz_down, "Bazaar", s->new_baz ? (int)json_array_size(s->new_baz) : 0);
        src_fetched(s);
        return;
    }
    src_bazaar_page(s);
}

static void src_bazaar_page(src *s) {
    char path[96];
    snprintf(path, sizeof path, "/discovery/resources?limit=%d&offset=%d", BAZAAR_LIMIT, s->baz_offset);
    char *url = base_url(s->e->cfg.facilitator_url, path);
    if (!url) {
        bazaar_fail(s, "out of memory");
        return;
    }
    src_get(s, url, on_bazaar);
    free(url);
}

static void src_fetch_bazaar(src *s) {
    if (!s->e->cfg.facilitator_url) {
        src_fetched(s);
        return;
    }
    s->baz_tmp = x4_catalog_new();
    s->baz_offset = s->baz_pages = 0;
    if (!s->baz_tmp) {
        bazaar_fail(s, "out of memory");
        return;
    }
    src_bazaar_page(s);
}

/* ---- the Redis cache ---- */
static void on_bus_done(redisReply *reply, const char *err, void *ud) {
    (void)reply;
    src *s = ud;
    s->pending--;
    if (err) x4_debug("catalog", "cache write failed: %s", err);
    src_maybe_free(s);
}

static void cache_append(json_t *out, const json_t *recs, const char *source) {
    size_t i;
    json_t *r;
    json_array_foreach(recs, i, r) {
        json_t *c = json_copy((json_t *)r);
        if (!c) continue;
        json_object_set_new(c, "source", json_string(source));
        json_array_append_new(out, c);
    }
}

static void cache_write(src *s) {
    json_t *o = json_object(), *arr = json_array();
    if (!o || !arr) {
        json_decref(o);
        json_decref(arr);
        return;
    }
    cache_append(arr, s->reg, "registry");
    cache_append(arr, s->baz, "bazaar");
    json_object_set_new(o, "fetchedAt", json_integer((json_int_t)x4_now_ms()));
    json_object_set_new(o, "services", arr);
    char *dump = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!dump) return;
    char px[32];
    snprintf(px, sizeof px, "%lld", (long long)s->e->cfg.catalog_cache_ttl_ms * 2);
    const char *argv[] = {"SET", s->cache_key, dump, "PX", px};
    size_t lens[] = {3, strlen(s->cache_key), strlen(dump), 2, strlen(px)};
    s->pending++;
    x4_bus_command(s->e->bus, 5, argv, lens, on_bus_done, s);
    free(dump);
}

/* Parses a cache value into s->reg / s->baz. fresh_only: refuse an entry older than the TTL.
 * 1 if used. */
static int cache_use(src *s, const char *str, size_t len, int fresh_only) {
    json_t *j = json_loadb(str, len, 0, NULL);
    json_t *at = json_object_get(j, "fetchedAt"), *arr = json_object_get(j, "services");
    if (!json_is_integer(at) || !json_is_array(arr)) {
        if (j || len) x4_warn("catalog", "the cache %s is malformed; ignored", s->cache_key);
        json_decref(j);
        return 0;
    }
    uint64_t now = x4_now_ms(), t = (uint64_t)json_integer_value(at);
    if (fresh_only && (t > now + 60000 || now - t >= (uint64_t)s->e->cfg.catalog_cache_ttl_ms)) {
        json_decref(j);
        return 0;
    }
    json_t *reg = json_array(), *baz = json_array(), *r;
    size_t i;
    json_array_foreach(arr, i, r) {
        const char *so = json_string_value(json_object_get(r, "source"));
        json_t *dst = so && !strcmp(so, "registry") ? reg : so && !strcmp(so, "bazaar") ? baz : NULL;
        json_t *c = dst ? json_copy(r) : NULL;
        if (!c) continue;
        json_object_del(c, "source");
        json_array_append_new(dst, c);
    }
    json_decref(s->reg);
    json_decref(s->baz);
    s->reg = reg;
    s->baz = baz;
    json_decref(j);
    x4_debug("catalog", "remote records from the cache (%zu registry, %zu Bazaar, %llu ms old)",
             json_array_size(reg), json_array_size(baz), (unsigned long long)(now > t ? now - t : 0));
    return 1;
}

static void src_fetch(src *s) {
    json_decref(s->new_reg);
    json_decref(s->new_baz);
    s->new_reg = s->new_baz = NULL;
    src_fetch_registry(s);
}

static void on_cache_get(redisReply *reply, const char *err, void *ud) {
    src *s = ud;
    s->pending--;
    if (s->closing) {
        src_maybe_free(s);
        return;
    }
    int used = 0;
    if (!err && reply && reply->type == REDIS_REPLY_STRING) used = cache_use(s, reply->str, reply->len, s->startup);
    if (used) {
        src_finish(s);
        return;
    }
    if (s->startup) {
        if (err) x4_warn("catalog", "catalog cache unavailable (%s); fetching", err);
        src_fetch(s);
    } else {
        src_finish(s); /* another process refreshes; keep what we have */
    }
}

static void cache_get(src *s) {
    const char *argv[] = {"GET", s->cache_key};
    size_t lens[] = {3, strlen(s->cache_key)};
    s->pending++;
    x4_bus_command(s->e->bus, 2, argv, lens, on_cache_get, s);
}

static void on_lock(redisReply *reply, const char *err, void *ud) {
    src *s = ud;
    s->pending--;
    if (s->closing) {
        src_maybe_free(s);
        return;
    }
    if (err || !reply) {
        x4_debug("catalog", "refresh lock unavailable (%s); refreshing alone", err ? err : "no reply");
        src_fetch(s);
    } else if (reply->type == REDIS_REPLY_STATUS) {
        src_fetch(s);
    } else {
        cache_get(s);
    }
}

/* ---- the pipeline ---- */
static void src_fetched(src *s) {
    int any = 0;
    if (s->new_reg) {
        json_decref(s->reg);
        s->reg = s->new_reg;
        s->new_reg = NULL;
        any = 1;
    }
    if (s->new_baz) {
        json_decref(s->baz);
        s->baz = s->new_baz;
        s->new_baz = NULL;
        any = 1;
    }
    if (any) cache_write(s);
    src_finish(s);
}

static void add_all(x4_catalog *c, const json_t *recs, const char *source) {
    size_t i;
    json_t *r;
    char err[256];
    json_array_foreach(recs, i, r) {
        if (x4_catalog_add_record(c, r, source, err, sizeof err) < 0)
            x4_debug("catalog", "%s record %zu skipped: %s", source, i, err);
    }
}

static void src_finish(src *s) {
    x4_engine *e = s->e;
    x4_catalog *c = x4_catalog_new();
    if (c) {
        add_all(c, s->file, "file");
        add_all(c, s->reg, "registry");
        add_all(c, s->baz, "bazaar");
        if (!e->catalog || strcmp(x4_catalog_version(c), x4_catalog_version(e->catalog))) {
            x4_catalog *old = e->catalog;
            e->catalog = c;
            if (old) x4_catalog_unref(old);
            x4_info("catalog", "catalog %s: %zu services (%zu file, %zu registry, %zu Bazaar before de-duplication)",
                    x4_catalog_version(c), x4_catalog_count(c), json_array_size(s->file), json_array_size(s->reg),
                    json_array_size(s->baz));
        } else {
            x4_catalog_unref(c);
        }
    }
    s->busy = 0;
    s->startup = 0;
}

static void src_begin(src *s) {
    if (s->busy || s->closing) return;
    s->busy = 1;
    if (s->startup) {
        cache_get(s);
        return;
    }
    char px[32];
    snprintf(px, sizeof px, "%lld", (long long)s->e->cfg.catalog_refresh_ms);
    const char *argv[] = {"SET", s->lock_key, s->e->owner, "NX", "PX", px};
    size_t lens[] = {3, strlen(s->lock_key), strlen(s->e->owner), 2, 2, strlen(px)};
    s->pending++;
    x4_bus_command(s->e->bus, 6, argv, lens, on_lock, s);
}

static void on_tick(uv_timer_t *t) {
    src *s = t->data;
    if (s->startup) { /* start-up budget over: carry on in the background */
        s->startup_over = 1;
        return;
    }
    src_begin(s);
}

static void on_timer_closed(uv_handle_t *h) {
    src *s = h->data;
    s->timer_open = 0;
    src_maybe_free(s);
}

void x4_sources_start(x4_engine *e) {
    if (g_src) return;
    src *s = calloc(1, sizeof *s);
    if (!s) return;
    s->e = e;
    s->file = e->catalog ? catalog_records(e->catalog) : json_array();
    if (x4_x402_network_resolve(e->cfg.network, &s->v1, &s->caip2) < 0) s->v1 = s->caip2 = NULL;
    /* Processes with the same sources share one cache; different deployments on one Redis don't mix. */
    uint64_t h = 1469598103934665603ULL;
    const char *parts[] = {e->cfg.registry_url, e->cfg.facilitator_url, s->caip2};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i] ? parts[i] : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    snprintf(s->cache_key, sizeof s->cache_key, "%s:%016llx", X4_CATALOG_CACHE_KEY, (unsigned long long)h);
    snprintf(s->lock_key, sizeof s->lock_key, "%s:%016llx", X4_CATALOG_LOCK_KEY, (unsigned long long)h);
    g_src = s;
    if (!e->cfg.registry_url && !e->cfg.facilitator_url) {
        s->closing = 1; /* nothing remote: the file is the catalog */
        src_maybe_free(s);
        return;
    }
    uv_timer_init(e->loop, &s->timer);
    s->timer.data = s;
    s->timer_open = 1;
    s->startup = 1;
    uv_timer_start(&s->timer, on_tick, STARTUP_BUDGET_MS, 0);
    src_begin(s);
    while (s->busy && !s->startup_over && !s->closing) uv_run(e->loop, UV_RUN_ONCE);
    if (s->busy) x4_warn("catalog", "remote catalog sources still loading after %d ms; continuing", STARTUP_BUDGET_MS);
    s->startup = 0;
    uv_timer_stop(&s->timer);
    uint64_t every = (uint64_t)e->cfg.catalog_refresh_ms;
    uv_timer_start(&s->timer, on_tick, every, every);
    uv_unref((uv_handle_t *)&s->timer);
}

void x4_sources_close(x4_engine *e) {
    src *s = g_src;
    if (!s || s->e != e || s->closing) return;
    s->closing = 1;
    if (s->call) x4_httpc_cancel(s->call); /* its callback runs now and sees closing */
    if (s->timer_open && !uv_is_closing((uv_handle_t *)&s->timer)) uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    src_maybe_free(s);
}
