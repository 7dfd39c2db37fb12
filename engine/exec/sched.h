/* exec/sched.h — the DAG scheduler: drives the executing workflows this process holds the
 * lease for.
 *
 * Every ready step (all dependencies succeeded) starts at once, bounded by WORKFLOW_CONCURRENCY
 * per workflow and MAX_CONCURRENCY per process (steps over the global bound wait in FIFO order
 * of their workflows). Each transition is written to PostgreSQL (fenced by the lease) and only
 * then announced and acted on: running → HTTP call → succeeded | retrying → ... | failed. A
 * failed step skips every step not yet started and fails the workflow once the running ones
 * have ended. Retries use exponential backoff with full jitter (RETRY_BASE_MS × RETRY_FACTOR^n,
 * capped at RETRY_MAX_DELAY_MS) or the service's Retry-After, for network errors, timeouts, 5xx
 * and 429 only. maxTime bounds the whole run. A run whose write is refused (cancelled
 * elsewhere, lease lost) or whose database write fails is dropped from memory at once, its
 * transfers aborted; the stored state is the truth and the lease machinery resumes it.
 *
 * Resuming (after approval, or claiming a dead process's lease) loads the plan and the step
 * states: succeeded steps keep their stored output and never run again; steps that were
 * running are run again with the next attempt number (Idempotency-Key changes with it). */
#ifndef X4_EXEC_SCHED_H
#define X4_EXEC_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

int x4_sched_open(x4_engine *e);
/* Aborts every run in memory without writing (their leases lapse; they resume elsewhere). */
void x4_sched_close(x4_engine *e);
/* Loads an executing workflow leased to this process and runs it; no-op if already running. */
void x4_sched_resume(x4_engine *e, const char *workflow_id);
/* Starts a run this process has just created and approved (x4_wf_create_approved, lease taken
 * in that transaction) from the plan it stored, without reading it back. max_time_ms: the
 * workflow's time budget (NULL: none); sent_ms: when that query was sent; prestarted: how many
 * of the plan's roots (steps without dependencies, in plan order) that transaction stored
 * `running` on slots reserved with x4_sched_reserve — their requests are sent at once. The
 * reservation is always consumed or given back. */
void x4_sched_start(x4_engine *e, const char *workflow_id, json_t *plan, const char *max_time_ms, uint64_t sent_ms,
                    size_t prestarted);
/* Reserves up to n step slots (within MAX_CONCURRENCY and WORKFLOW_CONCURRENCY); returns how
 * many. x4_sched_unreserve gives back what will not be used. */
size_t x4_sched_reserve(x4_engine *e, size_t n);
void x4_sched_unreserve(x4_engine *e, size_t n);
/* Drops a run from memory and aborts its transfers (cancelled, or its lease was lost). */
void x4_sched_abort(x4_engine *e, const char *workflow_id, const char *why);
/* Drops every run (the leases could not be renewed in time: another process may take over). */
void x4_sched_abort_all(x4_engine *e, const char *why);
/* After a lease cycle sent at sent_ms: drops runs started before it that were not renewed. */
void x4_sched_lease_renewed(x4_engine *e, const char *const *ids, size_t n, uint64_t sent_ms);
size_t x4_sched_active(const x4_engine *e);
size_t x4_sched_running_steps(const x4_engine *e);
size_t x4_sched_queue_depth(const x4_engine *e);

#endif
