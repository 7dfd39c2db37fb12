/* exec/approval.h — approval.lua in the engine (policies/approval.lua, sql/008_approval.sql)
 * and the one approve query every approver uses.
 *
 * When this process stores a plan (workflow.awaiting_approval published locally, not one
 * relayed from another process), approval.decide(workflow, estimate, limits) is asked once:
 *   auto   → approved at once through x4_wf_approve: the same escrow hold, daily cap and events
 *            as a user's approve. If the hold is refused (balance, cap) the workflow stays
 *            awaiting approval and the refusal is logged.
 *   deny   → awaiting_approval → failed, error "denied: <reason>".
 *   manual → stays awaiting approval; an expiry other than APPROVAL_TTL_MS moves expires_at and
 *            re-announces workflow.awaiting_approval with the new expiresAt and the reason.
 * Without the hook, or when it fails (logged with file:line), the built-in decision is manual
 * with APPROVAL_TTL_MS — what the engine did before policies existed. limits carries maxCost,
 * available (the user's escrow balance in ESCROW_ASSET), autoApproveBelow (AUTO_APPROVE_BELOW)
 * and approvalTtlMs (APPROVAL_TTL_MS). */
#ifndef X4_EXEC_APPROVAL_H
#define X4_EXEC_APPROVAL_H

#include "core/engine.h"
#include "exec/policy.h"
#include "store/pg.h"

/* Registers the listener (serving engines that drive workflows). */
void x4_approval_open(x4_engine *e);

/* awaiting_approval → executing for `user`, leased to this process, with the escrow hold:
 * SELECT X4_EV_COLS FROM x4_wf_approve(...). No rows: not awaiting approval (or not the user's,
 * or expired); errors X4001/X4002 are the balance and daily-cap refusals. */
void x4_approval_approve(x4_engine *e, const char *workflow_id, const char *user, x4_pg_cb cb, void *ud);

/* Asks approval.decide about one workflow, building the views it is given: workflow {id, userId,
 * input, plan, estimatedCost, maxCost} and limits {available, autoApproveBelow, approvalTtlMs,
 * maxCost}. plan is borrowed (NULL: JSON null); max_cost and available may be NULL (absent).
 * Returns 0 with *d set, or X4_POLICY_DEFAULT (no hook, or it failed): the built-in decision. */
int x4_approval_ask(x4_engine *e, const char *workflow_id, const char *user, const char *input, json_t *plan,
                    const char *estimate, const char *max_cost, const char *available, x4_approval *d);

#endif
