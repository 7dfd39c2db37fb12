/* plan/catalog.c — the service catalog (see catalog.h for the contract).
 *
 * Shape: a growable array of x4_service pointers in insertion order, plus two open-addressing
 * hash tables (by id, by url) holding indices into it; both tables stay under half full, so
 * x4_catalog_get() and the url de-duplication are O(1) expected. Records arrive from several
 * sources (a file, the x402-upl registry, later the Bazaar) and all go through the one
 * validator, x4_catalog_add_record(): a source-specific loader only maps its shape onto the
 * DESIGN.md record and lets that function decide.
 *
 * Validation is strict because everything downstream (the planner, the plan validator, the
 * executor that calls the url and pays the price) trusts a record once it is in:
 *   id           1..128 chars of [A-Za-z0-9_.:#/-]
 *   name         string up to 256 bytes (defaults to the id)
 *   description  string up to 4096 bytes (defaults to "")
 *   url          optional; http:// or https:// with a host, no blanks or control characters,
 *                up to 2048 bytes after "${VAR}" expansion from the environment
 *   method       GET, POST (default), PUT, DELETE or PATCH (case-insensitive, stored upper)
 *   price        optional {amount: atomic digits that fit uint64, asset?, network?}
 *   input/output optional JSON Schema objects
 *   tags         optional array of at most 64 strings of at most 64 bytes
 *   compensate   optional {url, method?} checked like url/method
 *   adapter      optional step adapter name, ^[a-z0-9_-]{1,32}$ (plugins/NAME.lua); when absent
 *                the step uses "x402" if the record has a price, else "http" (x4_service_adapter)
 * Unknown keys are ignored (registries add their own metadata). A bad record is refused with a
 * reason; the loaders log exactly one warning per refused record (source, id, reason).
 * De-duplication: the first record with a given id or url wins; a duplicate from the same
 * source is worth a warning (a typo in a catalog file), one from another source is routine
 * when registries overlap and is logged at debug level.
 *
 * Version: a BLAKE2b chain over the canonical (sorted-keys, compact) dump of each record in
 * order — v_i = H(v_{i-1} || dump_i) — kept current on every add, so x4_catalog_version() is
 * a read and needs no mutation of a const catalog. Cost: one dump per added record. */
#include "plan/catalog.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <sodium.h>

#include "core/log.h"
#include "core/util.h"

#define MOD "catalog"
#define ID_MAX 128
#define NAME_MAX_LEN 256
#define DESC_MAX_LEN 4096
#define URL_MAX_LEN 2048
#define TAGS_MAX 64
#define TAG_MAX_LEN 64
#define ASSET_MAX_LEN 128

struct x4_catalog {
    int refs;
    x4_service **svcs;
    size_t n, cap;
    size_t *by_id;   /* slot -> index+1, 0 = empty */
    size_t *by_url;
    size_t tcap;     /* table capacity, power of two */
    unsigned char chain[crypto_generichash_BYTES];
    char version[17];
};

/* ---- small helpers ---------------------------------------------------------------------- */


static void service_free(x4_service *s) {
    if (!s) return;
    free(s->id);
    free(s->name);
    free(s->description);
    free(s->url);
    free(s->method);
    free(s->adapter);
    free(s->asset);
    free(s->network);
    free(s->source);
    json_decref(s->input);
    json_decref(s->output);
    json_decref(s->tags);
    json_decref(s->compensate);
    free(s);
}

static void update_version(x4_catalog *c, const char *dump, size_t len) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof c->chain);
    crypto_generichash_update(&st, c->chain, sizeof c->chain);
    if (dump) crypto_generichash_update(&st, (const unsigned char *)dump, len);
    crypto_generichash_final(&st, c->chain, sizeof c->chain);
    sodium_bin2hex(c->version, sizeof c->version, c->chain, 8);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

x4_catalog *x4_catalog_new(void) {
    if (sodium_init() < 0) return NULL;
    x4_catalog *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->refs = 1;
    c->tcap = 64;
    c->by_id = calloc(c->tcap, sizeof *c->by_id);
    c->by_url = calloc(c->tcap, sizeof *c->by_url);
    if (!c->by_id || !c->by_url) {
        free(c->by_id);
        free(c->by_url);
        free(c);
        return NULL;
    }
    update_version(c, NULL, 0);
    return c;
}

x4_catalog *x4_catalog_ref(x4_catalog *c) {
    if (c) __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void x4_catalog_unref(x4_catalog *c) {
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; i < c->n; i++) service_free(c->svcs[i]);
    free(c->svcs);
    free(c->by_id);
    free(c->by_url);
    free(c);
}

size_t x4_catalog_count(const x4_catalog *c) { return c ? c->n : 0; }

const x4_service *x4_catalog_at(const x4_catalog *c, size_t i) {
    return c && i < c->n ? c->svcs[i] : NULL;
}

const char *x4_catalog_version(const x4_catalog *c) { return c ? c->version : NULL; }

/* ---- hash tables ------------------------------------------------------------------------ */

static const char *key_of(const x4_service *s, int url) { return url ? s->url : s->id; }

static ssize_t table_find(const x4_catalog *c, const size_t *tab, int url, const char *key) {
    size_t mask = c->tcap - 1;
    for (size_t i = x4_hash_str(key) & mask;; i = (i + 1) & mask) {
        if (!tab[i]) return -1;
        const char *k = key_of(c->svcs[tab[i] - 1], url);
        if (k && strcmp(k, key) == 0) return (ssize_t)(tab[i] - 1);
    }
}

static void table_put(size_t *tab, size_t cap, const char *key, size_t idx) {
    size_t mask = cap - 1;
    size_t i = x4_hash_str(key) & mask;
    while (tab[i]) i = (i + 1) & mask;
    tab[i] = idx + 1;
}

static int tables_grow(x4_catalog *c) {
    size_t ncap = c->tcap * 2;
    size_t *id = calloc(ncap, sizeof *id), *url = calloc(ncap, sizeof *url);
    if (!id || !url) {
        free(id);
        free(url);
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        table_put(id, ncap, c->svcs[i]->id, i);
        if (c->svcs[i]->url) table_put(url, ncap, c->svcs[i]->url, i);
    }
    free(c->by_id);
    free(c->by_url);
    c->by_id = id;
    c->by_url = url;
    c->tcap = ncap;
    return 0;
}

const x4_service *x4_catalog_get(const x4_catalog *c, const char *id) {
    if (!c || !id) return NULL;
    ssize_t i = table_find(c, c->by_id, 0, id);
    return i < 0 ? NULL : c->svcs[i];
}

/* ---- record validation ------------------------------------------------------------------ */

static int valid_id(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > ID_MAX) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.:#/-", *s)) return 0;
    return 1;
}

/* Replaces every "${VAR}" with getenv(VAR). Returns a new string, or NULL with err. */
static char *expand_env(const char *in, char *err, size_t errlen) {
    x4_buf b = {0};
    const char *p = in;
    while (*p) {
        const char *d = strstr(p, "${");
        if (!d) {
            if (x4_buf_puts(&b, p)) goto oom;
            break;
        }
        if (x4_buf_append(&b, p, (size_t)(d - p))) goto oom;
        const char *name = d + 2, *end = name;
        while (isalnum((unsigned char)*end) || *end == '_') end++;
        if (*end != '}' || end == name || isdigit((unsigned char)*name)) {
            x4_seterr(err, errlen, "malformed ${VAR} in url");
            goto fail;
        }
        char var[128];
        if ((size_t)(end - name) >= sizeof var) {
            x4_seterr(err, errlen, "variable name too long in url");
            goto fail;
        }
        memcpy(var, name, (size_t)(end - name));
        var[end - name] = 0;
        const char *val = getenv(var);
        if (!val) {
            x4_seterr(err, errlen, "url uses ${%s}, which is not set", var);
            goto fail;
        }
        if (x4_buf_puts(&b, val)) goto oom;
        p = end + 1;
    }
    if (!b.data && x4_buf_puts(&b, "")) goto oom;
    return b.data;
oom:
    x4_seterr(err, errlen, "out of memory");
fail:
    x4_buf_free(&b);
    return NULL;
}

/* Expands and checks a url; what names the field in messages ("url", "compensate.url"). */
/* `${VAR}` expansion is for operator-owned catalog files only: a record from a registry or the
 * Bazaar could otherwise name an environment variable (an API key) in a URL and have the engine
 * send it to any host. Outside files, a URL containing "${" is refused. */
static char *check_url(const json_t *v, const char *what, int expand, char *err, size_t errlen) {
    if (!expand && json_is_string(v) && strstr(json_string_value(v), "${")) {
        x4_seterr(err, errlen, "%s contains ${...}, which only a catalog file may use", what);
        return NULL;
    }
    if (!json_is_string(v)) {
        x4_seterr(err, errlen, "%s is not a string", what);
        return NULL;
    }
    char *u = expand_env(json_string_value(v), err, errlen);
    if (!u) return NULL;
    const char *host = NULL;
    if (strncasecmp(u, "http://", 7) == 0) host = u + 7;
    else if (strncasecmp(u, "https://", 8) == 0) host = u + 8;
    if (!host) {
        x4_seterr(err, errlen, "%s is not http(s): %.80s", what, u);
        goto bad;
    }
    if (!*host || *host == '/' || *host == '?' || *host == '#') {
        x4_seterr(err, errlen, "%s has no host", what);
        goto bad;
    }
    if (strlen(u) > URL_MAX_LEN) {
        x4_seterr(err, errlen, "%s longer than %d bytes", what, URL_MAX_LEN);
        goto bad;
    }
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            x4_seterr(err, errlen, "%s contains blanks or control characters", what);
            goto bad;
        }
    return u;
bad:
    free(u);
    return NULL;
}

static int valid_adapter(const char *a) {
    size_t n = strlen(a);
    if (n < 1 || n > 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9') || a[i] == '_' || a[i] == '-')) return 0;
    return 1;
}

static char *check_method(const json_t *v, const char *what, char *err, size_t errlen) {
    static const char *const ok[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
    if (!v || json_is_null(v)) return x4_strdup("POST");
    if (json_is_string(v)) {
        const char *m = json_string_value(v);
        for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
            if (strcasecmp(m, ok[i]) == 0) return x4_strdup(ok[i]);
    }
    x4_seterr(err, errlen, "%s must be one of GET, POST, PUT, DELETE, PATCH", what);
    return NULL;
}

static int check_string(const json_t *v, const char *what, size_t maxlen, const char **out, char *err,
                        size_t errlen) {
    if (!json_is_string(v)) {
        x4_seterr(err, errlen, "%s is not a string", what);
        return -1;
    }
    if (json_string_length(v) > maxlen) {
        x4_seterr(err, errlen, "%s longer than %zu bytes", what, maxlen);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        x4_seterr(err, errlen, "%s contains a NUL byte", what);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int parse_atomic(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static const json_t *opt(const json_t *rec, const char *key) {
    const json_t *v = json_object_get(rec, key);
    return json_is_null(v) ? NULL : v;
}

/* Validates rec into a new service (not yet added). */
static x4_service *service_from_json(const json_t *rec, const char *source, int share, int expand, char *err,
                                      size_t errlen) {
    const json_t *v;
    const char *str;
    x4_service *s = calloc(1, sizeof *s);
    if (!s) {
        x4_seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (!json_is_object(rec)) {
        x4_seterr(err, errlen, "record is not an object");
        goto bad;
    }
    v = json_object_get(rec, "id");
    if (!v) {
        x4_seterr(err, errlen, "no id");
        goto bad;
    }
    if (check_string(v, "id", ID_MAX, &str, err, errlen)) goto bad;
    if (!valid_id(str)) {
        x4_seterr(err, errlen, "id must be 1..%d characters of [A-Za-z0-9_.:#/-]", ID_MAX);
        goto bad;
    }
    s->id = x4_strdup(str);

    if ((v = opt(rec, "name"))) {
        if (check_string(v, "name", NAME_MAX_LEN, &str, err, errlen)) goto bad;
        s->name = x4_strdup(str);
    } else {
        s->name = x4_strdup(s->id);
    }
    if ((v = opt(rec, "description"))) {
        if (check_string(v, "description", DESC_MAX_LEN, &str, err, errlen)) goto bad;
        s->description = x4_strdup(str);
    } else {
        s->description = x4_strdup("");
    }
    if ((v = opt(rec, "url")) && !(s->url = check_url(v, "url", expand, err, errlen))) goto bad;
    if (!(s->method = check_method(opt(rec, "method"), "method", err, errlen))) goto bad;

    if ((v = opt(rec, "price"))) {
        if (!json_is_object(v)) {
            x4_seterr(err, errlen, "price is not an object");
            goto bad;
        }
        const json_t *amt = json_object_get(v, "amount");
        if (!json_is_string(amt) || parse_atomic(json_string_value(amt), &s->price)) {
            x4_seterr(err, errlen, "price.amount must be a string of digits (atomic units) that fits 64 bits");
            goto bad;
        }
        s->has_price = 1;
        const json_t *a = opt(v, "asset"), *n = opt(v, "network");
        if (a) {
            if (check_string(a, "price.asset", ASSET_MAX_LEN, &str, err, errlen)) goto bad;
            s->asset = x4_strdup(str);
        }
        if (n) {
            if (check_string(n, "price.network", ASSET_MAX_LEN, &str, err, errlen)) goto bad;
            s->network = x4_strdup(str);
        }
    }
    if ((v = opt(rec, "input"))) {
        if (!json_is_object(v)) {
            x4_seterr(err, errlen, "input is not a JSON Schema object");
            goto bad;
        }
        s->input = share ? json_incref((json_t *)v) : json_deep_copy(v);
    }
    if ((v = opt(rec, "output"))) {
        if (!json_is_object(v)) {
            x4_seterr(err, errlen, "output is not a JSON Schema object");
            goto bad;
        }
        s->output = share ? json_incref((json_t *)v) : json_deep_copy(v);
    }
    s->tags = json_array();
    if ((v = opt(rec, "tags"))) {
        if (!json_is_array(v) || json_array_size(v) > TAGS_MAX) {
            x4_seterr(err, errlen, "tags must be an array of at most %d strings", TAGS_MAX);
            goto bad;
        }
        size_t i;
        const json_t *t;
        json_array_foreach(v, i, t) {
            if (check_string(t, "tag", TAG_MAX_LEN, &str, err, errlen)) goto bad;
            json_array_append_new(s->tags, json_string(str));
        }
    }
    if ((v = opt(rec, "compensate"))) {
        if (!json_is_object(v)) {
            x4_seterr(err, errlen, "compensate is not an object");
            goto bad;
        }
        char *cu = check_url(json_object_get(v, "url"), "compensate.url", expand, err, errlen);
        if (!cu) goto bad;
        char *cm = check_method(opt(v, "method"), "compensate.method", err, errlen);
        if (!cm) {
            free(cu);
            goto bad;
        }
        s->compensate = json_pack("{s:s, s:s}", "url", cu, "method", cm);
        free(cu);
        free(cm);
    }
    if ((v = opt(rec, "adapter"))) {
        if (check_string(v, "adapter", 32, &str, err, errlen)) goto bad;
        if (!valid_adapter(str)) {
            x4_seterr(err, errlen, "adapter must be 1..32 characters of [a-z0-9_-]");
            goto bad;
        }
        if (!(s->adapter = x4_strdup(str))) {
            x4_seterr(err, errlen, "out of memory");
            goto bad;
        }
    }
    s->source = x4_strdup(source ? source : "file");
    if (!s->id || !s->name || !s->description || !s->method || !s->tags || !s->source ||
        (opt(rec, "input") && !s->input) || (opt(rec, "output") && !s->output) ||
        (opt(rec, "compensate") && !s->compensate)) {
        x4_seterr(err, errlen, "out of memory");
        goto bad;
    }
    return s;
bad:
    service_free(s);
    return NULL;
}

/* The record shape; deep copies the schemas when `copy`, else shares them (for the dump that
 * feeds the version, which is freed at once). */
static json_t *service_json(const x4_service *s, int copy) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "description", json_string(s->description));
    if (s->url) json_object_set_new(o, "url", json_string(s->url));
    json_object_set_new(o, "method", json_string(s->method));
    if (s->has_price) {
        char amt[24];
        snprintf(amt, sizeof amt, "%llu", (unsigned long long)s->price);
        json_t *p = json_object();
        json_object_set_new(p, "amount", json_string(amt));
        if (s->asset) json_object_set_new(p, "asset", json_string(s->asset));
        if (s->network) json_object_set_new(p, "network", json_string(s->network));
        json_object_set_new(o, "price", p);
    }
#define SHARE(v) (copy ? json_deep_copy(v) : json_incref(v))
    if (s->input) json_object_set_new(o, "input", SHARE(s->input));
    if (s->output) json_object_set_new(o, "output", SHARE(s->output));
    json_object_set_new(o, "tags", SHARE(s->tags));
    if (s->compensate) json_object_set_new(o, "compensate", SHARE(s->compensate));
    if (s->adapter) json_object_set_new(o, "adapter", json_string(s->adapter));
#undef SHARE
    return o;
}

json_t *x4_service_to_json(const x4_service *s) { return s ? service_json(s, 1) : NULL; }

const char *x4_service_adapter(const x4_service *s) {
    if (!s) return "http";
    if (s->adapter) return s->adapter;
    return s->has_price ? "x402" : "http";
}

/* dup_same_source: set to 1/0 when the refusal is a duplicate, so loaders pick the log level.
 * share: the schemas are taken by reference instead of copied — only for a tree the loader
 * parsed itself and drops right after, never for a caller's JSON. */
static int add_record(x4_catalog *c, const json_t *rec, const char *source, int share, int expand, char *err,
                      size_t errlen, int *dup_same_source) {
    if (dup_same_source) *dup_same_source = -1;
    if (!c) {
        x4_seterr(err, errlen, "no catalog");
        return -1;
    }
    x4_service *s = service_from_json(rec, source, share, expand, err, errlen);
    if (!s) return -1;
    ssize_t prev = table_find(c, c->by_id, 0, s->id);
    if (prev < 0 && s->url) {
        prev = table_find(c, c->by_url, 1, s->url);
        if (prev >= 0) x4_seterr(err, errlen, "duplicate url (already served by %s)", c->svcs[prev]->id);
    } else if (prev >= 0) {
        x4_seterr(err, errlen, "duplicate id (first from %s)", c->svcs[prev]->source);
    }
    if (prev >= 0) {
        if (dup_same_source) *dup_same_source = strcmp(c->svcs[prev]->source, s->source) == 0;
        service_free(s);
        return -1;
    }
    if ((c->n + 1) * 2 > c->tcap && tables_grow(c)) goto oom;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        x4_service **ns = realloc(c->svcs, ncap * sizeof *ns);
        if (!ns) goto oom;
        c->svcs = ns;
        c->cap = ncap;
    }
    json_t *canon = service_json(s, 0);
    char *dump = canon ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII) : NULL;
    json_decref(canon);
    if (!dump) goto oom;
    update_version(c, dump, strlen(dump));
    free(dump);
    c->svcs[c->n] = s;
    table_put(c->by_id, c->tcap, s->id, c->n);
    if (s->url) table_put(c->by_url, c->tcap, s->url, c->n);
    c->n++;
    return 0;
oom:
    x4_seterr(err, errlen, "out of memory");
    service_free(s);
    return -1;
}

int x4_catalog_add_record(x4_catalog *c, const json_t *rec, const char *source, char *err, size_t errlen) {
    return add_record(c, rec, source, 0, 0, err, errlen, NULL);
}

static const char *rec_id(const json_t *rec) {
    const json_t *id = json_object_get(rec, "id");
    return json_is_string(id) ? json_string_value(id) : "(no id)";
}

/* Adds and logs one line if refused; returns 1 if added. label names the source in the log. */
static int add_logged(x4_catalog *c, const json_t *rec, const char *source, int share, int expand, const char *label,
                      size_t idx) {
    char err[256];
    int dup;
    if (add_record(c, rec, source, share, expand, err, sizeof err, &dup) == 0) return 1;
    if (dup == 0)
        x4_debug(MOD, "%s: record %zu (%.128s) skipped: %s", label, idx, rec_id(rec), err);
    else
        x4_warn(MOD, "%s: record %zu (%.128s) skipped: %s", label, idx, rec_id(rec), err);
    return 0;
}

int x4_catalog_load_file(x4_catalog *c, const char *path, char *err, size_t errlen) {
    json_error_t je;
    x4_buf b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        x4_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (x4_buf_append(&b, chunk, n)) break;
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        x4_seterr(err, errlen, "%s: read failed", path);
        x4_buf_free(&b);
        return -1;
    }
    json_t *root = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &je);
    x4_buf_free(&b);
    if (!root) {
        x4_seterr(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    const json_t *arr = json_is_array(root) ? root : json_object_get(root, "services");
    if (!json_is_array(arr)) {
        x4_seterr(err, errlen, "%s: expected an array of services or {\"services\": [...]}", path);
        json_decref(root);
        return -1;
    }
    int added = 0;
    size_t i;
    const json_t *rec;
    json_array_foreach(arr, i, rec) added += add_logged(c, rec, "file", 1, 1, path, i);
    x4_debug(MOD, "%s: %d of %zu records loaded", path, added, json_array_size(arr));
    json_decref(root);
    return added;
}

/* ---- x402-upl registry ------------------------------------------------------------------ */

/* A JSON number price (the registry's TypeScript types say number) as an exact decimal string
 * of its shortest 15-significant-digit form; x4_money_parse then decides. */
static int real_to_decimal(double d, char *out, size_t outlen) {
    char g[64];
    snprintf(g, sizeof g, "%.15g", d);
    char *e = strchr(g, 'e');
    if (!e) {
        snprintf(out, outlen, "%s", g);
        return 0;
    }
    int exp = atoi(e + 1);
    *e = 0;
    char digits[32];
    size_t nd = 0;
    int neg = g[0] == '-', point = -1;
    for (char *p = g + neg; *p && nd < sizeof digits - 1; p++) {
        if (*p == '.') point = (int)nd;
        else digits[nd++] = *p;
    }
    digits[nd] = 0;
    if (point < 0) point = (int)nd;
    int pos = point + exp; /* decimal point position within digits */
    if (neg || pos > 20 || pos < -30) return -1;
    x4_buf b = {0};
    int rc = 0;
    if (pos <= 0) {
        rc |= x4_buf_puts(&b, "0.");
        for (int i = 0; i < -pos; i++) rc |= x4_buf_puts(&b, "0");
        rc |= x4_buf_puts(&b, digits);
    } else if ((size_t)pos >= nd) {
        rc |= x4_buf_puts(&b, digits);
        for (size_t i = nd; i < (size_t)pos; i++) rc |= x4_buf_puts(&b, "0");
    } else {
        rc |= x4_buf_append(&b, digits, (size_t)pos);
        rc |= x4_buf_puts(&b, ".");
        rc |= x4_buf_puts(&b, digits + pos);
    }
    if (!rc) snprintf(out, outlen, "%s", b.data);
    x4_buf_free(&b);
    return rc ? -1 : 0;
}

static void tags_add(json_t *tags, const char *t) {
    if (!t || !*t) return;
    size_t i;
    json_t *v;
    json_array_foreach(tags, i, v) if (strcmp(json_string_value(v), t) == 0) return;
    json_array_append_new(tags, json_string(t));
}

static void tags_add_all(json_t *tags, const json_t *arr) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v)) tags_add(tags, json_string_value(v));
}

/* Returns a schema object (new reference) from an object or a JSON string; NULL if absent;
 * sets *bad on a value that is neither. */
static json_t *registry_schema(const json_t *v, int *bad) {
    if (!v || json_is_null(v)) return NULL;
    if (json_is_object(v)) return json_incref((json_t *)v);
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return NULL;
        json_t *p = json_loads(json_string_value(v), 0, NULL);
        if (json_is_object(p)) return p;
        json_decref(p);
    }
    *bad = 1;
    return NULL;
}

/* Maps one registry record onto the DESIGN.md shape; NULL with err if it cannot. */
static json_t *registry_map(const json_t *r, char *err, size_t errlen) {
    if (!json_is_object(r)) {
        x4_seterr(err, errlen, "record is not an object");
        return NULL;
    }
    json_t *o = json_object();
    static const char *const copy[] = {"id", "name", "description", "url", "method"};
    for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
        json_t *v = json_object_get(r, copy[i]);
        if (v) json_object_set(o, copy[i], v);
    }
    if (!json_object_get(o, "method")) json_object_set_new(o, "method", json_string("POST"));

    const json_t *ppc = opt(r, "pricePerCall");
    if (ppc) {
        char dec[64];
        const char *why = "not a number";
        uint64_t atomic = 0;
        int ok = 0;
        if (json_is_string(ppc)) ok = x4_money_parse(json_string_value(ppc), X4_USDC_DECIMALS, &atomic, &why) == 0;
        else if (json_is_integer(ppc) && json_integer_value(ppc) >= 0) {
            snprintf(dec, sizeof dec, "%lld", (long long)json_integer_value(ppc));
            ok = x4_money_parse(dec, X4_USDC_DECIMALS, &atomic, &why) == 0;
        } else if (json_is_real(ppc) && real_to_decimal(json_real_value(ppc), dec, sizeof dec) == 0)
            ok = x4_money_parse(dec, X4_USDC_DECIMALS, &atomic, &why) == 0;
        if (!ok) {
            x4_seterr(err, errlen, "pricePerCall: %s", why);
            json_decref(o);
            return NULL;
        }
        char amt[24];
        snprintf(amt, sizeof amt, "%llu", (unsigned long long)atomic);
        json_t *price = json_pack("{s:s}", "amount", amt);
        json_t *asset = json_object_get(r, "asset"), *net = json_object_get(r, "network");
        if (json_is_string(asset)) json_object_set(price, "asset", asset);
        if (json_is_string(net)) json_object_set(price, "network", net);
        json_object_set_new(o, "price", price);
    }
    int bad = 0;
    json_t *in = registry_schema(json_object_get(r, "inputSchema"), &bad);
    if (!in && !bad) in = registry_schema(json_object_get(r, "input"), &bad);
    json_t *out = registry_schema(json_object_get(r, "outputSchema"), &bad);
    if (!out && !bad) out = registry_schema(json_object_get(r, "output"), &bad);
    if (bad) {
        x4_seterr(err, errlen, "inputSchema/outputSchema is neither a JSON Schema object nor a JSON string of one");
        json_decref(in);
        json_decref(out);
        json_decref(o);
        return NULL;
    }
    if (in) json_object_set_new(o, "input", in);
    if (out) json_object_set_new(o, "output", out);

    json_t *tags = json_array();
    const json_t *cat = json_object_get(r, "category");
    if (json_is_string(cat)) tags_add(tags, json_string_value(cat));
    tags_add_all(tags, json_object_get(r, "capabilities"));
    tags_add_all(tags, json_object_get(r, "tags"));
    json_object_set_new(o, "tags", tags);
    return o;
}

int x4_catalog_add_registry(x4_catalog *c, const json_t *answer, const char *source) {
    static const char *const wrap[] = {"services", "data", "items", "results"};
    const char *src = source ? source : "registry";
    const json_t *arr = json_is_array(answer) ? answer : NULL;
    for (size_t i = 0; !arr && json_is_object(answer) && i < sizeof wrap / sizeof *wrap; i++) {
        const json_t *v = json_object_get(answer, wrap[i]);
        if (json_is_array(v)) arr = v;
    }
    if (!arr) {
        x4_warn(MOD, "%s: answer is neither an array of services nor an object wrapping one", src);
        return 0;
    }
    int added = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(arr, i, r) {
        char err[256];
        json_t *rec = registry_map(r, err, sizeof err);
        if (!rec) {
            x4_warn(MOD, "%s: record %zu (%.128s) skipped: %s", src, i, rec_id(r), err);
            continue;
        }
        added += add_logged(c, rec, src, 0, 0, src, i);
        json_decref(rec);
    }
    return added;
}

/* ---- x402 Bazaar ----
 * Real listings mix the v1 and v2 item shapes, and a v2 server may declare only examples, so
 * the mapping below prefers declared JSON Schemas and falls back to inferring a schema from an
 * example value (types only, every example key optional). */

static json_t *infer_schema(const json_t *example, int depth) {
    if (depth > 8) return json_object();
    if (json_is_object(example)) {
        json_t *props = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)example, k, v) json_object_set_new(props, k, infer_schema(v, depth + 1));
        return json_pack("{s:s, s:o}", "type", "object", "properties", props);
    }
    if (json_is_array(example)) {
        json_t *it = json_array_size(example) ? infer_schema(json_array_get(example, 0), depth + 1) : json_object();
        return json_pack("{s:s, s:o}", "type", "array", "items", it);
    }
    if (json_is_string(example)) return json_pack("{s:s}", "type", "string");
    if (json_is_integer(example)) return json_pack("{s:s}", "type", "integer");
    if (json_is_real(example)) return json_pack("{s:s}", "type", "number");
    if (json_is_boolean(example)) return json_pack("{s:s}", "type", "boolean");
    return json_object();
}

/* A v1 field map {name: {type, description, required}} as a JSON Schema object. */
static json_t *fields_schema(const json_t *fields) {
    json_t *props = json_object(), *req = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fields, k, v) {
        json_t *p = json_object();
        if (json_is_object(v)) {
            json_t *t = json_object_get(v, "type"), *d = json_object_get(v, "description");
            if (json_is_string(t)) json_object_set(p, "type", t);
            if (json_is_string(d)) json_object_set(p, "description", d);
            if (json_is_true(json_object_get(v, "required"))) json_array_append_new(req, json_string(k));
        } else if (json_is_string(v)) {
            json_object_set(p, "type", v);
        }
        json_object_set_new(props, k, p);
    }
    json_t *s = json_pack("{s:s, s:o}", "type", "object", "properties", props);
    if (json_array_size(req)) json_object_set_new(s, "required", req);
    else json_decref(req);
    return s;
}

static const json_t *path_get(const json_t *j, const char *const *keys) {
    for (; *keys && j; keys++) j = json_is_object(j) ? json_object_get(j, *keys) : NULL;
    return j;
}

static json_t *bazaar_map(const json_t *item, const char *network, char *err, size_t errlen) {
    json_t *rec = NULL;
    const char *url = json_string_value(json_object_get(item, "resource"));
    const json_t *accepts = json_object_get(item, "accepts");
    if (!url || !(x4_str_has_prefix(url, "http://") || x4_str_has_prefix(url, "https://"))) {
        x4_seterr(err, errlen, "resource is not an http(s) URL");
        return NULL;
    }
    if (!json_is_array(accepts) || json_array_size(accepts) == 0) {
        x4_seterr(err, errlen, "no accepts");
        return NULL;
    }
    const json_t *req = NULL;
    size_t i;
    const json_t *a;
    json_array_foreach(accepts, i, a) {
        const char *sch = json_string_value(json_object_get(a, "scheme"));
        const char *net = json_string_value(json_object_get(a, "network"));
        if (sch && !strcmp(sch, "exact") && (!network || (net && !strcmp(net, network)))) {
            req = a;
            break;
        }
    }
    if (!req) {
        x4_seterr(err, errlen, "no exact requirement on %s", network ? network : "any network");
        return NULL;
    }
    const json_t *amount = json_object_get(req, "amount");
    if (!amount) amount = json_object_get(req, "maxAmountRequired");
    uint64_t atomic;
    if (!json_is_string(amount) || parse_atomic(json_string_value(amount), &atomic) < 0) {
        x4_seterr(err, errlen, "price is not an atomic amount string");
        return NULL;
    }
    /* id: the URL without its scheme, truncated to the id limit (stable across refreshes). */
    const char *noscheme = strstr(url, "://") + 3;
    char id[129];
    size_t o = 0;
    for (const char *p = noscheme; *p && o < 128; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("_.:#/-", ch);
        id[o++] = ok ? ch : '-';
    }
    id[o] = 0;
    const char *slash = strrchr(noscheme, '/');
    const char *name = json_string_value(json_object_get(item, "serviceName"));
    if (!name) name = json_string_value(path_get(item, (const char *const[]){"metadata", "name", NULL}));
    if (!name) name = slash && slash[1] ? slash + 1 : noscheme;
    const char *desc = json_string_value(json_object_get(item, "description"));
    if (!desc) desc = json_string_value(json_object_get(req, "description"));
    if (!desc) desc = json_string_value(path_get(item, (const char *const[]){"metadata", "description", NULL}));

    /* schemas and method */
    json_t *input = NULL, *output = NULL;
    const char *method = NULL;
    const json_t *bz = path_get(item, (const char *const[]){"extensions", "bazaar", NULL});
    const json_t *in_props = path_get(bz, (const char *const[]){"schema", "properties", "input", "properties", NULL});
    const json_t *body_s = json_object_get(in_props, "body"), *query_s = json_object_get(in_props, "queryParams");
    if (json_is_object(body_s) && json_object_get(body_s, "properties")) input = json_deep_copy(body_s);
    else if (json_is_object(query_s) && json_object_get(query_s, "properties")) input = json_deep_copy(query_s);
    const json_t *info_in = path_get(bz, (const char *const[]){"info", "input", NULL});
    if (!input && json_is_object(json_object_get(info_in, "body"))) input = infer_schema(json_object_get(info_in, "body"), 0);
    if (!input && json_is_object(json_object_get(info_in, "queryParams")))
        input = infer_schema(json_object_get(info_in, "queryParams"), 0);
    method = json_string_value(json_object_get(info_in, "method"));
    const json_t *out_s = path_get(bz, (const char *const[]){"schema", "properties", "output", "properties", "example", NULL});
    if (json_is_object(out_s) && json_object_get(out_s, "type")) output = json_deep_copy(out_s);
    const json_t *out_ex = path_get(bz, (const char *const[]){"info", "output", "example", NULL});
    if (!output && out_ex) output = infer_schema(out_ex, 0);
    /* v1: accepts[i].outputSchema.{input, output} */
    const json_t *v1 = json_object_get(req, "outputSchema");
    const json_t *v1in = json_object_get(v1, "input");
    if (!input && json_is_object(v1in)) {
        const json_t *f = json_object_get(v1in, "bodyFields");
        if (!json_is_object(f)) f = json_object_get(v1in, "queryParams");
        if (json_is_object(f)) input = fields_schema(f);
    }
    if (!method && json_is_object(v1in)) method = json_string_value(json_object_get(v1in, "method"));
    const json_t *v1out = json_object_get(v1, "output");
    if (!output && json_is_object(v1out)) output = json_object_get(v1out, "type") ? json_deep_copy(v1out) : infer_schema(v1out, 0);
    if (!method) method = "GET";
    char amt[24];
    snprintf(amt, sizeof amt, "%llu", (unsigned long long)atomic);
    json_t *price = json_pack("{s:s}", "amount", amt);
    const json_t *asset = json_object_get(req, "asset"), *net = json_object_get(req, "network");
    if (json_is_string(asset)) json_object_set_new(price, "asset", json_string(json_string_value(asset)));
    if (json_is_string(net)) json_object_set_new(price, "network", json_string(json_string_value(net)));
    json_t *tags = json_array();
    tags_add(tags, "x402");
    tags_add_all(tags, json_object_get(item, "tags"));
    rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "id", id, "name", name, "description", desc ? desc : "",
                    "url", url, "method", method, "price", price, "tags", tags);
    if (input && json_is_object(input)) json_object_set_new(rec, "input", input);
    else json_decref(input);
    if (output && json_is_object(output)) json_object_set_new(rec, "output", output);
    else json_decref(output);
    return rec;
}

int x4_catalog_add_bazaar(x4_catalog *c, const json_t *page, const char *network, const char *source) {
    const char *src = source ? source : "bazaar";
    const json_t *items = json_object_get(page, "items");
    if (!json_is_array(items)) items = json_object_get(page, "resources");
    if (!json_is_array(items)) {
        x4_warn(MOD, "%s: answer has no items array", src);
        return 0;
    }
    int added = 0;
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        char err[256];
        json_t *rec = json_is_object(it) ? bazaar_map(it, network, err, sizeof err) : NULL;
        if (!rec) {
            x4_warn(MOD, "%s: item %zu (%.128s) skipped: %s", src, i,
                    json_is_object(it) ? (json_string_value(json_object_get(it, "resource")) ?: "?") : "?",
                    json_is_object(it) ? err : "not an object");
            continue;
        }
        added += add_logged(c, rec, src, 0, 0, src, i);
        json_decref(rec);
    }
    return added;
}
