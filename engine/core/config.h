/* core/config.h — the engine's configuration, read once from the environment.
 *
 * Names follow the seed (PORT, DATABASE_URL, REDIS_URL, REGISTRY_URL, ANTHROPIC_API_KEY,
 * SOLANA_RPC_URL, NETWORK, ESCROW_KEYPAIR) plus x402r's own (CATALOG_FILE, POLICY_DIR,
 * PLUGIN_DIR, X402R_HOME and the tuning knobs below). A bad value is reported with the
 * variable's name and what was expected; the CLI exits with status 2. README.md's Configuration table
 * is the table of record and must stay in step with x4_config_load(). */
#ifndef X4_CORE_CONFIG_H
#define X4_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int port;                   /* PORT, default 5000; 0 = pick a free port */
    char *bind;                 /* BIND_ADDRESS, default 0.0.0.0 */
    char *database_url;         /* DATABASE_URL; NULL = embedded private PostgreSQL */
    char *redis_url;            /* REDIS_URL; NULL = embedded private redis-server */
    char *registry_url;         /* REGISTRY_URL: x402-upl registry base URL, optional */
    char *facilitator_url;      /* FACILITATOR_URL: x402 facilitator whose Bazaar (/discovery/resources) feeds the catalog, optional */
    int64_t catalog_refresh_ms; /* CATALOG_REFRESH_MS: background refresh of the remote catalog, default 300000 */
    int64_t catalog_cache_ttl_ms; /* CATALOG_CACHE_TTL_MS: the Redis copy of the remote catalog is fresh this long, default 900000 */
    char *anthropic_api_key;    /* ANTHROPIC_API_KEY, optional (never logged) */
    char *solana_rpc_url;       /* SOLANA_RPC_URL, default https://api.devnet.solana.com */
    char *commitment;           /* SOLANA_COMMITMENT: processed | confirmed | finalized, default confirmed */
    char *network;              /* NETWORK: devnet | mainnet | testnet | solana:<genesis>, default devnet */
    char *escrow_keypair;       /* ESCROW_KEYPAIR: base64 of 64 bytes (never logged) */
    char *escrow_asset;         /* ESCROW_ASSET: the mint held in escrow; default USDC of NETWORK */
    int hold_allowance_pct;     /* HOLD_ALLOWANCE_PCT: extra hold over the estimate for retries, default 0 */
    uint64_t daily_cap;         /* DAILY_SPEND_CAP: USDC per user per day (charged + held); 0 = none */
    uint64_t max_payment;       /* MAX_PAYMENT_PER_TX: USDC, default 10 */
    int64_t reconcile_after_ms; /* RECONCILE_AFTER_MS: an unresolved payment/withdrawal is looked up on chain after this, default 20000 */
    char *catalog_file;         /* CATALOG_FILE, optional */
    char *policy_dir;           /* POLICY_DIR, default policies/ */
    char *plugin_dir;           /* PLUGIN_DIR, default plugins/ */
    int64_t lua_mem_cap;        /* LUA_MEM_CAP: bytes for the whole Lua state, default 64 MiB */
    int64_t lua_budget;         /* LUA_BUDGET: VM instructions per Lua call, default 1000000 */
    char *home;                 /* X402R_HOME, default ./.x402r */
    char *sql_dir;              /* X402R_SQL_DIR, default <source>/sql */
    int64_t approval_ttl_ms;    /* APPROVAL_TTL_MS, default 900000 (15 min) */
    int64_t lease_ms;           /* LEASE_MS, default 15000: a dead process's workflows resume after this */
    int64_t step_timeout_ms;    /* STEP_TIMEOUT_MS, default 30000 */
    int64_t connect_timeout_ms; /* CONNECT_TIMEOUT_MS, default 5000 */
    int64_t max_response_bytes; /* MAX_RESPONSE_BYTES, default 8 MiB */
    int max_concurrency;        /* MAX_CONCURRENCY: running steps per process, default 256 */
    int workflow_concurrency;   /* WORKFLOW_CONCURRENCY: running steps per workflow, default 16 */
    int dispatch_eager;         /* DISPATCH=eager (default): a dependent's request goes out beside the
                                   write of its "running" (and of the successes that made it ready),
                                   its answer acted on once they have committed; durable: after */
    int retry_max_attempts;     /* RETRY_MAX_ATTEMPTS, default 3 */
    int compensate_max_attempts; /* COMPENSATE_MAX_ATTEMPTS: attempts per compensation, default 5 */
    int failover_max;           /* FAILOVER_MAX: other services a step may move to when its own is
                                   unavailable (exec/failover.h), default 2, 0 = never */
    int64_t auto_approve_below; /* AUTO_APPROVE_BELOW: atomic units; estimates under it are approved by
                                   approval.lua without asking (limits.autoApproveBelow), default 0 = never */
    int64_t retry_base_ms;      /* RETRY_BASE_MS, default 200 */
    double retry_factor;        /* RETRY_FACTOR, default 2 (a ratio, never money) */
    int64_t retry_max_delay_ms; /* RETRY_MAX_DELAY_MS, default 10000 */
    int pg_pool;                /* PG_POOL: connections per process, default 4 */
    int ws_queue_max;           /* WS_QUEUE_MAX: queued messages per WebSocket before disconnect, default 1024 */
    int64_t auth_cache_ms;      /* AUTH_CACHE_MS: how long a verified key is trusted without a lookup, default 30000 */
    int rate_limit_per_min;     /* RATE_LIMIT_PER_MIN: API requests per user per minute, default 1200, 0 = off */
    char *log_level;            /* LOG_LEVEL, default info */
} x4_config;

/* Fills cfg from the environment. On error returns -1 and writes
 * "VARIABLE: expected ..., got '...'" into err. */
int x4_config_load(x4_config *cfg, char *err, size_t errlen);
void x4_config_free(x4_config *cfg);

#endif
