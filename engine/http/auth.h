/* http/auth.h — API keys: creation (CLI, blocking) and verification (on the loop).
 *
 * A key is "x4k_<16 base36 id>_<43 base64url secret>" (URL-safe, one token). Only its
 * BLAKE2b-256 hash is stored (api_keys.hash); verification looks the row up by the public id
 * and compares hashes with sodium_memcmp (constant time). Verified keys are cached in a
 * bounded direct-mapped table for AUTH_CACHE_MS (default 30 s), so most requests cost one hash
 * and no database round trip; revocation takes effect within that window. */
#ifndef X4_HTTP_AUTH_H
#define X4_HTTP_AUTH_H

#include <stddef.h>

#include "core/engine.h"

#define X4_KEY_MAX 96

typedef struct {
    char user[65];
    int admin;
} x4_principal;

/* p is NULL when the key is missing, malformed, unknown or revoked; err is set (and p NULL)
 * only when the database could not answer. */
typedef void (*x4_auth_cb)(const x4_principal *p, const char *err, void *ud);

int x4_auth_open(x4_engine *e);
void x4_auth_close(x4_engine *e);
void x4_auth_check(x4_engine *e, const char *key, size_t keylen, x4_auth_cb cb, void *ud);

/* Blocking (CLI): creates the user if absent and a new key; writes it to key_out. */
int x4_auth_create_key(const char *conninfo, const char *user, int admin, char *key_out, size_t keylen, char *err,
                       size_t errlen);
/* Blocking (CLI): revokes a key given whole or by its public id ("x4k_<id>_..." or "<id>").
 * Takes effect everywhere within AUTH_CACHE_MS. */
int x4_auth_revoke_key(const char *conninfo, const char *key_or_id, char *err, size_t errlen);
/* Blocking (CLI): prints "<id>\t<created>\t<active|revoked <when>>" per key of the user. */
int x4_auth_list_keys(const char *conninfo, const char *user, void *file, char *err, size_t errlen);
/* 1 if s is a valid user id: [A-Za-z0-9_.@-]{1,64}. */
int x4_auth_valid_user(const char *s);

#endif
