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

#include "core/engine.h"

int x4_wf_open(x4_engine *e);   /* arms the timers; with drive_workflows only */
void x4_wf_close(x4_engine *e);
/* Plans a workflow in `planning` leased to this process. */
void x4_wf_plan(x4_engine *e, const char *workflow_id);

#endif
