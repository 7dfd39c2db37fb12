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
#include "core/util.h"
#include "plan/plan.h"

/* plan != NULL: the LLM's valid plan (the callee frees it). plan == NULL: why, and the caller
 * plans offline. cancelled = 1 at shutdown (do nothing). */
typedef void (*x4_planning_cb)(x4_plan *plan, const char *why, const char *planner, int cancelled, void *ud);

/* Planning latency, measured in the server, up to a valid plan: for a cache hit from the
 * validated create request to the cached plan re-validated against the catalog
 * (x4_wf_cache_probe; or, when the cache answers a workflow already in planning, from the start
 * of planning); for a planner from the start of planning to its plan validated. Apart
 * (X4_PLANNING_STORE): from that valid plan to the workflow committed with it (the creation,
 * or plan_ready). The last X4_PLANNING_SAMPLES of each, kept in a ring. Recorded and read on
 * the loop thread. */
#define X4_PLANNING_SAMPLES 8192
typedef enum { X4_PLANNING_CACHE = 0, X4_PLANNING_PLANNER = 1, X4_PLANNING_STORE = 2 } x4_planning_source;
void x4_planning_latency_record(x4_planning_source src, uint64_t ns);
/* count (all time), and p50/p99/max (µs) over the samples kept; 0s when none. */
void x4_planning_latency(x4_planning_source src, uint64_t *count, double *p50_us, double *p99_us, double *max_us);
/* Appends the Prometheus lines (the summaries x402r_planning_seconds{source=...} and
 * x402r_plan_store_seconds) to b. */
void x4_planning_metrics(x4_buf *b);

/* The offline planner with the engine's policies (e->lua: policies/matching.lua's weights and
 * score, see x4_planner_plan_lua): 0 and a new plan JSON, or -1 with err. Loop thread only. */
int x4_planning_offline(x4_engine *e, const char *task, uint64_t max_cost, json_t **plan, char *err, size_t errlen);

int x4_planning_open(x4_engine *e, char *err, size_t errlen);
void x4_planning_close(void);
int x4_planning_llm_enabled(void);
void x4_planning_llm(x4_engine *e, const char *task, uint64_t max_cost, x4_planning_cb cb, void *ud);

#endif
