/* pay/escrow.h — the engine's escrow wallet: its keypair (libsodium secure memory, loaded once
 * from ESCROW_KEYPAIR, which is then wiped from the process environment so no child process
 * inherits it), its address and its associated token account for ESCROW_ASSET. The secret never
 * leaves pay/keypair.c: callers get the public key and a signing function, nothing else. */
#ifndef X4_PAY_ESCROW_H
#define X4_PAY_ESCROW_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "pay/keypair.h"
#include "pay/solana.h"

typedef struct x4_escrow {
    x4_keypair *kp;                     /* NULL when ESCROW_KEYPAIR is unset */
    x4_sol_pubkey pubkey;
    x4_sol_pubkey mint;
    x4_sol_pubkey token_program;        /* Token (Token-2022 when ESCROW_TOKEN_PROGRAM=token2022) */
    x4_sol_pubkey token_account;        /* ATA(pubkey, mint) */
    char address[X4_SOL_B58_KEY_MAX];
    char token_account_b58[X4_SOL_B58_KEY_MAX];
} x4_escrow;

/* Start-up: loads the keypair (if configured) and wipes the configuration's copy and the
 * environment variable. -1 with err on a malformed key or mint. */
int x4_escrow_open(x4_engine *e, char *err, size_t errlen);
void x4_escrow_close(x4_engine *e);

#endif
