/* pay/solana.c — base58, the edwards25519 on-curve test, PDA/ATA derivation, instructions,
 * legacy/v0 message compilation, the wire transaction and the x402 "exact" payment.
 * See solana.h for the shape and docs/solana.md for the decisions.
 *
 * The on-curve test needs field arithmetic mod 2^255-19 that libsodium does not export with
 * Solana's semantics (crypto_core_ed25519_is_valid_point is a stricter predicate; solana.h
 * says why that matters), so a small variable-time radix-2^51 implementation lives here. It
 * only ever sees public data (hashes of public seeds), so constant time is not required. */
#include "pay/solana.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* program ids                                                                                */

const x4_sol_pubkey x4_sol_system_program = {{0}};
const x4_sol_pubkey x4_sol_token_program = {{
    0x06, 0xdd, 0xf6, 0xe1, 0xd7, 0x65, 0xa1, 0x93, 0xd9, 0xcb, 0xe1, 0x46, 0xce, 0xeb, 0x79, 0xac,
    0x1c, 0xb4, 0x85, 0xed, 0x5f, 0x5b, 0x37, 0x91, 0x3a, 0x8c, 0xf5, 0x85, 0x7e, 0xff, 0x00, 0xa9}};
const x4_sol_pubkey x4_sol_token2022_program = {{
    0x06, 0xdd, 0xf6, 0xe1, 0xee, 0x75, 0x8f, 0xde, 0x18, 0x42, 0x5d, 0xbc, 0xe4, 0x6c, 0xcd, 0xda,
    0xb6, 0x1a, 0xfc, 0x4d, 0x83, 0xb9, 0x0d, 0x27, 0xfe, 0xbd, 0xf9, 0x28, 0xd8, 0xa1, 0x8b, 0xfc}};
const x4_sol_pubkey x4_sol_ata_program = {{
    0x8c, 0x97, 0x25, 0x8f, 0x4e, 0x24, 0x89, 0xf1, 0xbb, 0x3d, 0x10, 0x29, 0x14, 0x8e, 0x0d, 0x83,
    0x0b, 0x5a, 0x13, 0x99, 0xda, 0xff, 0x10, 0x84, 0x04, 0x8e, 0x7b, 0xd8, 0xdb, 0xe9, 0xf8, 0x59}};
const x4_sol_pubkey x4_sol_compute_budget_program = {{
    0x03, 0x06, 0x46, 0x6f, 0xe5, 0x21, 0x17, 0x32, 0xff, 0xec, 0xad, 0xba, 0x72, 0xc3, 0x9b, 0xe7,
    0xbc, 0x8c, 0xe5, 0xbb, 0xc5, 0xf7, 0x12, 0x6b, 0x2c, 0x43, 0x9b, 0x3a, 0x40, 0x00, 0x00, 0x00}};
const x4_sol_pubkey x4_sol_memo_program = {{
    0x05, 0x4a, 0x53, 0x5a, 0x99, 0x29, 0x21, 0x06, 0x4d, 0x24, 0xe8, 0x71, 0x60, 0xda, 0x38, 0x7c,
    0x7c, 0x35, 0xb5, 0xdd, 0xbc, 0x92, 0xbb, 0x81, 0xe4, 0x1f, 0xa8, 0x40, 0x41, 0x05, 0x44, 0x8d}};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || !errlen) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* base58                                                                                     */

static const char B58_ALPHABET[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
#define B58_MAX_BYTES 256  /* longest value we encode or decode (keys 32, signatures 64) */

static int b58_value(unsigned char c) {
    const char *p;
    if (c == 0) return -1;
    p = strchr(B58_ALPHABET, c);
    return p ? (int)(p - B58_ALPHABET) : -1;
}

int x4_b58_encode(const uint8_t *in, size_t n, char *out, size_t outlen) {
    uint8_t digits[B58_MAX_BYTES * 138 / 100 + 1]; /* little-endian base-58 digits */
    size_t zeros = 0, len = 0, o = 0;
    if (!out || n > B58_MAX_BYTES || (!in && n)) return -1;
    while (zeros < n && in[zeros] == 0) zeros++;
    for (size_t i = zeros; i < n; i++) {
        uint32_t carry = in[i];
        for (size_t j = 0; j < len; j++) {
            carry += (uint32_t)digits[j] << 8;
            digits[j] = (uint8_t)(carry % 58);
            carry /= 58;
        }
        while (carry) {
            digits[len++] = (uint8_t)(carry % 58);
            carry /= 58;
        }
    }
    if (zeros + len + 1 > outlen) return -1;
    for (size_t i = 0; i < zeros; i++) out[o++] = '1';
    for (size_t i = len; i > 0; i--) out[o++] = B58_ALPHABET[digits[i - 1]];
    out[o] = 0;
    return 0;
}

int x4_b58_decode(const char *s, uint8_t *out, size_t outcap, size_t *outlen) {
    uint8_t bytes[B58_MAX_BYTES]; /* little-endian */
    size_t zeros = 0, len = 0, slen;
    if (!s || !out) return -1;
    slen = strlen(s);
    while (zeros < slen && s[zeros] == '1') zeros++;
    if (zeros > outcap) return -1;
    for (size_t i = zeros; i < slen; i++) {
        int v = b58_value((unsigned char)s[i]);
        uint32_t carry;
        if (v < 0) return -1;
        carry = (uint32_t)v;
        for (size_t j = 0; j < len; j++) {
            carry += (uint32_t)bytes[j] * 58;
            bytes[j] = (uint8_t)(carry & 0xff);
            carry >>= 8;
        }
        while (carry) {
            if (len >= sizeof bytes || zeros + len >= outcap) return -1;
            bytes[len++] = (uint8_t)(carry & 0xff);
            carry >>= 8;
        }
    }
    memset(out, 0, zeros);
    for (size_t i = 0; i < len; i++) out[zeros + i] = bytes[len - 1 - i];
    if (outlen) *outlen = zeros + len;
    return 0;
}

int x4_b58_decode_exact(const char *s, uint8_t *out, size_t want) {
    uint8_t tmp[B58_MAX_BYTES];
    size_t n = 0;
    if (want > sizeof tmp) return -1;
    /* Decode with one spare byte of room so that a too-long value is seen as such. */
    if (x4_b58_decode(s, tmp, want < sizeof tmp ? want + 1 : want, &n) != 0 || n != want)
        return -1;
    memcpy(out, tmp, want);
    return 0;
}

int x4_sol_pubkey_from_b58(const char *s, x4_sol_pubkey *out) {
    return x4_b58_decode_exact(s, out->b, X4_SOL_KEY_LEN);
}

void x4_sol_pubkey_to_b58(const x4_sol_pubkey *k, char out[X4_SOL_B58_KEY_MAX]) {
    if (x4_b58_encode(k->b, X4_SOL_KEY_LEN, out, X4_SOL_B58_KEY_MAX) != 0) out[0] = 0;
}

bool x4_sol_pubkey_eq(const x4_sol_pubkey *a, const x4_sol_pubkey *b) {
    return memcmp(a->b, b->b, X4_SOL_KEY_LEN) == 0;
}

int x4_sol_blockhash_from_b58(const char *s, uint8_t out[32]) { return x4_b58_decode_exact(s, out, 32); }

void x4_sol_signature_to_b58(const uint8_t sig[64], char out[X4_SOL_B58_SIG_MAX]) {
    if (x4_b58_encode(sig, X4_SOL_SIG_LEN, out, X4_SOL_B58_SIG_MAX) != 0) out[0] = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* GF(2^255-19), radix 2^51, variable time                                                    */

typedef uint64_t fe[5];
typedef unsigned __int128 u128;
#define M51 ((UINT64_C(1) << 51) - 1)

static uint64_t load64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Bit 255 is ignored (it is the sign of x), and y >= p is accepted and reduced, as
 * curve25519-dalek's decompress and @noble/curves (zip215) do. */
static void fe_frombytes(fe h, const uint8_t s[32]) {
    uint64_t w0 = load64_le(s), w1 = load64_le(s + 8), w2 = load64_le(s + 16),
             w3 = load64_le(s + 24);
    h[0] = w0 & M51;
    h[1] = ((w0 >> 51) | (w1 << 13)) & M51;
    h[2] = ((w1 >> 38) | (w2 << 26)) & M51;
    h[3] = ((w2 >> 25) | (w3 << 39)) & M51;
    h[4] = (w3 >> 12) & M51;
}

/* h = f * g. Inputs' limbs must be < 2^54; outputs' limbs are < 2^51 + 2^13. Aliasing is fine. */
static void fe_mul(fe h, const fe f, const fe g) {
    uint64_t g1 = 19 * g[1], g2 = 19 * g[2], g3 = 19 * g[3], g4 = 19 * g[4], c;
    u128 r0 = (u128)f[0] * g[0] + (u128)f[1] * g4 + (u128)f[2] * g3 + (u128)f[3] * g2 +
              (u128)f[4] * g1;
    u128 r1 = (u128)f[0] * g[1] + (u128)f[1] * g[0] + (u128)f[2] * g4 + (u128)f[3] * g3 +
              (u128)f[4] * g2;
    u128 r2 = (u128)f[0] * g[2] + (u128)f[1] * g[1] + (u128)f[2] * g[0] + (u128)f[3] * g4 +
              (u128)f[4] * g3;
    u128 r3 = (u128)f[0] * g[3] + (u128)f[1] * g[2] + (u128)f[2] * g[1] + (u128)f[3] * g[0] +
              (u128)f[4] * g4;
    u128 r4 = (u128)f[0] * g[4] + (u128)f[1] * g[3] + (u128)f[2] * g[2] + (u128)f[3] * g[1] +
              (u128)f[4] * g[0];
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    c = (uint64_t)(r4 >> 51);
    h[0] = ((uint64_t)r0 & M51) + c * 19;
    h[1] = ((uint64_t)r1 & M51) + (h[0] >> 51);
    h[0] &= M51;
    h[2] = (uint64_t)r2 & M51;
    h[3] = (uint64_t)r3 & M51;
    h[4] = (uint64_t)r4 & M51;
}

static void fe_add(fe h, const fe f, const fe g) {
    for (int i = 0; i < 5; i++) h[i] = f[i] + g[i];
}

/* h = f - g, computed as f + 2p - g (g's limbs must be < 2^52 - 38). */
static void fe_sub(fe h, const fe f, const fe g) {
    h[0] = f[0] + UINT64_C(0xFFFFFFFFFFFDA) - g[0];
    for (int i = 1; i < 5; i++) h[i] = f[i] + UINT64_C(0xFFFFFFFFFFFFE) - g[i];
}

/* Fully reduces into [0, p), limbs < 2^51. */
static void fe_reduce(fe h) {
    uint64_t u[5], c;
    for (;;) {
        c = h[0] >> 51; h[0] &= M51; h[1] += c;
        c = h[1] >> 51; h[1] &= M51; h[2] += c;
        c = h[2] >> 51; h[2] &= M51; h[3] += c;
        c = h[3] >> 51; h[3] &= M51; h[4] += c;
        c = h[4] >> 51; h[4] &= M51; h[0] += 19 * c;
        if (h[0] <= M51) break;
    }
    /* Now h < 2^255; h >= p iff h + 19 >= 2^255. */
    memcpy(u, h, sizeof u);
    u[0] += 19;
    for (int i = 0; i < 4; i++) { c = u[i] >> 51; u[i] &= M51; u[i + 1] += c; }
    if (u[4] >> 51) {
        u[4] &= M51;
        memcpy(h, u, sizeof u);
    }
}

/* h = f^e, e a 256-bit little-endian exponent. */
static void fe_pow(fe h, const fe f, const uint8_t e[32]) {
    fe r = {1, 0, 0, 0, 0}, b;
    memcpy(b, f, sizeof b);
    for (int i = 255; i >= 0; i--) {
        fe_mul(r, r, r);
        if ((e[i / 8] >> (i % 8)) & 1) fe_mul(r, r, b);
    }
    memcpy(h, r, sizeof r);
}

/* d = -121665/121666 mod p, little-endian. */
static const uint8_t ED25519_D[32] = {
    0xa3, 0x78, 0x59, 0x13, 0xca, 0x4d, 0xeb, 0x75, 0xab, 0xd8, 0x41, 0x41, 0x4d, 0x0a, 0x70, 0x00,
    0x98, 0xe8, 0x79, 0x77, 0x79, 0x40, 0xc7, 0x8c, 0x73, 0xfe, 0x6f, 0x2b, 0xee, 0x6c, 0x03, 0x52};
/* (p - 1) / 2 = 2^254 - 10, little-endian: Euler's criterion exponent. */
static const uint8_t P_MINUS_1_HALF[32] = {
    0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f};

int x4_sol_is_on_curve(const uint8_t p[32]) {
    /* A point exists for y iff x^2 = u/v has a solution: u = y^2 - 1, v = d*y^2 + 1 (never 0,
     * since -1/d is not a square). u/v is a square iff u*v is (u = 0 included), and Euler's
     * criterion says so: (u*v)^((p-1)/2) is 0 or 1, never p-1. The sign bit does not matter:
     * x = 0 with the sign bit set decompresses too in dalek and in @noble/curves (zip215). */
    fe y, d, y2, u, v, w, chi, one = {1, 0, 0, 0, 0};
    int is_zero = 1, is_one = 1;
    fe_frombytes(y, p);
    fe_frombytes(d, ED25519_D);
    fe_mul(y2, y, y);
    fe_sub(u, y2, one);
    fe_mul(v, d, y2);
    fe_add(v, v, one);
    fe_mul(w, u, v);
    fe_pow(chi, w, P_MINUS_1_HALF);
    fe_reduce(chi);
    for (int i = 0; i < 5; i++) {
        if (chi[i] != 0) is_zero = 0;
        if (chi[i] != (i == 0 ? 1u : 0u)) is_one = 0;
    }
    return is_zero || is_one;
}

/* ------------------------------------------------------------------------------------------ */
/* PDA / ATA                                                                                  */

static const char PDA_MARKER[] = "ProgramDerivedAddress";

int x4_sol_create_program_address(const x4_sol_seed *seeds, size_t nseeds,
                                  const x4_sol_pubkey *program, x4_sol_pubkey *out) {
    crypto_hash_sha256_state st;
    uint8_t h[32];
    if (nseeds > X4_SOL_MAX_SEEDS || (!seeds && nseeds)) return -1;
    for (size_t i = 0; i < nseeds; i++)
        if (seeds[i].n > X4_SOL_MAX_SEED_LEN || (!seeds[i].p && seeds[i].n)) return -1;
    crypto_hash_sha256_init(&st);
    for (size_t i = 0; i < nseeds; i++)
        crypto_hash_sha256_update(&st, seeds[i].p, seeds[i].n);
    crypto_hash_sha256_update(&st, program->b, 32);
    crypto_hash_sha256_update(&st, (const unsigned char *)PDA_MARKER, sizeof PDA_MARKER - 1);
    crypto_hash_sha256_final(&st, h);
    if (x4_sol_is_on_curve(h)) return 1;
    memcpy(out->b, h, 32);
    return 0;
}

int x4_sol_find_program_address(const x4_sol_seed *seeds, size_t nseeds,
                                const x4_sol_pubkey *program, x4_sol_pubkey *out, uint8_t *bump) {
    x4_sol_seed all[X4_SOL_MAX_SEEDS];
    uint8_t b;
    if (nseeds >= X4_SOL_MAX_SEEDS || (!seeds && nseeds)) return -1;
    if (nseeds) memcpy(all, seeds, nseeds * sizeof *seeds);
    all[nseeds].p = &b;
    all[nseeds].n = 1;
    for (b = 255; b > 0; b--) {
        int rc = x4_sol_create_program_address(all, nseeds + 1, program, out);
        if (rc < 0) return -1;
        if (rc == 0) {
            if (bump) *bump = b;
            return 0;
        }
    }
    return -1;
}

int x4_sol_ata(const x4_sol_pubkey *owner, const x4_sol_pubkey *mint,
               const x4_sol_pubkey *token_program, x4_sol_pubkey *out, uint8_t *bump) {
    x4_sol_seed seeds[3] = {{owner->b, 32}, {token_program->b, 32}, {mint->b, 32}};
    return x4_sol_find_program_address(seeds, 3, &x4_sol_ata_program, out, bump);
}

/* ------------------------------------------------------------------------------------------ */
/* instructions                                                                               */

static void put_u32le(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void ix_init(x4_sol_ix *ix, const x4_sol_pubkey *program) {
    ix->program_id = *program;
    ix->naccounts = 0;
    ix->data_len = 0;
}

static void ix_meta(x4_sol_ix *ix, const x4_sol_pubkey *k, bool signer, bool writable) {
    x4_sol_meta *m = &ix->accounts[ix->naccounts++];
    m->pubkey = *k;
    m->is_signer = signer;
    m->is_writable = writable;
}

void x4_sol_ix_system_transfer(x4_sol_ix *ix, const x4_sol_pubkey *from, const x4_sol_pubkey *to,
                               uint64_t lamports) {
    ix_init(ix, &x4_sol_system_program);
    ix_meta(ix, from, true, true);
    ix_meta(ix, to, false, true);
    put_u32le(ix->data, 2); /* SystemInstruction::Transfer */
    put_u64le(ix->data + 4, lamports);
    ix->data_len = 12;
}

void x4_sol_ix_set_cu_limit(x4_sol_ix *ix, uint32_t units) {
    ix_init(ix, &x4_sol_compute_budget_program);
    ix->data[0] = 2; /* ComputeBudgetInstruction::SetComputeUnitLimit */
    put_u32le(ix->data + 1, units);
    ix->data_len = 5;
}

void x4_sol_ix_set_cu_price(x4_sol_ix *ix, uint64_t micro_lamports) {
    ix_init(ix, &x4_sol_compute_budget_program);
    ix->data[0] = 3; /* ComputeBudgetInstruction::SetComputeUnitPrice */
    put_u64le(ix->data + 1, micro_lamports);
    ix->data_len = 9;
}

int x4_sol_ix_transfer_checked(x4_sol_ix *ix, const x4_sol_pubkey *token_program,
                               const x4_sol_pubkey *source, const x4_sol_pubkey *mint,
                               const x4_sol_pubkey *destination, const x4_sol_pubkey *authority,
                               uint64_t amount, uint8_t decimals) {
    if (!x4_sol_pubkey_eq(token_program, &x4_sol_token_program) &&
        !x4_sol_pubkey_eq(token_program, &x4_sol_token2022_program))
        return -1;
    ix_init(ix, token_program);
    ix_meta(ix, source, false, true);
    ix_meta(ix, mint, false, false);
    ix_meta(ix, destination, false, true);
    ix_meta(ix, authority, true, false);
    ix->data[0] = 12; /* TokenInstruction::TransferChecked, same tag in Token-2022 */
    put_u64le(ix->data + 1, amount);
    ix->data[9] = decimals;
    ix->data_len = 10;
    return 0;
}

/* Strict UTF-8 (what the memo program checks with Rust's from_utf8). */
static bool utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (k >= n - i) return false; /* the continuation bytes must all be there */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += k + 1;
    }
    return true;
}

int x4_sol_ix_memo(x4_sol_ix *ix, const uint8_t *memo, size_t len, const x4_sol_pubkey *signers,
                   size_t nsigners) {
    if (!memo || len == 0 || len > X4_SOL_MEMO_MAX || nsigners > X4_SOL_IX_MAX_ACCOUNTS ||
        (nsigners && !signers) || !utf8_valid(memo, len))
        return -1;
    ix_init(ix, &x4_sol_memo_program);
    for (size_t i = 0; i < nsigners; i++) ix_meta(ix, &signers[i], true, false);
    memcpy(ix->data, memo, len);
    ix->data_len = len;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* wire encoding                                                                              */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int overflow;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n) {
    if (w->overflow || n > w->cap - w->len) { w->overflow = 1; return; }
    if (n) memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
/* compact-u16 ("short_vec"): 7 bits per byte, low first, high bit = more. */
static void w_cu16(wbuf *w, size_t v) {
    if (v > 0xffff) { w->overflow = 1; return; }
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v) b |= 0x80;
        w_u8(w, b);
    } while (v);
}

typedef struct {
    const uint8_t *p;
    size_t len, off;
    const char *why;
} rbuf;

static const uint8_t *r_bytes(rbuf *r, size_t n) {
    const uint8_t *p;
    if (r->why) return NULL;
    if (n > r->len - r->off) { r->why = "truncated"; return NULL; }
    p = r->p + r->off;
    r->off += n;
    return p;
}
static uint8_t r_u8(rbuf *r) {
    const uint8_t *p = r_bytes(r, 1);
    return p ? *p : 0;
}
/* Canonical only: no trailing zero continuation byte, at most 3 bytes, value <= 0xffff. */
static size_t r_cu16(rbuf *r) {
    size_t v = 0;
    for (int i = 0; i < 3; i++) {
        uint8_t b = r_u8(r);
        if (r->why) return 0;
        if (i == 2 && b > 3) { r->why = "compact-u16 overflow"; return 0; }
        if (i > 0 && b == 0) { r->why = "non-canonical compact-u16"; return 0; }
        v |= (size_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) return v;
    }
    r->why = "compact-u16 overflow";
    return 0;
}

/* Decodes tx->wire[0..wire_len) into the view fields. */
static int tx_decode(x4_sol_tx *tx, char *err, size_t errlen) {
    rbuf r = {tx->wire, tx->wire_len, 0, NULL};
    x4_sol_message *m = &tx->m;
    size_t total_keys;
    memset(m, 0, sizeof *m);
    tx->nsigs = r_cu16(&r);
    tx->sigs = (uint8_t *)r_bytes(&r, tx->nsigs * X4_SOL_SIG_LEN);
    if (r.why) goto bad;
    tx->msg = tx->wire + r.off;
    tx->msg_len = tx->wire_len - r.off;
    m->version = X4_SOL_LEGACY;
    if (r.off < r.len && (r.p[r.off] & 0x80)) {
        m->version = r_u8(&r) & 0x7f;
        if (m->version != 0) { r.why = "unsupported message version"; goto bad; }
    }
    m->num_required_signatures = r_u8(&r);
    m->num_readonly_signed = r_u8(&r);
    m->num_readonly_unsigned = r_u8(&r);
    m->nkeys = r_cu16(&r);
    if (r.why) goto bad;
    if (m->nkeys > X4_SOL_MSG_MAX_KEYS) { r.why = "too many account keys"; goto bad; }
    for (size_t i = 0; i < m->nkeys; i++) {
        const uint8_t *k = r_bytes(&r, 32);
        if (!k) goto bad;
        memcpy(m->keys[i].b, k, 32);
        for (size_t j = 0; j < i; j++)
            if (x4_sol_pubkey_eq(&m->keys[i], &m->keys[j])) { r.why = "duplicate account key"; goto bad; }
    }
    {
        const uint8_t *bh = r_bytes(&r, 32);
        if (!bh) goto bad;
        memcpy(m->blockhash, bh, 32);
    }
    m->nix = r_cu16(&r);
    if (r.why) goto bad;
    if (m->nix > X4_SOL_MSG_MAX_IX) { r.why = "too many instructions"; goto bad; }
    for (size_t i = 0; i < m->nix; i++) {
        x4_sol_cix *c = &m->ix[i];
        c->program_index = r_u8(&r);
        c->naccounts = r_cu16(&r);
        c->accounts = r_bytes(&r, c->naccounts);
        c->data_len = r_cu16(&r);
        c->data = r_bytes(&r, c->data_len);
        if (r.why) goto bad;
    }
    total_keys = m->nkeys;
    if (m->version == 0) {
        m->nlookups = r_cu16(&r);
        if (r.why) goto bad;
        if (m->nlookups > X4_SOL_MSG_MAX_LOOKUPS) { r.why = "too many address-table lookups"; goto bad; }
        for (size_t i = 0; i < m->nlookups; i++) {
            x4_sol_lookup *l = &m->lookups[i];
            const uint8_t *k = r_bytes(&r, 32);
            if (!k) goto bad;
            memcpy(l->table.b, k, 32);
            l->nwritable = r_cu16(&r);
            l->writable = r_bytes(&r, l->nwritable);
            l->nreadonly = r_cu16(&r);
            l->readonly = r_bytes(&r, l->nreadonly);
            if (r.why) goto bad;
            total_keys += l->nwritable + l->nreadonly;
        }
    }
    if (r.off != r.len) { r.why = "trailing bytes after the message"; goto bad; }
    /* The checks Solana's sanitize() makes, plus "one signature per required signer". */
    if (m->num_required_signatures == 0) { r.why = "no required signatures"; goto bad; }
    if (tx->nsigs != m->num_required_signatures) { r.why = "signature count differs from the header"; goto bad; }
    if ((size_t)m->num_required_signatures + m->num_readonly_unsigned > m->nkeys) { r.why = "header counts exceed the keys"; goto bad; }
    if (m->num_readonly_signed >= m->num_required_signatures) { r.why = "fee payer is not writable"; goto bad; }
    if (total_keys > 256) { r.why = "more than 256 accounts"; goto bad; }
    for (size_t i = 0; i < m->nix; i++) {
        const x4_sol_cix *c = &m->ix[i];
        if (c->program_index == 0 || c->program_index >= m->nkeys) { r.why = "bad program index"; goto bad; }
        for (size_t j = 0; j < c->naccounts; j++)
            if (c->accounts[j] >= total_keys) { r.why = "account index out of range"; goto bad; }
    }
    return 0;
bad:
    set_err(err, errlen, "invalid transaction: %s (at byte %zu)", r.why ? r.why : "truncated", r.off);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* compilation                                                                                */

typedef struct {
    x4_sol_pubkey key;
    bool signer, writable;
} ckey;

static int ckey_get(ckey *ks, size_t *nk, const x4_sol_pubkey *k) {
    for (size_t i = 0; i < *nk; i++)
        if (x4_sol_pubkey_eq(&ks[i].key, k)) return (int)i;
    if (*nk >= X4_SOL_MSG_MAX_KEYS) return -1;
    ks[*nk].key = *k;
    ks[*nk].signer = ks[*nk].writable = false;
    return (int)(*nk)++;
}

int x4_sol_tx_compile(int version, const x4_sol_pubkey *fee_payer, const x4_sol_ix *ixs,
                      size_t nix, const uint8_t blockhash[32], x4_sol_tx **out, char *err,
                      size_t errlen) {
    ckey ks[X4_SOL_MSG_MAX_KEYS], ordered[X4_SOL_MSG_MAX_KEYS];
    size_t nk = 0, no = 0, nsig = 0, ro_signed = 0, ro_unsigned = 0;
    x4_sol_tx *tx = NULL;
    wbuf w;
    int i0;
    *out = NULL;
    if (version != X4_SOL_LEGACY && version != 0) { set_err(err, errlen, "unsupported message version %d", version); goto err; }
    if (nix > X4_SOL_MSG_MAX_IX || (!ixs && nix)) { set_err(err, errlen, "too many instructions"); goto err; }
    /* CompiledKeys: fee payer first, then each instruction's program id and accounts in order
     * of first appearance, flags merged by OR. */
    i0 = ckey_get(ks, &nk, fee_payer);
    ks[i0].signer = ks[i0].writable = true;
    for (size_t i = 0; i < nix; i++) {
        if (ixs[i].naccounts > X4_SOL_IX_MAX_ACCOUNTS || ixs[i].data_len > X4_SOL_IX_MAX_DATA) {
            set_err(err, errlen, "instruction %zu is malformed", i);
            goto err;
        }
        if (ckey_get(ks, &nk, &ixs[i].program_id) < 0) goto too_many;
        for (size_t j = 0; j < ixs[i].naccounts; j++) {
            const x4_sol_meta *a = &ixs[i].accounts[j];
            int k = ckey_get(ks, &nk, &a->pubkey);
            if (k < 0) goto too_many;
            ks[k].signer = ks[k].signer || a->is_signer;
            ks[k].writable = ks[k].writable || a->is_writable;
        }
    }
    /* Groups: writable signers, readonly signers, writable non-signers, readonly non-signers. */
    for (int g = 0; g < 4; g++) {
        bool want_signer = g < 2, want_writable = (g % 2) == 0;
        for (size_t i = 0; i < nk; i++) {
            if (ks[i].signer != want_signer || ks[i].writable != want_writable) continue;
            ordered[no++] = ks[i];
            if (ks[i].signer) nsig++;
            if (ks[i].signer && !ks[i].writable) ro_signed++;
            if (!ks[i].signer && !ks[i].writable) ro_unsigned++;
        }
    }
    if (nsig > 255 || ro_unsigned > 255) goto too_many;
    if (!(tx = calloc(1, sizeof *tx))) { set_err(err, errlen, "out of memory"); goto err; }
    w.p = tx->wire;
    w.len = 0;
    w.cap = sizeof tx->wire;
    w.overflow = 0;
    w_cu16(&w, nsig);
    for (size_t i = 0; i < nsig; i++) {
        static const uint8_t zero_sig[X4_SOL_SIG_LEN];
        w_bytes(&w, zero_sig, sizeof zero_sig);
    }
    if (version == 0) w_u8(&w, 0x80);
    w_u8(&w, (uint8_t)nsig);
    w_u8(&w, (uint8_t)ro_signed);
    w_u8(&w, (uint8_t)ro_unsigned);
    w_cu16(&w, no);
    for (size_t i = 0; i < no; i++) w_bytes(&w, ordered[i].key.b, 32);
    w_bytes(&w, blockhash, 32);
    w_cu16(&w, nix);
    for (size_t i = 0; i < nix; i++) {
        const x4_sol_ix *ix = &ixs[i];
        int pi = -1;
        for (size_t k = 0; k < no && pi < 0; k++)
            if (x4_sol_pubkey_eq(&ordered[k].key, &ix->program_id)) pi = (int)k;
        w_u8(&w, (uint8_t)pi);
        w_cu16(&w, ix->naccounts);
        for (size_t j = 0; j < ix->naccounts; j++) {
            for (size_t k = 0; k < no; k++)
                if (x4_sol_pubkey_eq(&ordered[k].key, &ix->accounts[j].pubkey)) {
                    w_u8(&w, (uint8_t)k);
                    break;
                }
        }
        w_cu16(&w, ix->data_len);
        w_bytes(&w, ix->data, ix->data_len);
    }
    if (version == 0) w_cu16(&w, 0); /* no address-table lookups */
    if (w.overflow) { set_err(err, errlen, "transaction larger than %d bytes", X4_SOL_TX_MAX); goto err; }
    tx->wire_len = w.len;
    if (tx_decode(tx, err, errlen) != 0) goto err;
    *out = tx;
    return 0;
too_many:
    set_err(err, errlen, "too many accounts");
err:
    free(tx);
    return -1;
}

int x4_sol_tx_parse(const uint8_t *wire, size_t len, x4_sol_tx **out, char *err, size_t errlen) {
    x4_sol_tx *tx = NULL;
    *out = NULL;
    if (!wire || len == 0) { set_err(err, errlen, "empty transaction"); goto err; }
    if (len > X4_SOL_TX_MAX) { set_err(err, errlen, "transaction larger than %d bytes", X4_SOL_TX_MAX); goto err; }
    if (!(tx = calloc(1, sizeof *tx))) { set_err(err, errlen, "out of memory"); goto err; }
    memcpy(tx->wire, wire, len);
    tx->wire_len = len;
    if (tx_decode(tx, err, errlen) != 0) goto err;
    *out = tx;
    return 0;
err:
    free(tx);
    return -1;
}

int x4_sol_tx_parse_base64(const char *b64, x4_sol_tx **out, char *err, size_t errlen) {
    uint8_t bin[X4_SOL_TX_MAX];
    size_t n = 0;
    *out = NULL;
    if (!b64 || sodium_base642bin(bin, sizeof bin, b64, strlen(b64), NULL, &n, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0) {
        set_err(err, errlen, "transaction is not valid base64 (or is larger than %d bytes)", X4_SOL_TX_MAX);
        return -1;
    }
    return x4_sol_tx_parse(bin, n, out, err, errlen);
}

void x4_sol_tx_free(x4_sol_tx *tx) { free(tx); }

int x4_sol_tx_signer_index(const x4_sol_tx *tx, const x4_sol_pubkey *key) {
    for (size_t i = 0; i < tx->m.num_required_signatures && i < tx->m.nkeys; i++)
        if (x4_sol_pubkey_eq(&tx->m.keys[i], key)) return (int)i;
    return -1;
}

int x4_sol_tx_sign_partial(x4_sol_tx *tx, const x4_keypair *kp, char *err, size_t errlen) {
    x4_sol_pubkey pk = {{0}};
    int idx;
    x4_keypair_pubkey(kp, pk.b);
    idx = x4_sol_tx_signer_index(tx, &pk);
    if (idx < 0) { set_err(err, errlen, "the key is not a required signer of this transaction"); return -1; }
    if (x4_keypair_sign(kp, tx->msg, tx->msg_len, tx->sigs + (size_t)idx * X4_SOL_SIG_LEN) != 0) {
        set_err(err, errlen, "signing failed");
        return -1;
    }
    return 0;
}

int x4_sol_tx_verify_slot(const x4_sol_tx *tx, size_t i) {
    if (i >= tx->nsigs || i >= tx->m.nkeys) return 0;
    return crypto_sign_verify_detached(tx->sigs + i * X4_SOL_SIG_LEN, tx->msg, tx->msg_len,
                                       tx->m.keys[i].b) == 0;
}

int x4_sol_tx_to_base64(const x4_sol_tx *tx, x4_buf *out) {
    char b64[sodium_base64_ENCODED_LEN(X4_SOL_TX_MAX, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, tx->wire, tx->wire_len, sodium_base64_VARIANT_ORIGINAL);
    return x4_buf_puts(out, b64);
}

/* ------------------------------------------------------------------------------------------ */
/* x402 "exact"                                                                               */

int x4_sol_exact_build(const x4_keypair *payer, const x4_sol_exact_params *p,
                       x4_sol_exact_payment *out, char *err, size_t errlen) {
    x4_sol_ix *ixs = NULL;
    x4_sol_tx *tx = NULL;
    x4_sol_pubkey owner = {{0}};
    x4_buf b64 = {0};
    uint8_t nonce[16];
    int idx;
    memset(out, 0, sizeof *out);
    if (sodium_init() < 0) { set_err(err, errlen, "libsodium failed to initialise"); goto err; }
    x4_keypair_pubkey(payer, owner.b);
    if (p->amount == 0) { set_err(err, errlen, "amount must be positive"); goto err; }
    if (x4_sol_pubkey_eq(&p->fee_payer, &owner)) { set_err(err, errlen, "the fee payer must not be the paying wallet"); goto err; }
    if (!x4_sol_pubkey_eq(&p->token_program, &x4_sol_token_program) &&
        !x4_sol_pubkey_eq(&p->token_program, &x4_sol_token2022_program)) {
        set_err(err, errlen, "the asset is not owned by the Token or Token-2022 program");
        goto err;
    }
    if (p->omit_memo) {
        out->memo[0] = 0;
    } else if (p->memo) {
        if (p->memo_len == 0 || p->memo_len > X4_SOL_MEMO_MAX || memchr(p->memo, 0, p->memo_len)) {
            set_err(err, errlen, "memo must be 1 to %d bytes without NUL", X4_SOL_MEMO_MAX);
            goto err;
        }
        memcpy(out->memo, p->memo, p->memo_len);
        out->memo[p->memo_len] = 0;
    } else {
        /* A fresh nonce makes otherwise identical payments distinct and names this one. */
        randombytes_buf(nonce, sizeof nonce);
        sodium_bin2hex(out->memo, sizeof out->memo, nonce, sizeof nonce);
    }
    if (x4_sol_ata(&owner, &p->mint, &p->token_program, &out->source_ata, NULL) != 0 ||
        x4_sol_ata(&p->pay_to, &p->mint, &p->token_program, &out->destination_ata, NULL) != 0) {
        set_err(err, errlen, "cannot derive the associated token accounts");
        goto err;
    }
    if (!(ixs = calloc(4, sizeof *ixs))) { set_err(err, errlen, "out of memory"); goto err; }
    x4_sol_ix_set_cu_limit(&ixs[0], p->cu_limit ? p->cu_limit : X4_SOL_EXACT_CU_LIMIT);
    x4_sol_ix_set_cu_price(&ixs[1], p->cu_price);
    if (x4_sol_ix_transfer_checked(&ixs[2], &p->token_program, &out->source_ata, &p->mint,
                                   &out->destination_ata, &owner, p->amount, p->decimals) != 0) {
        set_err(err, errlen, "cannot build the transfer");
        goto err;
    }
    if (!p->omit_memo &&
        x4_sol_ix_memo(&ixs[3], (const uint8_t *)out->memo, strlen(out->memo), NULL, 0) != 0) {
        set_err(err, errlen, "memo is not valid UTF-8");
        goto err;
    }
    if (x4_sol_tx_compile(0, &p->fee_payer, ixs, p->omit_memo ? 3 : 4, p->blockhash, &tx, err,
                          errlen) != 0)
        goto err;
    if (x4_sol_tx_sign_partial(tx, payer, err, errlen) != 0) goto err;
    idx = x4_sol_tx_signer_index(tx, &owner);
    /* Belt and braces: the layout the facilitator expects, and a signature that verifies. */
    if (tx->m.num_required_signatures != 2 || idx != 1 || !x4_sol_tx_verify_slot(tx, 1)) {
        set_err(err, errlen, "internal error: unexpected payment layout");
        goto err;
    }
    x4_sol_signature_to_b58(tx->sigs + X4_SOL_SIG_LEN, out->signature);
    if (x4_sol_tx_to_base64(tx, &b64) != 0) { set_err(err, errlen, "out of memory"); goto err; }
    out->tx_base64 = b64.data;
    free(ixs);
    x4_sol_tx_free(tx);
    return 0;
err:
    x4_buf_free(&b64);
    free(ixs);
    x4_sol_tx_free(tx);
    memset(out, 0, sizeof *out);
    return -1;
}

void x4_sol_exact_payment_free(x4_sol_exact_payment *pay) {
    if (!pay) return;
    free(pay->tx_base64);
    pay->tx_base64 = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* CLI                                                                                        */

int x4_solana_cli_escrow_new(FILE *out) {
    x4_keypair *kp = NULL;
    char secret[X4_KEYPAIR_B64_LEN];
    char addr[X4_SOL_B58_KEY_MAX];
    char err[128];
    int rc = -1;
    x4_sol_pubkey pk;
    if (x4_keypair_generate(&kp, err, sizeof err) != 0) {
        fprintf(stderr, "escrow-new: %s\n", err);
        goto done;
    }
    if (x4_keypair_export_base64(kp, secret, sizeof secret) != 0) {
        fprintf(stderr, "escrow-new: cannot export the key\n");
        goto done;
    }
    x4_keypair_pubkey(kp, pk.b);
    x4_sol_pubkey_to_b58(&pk, addr);
    if (fprintf(out, "ESCROW_KEYPAIR=%s\nAddress: %s\n", secret, addr) < 0 || fflush(out) != 0)
        goto done;
    rc = 0;
done:
    sodium_memzero(secret, sizeof secret);
    x4_keypair_free(kp);
    return rc;
}
