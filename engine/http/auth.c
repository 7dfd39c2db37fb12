/* http/auth.c — see auth.h. The cache is 4096 direct-mapped slots keyed by the key id: O(1),
 * bounded memory, a collision just costs one database lookup. */
#include "http/auth.h"

#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/pg.h"

#define ID_LEN 16
#define SLOTS 4096

typedef struct {
    char id[ID_LEN + 1];
    unsigned char hash[32];
    x4_principal who;
    uint64_t until_ms;
} slot;

struct x4_auth {
    slot slots[SLOTS];
};

typedef struct {
    x4_engine *e;
    char id[ID_LEN + 1];
    unsigned char hash[32];
    x4_auth_cb cb;
    void *ud;
} lookup;

int x4_auth_valid_user(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

/* Splits "x4k_<id>_<secret>"; returns 0 and the id, or -1. */
static int parse_key(const char *key, size_t len, char id[ID_LEN + 1]) {
    if (len < 4 + ID_LEN + 1 + 20 || len > X4_KEY_MAX || memcmp(key, "x4k_", 4) != 0 || key[4 + ID_LEN] != '_')
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return -1;
    }
    memcpy(id, key + 4, ID_LEN);
    id[ID_LEN] = 0;
    return 0;
}

static unsigned slot_of(const char *id) { return (unsigned)(x4_hash_str(id) % SLOTS); }

int x4_auth_open(x4_engine *e) {
    e->auth = calloc(1, sizeof *e->auth);
    return e->auth ? 0 : -1;
}

void x4_auth_close(x4_engine *e) {
    if (!e->auth) return;
    sodium_memzero(e->auth, sizeof *e->auth);
    free(e->auth);
    e->auth = NULL;
}

static void on_lookup(PGresult *r, const char *err, void *ud) {
    lookup *l = ud;
    x4_engine *e = l->e;
    if (err) {
        l->cb(NULL, err, l->ud);
        goto done;
    }
    if (PQntuples(r) != 1) {
        l->cb(NULL, NULL, l->ud);
        goto done;
    }
    /* bytea comes back hex-escaped: "\x<64 hex>". */
    const char *hex = x4_pg_val(r, 0, "hash");
    unsigned char stored[32];
    size_t bin_len = 0;
    if (!hex || strncmp(hex, "\\x", 2) != 0 ||
        sodium_hex2bin(stored, sizeof stored, hex + 2, strlen(hex + 2), NULL, &bin_len, NULL) != 0 || bin_len != 32 ||
        sodium_memcmp(stored, l->hash, 32) != 0) {
        l->cb(NULL, NULL, l->ud);
        goto done;
    }
    x4_principal who = {{0}, 0};
    snprintf(who.user, sizeof who.user, "%s", x4_pg_val(r, 0, "user_id"));
    const char *adm = x4_pg_val(r, 0, "is_admin");
    who.admin = adm && adm[0] == 't';
    if (e->auth) {
        slot *s = &e->auth->slots[slot_of(l->id)];
        memcpy(s->id, l->id, sizeof s->id);
        memcpy(s->hash, l->hash, 32);
        s->who = who;
        s->until_ms = x4_now_ms() + (uint64_t)e->cfg.auth_cache_ms;
    }
    l->cb(&who, NULL, l->ud);
done:
    sodium_memzero(l, sizeof *l);
    free(l);
}

void x4_auth_check(x4_engine *e, const char *key, size_t keylen, x4_auth_cb cb, void *ud) {
    char id[ID_LEN + 1];
    if (!key || parse_key(key, keylen, id) < 0) {
        cb(NULL, NULL, ud);
        return;
    }
    unsigned char hash[32];
    crypto_generichash(hash, sizeof hash, (const unsigned char *)key, keylen, NULL, 0);
    slot *s = &e->auth->slots[slot_of(id)];
    if (s->until_ms > x4_now_ms() && strcmp(s->id, id) == 0) {
        if (sodium_memcmp(s->hash, hash, 32) == 0) {
            x4_principal who = s->who;
            cb(&who, NULL, ud);
        } else {
            cb(NULL, NULL, ud);
        }
        return;
    }
    lookup *l = calloc(1, sizeof *l);
    if (!l) {
        cb(NULL, "out of memory", ud);
        return;
    }
    l->e = e;
    memcpy(l->id, id, sizeof id);
    memcpy(l->hash, hash, 32);
    l->cb = cb;
    l->ud = ud;
    const char *params[] = {id};
    x4_pg_query(e->pg,
                "SELECT k.user_id, k.hash, u.is_admin FROM api_keys k JOIN users u ON u.id = k.user_id "
                "WHERE k.id = $1 AND k.revoked_at IS NULL",
                1, params, on_lookup, l);
}

int x4_auth_create_key(const char *conninfo, const char *user, int admin, char *key_out, size_t keylen, char *err,
                       size_t errlen) {
    static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    int rc = -1;
    PGconn *c = NULL;
    PGresult *r = NULL;
    if (!x4_auth_valid_user(user)) {
        snprintf(err, errlen, "--user: expected 1 to 64 of A-Z a-z 0-9 _ . @ -");
        return -1;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    char id[ID_LEN + 1], secret[64];
    for (int i = 0; i < ID_LEN; i++) id[i] = b36[randombytes_uniform(36)];
    id[ID_LEN] = 0;
    if (x4_random_token(32, secret, sizeof secret) < 0 ||
        (size_t)snprintf(key_out, keylen, "x4k_%s_%s", id, secret) >= keylen) {
        snprintf(err, errlen, "key buffer too small");
        goto out;
    }
    unsigned char hash[32];
    char hex[2 * 32 + 3] = "\\x";
    crypto_generichash(hash, sizeof hash, (const unsigned char *)key_out, strlen(key_out), NULL, 0);
    sodium_bin2hex(hex + 2, sizeof hex - 2, hash, sizeof hash);
    c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    const char *params[] = {user, admin ? "t" : "f", id, hex};
    /* One statement, one transaction: the user (created if absent; --admin only ever grants) and the key. */
    r = PQexecParams(c,
                     "WITH u AS (INSERT INTO users (id, is_admin) VALUES ($1, $2::boolean) "
                     "  ON CONFLICT (id) DO UPDATE SET is_admin = users.is_admin OR EXCLUDED.is_admin RETURNING id) "
                     "INSERT INTO api_keys (id, user_id, hash) SELECT $3, u.id, $4::bytea FROM u",
                     4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "cannot store the key: %s", PQresultErrorMessage(r));
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(secret, sizeof secret);
    if (rc < 0 && keylen) sodium_memzero(key_out, keylen);
    PQclear(r);
    PQfinish(c);
    return rc;
}

int x4_auth_revoke_key(const char *conninfo, const char *key_or_id, char *err, size_t errlen) {
    char id[ID_LEN + 1];
    size_t n = strlen(key_or_id);
    if (parse_key(key_or_id, n, id) < 0) {
        if (n != ID_LEN) {
            snprintf(err, errlen, "expected a key (x4k_...) or its %d-character id", ID_LEN);
            return -1;
        }
        memcpy(id, key_or_id, ID_LEN + 1);
    }
    int rc = -1;
    PGresult *r = NULL;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    const char *params[] = {id};
    r = PQexecParams(c, "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", 1, NULL, params,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        goto out;
    }
    if (strcmp(PQcmdTuples(r), "1") != 0) {
        snprintf(err, errlen, "no active key with id %s", id);
        goto out;
    }
    rc = 0;
out:
    PQclear(r);
    PQfinish(c);
    return rc;
}

int x4_auth_list_keys(const char *conninfo, const char *user, void *file, char *err, size_t errlen) {
    int rc = -1;
    PGresult *r = NULL;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    const char *params[] = {user};
    r = PQexecParams(c,
                     "SELECT id, x4_iso(created_at) AS created, x4_iso(revoked_at) AS revoked FROM api_keys "
                     "WHERE user_id = $1 ORDER BY created_at",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++)
        fprintf(file, "%s\t%s\t%s%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetisnull(r, i, 2) ? "active" : "revoked ", PQgetisnull(r, i, 2) ? "" : PQgetvalue(r, i, 2));
    rc = 0;
out:
    PQclear(r);
    PQfinish(c);
    return rc;
}
