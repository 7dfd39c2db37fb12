/* tests/unit/test_matcher.c — the offline planner: the demo task over examples/catalog.json,
 * literals from the task, clause splitting, clear failures, price ties and maxCost. */
#include <stdlib.h>

#include "plan/catalog.h"
#include "plan/matcher.h"
#include "plan/plan.h"
#include "unit.h"

#define DEMO_TASK "Analyze last 30 days of Solana DEX volume and create a trend report"

static x4_catalog *examples(void) {
    setenv("EXAMPLES_URL", "http://127.0.0.1:5401", 1);
    const char *dir = getenv("X4_SOURCE_DIR") ? getenv("X4_SOURCE_DIR") : X4_SOURCE_DIR;
    char path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/examples/catalog.json", dir);
    x4_catalog *c = x4_catalog_new();
    int n = x4_catalog_load_file(c, path, err, sizeof err);
    if (n < 9) fprintf(stderr, "  examples catalog: %d services (%s)\n", n, err);
    return c;
}

static void dump(const json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    fprintf(stderr, "  plan: %s\n", s ? s : "(null)");
    free(s);
}

static json_t *step_of(const json_t *plan, const char *service) {
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(plan, "steps"), i, s) {
        if (strcmp(json_string_value(json_object_get(s, "service")), service) == 0) return s;
    }
    return NULL;
}

static const char *ref_of(const json_t *step, const char *input) {
    return json_string_value(json_object_get(json_object_get(json_object_get(step, "inputs"), input), "$ref"));
}

static const char *id_of(const json_t *step) { return json_string_value(json_object_get(step, "id")); }

static int depends_on(const json_t *step, const json_t *on) {
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(step, "dependsOn"), i, d) {
        if (strcmp(json_string_value(d), id_of(on)) == 0) return 1;
    }
    return 0;
}

static json_t *plan_ok(const x4_catalog *c, const char *task, uint64_t max_cost) {
    json_t *plan = NULL;
    char err[512] = "";
    int rc = x4_matcher_plan(c, task, max_cost, &plan, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  task \"%s\": %s\n", task, err);
    return plan;
}

X4_TEST(demo_task_plan) {
    x4_catalog *c = examples();
    json_t *plan = plan_ok(c, DEMO_TASK, X4_NO_MAX_COST);
    if (!plan) {
        x4_catalog_unref(c);
        return;
    }
    CHECK_EQ_INT(json_array_size(json_object_get(plan, "steps")), 4);
    json_t *vol = step_of(plan, "dex_volume"), *px = step_of(plan, "token_prices");
    json_t *tr = step_of(plan, "trend_analysis"), *rep = step_of(plan, "report");
    CHECK(vol && px && tr && rep);
    if (!vol || !px || !tr || !rep) {
        dump(plan);
        goto out;
    }
    /* dex_volume from the task's words */
    json_t *vin = json_object_get(vol, "inputs");
    CHECK_EQ_STR(json_string_value(json_object_get(vin, "chain")), "solana");
    CHECK(json_is_integer(json_object_get(vin, "days")));
    CHECK_EQ_INT(json_integer_value(json_object_get(vin, "days")), 30);
    /* dex_volume and token_prices run in parallel: neither waits for anything */
    CHECK_EQ_INT(json_array_size(json_object_get(vol, "dependsOn")), 0);
    CHECK_EQ_INT(json_array_size(json_object_get(px, "dependsOn")), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(px, "inputs"), "chain")), "solana");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(px, "inputs"), "days")), 30);
    /* trend_analysis wired to dex_volume.series */
    char want[64];
    snprintf(want, sizeof want, "%s.series", id_of(vol));
    CHECK_EQ_STR(ref_of(tr, "series"), want);
    CHECK(depends_on(tr, vol));
    /* report wired to the trend and the series (and the prices) */
    snprintf(want, sizeof want, "%s.trend", id_of(tr));
    CHECK_EQ_STR(ref_of(rep, "trend"), want);
    snprintf(want, sizeof want, "%s.series", id_of(vol));
    CHECK_EQ_STR(ref_of(rep, "series"), want);
    snprintf(want, sizeof want, "%s.prices", id_of(px));
    CHECK_EQ_STR(ref_of(rep, "prices"), want);
    CHECK(depends_on(rep, tr) && depends_on(rep, vol) && depends_on(rep, px));

    /* and it is a valid plan */
    x4_plan *p = NULL;
    json_t *errors = NULL;
    CHECK_EQ_INT(x4_plan_parse(plan, c, X4_NO_MAX_COST, &p, &errors), 0);
    if (errors) dump(errors);
    x4_plan_free(p);
    json_decref(errors);
out:
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(demo_plan_is_deterministic) {
    x4_catalog *c = examples();
    json_t *a = plan_ok(c, DEMO_TASK, X4_NO_MAX_COST), *b = plan_ok(c, DEMO_TASK, X4_NO_MAX_COST);
    CHECK(a && b && json_equal(a, b));
    json_decref(a);
    json_decref(b);
    x4_catalog_unref(c);
}

X4_TEST(quoted_literal) {
    x4_catalog *c = examples();
    json_t *plan = plan_ok(c, "Look up the book with ISBN \"978-3-16-148410-0\"", X4_NO_MAX_COST);
    if (plan) {
        CHECK_EQ_INT(json_array_size(json_object_get(plan, "steps")), 1);
        json_t *s = step_of(plan, "isbn_lookup");
        CHECK(s != NULL);
        if (s) CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(s, "inputs"), "isbn")), "978-3-16-148410-0");
    }
    json_decref(plan);

    /* a quoted string and a number, each to the parameter its words point at */
    plan = plan_ok(c, "What is the weather in \"Lisbon\" for the next 5 days?", X4_NO_MAX_COST);
    if (plan) {
        json_t *in = json_object_get(step_of(plan, "weather_forecast"), "inputs");
        CHECK_EQ_STR(json_string_value(json_object_get(in, "city")), "Lisbon");
        CHECK_EQ_INT(json_integer_value(json_object_get(in, "days")), 5);
    }
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(enum_mentions_in_order) {
    x4_catalog *c = examples();
    json_t *plan = plan_ok(c, "Convert 100 EUR to USD", X4_NO_MAX_COST);
    if (plan) {
        json_t *in = json_object_get(step_of(plan, "currency_convert"), "inputs");
        CHECK_EQ_STR(json_string_value(json_object_get(in, "from")), "EUR");
        CHECK_EQ_STR(json_string_value(json_object_get(in, "to")), "USD");
        CHECK_EQ_INT(json_integer_value(json_object_get(in, "amount")), 100);
    }
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(clauses_keep_their_literals) {
    x4_catalog *c = examples();
    json_t *plan = plan_ok(c, "Analyze the sentiment of \"I love this great product\" and then translate \"thank you\" to fr",
                           X4_NO_MAX_COST);
    if (plan) {
        json_t *steps = json_object_get(plan, "steps");
        CHECK_EQ_INT(json_array_size(steps), 2);
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(steps, 0), "service")), "sentiment_analysis");
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(steps, 1), "service")), "translate_text");
        json_t *t = json_object_get(step_of(plan, "translate_text"), "inputs");
        CHECK_EQ_STR(json_string_value(json_object_get(t, "text")), "thank you");
        CHECK_EQ_STR(json_string_value(json_object_get(t, "target")), "fr");
        CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(step_of(plan, "sentiment_analysis"), "inputs"), "text")),
                     "I love this great product");
    }
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(failures_say_why) {
    x4_catalog *c = examples();
    json_t *plan = NULL;
    char err[512] = "";
    CHECK_EQ_INT(x4_matcher_plan(c, "Bake a chocolate cake for my grandmother", X4_NO_MAX_COST, &plan, err, sizeof err), -1);
    CHECK(plan == NULL);
    CHECK_EQ_STR(err, "no service in the catalog matches the task");
    CHECK_EQ_INT(x4_matcher_plan(c, "", X4_NO_MAX_COST, &plan, err, sizeof err), -1);
    CHECK(strstr(err, "empty") != NULL);
    /* a service matches, but the task does not give its required city (no literal at all):
     * validation names it. ("... for Paris" plans: a proper noun fills the city.) */
    CHECK_EQ_INT(x4_matcher_plan(c, "Show me the weather forecast for my city", X4_NO_MAX_COST, &plan, err, sizeof err), -1);
    CHECK(strstr(err, "steps[0].inputs.city") != NULL);
    CHECK(strstr(err, "weather_forecast") != NULL);
    x4_catalog *empty = x4_catalog_new();
    CHECK_EQ_INT(x4_matcher_plan(empty, DEMO_TASK, X4_NO_MAX_COST, &plan, err, sizeof err), -1);
    x4_catalog_unref(empty);
    x4_catalog_unref(c);
}

static void add(x4_catalog *c, const char *rec) {
    char err[256];
    json_t *j = json_loads(rec, 0, NULL);
    if (x4_catalog_add_record(c, j, "file", err, sizeof err)) fprintf(stderr, "  add: %s\n", err);
    json_decref(j);
}

#define FORECAST_IN                                                                                              \
    "\"input\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"city name\"}}," \
    "\"required\":[\"city\"]}"

X4_TEST(tie_goes_to_the_cheaper) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"forecast_a\",\"name\":\"Weather forecast\",\"description\":\"Weather forecast for a city\","
           "\"price\":{\"amount\":\"5000\"}," FORECAST_IN "}");
    add(c, "{\"id\":\"forecast_b\",\"name\":\"Weather forecast\",\"description\":\"Weather forecast for a city\","
           "\"price\":{\"amount\":\"1000\"}," FORECAST_IN "}");
    json_t *plan = plan_ok(c, "Get the weather forecast for \"Oslo\"", X4_NO_MAX_COST);
    if (plan) {
        CHECK_EQ_INT(json_array_size(json_object_get(plan, "steps")), 1);
        CHECK(step_of(plan, "forecast_b") != NULL);
    }
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(max_cost_respected) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"premium_weather_forecast\",\"name\":\"Premium weather forecast\","
           "\"description\":\"Hourly weather forecast for a city, with radar\",\"price\":{\"amount\":\"3000000\"}," FORECAST_IN
           "}");
    add(c, "{\"id\":\"basic_forecast\",\"name\":\"Basic forecast\",\"description\":\"Weather forecast for a city\","
           "\"price\":{\"amount\":\"500000\"}," FORECAST_IN "}");
    const char *task = "Get the premium weather forecast for \"Oslo\"";
    /* unbounded: the best match */
    json_t *plan = plan_ok(c, task, X4_NO_MAX_COST);
    CHECK(plan && step_of(plan, "premium_weather_forecast"));
    json_decref(plan);
    /* 1.0 USDC: the best match does not fit, the cheaper one does */
    plan = plan_ok(c, task, 1000000);
    CHECK(plan && step_of(plan, "basic_forecast") && !step_of(plan, "premium_weather_forecast"));
    if (plan) {
        x4_plan *p = NULL;
        json_t *errors = NULL;
        CHECK_EQ_INT(x4_plan_parse(plan, c, 1000000, &p, &errors), 0);
        CHECK(p && p->estimate == 500000);
        x4_plan_free(p);
        json_decref(errors);
    }
    json_decref(plan);
    /* nothing fits: a clear reason */
    char err[512] = "";
    plan = NULL;
    CHECK_EQ_INT(x4_matcher_plan(c, task, 100000, &plan, err, sizeof err), -1);
    CHECK(plan == NULL);
    CHECK(strstr(err, "fits maxCost 0.100000") != NULL);
    CHECK(strstr(err, "basic_forecast") != NULL && strstr(err, "0.500000") != NULL);
    x4_catalog_unref(c);
}

/* The demo services with prices: an optional provider that does not fit is left out, and the
 * plan stays within maxCost. */
X4_TEST(max_cost_drops_optional_provider) {
    x4_catalog *ex = examples(), *c = x4_catalog_new();
    char err[256];
    for (size_t i = 0; i < x4_catalog_count(ex); i++) {
        json_t *r = x4_service_to_json(x4_catalog_at(ex, i));
        json_object_set_new(r, "price", json_pack("{s:s}", "amount", "1000"));
        CHECK_EQ_INT(x4_catalog_add_record(c, r, "file", err, sizeof err), 0);
        json_decref(r);
    }
    json_t *plan = plan_ok(c, DEMO_TASK, 4000);
    CHECK(plan && json_array_size(json_object_get(plan, "steps")) == 4);
    json_decref(plan);
    plan = plan_ok(c, DEMO_TASK, 3000);
    if (plan) {
        CHECK_EQ_INT(json_array_size(json_object_get(plan, "steps")), 3);
        CHECK(step_of(plan, "token_prices") == NULL);
        CHECK(json_object_get(json_object_get(step_of(plan, "report"), "inputs"), "prices") == NULL);
    }
    json_decref(plan);
    plan = NULL;
    CHECK_EQ_INT(x4_matcher_plan(c, DEMO_TASK, 2000, &plan, err, sizeof err), -1);
    CHECK(err[0] != 0);
    x4_catalog_unref(c);
    x4_catalog_unref(ex);
}

X4_TEST(nestools_catalog_plans_quickly) {
    const char *path = X4_SOURCE_DIR "/../shared/bench/planner/nestools/catalog.json";
    char err[512] = "";
    x4_catalog *c = x4_catalog_new();
    if (x4_catalog_load_file(c, path, err, sizeof err) < 0) {
        printf("note: %s absent, NesTools planning check skipped\n", path);
        x4_catalog_unref(c);
        return;
    }
    json_t *plan = NULL;
    int rc = x4_matcher_plan(c, "Scan the ISBN \"978-3-16-148410-0\" of a book to get its details.", X4_NO_MAX_COST,
                             &plan, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    json_t *s = step_of(plan, "scan_isbn");
    CHECK(s != NULL);
    if (s) CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(s, "inputs"), "isbn")), "978-3-16-148410-0");
    json_decref(plan);
    x4_catalog_unref(c);
}

/* A literal must satisfy the parameter's schema (pattern, format, bounds): "Solana DEX" is a
 * proper noun of the demo task, but not a YYYY-MM-DD endDate, so it must not be offered as one
 * (the service would answer 400 and the demo would fail). */
X4_TEST(literals_respect_schema_constraints) {
    x4_catalog *c = examples();
    json_t *plan = plan_ok(c, DEMO_TASK, X4_NO_MAX_COST);
    if (plan) {
        size_t i;
        json_t *st;
        json_array_foreach(json_object_get(plan, "steps"), i, st) {
            CHECK(json_object_get(json_object_get(st, "inputs"), "endDate") == NULL);
        }
        json_decref(plan);
    }
    json_t *dated = plan_ok(c, "Get the Solana DEX volume for 7 days ending 2026-03-01", X4_NO_MAX_COST);
    if (dated) {
        json_t *vol = step_of(dated, "dex_volume");
        CHECK(vol != NULL);
        if (vol) CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(vol, "inputs"), "endDate")), "2026-03-01");
        json_decref(dated);
    }
    x4_catalog_unref(c);
}

/* ---- policies/matching.lua drives the ranking ---- */

#include <sys/stat.h>
#include <unistd.h>

#include "lua/lua.h"

/* A runtime over a temporary policy directory holding one matching.lua with `src`. */
static x4_lua_rt *matching_policy(const char *src, char *dir, size_t dirlen) {
    snprintf(dir, dirlen, "/tmp/x4-matching-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/matching.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(src, f);
    fclose(f);
    x4_lua_opts o = {.policy_dir = dir, .plugin_dir = dir, .lib_dir = X4_SOURCE_DIR "/lua"};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    if (rt && x4_lua_reload(rt, err, sizeof err) < 0) {
        fprintf(stderr, "  reload: %s\n", err);
        x4_lua_close(rt);
        rt = NULL;
    }
    return rt;
}

static void matching_policy_done(x4_lua_rt *rt, const char *dir) {
    char path[512];
    x4_lua_close(rt);
    snprintf(path, sizeof path, "%s/matching.lua", dir);
    unlink(path);
    rmdir(dir);
}

static const char *planned_with(const x4_catalog *c, x4_lua_rt *rt, const char *task, char *err, size_t errlen) {
    static char svc[64];
    json_t *plan = NULL;
    svc[0] = 0;
    if (x4_planner_plan_lua(c, task, X4_NO_MAX_COST, NULL, rt, &plan, NULL, err, errlen) == 0)
        snprintf(svc, sizeof svc, "%s",
                 json_string_value(json_object_get(json_array_get(json_object_get(plan, "steps"), 0), "service")));
    json_decref(plan);
    return svc;
}

X4_TEST(matching_lua_score_and_weights_change_the_plan) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"forecast_a\",\"name\":\"Weather forecast\",\"description\":\"Weather forecast for a city\","
           "\"price\":{\"amount\":\"1000\"}," FORECAST_IN "}");
    add(c, "{\"id\":\"forecast_b\",\"name\":\"Weather forecast\",\"description\":\"Weather forecast for a city\","
           "\"price\":{\"amount\":\"5000\"}," FORECAST_IN "}");
    const char *task = "Get the weather forecast for \"Oslo\"";
    char err[512] = "", dir[64];
    /* built-in: the tie goes to the cheaper */
    CHECK_EQ_STR(planned_with(c, NULL, task, err, sizeof err), "forecast_a");

    /* score: the operator prefers forecast_b; f carries the built-in rank and the features */
    x4_lua_rt *rt = matching_policy("function score(f)\n"
                                    "  assert(type(f.rank) == 'number' and f.bm25 > 0 and f.clause ~= '')\n"
                                    "  if f.service == 'forecast_b' then return f.rank + 1 end\n"
                                    "  return f.rank\n"
                                    "end\n",
                                    dir, sizeof dir);
    CHECK(rt != NULL);
    if (rt) {
        CHECK_EQ_STR(planned_with(c, rt, task, err, sizeof err), "forecast_b");
        matching_policy_done(rt, dir);
    }

    /* weights: a match_min nothing reaches leaves the task unplanned */
    rt = matching_policy("function weights(d)\n  assert(d.match_min > 0)\n  return { match_min = 50 }\nend\n", dir,
                         sizeof dir);
    CHECK(rt != NULL);
    if (rt) {
        CHECK_EQ_STR(planned_with(c, rt, task, err, sizeof err), "");
        CHECK(strstr(err, "no service") != NULL);
        x4_planner_params p;
        x4_planner_params_default(&p);
        CHECK_EQ_INT(x4_planner_params_lua(rt, &p, err, sizeof err), 0);
        CHECK(p.match_min == 50);
        matching_policy_done(rt, dir);
    }

    /* broken hooks: an unknown weight, a score that is not a number, a score that raises —
     * the built-in rules stay */
    const char *bad[] = {"function weights(d) return { no_such_weight = 1 } end\n",
                         "function weights(d) return { bm25_b = 7 } end\n",
                         "function score(f) return 'high' end\n",
                         "function score(f) error('boom') end\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rt = matching_policy(bad[i], dir, sizeof dir);
        CHECK(rt != NULL);
        if (!rt) continue;
        CHECK_EQ_STR(planned_with(c, rt, task, err, sizeof err), "forecast_a");
        matching_policy_done(rt, dir);
    }
    x4_planner_params p;
    x4_planner_params_default(&p);
    json_t *w = json_pack("{s:f}", "bm25_b", 0.9);
    CHECK_EQ_INT(x4_planner_params_set(&p, w, err, sizeof err), 0);
    CHECK(p.bm25_b == 0.9);
    json_decref(w);
    w = json_pack("{s:s}", "bm25_b", "x");
    CHECK_EQ_INT(x4_planner_params_set(&p, w, err, sizeof err), -1);
    CHECK(p.bm25_b == 0.9 && strstr(err, "bm25_b") != NULL);
    json_decref(w);
    x4_catalog_unref(c);
}
