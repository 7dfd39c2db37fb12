/* pay/solana.h — Solana in C on libsodium: base58, public keys, the off-curve check,
 * program-derived and associated-token addresses, the instructions x402 needs (System,
 * ComputeBudget, Token / Token-2022 TransferChecked, Memo), legacy and v0 message compilation,
 * the wire transaction (build, parse, partial signing, base64) and the x402 "exact" payment.
 *
 * Shape: instructions are plain value structs with inline storage (no allocation, no cleanup).
 * A transaction (x4_sol_tx) is one heap object holding its wire bytes; the decoded view
 * (header, keys, compiled instructions) points into those bytes, so "compile" is "serialize,
 * then parse": the builder and the chain-data reader share one parser, and every transaction we
 * emit has been re-read by it. Account order follows Solana's CompiledKeys (fee payer, writable
 * signers, readonly signers, writable non-signers, readonly non-signers; first appearance order
 * inside each group, a program id inserted just before its instruction's accounts) — the order
 * @solana/web3.js's TransactionMessage produces, byte for byte (tests/vectors/solana/).
 *
 * Cost: everything is linear in the transaction size (<= 1232 bytes) except base58 (quadratic
 * in the string length, ~1 µs for a key) and find_program_address (one SHA-256 and one field
 * exponentiation per bump tried; ~2 tries on average, ~30 µs each). */
#ifndef X4_PAY_SOLANA_H
#define X4_PAY_SOLANA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/util.h"
#include "pay/keypair.h"

#define X4_SOL_KEY_LEN 32
#define X4_SOL_SIG_LEN 64
#define X4_SOL_B58_KEY_MAX 45  /* 44 chars + NUL */
#define X4_SOL_B58_SIG_MAX 89  /* 88 chars + NUL */
#define X4_SOL_TX_MAX 1232     /* the cluster's packet limit for one wire transaction */
#define X4_SOL_IX_MAX_ACCOUNTS 16
#define X4_SOL_IX_MAX_DATA 1024
#define X4_SOL_MSG_MAX_KEYS 64    /* static keys; 1232 bytes hold at most 38 */
#define X4_SOL_MSG_MAX_IX 64
#define X4_SOL_MSG_MAX_LOOKUPS 16
#define X4_SOL_MAX_SEEDS 16
#define X4_SOL_MAX_SEED_LEN 32
#define X4_SOL_MEMO_MAX 256       /* what x402 facilitators accept */
#define X4_SOL_LEGACY (-1)        /* message version for legacy messages */

typedef struct { uint8_t b[X4_SOL_KEY_LEN]; } x4_sol_pubkey;

extern const x4_sol_pubkey x4_sol_system_program;          /* 11111111111111111111111111111111 */
extern const x4_sol_pubkey x4_sol_token_program;           /* Tokenkeg... */
extern const x4_sol_pubkey x4_sol_token2022_program;       /* Tokenz... */
extern const x4_sol_pubkey x4_sol_ata_program;             /* ATokenGP... */
extern const x4_sol_pubkey x4_sol_compute_budget_program;  /* ComputeBudget111... */
extern const x4_sol_pubkey x4_sol_memo_program;            /* MemoSq4g... (memo v2) */

/* ---- base58 (Bitcoin alphabet; each leading zero byte is one leading '1') ---- */
/* Writes the NUL-terminated encoding; -1 if out is too small. */
int x4_b58_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
/* Decodes into out[0..outcap), *outlen = bytes written; -1 on a character outside the alphabet
 * or if the value does not fit. */
int x4_b58_decode(const char *s, uint8_t *out, size_t outcap, size_t *outlen);
/* Strict: exactly `want` bytes or -1 (e.g. 32 for keys and hashes, 64 for signatures). */
int x4_b58_decode_exact(const char *s, uint8_t *out, size_t want);
int x4_sol_pubkey_from_b58(const char *s, x4_sol_pubkey *out);
void x4_sol_pubkey_to_b58(const x4_sol_pubkey *k, char out[X4_SOL_B58_KEY_MAX]);
bool x4_sol_pubkey_eq(const x4_sol_pubkey *a, const x4_sol_pubkey *b);

/* ---- curve, PDA, ATA ---- */
/* 1 if the 32 bytes decompress to a point of edwards25519 (Solana's is_on_curve: any y whose
 * x^2 = (y^2-1)/(d*y^2+1) is a square, non-canonical y and torsion points included), else 0.
 * NOT crypto_core_ed25519_is_valid_point, which also rejects small-order, non-canonical and
 * out-of-subgroup points (7/8 of the curve) and so would accept addresses Solana refuses. */
int x4_sol_is_on_curve(const uint8_t p[32]);

typedef struct { const void *p; size_t n; } x4_sol_seed;
/* sha256(seeds || program || "ProgramDerivedAddress"). Returns 0, 1 if the result is on the
 * curve (not a valid PDA: try another bump), -1 if the seeds are invalid (> 16, or one > 32). */
int x4_sol_create_program_address(const x4_sol_seed *seeds, size_t nseeds,
                                  const x4_sol_pubkey *program, x4_sol_pubkey *out);
/* Tries bumps 255 down to 1 (as Solana and web3.js do). 0, or -1 (invalid seeds / no bump). */
int x4_sol_find_program_address(const x4_sol_seed *seeds, size_t nseeds,
                                const x4_sol_pubkey *program, x4_sol_pubkey *out, uint8_t *bump);
/* The associated token account of (owner, mint) under token_program (Token or Token-2022). */
int x4_sol_ata(const x4_sol_pubkey *owner, const x4_sol_pubkey *mint,
               const x4_sol_pubkey *token_program, x4_sol_pubkey *out, uint8_t *bump);

/* ---- instructions ---- */
typedef struct {
    x4_sol_pubkey pubkey;
    bool is_signer, is_writable;
} x4_sol_meta;

typedef struct {
    x4_sol_pubkey program_id;
    x4_sol_meta accounts[X4_SOL_IX_MAX_ACCOUNTS];
    size_t naccounts;
    uint8_t data[X4_SOL_IX_MAX_DATA];
    size_t data_len;
} x4_sol_ix;

void x4_sol_ix_system_transfer(x4_sol_ix *ix, const x4_sol_pubkey *from, const x4_sol_pubkey *to,
                               uint64_t lamports);
void x4_sol_ix_set_cu_limit(x4_sol_ix *ix, uint32_t units);
void x4_sol_ix_set_cu_price(x4_sol_ix *ix, uint64_t micro_lamports);
/* -1 if token_program is neither Token nor Token-2022. */
int x4_sol_ix_transfer_checked(x4_sol_ix *ix, const x4_sol_pubkey *token_program,
                               const x4_sol_pubkey *source, const x4_sol_pubkey *mint,
                               const x4_sol_pubkey *destination, const x4_sol_pubkey *authority,
                               uint64_t amount, uint8_t decimals);
/* Memo program v2: data = the memo bytes, each optional signer a readonly signer account.
 * -1 if the memo is empty, longer than X4_SOL_MEMO_MAX or there are too many signers. */
int x4_sol_ix_memo(x4_sol_ix *ix, const uint8_t *memo, size_t len, const x4_sol_pubkey *signers,
                   size_t nsigners);

/* ---- messages and transactions ---- */
typedef struct {
    uint8_t program_index;
    const uint8_t *accounts;  /* indices into the message's keys (into tx->wire) */
    size_t naccounts;
    const uint8_t *data;      /* into tx->wire */
    size_t data_len;
} x4_sol_cix;

typedef struct {
    x4_sol_pubkey table;
    const uint8_t *writable, *readonly;  /* into tx->wire */
    size_t nwritable, nreadonly;
} x4_sol_lookup;

typedef struct {
    int version;  /* X4_SOL_LEGACY or 0 */
    uint8_t num_required_signatures, num_readonly_signed, num_readonly_unsigned;
    x4_sol_pubkey keys[X4_SOL_MSG_MAX_KEYS];
    size_t nkeys;
    uint8_t blockhash[32];
    x4_sol_cix ix[X4_SOL_MSG_MAX_IX];
    size_t nix;
    x4_sol_lookup lookups[X4_SOL_MSG_MAX_LOOKUPS];
    size_t nlookups;
} x4_sol_message;

typedef struct {
    uint8_t wire[X4_SOL_TX_MAX];  /* compact-u16 n, n * 64-byte signatures, message */
    size_t wire_len;
    uint8_t *sigs;                /* into wire: nsigs * 64 bytes, all-zero = not signed yet */
    size_t nsigs;
    const uint8_t *msg;           /* into wire: the signed message bytes */
    size_t msg_len;
    x4_sol_message m;
} x4_sol_tx;

/* Compiles (fee payer, instructions, blockhash) into an unsigned transaction (version
 * X4_SOL_LEGACY or 0; v0 has no address-table lookups). *out is heap: x4_sol_tx_free. */
int x4_sol_tx_compile(int version, const x4_sol_pubkey *fee_payer, const x4_sol_ix *ixs,
                      size_t nix, const uint8_t blockhash[32], x4_sol_tx **out, char *err,
                      size_t errlen);
/* Strict parser of a wire transaction (canonical compact-u16, consistent header, indices in
 * range, no trailing bytes, signature count = required signatures). */
int x4_sol_tx_parse(const uint8_t *wire, size_t len, x4_sol_tx **out, char *err, size_t errlen);
int x4_sol_tx_parse_base64(const char *b64, x4_sol_tx **out, char *err, size_t errlen);
void x4_sol_tx_free(x4_sol_tx *tx);
/* Index of `key` among the required signers, or -1. */
int x4_sol_tx_signer_index(const x4_sol_tx *tx, const x4_sol_pubkey *key);
/* Signs the message with kp into kp's signature slot; -1 if kp is not a required signer. */
int x4_sol_tx_sign_partial(x4_sol_tx *tx, const x4_keypair *kp, char *err, size_t errlen);
/* 1 if slot i holds a valid signature of the message by keys[i], 0 if not (or empty). */
int x4_sol_tx_verify_slot(const x4_sol_tx *tx, size_t i);
/* base64 (standard, padded) of the wire bytes, appended to out. */
int x4_sol_tx_to_base64(const x4_sol_tx *tx, x4_buf *out);

/* Little helpers used by the x402 client and tests. */
int x4_sol_blockhash_from_b58(const char *s, uint8_t out[32]);
void x4_sol_signature_to_b58(const uint8_t sig[64], char out[X4_SOL_B58_SIG_MAX]);

/* ---- the x402 "exact" payment (see /work/shared/X402-NOTES.md and docs/solana.md) ---- */
typedef struct {
    x4_sol_pubkey fee_payer;      /* extra.feePayer: the facilitator signs this slot later */
    x4_sol_pubkey mint;           /* requirement.asset */
    x4_sol_pubkey token_program;  /* Token or Token-2022: the mint account's owner */
    uint8_t decimals;
    x4_sol_pubkey pay_to;         /* the owner; its ATA must exist already */
    uint64_t amount;              /* atomic units */
    const uint8_t *memo;          /* extra.memo, or NULL: a fresh 16-byte hex nonce is used */
    size_t memo_len;
    bool omit_memo;               /* x402 1.2.0 (v1) facilitators want exactly 3 instructions */
    uint32_t cu_limit;            /* 0 = X4_SOL_EXACT_CU_LIMIT */
    uint64_t cu_price;            /* micro-lamports per CU */
    uint8_t blockhash[32];        /* extra.recentBlockhash or getLatestBlockhash */
} x4_sol_exact_params;

#define X4_SOL_EXACT_CU_LIMIT 20000  /* @x402/svm's default */
#define X4_SOL_EXACT_CU_PRICE 1

typedef struct {
    char *tx_base64;                        /* heap; the payload's "transaction" */
    char signature[X4_SOL_B58_SIG_MAX];     /* the payer's own signature, base58 */
    char memo[X4_SOL_MEMO_MAX + 1];         /* the memo used (the nonce when generated) */
    x4_sol_pubkey source_ata, destination_ata;
} x4_sol_exact_payment;

/* Builds the v0 transaction [SetComputeUnitLimit, SetComputeUnitPrice, TransferChecked(payer
 * ATA -> pay_to ATA, authority payer), Memo], signed by the payer only (fee-payer slot zero).
 * With omit_memo the Memo is left out and out->memo is "" (the payment is then known only by
 * its signature). Refuses a fee payer equal to the payer, a zero amount, and memos that are
 * not 1..256 bytes of UTF-8 without NUL. */
int x4_sol_exact_build(const x4_keypair *payer, const x4_sol_exact_params *p,
                       x4_sol_exact_payment *out, char *err, size_t errlen);
void x4_sol_exact_payment_free(x4_sol_exact_payment *pay);

/* `x402r keys escrow-new`: prints "ESCROW_KEYPAIR=<base64>\nAddress: <base58>\n". 0 or -1. */
int x4_solana_cli_escrow_new(FILE *out);

#endif
