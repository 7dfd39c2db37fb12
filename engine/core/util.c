/* core/util.c — see util.h. */
#include "core/util.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int x4_buf_append(x4_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int x4_buf_puts(x4_buf *b, const char *s) { return x4_buf_append(b, s, strlen(s)); }

int x4_buf_printf(x4_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (x4_buf_append(b, "", 0) < 0) return -1;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int x4_buf_pg_array_elem(x4_buf *b, const char *s) {
    int rc = x4_buf_puts(b, "\"");
    for (const char *p = s; *p && rc == 0; p++) {
        if (*p == '"' || *p == '\\') rc |= x4_buf_puts(b, "\\");
        rc |= x4_buf_append(b, p, 1);
    }
    return rc | x4_buf_puts(b, "\"");
}

void x4_buf_reset(x4_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void x4_buf_free(x4_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

uint64_t x4_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t x4_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void x4_iso8601(uint64_t ms, char out[32]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

void x4_make_id(const char *prefix, char *out, size_t outlen) {
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char rnd[13];
    for (int i = 0; i < 12; i++) rnd[i] = alphabet[randombytes_uniform(36)];
    rnd[12] = 0;
    snprintf(out, outlen, "%s_%llu_%s", prefix, (unsigned long long)x4_now_ms(), rnd);
}

int x4_random_token(size_t nbytes, char *out, size_t outlen) {
    unsigned char raw[64];
    if (nbytes > sizeof raw) return -1;
    if (outlen < sodium_base64_ENCODED_LEN(nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)) return -1;
    randombytes_buf(raw, nbytes);
    sodium_bin2base64(out, outlen, raw, nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return 0;
}

int x4_money_parse(const char *s, int decimals, uint64_t *out, const char **why) {
    const char *w = NULL;
    uint64_t whole = 0, frac = 0;
    int nfrac = 0, ndigits = 0;
    const char *p = s;
    if (!s || !*s) { w = "not a number"; goto err; }
    if (*p == '-') { w = "negative"; goto err; }
    if (*p == '+') p++;
    for (; *p >= '0' && *p <= '9'; p++, ndigits++) {
        if (whole > (UINT64_MAX - 9) / 10) { w = "too large"; goto err; }
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (nfrac >= decimals) {
                if (*p != '0') { w = "too many decimals"; goto err; }
                continue; /* trailing zeros beyond the asset's precision are harmless */
            }
            frac = frac * 10 + (uint64_t)(*p - '0');
            nfrac++;
            ndigits++;
        }
    }
    if (*p || ndigits == 0) { w = "not a number"; goto err; }
    for (int i = nfrac; i < decimals; i++) frac *= 10;
    uint64_t scale = 1;
    for (int i = 0; i < decimals; i++) scale *= 10;
    if (whole > (UINT64_MAX - frac) / scale) { w = "too large"; goto err; }
    *out = whole * scale + frac;
    return 0;
err:
    if (why) *why = w;
    return -1;
}

void x4_money_format(uint64_t atomic, int decimals, char out[40]) {
    uint64_t scale = 1;
    for (int i = 0; i < decimals; i++) scale *= 10;
    if (decimals == 0)
        snprintf(out, 40, "%llu", (unsigned long long)atomic);
    else
        snprintf(out, 40, "%llu.%0*llu", (unsigned long long)(atomic / scale), decimals,
                 (unsigned long long)(atomic % scale));
}

char *x4_strdup(const char *s) { return s ? strdup(s) : NULL; }

char *x4_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

int x4_str_has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int x4_url_decode(const char *src, size_t n, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 >= outlen) return -1;
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        out[o++] = c;
    }
    out[o] = 0;
    return 0;
}

int x4_query_get(const char *query, size_t qlen, const char *name, char *out, size_t outlen) {
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i < qlen) {
        size_t j = i;
        while (j < qlen && query[j] != '&') j++;
        const char *eq = memchr(query + i, '=', j - i);
        size_t klen = eq ? (size_t)(eq - (query + i)) : j - i;
        if (klen == nlen && memcmp(query + i, name, nlen) == 0) {
            if (!eq) { if (outlen) out[0] = 0; return 1; }
            return x4_url_decode(eq + 1, (size_t)(query + j - (eq + 1)), out, outlen) < 0 ? -1 : 1;
        }
        i = j + 1;
    }
    return 0;
}

void x4_url_redact(const char *url, char *out, size_t outlen) {
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@') at = p;
    if (!at) {
        snprintf(out, outlen, "%s", url);
        return;
    }
    snprintf(out, outlen, "%.*s***%s", (int)(host - url), url, at);
}

void x4_seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

uint64_t x4_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}
