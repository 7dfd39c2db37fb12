/* core/config.c — see config.h. */
#include "core/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

static const char *env(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

static int env_int(const char *name, int64_t def, int64_t lo, int64_t hi, int64_t *out, char *err,
                   size_t errlen) {
    const char *v = env(name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || end == v || n < lo || n > hi) {
        snprintf(err, errlen, "%s: expected an integer from %lld to %lld, got '%s'", name, (long long)lo,
                 (long long)hi, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int env_url(const char *name, const char *const *schemes, char **out, char *err, size_t errlen) {
    const char *v = env(name);
    *out = NULL;
    if (!v) return 0;
    for (const char *const *s = schemes; *s; s++)
        if (x4_str_has_prefix(v, *s) && strlen(v) > strlen(*s)) {
            *out = strdup(v);
            return 0;
        }
    /* Say which schemes were expected; never echo a value that may hold credentials. */
    char list[128] = "";
    for (const char *const *s = schemes; *s; s++) {
        strncat(list, *s, sizeof list - strlen(list) - 1);
        if (s[1]) strncat(list, " or ", sizeof list - strlen(list) - 1);
    }
    snprintf(err, errlen, "%s: expected a URL starting with %s", name, list);
    return -1;
}

int x4_config_load(x4_config *c, char *err, size_t errlen) {
    static const char *const http[] = {"http://", "https://", NULL};
    static const char *const pg[] = {"postgres://", "postgresql://", NULL};
    static const char *const redis[] = {"redis://", "unix://", NULL};
    int64_t n;
    memset(c, 0, sizeof *c);

#define INT(var, name, def, lo, hi)                                    \
    do {                                                               \
        if (env_int(name, def, lo, hi, &n, err, errlen) < 0) goto err; \
        c->var = n;                                                    \
    } while (0)
    INT(port, "PORT", 5000, 0, 65535);
    INT(approval_ttl_ms, "APPROVAL_TTL_MS", 900000, 1000, 7LL * 24 * 3600 * 1000);
    INT(lease_ms, "LEASE_MS", 15000, 500, 3600 * 1000);
    INT(step_timeout_ms, "STEP_TIMEOUT_MS", 30000, 10, 3600 * 1000);
    INT(connect_timeout_ms, "CONNECT_TIMEOUT_MS", 5000, 10, 600 * 1000);
    INT(max_response_bytes, "MAX_RESPONSE_BYTES", 8 << 20, 1024, 1LL << 30);
    INT(max_concurrency, "MAX_CONCURRENCY", 256, 1, 100000);
    INT(workflow_concurrency, "WORKFLOW_CONCURRENCY", 16, 1, 10000);
    INT(retry_max_attempts, "RETRY_MAX_ATTEMPTS", 3, 1, 100);
    INT(compensate_max_attempts, "COMPENSATE_MAX_ATTEMPTS", 5, 1, 100);
    INT(failover_max, "FAILOVER_MAX", 2, 0, 10);
    INT(auto_approve_below, "AUTO_APPROVE_BELOW", 0, 0, 1LL << 53);
    INT(retry_base_ms, "RETRY_BASE_MS", 200, 0, 600000);
    INT(retry_max_delay_ms, "RETRY_MAX_DELAY_MS", 10000, 0, 3600000);
    INT(pg_pool, "PG_POOL", 4, 1, 64);
    INT(ws_queue_max, "WS_QUEUE_MAX", 1024, 1, 1 << 20);
    INT(auth_cache_ms, "AUTH_CACHE_MS", 30000, 0, 3600000);
    INT(rate_limit_per_min, "RATE_LIMIT_PER_MIN", 1200, 0, 10000000);
    INT(catalog_refresh_ms, "CATALOG_REFRESH_MS", 300000, 1000, 7LL * 24 * 3600 * 1000);
    INT(catalog_cache_ttl_ms, "CATALOG_CACHE_TTL_MS", 900000, 1000, 7LL * 24 * 3600 * 1000);
    INT(lua_mem_cap, "LUA_MEM_CAP", 64LL << 20, 1LL << 20, 16LL << 30);
    INT(lua_budget, "LUA_BUDGET", 1000000, 1000, 1000000000000LL);
#undef INT
    {
        const char *v = env("RETRY_FACTOR");
        c->retry_factor = 2.0;
        if (v) {
            char *end;
            double f = strtod(v, &end);
            if (*end || end == v || !(f >= 1.0 && f <= 10.0)) {
                snprintf(err, errlen, "RETRY_FACTOR: expected a number from 1 to 10, got '%s'", v);
                goto err;
            }
            c->retry_factor = f;
        }
    }
    if (env_url("DATABASE_URL", pg, &c->database_url, err, errlen) < 0) goto err;
    if (env_url("REDIS_URL", redis, &c->redis_url, err, errlen) < 0) goto err;
    if (env_url("REGISTRY_URL", http, &c->registry_url, err, errlen) < 0) goto err;
    if (env_url("FACILITATOR_URL", http, &c->facilitator_url, err, errlen) < 0) goto err;
    if (env_url("SOLANA_RPC_URL", http, &c->solana_rpc_url, err, errlen) < 0) goto err;
    if (!c->solana_rpc_url) c->solana_rpc_url = strdup("https://api.devnet.solana.com");

    const char *dm = env("DISPATCH");
    if (dm && strcmp(dm, "eager") && strcmp(dm, "durable")) {
        snprintf(err, errlen, "DISPATCH: expected eager or durable, got '%.32s'", dm);
        goto err;
    }
    c->dispatch_eager = !dm || !strcmp(dm, "eager");

    const char *cm = env("SOLANA_COMMITMENT");
    if (!cm) cm = "confirmed";
    if (strcmp(cm, "processed") && strcmp(cm, "confirmed") && strcmp(cm, "finalized")) {
        snprintf(err, errlen, "SOLANA_COMMITMENT: expected processed, confirmed or finalized, got '%.32s'", cm);
        goto err;
    }
    c->commitment = strdup(cm);
    const char *net = env("NETWORK");
    if (!net) net = "devnet";
    if (strcmp(net, "devnet") && strcmp(net, "mainnet") && strcmp(net, "testnet") &&
        !(x4_str_has_prefix(net, "solana:") && strlen(net) > 7 && strlen(net) <= 64)) {
        snprintf(err, errlen, "NETWORK: expected devnet, mainnet, testnet or a CAIP-2 id solana:<genesis>, got '%.64s'", net);
        goto err;
    }
    c->network = strdup(net);

    const char *kp = env("ESCROW_KEYPAIR");
    if (kp) {
        size_t l = strlen(kp);
        /* 64 bytes in standard base64 is 88 characters with padding. The value is never echoed. */
        if (l != 88 || kp[86] != '=' || kp[87] != '=') {
            snprintf(err, errlen, "ESCROW_KEYPAIR: expected the base64 encoding of a 64-byte secret key (88 characters)");
            goto err;
        }
        c->escrow_keypair = strdup(kp);
    }
    if (env_int("RECONCILE_AFTER_MS", 20000, 0, 3600000, &n, err, errlen) < 0) goto err;
    c->reconcile_after_ms = n;
    if (env_int("HOLD_ALLOWANCE_PCT", 0, 0, 1000, &n, err, errlen) < 0) goto err;
    c->hold_allowance_pct = (int)n;
    {
        static const struct { const char *name, *def; size_t off; } amounts[] = {
            {"DAILY_SPEND_CAP", "0", offsetof(x4_config, daily_cap)},
            {"MAX_PAYMENT_PER_TX", "10", offsetof(x4_config, max_payment)},
        };
        for (size_t i = 0; i < sizeof amounts / sizeof *amounts; i++) {
            const char *v = env(amounts[i].name), *why = NULL;
            uint64_t *dst = (uint64_t *)((char *)c + amounts[i].off);
            if (x4_money_parse(v ? v : amounts[i].def, 6, dst, &why) < 0 || *dst > (uint64_t)INT64_MAX) {
                snprintf(err, errlen, "%s: expected a USDC amount with at most 6 decimals, got '%.32s' (%s)",
                         amounts[i].name, v ? v : "", why ? why : "too large");
                goto err;
            }
        }
    }
    {
        /* USDC of the configured network unless told otherwise. */
        const char *asset = env("ESCROW_ASSET");
        int mainnet = !strcmp(c->network, "mainnet") || !strcmp(c->network, "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
        if (!asset) asset = mainnet ? "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v" : "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
        size_t al = strlen(asset);
        if (al < 32 || al > 44 || strspn(asset, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz") != al) {
            snprintf(err, errlen, "ESCROW_ASSET: expected a base58 mint address, got '%.64s'", asset);
            goto err;
        }
        c->escrow_asset = strdup(asset);
    }
    c->anthropic_api_key = x4_strdup(env("ANTHROPIC_API_KEY"));
    c->catalog_file = x4_strdup(env("CATALOG_FILE"));
    c->policy_dir = strdup(env("POLICY_DIR") ? env("POLICY_DIR") : "policies");
    c->plugin_dir = strdup(env("PLUGIN_DIR") ? env("PLUGIN_DIR") : "plugins");
    c->home = strdup(env("X402R_HOME") ? env("X402R_HOME") : "./.x402r");
    c->sql_dir = strdup(env("X402R_SQL_DIR") ? env("X402R_SQL_DIR") : X4_SOURCE_DIR "/sql");
    c->bind = strdup(env("BIND_ADDRESS") ? env("BIND_ADDRESS") : "0.0.0.0");
    c->log_level = strdup(env("LOG_LEVEL") ? env("LOG_LEVEL") : "info");
    if (x4_log_set_level(c->log_level) < 0) {
        snprintf(err, errlen, "LOG_LEVEL: expected debug, info, warn or error, got '%.32s'", c->log_level);
        goto err;
    }
    return 0;
err:
    x4_config_free(c);
    return -1;
}

void x4_config_free(x4_config *c) {
    free(c->bind);
    free(c->database_url);
    free(c->redis_url);
    free(c->registry_url);
    free(c->facilitator_url);
    free(c->anthropic_api_key);
    free(c->solana_rpc_url);
    free(c->network);
    free(c->commitment);
    free(c->escrow_keypair);
    free(c->escrow_asset);
    free(c->catalog_file);
    free(c->policy_dir);
    free(c->plugin_dir);
    free(c->home);
    free(c->sql_dir);
    free(c->log_level);
    memset(c, 0, sizeof *c);
}
