/* tests/unit/test_planner_pieces.c — the offline planner's pieces, each with cases that could
 * fail: retrieval (paraphrases rank the right service first), decomposition (clause splits),
 * wiring (output→input by name, type and description) and literal extraction (quoted strings,
 * numbers with units, dates, proper nouns, ids, enums and booleans in a plan); then one test
 * per later rule: abbreviations and back-references in decomposition, the joint choice, typed
 * wiring thresholds, weak wiring instead of an invalid plan, ISO dates, times, lists, values
 * named by the parameter, description examples, pronouns and measure adjectives; this round's:
 * fillers, inflected verbs, gerunds and initials in decomposition, verb synonyms, the joint
 * choice's step cost, the last resort for required inputs and dates for date-like inputs; and
 * the planning latency ring behind /metrics (exec/planning.c). */
#include <stdlib.h>

#include "exec/planning.h"
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
    /* a date with a month name is given in ISO 8601, the form services take */
    CHECK((l = lit(a, "2023-09-10")) && !strcmp(json_string_value(json_object_get(l, "kind")), "date"));
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
    x4_planner_features f = {0.5, 1.0, 0.5, 0, 0};
    double base = x4_planner_rank(&p, &f);
    CHECK(base > 0.5); /* relevance to the whole task counts */
    p.cost_weight = 1.0;
    f.price_rel = 1.0;
    CHECK(x4_planner_rank(&p, &f) < base);
}

/* ---- the later rules -------------------------------------------------------------------- */

X4_TEST(decomposition_abbreviations_and_back_references) {
    x4_catalog *c = small();
    /* "sq. ft." and "Dr." end no sentence */
    const char *a[] = {"Get the weather for a 500 sq. ft. room of Dr. Smith in Paris"};
    check_clauses(c, "Get the weather for a 500 sq. ft. room of Dr. Smith in Paris.", a, 1);
    /* "After ..., verb": the phrase before the comma refers back and is left out */
    const char *b[] = {"Translate the report to fr", "send an email to my boss"};
    check_clauses(c, "Translate the report to fr. After translating the long report, send an email to my boss.", b, 2);
    /* "Upon completion of these tasks, finally ..." is no sub-goal either */
    const char *d[] = {"Summarize the contract", "send an email to my boss"};
    check_clauses(c, "Summarize the contract. Upon completion of these tasks, finally send an email to my boss.", d, 2);
    /* a sentence that only describes gives facts, not a step */
    const char *e[] = {"Book a flight to Rome"};
    check_clauses(c, "Book a flight to Rome. The deadline is on May 1, 2025.", e, 1);
    /* a short "and verb ..." tail (fewer than three content words) stays in its clause */
    const char *f[] = {"Summarize the annual report and translate it"};
    check_clauses(c, "Summarize the annual report and translate it", f, 1);
    x4_catalog_unref(c);
}

X4_TEST(decomposition_id_verbs_need_the_description) {
    /* "pollutant_level" opens with a noun ("Get the ..."): "pollutant" is no verb, so ", and
     * pollutant sources" is not cut; "scan_isbn" ("Scan the ISBN ...") makes "scan" one */
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"pollutant_level\",\"description\":\"Get the level of a pollutant in water\"}");
    add(c, "{\"id\":\"scan_isbn\",\"description\":\"Scan the ISBN of a book\"}");
    const char *a[] = {"Check the water quality of the lake, pollutant sources near the river"};
    check_clauses(c, "Check the water quality of the lake, pollutant sources near the river", a, 1);
    const char *b[] = {"Find the library book by its title", "scan the ISBN code on its cover"};
    check_clauses(c, "Find the library book by its title, scan the ISBN code on its cover", b, 2);
    x4_catalog_unref(c);
}

static const char *step_service(const json_t *plan, size_t i) {
    return json_string_value(json_object_get(json_array_get(json_object_get(plan, "steps"), i), "service"));
}

X4_TEST(joint_choice_prefers_services_that_pass_data) {
    /* the second clause matches report_a and report_b alike (same words); only report_b takes
     * what the first step outputs, so the joint choice plans report_b and wires it */
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"measure_noise\",\"description\":\"Measure the noise level of a street\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"street\":{\"type\":\"string\"}},\"required\":[\"street\"]},\"output\":{"
           "\"type\":\"object\",\"properties\":{\"decibels\":{\"type\":\"number\",\"description\":\"noise in dB\"}}}}");
    add(c, "{\"id\":\"report_a\",\"description\":\"Write a city report\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"budget\":{\"type\":\"integer\"}},\"required\":[\"budget\"]}}");
    add(c, "{\"id\":\"report_b\",\"description\":\"Write a city report\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"decibels\":{\"type\":\"number\"}},\"required\":[\"decibels\"]}}");
    json_t *plan = NULL;
    char err[256] = "";
    int rc = x4_planner_plan(c, "Measure the noise level of Main Street. Then write a city report.", X4_NO_MAX_COST,
                             NULL, &plan, NULL, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(step_service(plan, 0), "measure_noise");
    CHECK_EQ_STR(step_service(plan, 1), "report_b");
    json_t *ref = json_object_get(json_object_get(json_array_get(json_object_get(plan, "steps"), 1), "inputs"), "decibels");
    CHECK_EQ_STR(json_string_value(json_object_get(ref, "$ref")), "s1.decibels");
    json_decref(plan);
    /* with the joint bonuses off, the tie goes to the earlier record, which cannot be filled */
    x4_planner_params p;
    x4_planner_params_default(&p);
    p.wire_bonus = p.fill_bonus = p.chain_bonus = 0;
    plan = NULL;
    json_t *draft = NULL;
    x4_planner_plan(c, "Measure the noise level of Main Street. Then write a city report.", X4_NO_MAX_COST, &p, &plan,
                    &draft, err, sizeof err);
    CHECK_EQ_STR(step_service(plan ? plan : draft, 1), "report_a");
    json_decref(plan);
    json_decref(draft);
    x4_catalog_unref(c);
}

X4_TEST(wiring_typed_needs_closer_names) {
    /* typed on both sides: "summary" → "body" shares only "text" (Dice < sim_typed) and is not
     * wired before literals; the untyped output with the same words is */
    x4_catalog *c = small();
    x4_planner_params p;
    x4_planner_params_default(&p);
    CHECK(p.sim_typed > p.sim_min);
    x4_catalog_unref(c);
    x4_catalog *d = x4_catalog_new();
    add(d, "{\"id\":\"draft_memo\",\"description\":\"Draft a memo\",\"output\":{\"type\":\"object\",\"properties\":{"
           "\"memo_text\":{\"type\":\"string\",\"description\":\"the memo text\"}}}}");
    add(d, "{\"id\":\"fax_memo\",\"description\":\"Fax a memo\",\"input\":{\"type\":\"object\",\"properties\":{"
           "\"content\":{\"type\":\"string\",\"description\":\"text to fax\"},\"number\":{\"type\":\"string\"}},"
           "\"required\":[\"content\",\"number\"]}}");
    json_t *plan = NULL;
    char err[256] = "";
    /* no literal for content: the plan carries the memo text rather than failing */
    int rc = x4_planner_plan(d, "Draft a memo. Then fax the memo to number \"+1 555 0100\".", X4_NO_MAX_COST, NULL, &plan,
                             NULL, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    json_t *in = json_object_get(json_array_get(json_object_get(plan, "steps"), 1), "inputs");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(in, "content"), "$ref")), "s1.memo_text");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "number")), "+1 555 0100");
    json_decref(plan);
    x4_catalog_unref(d);
}

static json_t *plan_inputs(x4_catalog *c, const char *task, size_t step) {
    json_t *plan = NULL, *draft = NULL;
    char err[256] = "";
    x4_planner_plan(c, task, X4_NO_MAX_COST, NULL, &plan, &draft, err, sizeof err);
    json_t *p = plan ? plan : draft;
    json_t *in = json_incref(json_object_get(json_array_get(json_object_get(p, "steps"), step), "inputs"));
    json_decref(plan);
    json_decref(draft);
    return in;
}

X4_TEST(extraction_times_lists_and_names) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"identify_mushroom\",\"description\":\"Identify a mushroom by its look\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"cap_color\":{\"type\":\"string\"},\"gill_color\":{\"type\":\"string\"},"
           "\"toxic\":{\"type\":\"boolean\"},\"pet_type\":{\"type\":\"string\",\"description\":\"kind of pet, such "
           "as 'cat', 'dog' or 'rabbit'\"}},\"required\":[\"cap_color\",\"gill_color\",\"toxic\"]}}");
    add(c, "{\"id\":\"schedule_meeting\",\"description\":\"Schedule a meeting\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"start_time\":{\"type\":\"string\",\"description\":\"time of day\"},\"attendees\":{"
           "\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"day\":{\"type\":\"string\",\"description\":\"date "
           "of the meeting\",\"format\":\"date\"}},\"required\":[\"start_time\",\"attendees\",\"day\"]}}");
    json_t *in = plan_inputs(c, "Identify a mushroom with a brown cap color and pink gill color that my dog found, "
                                "not toxic.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "cap_color")), "brown");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "gill_color")), "pink");
    CHECK(json_is_false(json_object_get(in, "toxic")));                            /* "not toxic" */
    CHECK_EQ_STR(json_string_value(json_object_get(in, "pet_type")), "dog");       /* a described example */
    json_decref(in);
    in = plan_inputs(c, "Schedule a meeting with Alice, Bob and Carol at 6:30 PM on March 3, 2025.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "start_time")), "6:30 PM");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "day")), "2025-03-03");
    json_t *att = json_object_get(in, "attendees");
    CHECK_EQ_INT(json_array_size(att), 3);
    CHECK_EQ_STR(json_string_value(json_array_get(att, 2)), "Carol");
    json_decref(in);
    x4_catalog_unref(c);

    /* "I" is no name; "25-year-old" is a number, not an id */
    const json_t *l;
    json_t *a = x4_planner_literals("I'd like to insure a 25-year-old driver named Ann Lee.");
    CHECK(lit(a, "I") == NULL && lit(a, "I'd") == NULL && lit(a, "25-year-old") == NULL);
    CHECK(lit(a, "25") != NULL && lit(a, "Ann Lee") != NULL);
    json_decref(a);
    a = x4_planner_literals("We meet Dr. Johnson at 18:00.");
    CHECK(lit(a, "Dr. Johnson") != NULL);
    CHECK((l = lit(a, "18:00")) && !strcmp(json_string_value(json_object_get(l, "kind")), "time"));
    json_decref(a);
}

X4_TEST(extraction_description_examples) {
    json_t *e = x4_planner_examples("the finish of the paint such as 'matte', 'gloss', 'semi-gloss'");
    CHECK_EQ_INT(json_array_size(e), 3);
    CHECK_EQ_STR(json_string_value(json_array_get(e, 2)), "semi-gloss");
    json_decref(e);
    e = x4_planner_examples("media type, e.g., image, video or audio file");
    CHECK_EQ_INT(json_array_size(e), 3);
    CHECK_EQ_STR(json_string_value(json_array_get(e, 2)), "audio file");
    json_decref(e);
    e = x4_planner_examples("revenue such as from the events that were held over the whole year");
    CHECK_EQ_INT(json_array_size(e), 0); /* prose, not a list */
    json_decref(e);
    e = x4_planner_examples("the name of the city");
    CHECK_EQ_INT(json_array_size(e), 0);
    json_decref(e);
}

/* ---- this round's rules ------------------------------------------------------------------ */

X4_TEST(decomposition_fillers_inflections_gerunds) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"produce_signal\",\"description\":\"Produce a digital signal\"}");
    add(c, "{\"id\":\"craft_summary\",\"description\":\"Craft a short summary\"}");
    /* a filler ("also", "kindly") between "and" and the verb still cuts */
    const char *a[] = {"Create a playlist named Summer Hits", "also schedule a concert for the whole band"};
    check_clauses(c, "Create a playlist named Summer Hits and also schedule a concert for the whole band", a, 2);
    /* a third-person verb continues a relative clause ("that accepts ... and produces ...") */
    const char *b[] = {"Design a controller that accepts analog inputs and produces digital output signals"};
    check_clauses(c, "Design a controller that accepts analog inputs and produces digital output signals", b, 1);
    const char *d[] = {"Design a controller that accepts analog inputs", "produce digital output signals"};
    check_clauses(c, "Design a controller that accepts analog inputs and produce digital output signals", d, 2);
    /* more built-in request verbs ("examine") */
    const char *h[] = {"Collect the soil samples from the north field", "examine the acidity of each sample"};
    check_clauses(NULL, "Collect the soil samples from the north field and examine the acidity of each sample", h, 2);
    /* ", followed by crafting ...": a next request as a gerund */
    const char *e[] = {"Find the key terms in the annual report", "crafting a concise summary of the content"};
    check_clauses(c, "Find the key terms in the annual report, followed by crafting a concise summary of the content", e,
                  2);
    /* an initial ("F. Scott") continues the sentence; "Farmland A. Please ..." ends one */
    const char *f[] = {"Measure the rainfall in Farmland A", "Please check the river level"};
    check_clauses(c, "Measure the rainfall in Farmland A. Please check the river level.", f, 2);
    const char *f2[] = {"Rent an excavator for Site A", "Check the soil of the whole site"};
    check_clauses(c, "Rent an excavator for Site A. Check the soil of the whole site.", f2, 2);
    const char *g[] = {"Catalog the novel by F. Scott Fitzgerald"};
    check_clauses(c, "Catalog the novel by F. Scott Fitzgerald.", g, 1);
    x4_catalog_unref(c);
    json_t *l = x4_planner_literals("Measure the rainfall in Farmland A. Please check the river level.");
    CHECK(lit(l, "Farmland A") != NULL);
    json_decref(l);
}

/* The synonyms of a request verb join a clause's query: "propose" finds "recommend_books"
 * although the catalog never says "propose"; without it the earlier record wins the tie. */
X4_TEST(retrieval_verb_synonyms) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"rate_books\",\"description\":\"Rate books for a reader\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"reader\":{\"type\":\"string\"}},\"required\":[\"reader\"]}}");
    add(c, "{\"id\":\"recommend_books\",\"description\":\"Recommend books for a reader\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"reader\":{\"type\":\"string\"}},\"required\":[\"reader\"]}}");
    json_t *plan = NULL, *draft = NULL;
    char err[256] = "";
    CHECK_EQ_INT(x4_planner_plan(c, "Propose some books for the reader \"Ann\"", X4_NO_MAX_COST, NULL, &plan, &draft,
                                 err, sizeof err), 0);
    CHECK_EQ_STR(step_service(plan, 0), "recommend_books");
    json_decref(plan);
    plan = NULL;
    CHECK_EQ_INT(x4_planner_plan(c, "Evaluate some books for the reader \"Ann\"", X4_NO_MAX_COST, NULL, &plan, &draft,
                                 err, sizeof err), 0);
    CHECK_EQ_STR(step_service(plan, 0), "rate_books"); /* no synonym of "evaluate" in either: the tie */
    json_decref(plan);
    x4_catalog_unref(c);
}

/* The joint choice may give a clause no step: a clause whose best service (with what the
 * other steps feed it and the task gives it) is worth less than step_cost adds nothing — here
 * the remark about trees; step_cost 0 keeps every clause that matched at all. */
X4_TEST(joint_choice_step_cost) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"measure_noise\",\"description\":\"Measure the noise level of a street\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"street\":{\"type\":\"string\"}},\"required\":[\"street\"]},\"output\":{"
           "\"type\":\"object\",\"properties\":{\"decibels\":{\"type\":\"number\"}}}}");
    add(c, "{\"id\":\"write_report\",\"description\":\"Write a noise report for a city council\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"decibels\":{\"type\":\"number\"}},\"required\":[\"decibels\"]}}");
    add(c, "{\"id\":\"plant_trees\",\"description\":\"Plant trees along a street of a city, with a budget\","
           "\"input\":{\"type\":\"object\",\"properties\":{\"count\":{\"type\":\"integer\"},\"budget\":{\"type\":"
           "\"integer\"}},\"required\":[\"count\",\"budget\"]}}");
    const char *task = "Measure the noise level of Main Street. Then write a noise report for the council. Many "
                       "people walk along the street under the old trees every day.";
    x4_planner_params p;
    x4_planner_params_default(&p);
    CHECK(p.step_cost > 0);
    /* a weight like the others: named in the JSON matching.weights sees, settable, bounded */
    json_t *wj = x4_planner_params_json(&p);
    CHECK(json_is_number(json_object_get(wj, "step_cost")));
    json_decref(wj);
    char werr[128] = "";
    json_t *set = json_pack("{s:f}", "step_cost", 0.25);
    CHECK_EQ_INT(x4_planner_params_set(&p, set, werr, sizeof werr), 0);
    CHECK(p.step_cost == 0.25);
    json_decref(set);
    set = json_pack("{s:f}", "step_cost", 1000.0);
    CHECK_EQ_INT(x4_planner_params_set(&p, set, werr, sizeof werr), -1);
    json_decref(set);
    p.step_cost = 1.5; /* × the share of the clause's words this tiny catalog knows */
    json_t *plan = NULL, *draft = NULL;
    char err[256] = "";
    x4_planner_plan(c, task, X4_NO_MAX_COST, &p, &plan, &draft, err, sizeof err);
    json_t *pl = plan ? plan : draft;
    CHECK_EQ_INT(json_array_size(json_object_get(pl, "steps")), 2);
    CHECK_EQ_STR(step_service(pl, 1), "write_report");
    json_decref(plan);
    json_decref(draft);
    /* no clause worth its cost: the best choice that plans one step, not every clause */
    p.step_cost = 50;
    plan = draft = NULL;
    x4_planner_plan(c, task, X4_NO_MAX_COST, &p, &plan, &draft, err, sizeof err);
    pl = plan ? plan : draft;
    CHECK_EQ_INT(json_array_size(json_object_get(pl, "steps")), 1);
    json_decref(plan);
    json_decref(draft);
    p.step_cost = 0;
    plan = draft = NULL;
    x4_planner_plan(c, task, X4_NO_MAX_COST, &p, &plan, &draft, err, sizeof err);
    pl = plan ? plan : draft;
    CHECK_EQ_INT(json_array_size(json_object_get(pl, "steps")), 3);
    CHECK_EQ_STR(step_service(pl, 2), "plant_trees");
    json_decref(plan);
    json_decref(draft);
    x4_catalog_unref(c);
}

/* A required input nothing in the task fills: a string takes the clause's words, a flag true,
 * a list of strings the clause alone, a field-less object {} — unless the clause names the
 * input without a value ("for my city"): then validation names it. A date-like input prefers
 * a date over a nearer text literal; a year input takes a year-like integer. */
X4_TEST(extraction_last_resort_and_dates) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"compose_poem\",\"description\":\"Compose a poem\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"theme\":{\"type\":\"string\"},\"rhymed\":{\"type\":\"boolean\"},\"moods\":{\"type\":\"array\"},"
           "\"style\":{\"type\":\"object\"}},\"required\":[\"theme\",\"rhymed\",\"moods\",\"style\"]}}");
    add(c, "{\"id\":\"plan_meetup\",\"description\":\"Plan a meetup\",\"input\":{\"type\":\"object\",\"properties\":{"
           "\"venue\":{\"type\":\"string\"},\"meetup_date\":{\"type\":\"string\",\"description\":\"date of the "
           "meetup\"}},\"required\":[\"venue\",\"meetup_date\"]}}");
    json_t *plan = NULL, *draft = NULL;
    char err[512] = "";
    CHECK_EQ_INT(x4_planner_plan(c, "Please compose a poem about autumn leaves.", X4_NO_MAX_COST, NULL, &plan, &draft,
                                 err, sizeof err), 0);
    json_t *in = json_object_get(json_array_get(json_object_get(plan, "steps"), 0), "inputs");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "theme")), "Please compose a poem about autumn leaves");
    CHECK(json_is_true(json_object_get(in, "rhymed")));
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(in, "moods"), 0)),
                 "Please compose a poem about autumn leaves");
    CHECK(json_is_object(json_object_get(in, "style")) && json_object_size(json_object_get(in, "style")) == 0);
    json_decref(plan);
    plan = NULL;
    /* "the theme I like": named, no value — not guessed */
    CHECK_EQ_INT(x4_planner_plan(c, "Please compose a poem with the theme I like.", X4_NO_MAX_COST, NULL, &plan,
                                 &draft, err, sizeof err), -1);
    CHECK(strstr(err, "inputs.theme") != NULL);
    json_decref(draft);
    draft = NULL;
    in = plan_inputs(c, "Plan a meetup at \"Cafe Blue\", with the date chosen by \"Acme Club\": May 3, 2025.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "meetup_date")), "2025-05-03");
    json_decref(in);
    /* a year-like integer fills an input about a year, though no word around it says "year" */
    add(c, "{\"id\":\"get_policy\",\"description\":\"Get a policy document\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"code\":{\"type\":\"string\"},\"year\":{\"type\":\"integer\"},\"pages\":{\"type\":"
           "\"integer\"}},\"required\":[\"code\"]}}");
    in = plan_inputs(c, "Get the policy document \"PP-1\" issued by the ministry in 2023.", 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(in, "year")), 2023);
    CHECK(json_object_get(in, "pages") == NULL);
    json_decref(in);
    x4_catalog_unref(c);
}

/* A literal of another clause fills an input only when two of the words around it name the
 * input: "the city of Oslo" (one word) is the weather's city, not the hotel's. */
X4_TEST(extraction_far_literals_need_two_words) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"get_weather\",\"description\":\"Weather of a city\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]},\"output\":{\"type\":\"object\",\"properties\":"
           "{\"forecast\":{\"type\":\"string\"}}}}");
    add(c, "{\"id\":\"book_hotel\",\"description\":\"Book a hotel room\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"guests\":{\"type\":\"integer\"},\"city\":{\"type\":\"string\",\"description\":\"hotel city\"}},"
           "\"required\":[\"guests\"]}}");
    json_t *in = plan_inputs(c, "Get the weather in the city of \"Oslo\". Then book a hotel room for 2 guests.", 1);
    CHECK(in && json_integer_value(json_object_get(in, "guests")) == 2);
    CHECK(in && json_object_get(in, "city") == NULL);
    json_decref(in);
    in = plan_inputs(c, "Get the weather in the hotel city \"Oslo\". Then book a hotel room for 2 guests.", 1);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "city")), "Oslo");
    json_decref(in);
    x4_catalog_unref(c);
}

/* A number's unit says what it measures: "90 minutes" fills a duration, "$250" a budget, even
 * when no word around them names the input. */
X4_TEST(extraction_units_name_the_measure) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"book_spa\",\"description\":\"Book a spa session\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"guests\":{\"type\":\"integer\"},\"duration\":{\"type\":\"integer\"},\"budget\":{"
           "\"type\":\"number\"}},\"required\":[\"guests\"]}}");
    json_t *in = plan_inputs(c, "Book a spa session for 2 guests: 90 minutes of massage, within $250.", 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(in, "guests")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(in, "duration")), 90);
    CHECK(json_number_value(json_object_get(in, "budget")) == 250);
    json_decref(in);
    x4_catalog_unref(c);
}

/* The preposition before a value says its role: "from" an origin, "to" a destination, "in" /
 * "at" / "near" a place, "for" before a name a person — whatever order the inputs come in. */
X4_TEST(extraction_prepositions_name_the_role) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"book_train\",\"description\":\"Book a train seat\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"destination\":{\"type\":\"string\"},\"origin\":{\"type\":\"string\"}},"
           "\"required\":[\"destination\",\"origin\"]}}");
    add(c, "{\"id\":\"find_hotel\",\"description\":\"Find a hotel\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"stars\":{\"type\":\"integer\"},\"location\":{\"type\":\"string\"}},\"required\":[\"stars\"]}}");
    json_t *in = plan_inputs(c, "Book a train seat from City A to City B.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "origin")), "City A");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "destination")), "City B");
    json_decref(in);
    in = plan_inputs(c, "Find a hotel with 4 stars in Lisbon.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "location")), "Lisbon");
    json_decref(in);
    /* "for" before a name: whom it is for */
    add(c, "{\"id\":\"open_account\",\"description\":\"Open a bank account\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"kind\":{\"type\":\"string\",\"enum\":[\"savings\",\"checking\"]},\"customer\":{"
           "\"type\":\"string\"}},\"required\":[\"kind\"]}}");
    in = plan_inputs(c, "Open a savings bank account for Ann Lee.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "customer")), "Ann Lee");
    json_decref(in);
    x4_catalog_unref(c);
}

/* Digit groups ("123-456-7890", "192.168.1.10") are ids, not numbers or nothing; "E. coli" is
 * one name; a measure adjective ends a name ("Old Town 16-foot canoe"), "Room 101" does not. */
X4_TEST(extraction_grouped_ids_and_species) {
    json_t *a = x4_planner_literals("Call 123-456-7890 about E. coli in 192.168.1.10, the Old Town 16-foot canoe "
                                    "and Room 101.");
    CHECK(lit(a, "123-456-7890") != NULL && lit(a, "192.168.1.10") != NULL);
    CHECK(lit(a, "192.168") == NULL && lit(a, "1.10") == NULL);
    CHECK(lit(a, "E. coli") != NULL && lit(a, "E") == NULL);
    CHECK(lit(a, "Old Town") != NULL && lit(a, "Old Town 16-foot") == NULL);
    CHECK(lit(a, "Room 101") != NULL);
    json_decref(a);
    a = x4_planner_literals("The range is 50-60 and the price 1,000.5.");
    CHECK(lit(a, "50-60") == NULL); /* one separator: a range, not an id */
    json_decref(a);
}

X4_TEST(planning_latency_quantiles) {
    uint64_t n;
    double p50, p99, mx;
    x4_planning_latency(X4_PLANNING_CACHE, &n, &p50, &p99, &mx);
    CHECK(n == 0 && p50 == 0 && p99 == 0 && mx == 0);
    for (int i = 100; i >= 1; i--) x4_planning_latency_record(X4_PLANNING_CACHE, (uint64_t)i * 1000000); /* 1..100 ms */
    x4_planning_latency_record(X4_PLANNING_PLANNER, 7000);
    x4_planning_latency(X4_PLANNING_CACHE, &n, &p50, &p99, &mx);
    CHECK_EQ_INT(n, 100);
    CHECK(p50 == 50000 && p99 == 99000 && mx == 100000); /* µs, nearest rank */
    x4_planning_latency(X4_PLANNING_PLANNER, &n, &p50, &p99, &mx);
    CHECK(n == 1 && p50 == 7 && mx == 7);
    /* the ring keeps the last X4_PLANNING_SAMPLES: older samples age out of the quantiles */
    for (int i = 0; i < X4_PLANNING_SAMPLES; i++) x4_planning_latency_record(X4_PLANNING_CACHE, 2000000);
    x4_planning_latency(X4_PLANNING_CACHE, &n, &p50, &p99, &mx);
    CHECK(n == 100 + X4_PLANNING_SAMPLES && p99 == 2000 && mx == 2000);
    x4_planning_latency_record(X4_PLANNING_STORE, 3000000);
    x4_planning_latency(X4_PLANNING_STORE, &n, &p50, &p99, &mx);
    CHECK(n == 1 && p99 == 3000);
    x4_buf b = {0};
    x4_planning_metrics(&b);
    CHECK(b.data && strstr(b.data, "x402r_planning_seconds{source=\"cache\",quantile=\"0.99\"} 0.002000\n"));
    CHECK(b.data && strstr(b.data, "x402r_planning_seconds_count{source=\"planner\"} 1\n"));
    CHECK(b.data && strstr(b.data, "x402r_plan_store_seconds{quantile=\"0.99\"} 0.003000\n"));
    CHECK(b.data && strstr(b.data, "x402r_plan_store_seconds_count 1\n"));
    CHECK(b.data && strstr(b.data, "# TYPE x402r_plan_store_seconds summary\n"));
    x4_buf_free(&b);
}
