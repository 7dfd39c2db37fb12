/* http/escrow_api.c — the escrow routes of the seed:
 *   GET  /escrow/address                     the engine's escrow wallet and token account
 *   GET  /escrow/:userId/balance             available, held, total
 *   POST /escrow/:userId/create {userWallet} idempotent; never resets a balance
 *   POST /escrow/:userId/deposit {signature, amount?}   verified on chain, credited once
 *   GET  /escrow/:userId/history?limit&cursor           the ledger, newest first
 *   POST /escrow/:userId/withdraw {amount}   to the registered wallet only
 * The same caller rules as workflows: only your own (an admin may read anyone's). Every money
 * change is one SQL function call (sql/003_escrow.sql). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "http/api_internal.h"
#include "pay/escrow.h"
#include "pay/solana.h"
#include "plan/catalog.h"
#include "store/pg.h"

void x4_escrow_deposit(api_ctx *c, const char *signature, int has_amount, uint64_t amount);
void x4_escrow_withdraw(api_ctx *c, uint64_t amount);


/* Parses a JSON body that must be an object with only the given fields. NULL = answered. */
static json_t *body_object(api_ctx *c, const char *const *fields) {
    x4_req *r = c->req;
    json_error_t jerr;
    if (!r->body || r->body_len == 0) {
        x4_api_error(r, 400, "request body required", NULL);
        return NULL;
    }
    json_t *b = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!b) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        x4_api_error(r, 400, msg, NULL);
        return NULL;
    }
    json_t *details = json_array();
    if (!json_is_object(b)) x4_api_detail(details, "", "expected a JSON object");
    else {
        const char *k;
        json_t *v;
        json_object_foreach(b, k, v) {
            int known = 0;
            for (const char *const *f = fields; *f; f++) known |= !strcmp(*f, k);
            if (!known) x4_api_detail(details, k, "unknown field");
        }
    }
    if (json_array_size(details)) {
        x4_api_error(r, 400, "invalid request body", details);
        json_decref(b);
        return NULL;
    }
    json_decref(details);
    return b;
}

/* ---- address ---- */

static void handle_address(api_ctx *c) {
    x4_escrow *x = c->e->escrow;
    if (!x || !x->kp) {
        x4_api_error(c->req, 503, "no escrow wallet configured (ESCROW_KEYPAIR)", NULL);
        return;
    }
    json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:s}", "success", 1, "address", x->address, "tokenAccount",
                          x->token_account_b58, "asset", c->e->cfg.escrow_asset, "network", c->e->cfg.network);
    x4_req_respond_json(c->req, 200, j);
}

/* ---- balance ---- */

static void on_balance(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) x4_api_db_error(c, err);
    else if (PQntuples(res) != 1) x4_api_error(c->req, 404, "escrow account not found: POST /escrow/:userId/create first", NULL);
    else {
        long long a = x4_pg_ll(res, 0, "available", 0), h = x4_pg_ll(res, 0, "held", 0);
        json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:{s:o, s:o, s:o}}", "success", 1, "userId", c->id, "wallet",
                              x4_pg_val(res, 0, "wallet"), "asset", c->e->cfg.escrow_asset, "balance", "available",
                              x4_api_money((uint64_t)a), "held", x4_api_money((uint64_t)h), "total", x4_api_money((uint64_t)(a + h)));
        x4_req_respond_json(c->req, 200, j);
    }
    free(c);
}

static void handle_balance(api_ctx *c) {
    const char *params[] = {c->id, c->e->cfg.escrow_asset};
    x4_pg_query(c->e->pg, "SELECT wallet, available, held FROM escrow_accounts WHERE user_id = $1 AND asset = $2", 2,
                params, on_balance, c);
}

/* ---- create ---- */

static void on_created(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) x4_api_db_error(c, err);
    else if (PQntuples(res) != 1) x4_api_error(c->req, 500, "escrow account not created", NULL);
    else {
        const char *created = x4_pg_val(res, 0, "created"), *wallet = x4_pg_val(res, 0, "wallet");
        const char *asked = c->arg; /* the requested wallet */
        if (created && created[0] == 'f' && wallet && strcmp(wallet, asked) != 0) {
            x4_api_error(c->req, 409, "an escrow account with a different wallet already exists", NULL);
        } else {
            long long a = x4_pg_ll(res, 0, "available", 0), h = x4_pg_ll(res, 0, "held", 0);
            json_t *j = json_pack("{s:b, s:b, s:s, s:s, s:{s:o, s:o, s:o}}", "success", 1, "created",
                                  created && created[0] == 't', "wallet", wallet, "asset", c->e->cfg.escrow_asset,
                                  "balance", "available", x4_api_money((uint64_t)a), "held", x4_api_money((uint64_t)h), "total", x4_api_money((uint64_t)(a + h)));
            x4_req_respond_json(c->req, created && created[0] == 't' ? 201 : 200, j);
        }
    }
    free(c);
}

static void handle_create(api_ctx *c) {
    static const char *const fields[] = {"userWallet", NULL};
    json_t *b = body_object(c, fields);
    if (!b) {
        free(c);
        return;
    }
    const char *w = json_string_value(json_object_get(b, "userWallet"));
    x4_sol_pubkey pk;
    if (!w || x4_sol_pubkey_from_b58(w, &pk) < 0 || strlen(w) >= sizeof c->arg) {
        json_t *d = json_array();
        x4_api_detail(d, "userWallet", w ? "not a base58 Solana public key" : "required (a base58 Solana public key)");
        x4_api_error(c->req, 400, "invalid request body", d);
        json_decref(b);
        free(c);
        return;
    }
    snprintf(c->arg, sizeof c->arg, "%s", w);
    const char *params[] = {c->who.user, c->e->cfg.escrow_asset, w};
    x4_pg_query(c->e->pg, "SELECT created, wallet, available, held FROM x4_escrow_create($1, $2, $3)", 3, params,
                on_created, c);
    json_decref(b);
}

/* ---- history ---- */

static void on_history(PGresult *res, const char *err, void *ud) {
    api_ctx *c = ud;
    if (err) {
        x4_api_db_error(c, err);
        free(c);
        return;
    }
    int n = PQntuples(res), limit = atoi(c->created_at);
    json_t *items = json_array();
    for (int i = 0; i < n && i < limit; i++) {
        json_t *it = json_pack("{s:I, s:s, s:o, s:o, s:o, s:s?, s:s?, s:s?, s:s?, s:s}", "id",
                               (json_int_t)x4_pg_ll(res, i, "id", 0), "kind", x4_pg_val(res, i, "kind"), "amount",
                               x4_api_money((uint64_t)x4_pg_ll(res, i, "amount", 0)), "availableDelta",
                               json_integer(x4_pg_ll(res, i, "available_delta", 0)), "heldDelta",
                               json_integer(x4_pg_ll(res, i, "held_delta", 0)), "workflowId",
                               x4_pg_val(res, i, "workflow_id"), "stepId", x4_pg_val(res, i, "step_id"), "signature",
                               x4_pg_val(res, i, "signature"), "note", x4_pg_val(res, i, "note"), "createdAt",
                               x4_pg_val(res, i, "created"));
        json_array_append_new(items, it);
    }
    json_t *next = n > limit ? json_string(x4_pg_val(res, limit - 1, "id")) : json_null();
    x4_req_respond_json(c->req, 200, json_pack("{s:b, s:o, s:o}", "success", 1, "history", items, "nextCursor", next));
    free(c);
}

static void handle_history(api_ctx *c) {
    x4_req *r = c->req;
    char lim[16] = "50", cur[24] = "";
    json_t *d = json_array();
    int q = r->query ? x4_query_get(r->query, r->query_len, "limit", lim, sizeof lim) : 0;
    char *end;
    long limit = strtol(lim, &end, 10);
    if (q < 0 || *end || limit < 1 || limit > 500) x4_api_detail(d, "limit", "expected an integer from 1 to 500");
    q = r->query ? x4_query_get(r->query, r->query_len, "cursor", cur, sizeof cur) : 0;
    if (q < 0 || (q == 1 && (!cur[0] || strspn(cur, "0123456789") != strlen(cur))))
        x4_api_detail(d, "cursor", "not a cursor from this API");
    if (json_array_size(d)) {
        x4_api_error(r, 400, "invalid query", d);
        free(c);
        return;
    }
    json_decref(d);
    snprintf(c->created_at, sizeof c->created_at, "%ld", limit);
    char lim1[24];
    snprintf(lim1, sizeof lim1, "%ld", limit + 1);
    const char *params[] = {c->id, c->e->cfg.escrow_asset, cur[0] ? cur : NULL, lim1};
    x4_pg_query(c->e->pg,
                "SELECT id, kind, amount, available_delta, held_delta, workflow_id, step_id, signature, note, "
                "x4_iso(created_at) AS created FROM x4_ledger_view WHERE user_id = $1 AND asset = $2 "
                "AND ($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT $4::int",
                4, params, on_history, c);
}

/* ---- deposit / withdraw: body validation here, the chain work in pay/escrow_chain.c ---- */

static void handle_deposit(api_ctx *c) {
    static const char *const fields[] = {"signature", "amount", NULL};
    json_t *b = body_object(c, fields);
    if (!b) {
        free(c);
        return;
    }
    json_t *d = json_array();
    const char *sig = json_string_value(json_object_get(b, "signature"));
    uint8_t raw[64];
    if (!sig || x4_b58_decode_exact(sig, raw, 64) < 0)
        x4_api_detail(d, "signature", "required: the base58 signature of the deposit transaction");
    uint64_t amount = 0;
    json_t *a = json_object_get(b, "amount");
    const char *why = NULL;
    if (a && !json_is_null(a) && x4_api_parse_amount(a, &amount, &why) < 0)
        x4_api_detail(d, "amount", why ? why : "expected a USDC amount (decimal string or number)");
    if (json_array_size(d)) {
        x4_api_error(c->req, 400, "invalid request body", d);
        json_decref(b);
        free(c);
        return;
    }
    json_decref(d);
    char sigcopy[100];
    snprintf(sigcopy, sizeof sigcopy, "%s", sig);
    int has_amount = a && !json_is_null(a); /* `a` and `sig` belong to b: read them before it goes */
    json_decref(b);
    x4_escrow_deposit(c, sigcopy, has_amount, amount);
}

static void handle_withdraw(api_ctx *c) {
    static const char *const fields[] = {"amount", NULL};
    json_t *b = body_object(c, fields);
    if (!b) {
        free(c);
        return;
    }
    json_t *a = json_object_get(b, "amount");
    uint64_t amount = 0;
    const char *why = NULL;
    int bad = !a || x4_api_parse_amount(a, &amount, &why) < 0 || amount == 0;
    json_decref(b);
    if (bad) {
        json_t *d = json_array();
        x4_api_detail(d, "amount", why ? why : "required: a positive USDC amount (decimal string or number)");
        x4_api_error(c->req, 400, "invalid request body", d);
        free(c);
        return;
    }
    x4_escrow_withdraw(c, amount);
}

void x4_escrow_api_dispatch(api_ctx *c) {
    if (c->route == R_ESCROW_ADDRESS) {
        handle_address(c);
        free(c);
        return;
    }
    int read_only = c->route == R_ESCROW_BALANCE || c->route == R_ESCROW_HISTORY;
    if (strcmp(c->id, c->who.user) != 0 && !(read_only && c->who.admin)) {
        x4_api_error(c->req, 404, "user not found", NULL);
        free(c);
        return;
    }
    switch (c->route) {
    case R_ESCROW_BALANCE: handle_balance(c); break;
    case R_ESCROW_CREATE: handle_create(c); break;
    case R_ESCROW_DEPOSIT: handle_deposit(c); break;
    case R_ESCROW_HISTORY: handle_history(c); break;
    case R_ESCROW_WITHDRAW: handle_withdraw(c); break;
    default: x4_api_error(c->req, 404, "not found", NULL); free(c); break;
    }
}
