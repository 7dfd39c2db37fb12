/* exec/planning.c — see planning.h. One LLM client per process (a static: one engine per
 * process); the planning latency rings. */
#include "exec/planning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "lua/lua.h"
#include "plan/catalog.h"
#include "plan/llm.h"
#include "plan/matcher.h"

/* ---- planning latency ---- */

static struct {
    uint64_t ns[X4_PLANNING_SAMPLES];
    size_t next;
    uint64_t count;
} g_lat[3];

void x4_planning_latency_record(x4_planning_source src, uint64_t ns) {
    if ((unsigned)src > 2) return;
    g_lat[src].ns[g_lat[src].next] = ns;
    g_lat[src].next = (g_lat[src].next + 1) % X4_PLANNING_SAMPLES;
    g_lat[src].count++;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void x4_planning_latency(x4_planning_source src, uint64_t *count, double *p50_us, double *p99_us, double *max_us) {
    *count = 0;
    *p50_us = *p99_us = *max_us = 0;
    if ((unsigned)src > 2) return;
    size_t n = g_lat[src].count < X4_PLANNING_SAMPLES ? (size_t)g_lat[src].count : X4_PLANNING_SAMPLES;
    *count = g_lat[src].count;
    if (!n) return;
    uint64_t *v = malloc(n * sizeof *v);
    if (!v) return;
    memcpy(v, g_lat[src].ns, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_u64);
    /* nearest rank: the smallest sample with at least q·n samples at or below it */
    size_t r50 = (n * 50 + 99) / 100, r99 = (n * 99 + 99) / 100;
    *p50_us = (double)v[(r50 ? r50 : 1) - 1] / 1e3;
    *p99_us = (double)v[(r99 ? r99 : 1) - 1] / 1e3;
    *max_us = (double)v[n - 1] / 1e3;
    free(v);
}

static void summary(x4_buf *b, const char *name, const char *labels, x4_planning_source src) {
    uint64_t n;
    double p50, p99, mx;
    x4_planning_latency(src, &n, &p50, &p99, &mx);
    const char *sep = *labels ? "," : "";
    x4_buf_printf(b,
                  "%s{%s%squantile=\"0.5\"} %.6f\n%s{%s%squantile=\"0.99\"} %.6f\n%s{%s%squantile=\"1\"} %.6f\n"
                  "%s_count%s%s%s %llu\n",
                  name, labels, sep, p50 / 1e6, name, labels, sep, p99 / 1e6, name, labels, sep, mx / 1e6, name,
                  *labels ? "{" : "", labels, *labels ? "}" : "", (unsigned long long)n);
}

void x4_planning_metrics(x4_buf *b) {
    x4_buf_puts(b, "# HELP x402r_planning_seconds Planning time in this process (last samples), up to a valid plan: "
                   "source cache = a cache hit, from the request to the cached plan re-validated; planner = from the "
                   "start of planning to its plan validated\n# TYPE x402r_planning_seconds summary\n");
    summary(b, "x402r_planning_seconds", "source=\"cache\"", X4_PLANNING_CACHE);
    summary(b, "x402r_planning_seconds", "source=\"planner\"", X4_PLANNING_PLANNER);
    x4_buf_puts(b, "# HELP x402r_plan_store_seconds From a valid plan to the workflow committed with it (last "
                   "samples)\n# TYPE x402r_plan_store_seconds summary\n");
    summary(b, "x402r_plan_store_seconds", "", X4_PLANNING_STORE);
}

int x4_planning_offline(x4_engine *e, const char *task, uint64_t max_cost, json_t **plan, char *err, size_t errlen) {
    return x4_planner_plan_lua(e->catalog, task, max_cost, NULL, e->lua, plan, NULL, err, errlen);
}

/* ---- the LLM planner ---- */

static x4_llm *g_llm;
static x4_llm_opts g_opts;
static char g_planner[64];

static const char *env(const char *n) {
    const char *v = getenv(n);
    return v && *v ? v : NULL;
}

int x4_planning_open(x4_engine *e, char *err, size_t errlen) {
    const char *prov = env("LLM_PROVIDER");
    memset(&g_opts, 0, sizeof g_opts);
    if (!prov) prov = env("OPENAI_BASE_URL") ? "openai" : (e->cfg.anthropic_api_key ? "anthropic" : "off");
    if (!strcmp(prov, "off")) return 0;
    if (strcmp(prov, "anthropic") && strcmp(prov, "openai")) {
        snprintf(err, errlen, "LLM_PROVIDER: expected anthropic, openai or off, got '%.32s'", prov);
        return -1;
    }
    if (!strcmp(prov, "anthropic")) {
        g_opts.provider = X4_LLM_ANTHROPIC;
        g_opts.base_url = env("ANTHROPIC_BASE_URL");
        g_opts.api_key = e->cfg.anthropic_api_key;
        if (!g_opts.api_key) {
            snprintf(err, errlen, "ANTHROPIC_API_KEY: required when LLM_PROVIDER is anthropic");
            return -1;
        }
    } else {
        g_opts.provider = X4_LLM_OPENAI;
        g_opts.base_url = env("OPENAI_BASE_URL");
        g_opts.api_key = env("OPENAI_API_KEY");
        if (!g_opts.base_url) {
            snprintf(err, errlen, "OPENAI_BASE_URL: required when LLM_PROVIDER is openai");
            return -1;
        }
    }
    g_opts.model = env("LLM_MODEL");
    if (env("LLM_TIMEOUT_MS")) g_opts.timeout_ms = atol(env("LLM_TIMEOUT_MS"));
    if (env("LLM_MAX_CANDIDATES")) g_opts.max_candidates = (size_t)atol(env("LLM_MAX_CANDIDATES"));
    if (x4_llm_new(&g_llm, e->loop, e->httpc) < 0) {
        snprintf(err, errlen, "cannot initialise the LLM client");
        return -1;
    }
    snprintf(g_planner, sizeof g_planner, "llm:%s", prov);
    x4_info("planning", "LLM planner: %s%s%s", prov, g_opts.model ? " model " : "", g_opts.model ? g_opts.model : "");
    return 0;
}

void x4_planning_close(void) {
    if (g_llm) x4_llm_free(g_llm); /* in-flight requests call back as cancelled */
    g_llm = NULL;
}

int x4_planning_llm_enabled(void) { return g_llm != NULL; }

typedef struct {
    x4_planning_cb cb;
    void *ud;
} req_ctx;

static void on_llm(x4_llm_result *res, void *ud) {
    req_ctx *q = ud;
    if (res->status == X4_LLM_E_CANCELLED) q->cb(NULL, "cancelled", g_planner, 1, q->ud);
    else if (res->status == X4_LLM_OK && res->plan) {
        x4_plan *p = res->plan;
        res->plan = NULL; /* taken */
        x4_info("planning", "LLM plan: %d request(s), %llu input + %llu output tokens", res->requests,
                (unsigned long long)res->input_tokens, (unsigned long long)res->output_tokens);
        q->cb(p, NULL, g_planner, 0, q->ud);
    } else {
        char why[600];
        snprintf(why, sizeof why, "LLM planner failed (%s), planned offline instead", res->reason[0] ? res->reason : "no plan");
        q->cb(NULL, why, g_planner, 0, q->ud);
    }
    free(q);
}

void x4_planning_llm(x4_engine *e, const char *task, uint64_t max_cost, x4_planning_cb cb, void *ud) {
    size_t k = g_opts.max_candidates ? g_opts.max_candidates : 20;
    size_t *idx = calloc(k, sizeof *idx);
    const x4_service **cand = calloc(k, sizeof *cand);
    req_ctx *q = calloc(1, sizeof *q);
    int n = idx && cand && q ? x4_planner_retrieve(e->catalog, task, k, idx, NULL) : -1;
    if (n <= 0) {
        free(q);
        cb(NULL, n == 0 ? "LLM planner skipped: no candidate service for the task" : "out of memory", g_planner, 0, ud);
        goto out;
    }
    for (int i = 0; i < n; i++) cand[i] = x4_catalog_at(e->catalog, idx[i]);
    q->cb = cb;
    q->ud = ud;
    if (!x4_llm_plan(g_llm, &g_opts, task, e->catalog, cand, (size_t)n, max_cost, on_llm, q)) {
        free(q);
        cb(NULL, "LLM planner unavailable (out of memory), planned offline instead", g_planner, 0, ud);
    }
out:
    free(idx);
    free(cand);
}
