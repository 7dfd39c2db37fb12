/* pay/paystep.c — see paystep.h. */
#include "pay/paystep.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "pay/escrow.h"
#include "pay/rpc.h"
#include "pay/x402.h"
#include "store/pg.h"

struct x4_paystep {
    x4_engine *e;
    char wf[96], step[72];
    int attempt;
    uint64_t price;
    x4_x402_challenge *ch;
    x4_x402_error perr;
    int parse_failed;
    size_t index;
    x4_x402_payment pay;
    int built;
    long long id;
    x4_paystep_ready_cb cb;
    void *ud;
    /* replay of an earlier payment of this step (after a crash): its header and attempt */
    int replay;
    char *replay_name, *replay_value;
    int replay_attempt;
    int replay_landed;
    long long freed_remaining;   /* the hold left once the earlier payment is proven absent */
};

typedef struct recon recon;
/* state: 1 landed (tx = its id), 0 provably absent, -1 unknown for now */
typedef void (*recon_done)(recon *r, int state, const char *tx);
struct recon {
    x4_engine *e;
    long long id;
    char wf[96], step[72], memo[X4_SOL_MEMO_MAX + 1], sig[X4_SOL_B58_SIG_MAX], dest[X4_SOL_B58_KEY_MAX];
    uint64_t lvbh;
    int version;
    size_t ncand, next;
    char (*cand)[X4_SOL_B58_SIG_MAX];
    recon_done done;
    void *ud;
};

static void recon_free(recon *r);
static void record_landed(x4_engine *e, long long id, const char *wf, const char *step, const char *tx,
                          const char *status);

static void ps_free(x4_paystep *ps) {
    if (!ps) return;
    free(ps->replay_name);
    free(ps->replay_value);
    x4_x402_challenge_free(ps->ch);
    if (ps->built) x4_x402_payment_free(&ps->pay);
    free(ps);
}

static void refuse_later(x4_paystep *ps, const char *why, int64_t retry_ms) {
    x4_paystep_ready_cb cb = ps->cb;
    void *ud = ps->ud;
    char w[400];
    snprintf(w, sizeof w, "%s", why);
    ps_free(ps);
    cb(NULL, w, retry_ms, ud);
}

static void refuse(x4_paystep *ps, const char *why) { refuse_later(ps, why, -1); }

const char *x4_paystep_header_name(const x4_paystep *ps) { return ps->replay ? ps->replay_name : ps->pay.header_name; }
const char *x4_paystep_header_value(const x4_paystep *ps) {
    return ps->replay ? ps->replay_value : ps->pay.header_value;
}
int x4_paystep_attempt(const x4_paystep *ps) { return ps->replay ? ps->replay_attempt : ps->attempt; }

static void on_recorded(PGresult *res, const char *err, void *ud) {
    x4_paystep *ps = ud;
    if (err) {
        char why[400];
        snprintf(why, sizeof why, "payment not sent: %s", strncmp(err, "X400", 4) ? "storage unavailable" : err + 7);
        refuse(ps, why);
        return;
    }
    if (PQntuples(res) < 1) {
        refuse(ps, "payment not sent: the workflow is no longer executing here");
        return;
    }
    ps->id = x4_pg_ll(res, 0, "pid", 0);
    x4_events_publish_rows(ps->e, res);
    ps->cb(ps, NULL, -1, ps->ud);
}

static void build_and_record(x4_paystep *ps, const uint8_t *blockhash, uint64_t lvbh) {
    x4_engine *e = ps->e;
    x4_escrow *x = e->escrow;
    x4_x402_build_in in;
    memset(&in, 0, sizeof in);
    in.payer = x->kp;
    in.token_program = &x->token_program;
    in.blockhash = blockhash;
    in.last_valid_block_height = lvbh;
    x4_x402_error xe;
    if (x4_x402_build_payment(ps->ch, ps->index, &in, &ps->pay, &xe) < 0) {
        char why[400];
        snprintf(why, sizeof why, "cannot build the payment: %s", xe.text);
        refuse(ps, why);
        return;
    }
    ps->built = 1;
    char attempt[16], version[8], amount[24], lv[24];
    snprintf(attempt, sizeof attempt, "%d", ps->attempt);
    snprintf(version, sizeof version, "%d", ps->pay.version);
    snprintf(amount, sizeof amount, "%llu", (unsigned long long)ps->pay.amount);
    snprintf(lv, sizeof lv, "%llu", (unsigned long long)ps->pay.last_valid_block_height);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "stepId", ps->step, "payTo", ps->pay.pay_to, "amount", amount,
                          "memo", ps->pay.memo, "signature", ps->pay.signature, "x402Version", ps->pay.version);
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    const char *params[] = {ps->wf,           e->owner,       ps->step,          attempt,  version,
                            ps->pay.network,  ps->pay.asset,  ps->pay.pay_to,    amount,   ps->pay.memo[0] ? ps->pay.memo : NULL,
                            ps->pay.signature, ps->pay.blockhash, lv,            data,
                            ps->pay.header_name, ps->pay.header_value};
    /* the payment row and its event: one statement, one transaction */
    x4_pg_query(e->pg,
                "WITH p AS (SELECT x4_payment_begin($1, $2, $3, $4::int, $5::int, $6, $7, $8, $9::bigint, $10, $11, "
                "$12, $13::bigint) AS pid), h AS (SELECT x4_payment_header(p.pid, $15, $16) FROM p) "
                "SELECT p.pid, " X4_EV_COLS " FROM p, h, LATERAL x4_emit($1, 'payment.signed', "
                "$14::jsonb || jsonb_build_object('amount', x4_money($9::bigint))) e",
                16, params, on_recorded, ps);
    free(data);
}

static void on_blockhash(const x4_rpc_blockhash *bh, void *ud) {
    x4_paystep *ps = ud;
    if (bh->r.status != X4_RPC_OK) {
        char why[400];
        snprintf(why, sizeof why, "cannot get a blockhash: %.300s", bh->r.message);
        refuse(ps, why);
        return;
    }
    build_and_record(ps, bh->blockhash_bytes, bh->last_valid_block_height);
}

/* Chooses a requirement under every cap, then gets a blockhash: nothing is signed before. */
static void continue_pay(x4_paystep *ps, long long remaining) {
    x4_engine *e = ps->e;
    char why[400];
    if (!e->escrow || !e->escrow->kp) {
        refuse(ps, "the service requires payment but no escrow wallet is configured (ESCROW_KEYPAIR)");
        return;
    }
    const char *assets[] = {e->cfg.escrow_asset};
    x4_x402_policy pol = {e->cfg.network, assets, 1, ps->price, e->cfg.max_payment,
                          remaining > 0 ? (uint64_t)remaining : 0};
    x4_x402_error xe;
    if (x4_x402_choose(ps->ch, &pol, &ps->index, &xe) < 0) {
        snprintf(why, sizeof why, "payment refused (%s): %s", x4_x402_code_name(xe.code), xe.text);
        refuse(ps, why);
        return;
    }
    const x4_x402_requirement *rq = &ps->ch->accepts[ps->index];
    if (rq->has_recent_blockhash) {
        build_and_record(ps, NULL, 0); /* the builder takes the server's blockhash */
        return;
    }
    if (!e->rpc || !x4_rpc_get_latest_blockhash(e->rpc, on_blockhash, ps)) refuse(ps, "cannot reach the chain");
}

static void recon_start(recon *r);

typedef struct {
    x4_paystep *ps;
    long long remaining;
} absent_ctx;

static void on_absent_then_pay(PGresult *res, const char *err, void *ud) {
    absent_ctx *a = ud;
    x4_paystep *ps = a->ps;
    long long remaining = a->remaining;
    free(a);
    if (err) {
        refuse_later(ps, "an earlier payment of this step could not be settled in storage yet", 2000);
        return;
    }
    x4_events_publish_rows(ps->e, res);
    continue_pay(ps, remaining);
}

/* The inline verdict on this step's earlier unresolved payment. */
static void on_inline_recon(recon *r, int state, const char *tx) {
    x4_paystep *ps = r->ud;
    if (state == 1) {
        /* It landed: the service has our money. Replay the same paid request (same header, same
         * Idempotency-Key attempt) instead of paying again. */
        record_landed(ps->e, r->id, r->wf, r->step, tx, "landed");
        ps->replay = 1;
        ps->replay_landed = 1;
        ps->id = r->id;
        recon_free(r);
        ps->cb(ps, NULL, -1, ps->ud);
        return;
    }
    if (state == 0) {
        /* Provably never landed (its blockhash expired): record that, then pay anew. */
        absent_ctx *a = calloc(1, sizeof *a);
        if (!a) {
            recon_free(r);
            refuse(ps, "out of memory");
            return;
        }
        a->ps = ps;
        a->remaining = ps->freed_remaining;
        ps->replay = 0;
        char pid[24];
        snprintf(pid, sizeof pid, "%lld", r->id);
        json_t *d = json_pack("{s:s, s:s}", "stepId", r->step, "reason", "not on chain after its blockhash expired");
        char *data = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        const char *params[] = {pid, r->wf, data};
        x4_pg_query(ps->e->pg,
                    "WITH a AS (SELECT x4_payment_absent($1::bigint, 'absent', 'not on chain after its blockhash expired') "
                    "AS ok) SELECT " X4_EV_COLS " FROM a, LATERAL x4_emit($2, 'payment.failed', $3::jsonb) e WHERE a.ok",
                    3, params, on_absent_then_pay, a);
        free(data);
        recon_free(r);
        return;
    }
    recon_free(r);
    refuse_later(ps, "an earlier payment of this step is not resolved on chain yet", 2000);
}

static void on_hold(PGresult *res, const char *err, void *ud) {
    x4_paystep *ps = ud;
    x4_engine *e = ps->e;
    char why[400];
    if (ps->parse_failed) {
        snprintf(why, sizeof why, "invalid payment challenge (%s): %s", x4_x402_code_name(ps->perr.code), ps->perr.text);
        refuse(ps, why);
        return;
    }
    if (err || PQntuples(res) != 1) {
        refuse(ps, "payment not sent: storage unavailable");
        return;
    }
    const char *mine = x4_pg_val(res, 0, "mine");
    if (!mine || mine[0] != 't') {
        refuse(ps, "payment not sent: the workflow is no longer executing here");
        return;
    }
    long long remaining = x4_pg_ll(res, 0, "remaining", 0);
    const char *paid = x4_pg_val(res, 0, "paid");
    if (x4_pg_val(res, 0, "u_id")) {
        /* A step is paid at most once: settle the earlier payment on chain first. */
        if (!e->rpc || !e->escrow || !e->escrow->kp) {
            refuse_later(ps, "an earlier payment of this step is unresolved and the chain is not configured", 5000);
            return;
        }
        recon *r = calloc(1, sizeof *r);
        if (!r) {
            refuse(ps, "out of memory");
            return;
        }
        r->e = e;
        r->id = x4_pg_ll(res, 0, "u_id", 0);
        r->lvbh = (uint64_t)x4_pg_ll(res, 0, "u_lvbh", 0);
        snprintf(r->wf, sizeof r->wf, "%s", ps->wf);
        snprintf(r->step, sizeof r->step, "%s", ps->step);
        snprintf(r->memo, sizeof r->memo, "%s", x4_pg_val(res, 0, "u_memo") ? x4_pg_val(res, 0, "u_memo") : "");
        snprintf(r->sig, sizeof r->sig, "%s", x4_pg_val(res, 0, "u_sig"));
        ps->replay_name = x4_strdup(x4_pg_val(res, 0, "u_hname"));
        ps->replay_value = x4_strdup(x4_pg_val(res, 0, "u_hvalue"));
        ps->replay_attempt = (int)x4_pg_ll(res, 0, "u_attempt", 0);
        if (!ps->replay_name || !ps->replay_value) {
            free(r);
            refuse_later(ps, "an earlier payment of this step is unresolved (no stored header to replay)", 5000);
            return;
        }
        /* if it proves absent, its amount is no longer pending: the new payment may use it */
        ps->freed_remaining = remaining + x4_pg_ll(res, 0, "u_amount", 0);
        r->done = on_inline_recon;
        r->ud = ps;
        recon_start(r);
        return;
    }
    if (paid && paid[0] == 't' && x4_pg_val(res, 0, "c_id") && x4_pg_val(res, 0, "c_hname") &&
        x4_pg_val(res, 0, "c_hvalue")) {
        /* An earlier payment of this step landed and was charged (the background reconciler got
         * there before this step ran again, e.g. after a crash): replay that very paid request —
         * same header, same Idempotency-Key attempt — so the service answers from its record
         * instead of being paid twice. A 402 to the replay flags it for refund (finish). */
        ps->replay_name = x4_strdup(x4_pg_val(res, 0, "c_hname"));
        ps->replay_value = x4_strdup(x4_pg_val(res, 0, "c_hvalue"));
        ps->replay_attempt = (int)x4_pg_ll(res, 0, "c_attempt", 0);
        if (!ps->replay_name || !ps->replay_value) {
            refuse(ps, "out of memory");
            return;
        }
        ps->replay = 1;
        ps->replay_landed = 1;
        ps->id = x4_pg_ll(res, 0, "c_id", 0);
        ps->cb(ps, NULL, -1, ps->ud);
        return;
    }
    if (paid && paid[0] == 't') {
        refuse(ps, "this step was already paid and the service asks again; not paying twice (refund due)");
        return;
    }
    continue_pay(ps, remaining);
}

void x4_paystep_begin(x4_engine *e, const char *wf, const char *step, int attempt, uint64_t price,
                      const x4_httpc_resp *challenge, x4_paystep_ready_cb cb, void *ud) {
    x4_paystep *ps = calloc(1, sizeof *ps);
    if (!ps) {
        cb(NULL, "out of memory", -1, ud); /* cannot defer without memory either */
        return;
    }
    ps->e = e;
    snprintf(ps->wf, sizeof ps->wf, "%s", wf);
    snprintf(ps->step, sizeof ps->step, "%s", step);
    ps->attempt = attempt;
    ps->price = price;
    ps->cb = cb;
    ps->ud = ud;
    /* The challenge is read now (the response dies with this callback); its verdict waits for
     * the hold query so the callback never runs inside this call. */
    ps->parse_failed = x4_x402_parse_challenge_resp(challenge, &ps->ch, &ps->perr) < 0;
    const char *params[] = {wf, e->owner, step};
    x4_pg_query(e->pg,
                "SELECT w.held - COALESCE((SELECT sum(p.amount) FROM payments p WHERE p.workflow_id = w.id "
                "AND p.status = 'signed'), 0) AS remaining, (w.lease_owner = $2 AND w.status = 'executing') AS mine, "
                "EXISTS (SELECT 1 FROM payments p WHERE p.workflow_id = w.id AND p.step_id = $3 AND p.charged) AS paid, "
                "u.id AS u_id, u.attempt AS u_attempt, u.memo AS u_memo, u.payer_signature AS u_sig, "
                "u.last_valid_block_height AS u_lvbh, u.amount AS u_amount, u.header_name AS u_hname, "
                "u.header_value AS u_hvalue, c.id AS c_id, c.attempt AS c_attempt, c.header_name AS c_hname, "
                "c.header_value AS c_hvalue "
                "FROM workflows w LEFT JOIN LATERAL (SELECT * FROM payments p WHERE p.workflow_id = w.id "
                "AND p.step_id = $3 AND p.status = 'signed' ORDER BY p.id DESC LIMIT 1) u ON true "
                "LEFT JOIN LATERAL (SELECT * FROM payments p WHERE p.workflow_id = w.id AND p.step_id = $3 AND p.charged "
                "AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.kind = 'refund_due' AND l.workflow_id = w.id "
                "AND l.step_id = $3) ORDER BY p.id DESC LIMIT 1) c ON true WHERE w.id = $1",
                3, params, on_hold, ps);
}

/* ---- outcomes ---- */

typedef struct {
    x4_engine *e;
    long long id;
    void (*recorded)(void *ud);
    void *ud;
} rec_ctx;

static void on_outcome(PGresult *res, const char *err, void *ud) {
    rec_ctx *r = ud;
    if (err) x4_error("pay", "payment %lld: could not record its outcome (%s); the reconciler will", r->id, err);
    else if (res) x4_events_publish_rows(r->e, res);
    if (r->recorded) r->recorded(r->ud);
    free(r);
}

static rec_ctx *rec_new(x4_engine *e, long long id, void (*recorded)(void *), void *ud) {
    rec_ctx *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->e = e;
    r->id = id;
    r->recorded = recorded;
    r->ud = ud;
    return r;
}

static void record_landed_then(x4_engine *e, long long id, const char *wf, const char *step, const char *tx,
                               const char *status, void (*recorded)(void *), void *ud) {
    rec_ctx *r = rec_new(e, id, recorded, ud);
    if (!r) {
        if (recorded) recorded(ud);
        return;
    }
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", id);
    json_t *d = json_pack("{s:s, s:s}", "stepId", step, "transaction", tx ? tx : "");
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    const char *params[] = {pid, tx, status, wf, data};
    x4_pg_query(e->pg,
                "WITH l AS (SELECT x4_payment_landed($1::bigint, $2, NULL, $3) AS ok) "
                "SELECT " X4_EV_COLS " FROM l, LATERAL x4_emit($4, 'payment.settled', $5::jsonb || "
                "jsonb_build_object('amount', x4_money((SELECT amount FROM payments WHERE id = $1::bigint)))) e "
                "WHERE l.ok",
                5, params, on_outcome, r);
    free(data);
}

static void record_landed(x4_engine *e, long long id, const char *wf, const char *step, const char *tx,
                          const char *status) {
    record_landed_then(e, id, wf, step, tx, status, NULL, NULL);
}

static void record_absent_then(x4_engine *e, long long id, const char *wf, const char *step, const char *status,
                               const char *why, void (*recorded)(void *), void *ud) {
    rec_ctx *r = rec_new(e, id, recorded, ud);
    if (!r) {
        if (recorded) recorded(ud);
        return;
    }
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", id);
    json_t *d = json_pack("{s:s, s:s}", "stepId", step, "reason", why);
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    const char *params[] = {pid, status, why, wf, data};
    x4_pg_query(e->pg,
                "WITH a AS (SELECT x4_payment_absent($1::bigint, $2, $3) AS ok) "
                "SELECT " X4_EV_COLS " FROM a, LATERAL x4_emit($4, 'payment.failed', $5::jsonb) e WHERE a.ok",
                5, params, on_outcome, r);
    free(data);
}

static void record_absent(x4_engine *e, long long id, const char *wf, const char *step, const char *status,
                          const char *why) {
    record_absent_then(e, id, wf, step, status, why, NULL, NULL);
}

static void flag_refund(x4_engine *e, long long id, const char *note, void (*recorded)(void *), void *ud) {
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", id);
    const char *params[] = {pid, note};
    rec_ctx *r = rec_new(e, id, recorded, ud);
    x4_pg_query(e->pg, "SELECT x4_payment_refund_due($1::bigint, $2)", 2, params, r ? on_outcome : NULL, r);
    if (!r && recorded) recorded(ud);
}

x4_pay_result x4_paystep_finish(x4_paystep *ps, const x4_httpc_resp *resp, char *why, size_t whylen,
                                void (*recorded)(void *ud), void *ud) {
    x4_x402_settlement st;
    x4_x402_error xe;
    memset(&xe, 0, sizeof xe);
    x4_x402_outcome o = x4_x402_read_settlement_resp(&ps->pay, ps->pay.version, resp, &st, &xe);
    x4_pay_result rc;
    switch (o) {
    case X4_X402_SETTLED:
        record_landed_then(ps->e, ps->id, ps->wf, ps->step, st.transaction, "settled", recorded, ud);
        snprintf(why, whylen, "settled in %s", st.transaction);
        rc = X4_PAY_SETTLED;
        break;
    case X4_X402_REJECTED:
        if (ps->replay_landed) {
            /* The payment landed before the crash, and the service will not answer the replay:
             * paid without a result. Never pay again; flag it for refund. */
            snprintf(why, whylen, "the service was paid (payment %lld landed) but gave no result on replay; refund due",
                     ps->id);
            flag_refund(ps->e, ps->id, why, recorded, ud);
            rc = X4_PAY_REFUSED;
            break;
        }
        /* A second 402. Refused at verification (an `invalid_*` reason), the facilitator never
         * sent it — and without the facilitator's fee-payer signature it cannot land: proven
         * absent. Any other reason (a settle-stage failure) may come after the facilitator
         * sent it: it stays `signed` for the reconciler. Either way the step pays nothing more. */
        snprintf(why, whylen, "the service refused the payment: %s", xe.text[0] ? xe.text : st.error_reason);
        if (!strncmp(st.error_reason, "invalid_", 8)) {
            record_absent_then(ps->e, ps->id, ps->wf, ps->step, "failed", why, recorded, ud);
        } else {
            rec_ctx *r = rec_new(ps->e, ps->id, recorded, ud);
            if (r) x4_pg_query(ps->e->pg, "SELECT 1", 0, NULL, on_outcome, r);
            else if (recorded) recorded(ud);
        }
        rc = X4_PAY_REFUSED;
        break;
    default:
        snprintf(why, whylen, "payment outcome unknown (%s): %s; it will be reconciled on chain",
                 x4_x402_outcome_name(o), xe.text);
        {
            /* nothing to record: still answer asynchronously, through the pool */
            rec_ctx *r = rec_new(ps->e, ps->id, recorded, ud);
            if (r) x4_pg_query(ps->e->pg, "SELECT 1", 0, NULL, on_outcome, r);
            else if (recorded) recorded(ud);
        }
        rc = X4_PAY_UNRESOLVED;
        break;
    }
    ps_free(ps);
    return rc;
}

void x4_paystep_drop(x4_paystep *ps) { ps_free(ps); }

/* ---- reconciliation ---- */

static void recon_free(recon *r) {
    free(r->cand);
    free(r);
}

/* The background reconciler's verdicts: charge what landed, release what never will. */
static void recon_record(recon *r, int state, const char *tx) {
    if (state == 1) record_landed(r->e, r->id, r->wf, r->step, tx, "landed");
    else if (state == 0) record_absent(r->e, r->id, r->wf, r->step, "absent", "not on chain after its blockhash expired");
    recon_free(r);
}

static void on_recon_height(const x4_rpc_block_height *h, void *ud) {
    recon *r = ud;
    int expired = h->r.status == X4_RPC_OK && r->lvbh && x4_rpc_blockhash_expired(r->lvbh, h->height);
    r->done(r, expired ? 0 : -1, NULL);
}

static void not_found(recon *r) {
    if (!x4_rpc_get_block_height(r->e->rpc, on_recon_height, r)) r->done(r, -1, NULL);
}

static void on_recon_tx(const x4_rpc_tx *t, void *ud);

static void next_candidate(recon *r) {
    while (r->next < r->ncand) {
        if (x4_rpc_get_transaction(r->e->rpc, r->cand[r->next++], on_recon_tx, r)) return;
    }
    not_found(r);
}

static void on_recon_tx(const x4_rpc_tx *t, void *ud) {
    recon *r = ud;
    if (t->r.status == X4_RPC_OK && t->found && !t->err)
        for (size_t i = 0; i < t->nsignatures; i++)
            if (!strcmp(t->signatures[i], r->sig)) {
                r->done(r, 1, t->signatures[0]);
                return;
            }
    next_candidate(r);
}

static void on_recon_sigs(const x4_rpc_sigs *s, void *ud) {
    recon *r = ud;
    if (s->r.status != X4_RPC_OK) {
        r->done(r, -1, NULL); /* try again later */
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i].err) continue;
        for (size_t k = 0; r->memo[0] && k < s->items[i].nmemo_texts; k++)
            if (!strcmp(s->items[i].memo_texts[k], r->memo)) {
                r->done(r, 1, s->items[i].signature);
                return;
            }
    }
    if (r->memo[0]) {
        not_found(r);
        return;
    }
    /* v1 (no memo): look for our own signature among the destination's recent transactions */
    r->cand = calloc(s->n ? s->n : 1, sizeof *r->cand);
    if (!r->cand) {
        r->done(r, -1, NULL);
        return;
    }
    for (size_t i = 0; i < s->n && r->ncand < 20; i++)
        if (!s->items[i].err) snprintf(r->cand[r->ncand++], X4_SOL_B58_SIG_MAX, "%s", s->items[i].signature);
    next_candidate(r);
}

static void recon_start(recon *r) {
    /* every payment debits the escrow's token account: its history holds them all */
    x4_rpc_sigs_opts o = {100, NULL, NULL};
    if (!x4_rpc_get_signatures_for_address(r->e->rpc, r->e->escrow->token_account_b58, &o, on_recon_sigs, r))
        r->done(r, -1, NULL);
}

static void on_unsettled(PGresult *res, const char *err, void *ud) {
    x4_engine *e = ud;
    if (err || e->stopping || !e->rpc || !e->escrow) return;
    for (int i = 0; i < PQntuples(res); i++) {
        recon *r = calloc(1, sizeof *r);
        if (!r) return;
        r->e = e;
        r->id = x4_pg_ll(res, i, "id", 0);
        r->lvbh = (uint64_t)x4_pg_ll(res, i, "last_valid_block_height", 0);
        r->version = (int)x4_pg_ll(res, i, "version", 2);
        snprintf(r->wf, sizeof r->wf, "%s", x4_pg_val(res, i, "workflow_id"));
        snprintf(r->step, sizeof r->step, "%s", x4_pg_val(res, i, "step_id"));
        snprintf(r->memo, sizeof r->memo, "%s", x4_pg_val(res, i, "memo") ? x4_pg_val(res, i, "memo") : "");
        snprintf(r->sig, sizeof r->sig, "%s", x4_pg_val(res, i, "payer_signature"));
        r->done = recon_record;
        recon_start(r);
    }
}

void x4_paystep_reconcile(x4_engine *e) {
    if (!e->rpc || !e->pg || e->stopping || !e->escrow || !e->escrow->kp) return;
    char age[24];
    snprintf(age, sizeof age, "%lld", (long long)e->cfg.reconcile_after_ms);
    const char *params[] = {age};
    x4_pg_query(e->pg,
                "SELECT id, workflow_id, step_id, memo, payer_signature, last_valid_block_height, version FROM payments "
                "WHERE status = 'signed' AND updated_at < clock_timestamp() - $1::bigint * interval '1 millisecond' "
                "ORDER BY id LIMIT 20",
                1, params, on_unsettled, e);
}
