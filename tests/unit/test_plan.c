/* tests/unit/test_plan.c — plan validation (every error class, errors collected), dependency
 * closure and topological order, normalised JSON, $ref resolution and input binding. */
#include <stdlib.h>

#include "plan/catalog.h"
#include "plan/plan.h"
#include "unit.h"

static x4_catalog *test_catalog(void) {
    static const char *const recs[] = {
        "{\"id\":\"scan_isbn\",\"input\":{\"type\":\"object\",\"properties\":{\"isbn\":{\"type\":\"string\"}},"
        "\"required\":[\"isbn\"]},\"output\":{\"type\":\"object\",\"properties\":{\"book_details\":{}}}}",
        "{\"id\":\"locate_book\",\"input\":{\"type\":\"object\",\"properties\":{\"book_info\":{}},"
        "\"required\":[\"book_info\"]},\"price\":{\"amount\":\"1500000\"}}",
        "{\"id\":\"free\"}",
        "{\"id\":\"paid\",\"price\":{\"amount\":\"2000000\"}}",
        "{\"id\":\"huge\",\"price\":{\"amount\":\"18446744073709551615\"}}",
    };
    x4_catalog *c = x4_catalog_new();
    char err[256];
    for (size_t i = 0; i < sizeof recs / sizeof *recs; i++) {
        json_t *j = json_loads(recs[i], 0, NULL);
        if (x4_catalog_add_record(c, j, "file", err, sizeof err) != 0) fprintf(stderr, "  catalog: %s\n", err);
        json_decref(j);
    }
    return c;
}

/* Parses text; returns the plan or NULL with *errors. */
static x4_plan *parse(x4_catalog *c, const char *text, uint64_t max_cost, json_t **errors) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) {
        fprintf(stderr, "  bad test JSON: %s\n", je.text);
        return NULL;
    }
    x4_plan *p = NULL;
    *errors = NULL;
    x4_plan_parse(j, c, max_cost, &p, errors);
    json_decref(j);
    return p;
}

/* 1 if some error has this field and its problem contains `needle`. */
static int has_error(const json_t *errors, const char *field, const char *needle) {
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        const char *f = json_string_value(json_object_get(e, "field"));
        const char *p = json_string_value(json_object_get(e, "problem"));
        if (f && p && strcmp(f, field) == 0 && (!needle || strstr(p, needle))) return 1;
    }
    return 0;
}

static void dump_errors(const json_t *errors) {
    char *s = json_dumps(errors, JSON_COMPACT);
    fprintf(stderr, "  errors: %s\n", s ? s : "(null)");
    free(s);
}

/* Expect failure with one error at field containing needle. */
static void expect_error(x4_catalog *c, const char *plan, uint64_t max_cost, const char *field, const char *needle) {
    json_t *errors = NULL;
    x4_plan *p = parse(c, plan, max_cost, &errors);
    CHECK(p == NULL);
    CHECK(json_is_array(errors) && json_array_size(errors) >= 1);
    if (!has_error(errors, field, needle)) {
        fprintf(stderr, "  expected %s ~ \"%s\" in:\n", field, needle ? needle : "");
        dump_errors(errors);
        x4_test_failed_checks++;
    }
    x4_plan_free(p);
    json_decref(errors);
}

static const char *VALID =
    "{\"steps\":["
    "{\"id\":\"s1\",\"service\":\"scan_isbn\",\"inputs\":{\"isbn\":\"978-3-16-148410-0\"},\"dependsOn\":[]},"
    "{\"id\":\"s2\",\"service\":\"locate_book\",\"inputs\":{\"book_info\":{\"$ref\":\"s1.book_details\"}}},"
    "{\"id\":\"s3\",\"service\":\"paid\",\"inputs\":{},\"dependsOn\":[\"s2\"]},"
    "{\"id\":\"s4\",\"service\":\"free\"}]}";

X4_TEST(valid_plan) {
    x4_catalog *c = test_catalog();
    json_t *errors = NULL;
    x4_plan *p = parse(c, VALID, X4_NO_MAX_COST, &errors);
    CHECK(p != NULL);
    if (!p) dump_errors(errors);
    if (p) {
        CHECK_EQ_INT(p->nsteps, 4);
        CHECK_EQ_STR(p->steps[1].service, "locate_book");
        CHECK_EQ_INT(p->steps[1].ndeps, 1); /* implied by the $ref */
        CHECK_EQ_INT(p->steps[1].deps[0], 0);
        CHECK_EQ_INT(p->steps[2].ndeps, 1);
        CHECK_EQ_INT(p->steps[3].ndeps, 0);
        CHECK_EQ_INT(p->steps[1].price, 1500000);
        CHECK_EQ_INT(p->steps[0].price, 0);
        CHECK_EQ_INT(p->estimate, 3500000);
        CHECK(json_is_object(p->steps[3].inputs)); /* omitted inputs become {} */
        CHECK_EQ_INT(x4_plan_find(p, "s3"), 2);
        CHECK_EQ_INT(x4_plan_find(p, "nope"), -1);
    }
    x4_plan_free(p);
    json_decref(errors);
    /* exactly at maxCost is fine */
    p = parse(c, VALID, 3500000, &errors);
    CHECK(p != NULL);
    x4_plan_free(p);
    json_decref(errors);
    x4_catalog_unref(c);
}

X4_TEST(topological_order) {
    x4_catalog *c = test_catalog();
    json_t *errors = NULL;
    /* given in reverse: d <- c <- b <- a, plus e free-standing */
    x4_plan *p = parse(c,
                       "{\"steps\":["
                       "{\"id\":\"d\",\"service\":\"free\",\"dependsOn\":[\"c\"]},"
                       "{\"id\":\"c\",\"service\":\"free\",\"inputs\":{\"x\":[{\"$ref\":\"b.out\"}]}},"
                       "{\"id\":\"b\",\"service\":\"free\",\"dependsOn\":[\"a\"]},"
                       "{\"id\":\"e\",\"service\":\"free\"},"
                       "{\"id\":\"a\",\"service\":\"free\"}]}",
                       X4_NO_MAX_COST, &errors);
    CHECK(p != NULL);
    if (p) {
        size_t pos[5];
        for (size_t k = 0; k < p->nsteps; k++) pos[p->topo[k]] = k;
        for (size_t i = 0; i < p->nsteps; i++)
            for (size_t k = 0; k < p->steps[i].ndeps; k++) CHECK(pos[p->steps[i].deps[k]] < pos[i]);
        CHECK_EQ_STR(p->steps[p->topo[0]].id, "e"); /* ready first, in the order given */
        CHECK_EQ_STR(p->steps[p->topo[1]].id, "a");
        CHECK_EQ_STR(p->steps[p->topo[4]].id, "d");
    }
    x4_plan_free(p);
    json_decref(errors);
    x4_catalog_unref(c);
}

X4_TEST(error_unknown_service) {
    x4_catalog *c = test_catalog();
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"nope\"}]}", X4_NO_MAX_COST, "steps[0].service",
                 "unknown service \"nope\"");
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":5}]}", X4_NO_MAX_COST, "steps[0].service", NULL);
    x4_catalog_unref(c);
}

X4_TEST(error_ids) {
    x4_catalog *c = test_catalog();
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"},{\"id\":\"s1\",\"service\":\"free\"}]}",
                 X4_NO_MAX_COST, "steps[1].id", "duplicate step id");
    expect_error(c, "{\"steps\":[{\"id\":\"bad id\",\"service\":\"free\"}]}", X4_NO_MAX_COST, "steps[0].id", NULL);
    expect_error(c, "{\"steps\":[{\"id\":\"a.b\",\"service\":\"free\"}]}", X4_NO_MAX_COST, "steps[0].id", NULL);
    expect_error(c, "{\"steps\":[{\"id\":\"\",\"service\":\"free\"}]}", X4_NO_MAX_COST, "steps[0].id", NULL);
    expect_error(c, "{\"steps\":[{\"service\":\"free\"}]}", X4_NO_MAX_COST, "steps[0].id", NULL);
    char big[200];
    snprintf(big, sizeof big, "{\"steps\":[{\"id\":\"%065d\",\"service\":\"free\"}]}", 0);
    expect_error(c, big, X4_NO_MAX_COST, "steps[0].id", NULL);
    x4_catalog_unref(c);
}

X4_TEST(error_refs) {
    x4_catalog *c = test_catalog();
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":\"s9.x\"}}}]}",
                 X4_NO_MAX_COST, "steps[0].inputs.a", "names no step");
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":\"s1.x\"}}}]}",
                 X4_NO_MAX_COST, "steps[0].inputs.a", "itself");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"},"
                 "{\"id\":\"s2\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":\"s1\"}}}]}",
                 X4_NO_MAX_COST, "steps[1].inputs.a", "<stepId>.<field>");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"},"
                 "{\"id\":\"s2\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":\"s1.x..y\"}}}]}",
                 X4_NO_MAX_COST, "steps[1].inputs.a", "empty field");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"},"
                 "{\"id\":\"s2\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":\"s1.x\",\"extra\":1}}}]}",
                 X4_NO_MAX_COST, "steps[1].inputs.a", "exactly one key");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"},"
                 "{\"id\":\"s2\",\"service\":\"free\",\"inputs\":{\"a\":{\"$ref\":7}}}]}",
                 X4_NO_MAX_COST, "steps[1].inputs.a", "exactly one key");
    /* nested inside arrays and objects */
    expect_error(c,
                 "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\","
                 "\"inputs\":{\"a\":{\"b\":[1,{\"$ref\":\"zz.q\"}]}}}]}",
                 X4_NO_MAX_COST, "steps[0].inputs.a.b[1]", "names no step");
    x4_catalog_unref(c);
}

X4_TEST(error_cycles) {
    x4_catalog *c = test_catalog();
    expect_error(c,
                 "{\"steps\":[{\"id\":\"a\",\"service\":\"free\",\"dependsOn\":[\"b\"]},"
                 "{\"id\":\"b\",\"service\":\"free\",\"dependsOn\":[\"a\"]},"
                 "{\"id\":\"c\",\"service\":\"free\"}]}",
                 X4_NO_MAX_COST, "steps", "cycle among steps a, b");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"a\",\"service\":\"free\",\"inputs\":{\"x\":{\"$ref\":\"c.o\"}}},"
                 "{\"id\":\"b\",\"service\":\"free\",\"inputs\":{\"x\":{\"$ref\":\"a.o\"}}},"
                 "{\"id\":\"c\",\"service\":\"free\",\"inputs\":{\"x\":[{\"$ref\":\"b.o\"}]}}]}",
                 X4_NO_MAX_COST, "steps", "cycle among steps a, b, c");
    expect_error(c, "{\"steps\":[{\"id\":\"a\",\"service\":\"free\",\"dependsOn\":[\"a\"]}]}", X4_NO_MAX_COST,
                 "steps[0].dependsOn[0]", "itself");
    expect_error(c, "{\"steps\":[{\"id\":\"a\",\"service\":\"free\",\"dependsOn\":[\"zz\"]}]}", X4_NO_MAX_COST,
                 "steps[0].dependsOn[0]", "no step");
    expect_error(c, "{\"steps\":[{\"id\":\"a\",\"service\":\"free\",\"dependsOn\":\"b\"}]}", X4_NO_MAX_COST,
                 "steps[0].dependsOn", NULL);
    x4_catalog_unref(c);
}

X4_TEST(error_missing_required_input) {
    x4_catalog *c = test_catalog();
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"scan_isbn\",\"inputs\":{}}]}", X4_NO_MAX_COST,
                 "steps[0].inputs.isbn", "required input \"isbn\"");
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"scan_isbn\"}]}", X4_NO_MAX_COST, "steps[0].inputs.isbn",
                 NULL);
    x4_catalog_unref(c);
}

X4_TEST(error_shape) {
    x4_catalog *c = test_catalog();
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\",\"depends_on\":[]}]}", X4_NO_MAX_COST,
                 "steps[0].depends_on", "unknown field");
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\",\"inputs\":[1,2]}]}", X4_NO_MAX_COST,
                 "steps[0].inputs", "object");
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\",\"inputs\":\"x\"}]}", X4_NO_MAX_COST,
                 "steps[0].inputs", "object");
    expect_error(c, "{\"steps\":[]}", X4_NO_MAX_COST, "steps", "at least one");
    expect_error(c, "{\"steps\":{}}", X4_NO_MAX_COST, "steps", NULL);
    expect_error(c, "{\"nosteps\":1}", X4_NO_MAX_COST, "steps", NULL);
    expect_error(c, "{\"steps\":[{\"id\":\"s1\",\"service\":\"free\"}],\"why\":\"x\"}", X4_NO_MAX_COST, "why",
                 "unknown field");
    expect_error(c, "{\"steps\":[3]}", X4_NO_MAX_COST, "steps[0]", NULL);
    expect_error(c, "[1]", X4_NO_MAX_COST, "plan", NULL);
    x4_catalog_unref(c);
}

X4_TEST(error_too_many_steps) {
    x4_catalog *c = test_catalog();
    json_t *steps = json_array();
    for (int i = 0; i <= X4_PLAN_MAX_STEPS; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%d", i);
        json_array_append_new(steps, json_pack("{s:s, s:s}", "id", id, "service", "free"));
    }
    json_t *plan = json_pack("{s:o}", "steps", steps);
    x4_plan *p = NULL;
    json_t *errors = NULL;
    CHECK_EQ_INT(x4_plan_parse(plan, c, X4_NO_MAX_COST, &p, &errors), -1);
    CHECK(has_error(errors, "steps", "too many steps"));
    json_decref(errors);
    errors = NULL;
    /* exactly the limit is fine */
    json_array_remove(steps, 0);
    CHECK_EQ_INT(x4_plan_parse(plan, c, X4_NO_MAX_COST, &p, &errors), 0);
    CHECK(p && p->nsteps == X4_PLAN_MAX_STEPS);
    x4_plan_free(p);
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(error_over_max_cost) {
    x4_catalog *c = test_catalog();
    expect_error(c, VALID, 3499999, "maxCost", "estimated cost 3.500000 exceeds maxCost 3.499999");
    expect_error(c,
                 "{\"steps\":[{\"id\":\"a\",\"service\":\"huge\"},{\"id\":\"b\",\"service\":\"paid\"}]}",
                 X4_NO_MAX_COST, "maxCost", "overflow");
    x4_catalog_unref(c);
}

X4_TEST(errors_are_collected) {
    x4_catalog *c = test_catalog();
    json_t *errors = NULL;
    x4_plan *p = parse(c,
                       "{\"steps\":["
                       "{\"id\":\"s1\",\"service\":\"nope\",\"extra\":1},"
                       "{\"id\":\"s1\",\"service\":\"free\"},"
                       "{\"id\":\"s3\",\"service\":\"scan_isbn\",\"inputs\":{\"q\":{\"$ref\":\"zz.a\"}}}]}",
                       X4_NO_MAX_COST, &errors);
    CHECK(p == NULL);
    CHECK(has_error(errors, "steps[0].service", "unknown service"));
    CHECK(has_error(errors, "steps[0].extra", "unknown field"));
    CHECK(has_error(errors, "steps[1].id", "duplicate"));
    CHECK(has_error(errors, "steps[2].inputs.q", "names no step"));
    CHECK(has_error(errors, "steps[2].inputs.isbn", "required"));
    CHECK_EQ_INT(json_array_size(errors), 5);
    json_decref(errors);

    /* capped: 100 bad steps give 50 errors and a note */
    json_t *steps = json_array();
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%d", i);
        json_array_append_new(steps, json_pack("{s:s, s:s}", "id", id, "service", "missing"));
    }
    json_t *plan = json_pack("{s:o}", "steps", steps);
    errors = NULL;
    CHECK_EQ_INT(x4_plan_parse(plan, c, X4_NO_MAX_COST, &p, &errors), -1);
    CHECK_EQ_INT(json_array_size(errors), 51);
    CHECK(has_error(errors, "plan", "too many errors"));
    json_decref(errors);
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(to_json_has_implied_deps) {
    x4_catalog *c = test_catalog();
    json_t *errors = NULL;
    x4_plan *p = parse(c, VALID, X4_NO_MAX_COST, &errors);
    CHECK(p != NULL);
    json_t *j = x4_plan_to_json(p);
    json_t *s2 = json_array_get(json_object_get(j, "steps"), 1);
    json_t *deps = json_object_get(s2, "dependsOn");
    CHECK_EQ_INT(json_array_size(deps), 1);
    CHECK_EQ_STR(json_string_value(json_array_get(deps, 0)), "s1");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(json_object_get(s2, "inputs"), "book_info"), "$ref")),
                 "s1.book_details");
    CHECK_EQ_INT(json_array_size(json_object_get(json_array_get(json_object_get(j, "steps"), 3), "dependsOn")), 0);
    /* and it parses again to the same thing */
    x4_plan *p2 = NULL;
    CHECK_EQ_INT(x4_plan_parse(j, c, X4_NO_MAX_COST, &p2, &errors), 0);
    json_t *j2 = x4_plan_to_json(p2);
    CHECK(json_equal(j, j2));
    json_decref(j2);
    json_decref(j);
    x4_plan_free(p2);
    x4_plan_free(p);
    x4_catalog_unref(c);
}

X4_TEST(resolve_and_bind) {
    x4_catalog *c = test_catalog();
    json_t *errors = NULL;
    x4_plan *p = parse(c,
                       "{\"steps\":["
                       "{\"id\":\"s1\",\"service\":\"free\"},"
                       "{\"id\":\"s2\",\"service\":\"free\"},"
                       "{\"id\":\"s3\",\"service\":\"free\",\"inputs\":{"
                       "\"lit\":\"x\",\"n\":3,"
                       "\"a\":{\"$ref\":\"s1.series\"},"
                       "\"deep\":{\"first\":{\"$ref\":\"s1.series.0.date\"},\"list\":[1,{\"$ref\":\"s2.trend.dir\"}]}}},"
                       "{\"id\":\"s4\",\"service\":\"free\",\"inputs\":{\"m\":{\"$ref\":\"s2.missing\"}}}]}",
                       X4_NO_MAX_COST, &errors);
    CHECK(p != NULL);
    if (!p) {
        dump_errors(errors);
        json_decref(errors);
        x4_catalog_unref(c);
        return;
    }
    json_t *outs[4] = {
        json_loads("{\"series\":[{\"date\":\"2025-01-01\",\"v\":1},{\"date\":\"2025-01-02\",\"v\":2}]}", 0, NULL),
        json_loads("{\"trend\":{\"dir\":\"up\"}}", 0, NULL), NULL, NULL};
    CHECK_EQ_STR(json_string_value(x4_plan_resolve_ref(p, outs, "s1.series.1.date")), "2025-01-02");
    CHECK_EQ_STR(json_string_value(x4_plan_resolve_ref(p, outs, "s2.trend.dir")), "up");
    CHECK(x4_plan_resolve_ref(p, outs, "s2.trend.nope") == NULL);
    CHECK(x4_plan_resolve_ref(p, outs, "s1.series.7") == NULL);
    CHECK(x4_plan_resolve_ref(p, outs, "s3.x") == NULL); /* no output yet */
    CHECK(x4_plan_resolve_ref(p, outs, "s9.x") == NULL);
    CHECK(x4_plan_resolve_ref(p, outs, "s1.") == NULL);

    char err[256] = "";
    json_t *in = x4_plan_bind_inputs(p, 2, outs, err, sizeof err);
    CHECK(in != NULL);
    if (in) {
        CHECK_EQ_STR(json_string_value(json_object_get(in, "lit")), "x");
        CHECK_EQ_INT(json_array_size(json_object_get(in, "a")), 2);
        json_t *deep = json_object_get(in, "deep");
        CHECK_EQ_STR(json_string_value(json_object_get(deep, "first")), "2025-01-01");
        CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(deep, "list"), 1)), "up");
        /* a copy: changing it leaves the producer's output alone */
        json_array_clear(json_object_get(in, "a"));
        CHECK_EQ_INT(json_array_size(json_object_get(outs[0], "series")), 2);
        /* the plan's own inputs still hold the $ref */
        CHECK(json_object_get(json_object_get(p->steps[2].inputs, "a"), "$ref") != NULL);
    }
    json_decref(in);
    in = x4_plan_bind_inputs(p, 3, outs, err, sizeof err);
    CHECK(in == NULL);
    CHECK(strstr(err, "s2.missing") != NULL);
    CHECK(x4_plan_bind_inputs(p, 99, outs, err, sizeof err) == NULL);
    json_decref(outs[0]);
    json_decref(outs[1]);
    x4_plan_free(p);
    x4_catalog_unref(c);
}
