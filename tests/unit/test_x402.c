/* tests/unit/test_x402.c — engine/pay/x402.c against REAL wire data captured from the local
 * marketplace (tests/fixtures/x402/ JSON files, made by tests/fixtures/x402/capture.mjs with
 * @x402/express, @x402/hono, x402-express v1 and the @x402/fetch client): parsing each challenge,
 * the spending rules, hostile challenges, building the payment and decoding our own header back
 * (the transaction re-parsed by solana.h), and settlements (success, failures, a second 402).
 *
 * Last test (integration_marketplace): when Node and the marketplace's node_modules are present
 * (or X4_MARKETPLACE_DIR names a running one), it starts the marketplace and pays real v2
 * (express, hono) and v1 services with headers built here in C, sent with blocking libcurl
 * calls — the facilitator accepting and settling them is the proof. Skipped otherwise. */
#define _GNU_SOURCE
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pay/keypair.h"
#include "pay/solana.h"
#include "pay/x402.h"
#include "unit.h"

/* ------------------------------------------------------------------------------------------ */
/* fixtures                                                                                   */

typedef struct {
    json_t *j;  /* {service, url, status, headers, body} */
    long status;
    const char *body;
    x4_httpc_header hdrs[32];
    x4_httpc_resp resp;
} fixture;

static json_t *load_json(const char *name) {
    char path[1024];
    json_error_t e;
    json_t *j;
    snprintf(path, sizeof path, "%s/tests/fixtures/x402/%s", X4_SOURCE_DIR, name);
    j = json_load_file(path, 0, &e);
    if (!j) fprintf(stderr, "  cannot load %s: %s\n", path, e.text);
    return j;
}

static int fx_load(fixture *f, const char *name) {
    const char *k;
    json_t *v;
    size_t n = 0;
    memset(f, 0, sizeof *f);
    if (!(f->j = load_json(name))) return -1;
    f->status = (long)json_integer_value(json_object_get(f->j, "status"));
    f->body = json_string_value(json_object_get(f->j, "body"));
    json_object_foreach(json_object_get(f->j, "headers"), k, v) {
        if (n < 32) f->hdrs[n].name = k, f->hdrs[n].value = json_string_value(v), n++;
    }
    f->resp.status = X4_HTTPC_OK;
    f->resp.code = f->status;
    f->resp.body = (char *)f->body;
    f->resp.body_len = f->body ? strlen(f->body) : 0;
    f->resp.headers = f->hdrs;
    f->resp.nheaders = n;
    return 0;
}

static const char *fx_hdr(const fixture *f, const char *name) {
    return json_string_value(json_object_get(json_object_get(f->j, "headers"), name));
}

static void fx_free(fixture *f) { json_decref(f->j); }

static json_t *market(void) {
    static json_t *m;
    if (!m) m = load_json("market.json");
    return m;
}
static const char *mk(const char *k) { return json_string_value(json_object_get(market(), k)); }
static const char *mk_payto(const char *svc) {
    return json_string_value(json_object_get(json_object_get(market(), "payTo"), svc));
}

/* base64 <-> JSON for building hostile variants of the real challenge */
static json_t *b64_json(const char *b64) {
    size_t n = strlen(b64), len = 0;
    unsigned char *buf = malloc(n);
    json_t *j = NULL;
    if (buf && sodium_base642bin(buf, n, b64, n, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0)
        j = json_loadb((const char *)buf, len, 0, NULL);
    free(buf);
    return j;
}

static char *b64_of(const char *s, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *o = malloc(cap);
    if (o) sodium_bin2base64(o, cap, (const unsigned char *)s, n, sodium_base64_VARIANT_ORIGINAL);
    return o;
}

static char *json_b64(const json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT), *o;
    if (!s) return NULL;
    o = b64_of(s, strlen(s));
    free(s);
    return o;
}

static json_t *real_v2(void) {  /* the express challenge, decoded */
    fixture f;
    json_t *j = NULL;
    if (fx_load(&f, "v2_express_402.json") == 0) j = b64_json(fx_hdr(&f, "payment-required"));
    fx_free(&f);
    return j;
}

static json_t *real_v1(void) {
    fixture f;
    json_t *j = NULL;
    if (fx_load(&f, "v1_402.json") == 0) j = json_loads(f.body, 0, NULL);
    fx_free(&f);
    return j;
}

/* Parses a v2 challenge given as JSON; returns the error code (X4_X402_OK on success). */
static x4_x402_code parse_v2_json(const json_t *j, x4_x402_challenge **out) {
    x4_x402_error e;
    x4_x402_challenge *c = NULL;
    char *h = json_b64(j);
    int rc = x4_x402_parse_challenge(402, h, "{}", 2, &c, &e);
    free(h);
    if (rc != 0) {
        CHECK(c == NULL);
        CHECK(e.code != X4_X402_OK && e.text[0] != 0);
        return e.code;
    }
    if (out) *out = c;
    else x4_x402_challenge_free(c);
    return X4_X402_OK;
}

static x4_x402_code parse_v1_json(const json_t *j) {
    x4_x402_error e;
    x4_x402_challenge *c = NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    int rc = x4_x402_parse_challenge(402, NULL, s, strlen(s), &c, &e);
    free(s);
    x4_x402_challenge_free(c);
    return rc == 0 ? X4_X402_OK : e.code;
}

static json_t *acc0(json_t *root) { return json_array_get(json_object_get(root, "accepts"), 0); }

/* ------------------------------------------------------------------------------------------ */
/* 1. parsing the real challenges                                                             */

static void check_real_v2(const char *file, const char *svc, uint64_t amount) {
    fixture f;
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    x4_sol_pubkey k;
    CHECK(fx_load(&f, file) == 0);
    CHECK(x4_x402_parse_challenge_resp(&f.resp, &c, &e) == 0);
    if (!c) { fprintf(stderr, "  %s: %s\n", file, e.text); fx_free(&f); return; }
    CHECK_EQ_INT(c->version, 2);
    CHECK_EQ_STR(c->error, "Payment required");
    CHECK_EQ_STR(c->resource_url, json_string_value(json_object_get(f.j, "url")));
    CHECK_EQ_INT(c->naccepts, 1);
    CHECK_EQ_STR(c->accepts[0].scheme, "exact");
    CHECK_EQ_STR(c->accepts[0].network, mk("network"));
    CHECK(c->accepts[0].solana);
    CHECK(c->accepts[0].amount == amount);
    CHECK_EQ_STR(c->accepts[0].pay_to, mk_payto(svc));
    CHECK_EQ_STR(c->accepts[0].asset, mk("mint"));
    CHECK_EQ_INT(c->accepts[0].max_timeout_seconds, 60);
    CHECK(c->accepts[0].has_fee_payer);
    CHECK(x4_sol_pubkey_from_b58(mk("feePayer"), &k) == 0 && x4_sol_pubkey_eq(&k, &c->accepts[0].fee_payer_key));
    CHECK(!c->accepts[0].has_recent_blockhash && c->accepts[0].memo[0] == 0);
    CHECK(json_is_object(c->accepts[0].raw));
    x4_x402_challenge_free(c);
    fx_free(&f);
}

X4_TEST(parse_real_v2_express) { check_real_v2("v2_express_402.json", "dex_volume", 1000); }
X4_TEST(parse_real_v2_hono) { check_real_v2("v2_hono_402.json", "sentiment_analysis", 1500); }

X4_TEST(parse_real_overcap) {
    fixture f;
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    CHECK(fx_load(&f, "overcap_402.json") == 0);
    CHECK(x4_x402_parse_challenge_resp(&f.resp, &c, &e) == 0);
    CHECK(c && c->naccepts == 1 && c->accepts[0].amount == 5000000);
    x4_x402_challenge_free(c);
    fx_free(&f);
}

X4_TEST(parse_real_v1) {
    fixture f;
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    CHECK(fx_load(&f, "v1_402.json") == 0);
    CHECK(fx_hdr(&f, "payment-required") == NULL);
    CHECK(x4_x402_parse_challenge_resp(&f.resp, &c, &e) == 0);
    if (!c) { fprintf(stderr, "  %s\n", e.text); fx_free(&f); return; }
    CHECK_EQ_INT(c->version, 1);
    CHECK_EQ_STR(c->error, "X-PAYMENT header is required");
    CHECK_EQ_INT(c->naccepts, 1);
    CHECK_EQ_STR(c->accepts[0].network, "solana-devnet");
    CHECK(c->accepts[0].amount == 1000);
    CHECK_EQ_STR(c->accepts[0].pay_to, mk_payto("whale_alerts"));
    CHECK_EQ_STR(c->resource_url, json_string_value(json_object_get(f.j, "url")));
    CHECK(c->accepts[0].has_fee_payer);
    x4_x402_challenge_free(c);
    fx_free(&f);
}

X4_TEST(parse_wrong_status_and_no_challenge) {
    x4_x402_challenge *c = (x4_x402_challenge *)1;
    x4_x402_error e;
    CHECK(x4_x402_parse_challenge(200, NULL, "{}", 2, &c, &e) == -1 && e.code == X4_X402_E_NOT_402 && c == NULL);
    CHECK(x4_x402_parse_challenge(402, NULL, NULL, 0, &c, &e) == -1 && e.code == X4_X402_E_NO_CHALLENGE);
    CHECK(x4_x402_parse_challenge(402, NULL, "{}", 2, &c, &e) == -1 && e.code == X4_X402_E_NO_CHALLENGE);
    CHECK(x4_x402_parse_challenge(402, NULL, "Payment Required", 16, &c, &e) == -1 && e.code == X4_X402_E_NO_CHALLENGE);
    CHECK(strstr(e.text, "402") != NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* 2. choosing                                                                                */

static x4_x402_challenge *parsed(const char *file) {
    fixture f;
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    if (fx_load(&f, file) == 0) CHECK(x4_x402_parse_challenge_resp(&f.resp, &c, &e) == 0);
    fx_free(&f);
    return c;
}

static x4_x402_code choose(const x4_x402_challenge *c, const char *net, const char *asset,
                           uint64_t price, uint64_t cap, uint64_t hold, size_t *idx) {
    const char *assets[1] = {asset};
    x4_x402_policy p = {net, assets, 1, price, cap, hold};
    x4_x402_error e;
    size_t i = 999;
    int rc = x4_x402_choose(c, &p, &i, &e);
    if (idx) *idx = i;
    CHECK((rc == 0) == (e.code == X4_X402_OK));
    if (rc != 0) CHECK(e.text[0] != 0);
    return e.code;
}

X4_TEST(choose_rules_on_real_challenges) {
    x4_x402_challenge *v2 = parsed("v2_express_402.json"), *v1 = parsed("v1_402.json"),
                      *over = parsed("overcap_402.json");
    const char *usdc = mk("mint");
    size_t i = 9;
    CHECK(v2 && v1 && over);
    if (!v2 || !v1 || !over) goto out;
    /* allowed, with each spelling of the network, in both versions */
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 1000, 1000, 1000, &i), X4_X402_OK);
    CHECK_EQ_INT(i, 0);
    CHECK_EQ_INT(choose(v2, "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", usdc, 5000, 5000, 5000, NULL), X4_X402_OK);
    CHECK_EQ_INT(choose(v2, "solana-devnet", usdc, 5000, 5000, 5000, NULL), X4_X402_OK);
    CHECK_EQ_INT(choose(v1, "devnet", usdc, 1000, 1000, 1000, NULL), X4_X402_OK);
    CHECK_EQ_INT(choose(v1, "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", usdc, 1000, 1000, 1000, NULL), X4_X402_OK);
    /* wrong network */
    CHECK_EQ_INT(choose(v2, "mainnet", usdc, 5000, 5000, 5000, NULL), X4_X402_E_NETWORK);
    CHECK_EQ_INT(choose(v1, "testnet", usdc, 5000, 5000, 5000, NULL), X4_X402_E_NETWORK);
    /* unknown configured network */
    CHECK_EQ_INT(choose(v2, "base-sepolia", usdc, 5000, 5000, 5000, NULL), X4_X402_E_POLICY);
    /* wrong asset */
    CHECK_EQ_INT(choose(v2, "devnet", mk("wrongMint"), 5000, 5000, 5000, NULL), X4_X402_E_ASSET);
    CHECK_EQ_INT(choose(v2, "devnet", "not-a-mint", 5000, 5000, 5000, NULL), X4_X402_E_POLICY);
    /* one atomic unit over each limit, in order */
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 999, 5000, 5000, NULL), X4_X402_E_OVER_PRICE);
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 5000, 999, 5000, NULL), X4_X402_E_OVER_TX_CAP);
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 5000, 5000, 999, NULL), X4_X402_E_OVER_HOLD);
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 999, 999, 999, NULL), X4_X402_E_OVER_PRICE);
    CHECK_EQ_INT(choose(v2, "devnet", usdc, 1000, 999, 999, NULL), X4_X402_E_OVER_TX_CAP);
    /* the real over-cap service: $5 against a $1 cap */
    CHECK_EQ_INT(choose(over, "devnet", usdc, 10000000, 1000000, 10000000, NULL), X4_X402_E_OVER_TX_CAP);
out:
    x4_x402_challenge_free(v2);
    x4_x402_challenge_free(v1);
    x4_x402_challenge_free(over);
}

X4_TEST(choose_reason_names_the_closest_requirement) {
    json_t *j = real_v2(), *a, *evm, *upto, *dear, *good;
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    const char *usdc = mk("mint");
    size_t i = 99;
    CHECK(j != NULL);
    if (!j) return;
    a = json_object_get(j, "accepts");
    good = json_deep_copy(acc0(j));
    /* [EVM exact, Solana "upto", Solana exact at 5 USDC, the real one] */
    evm = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:{}}", "scheme", "exact", "network", "eip155:8453",
                    "amount", "1000000000000000000000", "asset", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                    "payTo", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds", 60, "extra");
    upto = json_deep_copy(good);
    json_object_set_new(upto, "scheme", json_string("upto"));
    dear = json_deep_copy(good);
    json_object_set_new(dear, "amount", json_string("5000000"));
    json_array_clear(a);
    json_array_append_new(a, evm);
    json_array_append_new(a, upto);
    json_array_append_new(a, dear);
    json_array_append_new(a, good);
    CHECK_EQ_INT(parse_v2_json(j, &c), X4_X402_OK);
    if (!c) { json_decref(j); return; }
    CHECK(!c->accepts[0].solana && c->accepts[0].amount == UINT64_MAX);
    CHECK_EQ_INT(choose(c, "devnet", usdc, 1000, 1000, 1000, &i), X4_X402_OK);
    CHECK_EQ_INT(i, 3);  /* the first that passes every rule */
    /* the EVM entry is exact but on another chain; the 5 USDC one got furthest */
    CHECK_EQ_INT(choose(c, "devnet", usdc, 999, 10000000, 10000000, NULL), X4_X402_E_OVER_PRICE);
    {
        const char *assets[1] = {usdc};
        x4_x402_policy p = {"devnet", assets, 1, 10000000, 999, 10000000};
        CHECK(x4_x402_choose(c, &p, &i, &e) == -1 && e.code == X4_X402_E_OVER_TX_CAP);
        CHECK(strstr(e.text, "accepts[2]") && strstr(e.text, "5000000") && strstr(e.text, "999"));
    }
    CHECK_EQ_INT(choose(c, "mainnet", usdc, 1000, 1000, 1000, NULL), X4_X402_E_NETWORK);
    x4_x402_challenge_free(c);
    c = NULL;
    /* only non-exact schemes: no exact scheme; nothing at all: no exact scheme */
    json_array_clear(a);
    json_array_append_new(a, json_deep_copy(upto));
    CHECK_EQ_INT(parse_v2_json(j, &c), X4_X402_OK);
    if (c) CHECK_EQ_INT(choose(c, "devnet", usdc, 1000, 1000, 1000, NULL), X4_X402_E_NO_EXACT);
    x4_x402_challenge_free(c);
    c = NULL;
    json_array_clear(a);
    CHECK_EQ_INT(parse_v2_json(j, &c), X4_X402_OK);
    if (c) CHECK_EQ_INT(choose(c, "devnet", usdc, 1000, 1000, 1000, NULL), X4_X402_E_NO_EXACT);
    x4_x402_challenge_free(c);
    json_decref(j);
}

X4_TEST(network_resolve) {
    const char *v1 = NULL, *c2 = NULL;
    CHECK(x4_x402_network_resolve("devnet", &v1, &c2) == 0);
    CHECK_EQ_STR(v1, "solana-devnet");
    CHECK_EQ_STR(c2, "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
    CHECK(x4_x402_network_resolve("mainnet", &v1, &c2) == 0);
    CHECK_EQ_STR(v1, "solana");
    CHECK_EQ_STR(c2, "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
    CHECK(x4_x402_network_resolve("solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z", &v1, &c2) == 0);
    CHECK_EQ_STR(v1, "solana-testnet");
    CHECK(x4_x402_network_resolve("solana:abc", &v1, &c2) == -1);
    CHECK(x4_x402_network_resolve("Devnet", &v1, &c2) == -1);
    CHECK(x4_x402_network_resolve(NULL, &v1, &c2) == -1);
}

/* ------------------------------------------------------------------------------------------ */
/* hostile challenges                                                                         */

/* Applies one change to the real v2 requirement (or root) and returns the parse result. */
static x4_x402_code v2_with(const char *key, json_t *val, bool in_requirement) {
    json_t *j = real_v2();
    x4_x402_code c;
    if (!j) { json_decref(val); return X4_X402_OK; }
    json_t *target = in_requirement ? acc0(j) : j;
    if (val) json_object_set_new(target, key, val);
    else json_object_del(target, key);
    c = parse_v2_json(j, NULL);
    json_decref(j);
    return c;
}

static x4_x402_code v2_extra_with(const char *key, json_t *val) {
    json_t *j = real_v2();
    x4_x402_code c;
    if (!j) { json_decref(val); return X4_X402_OK; }
    json_t *extra = json_object_get(acc0(j), "extra");
    if (val) json_object_set_new(extra, key, val);
    else json_object_del(extra, key);
    c = parse_v2_json(j, NULL);
    json_decref(j);
    return c;
}

static x4_x402_code raw_header(const char *h) {
    x4_x402_challenge *c = NULL;
    x4_x402_error e;
    int rc = x4_x402_parse_challenge(402, h, "{}", 2, &c, &e);
    CHECK(rc == 0 || c == NULL);
    x4_x402_challenge_free(c);
    return rc == 0 ? X4_X402_OK : e.code;
}

static x4_x402_code raw_json_header(const char *json) {
    char *h = b64_of(json, strlen(json));
    x4_x402_code c = raw_header(h);
    free(h);
    return c;
}

X4_TEST(hostile_encoding) {
    char *big;
    CHECK_EQ_INT(raw_header(""), X4_X402_E_BASE64);
    CHECK_EQ_INT(raw_header("   "), X4_X402_E_BASE64);
    CHECK_EQ_INT(raw_header("!!!not base64!!!"), X4_X402_E_BASE64);
    CHECK_EQ_INT(raw_header("eyJ4NDAy VmVyc2lvbiI6Mn0="), X4_X402_E_BASE64);  /* blank inside */
    CHECK_EQ_INT(raw_header("eyJ4NDAyVmVyc2lvbiI6Mn0=garbage"), X4_X402_E_BASE64);
    CHECK_EQ_INT(raw_json_header("hello"), X4_X402_E_JSON);
    CHECK_EQ_INT(raw_json_header("[1,2]"), X4_X402_E_JSON);
    CHECK_EQ_INT(raw_json_header("{\"x402Version\":2,"), X4_X402_E_JSON);
    CHECK_EQ_INT(raw_json_header("{\"x402Version\":2,\"x402Version\":1}"), X4_X402_E_JSON);  /* duplicate */
    CHECK_EQ_INT(raw_json_header("{\"x402Version\":100000000000000000000000000000}"), X4_X402_E_JSON);
    /* 1 MB header: refused before decoding */
    big = malloc(1024 * 1024 + 1);
    CHECK(big != NULL);
    if (big) {
        memset(big, 'A', 1024 * 1024);
        big[1024 * 1024] = 0;
        CHECK_EQ_INT(raw_header(big), X4_X402_E_TOO_LARGE);
        /* a 1 MB v1 body too */
        {
            x4_x402_challenge *c = NULL;
            x4_x402_error e;
            CHECK(x4_x402_parse_challenge(402, NULL, big, 1024 * 1024, &c, &e) == -1 && e.code == X4_X402_E_TOO_LARGE);
        }
        free(big);
    }
    /* deep nesting does not crash */
    {
        size_t n = 100000;
        char *deep = malloc(2 * n + 64);
        if (deep) {
            memset(deep, '[', n);
            memset(deep + n, ']', n);
            deep[2 * n] = 0;
            CHECK(raw_json_header(deep) != X4_X402_OK);
            free(deep);
        }
    }
}

X4_TEST(hostile_root_fields) {
    char *s;
    json_t *j, *a;
    CHECK_EQ_INT(raw_json_header("{\"accepts\":[]}"), X4_X402_E_VERSION);
    CHECK_EQ_INT(v2_with("x402Version", json_integer(3), false), X4_X402_E_VERSION);
    CHECK_EQ_INT(v2_with("x402Version", json_string("2"), false), X4_X402_E_VERSION);
    CHECK_EQ_INT(v2_with("x402Version", json_integer(1), false), X4_X402_E_VERSION);
    CHECK_EQ_INT(v2_with("x402Version", json_real(2.0), false), X4_X402_E_VERSION);
    CHECK_EQ_INT(v2_with("accepts", NULL, false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("accepts", json_string("exact"), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("accepts", json_pack("[i]", 1), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("resource", NULL, false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("resource", json_string("http://x"), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("resource", json_pack("{s:i}", "url", 5), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("error", json_integer(5), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("extensions", json_string("x"), false), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("error", json_null(), false), X4_X402_OK);
    /* too many accepts: 33 copies of the real one (32 are fine) */
    j = real_v2();
    if (j) {
        a = json_object_get(j, "accepts");
        while (json_array_size(a) < X4_X402_MAX_ACCEPTS) json_array_append_new(a, json_deep_copy(acc0(j)));
        CHECK_EQ_INT(parse_v2_json(j, NULL), X4_X402_OK);
        json_array_append_new(a, json_deep_copy(acc0(j)));
        CHECK_EQ_INT(parse_v2_json(j, NULL), X4_X402_E_TOO_MANY);
        json_decref(j);
    }
    /* a v2 challenge in a body without the header, and a v1 body with a bad version */
    j = real_v2();
    if (j) {
        x4_x402_challenge *c = NULL;
        x4_x402_error e;
        s = json_dumps(j, JSON_COMPACT);
        CHECK(x4_x402_parse_challenge(402, NULL, s, strlen(s), &c, &e) == -1 && e.code == X4_X402_E_VERSION);
        free(s);
        json_decref(j);
    }
    j = real_v1();
    if (j) {
        json_object_set_new(j, "x402Version", json_integer(7));
        CHECK_EQ_INT(parse_v1_json(j), X4_X402_E_VERSION);
        json_decref(j);
    }
}

X4_TEST(hostile_requirement_fields) {
    char longs[3000];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = 0;
    /* amounts */
    CHECK_EQ_INT(v2_with("amount", NULL, true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_integer(1000), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_real(0.5), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("-1000"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("10.5"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("1e3"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string(" 1000"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("+1000"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("0x10"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("01000"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string(""), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("0"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("18446744073709551616"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("99999999999999999999999999999999999999"), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string(longs), true), X4_X402_E_AMOUNT);
    CHECK_EQ_INT(v2_with("amount", json_string("18446744073709551615"), true), X4_X402_OK);
    CHECK_EQ_INT(v2_with("maxAmountRequired", json_string("1000"), true), X4_X402_OK); /* ignored in v2 */
    /* addresses */
    CHECK_EQ_INT(v2_with("payTo", json_string("0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl"), true), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_with("payTo", json_string("1111111111111111111111111111111"), true), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_with("payTo", json_string("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"), true), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_with("payTo", json_string(longs), true), X4_X402_E_TOO_LARGE);
    CHECK_EQ_INT(v2_with("payTo", json_integer(7), true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("payTo", NULL, true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("asset", json_string("USDC"), true), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_with("asset", NULL, true), X4_X402_E_FIELD);
    /* a 64-byte signature is not a key */
    CHECK_EQ_INT(v2_with("asset", json_string("4tPiGJi3QoqpHSTqfsHS94KpE2mJd7uVB6AXeWRyVdxQFDGatb8vdKBCooJHnz8aZUp76qm2xyw5HZw7FsRDpbpA"), true),
                 X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_extra_with("feePayer", NULL), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_extra_with("feePayer", json_string("nope")), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_extra_with("feePayer", json_integer(1)), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("extra", NULL, true), X4_X402_E_FIELD);  /* exact needs a fee payer */
    CHECK_EQ_INT(v2_with("extra", json_string("x"), true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_extra_with("recentBlockhash", json_string("xyz")), X4_X402_E_ADDRESS);
    CHECK_EQ_INT(v2_extra_with("lastValidBlockHeight", json_string("-5")), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_extra_with("memo", json_string(longs)), X4_X402_E_TOO_LARGE);
    CHECK_EQ_INT(v2_extra_with("memo", json_integer(3)), X4_X402_E_FIELD);
    /* timeouts */
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", NULL, true), X4_X402_E_TIMEOUT);
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", json_integer(0), true), X4_X402_E_TIMEOUT);
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", json_integer(-60), true), X4_X402_E_TIMEOUT);
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", json_integer(1000000000), true), X4_X402_E_TIMEOUT);
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", json_string("60"), true), X4_X402_E_TIMEOUT);
    CHECK_EQ_INT(v2_with("maxTimeoutSeconds", json_real(60.5), true), X4_X402_E_TIMEOUT);
    /* scheme / network */
    CHECK_EQ_INT(v2_with("scheme", NULL, true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("scheme", json_string("ex act"), true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("scheme", json_string(longs), true), X4_X402_E_TOO_LARGE);
    CHECK_EQ_INT(v2_with("network", json_string(longs), true), X4_X402_E_TOO_LARGE);
    CHECK_EQ_INT(v2_with("network", json_string("solana devnet"), true), X4_X402_E_FIELD);
    CHECK_EQ_INT(v2_with("network", json_null(), true), X4_X402_E_FIELD);
    /* an unknown Solana cluster is still held to Solana's key rules */
    {
        json_t *j = real_v2();
        if (j) {
            json_object_set_new(acc0(j), "network", json_string("solana:unknownCluster"));
            json_object_set_new(acc0(j), "payTo", json_string("bad"));
            CHECK_EQ_INT(parse_v2_json(j, NULL), X4_X402_E_ADDRESS);
            json_decref(j);
        }
    }
}

X4_TEST(hostile_v1_fields) {
    json_t *j = real_v1();
    CHECK(j != NULL);
    if (!j) return;
    CHECK_EQ_INT(parse_v1_json(j), X4_X402_OK);
#define V1_WITH(key, val, want)                                                        \
    do {                                                                               \
        json_t *_c = json_deep_copy(j);                                                \
        json_t *_v = (val);                                                            \
        if (_v) json_object_set_new(acc0(_c), key, _v);                                \
        else json_object_del(acc0(_c), key);                                           \
        CHECK_EQ_INT(parse_v1_json(_c), want);                                         \
        json_decref(_c);                                                               \
    } while (0)
    V1_WITH("maxAmountRequired", NULL, X4_X402_E_AMOUNT);
    V1_WITH("maxAmountRequired", json_string("1.5"), X4_X402_E_AMOUNT);
    V1_WITH("maxAmountRequired", json_integer(1000), X4_X402_E_AMOUNT);
    V1_WITH("resource", NULL, X4_X402_E_FIELD);
    V1_WITH("description", json_integer(1), X4_X402_E_FIELD);
    V1_WITH("mimeType", NULL, X4_X402_E_FIELD);
    V1_WITH("outputSchema", json_string("x"), X4_X402_E_FIELD);
    V1_WITH("outputSchema", json_null(), X4_X402_OK);
    V1_WITH("payTo", json_string("not base58!"), X4_X402_E_ADDRESS);
    V1_WITH("network", json_string("solana-devnet"), X4_X402_OK);
#undef V1_WITH
    json_decref(j);
}

/* ------------------------------------------------------------------------------------------ */
/* 3. building, then decoding our own header                                                  */

static json_t *decode_header(const char *value) { return b64_json(value); }

static char *normal(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS); }

static const uint8_t *ix_account(const x4_sol_tx *tx, size_t ix, size_t k, x4_sol_pubkey *out) {
    memcpy(out->b, tx->m.keys[tx->m.ix[ix].accounts[k]].b, 32);
    return out->b;
}

/* Checks the transaction of a built payment: layout, amounts, keys, signatures. */
static void check_tx(const char *tx_b64, const x4_x402_payment *pay, const x4_x402_requirement *q,
                     const x4_keypair *kp, const x4_sol_pubkey *token_program, uint8_t decimals,
                     size_t want_ix, const char *want_memo) {
    x4_sol_tx *tx = NULL;
    char err[256], b58[X4_SOL_B58_SIG_MAX];
    x4_sol_pubkey me, src, dst, k;
    uint8_t zero[64] = {0}, bh[32];
    uint64_t amount = 0;
    CHECK(x4_sol_tx_parse_base64(tx_b64, &tx, err, sizeof err) == 0);
    if (!tx) { fprintf(stderr, "  %s\n", err); return; }
    memcpy(me.b, kp->pubkey, 32);
    CHECK_EQ_INT(tx->m.version, 0);
    CHECK_EQ_INT(tx->m.nix, want_ix);
    CHECK_EQ_INT(tx->nsigs, 2);
    /* fee payer = extra.feePayer, its slot all zero; our slot verifies */
    CHECK(x4_sol_pubkey_eq(&tx->m.keys[0], &q->fee_payer_key));
    CHECK(memcmp(tx->sigs, zero, 64) == 0);
    CHECK(x4_sol_pubkey_eq(&tx->m.keys[1], &me));
    CHECK(x4_sol_tx_verify_slot(tx, 1) == 1);
    CHECK(x4_sol_tx_verify_slot(tx, 0) == 0);
    x4_sol_signature_to_b58(tx->sigs + 64, b58);
    CHECK_EQ_STR(pay->signature, b58);
    CHECK(x4_sol_blockhash_from_b58(pay->blockhash, bh) == 0 && memcmp(bh, tx->m.blockhash, 32) == 0);
    /* compute budget, compute budget, transfer (, memo) */
    CHECK(x4_sol_pubkey_eq(&tx->m.keys[tx->m.ix[0].program_index], &x4_sol_compute_budget_program));
    CHECK(x4_sol_pubkey_eq(&tx->m.keys[tx->m.ix[1].program_index], &x4_sol_compute_budget_program));
    CHECK(tx->m.ix[0].data_len == 5 && tx->m.ix[0].data[0] == 2);  /* SetComputeUnitLimit */
    CHECK(tx->m.ix[1].data_len == 9 && tx->m.ix[1].data[0] == 3);  /* SetComputeUnitPrice */
    CHECK(x4_sol_pubkey_eq(&tx->m.keys[tx->m.ix[2].program_index], token_program));
    CHECK(tx->m.ix[2].data_len == 10 && tx->m.ix[2].data[0] == 12);  /* TransferChecked */
    if (tx->m.ix[2].data_len == 10) {
        for (int b = 0; b < 8; b++) amount |= (uint64_t)tx->m.ix[2].data[1 + b] << (8 * b);
        CHECK(amount == q->amount);
        CHECK_EQ_INT(tx->m.ix[2].data[9], decimals);
    }
    CHECK(x4_sol_ata(&me, &q->asset_key, token_program, &src, NULL) == 0);
    CHECK(x4_sol_ata(&q->pay_to_key, &q->asset_key, token_program, &dst, NULL) == 0);
    CHECK_EQ_INT(tx->m.ix[2].naccounts, 4);
    if (tx->m.ix[2].naccounts == 4) {
        CHECK(x4_sol_pubkey_eq(&src, (ix_account(tx, 2, 0, &k), &k)));
        CHECK(x4_sol_pubkey_eq(&q->asset_key, (ix_account(tx, 2, 1, &k), &k)));
        CHECK(x4_sol_pubkey_eq(&dst, (ix_account(tx, 2, 2, &k), &k)));
        CHECK(x4_sol_pubkey_eq(&me, (ix_account(tx, 2, 3, &k), &k)));
    }
    {
        char b[X4_SOL_B58_KEY_MAX];
        x4_sol_pubkey_to_b58(&src, b);
        CHECK_EQ_STR(pay->source_ata, b);
        x4_sol_pubkey_to_b58(&dst, b);
        CHECK_EQ_STR(pay->destination_ata, b);
    }
    if (want_ix == 4) {
        CHECK(x4_sol_pubkey_eq(&tx->m.keys[tx->m.ix[3].program_index], &x4_sol_memo_program));
        CHECK(tx->m.ix[3].data_len == strlen(pay->memo) && memcmp(tx->m.ix[3].data, pay->memo, tx->m.ix[3].data_len) == 0);
        if (want_memo) CHECK_EQ_STR(pay->memo, want_memo);
        else CHECK(strlen(pay->memo) == 32 && strspn(pay->memo, "0123456789abcdef") == 32);
    } else {
        CHECK_EQ_STR(pay->memo, "");
    }
    x4_sol_tx_free(tx);
}

static x4_keypair *test_keypair(void) {
    x4_keypair *kp = NULL;
    char err[128];
    CHECK(x4_keypair_generate(&kp, err, sizeof err) == 0);
    return kp;
}

X4_TEST(build_v2_and_decode_it_back) {
    x4_x402_challenge *c = parsed("v2_express_402.json");
    json_t *orig = real_v2(), *doc = NULL;
    x4_keypair *kp = test_keypair();
    x4_x402_payment pay, pay2;
    x4_x402_error e;
    uint8_t bh[32];
    char *a = NULL, *b = NULL;
    CHECK(c && orig && kp);
    if (!c || !orig || !kp) goto out;
    randombytes_buf(bh, sizeof bh);
    x4_x402_build_in in = {.payer = kp, .blockhash = bh, .last_valid_block_height = 4242};
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == 0);
    if (!pay.header_value) { fprintf(stderr, "  %s\n", e.text); goto out; }
    CHECK_EQ_STR(pay.header_name, "PAYMENT-SIGNATURE");
    CHECK_EQ_INT(pay.version, 2);
    /* the record */
    CHECK(pay.amount == 1000);
    CHECK_EQ_STR(pay.asset, mk("mint"));
    CHECK_EQ_STR(pay.pay_to, mk_payto("dex_volume"));
    CHECK_EQ_STR(pay.network, mk("network"));
    CHECK(pay.last_valid_block_height == 4242 && !pay.blockhash_from_server);
    {
        char me[X4_SOL_B58_KEY_MAX];
        x4_sol_pubkey_to_b58((const x4_sol_pubkey *)kp->pubkey, me);
        CHECK_EQ_STR(pay.payer, me);
    }
    /* the header */
    doc = decode_header(pay.header_value);
    CHECK(doc != NULL);
    if (!doc) goto out2;
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "x402Version")), 2);
    a = normal(json_object_get(doc, "accepted"));
    b = normal(acc0(orig));
    CHECK_EQ_STR(a, b);  /* the requirement exactly as received */
    free(a), free(b);
    a = normal(json_object_get(doc, "resource"));
    b = normal(json_object_get(orig, "resource"));
    CHECK_EQ_STR(a, b);
    free(a), free(b);
    a = normal(json_object_get(doc, "extensions"));
    b = normal(json_object_get(orig, "extensions"));
    CHECK_EQ_STR(a, b);
    free(a), free(b);
    a = b = NULL;
    CHECK_EQ_INT(json_object_size(json_object_get(doc, "payload")), 1);
    check_tx(json_string_value(json_object_get(json_object_get(doc, "payload"), "transaction")), &pay,
             &c->accepts[0], kp, &x4_sol_token_program, 6, 4, NULL);
    /* a second payment for the same challenge is a different transaction */
    CHECK(x4_x402_build_payment(c, 0, &in, &pay2, &e) == 0);
    CHECK(strcmp(pay.memo, pay2.memo) != 0 && strcmp(pay.signature, pay2.signature) != 0);
    x4_x402_payment_free(&pay2);
out2:
    x4_x402_payment_free(&pay);
    CHECK(pay.header_value == NULL);
out:
    json_decref(doc);
    json_decref(orig);
    x4_keypair_free(kp);
    x4_x402_challenge_free(c);
}

X4_TEST(build_v1_three_instructions) {
    x4_x402_challenge *c = parsed("v1_402.json");
    x4_keypair *kp = test_keypair();
    x4_x402_payment pay;
    x4_x402_error e;
    json_t *doc = NULL;
    const char *k;
    json_t *v;
    uint8_t bh[32];
    CHECK(c && kp);
    if (!c || !kp) goto out;
    randombytes_buf(bh, sizeof bh);
    x4_x402_build_in in = {.payer = kp, .blockhash = bh, .last_valid_block_height = 7};
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == 0);
    if (!pay.header_value) { fprintf(stderr, "  %s\n", e.text); goto out; }
    CHECK_EQ_STR(pay.header_name, "X-PAYMENT");
    CHECK_EQ_STR(pay.network, "solana-devnet");
    doc = decode_header(pay.header_value);
    CHECK(doc != NULL);
    if (doc) {
        CHECK_EQ_INT(json_object_size(doc), 4);
        json_object_foreach(doc, k, v) CHECK(strcmp(k, "x402Version") == 0 || strcmp(k, "scheme") == 0 ||
                                             strcmp(k, "network") == 0 || strcmp(k, "payload") == 0);
        CHECK_EQ_INT(json_integer_value(json_object_get(doc, "x402Version")), 1);
        CHECK_EQ_STR(json_string_value(json_object_get(doc, "scheme")), "exact");
        CHECK_EQ_STR(json_string_value(json_object_get(doc, "network")), "solana-devnet");
        check_tx(json_string_value(json_object_get(json_object_get(doc, "payload"), "transaction")), &pay,
                 &c->accepts[0], kp, &x4_sol_token_program, 6, 3, NULL);
    }
    /* no memo in v1: two payments under one blockhash must still differ (random CU price) */
    {
        x4_x402_payment again;
        int same = 0;
        for (int t = 0; t < 3; t++) {
            CHECK(x4_x402_build_payment(c, 0, &in, &again, &e) == 0);
            if (strcmp(again.signature, pay.signature) == 0) same++;
            x4_x402_payment_free(&again);
        }
        CHECK(same < 3);
    }
    x4_x402_payment_free(&pay);
    /* a mint without decimals */
    in.decimals = X4_X402_DECIMALS_ZERO;
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == 0);
    json_decref(doc);
    doc = pay.header_value ? decode_header(pay.header_value) : NULL;
    if (doc)
        check_tx(json_string_value(json_object_get(json_object_get(doc, "payload"), "transaction")), &pay,
                 &c->accepts[0], kp, &x4_sol_token_program, 0, 3, NULL);
    x4_x402_payment_free(&pay);
out:
    json_decref(doc);
    x4_keypair_free(kp);
    x4_x402_challenge_free(c);
}

X4_TEST(build_with_server_memo_blockhash_token2022) {
    json_t *j = real_v2(), *extra, *doc = NULL;
    x4_x402_challenge *c = NULL;
    x4_keypair *kp = test_keypair();
    x4_x402_payment pay;
    x4_x402_error e;
    uint8_t sbh[32];
    char sbh58[X4_SOL_B58_KEY_MAX];
    CHECK(j && kp);
    if (!j || !kp) goto out;
    randombytes_buf(sbh, sizeof sbh);
    x4_b58_encode(sbh, 32, sbh58, sizeof sbh58);
    extra = json_object_get(acc0(j), "extra");
    json_object_set_new(extra, "memo", json_string("order-42"));
    json_object_set_new(extra, "recentBlockhash", json_string(sbh58));
    json_object_set_new(extra, "lastValidBlockHeight", json_integer(12345));
    CHECK_EQ_INT(parse_v2_json(j, &c), X4_X402_OK);
    if (!c) goto out;
    CHECK(c->accepts[0].has_recent_blockhash && c->accepts[0].recent_last_valid == 12345);
    /* no caller blockhash needed: the server's is used */
    x4_x402_build_in in = {.payer = kp, .token_program = &x4_sol_token2022_program, .decimals = 9};
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == 0);
    if (!pay.header_value) { fprintf(stderr, "  %s\n", e.text); goto out; }
    CHECK_EQ_STR(pay.blockhash, sbh58);
    CHECK(pay.blockhash_from_server && pay.last_valid_block_height == 12345);
    doc = decode_header(pay.header_value);
    if (doc) {
        char *a = normal(json_object_get(doc, "accepted")), *b = normal(acc0(j));
        CHECK_EQ_STR(a, b);
        free(a), free(b);
        check_tx(json_string_value(json_object_get(json_object_get(doc, "payload"), "transaction")), &pay,
                 &c->accepts[0], kp, &x4_sol_token2022_program, 9, 4, "order-42");
    }
    x4_x402_payment_free(&pay);
out:
    json_decref(doc);
    json_decref(j);
    x4_keypair_free(kp);
    x4_x402_challenge_free(c);
}

X4_TEST(build_refusals) {
    x4_x402_challenge *c = parsed("v2_express_402.json"), *c2 = NULL;
    x4_keypair *kp = test_keypair();
    x4_x402_payment pay;
    x4_x402_error e;
    uint8_t bh[32] = {1};
    json_t *j = real_v2();
    char me[X4_SOL_B58_KEY_MAX];
    CHECK(c && kp && j);
    if (!c || !kp || !j) goto out;
    x4_x402_build_in in = {.payer = kp, .blockhash = bh};
    CHECK(x4_x402_build_payment(c, 1, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG && pay.header_value == NULL);
    in.blockhash = NULL;
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG);
    CHECK(strstr(e.text, "blockhash") != NULL);
    in.blockhash = bh;
    in.token_program = &x4_sol_system_program;
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG);
    in.token_program = NULL;
    in.decimals = 300;
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG);
    in.decimals = -2;
    CHECK(x4_x402_build_payment(c, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG);
    in.decimals = 0;
    /* a challenge whose fee payer is our own wallet would make us pay the fees: refused */
    x4_sol_pubkey_to_b58((const x4_sol_pubkey *)kp->pubkey, me);
    json_object_set_new(json_object_get(acc0(j), "extra"), "feePayer", json_string(me));
    CHECK_EQ_INT(parse_v2_json(j, &c2), X4_X402_OK);
    if (c2) {
        CHECK(x4_x402_build_payment(c2, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_BUILD);
        CHECK(strstr(e.text, "fee payer") != NULL);
    }
    /* a non-exact requirement cannot be built */
    x4_x402_challenge_free(c2);
    c2 = NULL;
    json_object_set_new(acc0(j), "scheme", json_string("upto"));
    json_object_set_new(json_object_get(acc0(j), "extra"), "feePayer", json_string(mk("feePayer")));
    CHECK_EQ_INT(parse_v2_json(j, &c2), X4_X402_OK);
    if (c2) CHECK(x4_x402_build_payment(c2, 0, &in, &pay, &e) == -1 && e.code == X4_X402_E_ARG);
out:
    json_decref(j);
    x4_keypair_free(kp);
    x4_x402_challenge_free(c);
    x4_x402_challenge_free(c2);
}

/* ------------------------------------------------------------------------------------------ */
/* 4. settlements                                                                             */

static x4_x402_payment fake_sent(int version, const char *network, uint64_t amount, const char *payer) {
    x4_x402_payment p;
    memset(&p, 0, sizeof p);
    p.version = version;
    snprintf(p.network, sizeof p.network, "%s", network);
    snprintf(p.payer, sizeof p.payer, "%s", payer);
    p.amount = amount;
    return p;
}

X4_TEST(settlement_real_v2_and_v1) {
    fixture f;
    x4_x402_settlement s;
    x4_x402_error e;
    x4_x402_payment sent = fake_sent(2, mk("network"), 1000, mk("escrow"));
    json_t *dec;
    CHECK(fx_load(&f, "v2_paid_200.json") == 0);
    dec = b64_json(fx_hdr(&f, "payment-response"));
    CHECK_EQ_INT(x4_x402_read_settlement_resp(&sent, 2, &f.resp, &s, &e), X4_X402_SETTLED);
    CHECK(s.success);
    CHECK_EQ_STR(s.transaction, json_string_value(json_object_get(dec, "transaction")));
    CHECK(strlen(s.transaction) >= 86);
    CHECK_EQ_STR(s.network, mk("network"));
    CHECK_EQ_STR(s.payer, mk("escrow"));
    /* the same settlement for someone else's payment, or another network: not ours */
    sent = fake_sent(2, mk("network"), 1000, mk("underfunded"));
    CHECK_EQ_INT(x4_x402_read_settlement_resp(&sent, 2, &f.resp, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_MISMATCH);
    sent = fake_sent(2, "solana-devnet", 1000, mk("escrow"));
    CHECK_EQ_INT(x4_x402_read_settlement_resp(&sent, 2, &f.resp, &s, &e), X4_X402_SETTLEMENT_INVALID);
    /* read as v1 it has no X-PAYMENT-RESPONSE: unsettled */
    CHECK_EQ_INT(x4_x402_read_settlement_resp(NULL, 1, &f.resp, &s, &e), X4_X402_UNSETTLED);
    json_decref(dec);
    fx_free(&f);

    CHECK(fx_load(&f, "v1_paid_200.json") == 0);
    sent = fake_sent(1, "solana-devnet", 1000, mk("escrow"));
    CHECK_EQ_INT(x4_x402_read_settlement_resp(&sent, 1, &f.resp, &s, &e), X4_X402_SETTLED);
    CHECK(s.success && strlen(s.transaction) >= 86);
    CHECK_EQ_STR(s.network, "solana-devnet");
    fx_free(&f);
}

X4_TEST(settlement_second_402_is_final) {
    fixture f;
    x4_x402_settlement s;
    x4_x402_error e;
    CHECK(fx_load(&f, "v2_underfunded_402.json") == 0);
    CHECK_EQ_INT(x4_x402_read_settlement_resp(NULL, 2, &f.resp, &s, &e), X4_X402_REJECTED);
    CHECK_EQ_STR(s.error_reason, "invalid_exact_svm_transaction_simulation_failed");
    CHECK_EQ_INT(e.code, X4_X402_E_REJECTED);
    CHECK(strstr(e.text, "invalid_exact_svm_transaction_simulation_failed") != NULL);
    fx_free(&f);
    CHECK(fx_load(&f, "v1_underfunded_402.json") == 0);
    CHECK_EQ_INT(x4_x402_read_settlement_resp(NULL, 1, &f.resp, &s, &e), X4_X402_REJECTED);
    CHECK_EQ_STR(s.error_reason, "transaction_simulation_failed");
    fx_free(&f);
    CHECK(fx_load(&f, "v2_facilitator_down_402.json") == 0);
    CHECK_EQ_INT(x4_x402_read_settlement_resp(NULL, 2, &f.resp, &s, &e), X4_X402_REJECTED);
    CHECK_EQ_STR(s.error_reason, "fetch failed");
    fx_free(&f);
    /* an unreadable 402 is still a rejection, never a reason to pay again */
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 402, NULL, "%%%", "x", 1, &s, &e), X4_X402_REJECTED);
    CHECK(strstr(s.error_reason, "unreadable") != NULL);
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 402, NULL, NULL, NULL, 0, &s, &e), X4_X402_REJECTED);
}

static char *settle_b64(const char *json) { return b64_of(json, strlen(json)); }

X4_TEST(settlement_failures) {
    x4_x402_settlement s;
    x4_x402_error e;
    char *h;
    const char *sig = "4tPiGJi3QoqpHSTqfsHS94KpE2mJd7uVB6AXeWRyVdxQFDGatb8vdKBCooJHnz8aZUp76qm2xyw5HZw7FsRDpbpA";
    char json[512];
    /* a 500 after verification: no header, not settled */
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 500, NULL, NULL, "{}", 2, &s, &e), X4_X402_UNSETTLED);
    CHECK_EQ_INT(e.code, X4_X402_E_UNSETTLED);
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, NULL, NULL, "{}", 2, &s, &e), X4_X402_UNSETTLED);
    /* success:false */
    h = settle_b64("{\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"solana-devnet\"}");
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 1, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLE_FAILED);
    CHECK_EQ_STR(s.error_reason, "insufficient_funds");
    CHECK(strstr(e.text, "insufficient_funds") != NULL);
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 1, 402, h, NULL, NULL, 0, &s, &e), X4_X402_REJECTED);
    free(h);
    /* garbage / wrong shapes */
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, "***", NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_BASE64);
    h = settle_b64("not json");
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_JSON);
    free(h);
    h = settle_b64("{\"success\":\"true\",\"transaction\":\"x\",\"network\":\"n\"}");
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_FIELD);
    free(h);
    h = settle_b64("{\"success\":true,\"network\":\"solana-devnet\"}");
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    free(h);
    h = settle_b64("{\"success\":true,\"transaction\":\"0OIl\",\"network\":\"solana-devnet\"}");
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_ADDRESS);
    free(h);
    snprintf(json, sizeof json, "{\"success\":true,\"transaction\":\"%s\"}", sig);
    h = settle_b64(json);
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    free(h);
    snprintf(json, sizeof json, "{\"success\":true,\"transaction\":\"%s\",\"network\":\"solana-devnet\",\"amount\":\"-1\"}", sig);
    h = settle_b64(json);
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 2, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    CHECK_EQ_INT(e.code, X4_X402_E_AMOUNT);
    free(h);
    /* a valid one with an amount: checked against what we sent */
    snprintf(json, sizeof json, "{\"success\":true,\"transaction\":\"%s\",\"network\":\"solana-devnet\",\"amount\":\"1000\"}", sig);
    h = settle_b64(json);
    {
        x4_x402_payment sent = fake_sent(1, "solana-devnet", 1000, "");
        CHECK_EQ_INT(x4_x402_read_settlement(&sent, 1, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLED);
        CHECK(s.has_amount && s.amount == 1000);
        sent.amount = 999;
        CHECK_EQ_INT(x4_x402_read_settlement(&sent, 1, 200, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
        CHECK_EQ_INT(e.code, X4_X402_E_MISMATCH);
    }
    /* a 402 claiming success is contradictory */
    CHECK_EQ_INT(x4_x402_read_settlement(NULL, 1, 402, h, NULL, NULL, 0, &s, &e), X4_X402_SETTLEMENT_INVALID);
    free(h);
}

/* ------------------------------------------------------------------------------------------ */
/* integration: pay the real marketplace with headers built here                              */

typedef struct {
    x4_buf body;
    x4_httpc_header hdrs[64];
    char *store[64];
    size_t n;
    long code;
} hresp;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
    hresp *r = ud;
    return x4_buf_append(&r->body, p, sz * nm) == 0 ? sz * nm : 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
    hresp *r = ud;
    size_t n = sz * nm, k;
    char *line, *colon, *v, *end;
    if (r->n >= 64 || !(line = x4_strndup(p, n))) return n;
    if (!(colon = strchr(line, ':'))) { free(line); return n; }
    *colon = 0;
    for (k = 0; line[k]; k++) line[k] = (char)tolower((unsigned char)line[k]);
    v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    end = v + strlen(v);
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) *--end = 0;
    r->store[r->n] = line;
    r->hdrs[r->n].name = line;
    r->hdrs[r->n].value = v;
    r->n++;
    return n;
}

static void hresp_free(hresp *r) {
    for (size_t i = 0; i < r->n; i++) free(r->store[i]);
    x4_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

static int http_post(const char *url, const char *body, const char *hname, const char *hval, hresp *r) {
    CURL *cu = curl_easy_init();
    struct curl_slist *hl = NULL;
    char *h = NULL;
    int rc = -1;
    memset(r, 0, sizeof *r);
    if (!cu) return -1;
    hl = curl_slist_append(hl, "Content-Type: application/json");
    if (hname && asprintf(&h, "%s: %s", hname, hval) > 0) hl = curl_slist_append(hl, h);
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(cu) == CURLE_OK) {
        curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &r->code);
        rc = 0;
    }
    free(h);
    curl_slist_free_all(hl);
    curl_easy_cleanup(cu);
    return rc;
}

static x4_httpc_resp as_resp(hresp *r) {
    x4_httpc_resp x;
    memset(&x, 0, sizeof x);
    x.code = r->code;
    x.body = r->body.data ? r->body.data : "";
    x.body_len = r->body.len;
    x.headers = r->hdrs;
    x.nheaders = r->n;
    return x;
}

static json_t *rpc(const char *url, const char *method, json_t *params) {
    json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method", method, "params", params);
    char *s = json_dumps(req, JSON_COMPACT);
    hresp r;
    json_t *out = NULL;
    if (s && http_post(url, s, NULL, NULL, &r) == 0 && r.body.data) {
        json_t *j = json_loads(r.body.data, 0, NULL);
        out = json_incref(json_object_get(j, "result"));
        json_decref(j);
    }
    if (s) hresp_free(&r);
    free(s);
    json_decref(req);
    return out;
}

static uint64_t token_balance(const char *rpc_url, const char *ata) {
    json_t *r = rpc(rpc_url, "getTokenAccountBalance", json_pack("[s]", ata));
    const char *a = json_string_value(json_object_get(json_object_get(r, "value"), "amount"));
    uint64_t v = a ? strtoull(a, NULL, 10) : UINT64_MAX;
    json_decref(r);
    return v;
}

/* One paid call: 402 -> parse -> choose -> build (C) -> retry -> settlement. Returns the outcome. */
static x4_x402_outcome pay_service(json_t *info, const char *svc_id, const char *secret, const char *body,
                                   x4_x402_settlement *s, x4_x402_error *e) {
    const char *rpc_url = json_string_value(json_object_get(info, "rpcUrl"));
    const char *mint = json_string_value(json_object_get(info, "mint"));
    json_t *svc = NULL, *v, *bhres = NULL;
    size_t i, idx = 0;
    hresp r1, r2;
    x4_x402_challenge *c = NULL;
    x4_keypair *kp = NULL;
    x4_x402_payment pay;
    x4_x402_outcome out = X4_X402_UNSETTLED;
    char err[128];
    uint8_t bh[32];
    memset(&pay, 0, sizeof pay);
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    json_array_foreach(json_object_get(info, "services"), i, v)
        if (strcmp(json_string_value(json_object_get(v, "id")), svc_id) == 0) svc = v;
    CHECK(svc != NULL);
    if (!svc) goto done;
    const char *url = json_string_value(json_object_get(svc, "url"));
    CHECK(x4_keypair_load_base64(secret, &kp, err, sizeof err) == 0);
    CHECK(http_post(url, body, NULL, NULL, &r1) == 0);
    CHECK_EQ_INT(r1.code, 402);
    x4_httpc_resp x1 = as_resp(&r1);
    CHECK(x4_x402_parse_challenge_resp(&x1, &c, e) == 0);
    if (!c || !kp) goto done;
    {
        const char *assets[1] = {mint};
        x4_x402_policy p = {"devnet", assets, 1, 10000, 10000, 10000};
        CHECK(x4_x402_choose(c, &p, &idx, e) == 0);
    }
    bhres = rpc(rpc_url, "getLatestBlockhash", json_pack("[{s:s}]", "commitment", "confirmed"));
    v = json_object_get(bhres, "value");
    CHECK(x4_sol_blockhash_from_b58(json_string_value(json_object_get(v, "blockhash")), bh) == 0);
    x4_x402_build_in in = {.payer = kp, .blockhash = bh,
                           .last_valid_block_height = (uint64_t)json_integer_value(json_object_get(v, "lastValidBlockHeight"))};
    CHECK(x4_x402_build_payment(c, idx, &in, &pay, e) == 0);
    if (!pay.header_value) goto done;
    CHECK(pay.last_valid_block_height > 0);
    CHECK(http_post(url, body, pay.header_name, pay.header_value, &r2) == 0);
    x4_httpc_resp x2 = as_resp(&r2);
    out = x4_x402_read_settlement_resp(&pay, c->version, &x2, s, e);
    if (out != X4_X402_SETTLED)
        fprintf(stderr, "  %s: status %ld, outcome %s: %s\n", svc_id, r2.code, x4_x402_outcome_name(out), e->text);
    if (out == X4_X402_SETTLED) {
        /* the record finds the payment on chain: newest on our token account, with our memo */
        json_t *sigs = rpc(rpc_url, "getSignaturesForAddress", json_pack("[s,{s:i}]", pay.source_ata, "limit", 1));
        json_t *top = json_array_get(sigs, 0);
        CHECK_EQ_STR(json_string_value(json_object_get(top, "signature")), s->transaction);
        if (pay.version == 2) {
            const char *memo = json_string_value(json_object_get(top, "memo"));
            CHECK(memo && strstr(memo, pay.memo) != NULL);
        }
        json_decref(sigs);
    }
done:
    json_decref(bhres);
    x4_x402_payment_free(&pay);
    x4_x402_challenge_free(c);
    x4_keypair_free(kp);
    hresp_free(&r1);
    hresp_free(&r2);
    return out;
}

X4_TEST(integration_marketplace) {
    const char *dir_env = getenv("X4_MARKETPLACE_DIR");
    char dir[256] = "", path[512], cmd[1024];
    bool started = false;
    json_t *info = NULL, *svcs;
    x4_x402_settlement s;
    x4_x402_error e;
    struct stat st;
    if (dir_env && *dir_env) {
        snprintf(dir, sizeof dir, "%s", dir_env);
    } else {
        snprintf(path, sizeof path, "%s/examples/marketplace/node_modules", X4_SOURCE_DIR);
        if (stat(path, &st) != 0 || system("command -v node >/dev/null 2>&1") != 0) {
            fprintf(stderr, "  integration_marketplace: skipped (no node or no marketplace node_modules)\n");
            return;
        }
        snprintf(dir, sizeof dir, "/tmp/x4-x402-test-XXXXXX");
        if (!mkdtemp(dir)) return;
        snprintf(cmd, sizeof cmd, "%s/scripts/marketplace.sh start %s --port-base 0 >/dev/null 2>&1", X4_SOURCE_DIR, dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "  integration_marketplace: skipped (marketplace did not start)\n");
            return;
        }
        started = true;
    }
    snprintf(path, sizeof path, "%s/marketplace.json", dir);
    info = json_load_file(path, 0, NULL);
    CHECK(info != NULL);
    if (!info) goto out;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    svcs = json_object_get(info, "services");
    {
        const char *rpc_url = json_string_value(json_object_get(info, "rpcUrl"));
        const char *escrow = json_string_value(json_object_get(json_object_get(info, "escrow"), "secretBase64"));
        const char *poor = json_string_value(json_object_get(json_object_get(json_object_get(info, "wallets"), "underfunded"), "secretBase64"));
        struct { const char *id, *body; } cases[] = {
            {"dex_volume", "{\"chain\":\"solana\",\"days\":2}"},            /* @x402/express v2 */
            {"sentiment_analysis", "{\"text\":\"very bullish\"}"},          /* @x402/hono v2 */
            {"whale_alerts", "{\"chain\":\"solana\"}"},                      /* x402-express v1 */
        };
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
            size_t i;
            json_t *v, *svc = NULL;
            json_array_foreach(svcs, i, v) if (strcmp(json_string_value(json_object_get(v, "id")), cases[k].id) == 0) svc = v;
            if (!svc) { CHECK(svc != NULL); continue; }
            const char *ata = json_string_value(json_object_get(svc, "payToTokenAccount"));
            uint64_t amount = strtoull(json_string_value(json_object_get(svc, "amount")), NULL, 10);
            uint64_t before = token_balance(rpc_url, ata);
            x4_x402_outcome o = pay_service(info, cases[k].id, escrow, cases[k].body, &s, &e);
            CHECK_EQ_INT(o, X4_X402_SETTLED);
            CHECK(strlen(s.transaction) >= 86);
            CHECK_EQ_INT(token_balance(rpc_url, ata) - before, amount);  /* paid exactly once */
            if (o == X4_X402_SETTLED)
                fprintf(stderr, "  integration: %s paid with a C-built header, settled as %s\n", cases[k].id,
                        s.transaction);
        }
        /* an underfunded payer: the second 402 names the reason; nothing moved */
        CHECK_EQ_INT(pay_service(info, "dex_volume", poor, "{\"chain\":\"solana\",\"days\":1}", &s, &e), X4_X402_REJECTED);
        CHECK(strstr(s.error_reason, "simulation") != NULL);
    }
out:
    json_decref(info);
    if (started) {
        snprintf(cmd, sizeof cmd, "%s/scripts/marketplace.sh stop %s >/dev/null 2>&1 && rm -rf %s",
                 X4_SOURCE_DIR, dir, dir);
        CHECK(system(cmd) == 0);
    }
}
