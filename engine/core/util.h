/* core/util.h — small shared helpers: a growable byte buffer, clocks, IDs, exact money
 * parsing/formatting, and string utilities. Everything here is allocation-checked and
 * returns a status; nothing here touches the loop. */
#ifndef X4_CORE_UTIL_H
#define X4_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Growable buffer, always NUL-terminated when data != NULL. */
typedef struct {
    char *data;
    size_t len, cap;
} x4_buf;

int x4_buf_append(x4_buf *b, const void *p, size_t n);
int x4_buf_puts(x4_buf *b, const char *s);
int x4_buf_printf(x4_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as one element of a PostgreSQL array literal: double-quoted, " and \ escaped. */
int x4_buf_pg_array_elem(x4_buf *b, const char *s);
void x4_buf_reset(x4_buf *b);
void x4_buf_free(x4_buf *b);

/* Clocks. */
uint64_t x4_now_ms(void);        /* wall clock, ms since the epoch */
uint64_t x4_mono_us(void);       /* monotonic, µs */
void x4_iso8601(uint64_t ms, char out[32]); /* 2026-01-11T12:00:00.000Z */

/* Random IDs: "<prefix>_<ms>_<12 base36 chars>" (e.g. wf_1736596800000_k3j2m1x9q0ab). */
void x4_make_id(const char *prefix, char *out, size_t outlen);
/* Random URL-safe token of n bytes of entropy, base64url without padding. */
int x4_random_token(size_t nbytes, char *out, size_t outlen);

/* Money: exact decimal <-> atomic units. "10.5" with 6 decimals -> 10500000.
 * Returns 0, or -1 with *why set ("not a number", "too many decimals", "negative", "too large"). */
int x4_money_parse(const char *s, int decimals, uint64_t *out, const char **why);
/* Formats atomic units as a decimal string with exactly `decimals` places. */
void x4_money_format(uint64_t atomic, int decimals, char out[40]);

/* Strings. */
char *x4_strdup(const char *s);              /* NULL-safe */
char *x4_strndup(const char *s, size_t n);
int x4_str_has_prefix(const char *s, const char *prefix);
/* Percent-decodes src[0..n) into out (NUL-terminated); -1 on malformed escapes or overflow. */
int x4_url_decode(const char *src, size_t n, char *out, size_t outlen);
/* Finds query parameter `name` in a query string "a=1&b=2" (without '?'); decoded into out.
 * Returns 1 if found, 0 if absent, -1 if malformed. */
int x4_query_get(const char *query, size_t qlen, const char *name, char *out, size_t outlen);

/* Writes a formatted reason into err (a no-op when err is NULL or errlen 0). */
void x4_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* FNV-1a over a NUL-terminated string: the hash of every chained table keyed by an id. */
uint64_t x4_hash_str(const char *s);

/* Copies a URL for logging with any user:password@ part replaced by "***@". */
void x4_url_redact(const char *url, char *out, size_t outlen);

#endif
