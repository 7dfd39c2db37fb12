/* exec/planning.h — which planner plans a workflow: the LLM (when one is configured) over the
 * top candidates the BM25 index retrieves for the task, else — or whenever the LLM fails —
 * the offline planner. The LLM's plan is validated by x4_plan_parse like any other (inside
 * plan/llm.c, with one repair turn); a failure is announced as `workflow.planner_fallback`.
 *
 * Configuration (environment): LLM_PROVIDER = anthropic | openai | off (default: openai when
 * OPENAI_BASE_URL is set, anthropic when ANTHROPIC_API_KEY is set, else off); ANTHROPIC_API_KEY,
 * ANTHROPIC_BASE_URL; OPENAI_BASE_URL, OPENAI_API_KEY; LLM_MODEL; LLM_TIMEOUT_MS;
 * LLM_MAX_CANDIDATES (default 20). Keys are never logged. */
#ifndef X4_EXEC_PLANNING_H
#define X4_EXEC_PLANNING_H

#include <stdint.h>

#include "core/engine.h"
#include "plan/plan.h"

/* plan != NULL: the LLM's valid plan (the callee frees it). plan == NULL: why, and the caller
 * plans offline. cancelled = 1 at shutdown (do nothing). */
typedef void (*x4_planning_cb)(x4_plan *plan, const char *why, const char *planner, int cancelled, void *ud);

int x4_planning_open(x4_engine *e, char *err, size_t errlen);
void x4_planning_close(void);
int x4_planning_llm_enabled(void);
void x4_planning_llm(x4_engine *e, const char *task, uint64_t max_cost, x4_planning_cb cb, void *ud);

#endif
