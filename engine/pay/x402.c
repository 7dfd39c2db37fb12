/* pay/x402.c — the x402 client: challenge parsing and validation, the spending rules, the
 * payment header (around solana.h's exact-scheme transaction) and the settlement reader.
 * Pure: no I/O, no clock; the only randomness is the memo nonce (inside x4_sol_exact_build).
 * See x402.h for the API and docs/x402-client.md for the rules.
 *
 * Hostile input: every length is bounded before it is decoded (header, body, each string), JSON
 * is parsed with duplicate keys rejected (two different `amount`s must not be read two ways),
 * numbers are read as canonical digit strings into uint64 with an overflow check, and a
 * Solana key is decoded only after its length fits a key. Cost: linear in the input. */
#include "pay/x402.h"

#include <ctype.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX 2048
#define ERROR_FIELD_MAX 1024
#define DESC_MAX 8192
#define MIME_MAX 256

static int fail(x4_x402_error *e, x4_x402_code c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(x4_x402_error *e, x4_x402_code c, const char *fmt, ...) {
    va_list ap;
    if (!e) return -1;
    e->code = c;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    return -1;
}

static void ok(x4_x402_error *e) {
    if (!e) return;
    e->code = X4_X402_OK;
    e->text[0] = 0;
}

const char *x4_x402_code_name(x4_x402_code c) {
    switch (c) {
    case X4_X402_OK: return "ok";
    case X4_X402_E_NOT_402: return "not_402";
    case X4_X402_E_NO_CHALLENGE: return "no_challenge";
    case X4_X402_E_TOO_LARGE: return "too_large";
    case X4_X402_E_BASE64: return "bad_base64";
    case X4_X402_E_JSON: return "bad_json";
    case X4_X402_E_VERSION: return "bad_version";
    case X4_X402_E_FIELD: return "bad_field";
    case X4_X402_E_AMOUNT: return "bad_amount";
    case X4_X402_E_ADDRESS: return "bad_address";
    case X4_X402_E_TIMEOUT: return "bad_timeout";
    case X4_X402_E_TOO_MANY: return "too_many_accepts";
    case X4_X402_E_NO_EXACT: return "no_exact_scheme";
    case X4_X402_E_NETWORK: return "wrong_network";
    case X4_X402_E_ASSET: return "wrong_asset";
    case X4_X402_E_OVER_PRICE: return "over_approved_price";
    case X4_X402_E_OVER_TX_CAP: return "over_tx_cap";
    case X4_X402_E_OVER_HOLD: return "over_remaining_hold";
    case X4_X402_E_POLICY: return "bad_policy";
    case X4_X402_E_BUILD: return "build_failed";
    case X4_X402_E_ARG: return "bad_argument";
    case X4_X402_E_NOMEM: return "out_of_memory";
    case X4_X402_E_REJECTED: return "rejected_after_payment";
    case X4_X402_E_SETTLE_FAILED: return "settlement_failed";
    case X4_X402_E_UNSETTLED: return "not_settled";
    case X4_X402_E_MISMATCH: return "settlement_mismatch";
    }
    return "unknown";
}

const char *x4_x402_outcome_name(x4_x402_outcome o) {
    switch (o) {
    case X4_X402_SETTLED: return "settled";
    case X4_X402_SETTLE_FAILED: return "settle_failed";
    case X4_X402_REJECTED: return "rejected";
    case X4_X402_UNSETTLED: return "unsettled";
    case X4_X402_SETTLEMENT_INVALID: return "settlement_invalid";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------------------------ */
/* networks                                                                                   */

static const struct {
    const char *alias, *alias2, *v1, *caip2;
} NETS[] = {
    {"mainnet", "mainnet-beta", "solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"},
    {"devnet", NULL, "solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"},
    {"testnet", NULL, "solana-testnet", "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z"},
};

int x4_x402_network_resolve(const char *config, const char **v1, const char **caip2) {
    if (!config) return -1;
    for (size_t i = 0; i < sizeof NETS / sizeof *NETS; i++) {
        if (strcmp(config, NETS[i].alias) == 0 || (NETS[i].alias2 && strcmp(config, NETS[i].alias2) == 0) ||
            strcmp(config, NETS[i].v1) == 0 || strcmp(config, NETS[i].caip2) == 0) {
            if (v1) *v1 = NETS[i].v1;
            if (caip2) *caip2 = NETS[i].caip2;
            return 0;
        }
    }
    return -1;
}

/* A Solana requirement: a known v1 name or any "solana:" CAIP-2 id (its keys are then held to
 * Solana's rules even when the cluster is not one we pay on). */
static bool is_solana_network(const char *n) {
    for (size_t i = 0; i < sizeof NETS / sizeof *NETS; i++)
        if (strcmp(n, NETS[i].v1) == 0) return true;
    return strncmp(n, "solana:", 7) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding helpers                                                                           */

/* Base64 (standard alphabet, padded or not, surrounding blanks ignored) of at most
 * X4_X402_MAX_HEADER characters. *out is heap (NUL-terminated for convenience). */
static int b64_decode(const char *s, const char *what, unsigned char **out, size_t *outlen,
                      x4_x402_error *err) {
    size_t n, cap, len = 0;
    const char *end = NULL;
    unsigned char *buf = NULL;
    *out = NULL;
    *outlen = 0;
    n = strnlen(s, X4_X402_MAX_HEADER + 1);
    if (n > X4_X402_MAX_HEADER)
        return fail(err, X4_X402_E_TOO_LARGE, "%s is longer than %d bytes", what, X4_X402_MAX_HEADER);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0) return fail(err, X4_X402_E_BASE64, "%s is empty", what);
    cap = n / 4 * 3 + 3;
    if (!(buf = malloc(cap + 1))) return fail(err, X4_X402_E_NOMEM, "out of memory");
    if ((sodium_base642bin(buf, cap, s, n, NULL, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
         end != s + n) &&
        (sodium_base642bin(buf, cap, s, n, NULL, &len, &end,
                           sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
         end != s + n)) {
        free(buf);
        return fail(err, X4_X402_E_BASE64, "%s is not valid base64", what);
    }
    if (len == 0) {
        free(buf);
        return fail(err, X4_X402_E_BASE64, "%s decodes to nothing", what);
    }
    buf[len] = 0;
    *out = buf;
    *outlen = len;
    return 0;
}

static int json_decode(const char *p, size_t n, const char *what, json_t **out, x4_x402_error *err) {
    json_error_t je;
    json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
    *out = NULL;
    if (!j) return fail(err, X4_X402_E_JSON, "%s is not valid JSON: %s", what, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(err, X4_X402_E_JSON, "%s is not a JSON object", what);
    }
    *out = j;
    return 0;
}

/* A string member of o: absent (or null when !required) leaves *out NULL. Length in bytes must
 * be in [minlen, maxlen]. */
static int get_str(const json_t *o, const char *key, bool required, size_t minlen, size_t maxlen,
                   const char *ctx, const char **out, x4_x402_error *err) {
    json_t *v = json_object_get(o, key);
    size_t n;
    *out = NULL;
    if (!v || (json_is_null(v) && !required)) {
        if (required) return fail(err, X4_X402_E_FIELD, "%s%s is missing", ctx, key);
        return 0;
    }
    if (!json_is_string(v)) return fail(err, X4_X402_E_FIELD, "%s%s is not a string", ctx, key);
    n = json_string_length(v);
    if (n > maxlen)
        return fail(err, X4_X402_E_TOO_LARGE, "%s%s is longer than %zu bytes", ctx, key, maxlen);
    if (n < minlen) return fail(err, X4_X402_E_FIELD, "%s%s is empty", ctx, key);
    if (strlen(json_string_value(v)) != n)
        return fail(err, X4_X402_E_FIELD, "%s%s contains a NUL", ctx, key);
    *out = json_string_value(v);
    return 0;
}

/* Canonical decimal digits ("0" or no leading zero), at most 20 of them. 0 = fits uint64;
 * 1 = digits but over uint64; -1 = not a canonical decimal. */
static int parse_u64(const char *s, uint64_t *out) {
    size_t n = strlen(s);
    uint64_t v = 0;
    *out = 0;
    if (n == 0 || n > 64) return -1;
    if (n > 1 && s[0] == '0') return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int decode_key(const char *s, const char *ctx, const char *field, x4_sol_pubkey *out,
                      x4_x402_error *err) {
    /* 32 bytes are 32..44 base58 characters; check before decoding (base58 is quadratic). */
    size_t n = strlen(s);
    if (n < 32 || n > 44 || x4_sol_pubkey_from_b58(s, out) != 0)
        return fail(err, X4_X402_E_ADDRESS, "%s%s is not a base58 Solana address of 32 bytes", ctx,
                    field);
    return 0;
}

static bool scheme_chars_ok(const char *s) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_') return false;
    return true;
}

static bool printable_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return false;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* 1. the challenge                                                                           */

static int parse_extra(const json_t *extra, const char *ctx, x4_x402_requirement *q,
                       x4_x402_error *err) {
    const char *s;
    json_t *lv;
    if (get_str(extra, "feePayer", false, 1, 64, ctx, &s, err) != 0) return -1;
    if (s) {
        if (decode_key(s, ctx, "feePayer", &q->fee_payer_key, err) != 0) return -1;
        q->has_fee_payer = true;
    }
    if (get_str(extra, "memo", false, 0, X4_SOL_MEMO_MAX, ctx, &s, err) != 0) return -1;
    if (s) memcpy(q->memo, s, strlen(s) + 1);  /* "" means: none (as @x402/svm reads it) */
    if (get_str(extra, "recentBlockhash", false, 0, 64, ctx, &s, err) != 0) return -1;
    if (s && *s) {
        if (strlen(s) < 32 || strlen(s) > 44 || x4_sol_blockhash_from_b58(s, q->recent_blockhash) != 0)
            return fail(err, X4_X402_E_ADDRESS, "%srecentBlockhash is not a base58 hash of 32 bytes", ctx);
        q->has_recent_blockhash = true;
    }
    lv = json_object_get(extra, "lastValidBlockHeight");
    if (lv && !json_is_null(lv)) {
        if (json_is_integer(lv) && json_integer_value(lv) >= 0) {
            q->recent_last_valid = (uint64_t)json_integer_value(lv);
        } else if (!json_is_string(lv) || json_string_length(lv) > 20 ||
                   parse_u64(json_string_value(lv), &q->recent_last_valid) != 0) {
            return fail(err, X4_X402_E_FIELD, "%slastValidBlockHeight is not a block height", ctx);
        }
    }
    return 0;
}

static int parse_requirement(const json_t *r, int version, int idx, x4_x402_requirement *q,
                             x4_x402_error *err) {
    char ctx[48];
    const char *scheme, *network, *amount, *pay_to, *asset, *s;
    const char *amount_key = version == 1 ? "maxAmountRequired" : "amount";
    json_t *v, *extra;
    int rc;
    memset(q, 0, sizeof *q);
    q->index = idx;
    q->raw = r;
    snprintf(ctx, sizeof ctx, "accepts[%d].", idx);
    if (!json_is_object(r)) return fail(err, X4_X402_E_FIELD, "accepts[%d] is not an object", idx);
    if (get_str(r, "scheme", true, 1, X4_X402_SCHEME_MAX, ctx, &scheme, err) != 0) return -1;
    if (!scheme_chars_ok(scheme))
        return fail(err, X4_X402_E_FIELD, "%sscheme has characters outside [A-Za-z0-9_-]", ctx);
    if (get_str(r, "network", true, 1, X4_X402_NETWORK_MAX, ctx, &network, err) != 0) return -1;
    if (!printable_ascii(network))
        return fail(err, X4_X402_E_FIELD, "%snetwork is not printable ASCII", ctx);
    memcpy(q->scheme, scheme, strlen(scheme) + 1);
    memcpy(q->network, network, strlen(network) + 1);
    q->solana = is_solana_network(network);

    v = json_object_get(r, amount_key);
    if (!v) return fail(err, X4_X402_E_AMOUNT, "%s%s is missing", ctx, amount_key);
    if (!json_is_string(v))
        return fail(err, X4_X402_E_AMOUNT, "%s%s must be a decimal string of atomic units", ctx,
                    amount_key);
    amount = json_string_value(v);
    if (json_string_length(v) > 80)
        return fail(err, X4_X402_E_AMOUNT, "%s%s is too long to be an amount", ctx, amount_key);
    rc = parse_u64(amount, &q->amount);
    if (rc < 0)
        return fail(err, X4_X402_E_AMOUNT, "%s%s \"%.40s\" is not a decimal string of digits", ctx,
                    amount_key, amount);
    if (rc > 0) {
        if (q->solana)
            return fail(err, X4_X402_E_AMOUNT, "%s%s does not fit in 64 bits", ctx, amount_key);
        q->amount = UINT64_MAX;  /* another chain's unit; never chosen */
    }
    if (q->solana && q->amount == 0)
        return fail(err, X4_X402_E_AMOUNT, "%s%s is zero", ctx, amount_key);

    if (get_str(r, "payTo", true, 1, X4_X402_ADDR_MAX, ctx, &pay_to, err) != 0) return -1;
    if (get_str(r, "asset", true, 1, X4_X402_ADDR_MAX, ctx, &asset, err) != 0) return -1;
    memcpy(q->pay_to, pay_to, strlen(pay_to) + 1);
    memcpy(q->asset, asset, strlen(asset) + 1);

    v = json_object_get(r, "maxTimeoutSeconds");
    if (!v) return fail(err, X4_X402_E_TIMEOUT, "%smaxTimeoutSeconds is missing", ctx);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > X4_X402_MAX_TIMEOUT_S)
        return fail(err, X4_X402_E_TIMEOUT, "%smaxTimeoutSeconds must be an integer in 1..%d", ctx,
                    X4_X402_MAX_TIMEOUT_S);
    q->max_timeout_seconds = (uint32_t)json_integer_value(v);

    if (version == 1) {
        if (get_str(r, "resource", true, 1, URL_MAX, ctx, &s, err) != 0 ||
            get_str(r, "description", true, 0, DESC_MAX, ctx, &s, err) != 0 ||
            get_str(r, "mimeType", true, 0, MIME_MAX, ctx, &s, err) != 0)
            return -1;
        v = json_object_get(r, "outputSchema");
        if (v && !json_is_object(v) && !json_is_null(v))
            return fail(err, X4_X402_E_FIELD, "%soutputSchema is not an object", ctx);
    }

    extra = json_object_get(r, "extra");
    if (extra && !json_is_null(extra) && !json_is_object(extra))
        return fail(err, X4_X402_E_FIELD, "%sextra is not an object", ctx);
    if (!q->solana) return 0;  /* another chain: kept for the record, never chosen */

    if (decode_key(pay_to, ctx, "payTo", &q->pay_to_key, err) != 0 ||
        decode_key(asset, ctx, "asset", &q->asset_key, err) != 0)
        return -1;
    snprintf(ctx, sizeof ctx, "accepts[%d].extra.", idx);
    if (json_is_object(extra) && parse_extra(extra, ctx, q, err) != 0) return -1;
    if (strcmp(q->scheme, "exact") == 0 && !q->has_fee_payer)
        return fail(err, X4_X402_E_FIELD, "%sfeePayer is required by the exact scheme on Solana", ctx);
    return 0;
}

/* The root object, once decoded: its version must be `want`. */
static int parse_root(json_t *root, int want, x4_x402_challenge *c, x4_x402_error *err) {
    json_t *v = json_object_get(root, "x402Version"), *acc, *res;
    const char *s;
    size_t i;
    if (!v) return fail(err, X4_X402_E_VERSION, "x402Version is missing");
    if (!json_is_integer(v)) return fail(err, X4_X402_E_VERSION, "x402Version is not an integer");
    if (json_integer_value(v) != want) {
        if (json_integer_value(v) == 1 || json_integer_value(v) == 2)
            return fail(err, X4_X402_E_VERSION, "x402Version %lld in the %s (expected %d)",
                        (long long)json_integer_value(v), want == 2 ? "PAYMENT-REQUIRED header" : "body",
                        want);
        return fail(err, X4_X402_E_VERSION, "unknown x402Version %lld", (long long)json_integer_value(v));
    }
    c->version = want;
    if (get_str(root, "error", false, 0, ERROR_FIELD_MAX, "", &s, err) != 0) return -1;
    if (s && !(c->error = x4_strdup(s))) return fail(err, X4_X402_E_NOMEM, "out of memory");
    if (want == 2) {
        res = json_object_get(root, "resource");
        if (!json_is_object(res)) return fail(err, X4_X402_E_FIELD, "resource is missing or not an object");
        if (get_str(res, "url", true, 1, URL_MAX, "resource.", &s, err) != 0) return -1;
        if (!(c->resource_url = x4_strdup(s))) return fail(err, X4_X402_E_NOMEM, "out of memory");
        v = json_object_get(root, "extensions");
        if (v && !json_is_object(v) && !json_is_null(v))
            return fail(err, X4_X402_E_FIELD, "extensions is not an object");
    }
    acc = json_object_get(root, "accepts");
    if (!acc) return fail(err, X4_X402_E_FIELD, "accepts is missing");
    if (!json_is_array(acc)) return fail(err, X4_X402_E_FIELD, "accepts is not an array");
    if (json_array_size(acc) > X4_X402_MAX_ACCEPTS)
        return fail(err, X4_X402_E_TOO_MANY, "accepts lists %zu requirements (at most %d)",
                    json_array_size(acc), X4_X402_MAX_ACCEPTS);
    for (i = 0; i < json_array_size(acc); i++)
        if (parse_requirement(json_array_get(acc, i), want, (int)i, &c->accepts[i], err) != 0) return -1;
    c->naccepts = i;
    if (want == 1 && c->naccepts > 0 &&
        !(c->resource_url = x4_strdup(json_string_value(json_object_get(json_array_get(acc, 0), "resource")))))
        return fail(err, X4_X402_E_NOMEM, "out of memory");
    return 0;
}

void x4_x402_challenge_free(x4_x402_challenge *c) {
    if (!c) return;
    free(c->error);
    free(c->resource_url);
    json_decref(c->root);
    free(c);
}

int x4_x402_parse_challenge(long status, const char *payment_required, const char *body,
                            size_t body_len, x4_x402_challenge **out, x4_x402_error *err) {
    x4_x402_challenge *c = NULL;
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    json_t *v;
    if (!out) return fail(err, X4_X402_E_ARG, "no output");
    *out = NULL;
    ok(err);
    if (status != 402) return fail(err, X4_X402_E_NOT_402, "status %ld is not 402", status);
    if (!(c = calloc(1, sizeof *c))) return fail(err, X4_X402_E_NOMEM, "out of memory");
    if (payment_required) {
        if (b64_decode(payment_required, "PAYMENT-REQUIRED", &raw, &rawlen, err) != 0) goto err;
        if (json_decode((const char *)raw, rawlen, "PAYMENT-REQUIRED", &c->root, err) != 0) goto err;
        if (parse_root(c->root, 2, c, err) != 0) goto err;
    } else {
        if (!body || body_len == 0) {
            fail(err, X4_X402_E_NO_CHALLENGE, "402 without PAYMENT-REQUIRED and with an empty body");
            goto err;
        }
        if (body_len > X4_X402_MAX_BODY) {
            fail(err, X4_X402_E_TOO_LARGE, "402 body is longer than %d bytes", X4_X402_MAX_BODY);
            goto err;
        }
        if (json_decode(body, body_len, "402 body", &c->root, err) != 0) {
            err->code = X4_X402_E_NO_CHALLENGE;
            goto err;
        }
        v = json_object_get(c->root, "x402Version");
        if (!v) {
            fail(err, X4_X402_E_NO_CHALLENGE,
                 "402 without PAYMENT-REQUIRED and its body is not an x402 challenge");
            goto err;
        }
        if (json_is_integer(v) && json_integer_value(v) == 2) {
            fail(err, X4_X402_E_VERSION, "an x402 v2 challenge must come in PAYMENT-REQUIRED, not the body");
            goto err;
        }
        if (parse_root(c->root, 1, c, err) != 0) goto err;
    }
    free(raw);
    *out = c;
    return 0;
err:
    free(raw);
    x4_x402_challenge_free(c);
    return -1;
}

int x4_x402_parse_challenge_resp(const x4_httpc_resp *resp, x4_x402_challenge **out,
                                 x4_x402_error *err) {
    if (!resp) return fail(err, X4_X402_E_ARG, "no response");
    return x4_x402_parse_challenge(resp->code, x4_httpc_header_get(resp, "payment-required"),
                                   resp->body, resp->body_len, out, err);
}

/* ------------------------------------------------------------------------------------------ */
/* 2. the choice                                                                              */

int x4_x402_choose(const x4_x402_challenge *c, const x4_x402_policy *p, size_t *index,
                   x4_x402_error *err) {
    const char *v1 = NULL, *caip2 = NULL;
    x4_sol_pubkey *mints = NULL;
    int best = -1;  /* how many rules the best requirement passed */
    size_t best_i = 0;
    x4_x402_code code = X4_X402_E_NO_EXACT;
    int rc = -1;
    if (!c || !p || !index) return fail(err, X4_X402_E_ARG, "missing argument");
    ok(err);
    if (x4_x402_network_resolve(p->network, &v1, &caip2) != 0)
        return fail(err, X4_X402_E_POLICY, "unknown configured network \"%.64s\" (devnet, mainnet, "
                    "testnet or a Solana CAIP-2 id)", p->network ? p->network : "");
    if (p->nassets == 0 || !p->assets) return fail(err, X4_X402_E_POLICY, "no allowed asset configured");
    if (!(mints = calloc(p->nassets, sizeof *mints))) return fail(err, X4_X402_E_NOMEM, "out of memory");
    for (size_t i = 0; i < p->nassets; i++)
        if (!p->assets[i] || decode_key(p->assets[i], "policy ", "asset", &mints[i], err) != 0) {
            fail(err, X4_X402_E_POLICY, "allowed asset %zu is not a base58 mint address", i);
            goto out;
        }
    for (size_t i = 0; i < c->naccepts; i++) {
        const x4_x402_requirement *q = &c->accepts[i];
        int passed = 0;
        bool asset_ok = false;
        if (strcmp(q->scheme, "exact") == 0) passed++;
        if (passed == 1 && q->solana && (strcmp(q->network, v1) == 0 || strcmp(q->network, caip2) == 0))
            passed++;
        for (size_t k = 0; passed == 2 && k < p->nassets; k++)
            if (x4_sol_pubkey_eq(&q->asset_key, &mints[k])) asset_ok = true;
        if (asset_ok) passed++;
        if (passed == 3 && q->amount <= p->approved_price) passed++;
        if (passed == 4 && q->amount <= p->per_tx_cap) passed++;
        if (passed == 5 && q->amount <= p->remaining_hold) passed++;
        if (passed == 6) {
            *index = i;
            rc = 0;
            goto out;
        }
        if (passed > best) best = passed, best_i = i;
    }
    if (best < 0) {
        fail(err, X4_X402_E_NO_EXACT, "the challenge offers no payment requirement");
        goto out;
    }
    {
        const x4_x402_requirement *q = &c->accepts[best_i];
        switch (best) {
        case 0:
            code = X4_X402_E_NO_EXACT;
            fail(err, code, "no requirement uses the exact scheme (accepts[%zu] is \"%s\")", best_i, q->scheme);
            break;
        case 1:
            code = X4_X402_E_NETWORK;
            fail(err, code, "no exact requirement on %s (accepts[%zu] is on \"%s\")", caip2, best_i, q->network);
            break;
        case 2:
            code = X4_X402_E_ASSET;
            fail(err, code, "accepts[%zu] asks for asset %s, which is not an allowed mint", best_i, q->asset);
            break;
        case 3:
            code = X4_X402_E_OVER_PRICE;
            fail(err, code, "accepts[%zu] amount %llu is over the step's approved price %llu", best_i,
                 (unsigned long long)q->amount, (unsigned long long)p->approved_price);
            break;
        case 4:
            code = X4_X402_E_OVER_TX_CAP;
            fail(err, code, "accepts[%zu] amount %llu is over the per-transaction cap %llu", best_i,
                 (unsigned long long)q->amount, (unsigned long long)p->per_tx_cap);
            break;
        default:
            code = X4_X402_E_OVER_HOLD;
            fail(err, code, "accepts[%zu] amount %llu is over the workflow's remaining hold %llu", best_i,
                 (unsigned long long)q->amount, (unsigned long long)p->remaining_hold);
            break;
        }
    }
out:
    free(mints);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* 3. the payment                                                                             */

static int b64_encode(const char *s, size_t n, char **out) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *b = malloc(cap);
    *out = NULL;
    if (!b) return -1;
    sodium_bin2base64(b, cap, (const unsigned char *)s, n, sodium_base64_VARIANT_ORIGINAL);
    *out = b;
    return 0;
}

/* json_object_set_new that fails on a NULL value (a failed deep copy or allocation). */
static int set_new(json_t *o, const char *k, json_t *v) {
    if (!v) return -1;
    return json_object_set_new(o, k, v);
}

int x4_x402_build_payment(const x4_x402_challenge *c, size_t index, const x4_x402_build_in *in,
                          x4_x402_payment *out, x4_x402_error *err) {
    const x4_x402_requirement *q;
    x4_sol_exact_params prm;
    x4_sol_exact_payment pay;
    x4_sol_pubkey me;
    json_t *doc = NULL, *ext;
    char *json = NULL, bad[X4_X402_REASON_MAX];
    memset(&pay, 0, sizeof pay);
    memset(&prm, 0, sizeof prm);
    if (!out) return fail(err, X4_X402_E_ARG, "no output");
    memset(out, 0, sizeof *out);
    ok(err);
    if (!c || !in || !in->payer) { fail(err, X4_X402_E_ARG, "missing challenge or keypair"); goto err; }
    if (index >= c->naccepts) { fail(err, X4_X402_E_ARG, "requirement %zu does not exist", index); goto err; }
    q = &c->accepts[index];
    if (!q->solana || strcmp(q->scheme, "exact") != 0 || !q->has_fee_payer) {
        fail(err, X4_X402_E_ARG, "accepts[%zu] is not a Solana exact requirement", index);
        goto err;
    }
    prm.token_program = in->token_program ? *in->token_program : x4_sol_token_program;
    if (!x4_sol_pubkey_eq(&prm.token_program, &x4_sol_token_program) &&
        !x4_sol_pubkey_eq(&prm.token_program, &x4_sol_token2022_program)) {
        fail(err, X4_X402_E_ARG, "token program is neither Token nor Token-2022");
        goto err;
    }
    if (in->decimals > 255 || in->decimals < X4_X402_DECIMALS_ZERO) {
        fail(err, X4_X402_E_ARG, "decimals %d out of range", in->decimals);
        goto err;
    }
    prm.decimals = (uint8_t)(in->decimals == 0 ? 6 : in->decimals == X4_X402_DECIMALS_ZERO ? 0 : in->decimals);
    prm.fee_payer = q->fee_payer_key;
    prm.mint = q->asset_key;
    prm.pay_to = q->pay_to_key;
    prm.amount = q->amount;
    prm.cu_price = in->cu_price ? in->cu_price : X4_SOL_EXACT_CU_PRICE;
    if (q->has_recent_blockhash) {
        memcpy(prm.blockhash, q->recent_blockhash, 32);
        out->last_valid_block_height = q->recent_last_valid;
        out->blockhash_from_server = true;
    } else if (in->blockhash) {
        memcpy(prm.blockhash, in->blockhash, 32);
        out->last_valid_block_height = in->last_valid_block_height;
    } else {
        fail(err, X4_X402_E_ARG, "no blockhash (the requirement has no extra.recentBlockhash)");
        goto err;
    }
    if (c->version == 1) {
        prm.omit_memo = true;  /* x402 1.2.0: exactly 3 instructions */
    } else if (q->memo[0]) {
        prm.memo = (const uint8_t *)q->memo;
        prm.memo_len = strlen(q->memo);
    }
    /* Without our own nonce in a memo (v1, or a memo the server chose) two payments of the same
     * amount to the same payTo under one blockhash would be the same bytes, hence the same
     * signature: one would land for two calls and two payment records would share a signature.
     * A random compute-unit price (1..1000 micro-lamports: at most 20 lamports more fee, paid
     * by the facilitator) keeps every payment distinct. */
    if (!in->cu_price && (prm.omit_memo || prm.memo)) prm.cu_price = 1 + randombytes_uniform(1000);
    if (x4_sol_exact_build(in->payer, &prm, &pay, bad, sizeof bad) != 0) {
        fail(err, X4_X402_E_BUILD, "cannot build the payment: %s", bad);
        goto err;
    }

    if (c->version == 1) {
        doc = json_pack("{s:i, s:s, s:s, s:{s:s}}", "x402Version", 1, "scheme", q->scheme, "network",
                        q->network, "payload", "transaction", pay.tx_base64);
        if (!doc) { fail(err, X4_X402_E_NOMEM, "out of memory"); goto err; }
    } else {
        doc = json_object();
        ext = json_object_get(c->root, "extensions");
        if (!doc || set_new(doc, "x402Version", json_integer(2)) != 0 ||
            set_new(doc, "resource", json_deep_copy(json_object_get(c->root, "resource"))) != 0 ||
            set_new(doc, "accepted", json_deep_copy(q->raw)) != 0 ||
            set_new(doc, "payload", json_pack("{s:s}", "transaction", pay.tx_base64)) != 0 ||
            (json_is_object(ext) && set_new(doc, "extensions", json_deep_copy(ext)) != 0)) {
            fail(err, X4_X402_E_NOMEM, "out of memory");
            goto err;
        }
    }
    if (!(json = json_dumps(doc, JSON_COMPACT)) || b64_encode(json, strlen(json), &out->header_value) != 0) {
        fail(err, X4_X402_E_NOMEM, "out of memory");
        goto err;
    }
    out->version = c->version;
    out->header_name = c->version == 1 ? "X-PAYMENT" : "PAYMENT-SIGNATURE";
    memcpy(out->memo, pay.memo, sizeof out->memo);
    memcpy(out->signature, pay.signature, sizeof out->signature);
    x4_b58_encode(prm.blockhash, 32, out->blockhash, sizeof out->blockhash);
    out->amount = q->amount;
    x4_sol_pubkey_to_b58(&q->asset_key, out->asset);
    x4_sol_pubkey_to_b58(&q->pay_to_key, out->pay_to);
    memcpy(out->network, q->network, sizeof out->network);
    x4_keypair_pubkey(in->payer, me.b);
    x4_sol_pubkey_to_b58(&me, out->payer);
    x4_sol_pubkey_to_b58(&pay.source_ata, out->source_ata);
    x4_sol_pubkey_to_b58(&pay.destination_ata, out->destination_ata);
    free(json);
    json_decref(doc);
    x4_sol_exact_payment_free(&pay);
    return 0;
err:
    free(json);
    json_decref(doc);
    x4_sol_exact_payment_free(&pay);
    free(out->header_value);
    memset(out, 0, sizeof *out);
    return -1;
}

void x4_x402_payment_free(x4_x402_payment *p) {
    if (!p) return;
    free(p->header_value);
    p->header_value = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* 4. the settlement                                                                          */

static void copy_trunc(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

int x4_x402_settle_response_parse(const char *b64, x4_x402_settlement *out, x4_x402_error *err) {
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    json_t *root = NULL, *v;
    const char *s;
    uint64_t sigcheck[8];
    int rc = -1;
    if (!out) return fail(err, X4_X402_E_ARG, "no output");
    memset(out, 0, sizeof *out);
    ok(err);
    if (!b64) return fail(err, X4_X402_E_UNSETTLED, "no settlement header");
    if (b64_decode(b64, "settlement header", &raw, &rawlen, err) != 0) goto out;
    if (json_decode((const char *)raw, rawlen, "settlement header", &root, err) != 0) goto out;
    v = json_object_get(root, "success");
    if (!json_is_boolean(v)) {
        fail(err, X4_X402_E_FIELD, "settlement success is %s", v ? "not a boolean" : "missing");
        goto out;
    }
    out->success = json_is_true(v);
    if (get_str(root, "errorReason", false, 0, ERROR_FIELD_MAX, "settlement ", &s, err) != 0) goto out;
    if (s) copy_trunc(out->error_reason, sizeof out->error_reason, s);
    if (get_str(root, "errorMessage", false, 0, ERROR_FIELD_MAX * 4, "settlement ", &s, err) != 0) goto out;
    if (s) copy_trunc(out->error_message, sizeof out->error_message, s);
    if (get_str(root, "transaction", out->success, 0, X4_SOL_B58_SIG_MAX - 1, "settlement ", &s, err) != 0)
        goto out;
    if (s && *s) {
        if (strlen(s) < 64 || x4_b58_decode_exact(s, (uint8_t *)sigcheck, 64) != 0) {
            fail(err, X4_X402_E_ADDRESS, "settlement transaction is not a base58 signature of 64 bytes");
            goto out;
        }
        memcpy(out->transaction, s, strlen(s) + 1);
    } else if (out->success) {
        fail(err, X4_X402_E_FIELD, "a successful settlement without a transaction id");
        goto out;
    }
    if (get_str(root, "network", out->success, 1, X4_X402_NETWORK_MAX, "settlement ", &s, err) != 0) goto out;
    if (s) memcpy(out->network, s, strlen(s) + 1);
    if (get_str(root, "payer", false, 0, 64, "settlement ", &s, err) != 0) goto out;
    if (s && *s) {
        x4_sol_pubkey k;
        if (decode_key(s, "settlement ", "payer", &k, err) != 0) goto out;
        memcpy(out->payer, s, strlen(s) + 1);
    }
    if (get_str(root, "amount", false, 0, 64, "settlement ", &s, err) != 0) goto out;
    if (s && *s) {
        if (parse_u64(s, &out->amount) != 0) {
            fail(err, X4_X402_E_AMOUNT, "settlement amount is not a uint64 decimal string");
            goto out;
        }
        out->has_amount = true;
    }
    rc = 0;
out:
    if (rc != 0) memset(out, 0, sizeof *out);
    free(raw);
    json_decref(root);
    return rc;
}

x4_x402_outcome x4_x402_read_settlement(const x4_x402_payment *sent, int version, long status,
                                        const char *settle_header, const char *payment_required,
                                        const char *body, size_t body_len,
                                        x4_x402_settlement *out, x4_x402_error *err) {
    x4_x402_settlement tmp;
    x4_x402_error perr;
    x4_x402_challenge *c = NULL;
    if (!out) out = &tmp;
    memset(out, 0, sizeof *out);
    ok(err);
    if (sent) version = sent->version;
    (void)version;  /* the caller picked the header by version; both bodies read the same */
    if (settle_header) {
        if (x4_x402_settle_response_parse(settle_header, out, &perr) != 0) {
            if (status == 402) goto rejected;  /* a 402 is final whatever its header says */
            if (err) *err = perr;
            return X4_X402_SETTLEMENT_INVALID;
        }
        if (!out->success) {
            if (status == 402) {
                fail(err, X4_X402_E_REJECTED, "payment rejected: %s",
                     out->error_reason[0] ? out->error_reason : "settlement failed");
                return X4_X402_REJECTED;
            }
            fail(err, X4_X402_E_SETTLE_FAILED, "settlement failed: %s%s%s",
                 out->error_reason[0] ? out->error_reason : "no reason given",
                 out->error_message[0] ? ": " : "", out->error_message);
            return X4_X402_SETTLE_FAILED;
        }
        if (status == 402) {
            fail(err, X4_X402_E_MISMATCH, "a 402 carrying a successful settlement %s", out->transaction);
            return X4_X402_SETTLEMENT_INVALID;
        }
        if (sent) {
            if (strcmp(out->network, sent->network) != 0) {
                fail(err, X4_X402_E_MISMATCH, "settled on %s, paid on %s", out->network, sent->network);
                return X4_X402_SETTLEMENT_INVALID;
            }
            if (out->payer[0] && strcmp(out->payer, sent->payer) != 0) {
                fail(err, X4_X402_E_MISMATCH, "settlement payer %s is not us (%s)", out->payer, sent->payer);
                return X4_X402_SETTLEMENT_INVALID;
            }
            if (out->has_amount && out->amount != sent->amount) {
                fail(err, X4_X402_E_MISMATCH, "settled amount %llu, paid %llu",
                     (unsigned long long)out->amount, (unsigned long long)sent->amount);
                return X4_X402_SETTLEMENT_INVALID;
            }
        }
        return X4_X402_SETTLED;
    }
    if (status != 402) {
        fail(err, X4_X402_E_UNSETTLED, "status %ld without a settlement header", status);
        return X4_X402_UNSETTLED;
    }
rejected:
    memset(out, 0, sizeof *out);
    if (x4_x402_parse_challenge(status, payment_required, body, body_len, &c, &perr) == 0) {
        copy_trunc(out->error_reason, sizeof out->error_reason,
                   c->error && *c->error ? c->error : "402 without a reason");
        x4_x402_challenge_free(c);
    } else {
        snprintf(out->error_reason, sizeof out->error_reason, "unreadable 402 (%.200s)", perr.text);
    }
    fail(err, X4_X402_E_REJECTED, "payment rejected: %s", out->error_reason);
    return X4_X402_REJECTED;
}

x4_x402_outcome x4_x402_read_settlement_resp(const x4_x402_payment *sent, int version,
                                             const x4_httpc_resp *resp,
                                             x4_x402_settlement *out, x4_x402_error *err) {
    const char *h;
    if (sent) version = sent->version;
    if (!resp) {
        if (out) memset(out, 0, sizeof *out);
        fail(err, X4_X402_E_UNSETTLED, "no response");
        return X4_X402_UNSETTLED;
    }
    h = x4_httpc_header_get(resp, version == 1 ? "x-payment-response" : "payment-response");
    return x4_x402_read_settlement(sent, version, resp->code, h,
                                   x4_httpc_header_get(resp, "payment-required"), resp->body,
                                   resp->body_len, out, err);
}
