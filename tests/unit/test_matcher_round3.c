/* tests/unit/test_matcher_round3.c — the offline planner's third-round rules, one test each
 * with a case that fails without the rule: derived word forms and the further synonym groups in
 * a clause's query, the joint choice's link bonus (a specific parameter name shared with an
 * earlier choice), and literals: number words, compound words, street addresses, company
 * suffixes and name particles, lists of common nouns for arrays, the words right before a value,
 * a parameter named by its head word ("fiberglass insulation"), "options:" in descriptions, and
 * another clause's text only after a default; and bare requests ("Can you help me?") in
 * decomposition. */
#include <stdlib.h>
#include <string.h>

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

static json_t *plan_of(x4_catalog *c, const char *task, const x4_planner_params *p) {
    json_t *plan = NULL, *draft = NULL;
    char err[256] = "";
    x4_planner_plan(c, task, X4_NO_MAX_COST, p, &plan, &draft, err, sizeof err);
    if (plan) {
        json_decref(draft);
        return plan;
    }
    return draft;
}

static const char *step_service(const json_t *plan, size_t i) {
    return json_string_value(json_object_get(json_array_get(json_object_get(plan, "steps"), i), "service"));
}

static json_t *plan_inputs(x4_catalog *c, const char *task, size_t step) {
    json_t *p = plan_of(c, task, NULL);
    json_t *in = json_incref(json_object_get(json_array_get(json_object_get(p, "steps"), step), "inputs"));
    json_decref(p);
    return in;
}

static size_t lit_count(const json_t *arr, const char *text) {
    size_t i, n = 0;
    json_t *l;
    json_array_foreach(arr, i, l) n += !strcmp(json_string_value(json_object_get(l, "text")), text);
    return n;
}

/* "prediction" is no word of this catalog; its root "predict" is (both services match "sales"
 * alike, and sales_report comes first). */
X4_TEST(query_derived_word_forms) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"sales_report\",\"description\":\"A report of the sales\",\"input\":{\"type\":\"object\","
           "\"properties\":{}}}");
    add(c, "{\"id\":\"predict_sales\",\"description\":\"Predict the sales\",\"input\":{\"type\":\"object\","
           "\"properties\":{}}}");
    json_t *p = plan_of(c, "Give me a prediction of the sales.", NULL);
    CHECK_EQ_STR(step_service(p, 0), "predict_sales");
    json_decref(p);
    x4_catalog_unref(c);
}

/* "sift" is in a further synonym group (parse, filter, extract): parse_content wins the tie on
 * "content" and "page" that summarize_page would win by catalog order. */
X4_TEST(query_more_synonym_groups) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"summarize_page\",\"description\":\"Summarize the content of a web page\",\"input\":{"
           "\"type\":\"object\",\"properties\":{}}}");
    add(c, "{\"id\":\"parse_content\",\"description\":\"Parse the content of a web page\",\"input\":{"
           "\"type\":\"object\",\"properties\":{}}}");
    json_t *p = plan_of(c, "Sift through the content of the page.", NULL);
    CHECK_EQ_STR(step_service(p, 0), "parse_content");
    json_decref(p);
    x4_catalog_unref(c);
}

/* The second clause matches effectiveness_review and effectiveness_study alike; only the study
 * takes ref_key, as the service chosen for the first clause does: with link_bonus the
 * joint choice plans it, without (0) the catalog order decides. */
X4_TEST(joint_choice_link_bonus) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"get_policy\",\"description\":\"Get a policy document\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"ref_key\":{\"type\":\"string\"}},\"required\":[\"ref_key\"]}}");
    add(c, "{\"id\":\"effectiveness_review\",\"description\":\"Analyze the effectiveness\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"plan_id\":{\"type\":\"string\",\"default\":\"x\"}},\"required\":"
           "[\"plan_id\"]}}");
    add(c, "{\"id\":\"effectiveness_study\",\"description\":\"Analyze the effectiveness\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"ref_key\":{\"type\":\"string\",\"default\":\"x\"}},\"required\":"
           "[\"ref_key\"]}}");
    const char *task = "Get the policy document \"PP-1\". Then analyze the effectiveness of it.";
    x4_planner_params p;
    x4_planner_params_default(&p);
    CHECK(p.link_bonus > 0);
    json_t *wj = x4_planner_params_json(&p);
    CHECK(json_is_number(json_object_get(wj, "link_bonus")));
    json_decref(wj);
    json_t *plan = plan_of(c, task, &p);
    CHECK_EQ_STR(step_service(plan, 0), "get_policy");
    CHECK_EQ_STR(step_service(plan, 1), "effectiveness_study");
    json_decref(plan);
    p.link_bonus = 0;
    plan = plan_of(c, task, &p);
    CHECK_EQ_STR(step_service(plan, 1), "effectiveness_review");
    json_decref(plan);
    x4_catalog_unref(c);
}

/* Numbers written as words; "one" only before a unit ("one hour"), not in "one of them". */
X4_TEST(extraction_number_words) {
    json_t *a = x4_planner_literals("A photographer with five years of experience for one hour; one of them "
                                    "knows Ocean's Eleven.");
    CHECK_EQ_INT(lit_count(a, "5"), 1);
    CHECK_EQ_INT(lit_count(a, "1"), 1);
    CHECK_EQ_INT(lit_count(a, "11"), 0);
    json_decref(a);
}

/* A street address with its town and postal code is one value; a company suffix keeps its dot;
 * "da" joins the parts of a name. */
X4_TEST(extraction_addresses_and_names) {
    json_t *a = x4_planner_literals("Deliver to 123 Main Street, Cityville, 90210 at noon. A logo for Artify Inc. "
                                    "With this, study Leonardo da Vinci today.");
    CHECK_EQ_INT(lit_count(a, "123 Main Street, Cityville, 90210"), 1);
    CHECK_EQ_INT(lit_count(a, "Artify Inc."), 1);
    CHECK_EQ_INT(lit_count(a, "Leonardo da Vinci"), 1);
    json_decref(a);
}

/* A compound word ("old-fashioned") is no id: the proper name is the better value. */
X4_TEST(extraction_compound_words_rank_low) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"paint_door\",\"description\":\"Paint a door\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"color\":{\"type\":\"string\"}},\"required\":[\"color\"]}}");
    json_t *in = plan_inputs(c, "Paint the old-fashioned door in Blue.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "color")), "Blue");
    json_decref(in);
    x4_catalog_unref(c);
}

/* Lists of common nouns fill arrays — and only arrays. */
X4_TEST(extraction_noun_lists_for_arrays) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"diagnose_skin\",\"description\":\"Diagnose the skin condition of a pet\",\"input\":{\"type\":"
           "\"object\",\"properties\":{\"symptoms\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
           "\"pet_name\":{\"type\":\"string\"}},\"required\":[\"symptoms\",\"pet_name\"]}}");
    json_t *in = plan_inputs(c, "Diagnose the skin condition of my pet Buddy, who has symptoms of itchiness, "
                                "dry patches and redness.", 0);
    const json_t *s = json_object_get(in, "symptoms");
    CHECK(json_array_size(s) == 3);
    CHECK_EQ_STR(json_string_value(json_array_get(s, 0)), "itchiness");
    CHECK_EQ_STR(json_string_value(json_array_get(s, 1)), "dry patches");
    CHECK_EQ_STR(json_string_value(json_array_get(s, 2)), "redness");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "pet_name")), "Buddy");
    json_decref(in);
    x4_catalog_unref(c);
}

/* The words right before a value name it: "passport number ABC12345", though the name before
 * has "passport" among the words after it. */
X4_TEST(extraction_words_right_before_a_value) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"screen_passenger\",\"description\":\"Screen a passenger\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"passport_number\":{\"type\":\"string\"},\"passenger_name\":{\"type\":\"string\"}},"
           "\"required\":[\"passport_number\",\"passenger_name\"]}}");
    json_t *in = plan_inputs(c, "Screen the passenger John Doe with passport number ABC12345.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "passport_number")), "ABC12345");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "passenger_name")), "John Doe");
    json_decref(in);
    /* both amounts are prices by their unit and "budget" is among the words around each; the
     * one right after "budget (of)" is the budget */
    add(c, "{\"id\":\"buy_lamp\",\"description\":\"Buy a lamp\",\"input\":{\"type\":\"object\",\"properties\":"
           "{\"budget\":{\"type\":\"number\"}},\"required\":[\"budget\"]}}");
    in = plan_inputs(c, "Buy a lamp priced at $40 for the office, keeping a budget of $300.", 0);
    CHECK(json_number_value(json_object_get(in, "budget")) == 300);
    json_decref(in);
    x4_catalog_unref(c);
}

/* A parameter named "<head>_type" is named by its head word ("fiberglass insulation"); a
 * description's "options:" lists its values. */
X4_TEST(extraction_head_words_and_options) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"assess_house\",\"description\":\"Assess the energy efficiency of a house\",\"input\":{"
           "\"type\":\"object\",\"properties\":{\"insulation_type\":{\"type\":\"string\"}},\"required\":"
           "[\"insulation_type\"]}}");
    add(c, "{\"id\":\"plan_workout\",\"description\":\"Plan a workout\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"level\":{\"type\":\"string\",\"description\":\"difficulty, options: 'beginner', "
           "'intermediate', 'advanced'\"}},\"required\":[\"level\"]}}");
    json_t *in = plan_inputs(c, "Assess the energy efficiency of a house with fiberglass insulation.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "insulation_type")), "fiberglass");
    json_decref(in);
    in = plan_inputs(c, "Plan an intermediate workout for me.", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(in, "level")), "intermediate");
    json_decref(in);
    x4_catalog_unref(c);
}

/* A required text input nothing in its own clause fills takes its default before another
 * clause's text. */
X4_TEST(extraction_default_before_other_clause_text) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"get_report\",\"description\":\"Get a report by name\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}}");
    add(c, "{\"id\":\"export_report\",\"description\":\"Export a report\",\"input\":{\"type\":\"object\","
           "\"properties\":{\"format\":{\"type\":\"string\",\"default\":\"pdf\"}},\"required\":[\"format\"]}}");
    json_t *p = plan_of(c, "Get the report named \"Quarterly\". Then export the report.", NULL);
    CHECK_EQ_STR(step_service(p, 1), "export_report");
    json_t *in = json_object_get(json_array_get(json_object_get(p, "steps"), 1), "inputs");
    CHECK_EQ_STR(json_string_value(json_object_get(in, "format")), "pdf");
    json_decref(p);
    x4_catalog_unref(c);
}

/* A clause of request verbs and fillers alone ("Can you help me?") opens the next one rather
 * than being a request of its own; one that names something ("Get the details.") stays. */
X4_TEST(clauses_bare_requests_open_the_next) {
    x4_catalog *c = x4_catalog_new();
    add(c, "{\"id\":\"book_flight\",\"description\":\"Book a flight\",\"input\":{\"type\":\"object\","
           "\"properties\":{}}}");
    json_t *a = x4_planner_clauses(c, "Can you help me? Book a flight to Paris.");
    CHECK_EQ_INT(json_array_size(a), 1);
    CHECK_EQ_STR(json_string_value(json_array_get(a, 0)), "Can you help me? Book a flight to Paris");
    json_decref(a);
    a = x4_planner_clauses(c, "Get the details. Book a flight to Paris.");
    CHECK_EQ_INT(json_array_size(a), 2);
    CHECK_EQ_STR(json_string_value(json_array_get(a, 0)), "Get the details");
    json_decref(a);
    x4_catalog_unref(c);
}
