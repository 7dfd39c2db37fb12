/* pay/escrow_chain.c — the escrow's work on the chain: verifying deposits and sending
 * withdrawals (the HTTP side is http/escrow_api.c).
 *
 * Deposit: the transaction must be found at the configured commitment, without error, and must
 * raise the escrow's token account balance (for ESCROW_ASSET) while lowering a token account
 * owned by the user's registered wallet by at least as much. Credited once per signature, for
 * the amount the chain shows; a client `amount` that disagrees is a 400.
 *
 * Withdrawal: debited first (one transaction), then TransferChecked from the escrow's token
 * account to the registered wallet's (created idempotently if missing) with a memo naming the
 * withdrawal, fee paid by the escrow.
 * Its signature and blockhash are stored before sending. A refused send (preflight) proves it
 * never landed: re-credit. A send whose outcome is unknown stays `sent`; the reconciler
 * (x4_escrow_reconcile) confirms it, or re-credits it once its blockhash has expired and the
 * chain does not know it. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "http/api_internal.h"
#include "pay/escrow.h"
#include "pay/rpc.h"
#include "pay/solana.h"
#include "plan/catalog.h"
#include "store/pg.h"

#define CONFIRM_POLL_MS 300
#define CONFIRM_TRIES 60


static int chain_ready(api_ctx *c) {
    x4_escrow *x = c->e->escrow;
    if (!x || !x->kp || !c->e->rpc) {
        x4_api_error(c->req, 503, "no escrow wallet configured (ESCROW_KEYPAIR)", NULL);
        free(c);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- deposits */

typedef struct {
    api_ctx *c;
    char sig[X4_SOL_B58_SIG_MAX];
    int has_amount;
    uint64_t amount;
    char wallet[X4_SOL_B58_KEY_MAX];
    uint64_t received;
    uint64_t slot;
} deposit_ctx;

static void deposit_fail(deposit_ctx *d, int status, const char *msg) {
    x4_api_error(d->c->req, status, msg, NULL);
    free(d->c);
    free(d);
}

static void on_deposit_credited(PGresult *res, const char *err, void *ud) {
    deposit_ctx *d = ud;
    if (err) {
        x4_api_db_error(d->c, err);
        free(d->c);
        free(d);
        return;
    }
    const char *credited = x4_pg_val(res, 0, "credited");
    if (!credited || credited[0] != 't') {
        deposit_fail(d, 409, "this deposit was already credited");
        return;
    }
    long long a = x4_pg_ll(res, 0, "available", 0), h = x4_pg_ll(res, 0, "held", 0);
    json_t *j = json_pack("{s:b, s:s, s:o, s:{s:o, s:o, s:o}}", "success", 1, "signature", d->sig, "credited",
                          x4_api_money(d->received), "balance", "available", x4_api_money((uint64_t)a), "held", x4_api_money((uint64_t)h),
                          "total", x4_api_money((uint64_t)(a + h)));
    x4_req_respond_json(d->c->req, 200, j);
    free(d->c);
    free(d);
}

static void on_deposit_tx(const x4_rpc_tx *t, void *ud) {
    deposit_ctx *d = ud;
    x4_engine *e = d->c->e;
    x4_escrow *x = e->escrow;
    char msg[300];
    if (t->r.status != X4_RPC_OK) {
        snprintf(msg, sizeof msg, "cannot read the transaction from the chain: %.200s", t->r.message);
        deposit_fail(d, 502, msg);
        return;
    }
    if (!t->found) {
        deposit_fail(d, 400, "transaction not found (or not yet confirmed) on chain");
        return;
    }
    if (t->err) {
        deposit_fail(d, 400, "the transaction failed on chain");
        return;
    }
    /* the escrow's token account, by its index among the transaction's accounts */
    ssize_t ei = -1;
    for (size_t i = 0; i < t->naccount_keys; i++)
        if (!strcmp(t->account_keys[i], x->token_account_b58)) ei = (ssize_t)i;
    uint64_t pre = 0, post = 0;
    int mint_ok = 0;
    if (ei >= 0) {
        pre = x4_rpc_tx_token_amount(t->pre_token, t->npre_token, (uint32_t)ei);
        post = x4_rpc_tx_token_amount(t->post_token, t->npost_token, (uint32_t)ei);
        for (size_t i = 0; i < t->npost_token; i++)
            if (t->post_token[i].account_index == (uint32_t)ei && !strcmp(t->post_token[i].mint, e->cfg.escrow_asset))
                mint_ok = 1;
    }
    if (ei < 0 || !mint_ok || post <= pre) {
        deposit_fail(d, 400, "the transaction does not transfer the escrow asset to the escrow's token account");
        return;
    }
    d->received = post - pre;
    /* from the registered wallet: a token account it owns, of this mint, went down by at least
     * the amount received */
    uint64_t sent = 0;
    for (size_t i = 0; i < t->npre_token; i++) {
        const x4_rpc_tx_token_balance *b = &t->pre_token[i];
        if (strcmp(b->mint, e->cfg.escrow_asset) || strcmp(b->owner, d->wallet)) continue;
        uint64_t after = x4_rpc_tx_token_amount(t->post_token, t->npost_token, b->account_index);
        if (b->amount > after) sent += b->amount - after;
    }
    if (sent < d->received) {
        deposit_fail(d, 400, "the transfer does not come from the registered wallet of this escrow account");
        return;
    }
    if (d->has_amount && d->amount != d->received) {
        char a[40], r[40];
        x4_money_format(d->amount, X4_USDC_DECIMALS, a);
        x4_money_format(d->received, X4_USDC_DECIMALS, r);
        snprintf(msg, sizeof msg, "amount %s does not match the chain, which shows %s", a, r);
        deposit_fail(d, 400, msg);
        return;
    }
    char amt[24], slot[24];
    snprintf(amt, sizeof amt, "%llu", (unsigned long long)d->received);
    snprintf(slot, sizeof slot, "%llu", (unsigned long long)t->slot);
    const char *params[] = {d->c->who.user, e->cfg.escrow_asset, d->sig, amt, slot};
    x4_pg_query(e->pg, "SELECT credited, available, held FROM x4_escrow_deposit($1, $2, $3, $4::bigint, $5::bigint)", 5,
                params, on_deposit_credited, d);
}

static void on_deposit_account(PGresult *res, const char *err, void *ud) {
    deposit_ctx *d = ud;
    if (err) {
        x4_api_db_error(d->c, err);
        free(d->c);
        free(d);
        return;
    }
    if (PQntuples(res) != 1) {
        deposit_fail(d, 404, "escrow account not found: POST /escrow/:userId/create first");
        return;
    }
    if (x4_pg_val(res, 0, "seen")[0] == 't') {
        deposit_fail(d, 409, "this deposit was already credited");
        return;
    }
    snprintf(d->wallet, sizeof d->wallet, "%s", x4_pg_val(res, 0, "wallet"));
    if (!x4_rpc_get_transaction(d->c->e->rpc, d->sig, on_deposit_tx, d)) deposit_fail(d, 500, "out of memory");
}

void x4_escrow_deposit(api_ctx *c, const char *signature, int has_amount, uint64_t amount);
void x4_escrow_deposit(api_ctx *c, const char *signature, int has_amount, uint64_t amount) {
    if (!chain_ready(c)) return;
    deposit_ctx *d = calloc(1, sizeof *d);
    if (!d) {
        x4_api_error(c->req, 500, "out of memory", NULL);
        free(c);
        return;
    }
    d->c = c;
    snprintf(d->sig, sizeof d->sig, "%s", signature);
    d->has_amount = has_amount;
    d->amount = amount;
    const char *params[] = {c->who.user, c->e->cfg.escrow_asset, signature};
    x4_pg_query(c->e->pg,
                "SELECT wallet, EXISTS (SELECT 1 FROM deposits WHERE signature = $3) AS seen "
                "FROM escrow_accounts WHERE user_id = $1 AND asset = $2",
                3, params, on_deposit_account, d);
}

/* ---------------------------------------------------------------- withdrawals */

typedef struct {
    x4_engine *e;
    api_ctx *c;          /* NULL once answered (or for the reconciler) */
    long long id;
    uint64_t amount;
    char wallet[X4_SOL_B58_KEY_MAX];
    char sig[X4_SOL_B58_SIG_MAX];
    char blockhash[X4_SOL_B58_KEY_MAX];
    uint64_t lvbh;
    x4_buf tx64;
    int tries;
    uv_timer_t *timer;
} wd_ctx;

static void wd_free(wd_ctx *w) {
    x4_buf_free(&w->tx64);
    free(w->c);
    free(w);
}

static void wd_answer(wd_ctx *w, int status, json_t *body) {
    if (w->c) {
        x4_req_respond_json(w->c->req, status, body);
        free(w->c);
        w->c = NULL;
    } else {
        json_decref(body);
    }
}

static void on_wd_done(PGresult *res, const char *err, void *ud) {
    wd_ctx *w = ud;
    if (err) x4_error("escrow", "withdrawal %lld: could not record its end: %s", w->id, err);
    wd_free(w);
}

static void wd_finish(wd_ctx *w, int landed, const char *why) {
    char id[24];
    snprintf(id, sizeof id, "%lld", w->id);
    const char *params[] = {id, landed ? "t" : "f", why};
    if (!landed) x4_warn("escrow", "withdrawal %lld did not land (%s): re-credited", w->id, why ? why : "?");
    x4_pg_query(w->e->pg, "SELECT x4_withdraw_done($1::bigint, $2::boolean, $3)", 3, params, on_wd_done, w);
}

static void wd_poll(wd_ctx *w);

static void on_poll_timer(uv_timer_t *t) {
    wd_ctx *w = t->data;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
    w->timer = NULL;
    wd_poll(w);
}

static void wd_later(wd_ctx *w) {
    w->timer = malloc(sizeof *w->timer);
    if (!w->timer) {
        wd_free(w);
        return;
    }
    uv_timer_init(w->e->loop, w->timer);
    w->timer->data = w;
    uv_timer_start(w->timer, on_poll_timer, CONFIRM_POLL_MS, 0);
}

static void on_wd_height(const x4_rpc_block_height *h, void *ud) {
    wd_ctx *w = ud;
    if (h->r.status == X4_RPC_OK && x4_rpc_blockhash_expired(w->lvbh, h->height)) {
        /* Its blockhash has expired and the chain never saw it: it can never land. */
        wd_finish(w, 0, "not on chain after its blockhash expired");
        return;
    }
    if (w->tries >= CONFIRM_TRIES) {
        /* Unknown for now: stays `sent`; the reconciler settles it later. */
        wd_free(w);
        return;
    }
    wd_later(w);
}

static void on_wd_status(const x4_rpc_sig_statuses *s, void *ud) {
    wd_ctx *w = ud;
    w->tries++;
    if (s->r.status == X4_RPC_OK && s->n == 1 && s->statuses[0].found) {
        const x4_rpc_sig_status *st = &s->statuses[0];
        if (st->err) {
            wd_answer(w, 502, json_pack("{s:b, s:s, s:s}", "success", 0, "error",
                                        "the withdrawal failed on chain; the amount was re-credited", "signature", w->sig));
            wd_finish(w, 0, "failed on chain");
            return;
        }
        if (!strcmp(st->confirmation_status, "confirmed") || !strcmp(st->confirmation_status, "finalized")) {
            wd_answer(w, 200, json_pack("{s:b, s:s, s:s, s:o, s:s}", "success", 1, "status", "confirmed", "signature",
                                        w->sig, "amount", x4_api_money(w->amount), "to", w->wallet));
            wd_finish(w, 1, NULL);
            return;
        }
    }
    if (w->tries == 10)
        wd_answer(w, 202, json_pack("{s:b, s:s, s:s, s:o}", "success", 1, "status", "pending", "signature", w->sig,
                                    "amount", x4_api_money(w->amount)));
    if (!x4_rpc_get_block_height(w->e->rpc, on_wd_height, w)) wd_free(w);
}

static void wd_poll(wd_ctx *w) {
    const char *sigs[] = {w->sig};
    if (!x4_rpc_get_signature_statuses(w->e->rpc, sigs, 1, true, on_wd_status, w)) wd_free(w);
}

static void on_wd_sent(const x4_rpc_send *s, void *ud) {
    wd_ctx *w = ud;
    if (s->r.status == X4_RPC_E_RPC && s->r.code == -32002) {
        /* refused in preflight: it never reached the chain */
        char msg[300];
        snprintf(msg, sizeof msg, "the withdrawal transaction was refused (%.200s); the amount was re-credited", s->r.message);
        wd_answer(w, 502, json_pack("{s:b, s:s}", "success", 0, "error", msg));
        wd_finish(w, 0, "refused in preflight");
        return;
    }
    /* sent, or unknown (a timeout may still land): watch it either way */
    wd_poll(w);
}

static void on_wd_recorded(PGresult *res, const char *err, void *ud) {
    wd_ctx *w = ud;
    if (err) {
        /* Not sent: nothing can land. Give the money back. */
        wd_answer(w, 503, json_pack("{s:b, s:s}", "success", 0, "error", "storage unavailable, try again"));
        wd_finish(w, 0, "could not record the transaction before sending");
        return;
    }
    if (!x4_rpc_send_transaction(w->e->rpc, w->tx64.data, false, NULL, on_wd_sent, w)) wd_free(w);
}

static void on_wd_blockhash(const x4_rpc_blockhash *bh, void *ud) {
    wd_ctx *w = ud;
    x4_escrow *x = w->e->escrow;
    x4_sol_tx *tx = NULL;
    char why[256];
    if (bh->r.status != X4_RPC_OK) {
        snprintf(why, sizeof why, "cannot reach the chain: %.200s", bh->r.message);
        goto refund;
    }
    x4_sol_pubkey to, to_ata;
    uint8_t bump;
    if (x4_sol_pubkey_from_b58(w->wallet, &to) < 0 || x4_sol_ata(&to, &x->mint, &x->token_program, &to_ata, &bump) < 0) {
        snprintf(why, sizeof why, "the registered wallet is not a valid address");
        goto refund;
    }
    x4_sol_ix ix[3];
    memset(ix, 0, sizeof ix);
    /* Associated Token Account program, CreateIdempotent (instruction 1): payer, ata, owner,
     * mint, system program, token program. */
    ix[0].program_id = x4_sol_ata_program;
    x4_sol_meta metas[] = {{x->pubkey, true, true},      {to_ata, false, true},
                           {to, false, false},           {x->mint, false, false},
                           {x4_sol_system_program, false, false}, {x->token_program, false, false}};
    memcpy(ix[0].accounts, metas, sizeof metas);
    ix[0].naccounts = 6;
    ix[0].data[0] = 1;
    ix[0].data_len = 1;
    /* The memo names the withdrawal: it makes two equal withdrawals under one blockhash two
     * different transactions, and ties the chain record to ours. */
    char memo[48];
    int mlen = snprintf(memo, sizeof memo, "x402r withdrawal %lld", w->id);
    if (x4_sol_ix_transfer_checked(&ix[1], &x->token_program, &x->token_account, &x->mint, &to_ata, &x->pubkey,
                                   w->amount, X4_USDC_DECIMALS) < 0 ||
        x4_sol_ix_memo(&ix[2], (const uint8_t *)memo, (size_t)mlen, NULL, 0) < 0 ||
        x4_sol_tx_compile(0, &x->pubkey, ix, 3, bh->blockhash_bytes, &tx, why, sizeof why) < 0 ||
        x4_sol_tx_sign_partial(tx, x->kp, why, sizeof why) < 0 || x4_sol_tx_to_base64(tx, &w->tx64) < 0)
        goto refund;
    int si = x4_sol_tx_signer_index(tx, &x->pubkey);
    x4_sol_signature_to_b58(tx->sigs + 64 * (size_t)(si < 0 ? 0 : si), w->sig);
    x4_sol_tx_free(tx);
    snprintf(w->blockhash, sizeof w->blockhash, "%s", bh->blockhash);
    w->lvbh = bh->last_valid_block_height;
    char id[24], lv[24];
    snprintf(id, sizeof id, "%lld", w->id);
    snprintf(lv, sizeof lv, "%llu", (unsigned long long)w->lvbh);
    const char *params[] = {id, w->sig, w->blockhash, lv};
    x4_pg_query(w->e->pg, "SELECT x4_withdraw_sent($1::bigint, $2, $3, $4::bigint)", 4, params, on_wd_recorded, w);
    return;
refund:
    x4_sol_tx_free(tx);
    {
        char msg[400];
        snprintf(msg, sizeof msg, "withdrawal not sent: %s; the amount was re-credited", why);
        wd_answer(w, 502, json_pack("{s:b, s:s}", "success", 0, "error", msg));
    }
    wd_finish(w, 0, why);
}

static void on_wd_debited(PGresult *res, const char *err, void *ud) {
    wd_ctx *w = ud;
    if (err && !strncmp(err, "X4001: ", 7)) {
        wd_answer(w, 402, json_pack("{s:b, s:s}", "success", 0, "error", err + 7));
        wd_free(w);
        return;
    }
    if (err && !strncmp(err, "X4004: ", 7)) {
        wd_answer(w, 404, json_pack("{s:b, s:s}", "success", 0, "error",
                                    "escrow account not found: POST /escrow/:userId/create first"));
        wd_free(w);
        return;
    }
    if (err) {
        x4_api_db_error(w->c, err);
        free(w->c);
        w->c = NULL;
        wd_free(w);
        return;
    }
    w->id = x4_pg_ll(res, 0, "id", 0);
    snprintf(w->wallet, sizeof w->wallet, "%s", x4_pg_val(res, 0, "wallet"));
    if (!x4_rpc_get_latest_blockhash(w->e->rpc, on_wd_blockhash, w)) wd_finish(w, 0, "out of memory");
}

void x4_escrow_withdraw(api_ctx *c, uint64_t amount);
void x4_escrow_withdraw(api_ctx *c, uint64_t amount) {
    if (!chain_ready(c)) return;
    wd_ctx *w = calloc(1, sizeof *w);
    if (!w) {
        x4_api_error(c->req, 500, "out of memory", NULL);
        free(c);
        return;
    }
    w->e = c->e;
    w->c = c;
    w->amount = amount;
    char amt[24];
    snprintf(amt, sizeof amt, "%llu", (unsigned long long)amount);
    const char *params[] = {c->who.user, c->e->cfg.escrow_asset, amt};
    x4_pg_query(c->e->pg, "SELECT id, wallet, available FROM x4_withdraw_begin($1, $2, $3::bigint)", 3, params,
                on_wd_debited, w);
}

/* ---------------------------------------------------------------- reconciler */

static void on_pending_withdrawals(PGresult *res, const char *err, void *ud) {
    x4_engine *e = ud;
    if (err || e->stopping || !e->rpc) return;
    for (int i = 0; i < PQntuples(res); i++) {
        wd_ctx *w = calloc(1, sizeof *w);
        if (!w) return;
        w->e = e;
        w->id = x4_pg_ll(res, i, "id", 0);
        w->amount = (uint64_t)x4_pg_ll(res, i, "amount", 0);
        w->lvbh = (uint64_t)x4_pg_ll(res, i, "last_valid_block_height", 0);
        w->tries = CONFIRM_TRIES - 1; /* one look per cycle */
        snprintf(w->sig, sizeof w->sig, "%s", x4_pg_val(res, i, "signature"));
        snprintf(w->wallet, sizeof w->wallet, "%s", x4_pg_val(res, i, "to_wallet"));
        wd_poll(w);
    }
}

/* Withdrawals left `sent` (a crash, an unanswered send) older than a minute: confirmed, or
 * re-credited once the chain provably never saw them. */
void x4_escrow_reconcile(x4_engine *e);
void x4_escrow_reconcile(x4_engine *e) {
    if (!e->rpc || !e->pg || e->stopping) return;
    char age[24];
    snprintf(age, sizeof age, "%lld", (long long)e->cfg.reconcile_after_ms);
    const char *params[] = {age};
    x4_pg_query(e->pg,
                "SELECT id, amount, signature, to_wallet, last_valid_block_height FROM withdrawals "
                "WHERE status = 'sent' AND updated_at < clock_timestamp() - $1::bigint * interval '1 millisecond' "
                "ORDER BY id LIMIT 50",
                1, params, on_pending_withdrawals, e);
}
