/* plan/matcher.h — the offline planner: no network, no key.
 *
 * Retrieval: a BM25 index (field-weighted: names, tags, description, parameter names and
 * descriptions, enum values; light stemming) built once per catalog version and cached.
 * Decomposition: the task is cut into clauses (sentences, "then/after that/finally", "and"/","
 * before a verb; back-references and purely descriptive sentences left out); each clause gets
 * at most one service, ranked by x4_planner_rank() over its BM25 score (with synonyms of its
 * request verbs), the share of the service's name it mentions, the rest of the task's words
 * and how well the service can consume outputs of the steps already planned, then chosen
 * jointly for the whole task (services that pass data to each other and whose inputs the task
 * provides win; a clause not worth step_cost gets none); cheaper first on a tie and within
 * max_cost. Wiring: each input takes an earlier step's output of the same name, or of a
 * similar name/description and a compatible type; else a literal from the task (quoted
 * strings, numbers with units, amounts, ISO dates, times, proper-noun spans, lists, enum and
 * described example values, booleans, values named by the parameter) matched to the parameter
 * by the words around it and its type; a required input still open takes an earlier output of
 * its type rather than leave the plan invalid; else a providing service is chained in. The
 * result is a plan JSON that still goes through x4_plan_parse(). policies/matching.lua can
 * change the weights and the rank (x4_planner_plan_lua). */
#ifndef X4_PLAN_MATCHER_H
#define X4_PLAN_MATCHER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/catalog.h"

struct x4_lua_rt;

/* Returns 0 and a new plan JSON ({"steps":[...]}) or -1 with a reason in err
 * ("no service in the catalog matches the task", ...). Default parameters. */
int x4_matcher_plan(const x4_catalog *cat, const char *task, uint64_t max_cost, json_t **plan, char *err, size_t errlen);

/* The ranking weights, named; x4_planner_params_default() gives the tuned defaults. The Lua
 * policy (policies/matching.lua) may override them (weights) and the rank (score): see
 * x4_planner_plan_lua. */
typedef struct {
    double bm25_k1, bm25_b;  /* BM25 saturation and length normalisation */
    double match_min;        /* a clause's service needs at least this rank */
    double name_bonus;       /* × share of the service's name tokens the clause mentions */
    double context_weight;   /* × the service's BM25 score against the whole task */
    double chain_bonus;      /* × share of the service's required inputs earlier steps provide */
    double cost_weight;      /* × price / (max price among the candidates) — a penalty */
    double sim_min;          /* output→input wiring: least Dice similarity of name+description */
    double sim_typed;        /* ... when both sides declare (compatible) types */
    double wire_bonus;       /* joint choice: × share of a service's inputs earlier choices feed */
    double fill_bonus;       /* joint choice: × share of its inputs fed or evidenced by the task */
    double step_cost;        /* joint choice: what a clause's own step costs (× the share of its
                              * words the catalog knows); a clause worth less gets no step */
    double link_bonus;       /* joint choice: a service sharing a specific parameter name (one
                              * few services use) with a service chosen for an earlier clause */
} x4_planner_params;

void x4_planner_params_default(x4_planner_params *p);

/* What x4_planner_rank() sees about one (clause, service) pair. */
typedef struct {
    double bm25;       /* BM25 of the clause against the service, / (clause's Σ idf · (k1+1)) */
    double name_share; /* share of the service's name tokens found in the clause, 0..1 */
    double context;    /* the same BM25 measure against the whole task */
    double fed;        /* share of required inputs earlier planned steps can provide, 0..1 */
    double price_rel;  /* price / max price among candidates, 0..1 (0 when free) */
} x4_planner_features;

/* The one ranking seam: a higher value is a better service for the clause. */
double x4_planner_rank(const x4_planner_params *p, const x4_planner_features *f);

/* Like x4_matcher_plan with explicit parameters (NULL: defaults). When the plan fails
 * validation and draft is not NULL, *draft is the rejected plan JSON (for diagnosis). */
int x4_planner_plan(const x4_catalog *cat, const char *task, uint64_t max_cost, const x4_planner_params *prm,
                    json_t **plan, json_t **draft, char *err, size_t errlen);

/* The same with the operator's policies/matching.lua (lua may be NULL: built-in rules only):
 *  - weights(defaults) → a table overriding any of the x4_planner_params by name ("bm25_k1",
 *    "context_weight", ...): called once per plan when prm is NULL (explicit prm wins);
 *  - score(f) → a number replacing the built-in rank of one (clause, service) pair, for the top
 *    6 services of each clause by the built-in rank (the rest keep theirs); f has service,
 *    clause, price (atomic, a string), bm25, name_share, context, fed, price_rel and rank (the
 *    built-in value).
 * A hook that is absent, fails or returns a wrong shape leaves the built-in values (a bad
 * weights table is said once per policy version; a failing score turns it off for the plan).
 * lua belongs to the calling thread (the engine's loop, or the CLI). */
int x4_planner_plan_lua(const x4_catalog *cat, const char *task, uint64_t max_cost, const x4_planner_params *prm,
                        struct x4_lua_rt *lua, json_t **plan, json_t **draft, char *err, size_t errlen);

/* matching.weights: 1 when rt has no such hook (p untouched), 0 when p was updated from it,
 * -1 with err (p untouched) when it failed or returned a bad table. */
int x4_planner_params_lua(struct x4_lua_rt *rt, x4_planner_params *p, char *err, size_t errlen);
/* The weights by name as a new JSON object, and back: every key must be a known weight with a
 * finite number in its range, or nothing is changed and -1 says which. */
json_t *x4_planner_params_json(const x4_planner_params *p);
int x4_planner_params_set(x4_planner_params *p, const json_t *w, char *err, size_t errlen);

/* ---- the pieces, exposed for tests and tools ---- */

/* The top k services for a query by BM25 (index cached per catalog): catalog indices and
 * scores into idx/score (either may be NULL), best first. Returns how many (≤ k), -1 on OOM. */
int x4_planner_retrieve(const x4_catalog *cat, const char *query, size_t k, size_t *idx, double *score);
/* The clauses of a task, as a new JSON array of strings (cat may be NULL: built-in verbs only). */
json_t *x4_planner_clauses(const x4_catalog *cat, const char *task);
/* The literals of a task: a new JSON array of {"kind":"string"|"number"|"boolean"|"date",
 * "value", "text", "context":[stemmed words around it]}. */
json_t *x4_planner_literals(const char *task);
/* The example values a parameter description lists ("such as 'cat', 'dog'", "e.g., image,
 * video"), as a new JSON array of strings (empty when none). */
json_t *x4_planner_examples(const char *desc);
/* The output of `producer` best suited to the input `param` of `consumer` (same name, else
 * similar name/description with a compatible type), or NULL. Borrowed from the catalog. */
const char *x4_planner_wire(const x4_service *producer, const x4_service *consumer, const char *param,
                            const x4_planner_params *prm);

#endif
