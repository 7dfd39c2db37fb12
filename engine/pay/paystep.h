/* pay/paystep.h — paying one step over x402: the bridge between the scheduler and the payment
 * parts (x402.c, solana.c, rpc.c, the ledger in sql/003_escrow.sql).
 *
 *   402 → parse the challenge (now: the response is valid only in its callback)
 *       → read what the workflow still holds → choose a requirement (network, asset, the step's
 *         approved price, MAX_PAYMENT_PER_TX, the remaining hold) — nothing is signed before
 *         every cap has passed
 *       → blockhash (the server's extra.recentBlockhash, or getLatestBlockhash)
 *       → build and sign the exact-scheme transaction
 *       → commit the payment row (memo nonce, own signature, blockhash, last valid block height,
 *         amount, payTo) and its `payment.signed` event — fenced by the lease — BEFORE sending
 *       → the caller sends the request again with the payment header
 *   answer → settled: charged once (ledger 'charge', step cost, `payment.settled`);
 *            a second 402: refused before settlement, the payment can never land (only the
 *            facilitator can add the fee payer's signature): `payment.failed`, the step fails
 *            and pays nothing more;
 *            anything else: unresolved — the row stays `signed` and keeps its share of the hold
 *            until the reconciler finds it on chain or proves it absent after its blockhash
 *            expired. The step is never paid again before that.
 * A payment is identified on chain by its memo nonce (v2) or its own signature (v1). */
#ifndef X4_PAY_PAYSTEP_H
#define X4_PAY_PAYSTEP_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "exec/httpc.h"

typedef struct x4_paystep x4_paystep;

typedef enum {
    X4_PAY_SETTLED = 1,     /* paid and charged: use the answer */
    X4_PAY_REFUSED = 0,     /* not paid, never will be: fail the step, pay nothing more */
    X4_PAY_UNRESOLVED = 2   /* outcome unknown: fail the step now; the reconciler settles the money */
} x4_pay_result;

/* ps != NULL: the header is ready (the payment row is committed, or an earlier payment of
 * this step that landed is to be replayed with its own header and attempt). ps == NULL: no
 * payment; retry_ms < 0 means fail the step (why), retry_ms >= 0 means an earlier payment is
 * still unresolved on chain: try again after retry_ms without paying. */
typedef void (*x4_paystep_ready_cb)(x4_paystep *ps, const char *why, int64_t retry_ms, void *ud);

/* Starts paying: cb runs once with the verdict, never inside this call. A step is paid at
 * most once: an earlier unresolved payment of the step is reconciled on chain first — absent
 * (its blockhash expired) → a new payment; landed → replayed (same header, same
 * Idempotency-Key attempt), so an idempotent service answers without a second charge. */
void x4_paystep_begin(x4_engine *e, const char *workflow_id, const char *step_id, int attempt, uint64_t approved_price,
                      const x4_httpc_resp *challenge, x4_paystep_ready_cb cb, void *ud);
const char *x4_paystep_header_name(const x4_paystep *ps);
const char *x4_paystep_header_value(const x4_paystep *ps);
/* The attempt whose Idempotency-Key the paid request must carry (a replay keeps the original). */
int x4_paystep_attempt(const x4_paystep *ps);
/* Reads the answer to the paid request (now), records its outcome and frees ps. `recorded`
 * runs once, later, when that record has committed (always, whatever the outcome), so the
 * caller can make the step's own writes follow the charge: a workflow never completes before
 * the charges of its steps are stored. */
x4_pay_result x4_paystep_finish(x4_paystep *ps, const x4_httpc_resp *resp, char *why, size_t whylen,
                                void (*recorded)(void *ud), void *ud);
/* The run went away before the paid request was answered: the row stays for the reconciler. */
void x4_paystep_drop(x4_paystep *ps);

/* Payments left `signed` for over a minute: found on chain → charged; provably absent (its
 * blockhash expired and the chain does not know it) → released. Called periodically. */
void x4_paystep_reconcile(x4_engine *e);

#endif
