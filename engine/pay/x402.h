/* pay/x402.h — the x402 client, v1 and v2, as pure functions (no I/O, no clock, no loop) so the
 * engine's scheduler drives every network step itself:
 *
 *   402 answer --x4_x402_parse_challenge--> challenge --x4_x402_choose(policy)--> index
 *   --x4_x402_build_payment(keypair, blockhash)--> header + the record to commit BEFORE sending
 *   paid answer --x4_x402_read_settlement--> outcome (settled / failed / rejected / ...)
 *
 * Owns: the wire format of x402 as /work/shared/X402-NOTES.md describes it (v1 body challenge,
 * v2 PAYMENT-REQUIRED header; X-PAYMENT / PAYMENT-SIGNATURE; X-PAYMENT-RESPONSE /
 * PAYMENT-RESPONSE), the validation of everything a server sends (a hostile or malformed
 * challenge is a coded error with a reason, never a crash or an unbounded allocation) and the
 * spending rules applied to a requirement. The Solana transaction itself is pay/solana.h's
 * x4_sol_exact_build. See docs/x402-client.md.
 *
 * Cost: one base64 decode + one jansson parse of at most X4_X402_MAX_HEADER / X4_X402_MAX_BODY
 * bytes per challenge; a payment is one transaction build (two ATA derivations, one Ed25519
 * signature) and one JSON dump + base64; a settlement is one small decode. */
#ifndef X4_PAY_X402_H
#define X4_PAY_X402_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/httpc.h"
#include "pay/keypair.h"
#include "pay/solana.h"

#define X4_X402_MAX_HEADER (64 * 1024)   /* longest PAYMENT-REQUIRED / *-RESPONSE value accepted */
#define X4_X402_MAX_BODY (256 * 1024)    /* longest v1 challenge body accepted */
#define X4_X402_MAX_ACCEPTS 32           /* more requirements than this is hostile */
#define X4_X402_MAX_TIMEOUT_S 86400      /* maxTimeoutSeconds must be 1..this */
#define X4_X402_SCHEME_MAX 32
#define X4_X402_NETWORK_MAX 64
#define X4_X402_ADDR_MAX 128             /* payTo / asset of any chain (Solana's are <= 44) */
#define X4_X402_REASON_MAX 256

typedef enum {
    X4_X402_OK = 0,
    /* a challenge or a settlement we cannot read */
    X4_X402_E_NOT_402,        /* parse_challenge on a status other than 402 */
    X4_X402_E_NO_CHALLENGE,   /* a 402 with neither PAYMENT-REQUIRED nor a v1 JSON body */
    X4_X402_E_TOO_LARGE,      /* header, body or a field over its limit */
    X4_X402_E_BASE64,
    X4_X402_E_JSON,           /* not JSON, duplicate keys, a number jansson cannot hold */
    X4_X402_E_VERSION,        /* x402Version missing, not 1 or 2, or in the wrong place */
    X4_X402_E_FIELD,          /* a required field missing or of the wrong type / shape */
    X4_X402_E_AMOUNT,         /* not a canonical decimal string of digits, zero, > uint64 */
    X4_X402_E_ADDRESS,        /* a Solana key that is not base58 of 32 bytes */
    X4_X402_E_TIMEOUT,        /* maxTimeoutSeconds not an integer in 1..X4_X402_MAX_TIMEOUT_S */
    X4_X402_E_TOO_MANY,       /* more than X4_X402_MAX_ACCEPTS requirements */
    /* choosing: the first rule the best requirement breaks */
    X4_X402_E_NO_EXACT,       /* no requirement with scheme "exact" (or none at all) */
    X4_X402_E_NETWORK,        /* exact, but not on the configured network */
    X4_X402_E_ASSET,          /* on our network, but the asset is not an allowed mint */
    X4_X402_E_OVER_PRICE,     /* amount > the step's approved price */
    X4_X402_E_OVER_TX_CAP,    /* amount > the per-transaction cap */
    X4_X402_E_OVER_HOLD,      /* amount > the workflow's remaining hold */
    X4_X402_E_POLICY,         /* the policy itself is unusable (unknown NETWORK, bad mint) */
    /* building */
    X4_X402_E_BUILD,          /* solana.h refused the transaction (reason in text) */
    X4_X402_E_ARG,            /* a caller error (NULL, index out of range, no blockhash) */
    X4_X402_E_NOMEM,
    /* reading the paid answer (x4_x402_read_settlement's outcome says what to do) */
    X4_X402_E_REJECTED,       /* a 402 after paying; text = its `error` */
    X4_X402_E_SETTLE_FAILED,  /* success:false; text = errorReason */
    X4_X402_E_UNSETTLED,      /* no settlement header */
    X4_X402_E_MISMATCH        /* a settlement for another network / payer / amount */
} x4_x402_code;

typedef struct {
    x4_x402_code code;
    char text[X4_X402_REASON_MAX];  /* human-readable, names the field; never holds a secret */
} x4_x402_error;

const char *x4_x402_code_name(x4_x402_code c);  /* "bad_base64", "over_tx_cap", ... */

/* ---- networks ---- */
/* Maps a configured NETWORK (devnet | mainnet | mainnet-beta | testnet, a v1 name solana /
 * solana-devnet / solana-testnet, or a Solana CAIP-2 id) to its v1 name and CAIP-2 id (static
 * strings). 0, or -1 if unknown. */
int x4_x402_network_resolve(const char *config, const char **v1, const char **caip2);

/* ---- 1. the challenge ---- */
typedef struct {
    int index;                          /* position in accepts[] */
    char scheme[X4_X402_SCHEME_MAX + 1];
    char network[X4_X402_NETWORK_MAX + 1];
    bool solana;                        /* network is a Solana v1 name or CAIP-2 id (see below) */
    uint64_t amount;                    /* v2 amount / v1 maxAmountRequired (UINT64_MAX if a
                                         * non-Solana requirement's does not fit) */
    char pay_to[X4_X402_ADDR_MAX + 1];
    char asset[X4_X402_ADDR_MAX + 1];
    uint32_t max_timeout_seconds;
    /* Solana only (validated as 32-byte keys when present; fee_payer required for "exact") */
    x4_sol_pubkey pay_to_key, asset_key, fee_payer_key;
    bool has_fee_payer;
    char memo[X4_SOL_MEMO_MAX + 1];     /* extra.memo, "" if none */
    bool has_recent_blockhash;          /* extra.recentBlockhash (+ extra.lastValidBlockHeight) */
    uint8_t recent_blockhash[32];
    uint64_t recent_last_valid;         /* 0 = not given */
    const json_t *raw;                  /* the requirement exactly as received (owned by the
                                         * challenge): echoed as v2 `accepted` */
} x4_x402_requirement;

typedef struct {
    int version;                        /* 1 or 2 */
    char *error;                        /* the challenge's `error`, or NULL */
    char *resource_url;                 /* v2 resource.url; v1: accepts[0].resource (or NULL) */
    json_t *root;                       /* the decoded challenge (owns every raw pointer) */
    size_t naccepts;
    x4_x402_requirement accepts[X4_X402_MAX_ACCEPTS];
} x4_x402_challenge;

/* A 402 answer: `payment_required` is the PAYMENT-REQUIRED header value or NULL (v2 when
 * present: the body is then ignored), else `body` must be a v1 challenge. Every field is
 * validated (see docs/x402-client.md). 0 with *out (heap: x4_x402_challenge_free), or -1 with
 * *err. The header/body are not retained. */
int x4_x402_parse_challenge(long status, const char *payment_required, const char *body,
                            size_t body_len, x4_x402_challenge **out, x4_x402_error *err);
/* Same, reading status, PAYMENT-REQUIRED and the body from an httpc response. */
int x4_x402_parse_challenge_resp(const x4_httpc_resp *resp, x4_x402_challenge **out,
                                 x4_x402_error *err);
void x4_x402_challenge_free(x4_x402_challenge *c);

/* ---- 2. the choice ---- */
typedef struct {
    const char *network;             /* config NETWORK (see x4_x402_network_resolve) */
    const char *const *assets;       /* allowed mints, base58 */
    size_t nassets;
    uint64_t approved_price;         /* the step's approved price, atomic units */
    uint64_t per_tx_cap;             /* per-transaction cap */
    uint64_t remaining_hold;         /* what is left of the workflow's hold */
} x4_x402_policy;

/* The first requirement with scheme "exact", on the policy's network (its v1 name or CAIP-2
 * id), an allowed asset and amount <= min(approved price, per-tx cap, remaining hold): 0 and
 * *index into c->accepts. Otherwise -1 and *err names the first rule broken by the requirement
 * that got furthest through them (order: exact, network, asset, price, per-tx cap, hold; the
 * first such requirement on ties), e.g. X4_X402_E_OVER_TX_CAP "amount 5000000 is over the
 * per-transaction cap 1000000". */
int x4_x402_choose(const x4_x402_challenge *c, const x4_x402_policy *p, size_t *index,
                   x4_x402_error *err);

/* ---- 3. the payment ---- */
#define X4_X402_DECIMALS_ZERO (-1)
typedef struct {
    const x4_keypair *payer;                /* the escrow wallet (signs as token authority) */
    const x4_sol_pubkey *token_program;     /* NULL = Token; or x4_sol_token2022_program */
    int decimals;                           /* the mint's decimals; 0 = the default 6, so a
                                             * zeroed struct is right for USDC; a mint with 0
                                             * decimals: X4_X402_DECIMALS_ZERO */
    const uint8_t *blockhash;               /* 32 bytes from getLatestBlockhash; may be NULL
                                             * only if the requirement carries recentBlockhash */
    uint64_t last_valid_block_height;       /* getLatestBlockhash's, for `blockhash` */
    uint64_t cu_price;                      /* micro-lamports/CU; 0 = X4_SOL_EXACT_CU_PRICE
                                             * with our memo nonce, else random 1..1000 so
                                             * equal payments never share a signature */
} x4_x402_build_in;

typedef struct {
    int version;                            /* the challenge's: 1 or 2 */
    const char *header_name;                /* "X-PAYMENT" (v1) or "PAYMENT-SIGNATURE" (v2) */
    char *header_value;                     /* heap: base64 of the PaymentPayload JSON */
    /* the record to commit before the header is sent */
    char memo[X4_SOL_MEMO_MAX + 1];         /* the memo nonce ("" for v1: no memo) */
    char signature[X4_SOL_B58_SIG_MAX];     /* the payer's own signature, base58 */
    char blockhash[X4_SOL_B58_KEY_MAX];     /* base58 */
    uint64_t last_valid_block_height;       /* 0 = unknown (a server blockhash without
                                             * lastValidBlockHeight: ask isBlockhashValid) */
    bool blockhash_from_server;             /* extra.recentBlockhash was used */
    uint64_t amount;
    char asset[X4_SOL_B58_KEY_MAX];
    char pay_to[X4_SOL_B58_KEY_MAX];
    char network[X4_X402_NETWORK_MAX + 1];  /* as the requirement spelt it */
    char payer[X4_SOL_B58_KEY_MAX];         /* our address (the settlement's `payer`) */
    char source_ata[X4_SOL_B58_KEY_MAX];    /* where to look for it (getSignaturesForAddress) */
    char destination_ata[X4_SOL_B58_KEY_MAX];
} x4_x402_payment;

/* Builds the exact-scheme transaction for c->accepts[index] (v2: with a Memo, extra.memo or a
 * fresh random nonce; v1: exactly 3 instructions, no memo), partially signed by in->payer
 * (fee-payer slot zero), and wraps it as the version's header: v1 X-PAYMENT base64({x402Version:1,
 * scheme, network, payload:{transaction}}), v2 PAYMENT-SIGNATURE base64({x402Version:2, resource,
 * accepted: the requirement as received, payload:{transaction}, extensions?}). 0 or -1 with
 * *err (nothing to free then). Does not re-check the policy: call x4_x402_choose first. */
int x4_x402_build_payment(const x4_x402_challenge *c, size_t index, const x4_x402_build_in *in,
                          x4_x402_payment *out, x4_x402_error *err);
void x4_x402_payment_free(x4_x402_payment *p);

/* ---- 4. the settlement ---- */
typedef enum {
    X4_X402_SETTLED = 0,         /* success:true with a transaction id: paid */
    X4_X402_SETTLE_FAILED,       /* a settlement header with success:false (not a 402) */
    X4_X402_REJECTED,            /* a 402 after paying: fail the step, pay nothing more */
    X4_X402_UNSETTLED,           /* an answer without a settlement header (e.g. a 500 after
                                  * verification): not settled; never pay this step again
                                  * without reconciling the signed payment on chain */
    X4_X402_SETTLEMENT_INVALID   /* a settlement header we cannot read or that does not match
                                  * what we sent: reconcile on chain */
} x4_x402_outcome;

const char *x4_x402_outcome_name(x4_x402_outcome o);

typedef struct {
    bool success;
    char transaction[X4_SOL_B58_SIG_MAX];   /* the fee payer's signature = the tx id ("" if none) */
    char network[X4_X402_NETWORK_MAX + 1];
    char payer[X4_SOL_B58_KEY_MAX];         /* "" if absent */
    bool has_amount;
    uint64_t amount;
    char error_reason[X4_X402_REASON_MAX];  /* errorReason, or a second 402's `error` */
    char error_message[X4_X402_REASON_MAX]; /* errorMessage (truncated) */
} x4_x402_settlement;

/* Decodes one X-PAYMENT-RESPONSE / PAYMENT-RESPONSE value (base64 JSON SettleResponse).
 * 0, or -1 with *err. */
int x4_x402_settle_response_parse(const char *b64, x4_x402_settlement *out, x4_x402_error *err);

/* Reads the answer to a paid request. `sent` (may be NULL) is the payment we sent: a settled
 * answer must then name its network and, when present, our payer and amount. `version` is the
 * challenge's (sent->version wins when sent is given). Always returns an outcome and fills *out;
 * *err carries the reason for every outcome but SETTLED. */
x4_x402_outcome x4_x402_read_settlement(const x4_x402_payment *sent, int version, long status,
                                        const char *settle_header, const char *payment_required,
                                        const char *body, size_t body_len,
                                        x4_x402_settlement *out, x4_x402_error *err);
x4_x402_outcome x4_x402_read_settlement_resp(const x4_x402_payment *sent, int version,
                                             const x4_httpc_resp *resp,
                                             x4_x402_settlement *out, x4_x402_error *err);

#endif
