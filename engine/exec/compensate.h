/* exec/compensate.h — the saga: undoing the succeeded steps of a failed or cancelled workflow
 * (sql/007_compensation.sql holds the state machine; docs/lua.md the operator's side).
 *
 * A workflow in `compensating` leased to this process is driven here:
 *   load → (first time) build the compensation plan and store it once (x4_comp_plan, which
 *   announces workflow.compensating) → run the compensations one after another, in the plan's
 *   order → x4_comp_finish (final status, hold released, refunds flagged, rollback summary).
 *
 * The plan: each succeeded step may be undone by a compensation request, taken from its step
 * adapter's compensate() (exec/step_adapter.h) or else the service's catalog record
 * (`compensate: {url, method}`, body {workflowId, stepId, output}). rollback.plan(workflow)
 * (policies/rollback.lua) orders, drops or replaces them; without the hook, or when it fails,
 * the built-in default (x4_comp_default_plan) applies: reverse dependency order, later plan
 * steps first among independent ones.
 *
 * A compensation is an unpaid HTTP call carrying X-Workflow-Id, X-Step-Id, X-Compensation: 1
 * and Idempotency-Key "<workflow>:<step>:compensate" — the same on every attempt and after a
 * restart, so the service applies it once. 2xx → step.compensated. Network errors, timeouts,
 * 5xx and 429 are retried: rollback.retry(step, err, attempt) decides (like retry.decide),
 * else the engine's backoff up to COMPENSATE_MAX_ATTEMPTS; anything else (a 4xx, a 402: the
 * engine never pays to undo) → step.compensation_failed. Each attempt is counted in the
 * database before it is sent, fenced by the lease: a process that lost the workflow stops. */
#ifndef X4_EXEC_COMPENSATE_H
#define X4_EXEC_COMPENSATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

/* Drives a compensating workflow leased to this process; no-op if it is already in memory. */
void x4_comp_resume(x4_engine *e, const char *workflow_id);
/* After a lease cycle sent at sent_ms: drops runs started before it whose id is not in ids. */
void x4_comp_lease_renewed(x4_engine *e, const char *const *ids, size_t n, uint64_t sent_ms);
/* Drops every run in memory without writing (shutdown, or leases lost): the lease resumes them. */
void x4_comp_abort_all(x4_engine *e, const char *why);
size_t x4_comp_active(const x4_engine *e);

/* The built-in rollback plan for a workflow view {id, steps:[{id, status, dependsOn, output,
 * compensate:{url, method?, body?}}]}: one {step, url, method, body} per succeeded step that
 * declares a compensation, every step undone only after all steps that depend on it (directly
 * or not), later plan steps first among independent ones. A new array (never NULL but on OOM). */
json_t *x4_comp_default_plan(const json_t *workflow);

/* Checks a plan (from Lua or the default) against the view: a JSON array of at most one item
 * per succeeded step, http(s) url, a known method, headers an object of strings without CR/LF.
 * Returns a normalised copy (method upper-cased, body null when absent) or NULL with err. */
json_t *x4_comp_check_plan(const json_t *plan, const json_t *workflow, char *err, size_t errlen);

#endif
