/* exec/failover.c — see failover.h. */
#include "exec/failover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/step_adapter.h"
#include "lua/lua.h"
#include "plan/matcher.h"

#define FAILOVER_K 24

static int in_list(const json_t *list, const char *id) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (json_is_string(v) && strcmp(json_string_value(v), id) == 0) return 1;
    return 0;
}

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Can `c` take these bound inputs? */
static int takes_inputs(const x4_service *c, const json_t *inputs) {
    const json_t *schema = c->input;
    if (!json_is_object(schema)) return 1;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(schema, "required"), i, r) {
        if (json_is_string(r) && !json_object_get(inputs, json_string_value(r))) return 0;
    }
    const json_t *props = json_object_get(schema, "properties");
    if (json_is_false(json_object_get(schema, "additionalProperties"))) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)inputs, k, v) if (!json_object_get(props, k)) return 0;
    }
    return 1;
}

json_t *x4_failover_candidates(x4_engine *e, const x4_service *svc, const char *step_id, const json_t *inputs,
                               uint64_t max_price, const json_t *tried) {
    json_t *out = json_array();
    const x4_catalog *cat = e->catalog;
    if (!out || !cat || !svc) return out;
    char query[2048];
    snprintf(query, sizeof query, "%s %s", svc->name ? svc->name : svc->id, svc->description ? svc->description : "");
    size_t idx[FAILOVER_K];
    double score[FAILOVER_K];
    int n = x4_planner_retrieve(cat, query, FAILOVER_K, idx, score);
    if (n <= 0) return out;
    double self = 0;
    for (int k = 0; k < n; k++)
        if (x4_catalog_at(cat, idx[k]) == svc) self = score[k];
    if (self <= 0) self = score[0];
    json_t *cands = json_array();
    for (int k = 0; k < n && cands; k++) {
        const x4_service *c = x4_catalog_at(cat, idx[k]);
        if (!c || c == svc || !c->url || (tried && in_list(tried, c->id)) || score[k] < self * 0.5) continue;
        uint64_t price = c->has_price ? c->price : 0;
        if (price > max_price || (price > 0 && !same_str(c->asset, svc->asset))) continue;
        const char *ad = x4_step_adapter(c);
        if (!x4_step_adapter_builtin(ad) && !(e->lua && x4_lua_has_plugin(e->lua, ad))) continue;
        if (!takes_inputs(c, inputs)) continue;
        char p[24];
        snprintf(p, sizeof p, "%llu", (unsigned long long)price);
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f}", "id", c->id, "name", c->name ? c->name : c->id, "description",
                              c->description ? c->description : "", "price", p, "score", score[k]);
        if (j) json_array_append_new(cands, j);
    }
    if (!cands || json_array_size(cands) == 0) {
        json_decref(cands);
        return out;
    }
    json_t *ranked = NULL;
    char mp[24], why[256];
    snprintf(mp, sizeof mp, "%llu", (unsigned long long)max_price);
    json_t *args = json_pack("[O, {s:s, s:s, s:s, s:O}]", cands, "id", step_id, "service", svc->id, "maxPrice", mp,
                             "inputs", inputs ? inputs : json_null());
    if (!(args && e->lua && x4_lua_call(e->lua, "matching.rank", args, &ranked, why, sizeof why) == 0)) {
        /* the built-in order: retrieval order is score descending; stable by price, then id */
        json_decref(ranked);
        ranked = json_incref(cands);
        size_t m = json_array_size(ranked);
        for (size_t a = 1; a < m; a++)
            for (size_t b = a; b > 0; b--) {
                json_t *x = json_array_get(ranked, b - 1), *y = json_array_get(ranked, b);
                double sx = json_real_value(json_object_get(x, "score")), sy = json_real_value(json_object_get(y, "score"));
                unsigned long long px = strtoull(json_string_value(json_object_get(x, "price")), NULL, 10);
                unsigned long long py = strtoull(json_string_value(json_object_get(y, "price")), NULL, 10);
                int swap = sy > sx || (sy == sx && (py < px || (py == px && strcmp(json_string_value(json_object_get(y, "id")),
                                                                              json_string_value(json_object_get(x, "id"))) < 0)));
                if (!swap) break;
                json_incref(x);
                json_array_set(ranked, b - 1, y);
                json_array_set_new(ranked, b, x);
            }
    }
    json_decref(args);
    size_t i;
    json_t *c;
    json_array_foreach(ranked, i, c) json_array_append(out, json_object_get(c, "id"));
    json_decref(ranked);
    json_decref(cands);
    return out;
}
