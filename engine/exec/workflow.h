/* exec/workflow.h — the workflow lifecycle around the scheduler: planning, approval expiry
 * and the lease cycle that lets many processes share the work (DESIGN.md "Scale-out").
 *
 * Planning runs in the process holding the planning lease (the creating one, or whoever
 * claims it after that process died): the planner's plan goes through x4_plan_parse like any
 * other and is stored with x4_wf_plan_ready, or the workflow fails with the reason.
 * Every LEASE_MS/3 the lease cycle renews this process's leases and claims lapsed ones
 * (planning → plan it, executing → resume it). Every second (or APPROVAL_TTL_MS/4 if
 * shorter) approvals past their expiry become `expired`. */
#ifndef X4_EXEC_WORKFLOW_H
#define X4_EXEC_WORKFLOW_H

#include <stdint.h>

#include "core/engine.h"
#include "plan/plan.h"

int x4_wf_open(x4_engine *e);   /* arms the timers; with drive_workflows only */
void x4_wf_close(x4_engine *e);
/* Plans a workflow in `planning` leased to this process. */
void x4_wf_plan(x4_engine *e, const char *workflow_id);

/* The plan cache at creation: a plan cached for (task, user, max_cost, catalog and policy
 * versions), validated against the current catalog, so a repeated task is created already
 * planned in one transaction. cb gets the plan (the callee frees it) and its planner label
 * ("cache:<planner>"), or NULL on a miss, an invalid entry, Redis down or PLAN_CACHE=off —
 * then the workflow is created in planning as usual (and planned with single-flight). An
 * entry this process has read or written lately answers without a round trip (workflow.c's
 * in-process copy). cb may run inside this call. */
typedef void (*x4_wf_cache_cb)(x4_plan *plan, const char *planner, void *ud);
void x4_wf_cache_probe(x4_engine *e, const char *task, const char *user, uint64_t max_cost, x4_wf_cache_cb cb,
                       void *ud);

#endif
