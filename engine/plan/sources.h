/* plan/sources.h — where the catalog comes from, and keeping it fresh.
 *
 * Start-up (blocking): the catalog file (already in e->catalog), then the remote part — from the
 * Redis cache key x402r:catalog:remote ({"fetchedAt": ms, "services": [record + "source"]}) if it
 * is younger than CATALOG_CACHE_TTL_MS, else fetched from the x402-upl registry
 * (REGISTRY_URL/services/discover) and the x402 Bazaar (FACILITATOR_URL/discovery/resources,
 * paged, at most 50 pages of 100) and written to the cache.
 *
 * Then every CATALOG_REFRESH_MS, on the loop: the process that wins
 * SET x402r:catalog:lock <owner> NX PX <refresh> fetches and rewrites the cache; the others read
 * the cache. Each builds a new catalog (file records first, then remote; the catalog de-dupes)
 * and swaps e->catalog when its version changed. A source that is down or answers garbage is
 * logged once (until it recovers) and its previous records are kept. */
#ifndef X4_PLAN_SOURCES_H
#define X4_PLAN_SOURCES_H

struct x4_engine;

/* Key prefixes; the keys end in ":<16 hex>", a hash of REGISTRY_URL, FACILITATOR_URL and the
 * network, so deployments sharing one Redis never read each other's catalog. */
#define X4_CATALOG_CACHE_KEY "x402r:catalog:remote"
#define X4_CATALOG_LOCK_KEY "x402r:catalog:lock"

/* After the catalog file is loaded into e->catalog and the bus and HTTP client are open.
 * Never fails: a missing source only leaves the catalog smaller. */
void x4_sources_start(struct x4_engine *e);
/* Shutdown: stops the timer and cancels what is in flight. Idempotent. */
void x4_sources_close(struct x4_engine *e);

#endif
