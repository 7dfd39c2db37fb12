/* plan/catalog.h — the service catalog: one record shape (DESIGN.md "Catalog") whatever the
 * source — a catalog file, the x402-upl registry (GET /services/discover) or, later, the x402
 * Bazaar. Records are validated one by one; a malformed record is skipped with one log line
 * naming the source and the reason, never a crash. De-duplicated by URL (and by id); the first
 * source wins. Prices are atomic units (uint64) of the record's asset.
 *
 * A catalog is immutable once built: the engine builds a new one on refresh and swaps the
 * pointer (reference counted) so plans in flight keep their view. */
#ifndef X4_PLAN_CATALOG_H
#define X4_PLAN_CATALOG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define X4_USDC_DECIMALS 6

typedef struct {
    char *id;
    char *name;
    char *description;
    char *url;            /* NULL in planning-only catalogs */
    char *method;         /* "POST" (default) or "GET" */
    int has_price;
    uint64_t price;       /* atomic units */
    char *asset;          /* mint, may be NULL */
    char *network;        /* e.g. "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", may be NULL */
    json_t *input;        /* JSON Schema object or NULL */
    json_t *output;       /* JSON Schema object or NULL */
    json_t *tags;         /* array of strings (never NULL) */
    json_t *compensate;   /* {url, method} or NULL */
    char *adapter;        /* step adapter named by the record (^[a-z0-9_-]{1,32}$) or NULL */
    char *source;         /* "file", "registry", "bazaar" */
} x4_service;

typedef struct x4_catalog x4_catalog;

x4_catalog *x4_catalog_new(void);
x4_catalog *x4_catalog_ref(x4_catalog *c);
void x4_catalog_unref(x4_catalog *c);

/* Catalog file: {"services":[record...]} or a bare array. "${VAR}" in a url is replaced by the
 * environment variable VAR (an unset VAR skips the record). -1 with err if the file cannot be
 * read or is not JSON; bad records are skipped. Returns the number of records added. */
int x4_catalog_load_file(x4_catalog *c, const char *path, char *err, size_t errlen);
/* x402-upl registry answer: a bare array or an object wrapping one (services/data/items/results);
 * records carry id, url, name, description, category, pricePerCall (decimal string, USDC),
 * inputSchema/outputSchema (JSON strings or objects), capabilities, tags. Returns the number added. */
int x4_catalog_add_registry(x4_catalog *c, const json_t *answer, const char *source);
/* x402 Bazaar discovery page (GET {facilitator}/discovery/resources): {items:[{resource, type,
 * x402Version, accepts:[PaymentRequirements], lastUpdated, metadata?, extensions?}], pagination}.
 * Input/output schemas come from extensions.bazaar.schema (v2; inferred from
 * extensions.bazaar.info examples when no schema is declared) or accepts[i].outputSchema (v1).
 * The price is the first `exact` requirement on `network` (NULL: any): `amount` (v2) or
 * `maxAmountRequired` (v1), atomic units. Returns the number added. */
int x4_catalog_add_bazaar(x4_catalog *c, const json_t *page, const char *network, const char *source);
/* One record in the DESIGN.md shape; returns 0 or -1 with err (the record is not added). */
int x4_catalog_add_record(x4_catalog *c, const json_t *rec, const char *source, char *err, size_t errlen);

size_t x4_catalog_count(const x4_catalog *c);
const x4_service *x4_catalog_at(const x4_catalog *c, size_t i);
const x4_service *x4_catalog_get(const x4_catalog *c, const char *id); /* O(1) */
/* Content hash of every record (hex, 16 chars): changes when anything planning depends on does. */
const char *x4_catalog_version(const x4_catalog *c);
json_t *x4_service_to_json(const x4_service *s); /* DESIGN.md record shape, price as atomic string */
/* The step adapter for calls to s: the record's "adapter", else "x402" when it has a price,
 * else "http" (also for NULL). Never NULL; valid as long as s. */
const char *x4_service_adapter(const x4_service *s);

#endif
