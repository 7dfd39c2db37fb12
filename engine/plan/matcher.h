/* plan/matcher.h — the first offline planner: no network, no key. Splits the task into
 * clauses, scores each service against each clause by token overlap over name, description
 * and parameter names/descriptions, takes the best service per clause above a threshold (in
 * clause order, no repeats), wires each required input to an earlier step's output of the
 * same or a similar name, and fills what remains from literals in the task (quoted strings,
 * numbers) or schema defaults. Prefers the cheaper service on a tie. The full planner (BM25,
 * decomposition, Lua-ranked) replaces this in a later issue; the contract stays the same:
 * the result is a plan JSON that still goes through x4_plan_parse(). */
#ifndef X4_PLAN_MATCHER_H
#define X4_PLAN_MATCHER_H

#include <jansson.h>
#include <stdint.h>

#include "plan/catalog.h"

/* Returns 0 and a new plan JSON ({"steps":[...]}) or -1 with a reason in err
 * ("no service in the catalog matches the task", ...). */
int x4_matcher_plan(const x4_catalog *cat, const char *task, uint64_t max_cost, json_t **plan, char *err, size_t errlen);

#endif
