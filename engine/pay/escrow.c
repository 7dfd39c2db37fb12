/* pay/escrow.c — see escrow.h. */
#include "pay/escrow.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int x4_escrow_open(x4_engine *e, char *err, size_t errlen) {
    x4_escrow *x = calloc(1, sizeof *x);
    char why[256];
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->escrow = x;
    if (x4_sol_pubkey_from_b58(e->cfg.escrow_asset, &x->mint) < 0) {
        snprintf(err, errlen, "ESCROW_ASSET: not a base58 public key");
        return -1;
    }
    const char *tp = getenv("ESCROW_TOKEN_PROGRAM");
    x->token_program = (tp && !strcmp(tp, "token2022")) ? x4_sol_token2022_program : x4_sol_token_program;
    if (e->cfg.escrow_keypair) {
        int rc = x4_keypair_load_base64(e->cfg.escrow_keypair, &x->kp, why, sizeof why);
        sodium_memzero(e->cfg.escrow_keypair, strlen(e->cfg.escrow_keypair));
        free(e->cfg.escrow_keypair);
        e->cfg.escrow_keypair = NULL;
        if (rc < 0) {
            snprintf(err, errlen, "ESCROW_KEYPAIR: %s", why);
            return -1;
        }
        uint8_t pk[32];
        x4_keypair_pubkey(x->kp, pk);
        memcpy(x->pubkey.b, pk, 32);
        x4_sol_pubkey_to_b58(&x->pubkey, x->address);
        uint8_t bump;
        if (x4_sol_ata(&x->pubkey, &x->mint, &x->token_program, &x->token_account, &bump) < 0) {
            snprintf(err, errlen, "cannot derive the escrow's token account");
            return -1;
        }
        x4_sol_pubkey_to_b58(&x->token_account, x->token_account_b58);
        x4_info("escrow", "escrow wallet %s, token account %s", x->address, x->token_account_b58);
    }
    /* Whatever happens next (fork of the private servers included), no copy of the secret
     * stays in the environment. */
    char *env = getenv("ESCROW_KEYPAIR");
    if (env) sodium_memzero(env, strlen(env));
    unsetenv("ESCROW_KEYPAIR");
    return 0;
}

void x4_escrow_close(x4_engine *e) {
    if (!e->escrow) return;
    x4_keypair_free(e->escrow->kp);
    free(e->escrow);
    e->escrow = NULL;
}
