/* tests/unit/test_planner_pieces.c — the offline planner's pieces, each with cases that could
 * fail: retrieval (paraphrases rank the right service first), decomposition (clause splits),
 * wiring (output→input by name, type and description) and literal extraction (quoted strings,
 * numbers with units, dates, proper nouns, ids, enums and booleans in a plan). */
#include <stdlib.h>

#include "plan/catalog.h"
#include "plan/matcher.h"
#include "plan/plan.h"
#include "unit.h"

static void add(x4_catalog *c, const char *rec) {
    char err[256];
    json_t *j = json_loads(rec, 0, NULL);
    if (!j || x4_catalog_add_record(c, j, "file", err, sizeof err)) fprintf(stderr, "  add: %s\n", j ? err : rec);
    json_decref(j);
}

static x4_catalog *small(void) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"get_weather\",\"name\":\"get_weather\",\"description\":\"Current weather conditions and "
           "temperature for a city\",\"input\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\","
           "\"description\":\"name of the city\"}},\"required\":[\"city\"]},\"output\":{\"type\":\"object\","
           "\"properties\":{\"temperature\":{\"type\":\"number\",\"description\":\"air temperature in celsius\"}}}}");
    add(c, "{\"id\":\"translate_text\",\"name\":\"translate_text\",\"description\":\"Translate a text into another "
           "language\",\"input\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"},\"target\":"
           "{\"type\":\"string\",\"enum\":[\"fr\",\"de\",\"es\"]}},\"required\":[\"text\",\"target\"]},"
           "\"output\":{\"type\":\"object\",\"properties\":{\"translation\":{\"type\":\"string\","
           "\"description\":\"the translated text\"}}}}");
    add(c, "{\"id\":\"send_email\",\"name\":\"send_email\",\"description\":\"Send an e-mail message to a "
           "recipient\",\"input\":{\"type\":\"object\",\"properties\":{\"recipient\":{\"type\":\"string\","
           "\"description\":\"e-mail address\"},\"body\":{\"type\":\"string\",\"description\":\"the message "
           "text\"},\"urgent\":{\"type\":\"boolean\",\"description\":\"mark as urgent\"}},\"required\":"
           "[\"recipient\",\"body\"]}}");
    add(c, "{\"id\":\"book_flight\",\"name\":\"book_flight\",\"description\":\"Reserve a seat on an airline "
           "flight between two airports\",\"input\":{\"type\":\"object\",\"properties\":{\"origin\":{\"type\":"
           "\"string\"},\"destination\":{\"type\":\"string\"},\"date\":{\"type\":\"string\",\"description\":"
           "\"departure date\"}},\"required\":[\"origin\",\"destination\",\"date\"]},\"output\":{\"type\":\"object\","
           "\"properties\":{\"booking_ref\":{\"type\":\"string\",\"description\":\"reservation reference code\"}}}}");
    add(c, "{\"id\":\"summarize_document\",\"name\":\"summarize_document\",\"description\":\"Condense a long "
           "document into a short summary\",\"input\":{\"type\":\"object\",\"properties\":{\"document\":{\"type\":"
           "\"string\",\"description\":\"the full text\"}},\"required\":[\"document\"]},\"output\":{\"type\":"
           "\"object\",\"properties\":{\"summary\":{\"type\":\"string\",\"description\":\"a brief summary of the "
           "text\"}}}}");
    return c;
}

static const char *top1(const x4_catalog *c, const char *q) {
    size_t idx[3];
    int n = x4_planner_retrieve(c, q, 3, idx, NULL);
    return n > 0 ? x4_catalog_at(c, idx[0])->id : "(none)";
}

X4_TEST(retrieval_paraphrases) {
    x4_catalog *c = small();
    CHECK_EQ_STR(top1(c, "what are the conditions in Madrid right now"), "get_weather");
    CHECK_EQ_STR(top1(c, "what temperatures are they having in Oslo"), "get_weather");   /* plural, stemmed */
    CHECK_EQ_STR(top1(c, "reserve me a seat to Rome"), "book_flight");
    CHECK_EQ_STR(top1(c, "translating this paragraph to German"), "translate_text");
    CHECK_EQ_STR(top1(c, "give me a brief summary of the report"), "summarize_document");
    CHECK_EQ_STR(top1(c, "mail the address bob@example.com"), "send_email");
    /* nothing in common: nothing retrieved */
    size_t idx[2];
    CHECK_EQ_INT(x4_planner_retrieve(c, "bake a chocolate cake", 2, idx, NULL), 0);
    x4_catalog_unref(c);
}

static void check_clauses(const x4_catalog *c, const char *task, const char *const *want, size_t n) {
    json_t *cl = x4_planner_clauses(c, task);
    CHECK(cl != NULL);
    CHECK_EQ_INT(json_array_size(cl), n);
    for (size_t i = 0; i < n && i < json_array_size(cl); i++)
        CHECK_EQ_STR(json_string_value(json_array_get(cl, i)), want[i]);
    if (json_array_size(cl) != n) {
        char *s = json_dumps(cl, 0);
        fprintf(stderr, "  clauses: %s\n", s ? s : "");
        free(s);
    }
    json_decref(cl);
}

X4_TEST(decomposition_clause_splits) {
    x4_catalog *c = small();
    const char *a[] = {"Get the weather in Paris", "translate the result to fr"};
    check_clauses(c, "Get the weather in Paris, then translate the result to fr.", a, 2);
    /* "and" before a verb cuts; "and" between objects does not */
    const char *b[] = {"Book a flight from Paris to Rome", "send an email to my boss"};
    check_clauses(c, "Book a flight from Paris to Rome and send an email to my boss", b, 2);
    const char *d[] = {"Summarize the contract and the annex"};
    check_clauses(c, "Summarize the contract and the annex", d, 1);
    /* sentences; a quote keeps its dot and "then" */
    const char *e[] = {"Translate \"stop. then go\" to de", "summarize it"}; /* the connector left out */
    check_clauses(c, "Translate \"stop. then go\" to de. After that, summarize it", e, 2);
    x4_catalog_unref(c);
}

X4_TEST(wiring_output_to_input) {
    x4_catalog *c = small();
    const x4_service *tr = x4_catalog_get(c, "translate_text"), *sum = x4_catalog_get(c, "summarize_document");
    const x4_service *mail = x4_catalog_get(c, "send_email"), *w = x4_catalog_get(c, "get_weather");
    /* by description: "the translated text" / "the full text" → translation feeds document */
    CHECK_EQ_STR(x4_planner_wire(tr, sum, "document", NULL), "translation");
    /* by description: summary ("a brief summary of the text") → body ("the message text") */
    CHECK_EQ_STR(x4_planner_wire(sum, mail, "body", NULL), "summary");
    /* by type: a number output never feeds a string input, however similar */
    CHECK(x4_planner_wire(w, mail, "body", NULL) == NULL);
    /* by name, exact */
    x4_catalog *d = x4_catalog_new();
    add(d, "{\"id\":\"p\",\"output\":{\"type\":\"object\",\"properties\":{\"zz_code\":{\"type\":\"string\"},"
           "\"other\":{\"type\":\"string\"}}}}");
    add(d, "{\"id\":\"q\",\"input\":{\"type\":\"object\",\"properties\":{\"zz_code\":{\"type\":\"string\"}},"
           "\"required\":[\"zz_code\"]}}");
    CHECK_EQ_STR(x4_planner_wire(x4_catalog_get(d, "p"), x4_catalog_get(d, "q"), "zz_code", NULL), "zz_code");
    x4_catalog_unref(d);
    x4_catalog_unref(c);
}

static const json_t *lit(const json_t *arr, const char *text) {
    size_t i;
    json_t *l;
    json_array_foreach(arr, i, l) if (!strcmp(json_string_value(json_object_get(l, "text")), text)) return l;
    return NULL;
}

X4_TEST(extraction_literals) {
    json_t *a = x4_planner_literals("Please ask the Ministry of Finance about policy \"PP-1\" issued on September 10, "
                                    "2023, for customer CST98765 with 500 mg dosage, a 3.5% rate, 12/05/2022 and "
                                    "2024-08-01; mail client@example.com, set urgent to true.");
    CHECK(a != NULL);
    const json_t *l;
    CHECK((l = lit(a, "PP-1")) && !strcmp(json_string_value(json_object_get(l, "kind")), "string"));
    CHECK((l = lit(a, "Ministry of Finance")) != NULL);
    CHECK(lit(a, "Please") == NULL && lit(a, "Please ask the Ministry of Finance") == NULL);
    CHECK((l = lit(a, "September 10, 2023")) && !strcmp(json_string_value(json_object_get(l, "kind")), "date"));
    CHECK((l = lit(a, "12/05/2022")) && !strcmp(json_string_value(json_object_get(l, "kind")), "date"));
    CHECK((l = lit(a, "2024-08-01")) && !strcmp(json_string_value(json_object_get(l, "kind")), "date"));
    CHECK((l = lit(a, "CST98765")) != NULL);
    CHECK((l = lit(a, "client@example.com")) != NULL);
    CHECK((l = lit(a, "500")) && json_integer_value(json_object_get(l, "value")) == 500);
    CHECK((l = lit(a, "3.5")) && json_real_value(json_object_get(l, "value")) == 3.5);
    CHECK((l = lit(a, "true")) && json_is_true(json_object_get(l, "value")));
    size_t n_true = 0, i;
    json_t *x;
    json_array_foreach(a, i, x) n_true += !strcmp(json_string_value(json_object_get(x, "text")), "true");
    CHECK_EQ_INT(n_true, 1); /* a boolean, not also a string */
    /* the date's parts are not numbers */
    CHECK(lit(a, "2024") == NULL && lit(a, "12") == NULL);
    json_decref(a);
}

X4_TEST(extraction_in_a_plan) {
    x4_catalog *c = small();
    json_t *plan = NULL;
    char err[512] = "";
    /* a proper noun, a date, an enum and an e-mail, each to its parameter */
    int rc = x4_planner_plan(c, "Book a flight from New York to San Francisco on 2025-03-14. Then translate the "
                                "booking reference to de and send an email to ann@example.org.",
                             X4_NO_MAX_COST, NULL, &plan, NULL, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    json_t *st = json_object_get(plan, "steps"), *s;
    size_t i;
    int seen = 0;
    json_array_foreach(st, i, s) {
        const char *svc = json_string_value(json_object_get(s, "service"));
        json_t *in = json_object_get(s, "inputs");
        if (!strcmp(svc, "book_flight")) {
            seen |= 1;
            CHECK_EQ_STR(json_string_value(json_object_get(in, "origin")), "New York");
            CHECK_EQ_STR(json_string_value(json_object_get(in, "destination")), "San Francisco");
            CHECK_EQ_STR(json_string_value(json_object_get(in, "date")), "2025-03-14");
        } else if (!strcmp(svc, "translate_text")) {
            seen |= 2;
            CHECK_EQ_STR(json_string_value(json_object_get(in, "target")), "de");
        } else if (!strcmp(svc, "send_email")) {
            seen |= 4;
            CHECK_EQ_STR(json_string_value(json_object_get(in, "recipient")), "ann@example.org");
        }
    }
    CHECK_EQ_INT(seen, 7);
    if (seen != 7 || rc) {
        char *d = json_dumps(plan, 0);
        fprintf(stderr, "  plan: %s\n", d ? d : "");
        free(d);
    }
    json_decref(plan);
    x4_catalog_unref(c);
}

X4_TEST(rank_is_one_seam) {
    x4_planner_params p;
    x4_planner_params_default(&p);
    x4_planner_features f = {0.5, 1.0, 0, 0, 0};
    double base = x4_planner_rank(&p, &f);
    CHECK(base > 0.5);
    p.cost_weight = 1.0;
    f.price_rel = 1.0;
    CHECK(x4_planner_rank(&p, &f) < base);
}
