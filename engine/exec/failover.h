/* exec/failover.h — matching at execution: when a step's service is unavailable (its last
 * allowed attempt ended in a network error, a timeout, a 5xx or a 429, and nothing was
 * charged), the scheduler moves the step to the next candidate service within the approved
 * price instead of failing the workflow.
 *
 * Candidates come from the catalog by BM25 retrieval (plan/matcher.h) over the unavailable
 * service's name and description and must: have a URL and a built-in or loaded adapter, not
 * be the service itself or one already tried, cost at most the step's approved price (in the
 * same asset), take the step's bound inputs (every required input present; with
 * additionalProperties false, no input it does not declare), and score at least half of the
 * service's own score against that text. matching.rank(candidates, step) (policies/
 * matching.lua) orders or drops them; without the hook, or when it fails, score descending,
 * then price ascending, then id. */
#ifndef X4_EXEC_FAILOVER_H
#define X4_EXEC_FAILOVER_H

#include <jansson.h>
#include <stdint.h>

#include "core/engine.h"
#include "plan/catalog.h"

/* A new array of service ids, best first (possibly empty); NULL only on OOM. tried: an array
 * of service ids to exclude (may be NULL). */
json_t *x4_failover_candidates(x4_engine *e, const x4_service *svc, const char *step_id, const json_t *inputs,
                               uint64_t max_price, const json_t *tried);

#endif
