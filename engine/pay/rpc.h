/* pay/rpc.h — the asynchronous Solana JSON-RPC client (one x4_rpc per cluster URL).
 *
 * Owns: request building (JSON-RPC 2.0, increasing ids), the HTTP round trip on exec/httpc
 * (curl multi on the libuv loop: nothing here ever blocks) and defensive parsing of the
 * node's answers into typed result structs. The node is untrusted: every field is type- and
 * range-checked, keys/hashes/signatures are base58-validated, a wrong type, a missing field or
 * a response whose id is not ours is an X4_RPC_E_PROTOCOL with a reason naming the field —
 * never a crash and never a silently defaulted value. Integers above int64 (the node's
 * rentEpoch u64::MAX) are handled exactly.
 *
 * Contract of every method: it returns a call handle when the request was started — its
 * callback then runs exactly once, from the loop (or synchronously inside x4_rpc_cancel /
 * x4_rpc_free with X4_RPC_E_CANCELLED); or NULL when it could not start (bad argument,
 * allocation failure): the callback is then never called and x4_rpc_last_error() says why.
 * A result and everything it points to (strings, arrays, raw JSON) is owned by the client and
 * valid only during the callback; copy what you keep (json_incref the raw object).
 *
 * Commitment: the client's commitment (processed|confirmed|finalized, default confirmed) is
 * sent to every method that accepts one; getTransaction and getSignaturesForAddress do not
 * accept "processed" and get "confirmed" instead.
 *
 * Cost: one HTTP POST per call; parsing is linear in the response (capped, 8 MiB default). */
#ifndef X4_PAY_RPC_H
#define X4_PAY_RPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/httpc.h"
#include "pay/solana.h"

#define X4_RPC_DEFAULT_MAX_RESPONSE (8u << 20)
#define X4_RPC_MAX_SIGS 256 /* getSignatureStatuses: the node's own limit per call */

/* Solana's JSON-RPC error codes callers look at. */
#define X4_RPC_CODE_PREFLIGHT_FAILED (-32002)
#define X4_RPC_CODE_SIG_VERIFY_FAILED (-32003)
#define X4_RPC_CODE_NODE_BEHIND (-32005)
#define X4_RPC_CODE_UNSUPPORTED_TX_VERSION (-32015)
#define X4_RPC_CODE_INVALID_PARAMS (-32602)

typedef struct x4_rpc x4_rpc;
typedef struct x4_rpc_call x4_rpc_call;

typedef enum {
    X4_RPC_OK = 0,
    X4_RPC_E_RPC,       /* the node answered a JSON-RPC error: code, message, data_json */
    X4_RPC_E_TRANSPORT, /* connect refused, reset, DNS ... */
    X4_RPC_E_TIMEOUT,
    X4_RPC_E_HTTP,      /* a non-2xx status without a JSON-RPC error body (http_status) */
    X4_RPC_E_TOO_LARGE, /* response over the cap */
    X4_RPC_E_PROTOCOL,  /* malformed JSON, wrong types, invalid values, id mismatch */
    X4_RPC_E_CANCELLED,
    X4_RPC_E_INTERNAL   /* allocation failure */
} x4_rpc_status;

/* The first member of every result. */
typedef struct {
    x4_rpc_status status;
    long http_status;        /* 0 if no HTTP response */
    long long code;          /* JSON-RPC error code when status == X4_RPC_E_RPC, else 0 */
    char message[512];       /* the node's error message, or why the call failed; "" when OK */
    const char *data_json;   /* error.data as compact JSON, or NULL */
    uint64_t context_slot;   /* result.context.slot where the method has one, else 0 */
    double total_ms;
} x4_rpc_result;

const char *x4_rpc_status_name(x4_rpc_status s);
/* true for transport errors, timeouts, HTTP 429 and 5xx, and RPC -32005 (node behind). */
bool x4_rpc_error_is_retryable(const x4_rpc_result *r);
/* A transaction with a blockhash whose lastValidBlockHeight is `last_valid` can no longer land
 * once the block height passes it. */
static inline bool x4_rpc_blockhash_expired(uint64_t last_valid, uint64_t block_height) {
    return block_height > last_valid;
}

/* NULL on a bad argument (url empty, unknown commitment; NULL commitment = "confirmed",
 * timeout_ms <= 0 = 30 s) or allocation failure. h must outlive the client. */
x4_rpc *x4_rpc_new(x4_httpc *h, const char *url, const char *commitment, long timeout_ms);
void x4_rpc_set_max_response(x4_rpc *rpc, size_t bytes);
const char *x4_rpc_commitment(const x4_rpc *rpc);
/* Why the last method call returned NULL. */
const char *x4_rpc_last_error(const x4_rpc *rpc);
size_t x4_rpc_inflight(const x4_rpc *rpc);
/* Aborts one call; its callback runs now with X4_RPC_E_CANCELLED. */
void x4_rpc_cancel(x4_rpc_call *call);
/* Cancels everything in flight (callbacks run with X4_RPC_E_CANCELLED), then frees. */
void x4_rpc_free(x4_rpc *rpc);

/* ---- getLatestBlockhash ---- */
typedef struct {
    x4_rpc_result r;
    char blockhash[X4_SOL_B58_KEY_MAX]; /* validated: 32 bytes of base58 */
    uint8_t blockhash_bytes[32];
    uint64_t last_valid_block_height;
    uint64_t slot;                      /* context slot */
} x4_rpc_blockhash;
typedef void (*x4_rpc_blockhash_cb)(const x4_rpc_blockhash *res, void *ud);
x4_rpc_call *x4_rpc_get_latest_blockhash(x4_rpc *rpc, x4_rpc_blockhash_cb cb, void *ud);

/* ---- getBlockHeight ---- */
typedef struct {
    x4_rpc_result r;
    uint64_t height;
} x4_rpc_block_height;
typedef void (*x4_rpc_block_height_cb)(const x4_rpc_block_height *res, void *ud);
x4_rpc_call *x4_rpc_get_block_height(x4_rpc *rpc, x4_rpc_block_height_cb cb, void *ud);

/* ---- getAccountInfo (base64 encoding) ---- */
typedef struct {
    x4_rpc_result r;
    bool exists;                    /* false: value null, the rest zero */
    uint64_t lamports;
    char owner[X4_SOL_B58_KEY_MAX];
    x4_sol_pubkey owner_key;
    bool executable;
    const uint8_t *data;            /* decoded from base64 (NULL when empty) */
    size_t data_len;
    uint64_t space;                 /* = data_len (checked when the node gives it) */
} x4_rpc_account;
typedef void (*x4_rpc_account_cb)(const x4_rpc_account *res, void *ud);
x4_rpc_call *x4_rpc_get_account_info(x4_rpc *rpc, const char *pubkey, x4_rpc_account_cb cb, void *ud);

/* ---- getBalance ---- */
typedef struct {
    x4_rpc_result r;
    uint64_t lamports;
} x4_rpc_balance;
typedef void (*x4_rpc_balance_cb)(const x4_rpc_balance *res, void *ud);
x4_rpc_call *x4_rpc_get_balance(x4_rpc *rpc, const char *pubkey, x4_rpc_balance_cb cb, void *ud);

/* ---- getTokenAccountBalance ---- */
typedef struct {
    x4_rpc_result r;
    uint64_t amount;  /* parsed exactly from the decimal string */
    uint8_t decimals;
} x4_rpc_token_balance;
typedef void (*x4_rpc_token_balance_cb)(const x4_rpc_token_balance *res, void *ud);
x4_rpc_call *x4_rpc_get_token_account_balance(x4_rpc *rpc, const char *pubkey, x4_rpc_token_balance_cb cb,
                                              void *ud);

/* ---- sendTransaction (base64) ---- */
typedef struct {
    x4_rpc_result r;
    char signature[X4_SOL_B58_SIG_MAX]; /* OK: validated base58 of 64 bytes */
    /* r.code == -32002 (preflight failure): the simulation's err (JSON) and logs, if given */
    const char *preflight_err;
    const char *const *preflight_logs;
    size_t npreflight_logs;
} x4_rpc_send;
typedef void (*x4_rpc_send_cb)(const x4_rpc_send *res, void *ud);
/* preflight_commitment NULL = the client's commitment. */
x4_rpc_call *x4_rpc_send_transaction(x4_rpc *rpc, const char *tx_base64, bool skip_preflight,
                                     const char *preflight_commitment, x4_rpc_send_cb cb, void *ud);

/* ---- getSignatureStatuses ---- */
typedef struct {
    bool found;                     /* false: the node does not know it (null) */
    uint64_t slot;
    bool has_confirmations;         /* confirmations is null once rooted (finalized) */
    uint64_t confirmations;
    const char *err;                /* JSON text of the transaction error, NULL = succeeded */
    char confirmation_status[16];   /* processed|confirmed|finalized, "" if the node omits it */
} x4_rpc_sig_status;
typedef struct {
    x4_rpc_result r;
    const x4_rpc_sig_status *statuses; /* one per requested signature, same order */
    size_t n;
} x4_rpc_sig_statuses;
typedef void (*x4_rpc_sig_statuses_cb)(const x4_rpc_sig_statuses *res, void *ud);
/* 1..X4_RPC_MAX_SIGS signatures, each validated base58 of 64 bytes. */
x4_rpc_call *x4_rpc_get_signature_statuses(x4_rpc *rpc, const char *const *sigs, size_t n,
                                           bool search_transaction_history, x4_rpc_sig_statuses_cb cb,
                                           void *ud);

/* ---- getTransaction (encoding json, maxSupportedTransactionVersion 0) ---- */
typedef struct {
    uint32_t account_index;
    char mint[X4_SOL_B58_KEY_MAX];
    char owner[X4_SOL_B58_KEY_MAX];      /* "" if the node omits it */
    char program_id[X4_SOL_B58_KEY_MAX]; /* "" if the node omits it */
    uint64_t amount;                     /* uiTokenAmount.amount, exact */
    uint8_t decimals;
} x4_rpc_tx_token_balance;

typedef struct {
    const char *text;  /* the memo bytes, NUL-terminated (NULL if it could not be decoded) */
    size_t len;
    bool inner;        /* found among the inner (CPI) instructions */
} x4_rpc_memo;

typedef struct {
    x4_rpc_result r;
    bool found;                         /* false: null (unknown or not yet at this commitment) */
    uint64_t slot;
    bool has_block_time;
    int64_t block_time;
    int version;                        /* X4_SOL_LEGACY or 0 */
    const char *err;                    /* meta.err as JSON, NULL = succeeded */
    uint64_t fee;
    const char (*account_keys)[X4_SOL_B58_KEY_MAX]; /* static keys, then loaded writable, readonly */
    size_t naccount_keys, nstatic_keys;
    const char (*signatures)[X4_SOL_B58_SIG_MAX];   /* signatures[0] is the transaction id */
    size_t nsignatures;
    const x4_rpc_tx_token_balance *pre_token, *post_token;
    size_t npre_token, npost_token;
    const char *const *logs;
    size_t nlogs;
    const x4_rpc_memo *memos;           /* Memo program (v2, and v1) instructions, in order */
    size_t nmemos;
    json_t *raw;                        /* the "result" object; borrowed, json_incref to keep */
} x4_rpc_tx;
typedef void (*x4_rpc_tx_cb)(const x4_rpc_tx *res, void *ud);
x4_rpc_call *x4_rpc_get_transaction(x4_rpc *rpc, const char *signature, x4_rpc_tx_cb cb, void *ud);
/* Token balance of account `index` in pre/post (0 if absent, as the chain means it). */
uint64_t x4_rpc_tx_token_amount(const x4_rpc_tx_token_balance *b, size_t n, uint32_t index);

/* ---- getSignaturesForAddress ---- */
typedef struct {
    unsigned limit;      /* 0 = the node's default (1000); at most 1000 */
    const char *before;  /* signatures, or NULL */
    const char *until;
} x4_rpc_sigs_opts;

typedef struct {
    char signature[X4_SOL_B58_SIG_MAX];
    uint64_t slot;
    const char *err;                /* JSON, NULL = succeeded */
    const char *memo;               /* as the node gives it ("[len] text; [len] text"), or NULL */
    const char *const *memo_texts;  /* parsed: the text of each memo */
    size_t nmemo_texts;
    bool has_block_time;
    int64_t block_time;
    char confirmation_status[16];   /* "" if null */
} x4_rpc_sig_info;
typedef struct {
    x4_rpc_result r;
    const x4_rpc_sig_info *items;   /* newest first, as the node orders them */
    size_t n;
} x4_rpc_sigs;
typedef void (*x4_rpc_sigs_cb)(const x4_rpc_sigs *res, void *ud);
x4_rpc_call *x4_rpc_get_signatures_for_address(x4_rpc *rpc, const char *address, const x4_rpc_sigs_opts *opts,
                                               x4_rpc_sigs_cb cb, void *ud);

/* ---- any other method (getSlot, simulateTransaction, test-only methods ...) ---- */
typedef struct {
    x4_rpc_result r;
    json_t *result;  /* borrowed; json_incref to keep */
} x4_rpc_raw;
typedef void (*x4_rpc_raw_cb)(const x4_rpc_raw *res, void *ud);
/* params: a JSON array (borrowed) or NULL for []. */
x4_rpc_call *x4_rpc_request(x4_rpc *rpc, const char *method, json_t *params, x4_rpc_raw_cb cb, void *ud);

#endif
